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
            # Prices per channel, compare-at and scheduled changes (issue 11;
            # core/src/pricing.rs): every amount in `price`'s currency.
            "channel_prices": {**obj({"online": ref("Money"), "pos": ref("Money")}, required=[]),
                               "description": "a channel's own price, where it differs from price"},
            "compare_at_price": {**ref("Money"),
                                 "description": "the 'was' price; shown only when above the price in force"},
            "scheduled_prices": {
                "type": "array", "maxItems": 20,
                "description": "changes still to come, applied in time order at their time "
                               "(the catalog's alarm folds each into the fields above). "
                               "Without channel: the price of every channel (channel prices dropped). "
                               "Each states the compare-at price from then on (absent: none).",
                "items": obj({"at": TIME, "channel": {"enum": ["online", "pos"]},
                              "price": ref("Money"), "compare_at_price": ref("Money")},
                             required=["at", "price"]),
            },
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
                 "unit_price": {**ref("Money"), "description": "what the till charged; absent: the "
                                "catalog's POS price in force when the sale occurred"}},
                required=["qty"],
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
        "items": {"type": "array", "description": "the sale's lines as recorded, with the price charged "
                  "(absent from sales recorded before it existed)",
                  "items": obj({"sku": ID, "qty": {"type": "integer"}, "unit_price": ref("Money"),
                                "tax": {**obj({"rate": DECIMAL, "net": ref("Money"), "tax": ref("Money"),
                                               "gross": ref("Money")}),
                                        "description": "the line's tax, computed once when the sale was made "
                                        "(TAX_TABLE at the sale's location and the SKU's tax_code); net + tax = "
                                        "gross; absent from sales recorded before it was"}},
                               required=["sku", "qty", "unit_price"])},
        "totals": {**obj({"net": DECIMAL, "tax": DECIMAL, "gross": DECIMAL,
                          "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                          "tax_inclusive": {"type": "boolean"}, "rounding": {"type": "string"}}),
                   "description": "the sums of the lines' recorded tax: gross is what the customer owes, and what "
                   "the sale's receipt and the accounting export state, to the cent (absent from sales recorded "
                   "before it existed)"},
        "at_risk": {"type": "array", "items": ref("AtRisk")},
        "payments": {"type": "array", "items": obj({"method": {"type": "string"}, "amount": ref("Money")})},
    }, required=["sale_id", "terminal_id", "device_seq", "location", "occurred_at", "customer_id", "status",
                 "oversold", "lines", "at_risk", "payments"]),
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
    "/v1/products": {"get": op("Products, by id; with query: those whose SKU, barcode, title (or a title word) or option value starts with it, case-insensitive (staff search)", {"200": ok("Products")},
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

# ---------------------------------------------------------------- transfers and unavailable (issue 8, transfers part)
BUCKET = {"enum": ["damaged", "quality_control", None]}
TRANSFER_STATUS = {"enum": ["requested", "shipping", "in_transit", "partially_received", "received", "cancelled"]}
NOTE = {"type": ["string", "null"]}
schemas.update({
    "UnavailableRequest": obj(
        {
            "location": ID, "sku": ID,
            "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "from": {**BUCKET, "description": "the bucket the units leave; null: sellable units"},
            "to": {**BUCKET, "description": "the bucket the units enter; null: sellable again, or (written_off) "
                   "out of on_hand"},
            "reason": {"enum": ["damaged", "quality_control", "repaired", "passed_inspection", "written_off",
                                "correction", "other"],
                       "description": "damaged / quality_control need `to`; repaired / passed_inspection need "
                       "`from` and `to: null`; written_off needs `from` and `to: null` and also takes the units "
                       "out of on_hand (a shrinkage adjustment in the same transaction); correction / other any "
                       "direction. At least one of from/to is set, and they differ. All or nothing."},
            "note": {"type": "string", "maxLength": 500},
        },
        required=["location", "sku", "qty", "reason"],
    ),
    "Unavailable": obj({
        "location": ID, "sku": ID, "qty": {"type": "integer"},
        "from": BUCKET, "to": BUCKET,
        "reason": {"type": "string"}, "note": NOTE,
        "item": ref("AvailabilityRow"),
    }),
    "TransferLineRequest": obj({"sku": ID, "qty": {"type": "integer", "minimum": 0, "maximum": 1000000}}),
    "TransferRequest": obj(
        {
            "id": ID, "from": ID, "to": ID,
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": ref("TransferLineRequest"),
                      "description": "one line per SKU, qty 1..1000000"},
            "note": {"type": "string", "maxLength": 500},
        },
        required=["id", "from", "to", "lines"],
    ),
    "TransferActionRequest": obj({}, required=[]),
    "TransferReceiveRequest": obj(
        {
            "lines": {"type": "array", "maxItems": 100, "items": ref("TransferLineRequest"),
                      "description": "shipped lines only; qty 1.. (0 allowed with close); empty with close"},
            "close": {"type": "boolean", "default": False,
                      "description": "whatever is still in transit on every line is recorded as shortfall"},
        },
        required=["lines"],
    ),
    "Transfer": obj({
        "id": ID, "from": ID, "to": ID,
        "status": TRANSFER_STATUS,
        "note": NOTE,
        "lines": {"type": "array", "items": obj(
            {
                "sku": ID,
                "requested": {"type": "integer"}, "shipped": {"type": "integer"},
                "received": {"type": "integer"}, "shortfall": {"type": "integer"},
                "in_transit": {"type": "integer"}, "closed": {"type": "boolean"},
                "not_shipped": obj({"code": {"type": "string"}, "available": {"type": "integer"},
                                    "detail": {"type": "string"}}, required=["code"]),
            },
            required=["sku", "requested", "shipped", "received", "shortfall", "in_transit", "closed"],
        )},
        "receipts": {"type": "array", "items": obj({
            "number": {"type": "integer"}, "lines": {"type": "array", "items": ref("TransferLineRequest")},
            "close": {"type": "boolean"}, "at": TIME, "actor": {"type": "string"},
        })},
        "history": {"type": "array", "items": obj({
            "at": TIME, "actor": {"type": "string"},
            "from": {"type": ["string", "null"]}, "to": TRANSFER_STATUS, "note": NOTE,
        })},
        "created_at": TIME,
    }),
})
paths.update({
    "/v1/inventory/unavailable": {"post": op(
        "Move units between sellable and the unavailable buckets, between buckets, or write them off "
        "(admin, or POS at its location). One SKU transaction, all or nothing; in the ledger with its reason.",
        {"200": ok("Unavailable")}, body="UnavailableRequest", write=True)},
    "/v1/transfers": {"post": op(
        "Request a transfer between two locations (admin). Nothing moves until it ships.",
        {"201": ok("Transfer", "Requested"), "200": ok("Transfer", "This transfer id already exists with the same content")},
        body="TransferRequest", write=True)},
    "/v1/transfers/{id}": {"get": op("A transfer: lines (requested, shipped, received, shortfall), status, receipts "
                                     "and history (admin)", {"200": ok("Transfer")}, params=[path_param("id")])},
    "/v1/transfers/{id}/ship": {"post": op(
        "Ship (admin): every line leaves `from` (on_hand) and is incoming at `to`. A line without enough available "
        "at `from` does not ship (shipped 0, not_shipped says why); if no line can ship, 409 insufficient_stock and "
        "the transfer is cancelled. Shipping again is a no-op; after cancel, 409 invalid_transition.",
        {"200": ok("Transfer")}, body="TransferActionRequest", params=[path_param("id")], write=True)},
    "/v1/transfers/{id}/receive": {"post": op(
        "Receive units of shipped lines at `to` (admin), in parts; `close` records what is still missing as "
        "shortfall. Each receipt is applied once (kept by its Idempotency-Key).",
        {"200": ok("Transfer")}, body="TransferReceiveRequest", params=[path_param("id")], write=True)},
    "/v1/transfers/{id}/cancel": {"post": op(
        "Cancel before shipping (admin); after shipping, 409 invalid_transition.",
        {"200": ok("Transfer")}, body="TransferActionRequest", params=[path_param("id")], write=True)},
})
# ---------------------------------------------------------------- end of transfers and unavailable
# ---------------------------------------------------------------------------
# Orders (issue 8, orders part): POST/GET /v1/orders, GET /v1/orders/{id},
# POST /v1/orders/{id}/transitions.
# ---------------------------------------------------------------------------
ORDER_STATUS = {"enum": ["new", "paid", "ready_to_pick", "packed", "shipped", "ready_for_pickup",
                         "collected", "cancelled", "returned"]}
schemas.update({
    "OrderRequest": obj(
        {
            "id": ID,
            "channel": {"enum": ["online", "pos"],
                        "description": "default: pos for a POS key, else online; a storefront creates online orders, "
                                       "a POS key pos orders at its location"},
            "customer_id": ID,
            "reservation_id": {**ID, "description": "an active reservation whose holds become the order's "
                                                    "(no second hold); its lines must be the order's"},
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
                {"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
                 "unit_price": {**ref("Money"), "description": "a POS or admin key may set its own price; "
                                                               "otherwise the catalog's (a storefront may repeat it)"}},
                required=["sku", "qty"])},
            "fulfillment": obj(
                {
                    "type": {"enum": ["ship", "pickup"]},
                    "location": ID,
                    "destination": obj({"lat": {"type": "number"}, "lon": {"type": "number"}}),
                },
                required=["type"],
            ),
        },
        required=["id", "lines"],
    ),
    "TransitionRequest": obj(
        {"to": ORDER_STATUS,
         "part": {"type": "integer", "minimum": 0, "description": "one part of a split order; default every part"}},
        required=["to"],
    ),
    "OrderLine": obj({
        "sku": ID, "qty": QTY, "unit_price": ref("Money"),
        "tax": ref("Money"), "net": ref("Money"), "gross": ref("Money"),
        "location": ID, "part": {"type": "integer", "minimum": 0},
    }),
    "OrderPart": obj({
        "part": {"type": "integer", "minimum": 0}, "location": ID, "status": ORDER_STATUS,
        "at_risk": {"type": "boolean", "description": "a POS sale took units this part had committed"},
        "pickup_overdue": {"type": "boolean", "description": "ready for pickup longer than PICKUP_OVERDUE_HOURS"},
    }),
    "Order": obj(
        {
            "id": ID,
            "status": {**ORDER_STATUS, "description": "the parts' status when they agree, else the least "
                                                      "advanced part that is not cancelled"},
            "channel": {"enum": ["online", "pos"]},
            "customer_id": {"type": ["string", "null"]},
            "reservation_id": ID,
            "lines": {"type": "array", "items": ref("OrderLine")},
            "parts": {"type": "array", "items": ref("OrderPart")},
            "totals": obj({"net": DECIMAL, "tax": DECIMAL, "gross": DECIMAL,
                           "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                           "rounding": {"type": "string"}, "tax_inclusive": {"type": "boolean"}}),
            "created_at": TIME,
            "updated_at": TIME,
            "version": {"type": "integer", "minimum": 0},
            "history": {"type": "array", "items": obj({
                "part": {"type": "integer", "minimum": 0},
                "from": {"oneOf": [ORDER_STATUS, {"type": "null"}]},
                "to": ORDER_STATUS, "actor": {"type": "string"}, "at": TIME})},
        },
        required=["id", "status", "channel", "customer_id", "lines", "parts", "totals", "created_at",
                  "updated_at", "version", "history"],
    ),
    "OrderSummary": {"type": "object", "description": "an Order without its history",
                     "required": ["id", "status", "channel", "lines", "parts", "totals", "created_at", "version"]},
    "OrderQueue": obj({"items": {"type": "array", "items": ref("OrderSummary")},
                       "next_cursor": {"type": ["string", "null"]}}),
})
# A hold at risk names its order.
schemas["AtRisk"]["properties"]["order"] = ID
# A reservation converted into an order (its holds are the order's).
schemas["Reservation"]["properties"]["status"]["enum"].append("converted")
schemas["Reservation"]["properties"]["order_id"] = ID
paths.update({
    "/v1/orders": {
        "post": op("Place an order: priced (catalog, or a till's own price), taxed per line, placed by the "
                   "fulfillment rule, every line held or none (admin, storefront online, POS at its location). "
                   "The same id with the same content answers the first answer; other content is 409 "
                   "idempotency_key_reused",
                   {"201": ok("Order", "Created (or the first answer again)"), "200": ok("Order")},
                   body="OrderRequest", write=True),
        "get": op("The order queue, newest first (a storefront sees online orders, a POS key its location's); "
                  "a part filter matches an order when one of its parts matches",
                  {"200": ok("OrderQueue")},
                  params=[query("status", ORDER_STATUS), query("location", ID),
                          query("channel", {"enum": ["online", "pos"]}),
                          query("at_risk", {"enum": ["true", "false"]}),
                          query("pickup_overdue", {"enum": ["true", "false"]}),
                          query("cursor", {"type": "string"}),
                          query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50})]),
    },
    "/v1/orders/{id}": {"get": op("An order with its history (who, when, from, to)", {"200": ok("Order")},
                                  params=[path_param("id")])},
    "/v1/orders/{id}/transitions": {"post": op(
        "Move every part (or one) to `to`; paid commits, shipped/collected take the units out of on_hand, "
        "cancelled releases; answered once every SKU object confirmed. 409 invalid_transition carries "
        "from, to and allowed",
        {"200": ok("Order")}, body="TransitionRequest", params=[path_param("id")], write=True)},
})
# ---- end of orders ----
# ---------------------------------------------------------------------------
# Returns (issue 8, returns part): POST /v1/returns, GET /v1/returns/{id},
# POST /v1/returns/{id}/receive, POST /v1/returns/{id}/refund.
# ---------------------------------------------------------------------------
SIGNED_MONEY = obj({
    "amount": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,4})?$"},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
})
RETURN_REASON = {"type": "string", "minLength": 1, "maxLength": 200}
schemas.update({
    "ReturnRequest": obj(
        {
            "id": ID,
            "sale_id": ID,
            "order_id": ID,
            "terminal_id": {**ID, "description": "the terminal that recorded sale_id; when absent, the server "
                                                 "finds it through the first line's SKU (which recorded the sale)"},
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
                {"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
                 "reason": RETURN_REASON})},
        },
        required=["id", "lines"],
    ),
    "ReturnReceiveRequest": obj({
        "location": ID,
        "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
            {"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
             "condition": {"enum": ["restock", "damaged", "return_to_vendor"]}})},
    }),
    "ReturnRefundRequest": obj({"amount": ref("Money")}),
    "ReturnExchangeRequest": obj(
        {
            "location": ID,
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
                {"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000}})},
            "receive": {"type": "array", "minItems": 1, "maxItems": 100, "items": obj(
                {"sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
                 "condition": {"enum": ["restock", "damaged", "return_to_vendor"]}})},
        },
        required=["location", "lines"],
    ),
    "Return": obj(
        {
            "id": ID,
            "status": {"enum": ["initiated", "receiving", "received", "refunded", "exchanged"]},
            "sale_id": ID,
            "order_id": ID,
            "terminal_id": ID,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "lines": {"type": "array", "items": obj({
                "sku": ID, "qty": QTY, "reason": {"type": "string"}, "sold_at": ID,
                "paid": ref("Money"),
                "received": obj({"restock": QTY, "damaged": QTY, "return_to_vendor": QTY}),
                "pending": QTY,
            })},
            "receipts": {"type": "array", "items": obj({
                "n": {"type": "integer", "minimum": 0},
                "location": ID,
                "at": TIME,
                "status": {"enum": ["pending", "booked"]},
                "lines": {"type": "array", "items": obj(
                    {"sku": ID, "qty": QTY,
                     "condition": {"enum": ["restock", "damaged", "return_to_vendor"]},
                     "status": {"enum": ["pending", "booked", "refused"]},
                     "refusal": obj({"code": {"type": "string"}, "detail": {"type": "string"}})},
                    required=["sku", "qty", "condition", "status"])},
            })},
            "refunds": {"type": "array", "items": obj({"amount": ref("Money"), "at": TIME})},
            "refunded": ref("Money"),
            "refundable": ref("Money"),
            "exchange": obj({"order_id": ID, "replacement_total": ref("Money"), "credit": ref("Money"),
                             "difference": SIGNED_MONEY, "at": TIME}),
            "created_at": TIME,
            "history": {"type": "array", "items": obj(
                {"at": TIME, "event": {"enum": ["initiated", "receipt", "refund", "exchange"]},
                 "actor": {"type": "string"}, "receipt": {"type": "integer"}, "amount": SIGNED_MONEY},
                required=["at", "event", "actor"])},
        },
        required=["id", "status", "currency", "lines", "receipts", "refunds", "refunded", "refundable",
                  "created_at", "history"],
    ),
    "ReturnableLine": obj({"sku": ID, "requested": QTY, "returnable": QTY}),
    "ReceivableLine": obj({"sku": ID, "requested": QTY, "initiated": QTY, "received": QTY, "receivable": QTY}),
})
# A refused return names its lines too: beyond what was sold (returnable)
# or beyond what the return initiated (receivable).
schemas["Problem"]["properties"]["lines"] = {"type": "array", "items": {
    "oneOf": [ref("ShortLine"), ref("ReturnableLine"), ref("ReceivableLine")]}}
