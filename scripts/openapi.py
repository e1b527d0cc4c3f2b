#!/usr/bin/env python3
"""Writes functions/openapi.json, the OpenAPI 3.1 document of the API.

The document is committed; this script is how it is edited (run it, commit
both). tests/e2e/openapi.rs checks the running Worker's answers against it.
"""
import json
import os

ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
QTY = {"type": "integer", "minimum": 0, "maximum": 1000000}
TIME = {"type": "string", "format": "date-time"}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props, required=None, extra=False):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    o["required"] = list(props) if required is None else required
    return o


DECIMAL = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"}

schemas = {
    "Id": ID,
    "DemoKeys": obj({"keys": {"type": "array", "items": obj({
        "key": {"type": "string"}, "role": {"type": "string"}, "location": {"type": ["string", "null"]}})}}),
    "FulfillmentConfig": obj({
        "rule": {"enum": ["nearest", "single_location", "pickup"]},
        "location": {"type": ["string", "null"], "description": "the one location of single_location"},
        "split": {"enum": ["never", "by_line"]},
        "pickup_overdue_hours": {"type": "integer", "minimum": 1},
        "tax": obj({
            "inclusive": {"type": "boolean", "description": "prices include tax"},
            "default_code": {"type": "string"},
            "rates": {"type": "array", "items": obj({
                "location": {"type": "string", "description": "a location id, or * for every location without its own row"},
                "code": {"type": "string"},
                "rate": DECIMAL,
            })},
            "rounding": {"type": "string"},
        }),
    }),
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details. Extra members depend on the code.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {
                "enum": [
                    "invalid_request", "unauthorized", "forbidden", "not_found",
                    "insufficient_stock", "invalid_transition", "idempotency_key_reused",
                    "version_conflict", "payload_too_large", "rate_limited", "overloaded",
                ]
            },
            "lines": {"type": "array", "items": ref("ShortLine")},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "allowed": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": True,
    },
    "ShortLine": obj({"sku": ID, "location": ID, "requested": QTY, "available": {"type": "integer"}}),
    "Money": obj({
        "amount": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,4})?$"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    }),
    "Health": obj({"status": {"const": "ok"}, "version": {"type": "string"}}),
    "AvailabilityRow": obj(
        {
            "sku": ID,
            "location": ID,
            "location_name": {"type": "string"},
            "total": {"const": True},
            "bundle": {"const": True, "description": "a bundle: available = min over components of floor(available / qty)"},
            "channel": {"enum": ["online", "pos"]},
            "on_hand": {"type": "integer"},
            "reserved": {"type": "integer"},
            "committed": {"type": "integer"},
            "unavailable": obj({"damaged": {"type": "integer"}, "quality_control": {"type": "integer"}}),
            "safety_stock": {"type": "integer"},
            "incoming": {"type": "integer"},
            "available": {"type": "integer"},
            "version": {"type": "integer", "minimum": 0},
        },
        required=["sku", "on_hand", "reserved", "committed", "unavailable", "safety_stock",
                  "incoming", "available", "version"],
    ),
    "Availability": obj({
        "as_of": TIME,
        "channel": {"enum": ["online", "pos"]},
        "items": {"type": "array", "items": ref("AvailabilityRow")},
    }),
    "ReceiptRequest": obj(
        {
            "location": ID,
            "reference": {"type": "string", "maxLength": 200},
            "lines": {"type": "array", "minItems": 1, "maxItems": 100,
                      "items": obj({"sku": ID, "qty": QTY})},
        },
        required=["location", "lines"],
    ),
    "Receipt": obj({
        "location": ID,
        "reference": {"type": ["string", "null"]},
        "lines": {"type": "array", "items": obj({"sku": ID, "qty": QTY})},
        "items": {"type": "array", "items": ref("AvailabilityRow")},
    }),
    "AdjustmentRequest": obj(
        {
            "location": ID, "sku": ID,
            "delta": {"type": "integer", "minimum": -1000000, "maximum": 1000000},
            "reason": {"enum": ["damaged", "shrinkage", "found", "correction", "promotion", "other"]},
            "note": {"type": "string", "maxLength": 500},
            "expected_version": {"type": "integer", "minimum": 0},
        },
        required=["location", "sku", "delta", "reason"],
    ),
    "SafetyStockRequest": obj({"location": ID, "sku": ID, "qty": QTY}),
    "PositionAnswer": obj({"item": ref("AvailabilityRow")}),
    "CountRequest": obj({
        "location": ID,
        "counted_at": TIME,
        "lines": {"type": "array", "minItems": 1, "maxItems": 100,
                  "items": obj({"sku": ID, "counted": {"type": "integer", "minimum": 0}})},
    }),
    "AtRisk": obj({"hold": {"type": "string"}, "reservation": ID, "sku": ID, "location": ID},
                  required=["hold"]),
    "Count": obj({
        "location": ID,
        "counted_at": TIME,
        "lines": {"type": "array", "items": obj({
            "sku": ID, "counted": {"type": "integer"}, "variance": {"type": "integer"},
            "on_hand": {"type": "integer"}, "oversold": {"type": "integer"},
            "at_risk": {"type": "array", "items": ref("AtRisk")},
        })},
    }),
    "LedgerEntry": obj(
        {
            "seq": {"type": "integer"},
            "event": {"type": "string"},
            "at": TIME,
            "location": {"type": ["string", "null"]},
            "qty": {"type": ["integer", "null"]},
            "reason": {"type": ["string", "null"]},
            "actor": {"type": ["string", "null"]},
            "channel": {"type": ["string", "null"]},
            "reference": {"type": ["string", "null"]},
            "details": {"type": "object"},
        },
    ),
    "Ledger": obj({
        "sku": ID,
        "items": {"type": "array", "items": ref("LedgerEntry")},
        "next_after": {"type": ["integer", "null"]},
    }),
    "ReservationRequest": obj(
        {
            "id": {**ID, "description": "Optional. Without it the server issues one: for a one-SKU "
                   "reservation `r<16 hex>.<sku>`, which names the SKU's object (create, read, extend and "
                   "release are then one object call); otherwise `r-<24 hex>`. Both derive from the "
                   "Idempotency-Key, so a retry is the same reservation. Ids of the first form are the "
                   "server's to issue (400 when a client sends one)."},
            "lines": {"type": "array", "minItems": 1, "maxItems": 100,
                      "items": obj({"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000}})},
            "fulfillment": obj(
                {
                    "type": {"enum": ["ship", "pickup"]},
                    "location": ID,
                    "destination": obj({"lat": {"type": "number"}, "lon": {"type": "number"}}),
                },
                required=["type"],
            ),
            "ttl_seconds": {"type": "integer", "minimum": 30, "maximum": 3600, "default": 900},
        },
        required=["lines"],
    ),
    "Reservation": obj({
        "id": ID,
        "status": {"enum": ["active", "released", "expired"]},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "lines": {"type": "array", "items": obj({"sku": ID, "qty": QTY, "location": ID})},
        "created_at": TIME,
    }),
    "ExtendRequest": obj({"ttl_seconds": {"type": "integer", "minimum": 30, "maximum": 3600}}, required=[]),
    "LocationRequest": obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "kind": {"enum": ["store", "warehouse"]},
            "lat": {"type": "number", "minimum": -90, "maximum": 90},
            "lon": {"type": "number", "minimum": -180, "maximum": 180},
            "ships_online": {"type": "boolean"},
            "pickup": {"type": "boolean"},
        },
        required=["name", "kind", "lat", "lon"],
    ),
    "Location": obj({
        "id": ID,
        "name": {"type": "string"},
        "kind": {"enum": ["store", "warehouse"]},
        "lat": {"type": "number"},
        "lon": {"type": "number"},
        "ships_online": {"type": "boolean"},
        "pickup": {"type": "boolean"},
    }),
    "Locations": obj({"items": {"type": "array", "items": ref("Location")}}),
    "Variant": obj(
        {
            "sku": ID,
            "barcode": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
            "options": {"type": "object", "additionalProperties": {"type": "string"}},
            "price": ref("Money"),
            "tax_code": {"type": "string", "maxLength": 32},
        },
        required=["sku", "price"],
    ),
    "ProductRequest": obj({
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "variants": {"type": "array", "minItems": 1, "maxItems": 100, "items": ref("Variant")},
    }),
    "Product": obj({
        "id": ID,
        "title": {"type": "string"},
        "variants": {"type": "array", "items": ref("Variant")},
    }),
    "Products": obj({
        "items": {"type": "array", "items": ref("Product")},
        "next_cursor": {"type": ["string", "null"]},
    }),
    "SkuInfo": obj({"sku": ID, "product_id": ID, "title": {"type": "string"}, "variant": ref("Variant")}),
    "BundleRequest": obj({
        "title": {"type": "string"},
        "price": ref("Money"),
        "components": {"type": "array", "minItems": 1, "maxItems": 100,
                       "items": obj({"sku": ID, "qty": {"type": "integer", "minimum": 1}})},
    }),
    "Bundle": obj({
        "sku": ID,
        "title": {"type": "string"},
        "price": ref("Money"),
        "components": {"type": "array", "items": obj({"sku": ID, "qty": {"type": "integer"}})},
    }),
    "SaleRequest": obj(
        {
            "sale_id": ID,
            "terminal_id": ID,
            "device_seq": {"type": "integer", "minimum": 0},
            "location": ID,
            "occurred_at": TIME,
            "customer_id": ID,
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
                {"sku": ID, "barcode": {"type": "string"},
                 "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
                 "unit_price": ref("Money")},
                required=["qty", "unit_price"],
            )},
            "payments": {"type": "array", "items": obj({"method": {"type": "string"}, "amount": ref("Money")})},
        },
        required=["sale_id", "terminal_id", "device_seq", "location", "occurred_at", "lines"],
    ),
    "Sale": obj({
        "sale_id": ID,
        "terminal_id": ID,
        "device_seq": {"type": "integer"},
        "location": ID,
        "occurred_at": TIME,
        "customer_id": {"type": ["string", "null"]},
        "status": {"const": "recorded"},
        "oversold": {"type": "boolean"},
        "lines": {"type": "array", "items": obj({
            "sku": ID, "qty": {"type": "integer"}, "oversold": {"type": "integer"},
            "available_after": {"type": ["integer", "null"]}, "late": {"type": "boolean"},
        })},
        "at_risk": {"type": "array", "items": ref("AtRisk")},
        "payments": {"type": "array", "items": obj({"method": {"type": "string"}, "amount": ref("Money")})},
    }),
    "SaleBatchRequest": obj({"sales": {"type": "array", "minItems": 1, "maxItems": 100,
                                       "items": ref("SaleRequest")}}),
    "SaleBatch": obj({"results": {"type": "array", "items": obj({
        "sale_id": {"type": "string"},
        "status": {"type": "integer"},
        "body": {"oneOf": [ref("Sale"), ref("Problem")]},
    })}}),
}


