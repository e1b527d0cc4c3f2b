//! The running Worker's answers checked against the OpenAPI 3.1 document it
//! serves: every operation is exercised, every answer's status is documented
//! for it, and its body matches the documented schema.
use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::*;

/// A small JSON Schema checker: the keywords functions/openapi.json uses.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return check(doc, target, v, at, errs);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(|a| a.as_array()) {
            let ok = alts
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(doc, s, v, at, &mut e);
                    e.is_empty()
                })
                .count();
            if ok == 0 {
                errs.push(format!("{at}: matches none of {key}"));
            }
            return;
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            errs.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(|e| e.as_array()) {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            "null" => v.is_null(),
            _ => false,
        });
        if !fits {
            errs.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(|m| m.as_f64()), v.as_f64()) {
        if n < min {
            errs.push(format!("{at}: {n} < {min}"));
        }
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(|m| m.as_f64()), v.as_f64()) {
        if n > max {
            errs.push(format!("{at}: {n} > {max}"));
        }
    }
    if schema.get("format").and_then(|f| f.as_str()) == Some("date-time") {
        if let Some(s) = v.as_str() {
            if s.len() < 20 || !s.ends_with('Z') || s.as_bytes()[10] != b'T' {
                errs.push(format!("{at}: {s} is not an RFC 3339 UTC time"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(req) = schema.get("required").and_then(|r| r.as_array()) {
            for k in req.iter().filter_map(|k| k.as_str()) {
                if !obj.contains_key(k) {
                    errs.push(format!("{at}: missing {k}"));
                }
            }
        }
        let props = schema.get("properties").and_then(|p| p.as_object());
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, x, &format!("{at}.{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{at}: undocumented member {k}")),
                    Some(s @ Value::Object(_)) => check(doc, s, x, &format!("{at}.{k}"), errs),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}

/// The documented path template matching a concrete path.
fn template<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('?').next()?.split('/').collect();
    doc["paths"]
        .as_object()?
        .keys()
        .map(|k| k.as_str())
        .find(|k| {
            let t: Vec<&str> = k.split('/').collect();
            t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b)
        })
}

struct Checker<'a> {
    doc: Value,
    api: &'a Api,
    seen: BTreeSet<(String, String)>,
    errors: Vec<String>,
}

impl Checker<'_> {
    fn call(&mut self, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Resp {
        let auth = key.map(|k| format!("Bearer {k}"));
        let idem = unique("oa");
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        if method != "GET" {
            headers.push(("Idempotency-Key", &idem));
        }
        let r = self
            .api
            .request(method, path, &headers, body.map(|b| b.as_bytes()));
        let Some(t) = template(&self.doc, path) else {
            self.errors
                .push(format!("{method} {path}: no documented path"));
            return r;
        };
        let t = t.to_string();
        let m = method.to_lowercase();
        self.seen.insert((t.clone(), m.clone()));
        let op = self.doc["paths"][&t][&m].clone();
        if op.is_null() {
            self.errors.push(format!("{method} {t}: not documented"));
            return r;
        }
        let resp = &op["responses"][r.status.to_string()];
        if resp.is_null() {
            self.errors.push(format!(
                "{method} {path}: status {} not documented: {}",
                r.status, r.body
            ));
            return r;
        }
        let ct = r.header("content-type").unwrap_or("").to_string();
        let schema = &resp["content"][&ct]["schema"];
        if schema.is_null() {
            self.errors.push(format!(
                "{method} {path}: {} with undocumented content type {ct}",
                r.status
            ));
            return r;
        }
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let mut errs = Vec::new();
        check(&self.doc, schema, &v, "body", &mut errs);
        for e in errs {
            self.errors
                .push(format!("{method} {path} {}: {e}", r.status));
        }
        r
    }
}