schemas["Problem"]["properties"]["refundable"] = ref("Money")
paths.update({
    "/v1/returns": {"post": op(
        "Initiate a return of a POS sale (sale_id) or an order (order_id): no stock change. The source refuses "
        "(400, lines: [{sku, requested, returnable}]) more than it sold minus what earlier returns claimed. "
        "Admin and POS; a storefront only for its online orders. The same id and content again: 200",
        {"201": ok("Return", "Initiated"), "200": ok("Return", "This return id already exists with the same content")},
        body="ReturnRequest", write=True)},
    "/v1/returns/{id}": {"get": op("A return: lines received per condition, receipts, refunds, status, history",
                                   {"200": ok("Return")}, params=[path_param("id")])},
    "/v1/returns/{id}/receive": {"post": op(
        "Receive units at a location (admin, POS at its location): restock adds to on_hand, damaged to on_hand as "
        "unavailable.damaged, return_to_vendor adds nothing sellable and is recorded. Never more than the return "
        "initiated (400, lines: [{..., receivable}]). Each line is booked in its SKU object once, with the return id "
        "as the ledger reference; a 503 is retried with the same Idempotency-Key",
        {"200": ok("Return")}, body="ReturnReceiveRequest", params=[path_param("id")], write=True)},
    "/v1/returns/{id}/refund": {"post": op(
        "Record a refund (admin, POS): at most what was paid (tax included) for the units received, minus earlier "
        "refunds (400 with refundable); 409 invalid_transition before any unit is received",
        {"200": ok("Return")}, body="ReturnRefundRequest", params=[path_param("id")], write=True)},
    "/v1/returns/{id}/exchange": {"post": op(
        "Exchange (admin, POS at location), all or nothing: hold the replacement lines like a new order (order id "
        "x.<return id>, pickup at location; 409 insufficient_stock books nothing), then book the receipt (receive, "
        "else the units received before); exchange.difference = replacement total - credit (paid for the units "
        "received, minus refunds): positive, the customer pays",
        {"200": ok("Return")}, body="ReturnExchangeRequest", params=[path_param("id")], write=True)},
})
# ------------------------------------------------------------ end of returns
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
# ---------------------------------------------------------------------------
# Catalog import (issue 11, catalog part): POST /v1/catalog/imports (a CSV
# body, a dry run), GET /v1/catalog/imports/{id} (JSON or text/csv),
# POST /v1/catalog/imports/{id}/apply. Staff search is GET /v1/products?query=.
# ---------------------------------------------------------------------------
FINDING_CODES = ["invalid_product_id", "missing_title", "invalid_title", "title_convention", "missing_sku",
                 "invalid_sku", "duplicate_sku", "sku_in_catalog", "invalid_barcode", "duplicate_barcode",
                 "barcode_in_catalog", "missing_price", "invalid_price", "negative_price", "option_value_variant",
                 "invalid_quantity", "no_location", "stock_receipt", "too_many_variants", "ignored_columns",
                 "skipped_row"]