def problem(desc):
    return {"description": desc,
            "content": {"application/problem+json": {"schema": ref("Problem")}}}


def ok(schema, desc="OK"):
    return {"description": desc, "content": {"application/json": {"schema": ref(schema)}}}


ERRORS = {
    "400": problem("Invalid request (bad JSON, unknown field, bad id, quantity out of range, missing Idempotency-Key)"),
    "401": problem("Missing or invalid API key"),
    "403": problem("The key's role may not do this"),
    "404": problem("Unknown resource, SKU or location"),
    "405": problem("Method not allowed"),
    "409": problem("Conflict: insufficient_stock, invalid_transition, idempotency_key_reused or version_conflict"),
    "413": problem("Body over 64 KiB"),
    "503": problem("Overloaded or a transient storage error: retry with the same Idempotency-Key"),
}

IDEM = {"name": "Idempotency-Key", "in": "header", "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "Same key and body: the first answer again (Idempotent-Replayed: true). Another body: 409."}


def path_param(name):
    return {"name": name, "in": "path", "required": True, "schema": ID}


def query(name, schema, desc=""):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}


def op(summary, responses, body=None, params=None, write=False, security=True):
    o = {"summary": summary, "responses": dict(responses)}
    for k, v in ERRORS.items():
        o["responses"].setdefault(k, v)
    ps = list(params or [])
    if write:
        ps.append(IDEM)
    if ps:
        o["parameters"] = ps
    if body:
        o["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if not security:
        o["security"] = []
    return o


paths = {
    "/v1/health": {"get": op("Liveness", {"200": ok("Health")}, security=False)},
    "/v1/dev/keys": {"get": op(
        "The keys the demo pages use: only under `make dev` (the DEMO_PAGE_KEYS var); 404 anywhere else",
        {"200": ok("DemoKeys")}, security=False)},
    "/v1/config/fulfillment": {"get": op(
        "The deployment's fulfillment rule, split rule, pickup overdue time and tax table (admin, storefront, POS)",
        {"200": ok("FulfillmentConfig")})},
    "/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                 "responses": {"200": {"description": "OpenAPI 3.1",
                                                       "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/v1/availability": {"get": op(
        "Availability of up to 100 SKUs at some or every location (with a total row when no location is given). Any role; CORS-readable.",
        {"200": ok("Availability")},
        params=[query("sku", {"type": "string"}, "comma-separated SKUs (1 to 100)"),
                query("location", {"type": "string"}, "comma-separated locations"),
                query("channel", {"enum": ["online", "pos"]}, "default: pos for a POS key, else online"),
                query("consistency", {"enum": ["strong"]},
                      "storefront and publishable reads may come from the edge isolate's cache, at most 1 s old "
                      "(as_of says how fresh); strong reads from the owning objects (admin and POS reads always do)")],
    )},
    "/v1/inventory/receipts": {"post": op("Units arrive at a location (admin)", {"200": ok("Receipt")},
                                          body="ReceiptRequest", write=True)},
    "/v1/inventory/adjustments": {"post": op("Correct on_hand with a reason (admin)", {"200": ok("PositionAnswer")},
                                             body="AdjustmentRequest", write=True)},
    "/v1/inventory/counts": {"post": op("A physical count sets on_hand (admin, or POS at its location)",
                                        {"200": ok("Count")}, body="CountRequest", write=True)},
    "/v1/inventory/safety-stock": {"put": op("Units the online channel may not take (admin)",
                                             {"200": ok("PositionAnswer")}, body="SafetyStockRequest", write=True)},
    "/v1/skus/{sku}/ledger": {"get": op("Every change of a SKU (admin, or POS at its location)", {"200": ok("Ledger")},
                                        params=[path_param("sku"), query("location", ID),
                                                query("after", {"type": "integer", "minimum": 0}),
                                                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})])},
    "/v1/reservations": {"post": op("Hold every line or none (admin, storefront)",
                                    {"201": ok("Reservation", "Created"),
                                     "200": ok("Reservation", "This reservation id already exists with the same content")},
                                    body="ReservationRequest", write=True)},
    "/v1/reservations/{id}": {
        "get": op("A reservation (admin, storefront)", {"200": ok("Reservation")}, params=[path_param("id")]),
        "delete": op("Release (admin, storefront)", {"200": ok("Reservation")}, params=[path_param("id")], write=True),
    },
    "/v1/reservations/{id}/extend": {"post": op("Move the deadline to now + ttl_seconds", {"200": ok("Reservation")},
                                                body="ExtendRequest", params=[path_param("id")], write=True)},
    "/v1/locations": {"get": op("Every location (any role, CORS-readable)", {"200": ok("Locations")})},
    "/v1/locations/{id}": {
        "put": op("Create or replace a location (admin)", {"201": ok("Location", "Created"), "200": ok("Location")},
                  body="LocationRequest", params=[path_param("id")], write=True),
        "get": op("A location", {"200": ok("Location")}, params=[path_param("id")]),
    },
    "/v1/products": {"get": op("Products, by id, optionally matching a query", {"200": ok("Products")},
                               params=[query("query", {"type": "string"}), query("cursor", ID),
                                       query("limit", {"type": "integer", "minimum": 1, "maximum": 100})])},
    "/v1/products/{id}": {
        "put": op("Create or replace a product and its variants (admin)",
                  {"201": ok("Product", "Created"), "200": ok("Product")},
                  body="ProductRequest", params=[path_param("id")], write=True),
        "get": op("A product", {"200": ok("Product")}, params=[path_param("id")]),
    },
    "/v1/skus/{sku}": {"get": op("A SKU's variant and product", {"200": ok("SkuInfo")}, params=[path_param("sku")])},
    "/v1/barcodes/{barcode}": {"get": op("The SKU of a barcode", {"200": ok("SkuInfo")},
                                         params=[{"name": "barcode", "in": "path", "required": True,
                                                  "schema": {"type": "string"}}])},
    "/v1/bundles/{sku}": {
        "put": op("Create or replace a bundle (admin)", {"201": ok("Bundle", "Created"), "200": ok("Bundle")},
                  body="BundleRequest", params=[path_param("sku")], write=True),
        "get": op("A bundle", {"200": ok("Bundle")}, params=[path_param("sku")]),
    },
    "/v1/pos/sales": {"post": op(
        "Record an in-store sale: never refused for stock; idempotent forever by sale_id (POS at its location, admin)",
        {"201": ok("Sale", "Recorded (or the first answer for this sale_id)")}, body="SaleRequest", write=True)},
    "/v1/pos/sales/batch": {"post": op(
        "Upload a terminal's offline queue (at most 100), applied in (terminal_id, device_seq) order, answered per sale",
        {"200": ok("SaleBatch")}, body="SaleBatchRequest", write=True)},
}