#[test]
fn every_answer_matches_the_openapi_document() {
    let api = shared().api();
    let served = api.request("GET", "/v1/openapi.json", &[], None);
    assert_eq!(served.status, 200);
    let doc: Value = served.json();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("functions/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, file, "the served document is the committed one");
    assert_eq!(doc["openapi"], "3.1.0");

    let mut c = Checker {
        doc,
        api: &api,
        seen: BTreeSet::new(),
        errors: Vec::new(),
    };
    let sku = unique("OA");
    let bundle = unique("OAB");
    let product = unique("oap");
    let res = unique("oar");
    let loc = unique("oal");
    let digits: String = unique("x").chars().filter(|c| c.is_ascii_digit()).collect();
    let code = format!("41{digits:0>12}");
    c.call("GET", "/v1/health", None, None);
    c.call("GET", "/v1/openapi.json", None, None);
    c.call("GET", "/v1/config/fulfillment", Some(ADMIN), None);
    c.call("GET", "/v1/dev/keys", None, None);
    c.call("GET", "/v1/config/fulfillment", Some(PUBLISHABLE), None);
    c.call("PUT", &format!("/v1/locations/{loc}"), Some(ADMIN),
        Some(r#"{"name":"Pop-up","kind":"store","lat":1.5,"lon":2.5,"ships_online":false,"pickup":true}"#));
    c.call(
        "PUT",
        &format!("/v1/locations/{loc}"),
        Some(ADMIN),
        Some(r#"{"name":"Pop-up"}"#),
    );
    c.call(
        "GET",
        &format!("/v1/locations/{loc}"),
        Some(STOREFRONT),
        None,
    );
    c.call("GET", "/v1/locations/nowhere-x", Some(STOREFRONT), None);
    c.call("GET", "/v1/locations", Some(PUBLISHABLE), None);
    c.call("PUT", &format!("/v1/products/{product}"), Some(ADMIN), Some(&format!(
        r#"{{"title":"OA tee","variants":[{{"sku":"{sku}","barcode":"{code}","options":{{"size":"S"}},"price":{{"amount":"10.00","currency":"EUR"}},"tax_code":"std"}}]}}"#)));
    c.call(
        "PUT",
        &format!("/v1/products/{product}"),
        Some(ADMIN),
        Some(r#"{"title":"x","variants":[{"sku":"A","price":{"amount":"-1","currency":"EUR"}}]}"#),
    );
    c.call("GET", &format!("/v1/products/{product}"), Some(ADMIN), None);
    c.call(
        "GET",
        "/v1/products?query=OA&limit=5",
        Some(STOREFRONT),
        None,
    );
    c.call("GET", &format!("/v1/skus/{sku}"), Some(POS1), None);
    c.call("GET", "/v1/skus/NOPE-x", Some(POS1), None);
    c.call("GET", &format!("/v1/barcodes/{code}"), Some(POS1), None);
    c.call("PUT", &format!("/v1/bundles/{bundle}"), Some(ADMIN), Some(&format!(
        r#"{{"title":"Two tees","price":{{"amount":"18.00","currency":"EUR"}},"components":[{{"sku":"{sku}","qty":2}}]}}"#)));
    c.call("GET", &format!("/v1/bundles/{bundle}"), Some(ADMIN), None);
    c.call(
        "POST",
        "/v1/inventory/receipts",
        Some(ADMIN),
        Some(&format!(
            r#"{{"location":"store-1","reference":"PO-1","lines":[{{"sku":"{sku}","qty":10}}]}}"#
        )),
    );
    c.call(
        "POST",
        "/v1/inventory/receipts",
        Some(STOREFRONT),
        Some("{}"),
    );
    c.call("POST", "/v1/inventory/receipts", None, Some("{}"));
    c.call("POST", "/v1/inventory/receipts", Some(ADMIN), Some("{"));
    c.call(
        "PUT",
        "/v1/inventory/safety-stock",
        Some(ADMIN),
        Some(&format!(
            r#"{{"location":"store-1","sku":"{sku}","qty":1}}"#
        )),
    );
    c.call(
        "POST",
        "/v1/inventory/adjustments",
        Some(ADMIN),
        Some(&format!(
            r#"{{"location":"store-1","sku":"{sku}","delta":-1,"reason":"damaged"}}"#
        )),
    );
    c.call("POST", "/v1/inventory/adjustments", Some(ADMIN), Some(&format!(
        r#"{{"location":"store-1","sku":"{sku}","delta":-1,"reason":"damaged","expected_version":0}}"#)));
    c.call(
        "POST",
        "/v1/inventory/counts",
        Some(ADMIN),
        Some(&format!(
            r#"{{"location":"store-1","counted_at":"{}","lines":[{{"sku":"{sku}","counted":9}}]}}"#,
            rfc3339_ago(0)
        )),
    );
    c.call(
        "GET",
        &format!("/v1/availability?sku={sku}"),
        Some(PUBLISHABLE),
        None,
    );
    c.call(
        "GET",
        &format!("/v1/availability?sku={sku}&location=store-1&channel=pos"),
        Some(POS1),
        None,
    );
    c.call("GET", "/v1/availability?sku=a%20b", Some(PUBLISHABLE), None);
    c.call("POST", "/v1/reservations", Some(STOREFRONT), Some(&format!(
        r#"{{"id":"{res}","lines":[{{"sku":"{sku}","qty":2}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#)));
    c.call("POST", "/v1/reservations", Some(STOREFRONT), Some(&format!(
        r#"{{"id":"{res}","lines":[{{"sku":"{sku}","qty":2}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#)));
    c.call(
        "POST",
        "/v1/reservations",
        Some(STOREFRONT),
        Some(&format!(
            r#"{{"lines":[{{"sku":"{sku}","qty":999}}],"fulfillment":{{"type":"ship"}}}}"#
        )),
    );
    c.call(
        "GET",
        &format!("/v1/reservations/{res}"),
        Some(STOREFRONT),
        None,
    );
    c.call(
        "POST",
        &format!("/v1/reservations/{res}/extend"),
        Some(STOREFRONT),
        Some(r#"{"ttl_seconds":1200}"#),
    );
    c.call(
        "DELETE",
        &format!("/v1/reservations/{res}"),
        Some(STOREFRONT),
        None,
    );
    c.call(
        "GET",
        "/v1/reservations/no-such-res",
        Some(STOREFRONT),
        None,
    );
    c.call(
        "POST",
        "/v1/reservations/no-such-res/extend",
        Some(STOREFRONT),
        Some("{}"),
    );
    let sale = |id: &str, seq: u64| {
        format!(
            r#"{{"sale_id":"{id}","terminal_id":"oa-t","device_seq":{seq},"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"10.00","currency":"EUR"}}}}],"payments":[{{"method":"cash","amount":{{"amount":"10.00","currency":"EUR"}}}}]}}"#,
            rfc3339_ago(1000)
        )
    };
    c.call(
        "POST",
        "/v1/pos/sales",
        Some(POS1),
        Some(&sale(&unique("oas"), 1)),
    );
    c.call(
        "POST",
        "/v1/pos/sales/batch",
        Some(POS1),
        Some(&format!(
            r#"{{"sales":[{},{}]}}"#,
            sale(&unique("oas"), 3),
            sale(&unique("oas"), 2)
        )),
    );
    c.call(
        "GET",
        &format!("/v1/skus/{sku}/ledger?location=store-1&limit=50"),
        Some(ADMIN),
        None,
    );
    // Live availability: a plain GET (no upgrade) is a 426 problem.
    c.call(
        "GET",
        &format!("/v1/availability/live?sku={sku}&key={PUBLISHABLE}"),
        None,
        None,
    );

    // ------------------------------------------------ transfers and unavailable (issue 8)
    let tsku = api.new_sku("store-1", 10);
    let unav = |qty: i64, from: &str, to: &str, reason: &str| {
        format!(
            r#"{{"location":"store-1","sku":"{tsku}","qty":{qty},"from":{from},"to":{to},"reason":"{reason}","note":"oa"}}"#
        )
    };
    let u = unav(2, "null", r#""damaged""#, "damaged");
    c.call("POST", "/v1/inventory/unavailable", Some(ADMIN), Some(&u));
    let u = unav(1, r#""damaged""#, "null", "written_off");
    c.call("POST", "/v1/inventory/unavailable", Some(POS1), Some(&u));
    let u = unav(1, r#""damaged""#, r#""quality_control""#, "repaired");
    c.call("POST", "/v1/inventory/unavailable", Some(ADMIN), Some(&u));
    let tr = unique("oat");
    let tbody = |id: &str, to: &str| {
        format!(
            r#"{{"id":"{id}","from":"store-1","to":"{to}","lines":[{{"sku":"{tsku}","qty":3}}],"note":"oa"}}"#
        )
    };
    c.call(
        "POST",
        "/v1/transfers",
        Some(ADMIN),
        Some(&tbody(&tr, "store-2")),
    );
    c.call(
        "POST",
        "/v1/transfers",
        Some(ADMIN),
        Some(&tbody(&tr, "store-1")),
    );
    c.call("GET", &format!("/v1/transfers/{tr}"), Some(ADMIN), None);
    c.call(
        "POST",
        &format!("/v1/transfers/{tr}/ship"),
        Some(ADMIN),
        Some("{}"),
    );
    c.call(
        "POST",
        &format!("/v1/transfers/{tr}/cancel"),
        Some(ADMIN),
        Some("{}"),
    );
    c.call(
        "POST",
        &format!("/v1/transfers/{tr}/receive"),
        Some(ADMIN),
        Some(&format!(r#"{{"lines":[{{"sku":"{tsku}","qty":1}}]}}"#)),
    );
    c.call(
        "POST",
        &format!("/v1/transfers/{tr}/receive"),
        Some(ADMIN),
        Some(r#"{"lines":[],"close":true}"#),
    );
    c.call("GET", "/v1/transfers/no-such-oat", Some(ADMIN), None);
    let tr2 = unique("oat");
    c.call(
        "POST",
        "/v1/transfers",
        Some(ADMIN),
        Some(&tbody(&tr2, "store-2")),
    );
    c.call(
        "POST",
        &format!("/v1/transfers/{tr2}/cancel"),
        Some(ADMIN),
        Some("{}"),
    );
    c.call(
        "POST",
        &format!("/v1/transfers/{tr2}/ship"),
        Some(ADMIN),
        Some("{}"),
    );
    // ------------------------------------------------ end of transfers and unavailable
    // ---- orders (issue 8, orders part) ----
    let osku = api.new_sku("store-1", 5);
    let oid = unique("oa-ord");
    let order = format!(
        r#"{{"id":"{oid}","customer_id":"c-1","lines":[{{"sku":"{osku}","qty":2}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#
    );
    c.call("POST", "/v1/orders", Some(ADMIN), Some(&order));
    c.call("POST", "/v1/orders", Some(ADMIN), Some(&order));
    let short = format!(
        r#"{{"id":"{}","lines":[{{"sku":"{osku}","qty":99}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#,
        unique("oa-ord")
    );
    c.call("POST", "/v1/orders", Some(ADMIN), Some(&short));
    let moves = format!("/v1/orders/{oid}/transitions");
    c.call("POST", &moves, Some(ADMIN), Some(r#"{"to":"paid"}"#));
    c.call("POST", &moves, Some(ADMIN), Some(r#"{"to":"shipped"}"#));
    c.call("GET", &format!("/v1/orders/{oid}"), Some(ADMIN), None);
    c.call("GET", "/v1/orders/oa-no-such-order", Some(ADMIN), None);
    c.call("GET", "/v1/orders?limit=2&status=paid", Some(ADMIN), None);
    c.call("GET", "/v1/orders?limit=0", Some(ADMIN), None);
    // ---- end of orders ----
    // Returns (issue 8): initiate, receive, refund, read; and refusals.
    let rsale = unique("oas");
    c.call("POST", "/v1/pos/sales", Some(POS1), Some(&sale(&rsale, 4)));
    let ret = unique("oaret");
    let rbody = |qty: i64| {
        format!(
            r#"{{"id":"{ret}","sale_id":"{rsale}","lines":[{{"sku":"{sku}","qty":{qty},"reason":"damaged box"}}]}}"#
        )
    };
    c.call("POST", "/v1/returns", Some(POS1), Some(&rbody(2)));
    c.call("POST", "/v1/returns", Some(POS1), Some(&rbody(1)));
    c.call("POST", "/v1/returns", Some(POS1), Some(&rbody(1)));
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/refund"),
        Some(POS1),
        Some(r#"{"amount":{"amount":"1.00","currency":"EUR"}}"#),
    );
    let receive = format!(
        r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1,"condition":"damaged"}}]}}"#
    );
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/receive"),
        Some(POS1),
        Some(&receive),
    );
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/receive"),
        Some(POS1),
        Some(&receive),
    );
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/refund"),
        Some(POS1),
        Some(r#"{"amount":{"amount":"10.01","currency":"EUR"}}"#),
    );
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/refund"),
        Some(POS1),
        Some(r#"{"amount":{"amount":"10.00","currency":"EUR"}}"#),
    );
    c.call("GET", &format!("/v1/returns/{ret}"), Some(ADMIN), None);
    c.call(
        "POST",
        &format!("/v1/returns/{ret}/exchange"),
        Some(POS1),
        Some(&format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1}}]}}"#
        )),
    );
    c.call("GET", "/v1/returns/no-such-return", Some(ADMIN), None);
    // Receipts (issue 14): a sale's and a return's, an unknown number, and
    // email (queued: the shared server has no provider; bad input: 400).
    c.call("GET", &format!("/v1/receipts/{rsale}"), Some(POS1), None);
    c.call("GET", &format!("/v1/receipts/{ret}"), Some(ADMIN), None);
    c.call("GET", "/v1/receipts/no-such-receipt", Some(ADMIN), None);
    let mail = format!("/v1/receipts/{rsale}/email");
    c.call(
        "POST",
        &mail,
        Some(POS1),
        Some(r#"{"to":"ada@example.com"}"#),
    );
    c.call("POST", &mail, Some(POS1), Some(r#"{"to":"nobody"}"#));

    // Catalog import (issue 11): a CSV body is not JSON, so the dry run is
    // made directly and checked here; the checker sees the 415 and the rest.
    c.call("POST", "/v1/catalog/imports", Some(ADMIN), Some("{}"));
    let isku = unique("OAI");
    let csv = format!("product_id,title,sku,price,qty\n{isku},OA import,{isku},2.00,1\n");
    let r = c.api.request(
        "POST",
        "/v1/catalog/imports?location=store-1",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Idempotency-Key", &unique("oa")),
            ("Content-Type", "text/csv"),
        ],
        Some(csv.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut errs = Vec::new();
    let import_schema = serde_json::json!({"$ref": "#/components/schemas/Import"});
    check(&c.doc, &import_schema, &r.json(), "import", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    let iid = r.json()["id"].as_str().unwrap().to_string();
    c.call(
        "GET",
        &format!("/v1/catalog/imports/{iid}"),
        Some(ADMIN),
        None,
    );
    c.call(
        "POST",
        &format!("/v1/catalog/imports/{iid}/apply"),
        Some(ADMIN),
        Some("{}"),
    );
    c.call(
        "GET",
        &format!("/v1/catalog/imports/{iid}"),
        Some(ADMIN),
        None,
    );
    c.call(
        "GET",
        "/v1/catalog/imports/no-such-import",
        Some(ADMIN),
        None,
    );

    // Customers and loyalty (issue 10).
    let cust = unique("oacust");
    let email = format!("{}@example.com", unique("oa").to_lowercase());
    c.call(
        "PUT",
        &format!("/v1/customers/{cust}"),
        Some(ADMIN),
        Some(&format!(
            r#"{{"name":"Oa","email":"{email}","phone":"+44 20 7946 0{}"}}"#,
            100 + cust.len() % 800
        )),
    );
    c.call(
        "PUT",
        &format!("/v1/customers/{cust}"),
        Some(ADMIN),
        Some(r#"{"name":""}"#),
    );
    c.call(
        "PUT",
        &format!("/v1/customers/{}", unique("oacust")),
        Some(ADMIN),
        Some(&format!(r#"{{"name":"Other","email":"{email}"}}"#)),
    );
    c.call("GET", &format!("/v1/customers/{cust}"), Some(ADMIN), None);
    c.call("GET", "/v1/customers/no-such-customer", Some(ADMIN), None);
    c.call(
        "GET",
        &format!("/v1/customers?email={email}"),
        Some(POS1),
        None,
    );
    c.call("GET", "/v1/customers?phone=not-a-phone", Some(POS1), None);
    c.call(
        "POST",
        &format!("/v1/customers/{cust}/loyalty/redeem"),
        Some(POS1),
        Some(r#"{"points":5}"#),
    );
    c.call(
        "POST",
        &format!("/v1/customers/{cust}/erase"),
        Some(POS1),
        Some("{}"),
    );
    c.call(
        "POST",
        &format!("/v1/customers/{cust}/erase"),
        Some(ADMIN),
        Some("{}"),
    );
    // Reports and accounting (issue 10).
    for path in [
        "/v1/reports/weekly?week=2026-W48",
        "/v1/reports/weekly?week=2026-W48&location=store-1",
        "/v1/reports/weekly?week=2026-W99",
        "/v1/accounting/export?date=2026-11-24&format=qbo",
        "/v1/accounting/export?date=2026-11-31",
        "/v1/accounting/sync",
        "/v1/accounting/sync?date=2026-11-24",
    ] {
        c.call("GET", path, Some(ADMIN), None);
    }
    c.call(
        "POST",
        "/v1/reports/weekly/build",
        Some(ADMIN),
        Some(r#"{"week":"2026-W40"}"#),
    );
    c.call(
        "POST",
        "/v1/accounting/sync",
        Some(ADMIN),
        Some(r#"{"date":"2026-11-24"}"#),
    );
    c.call(
        "POST",
        "/v1/accounting/sync",
        Some(ADMIN),
        Some(r#"{"date":"yesterday"}"#),
    );

    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&c.seen).collect();
    assert!(missed.is_empty(), "operations never exercised: {missed:?}");
    assert!(
        c.errors.is_empty(),
        "answers that differ from the document:\n{}",
        c.errors.join("\n")
    );
}

#[test]
fn the_schema_checker_catches_mismatches() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("functions/openapi.json")).unwrap(),
    )
    .unwrap();
    let row = serde_json::json!({"$ref": "#/components/schemas/Reservation"});
    let good = serde_json::json!({"id": "r1", "status": "active", "expires_at": "2026-01-01T00:00:00.000Z",
        "lines": [{"sku": "A", "qty": 1, "location": "store-1"}], "created_at": "2026-01-01T00:00:00.000Z"});
    let mut errs = Vec::new();
    check(&doc, &row, &good, "body", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    for bad in [
        serde_json::json!({"id": "r1"}),
        {
            let mut b = good.clone();
            b["status"] = "paid".into();
            b
        },
        {
            let mut b = good.clone();
            b["lines"][0]["qty"] = "1".into();
            b
        },
        {
            let mut b = good.clone();
            b["surprise"] = 1.into();
            b
        },
        {
            let mut b = good.clone();
            b["created_at"] = "yesterday".into();
            b
        },
    ] {
        let mut errs = Vec::new();
        check(&doc, &row, &bad, "body", &mut errs);
        assert!(!errs.is_empty(), "{bad} passed");
    }
    assert_eq!(
        template(&doc, "/v1/reservations/abc/extend"),
        Some("/v1/reservations/{id}/extend")
    );
    assert_eq!(template(&doc, "/v1/nothing"), None);
}