COUNT = {"type": "integer", "minimum": 0}
APPLY_OUTCOME = obj({
    "applied_at": TIME,
    "skip_rows_with_errors": {"type": "boolean"},
    "products_applied": COUNT, "products_skipped": COUNT, "products_failed": COUNT,
    "variants_applied": COUNT, "units_received": COUNT,
    "products": {"type": "array", "items": obj(
        {"id": {"type": "string"}, "outcome": {"enum": ["applied", "skipped", "failed"]},
         "detail": {"type": "string"}, "received": COUNT},
        required=["id", "outcome", "received"])},
})
schemas.update({
    "ImportReport": obj({
        "summary": obj({
            "data_rows": COUNT, "products": COUNT, "variants": COUNT, "errors": COUNT, "warnings": COUNT,
            "infos": COUNT, "products_with_errors": COUNT, "receipt_units": COUNT,
            "truncated": {"type": "boolean", "description": "more than 10,000 findings: the list is cut, the counts are not"},
        }),
        "rows": {"type": "array", "items": obj({
            "line": {"type": "integer", "minimum": 1, "description": "the file's line (1 is the header)"},
            "severity": {"enum": ["error", "warning", "info"]},
            "code": {"enum": FINDING_CODES},
            "field": {"type": "string", "description": "the column (or header)"},
            "message": {"type": "string"},
        })},
    }),
    "Import": obj(
        {
            "id": {"type": "string", "format": "uuid", "description": "a UUIDv7"},
            "status": {"enum": ["ready", "applying", "applied"]},
            "format": {"enum": ["shopify", "omnistock"]},
            "created_at": TIME,
            "location": {"type": ["string", "null"], "description": "where stock quantities are received"},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "report": ref("ImportReport"),
            "progress": ref("ImportProgress"),
            "apply": APPLY_OUTCOME,
        },
        required=["id", "status", "format", "created_at", "location", "currency", "report"],
    ),
    "ImportApplyRequest": obj({"skip_rows_with_errors": {"type": "boolean"}}, required=[]),
    "ImportApplied": obj({"id": {"type": "string"}, "status": {"enum": ["applied"]}, "apply": APPLY_OUTCOME}),
    "ImportProgress": obj({
        "skip_rows_with_errors": {"type": "boolean"},
        "started_at": TIME,
        "products_total": COUNT,
        "products_done": COUNT,
        "retries": {**COUNT, "description": "transient failures in a row (retried with backoff; after 20 the "
                                            "job waits for another apply request)"},
        "last_error": {"type": "string"},
    }, required=["skip_rows_with_errors", "started_at", "products_total", "products_done"]),
    "ImportApplying": obj({"id": {"type": "string"}, "status": {"enum": ["applying"]},
                           "progress": ref("ImportProgress")}),
})
schemas["Problem"]["properties"]["errors"] = {"type": "integer", "description": "an import's error count (409 on apply)"}
paths.update({
    "/v1/catalog/imports": {"post": {
        **op("A catalog import's dry run (admin): the body is a CSV (Content-Type: text/csv, at most 4 MiB, "
             "20,000 rows) in Shopify's product export columns or omnistock's (product_id, title, sku, barcode, "
             "optionN_name, optionN_value, price, compare_at_price, taxable, qty). Answers the import's id and its "
             "cleaning report and changes nothing. 400 for a file that is not a table of either kind; 415 for "
             "another content type. The same Idempotency-Key and file: the same import",
             {"201": ok("Import", "Parsed and reported"),
              "413": problem("Body over 4 MiB"),
              "415": problem("The body is not text/csv")},
             params=[query("location", ID, "where the file's stock quantities would be received"),
                     query("currency", {"type": "string", "pattern": "^[A-Z]{3}$"},
                           "the prices' currency (default: the IMPORT_CURRENCY var)")],
             write=True),
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
    }},
    "/v1/catalog/imports/{id}": {"get": op(
        "An import and its report (admin); with Accept: text/csv the findings as CSV "
        "(line,severity,code,field,message)",
        {"200": {"description": "OK", "content": {"application/json": {"schema": ref("Import")},
                                                  "text/csv; charset=utf-8": {"schema": {"type": "string"}}}}},
        params=[path_param("id")])},
    "/v1/catalog/imports/{id}/apply": {"post": op(
        "Apply an import once (admin): each product with all its rows or none, its stock received at the "
        "import's location. 409 while the report has errors, unless skip_rows_with_errors (those products are "
        "left out). The apply is a job in the import's object, 10 products per step: the answer is 200 with "
        "the outcome when it finishes within about 8 s, else (or at once with Prefer: respond-async) 202 with its progress (follow it with GET "
        "/v1/catalog/imports/{id}; another apply request joins the same job). Applying again (any key) "
        "answers the first outcome",
        {"200": ok("ImportApplied"), "202": ok("ImportApplying", "Applying: the progress so far")},
        body="ImportApplyRequest", params=[path_param("id")], write=True)},
})
# ------------------------------------------------------------ end of catalog import