# ---------------------------------------------------------------- live availability (issue 9)
# GET /v1/availability/live is a WebSocket (functions/src/api/live.rs,
# functions/src/objects/live.rs). OpenAPI cannot describe the frames; the
# description does, and the HTTP answers before the upgrade are documented.
LIVE_FRAMES = (
    "Upgrades to a WebSocket (send Upgrade: websocket). Browsers cannot set headers on a WebSocket: "
    "a publishable key may come as key= (a secret key in the URL is refused, 403; others use Authorization). "
    "A request with an Origin header must come from LIVE_ORIGINS (403). Frames (text, JSON): first one "
    "{type: snapshot, sku, channel, as_of, items: [row]} per SKU, then one {type: change, ..row} per change of a "
    "watched position, pushed after the change is durably written; row = {sku, location, available, seq, on_hand, "
    "reserved, committed, safety_stock, incoming, channel}, seq = the position's version (+1 per change): a gap "
    "means a missed change. Client frames: {type: resync, sku?} answers a new snapshot, ping answers pong. "
    "Closes: 1008 over 20 SKUs or 20 locations per socket, or a frame that is not the protocol; 1013 when a SKU "
    "has LIVE_MAX_SUBSCRIBERS subscribers (try again later)."
)
live_get = op(
    "Live availability over a WebSocket (any role; several SKUs on one socket)",
    {"101": {"description": "Switching Protocols: the WebSocket. " + LIVE_FRAMES},
     "426": problem("Not a WebSocket upgrade (code upgrade_required)")},
    params=[query("sku", {"type": "string"}, "comma-separated SKUs (1 to 20; bundles are refused, 400)"),
            query("location", {"type": "string"}, "comma-separated locations (at most 20); none: every location"),
            query("channel", {"enum": ["online", "pos"]}, "default: pos for a POS key, else online"),
            query("key", {"type": "string"}, "a publishable key, for browsers (instead of Authorization)")],
)
live_get["description"] = LIVE_FRAMES
schemas["Problem"]["properties"]["code"]["enum"].append("upgrade_required")
# Availability rows name what kind of place a location is, for shopper wording.
schemas["AvailabilityRow"]["properties"].update({
    "location_kind": {"enum": ["store", "warehouse"]},
    "pickup": {"type": "boolean", "description": "a store that offers pickup"},
    "ships_online": {"type": "boolean", "description": "fills online orders"},
})
paths["/v1/availability/live"] = {"get": live_get}
# ---------------------------------------------------------------- end of live availability

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "omnistock",
        "version": "1",
        "description": "Omnichannel inventory: one stock truth for stores, warehouse, storefront and POS. "
                       "Errors are application/problem+json (RFC 9457). Every POST, PUT and DELETE takes an Idempotency-Key.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "API key: admin, storefront, pos (bound to a location) or publishable (pk_...)"}},
        "schemas": schemas,
    },
    "paths": paths,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "functions", "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1, sort_keys=False)
    f.write("\n")
print(f"wrote {os.path.normpath(out)}")