# ------------------------------------------------------------ receipts (issue 14)
RECEIPT_KINDS = ["sale", "order_paid", "order_fulfilled", "return", "refund", "exchange"]
_RMONEY = SIGNED_MONEY
_NAME = {"type": "string", "maxLength": 200}
schemas.update({
    "CustomerReceipt": obj({
        "kind": {"enum": RECEIPT_KINDS},
        "number": ID,
        "reference": {"type": ["string", "null"], "description": "for a return, refund or exchange: the sale or order id"},
        "shop": _NAME,
        "location": ID,
        "location_name": _NAME,
        "issued_at": TIME,
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "tax_inclusive": {"type": "boolean"},
        "lines": {"type": "array", "maxItems": 200, "items": obj({
            "sku": {"type": "string", "maxLength": 64},
            "title": _NAME,
            "options": {"type": "array", "maxItems": 10, "items": {
                "type": "array", "items": {"type": "string", "maxLength": 64}, "minItems": 2, "maxItems": 2}},
            "qty": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "unit_price": _RMONEY,
            "amount": _RMONEY,
            "discount": {"oneOf": [{"type": "null"}, _RMONEY]},
            "catalog_price": {"oneOf": [{"type": "null"}, _RMONEY]},
            "direction": {"enum": ["sold", "returned"]},
            "tax": obj({"rate": DECIMAL, "net": _RMONEY, "tax": _RMONEY, "gross": _RMONEY}),
        })},
        "taxes": {"type": "array", "items": obj({"rate": DECIMAL, "net": _RMONEY, "tax": _RMONEY, "gross": _RMONEY})},
        "totals": obj({k: _RMONEY for k in ["subtotal", "discount", "net", "tax", "total", "paid", "refunded",
                                             "change"]}),
        "payments": {"type": "array", "maxItems": 100, "items": obj({"method": {"type": "string", "maxLength": 32},
                                                                     "amount": _RMONEY})},
        "refunds": {"type": "array", "maxItems": 100, "items": obj({"method": {"type": "string", "maxLength": 32},
                                                                    "amount": _RMONEY})},
        "customer": {"oneOf": [{"type": "null"}, obj({
            "id": ID,
            "name": {"type": ["string", "null"]},
            "loyalty": {"oneOf": [{"type": "null"}, obj({"earned": {"type": "integer"},
                                                         "redeemed": {"type": "integer"},
                                                         "balance": {"type": "integer"}})]},
        })]},
        "return_window_days": {"type": "integer", "minimum": 0, "maximum": 365},
        "return_by": {"type": ["string", "null"], "format": "date-time"},
        "barcode": {**ID, "description": "the receipt number, drawn as Code 128 (set B) bars in the HTML form"},
        "copy": {"type": "boolean", "description": "a reprint (?copy=true), marked COPY - REPRINT in every form"},
    }),
    "ReceiptEmailRequest": obj({
        "to": {"type": "string", "maxLength": 254,
               "pattern": "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$",
               "description": "one email address"},
        "kind": {"enum": RECEIPT_KINDS, "description": "which receipt of the number; default as GET"},
    }, required=["to"]),
    "ReceiptEmail": obj({
        "id": {"type": "string", "format": "uuid", "description": "the message id (UUIDv7), sent to the provider as its Idempotency-Key"},
        "receipt": ID,
        "kind": {"enum": RECEIPT_KINDS},
        "to": {"type": "string"},
        "status": {"enum": ["queued"],
                   "description": "queued: the outbox delivers it (the first attempt is made before this answer; a "
                                  "failed one is retried with backoff 1 s doubling to 5 min, at most 8 attempts)"},
    }),
})
paths.update({
    "/v1/receipts/{id}": {"get": op(
        "The receipt of a sale, order or return id (admin and POS; a storefront only for online orders), by Accept: "
        "application/json (also */* and none), text/html (80 mm thermal paper and email: inline styles, no images, "
        "Code 128 bars as inline SVG; also text/*), text/plain (at most 42 columns per line, for ESC/POS); anything "
        "else is 406. The first read (or the sale) issues it; afterwards the stored receipt is served unchanged. "
        "An order has a receipt when paid and one when shipped or collected (default: the latest); a return one "
        "per stage (units received, refund, exchange; default: the latest). 409 invalid_transition: not yet issuable",
        {"200": {"description": "The receipt", "content": {
            "application/json": {"schema": ref("CustomerReceipt")},
            "text/html; charset=utf-8": {"schema": {"type": "string"}},
            "text/plain; charset=utf-8": {"schema": {"type": "string"}}}},
         "406": problem("Accept names none of application/json, text/html, text/plain")},
        params=[path_param("id"),
                query("kind", {"enum": RECEIPT_KINDS}, "which receipt of this number"),
                query("copy", {"enum": ["true", "false"]}, "a reprint: marked as a copy"),
                query("terminal", ID, "the sale's terminal, when the sale was recorded before receipts existed")])},
    "/v1/receipts/{id}/email": {"post": op(
        "Queue the receipt for email through the configured provider (Resend's HTTP API; EMAIL_API_URL, "
        "EMAIL_API_KEY, EMAIL_FROM): once per Idempotency-Key; an attempt that fails (network, 429, 5xx) is retried "
        "by the receipt's alarm. At most 20 emails per receipt (429). Without the provider's settings the email is "
        "still queued; its attempts fail until they are set (or it ends failed after 8)",
        {"202": ok("ReceiptEmail", "Queued (or sent already)"),
         "429": problem("This receipt was emailed 20 times")},
        body="ReceiptEmailRequest", params=[path_param("id")], write=True)},
})
# ------------------------------------------------------------ end of receipts
# --- customers and loyalty (issue 10) ---
# PUT/GET /v1/customers/{id}, GET /v1/customers?email=|phone=,
# POST /v1/customers/{id}/loyalty/redeem, POST /v1/customers/{id}/erase.
CONTACT = {"type": ["string", "null"], "maxLength": 254}
POINTS = {"type": "integer", "minimum": 0}
CUSTOMER_RETURN = obj({
    "return_id": ID, "at": TIME, "refunded": ref("Money"), "credited": ref("Money"),
    "lines": {"type": "array", "items": obj({"sku": ID, "qty": QTY})},
    "source": obj({"type": {"enum": ["order", "sale"]}, "id": ID}),
}, required=["return_id", "at", "refunded", "credited", "lines"])
schemas.update({
    "CustomerRequest": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00-\\x1f\\x7f]*$"},
        "email": {**CONTACT, "description": "trimmed and lowercased; local@domain.tld; one customer per email"},
        "phone": {"type": ["string", "null"], "maxLength": 32,
                  "description": "kept as E.164 (+ and 7 to 15 digits): + or 00 start an international number, "
                                 "otherwise one leading 0 is dropped and CUSTOMER_PHONE_COUNTRY_CODE prepended; "
                                 "spaces . - ( ) are separators; one customer per phone"},
    }, required=["name"]),
    "CustomerProfile": obj({"name": {"type": "string"}, "email": CONTACT, "phone": CONTACT}),
    "CustomerReturn": CUSTOMER_RETURN,
    "CustomerPurchase": obj({
        "source": obj({"type": {"enum": ["order", "sale"]}, "id": ID}),
        "channel": {"enum": ["online", "pos"]},
        "location": {"type": ["string", "null"]},
        "at": TIME,
        "total": ref("Money"),
        "lines": {"type": "array", "maxItems": 20, "items": obj({"sku": ID, "qty": QTY, "amount": ref("Money")})},
        "lines_omitted": {"type": "integer", "minimum": 0},
        "points_earned": POINTS,
        "points_reversed": POINTS,
        "returns": {"type": "array", "items": ref("CustomerReturn")},
    }),
    "Customer": obj({
        "id": ID,
        "profile": {"oneOf": [ref("CustomerProfile"), {"type": "null"}]},
        "erased": {"type": "boolean"},
        "erased_at": {"type": ["string", "null"], "format": "date-time"},
        "created_at": TIME,
        "updated_at": TIME,
        "version": {"type": "integer", "minimum": 0, "description": "rises with each profile change"},
        "loyalty": obj({
            "balance": POINTS, "earned": POINTS, "reversed": POINTS, "redeemed": POINTS,
            "shortfall": {**POINTS, "description": "points reversed after they were redeemed; later points pay it off first"},
            "points_per_unit_currency": DECIMAL,
            "rounding": {"type": "string"},
            "history": {"type": "array", "maxItems": 200, "items": obj({
                "at": TIME, "kind": {"enum": ["earned", "reversed", "redeemed"]}, "points": POINTS,
                "source": {"type": "string"}, "balance_after": POINTS, "shortfall_after": POINTS})},
            "history_dropped": {"type": "integer", "minimum": 0},
        }),
        "purchases": {"type": "array", "maxItems": 500, "items": ref("CustomerPurchase")},
        "unmatched_returns": {"type": "array", "items": ref("CustomerReturn"),
                              "description": "returns reported before their purchase arrived"},
    }),
    "CustomerLookup": obj({
        "as_of": TIME,
        "email": {"type": "string"},
        "phone": {"type": "string"},
        "customers": {"type": "array", "maxItems": 10, "items": obj({
            "id": ID, "name": {"type": ["string", "null"]}, "email": CONTACT, "phone": CONTACT,
            "version": {"type": "integer", "minimum": 0}, "updated_at": TIME})},
    }, required=["as_of", "customers"]),
    "RedeemRequest": obj({
        "points": {"type": "integer", "minimum": 1, "maximum": 1000000000},
        "reference": {**ID, "description": "the sale or order the points pay for"},
    }, required=["points"]),
    "Redeemed": obj({"customer_id": ID, "redeemed": {"type": "integer", "minimum": 1}, "balance": POINTS, "at": TIME}),
    "EraseRequest": obj({}),
})
schemas["Problem"]["properties"]["code"]["enum"] += ["insufficient_points", "contact_taken"]
schemas["Problem"]["properties"]["balance"] = POINTS
schemas["Problem"]["properties"]["requested"] = {"type": "integer"}
schemas["Problem"]["properties"]["field"] = {"type": "string"}
schemas["Problem"]["properties"]["customer_id"] = ID
paths.update({
    "/v1/customers": {"get": op(
        "Find customers by exact email or phone, normalised like a profile's (give exactly one); answered from the "
        "lookup index in D1 that each customer object keeps (as_of: the time of the read). Admin, storefront, POS",
        {"200": ok("CustomerLookup")},
        params=[query("email", {"type": "string", "maxLength": 254}),
                query("phone", {"type": "string", "maxLength": 254})])},
    "/v1/customers/{id}": {
        "put": op(
            "Create or update a customer's profile (admin, storefront, POS). 409 contact_taken (field, customer_id) "
            "when the email or phone belongs to another customer; 409 invalid_transition after an erasure",
            {"201": ok("Customer", "Created"), "200": ok("Customer")},
            body="CustomerRequest", params=[path_param("id")], write=True),
        "get": op(
            "The profile, purchases from every channel (POS sales at sale time, orders once every part is shipped, "
            "collected, returned or cancelled) with their returns, and the loyalty balance and history. Points = "
            "floor(total paid * LOYALTY_POINTS_PER_UNIT_CURRENCY); a purchase's returns reverse floor(earned * "
            "returned / total) of its points (refunds and exchange credit); balance = max(0, earned - reversed - "
            "redeemed). At most 500 purchases and 500 returns per customer, 20 lines shown per purchase, the last "
            "200 movements of points",
            {"200": ok("Customer")}, params=[path_param("id")]),
    },
    "/v1/customers/{id}/loyalty/redeem": {"post": op(
        "Redeem points, all or nothing (admin, storefront, POS): 409 insufficient_points (balance, requested) "
        "changes nothing; the same Idempotency-Key redeems once",
        {"200": ok("Redeemed")}, body="RedeemRequest", params=[path_param("id")], write=True)},
    "/v1/customers/{id}/erase": {"post": op(
        "Erase a customer on request (admin): name, email and phone removed for good (a tombstone stays); "
        "purchases, returns and points stay without personal data; the email and phone are free again",
        {"200": ok("Customer")}, body="EraseRequest", params=[path_param("id")], write=True)},
})
# --- end of customers and loyalty ---

# ------------------------------------------------------------ schemathesis (issue 12)
# Limits the Worker enforces that the document did not state, found by
# `make schemathesis` (scripts/schemathesis.sh). Kept in this one block.
NO_CONTROL = "^[^\\x00-\\x1f\\x7f]*$"  # the Worker refuses control characters in free text
IDEM["schema"]["pattern"] = "^[!-~]{1,255}$"  # 1 to 255 visible ASCII characters
schemas["AdjustmentRequest"]["properties"]["note"]["pattern"] = NO_CONTROL
schemas["ProductRequest"]["properties"]["title"]["pattern"] = NO_CONTROL
for _p in paths["/v1/barcodes/{barcode}"]["get"]["parameters"]:
    if _p["name"] == "barcode":
        _p["schema"] = {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}
for _p in paths["/v1/products"]["get"]["parameters"]:
    if _p["name"] == "query":
        _p["schema"] = {"type": "string", "maxLength": 100, "pattern": NO_CONTROL}
# A sale line's sku and barcode are optional (exactly one is given); null reads as absent.
_line = schemas["SaleRequest"]["properties"]["lines"]["items"]["properties"]
_line["sku"] = {"type": ["string", "null"], "pattern": ID["pattern"]}
_line["barcode"] = {"type": ["string", "null"]}
# ------------------------------------------------------------ end of schemathesis
# ------------------------------------------------------------ overload (issue 12)
# Per isolate (functions/src/overload.rs): more than MAX_IN_FLIGHT requests at
# once is a 503 overloaded (Retry-After: 1); more than RATE_LIMIT_PER_KEY per
# second for one key is a 429 rate_limited (Retry-After). Neither changed anything.
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before resending (same Idempotency-Key)",
                                "schema": {"type": "integer", "minimum": 1}}}
for _item in paths.values():
    for _o in _item.values():
        if not isinstance(_o, dict) or "responses" not in _o:
            continue
        _r = _o["responses"]
        _r["503"] = dict(problem("Overloaded (more requests in flight than this isolate serves at once) or a "
                                 "transient storage error: nothing changed; resend with the same Idempotency-Key "
                                 "after Retry-After"), headers=_RETRY_AFTER)
        if _o.get("security", None) != []:
            _r["429"] = dict(problem("Rate limited: more requests per second for this key than configured "
                                     "(per isolate); nothing changed; resend after Retry-After"),
                             headers=_RETRY_AFTER)
# Every answer has a Request-Id header (a UUIDv7); a problem also carries it.
schemas["Problem"]["properties"]["request_id"] = {
    "type": "string", "description": "The request's id (UUIDv7), as in the Request-Id header and the log"}
# ------------------------------------------------------------ end of overload


# --- edge cache (issue 13) ---
# Each availability item says how fresh it is: the owning object's clock when
# it was read (a cached read: at most 1 s before the answer; a bundle: its
# oldest component).
schemas["AvailabilityRow"]["properties"]["as_of"] = TIME
paths["/v1/availability"]["get"]["description"] = (
    "Storefront and publishable reads may come from the edge isolate's cache: every item at most 1 s "
    "stale (its as_of and version say how fresh), refreshed by expiry and ahead of it; writes through "
    "this isolate drop the SKU at once. consistency=strong, admin and POS reads go to the owning objects. "
    "The Omnistock-Cache header says how a read was answered (hit=, call=, followed= counts, or strong).")
# --- end of edge cache (issue 13) ---

# --- reports and accounting (issue 10) ---
# The event feed's read models: GET /v1/reports/weekly (JSON or text/csv),
# POST /v1/reports/weekly/build, GET /v1/accounting/export (qbo or csv),
# GET and POST /v1/accounting/sync. Admin keys only. Limits: a report reads at
# most 50,000 events per selection (`truncated` says so); 20 top sellers and
# 200 aging rows are listed (totals count all); a sync run posts at most 40
# receipts (the rest wait for the next run) and retries 429/5xx at most 3
# times per receipt (Retry-After honoured, 0.5 to 5 s); the sync log lists at
# most 500 receipts.
MONEY_LIST = {"type": "array", "items": obj({"amount": DECIMAL, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}})}
RATIO = {"type": ["string", "null"], "pattern": "^[0-9]+(\\.[0-9]+)?$", "description": "4 places, half away from zero; null when the denominator is 0"}
EPOCH_MS = {"type": "integer", "description": "epoch milliseconds"}
FRESH = {
    "as_of": {"type": ["string", "null"], "format": "date-time",
              "description": "every event before this time has reached the read model"},
    "sources": COUNT,
    "sources_behind": {"type": "integer", "minimum": 0, "description": "producing objects with events still waiting in their outbox"},
    "truncated": {"type": "boolean"},
}
WEEKLY_REPORT = obj({
    "start": EPOCH_MS, "end": EPOCH_MS, "location": {"type": ["string", "null"]},
    "units_sold": {"type": "integer"}, "revenue": MONEY_LIST,
    "top_sellers": {"type": "array", "maxItems": 20, "items": obj({
        "sku": ID, "units": {"type": "integer"}, "revenue": MONEY_LIST,
        "stockout_hours": DECIMAL, "stockout_locations": {"type": "array", "items": ID}})},
    "returns": {"type": "array", "items": obj({
        "sku": ID, "units_sold": {"type": "integer"}, "units_returned": {"type": "integer"},
        "return_rate": RATIO, "reasons": {"type": "object", "additionalProperties": {"type": "integer"}}})},
    "adjustments": {"type": "array", "items": obj({
        "reason": {"type": "string"}, "count": COUNT, "units_in": COUNT, "units_out": COUNT, "net": {"type": "integer"}})},
    "channels": {"type": "array", "items": obj({
        "channel": {"enum": ["online", "pos"]}, "units_sold": {"type": "integer"}, "revenue": MONEY_LIST,
        "on_hand_end": {"type": "integer"}, "sell_through": RATIO})},
    "sell_through": RATIO, "on_hand_end": {"type": "integer"},
    "aging": {"type": "array", "maxItems": 200, "items": obj({
        "sku": ID, "location": ID, "on_hand": {"type": "integer"},
        "last_sold_at": {"type": ["integer", "null"]}, "days_unsold": {"type": "integer"},
        "bucket": {"enum": [30, 60, 90]},
        "value": {"oneOf": [{"type": "null"}, obj({"amount": DECIMAL, "currency": {"type": "string"}})]}})},
    "aging_totals": {"type": "array", "items": obj({
        "bucket": {"enum": [30, 60, 90]}, "units": {"type": "integer"}, "value": MONEY_LIST,
        "units_unvalued": {"type": "integer"}})},
})
QBO_LINE = obj({
    "Id": {"type": "string"}, "LineNum": {"type": "integer"}, "Description": {"type": "string"},
    "Amount": {"type": "number"}, "DetailType": {"const": "SalesItemLineDetail"},
    "SalesItemLineDetail": obj({
        "ItemRef": obj({"value": {"type": "string"}, "name": {"type": "string"}}),
        "Qty": {"type": "integer"}, "UnitPrice": {"type": "number"},
        "TaxCodeRef": obj({"value": {"enum": ["TAX", "NON"]}})}),
})
QBO_RECEIPT = obj({
    "DocNumber": {"type": "string", "maxLength": 21}, "TxnDate": {"type": "string", "format": "date"},
    "PrivateNote": {"type": "string"}, "CurrencyRef": obj({"value": {"type": "string"}}),
    "GlobalTaxCalculation": {"enum": ["TaxInclusive", "TaxExcluded"]},
    "Line": {"type": "array", "items": QBO_LINE},
    "TxnTaxDetail": obj({"TotalTax": {"type": "number"}}),
    "PaymentMethodRef": obj({"value": {"type": "string"}, "name": {"type": "string"}}),
    "TotalAmt": {"type": "number"},
    "DepartmentRef": obj({"value": {"type": "string"}, "name": {"type": "string"}}),
}, required=["DocNumber", "TxnDate", "Line", "TxnTaxDetail", "PaymentMethodRef", "TotalAmt"])
schemas.update({
    "WeeklyReport": obj({
        "week": {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"}, "location": {"type": ["string", "null"]},
        "from": TIME, "to": TIME, **FRESH,
        "source": {"enum": ["stored", "live"]}, "built_at": TIME,
        "definitions": {"type": "object"}, "report": WEEKLY_REPORT}),
    "WeeklyBuildRequest": obj({"week": {"type": "string"}, "location": ID}, required=["week"]),
    "AccountingExport": obj({
        "date": {"type": "string", "format": "date"}, "as_of": FRESH["as_of"], "sources": COUNT,
        "sources_behind": COUNT, "truncated": {"type": "boolean"}, "generated_at": TIME,
        "SalesReceipt": {"type": "array", "items": QBO_RECEIPT},
        "RefundReceipt": {"type": "array", "items": QBO_RECEIPT},
        "totals": {"type": "array", "items": obj({
            "currency": {"type": "string"}, "sales_net": DECIMAL, "sales_tax": DECIMAL, "sales_total": DECIMAL,
            "refunds_total": DECIMAL, "receipts": COUNT})},
        "rounding": {"type": "string"}}),
    "SyncRequest": obj({"date": {"type": "string", "format": "date"}}),
    "SyncRun": obj({
        "date": {"type": "string"}, "configured": {"type": "boolean"}, "receipts": COUNT, "synced": COUNT,
        "already_synced": COUNT, "rejected": COUNT, "failed": COUNT, "deferred": COUNT, "retries": COUNT}),
    "SyncStatus": obj({
        "configured": {"type": "boolean"}, "date": {"type": ["string", "null"]},
        "counts": obj({"synced": COUNT, "pending": COUNT, "failed": COUNT, "rejected": COUNT}),
        "receipts": {"type": "array", "maxItems": 500, "items": obj({
            "doc": {"type": "string"}, "kind": {"enum": ["SalesReceipt", "RefundReceipt"]},
            "date": {"type": "string"}, "request_id": {"type": "string"},
            "status": {"enum": ["pending", "synced", "failed", "rejected"]}, "attempts": COUNT,
            "qbo_id": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
            "updated_at": TIME})}}),
})
DATE_Q = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
paths.update({
    "/v1/reports/weekly": {"get": op(
        "The weekly report (admin): top sellers against stockout hours, return rate per SKU and reasons, "
        "adjustments by reason, sell-through by channel, aging inventory; from the event feed, saying how "
        "current it is. The stored report when the Monday run (or a build) kept one, else computed now. "
        "Accept: text/csv gives section,key,subkey,metric,value rows",
        {"200": {"description": "OK", "content": {"application/json": {"schema": ref("WeeklyReport")},
                                                  "text/csv; charset=utf-8": {"schema": {"type": "string"}}}}},
        params=[query("week", {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"}, "ISO week; default: last week"),
                query("location", {"type": "string", "pattern": "^([A-Za-z0-9._-]{1,64})?$"},
                      "one location; empty or absent: all (API.md writes `location=`)")])},
    "/v1/reports/weekly/build": {"post": op(
        "Build and store a week's report now (admin); what the Monday Cron Trigger does for last week",
        {"201": ok("WeeklyReport", "Built and stored")}, body="WeeklyBuildRequest", write=True)},
    "/v1/accounting/export": {"get": op(
        "A day's sales and refunds as QuickBooks Online SalesReceipt and RefundReceipt entities, and their "
        "totals (admin); format=csv gives one row per receipt line",
        {"200": {"description": "OK", "content": {"application/json": {"schema": ref("AccountingExport")},
                                                  "text/csv; charset=utf-8": {"schema": {"type": "string"}}}}},
        params=[{**query("date", DATE_Q, "the UTC day"), "required": True},
                query("format", {"enum": ["qbo", "csv"]}, "default qbo")])},
    "/v1/accounting/sync": {
        "get": op("The QuickBooks Online sync log (admin): each receipt synced, pending, failed or rejected",
                  {"200": ok("SyncStatus")}, params=[query("date", DATE_Q)]),
        "post": op("Run the QuickBooks Online sync of a day now (admin); what the daily Cron Trigger does for "
                   "yesterday. Each receipt is posted once with a stable requestid",
                   {"200": ok("SyncRun")}, body="SyncRequest", write=True),
    },
})
# --- end of reports and accounting (issue 10) ---

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
