//! Issue 4's bad-input battery: one table of malformed requests across every
//! endpoint (types, sizes, encodings, ids, quantities, roles, headers), each
//! answered with the right 4xx problem+json, none with a 5xx, and nothing
//! changed by any of them.
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::concurrency::now_rfc3339;
use crate::harness::*;

/// One malformed request and the answer it must get.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    /// Headers as sent; `None` leaves the header out.
    auth: Option<String>,
    idem: Option<String>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    /// Send the body with chunked transfer encoding (no Content-Length).
    chunked: bool,
    status: u16,
    code: &'static str,
}

fn case(
    name: &str,
    method: &'static str,
    path: &str,
    key: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    let body: Vec<u8> = body.into();
    let write = method != "GET";
    Case {
        name: name.to_string(),
        method,
        path: path.to_string(),
        auth: Some(format!("Bearer {key}")),
        idem: write.then(|| unique("bad")),
        content_type: write.then(|| "application/json".to_string()),
        body: write.then_some(body),
        chunked: false,
        status,
        code,
    }
}

/// A GET with this key.
fn get(name: &str, path: &str, key: &str, status: u16, code: &'static str) -> Case {
    case(name, "GET", path, key, "", status, code)
}

impl Case {
    fn auth(mut self, v: Option<&str>) -> Case {
        self.auth = v.map(str::to_string);
        self
    }
    fn idem(mut self, v: Option<&str>) -> Case {
        self.idem = v.map(str::to_string);
        self
    }
    fn chunked(mut self) -> Case {
        self.chunked = true;
        self
    }
}

fn send(agent: &ureq::Agent, base: &str, c: &Case) -> Result<Resp, String> {
    let mut req = agent.request(c.method, &format!("{base}{}", c.path));
    for (k, v) in [
        ("Authorization", &c.auth),
        ("Idempotency-Key", &c.idem),
        ("Content-Type", &c.content_type),
    ] {
        if let Some(v) = v {
            req = req.set(k, v);
        }
    }
    let r = match (&c.body, c.chunked) {
        (Some(b), true) => req.send(std::io::Cursor::new(b.clone())),
        (Some(b), false) => req.send_bytes(b),
        (None, _) => req.call(),
    };
    Resp::read(r)
}

/// What a problem+json answer must look like; `Err` says what is wrong.
fn check_problem(r: &Resp, status: u16, code: &str) -> Result<(), String> {
    if r.status != status {
        return Err(format!("status {} (want {status})", r.status));
    }
    if r.header("content-type") != Some("application/problem+json") {
        return Err(format!("content-type {:?}", r.header("content-type")));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("not JSON: {e}"))?;
    if v["code"] != code {
        return Err(format!("code {} (want {code})", v["code"]));
    }
    if v["status"] != status {
        return Err(format!("body status {}", v["status"]));
    }
    for f in ["type", "title", "detail"] {
        if !v[f].is_string() {
            return Err(format!("{f} missing"));
        }
    }
    if r.body.contains("sk_dev") || r.body.contains("pk_dev") {
        return Err("a key leaked into the body".into());
    }
    Ok(())
}

/// Everything the battery could have touched, as the API shows it.
fn snapshot(api: &Api, sku: &str, rid: &str, pid: &str) -> Value {
    // Named locations: other tests add locations to the shared server.
    let locs = "store-1,store-2,warehouse-1";
    let avail = api.get(
        &format!("/v1/availability?sku={sku}&location={locs}"),
        ADMIN,
    );
    assert_eq!(avail.status, 200, "{}", avail.body);
    let pos = api.get(
        &format!("/v1/availability?sku={sku}&location={locs}&channel=pos"),
        ADMIN,
    );
    assert_eq!(pos.status, 200, "{}", pos.body);
    let ledger = api.get(&format!("/v1/skus/{sku}/ledger?limit=1000"), ADMIN);
    assert_eq!(ledger.status, 200, "{}", ledger.body);
    let res = api.get(&format!("/v1/reservations/{rid}"), STOREFRONT);
    assert_eq!(res.status, 200, "{}", res.body);
    let product = api.get(&format!("/v1/products/{pid}"), ADMIN);
    assert_eq!(product.status, 200, "{}", product.body);
    // Other tests add locations to the shared server: only ours is compared.
    let locations = api.get("/v1/locations/store-1", ADMIN);
    assert_eq!(locations.status, 200, "{}", locations.body);
    json!({
        "online": without_as_of(avail.json()["items"].clone()),
        "pos": without_as_of(pos.json()["items"].clone()),
        "ledger": ledger.json()["items"],
        "reservation": res.json(),
        "product": product.json(),
        "locations": locations.json(),
    })
}

#[test]
fn bad_input_battery_is_all_4xx_problems_and_changes_nothing() {
    let api = shared().api();
    let pid = unique("bp");
    let sku = unique("BSKU");
    let r = api.send(
        "PUT",
        &format!("/v1/products/{pid}"),
        ADMIN,
        &format!(
            r#"{{"title":"Battery","variants":[{{"sku":"{sku}","options":{{"size":"M"}},"price":{{"amount":"9.99","currency":"EUR"}}}}]}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    api.receive(&sku, "store-1", 7);
    let rid = unique("bcart");
    let r = api.reserve(&rid, &[(&sku, 1)], "store-1", 3600);
    assert_eq!(r.status, 201, "{}", r.body);
    let before = snapshot(&api, &sku, &rid, &pid);

    let now = now_rfc3339();
    let receipt = |lines: &str| format!(r#"{{"location":"store-1","lines":{lines}}}"#);
    let line = |s: &str, q: &str| format!(r#"{{"sku":"{s}","qty":{q}}}"#);
    let ok_receipt = receipt(&format!("[{}]", line(&sku, "1")));
    let reservation = |id: &str, lines: &str, extra: &str| {
        format!(
            r#"{{"id":"{id}","lines":{lines},"fulfillment":{{"type":"pickup","location":"store-1"}}{extra}}}"#
        )
    };
    let one = format!("[{}]", line(&sku, "1"));
    let many = |n: usize| {
        format!(
            "[{}]",
            (0..n)
                .map(|_| line(&sku, "1"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let sale_line =
        format!(r#"{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}"#);
    let sale = |id: &str, loc: &str, lines: &str, extra: &str| {
        format!(
            r#"{{"sale_id":"{id}","terminal_id":"bt-1","device_seq":1,"location":"{loc}","occurred_at":"{now}","lines":{lines},"payments":[{{"method":"card","amount":{{"amount":"9.99","currency":"EUR"}}}}]{extra}}}"#
        )
    };
    let ok_sale = |id: &str| sale(id, "store-1", &format!("[{sale_line}]"), "");
    let adjust = |fields: &str| format!(r#"{{"location":"store-1","sku":"{sku}",{fields}}}"#);
    let count = |counted_at: &str, lines: &str| {
        format!(r#"{{"location":"store-1","counted_at":"{counted_at}","lines":{lines}}}"#)
    };
    let count_line = |c: &str| format!(r#"{{"sku":"{sku}","counted":{c}}}"#);
    let product = |variant: &str| format!(r#"{{"title":"Battery","variants":[{variant}]}}"#);
    let location = |fields: &str| {
        format!(
            r#"{{"name":"Downtown","kind":"store","lat":52.52,"lon":13.405,"ships_online":true,"pickup":true{fields}}}"#
        )
    };
    let rcp = "/v1/inventory/receipts";
    let res_path = "/v1/reservations";
    let ext = format!("/v1/reservations/{rid}/extend");
    let one_res = format!("/v1/reservations/{rid}");
    let adj = "/v1/inventory/adjustments";
    let cnt = "/v1/inventory/counts";
    let ss = "/v1/inventory/safety-stock";
    let sales = "/v1/pos/sales";
    let batch = "/v1/pos/sales/batch";
    let ledger = format!("/v1/skus/{sku}/ledger");
    let avail = |q: &str| format!("/v1/availability?{q}");
    let long = "A".repeat(65);
    let skus101 = (0..101)
        .map(|i| format!("S{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let huge_body = receipt(&format!(
        r#"[{}], "reference":"{}""#,
        line(&sku, "1"),
        "x".repeat(70_000)
    ));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let mut non_utf8 = b"{\"location\":\"store-\xff\xfe\",\"lines\":".to_vec();
    non_utf8.extend_from_slice(one.as_bytes());
    non_utf8.push(b'}');

    use Case as C;
    #[rustfmt::skip]
    let cases: Vec<C> = vec![
        // ---- receipts: JSON shape and types
        case("malformed JSON", "POST", rcp, ADMIN, r#"{"location":"#, 400, "invalid_request"),
        case("trailing garbage", "POST", rcp, ADMIN, format!("{ok_receipt} x"), 400, "invalid_request"),
        case("array body", "POST", rcp, ADMIN, "[1,2]", 400, "invalid_request"),
        case("string body", "POST", rcp, ADMIN, r#""receipt""#, 400, "invalid_request"),
        case("null body", "POST", rcp, ADMIN, "null", 400, "invalid_request"),
        case("empty body", "POST", rcp, ADMIN, "", 400, "invalid_request"),
        case("deeply nested JSON", "POST", rcp, ADMIN, deep.clone(), 400, "invalid_request"),
        case("non-UTF-8 bytes", "POST", rcp, ADMIN, non_utf8, 400, "invalid_request"),
        case("UTF-8 byte order mark", "POST", rcp, ADMIN, format!("\u{feff}{ok_receipt}"), 400, "invalid_request"),
        case("unknown field", "POST", rcp, ADMIN, format!(r#"{{"location":"store-1","lines":{one},"extra":1}}"#), 400, "invalid_request"),
        case("unknown line field", "POST", rcp, ADMIN, receipt(&format!(r#"[{{"sku":"{sku}","qty":1,"price":2}}]"#)), 400, "invalid_request"),
        case("duplicate field", "POST", rcp, ADMIN, format!(r#"{{"location":"store-1","location":"store-2","lines":{one}}}"#), 400, "invalid_request"),
        case("missing lines", "POST", rcp, ADMIN, r#"{"location":"store-1"}"#, 400, "invalid_request"),
        case("lines is an object", "POST", rcp, ADMIN, receipt(&line(&sku, "1")), 400, "invalid_request"),
        case("location is a number", "POST", rcp, ADMIN, format!(r#"{{"location":1,"lines":{one}}}"#), 400, "invalid_request"),
        case("sku is null", "POST", rcp, ADMIN, receipt(r#"[{"sku":null,"qty":1}]"#), 400, "invalid_request"),
        case("qty is a string", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, r#""1""#))), 400, "invalid_request"),
        case("qty is a bool", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "true"))), 400, "invalid_request"),
        // ---- receipts: quantities and lines
        case("negative qty", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "-1"))), 400, "invalid_request"),
        case("fractional qty", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "1.5"))), 400, "invalid_request"),
        case("qty in exponent form", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "1e3"))), 400, "invalid_request"),
        case("qty over 1,000,000", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "1000001"))), 400, "invalid_request"),
        case("qty beyond i64", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "99999999999999999999999"))), 400, "invalid_request"),
        case("qty beyond f64", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&sku, "1e400"))), 400, "invalid_request"),
        case("no lines", "POST", rcp, ADMIN, receipt("[]"), 400, "invalid_request"),
        case("101 lines", "POST", rcp, ADMIN, receipt(&many(101)), 400, "invalid_request"),
        case("reference of 201 characters", "POST", rcp, ADMIN, format!(r#"{{"location":"store-1","reference":"{}","lines":{one}}}"#, "r".repeat(201)), 400, "invalid_request"),
        case("reference with a control character", "POST", rcp, ADMIN, format!(r#"{{"location":"store-1","reference":"a\u0007b","lines":{one}}}"#), 400, "invalid_request"),
        // ---- receipts: ids
        case("SKU with a space", "POST", rcp, ADMIN, receipt(&format!("[{}]", line("TEE BLK", "1"))), 400, "invalid_request"),
        case("SKU with a slash", "POST", rcp, ADMIN, receipt(&format!("[{}]", line("a/b", "1"))), 400, "invalid_request"),
        case("SKU of 65 characters", "POST", rcp, ADMIN, receipt(&format!("[{}]", line(&long, "1"))), 400, "invalid_request"),
        case("unicode SKU", "POST", rcp, ADMIN, receipt(&format!("[{}]", line("T\u{c9}E-\u{1f455}", "1"))), 400, "invalid_request"),
        case("empty SKU", "POST", rcp, ADMIN, receipt(&format!("[{}]", line("", "1"))), 400, "invalid_request"),
        case("location of 65 characters", "POST", rcp, ADMIN, format!(r#"{{"location":"{long}","lines":{one}}}"#), 400, "invalid_request"),
        case("unknown SKU", "POST", rcp, ADMIN, receipt(&format!("[{}]", line("NO-SUCH-SKU-x", "1"))), 404, "not_found"),
        case("unknown location", "POST", rcp, ADMIN, format!(r#"{{"location":"nowhere","lines":{one}}}"#), 404, "not_found"),
        // ---- sizes
        case("body over 64 KiB", "POST", rcp, ADMIN, huge_body.clone(), 413, "payload_too_large"),
        case("chunked body over 64 KiB", "POST", rcp, ADMIN, huge_body, 413, "payload_too_large")
.chunked(),
        // ---- authentication and roles
        case("no Authorization", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(None),
        case("unknown key", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(Some("Bearer sk_dev_nope")),
        case("key prefix", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(Some("Bearer sk_dev_admi")),
        case("Basic scheme", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(Some("Basic c2tfZGV2X2FkbWluOg==")),
        case("bare key, no scheme", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(Some(ADMIN)),
        case("Bearer without a key", "POST", rcp, ADMIN, ok_receipt.clone(), 401, "unauthorized")
.auth(Some("Bearer")),
        case("storefront posting a receipt", "POST", rcp, STOREFRONT, ok_receipt.clone(), 403, "forbidden"),
        case("publishable posting a receipt", "POST", rcp, PUBLISHABLE, ok_receipt.clone(), 403, "forbidden"),
        case("POS posting a receipt", "POST", rcp, POS1, ok_receipt.clone(), 403, "forbidden"),
        // ---- Idempotency-Key
        case("no Idempotency-Key", "POST", rcp, ADMIN, ok_receipt.clone(), 400, "invalid_request")
.idem(None),
        case("empty Idempotency-Key", "POST", rcp, ADMIN, ok_receipt.clone(), 400, "invalid_request")
.idem(Some("")),
        case("Idempotency-Key of 256 characters", "POST", rcp, ADMIN, ok_receipt.clone(), 400, "invalid_request")
.idem(Some(&"k".repeat(256))),
        case("Idempotency-Key with a space", "POST", rcp, ADMIN, ok_receipt.clone(), 400, "invalid_request")
.idem(Some("a b")),
        // ---- methods and paths
        case("GET on receipts", "GET", rcp, ADMIN, "", 405, "invalid_request"),
        case("PUT on receipts", "PUT", rcp, ADMIN, ok_receipt.clone(), 405, "invalid_request"),
        case("PATCH on a reservation", "PATCH", &one_res, STOREFRONT, "{}", 405, "invalid_request"),
        case("DELETE on availability", "DELETE", &avail(&format!("sku={sku}")), ADMIN, "", 405, "invalid_request"),
        case("POST on safety stock", "POST", ss, ADMIN, format!(r#"{{"location":"store-1","sku":"{sku}","qty":1}}"#), 405, "invalid_request"),
        case("cross-origin preflight on a write", "OPTIONS", rcp, ADMIN, "", 403, "forbidden"),
        get("unknown path", "/v1/nope", ADMIN, 404, "not_found"),
        get("unknown version", "/v2/health", ADMIN, 404, "not_found"),
        case("extra path segment", "POST", "/v1/inventory/receipts/extra", ADMIN, ok_receipt.clone(), 404, "not_found"),
        // ---- availability
        get("availability without sku", &avail("location=store-1"), ADMIN, 400, "invalid_request"),
        get("availability with an empty sku", &avail("sku=,,"), ADMIN, 400, "invalid_request"),
        get("availability channel=foo", &avail(&format!("sku={sku}&channel=foo")), ADMIN, 400, "invalid_request"),
        get("availability with two channels", &avail(&format!("sku={sku}&channel=online&channel=pos")), ADMIN, 400, "invalid_request"),
        get("availability of 101 SKUs", &avail(&format!("sku={skus101}")), PUBLISHABLE, 400, "invalid_request"),
        get("availability of a SKU with a space", &avail("sku=a%20b"), PUBLISHABLE, 400, "invalid_request"),
        get("availability of a 65-character SKU", &avail(&format!("sku={long}")), PUBLISHABLE, 400, "invalid_request"),
        get("availability of a unicode SKU", &avail("sku=T%C3%89E"), PUBLISHABLE, 400, "invalid_request"),
        get("availability of non-UTF-8 percent-encoding", &avail("sku=%FF%FE"), PUBLISHABLE, 400, "invalid_request"),
        get("availability of an unknown SKU", &avail("sku=NO-SUCH-SKU-x"), PUBLISHABLE, 404, "not_found"),
        get("availability at an unknown location", &avail(&format!("sku={sku}&location=nowhere")), PUBLISHABLE, 404, "not_found"),
        get("availability without a key", &avail(&format!("sku={sku}")), ADMIN, 401, "unauthorized")
.auth(None),
        // ---- reservations
        case("reservation ttl 29", "POST", res_path, STOREFRONT, reservation("bad-r1", &one, r#","ttl_seconds":29"#), 400, "invalid_request"),
        case("reservation ttl 3601", "POST", res_path, STOREFRONT, reservation("bad-r2", &one, r#","ttl_seconds":3601"#), 400, "invalid_request"),
        case("reservation ttl as a string", "POST", res_path, STOREFRONT, reservation("bad-r3", &one, r#","ttl_seconds":"900""#), 400, "invalid_request"),
        case("reservation qty 0", "POST", res_path, STOREFRONT, reservation("bad-r4", &format!("[{}]", line(&sku, "0")), ""), 400, "invalid_request"),
        case("reservation qty over 1,000,000", "POST", res_path, STOREFRONT, reservation("bad-r5", &format!("[{}]", line(&sku, "1000001")), ""), 400, "invalid_request"),
        case("reservation lines adding up over 1,000,000", "POST", res_path, STOREFRONT, reservation("bad-r6", &format!("[{},{}]", line(&sku, "600000"), line(&sku, "600000")), ""), 400, "invalid_request"),
        case("reservation of 101 lines", "POST", res_path, STOREFRONT, reservation("bad-r7", &many(101), ""), 400, "invalid_request"),
        case("reservation id with a space", "POST", res_path, STOREFRONT, reservation("bad id", &one, ""), 400, "invalid_request"),
        case("reservation id of 65 characters", "POST", res_path, STOREFRONT, reservation(&long, &one, ""), 400, "invalid_request"),
        case("unicode reservation id", "POST", res_path, STOREFRONT, reservation("warenk\u{f6}rbchen", &one, ""), 400, "invalid_request"),
        case("empty reservation id", "POST", res_path, STOREFRONT, reservation("", &one, ""), 400, "invalid_request"),
        case("reservation fulfillment type teleport", "POST", res_path, STOREFRONT, format!(r#"{{"id":"bad-r8","lines":{one},"fulfillment":{{"type":"teleport"}}}}"#), 400, "invalid_request"),
        case("pickup without a location", "POST", res_path, STOREFRONT, format!(r#"{{"id":"bad-r9","lines":{one},"fulfillment":{{"type":"pickup"}}}}"#), 400, "invalid_request"),
        case("pickup at a warehouse", "POST", res_path, STOREFRONT, format!(r#"{{"id":"bad-r10","lines":{one},"fulfillment":{{"type":"pickup","location":"warehouse-1"}}}}"#), 400, "invalid_request"),
        case("destination latitude 91", "POST", res_path, STOREFRONT, format!(r#"{{"id":"bad-r11","lines":{one},"fulfillment":{{"type":"ship","destination":{{"lat":91,"lon":0}}}}}}"#), 400, "invalid_request"),
        case("reservation unknown field", "POST", res_path, STOREFRONT, reservation("bad-r12", &one, r#","channel":"pos""#), 400, "invalid_request"),
        case("reservation of an unknown SKU", "POST", res_path, STOREFRONT, reservation("bad-r13", &format!("[{}]", line("NO-SUCH-SKU-x", "1")), ""), 404, "not_found"),
        case("publishable creating a reservation", "POST", res_path, PUBLISHABLE, reservation("bad-r14", &one, ""), 403, "forbidden"),
        case("POS creating a reservation", "POST", res_path, POS1, reservation("bad-r15", &one, ""), 403, "forbidden"),
        get("reservation id with a space in the path", "/v1/reservations/bad%20id", STOREFRONT, 400, "invalid_request"),
        get("reservation id of 65 characters in the path", &format!("/v1/reservations/{long}"), STOREFRONT, 400, "invalid_request"),
        get("unknown reservation", "/v1/reservations/no-such-cart-x", STOREFRONT, 404, "not_found"),
        get("publishable reading a reservation", &one_res, PUBLISHABLE, 403, "forbidden"),
        case("releasing an unknown reservation", "DELETE", "/v1/reservations/no-such-cart-x", STOREFRONT, "", 404, "not_found"),
        case("release with a body", "DELETE", &one_res, STOREFRONT, r#"{"now":true}"#, 400, "invalid_request"),
        case("publishable releasing a reservation", "DELETE", &one_res, PUBLISHABLE, "", 403, "forbidden"),
        case("extend ttl 29", "POST", &ext, STOREFRONT, r#"{"ttl_seconds":29}"#, 400, "invalid_request"),
        case("extend ttl 3601", "POST", &ext, STOREFRONT, r#"{"ttl_seconds":3601}"#, 400, "invalid_request"),
        case("extend ttl fractional", "POST", &ext, STOREFRONT, r#"{"ttl_seconds":60.5}"#, 400, "invalid_request"),
        case("extend unknown field", "POST", &ext, STOREFRONT, r#"{"ttl_seconds":60,"force":true}"#, 400, "invalid_request"),
        case("extend an unknown reservation", "POST", "/v1/reservations/no-such-cart-x/extend", STOREFRONT, r#"{"ttl_seconds":60}"#, 404, "not_found"),
        // ---- adjustments
        case("adjustment reason stolen", "POST", adj, ADMIN, adjust(r#""delta":-1,"reason":"stolen""#), 400, "invalid_request"),
        case("adjustment without reason", "POST", adj, ADMIN, adjust(r#""delta":-1"#), 400, "invalid_request"),
        case("adjustment delta over 1,000,000", "POST", adj, ADMIN, adjust(r#""delta":1000001,"reason":"found""#), 400, "invalid_request"),
        case("adjustment delta as a string", "POST", adj, ADMIN, adjust(r#""delta":"-1","reason":"damaged""#), 400, "invalid_request"),
        case("adjustment delta fractional", "POST", adj, ADMIN, adjust(r#""delta":0.5,"reason":"found""#), 400, "invalid_request"),
        case("adjustment expected_version negative", "POST", adj, ADMIN, adjust(r#""delta":1,"reason":"found","expected_version":-1"#), 400, "invalid_request"),
        case("adjustment note of 501 characters", "POST", adj, ADMIN, adjust(&format!(r#""delta":1,"reason":"found","note":"{}""#, "n".repeat(501))), 400, "invalid_request"),
        case("adjustment with a stale expected_version", "POST", adj, ADMIN, adjust(r#""delta":1,"reason":"found","expected_version":0"#), 409, "version_conflict"),
        case("storefront adjusting", "POST", adj, STOREFRONT, adjust(r#""delta":1,"reason":"found""#), 403, "forbidden"),
        // ---- counts
        case("count at a time that is not RFC 3339", "POST", cnt, ADMIN, count("yesterday", &format!("[{}]", count_line("3"))), 400, "invalid_request"),
        case("count in month 13", "POST", cnt, ADMIN, count("2026-13-01T00:00:00Z", &format!("[{}]", count_line("3"))), 400, "invalid_request"),
        case("count negative", "POST", cnt, ADMIN, count(&now, &format!("[{}]", count_line("-1"))), 400, "invalid_request"),
        case("count of one SKU twice", "POST", cnt, ADMIN, count(&now, &format!("[{},{}]", count_line("3"), count_line("4"))), 400, "invalid_request"),
        case("count without lines", "POST", cnt, ADMIN, count(&now, "[]"), 400, "invalid_request"),
        case("POS counting at another location", "POST", cnt, POS1, format!(r#"{{"location":"store-2","counted_at":"{now}","lines":[{}]}}"#, count_line("3")), 403, "forbidden"),
        case("storefront counting", "POST", cnt, STOREFRONT, count(&now, &format!("[{}]", count_line("3"))), 403, "forbidden"),
        // ---- safety stock
        case("safety stock negative", "PUT", ss, ADMIN, format!(r#"{{"location":"store-1","sku":"{sku}","qty":-1}}"#), 400, "invalid_request"),
        case("safety stock over 1,000,000", "PUT", ss, ADMIN, format!(r#"{{"location":"store-1","sku":"{sku}","qty":1000001}}"#), 400, "invalid_request"),
        case("safety stock at an unknown location", "PUT", ss, ADMIN, format!(r#"{{"location":"nowhere","sku":"{sku}","qty":1}}"#), 404, "not_found"),
        case("POS setting safety stock", "PUT", ss, POS1, format!(r#"{{"location":"store-1","sku":"{sku}","qty":1}}"#), 403, "forbidden"),
        // ---- ledger
        get("ledger after=-1", &format!("{ledger}?after=-1"), ADMIN, 400, "invalid_request"),
        get("ledger limit=abc", &format!("{ledger}?limit=abc"), ADMIN, 400, "invalid_request"),
        get("ledger of an empty SKU id", "/v1/skus//ledger", ADMIN, 400, "invalid_request"),
        get("ledger of an unknown SKU", "/v1/skus/NO-SUCH-SKU-x/ledger", ADMIN, 404, "not_found"),
        get("storefront reading the ledger", &ledger, STOREFRONT, 403, "forbidden"),
        get("publishable reading the ledger", &ledger, PUBLISHABLE, 403, "forbidden"),
        get("POS reading another location's ledger", &format!("{ledger}?location=store-2"), POS1, 403, "forbidden"),
        // ---- catalog
        case("location kind castle", "PUT", "/v1/locations/store-1", ADMIN, location(r#","kind":"castle""#).replace(r#""kind":"store","#, ""), 400, "invalid_request"),
        case("location lat as a string", "PUT", "/v1/locations/store-1", ADMIN, location("").replace("52.52", r#""north""#), 400, "invalid_request"),
        case("location lon 181", "PUT", "/v1/locations/store-1", ADMIN, location("").replace("13.405", "181"), 400, "invalid_request"),
        case("location with an empty name", "PUT", "/v1/locations/store-1", ADMIN, location("").replace("Downtown", " "), 400, "invalid_request"),
        case("location id with a space", "PUT", "/v1/locations/store%201", ADMIN, location(""), 400, "invalid_request"),
        case("storefront writing a location", "PUT", "/v1/locations/store-1", STOREFRONT, location(""), 403, "forbidden"),
        case("product price as a float", "PUT", &format!("/v1/products/{pid}"), ADMIN, product(&format!(r#"{{"sku":"{sku}","options":{{}},"price":9.99}}"#)), 400, "invalid_request"),
        case("product currency euro", "PUT", &format!("/v1/products/{pid}"), ADMIN, product(&format!(r#"{{"sku":"{sku}","options":{{}},"price":{{"amount":"9.99","currency":"euro"}}}}"#)), 400, "invalid_request"),
        case("product negative price", "PUT", &format!("/v1/products/{pid}"), ADMIN, product(&format!(r#"{{"sku":"{sku}","options":{{}},"price":{{"amount":"-9.99","currency":"EUR"}}}}"#)), 400, "invalid_request"),
        case("product variant SKU with a space", "PUT", &format!("/v1/products/{pid}"), ADMIN, product(r#"{"sku":"a b","options":{},"price":{"amount":"9.99","currency":"EUR"}}"#), 400, "invalid_request"),
        case("product barcode with a space", "PUT", &format!("/v1/products/{pid}"), ADMIN, product(&format!(r#"{{"sku":"{sku}","barcode":"40 12","options":{{}},"price":{{"amount":"9.99","currency":"EUR"}}}}"#)), 400, "invalid_request"),
        case("storefront writing a product", "PUT", &format!("/v1/products/{pid}"), STOREFRONT, product(&format!(r#"{{"sku":"{sku}","options":{{}},"price":{{"amount":"9.99","currency":"EUR"}}}}"#)), 403, "forbidden"),
        get("unicode product id", "/v1/products/T%C3%89E", ADMIN, 400, "invalid_request"),
        get("unknown product", "/v1/products/no-such-product-x", ADMIN, 404, "not_found"),
        get("unknown SKU lookup", "/v1/skus/NO-SUCH-SKU-x", ADMIN, 404, "not_found"),
        get("unknown barcode lookup", "/v1/barcodes/0000000000000", ADMIN, 404, "not_found"),
        get("products limit=0", "/v1/products?limit=0", ADMIN, 400, "invalid_request"),
        get("publishable reading a product", &format!("/v1/products/{pid}"), PUBLISHABLE, 403, "forbidden"),
        case("bundle containing itself", "PUT", "/v1/bundles/bad-bundle-x", ADMIN, r#"{"title":"B","price":{"amount":"1.00","currency":"EUR"},"components":[{"sku":"bad-bundle-x","qty":1}]}"#, 400, "invalid_request"),
        // ---- POS sales
        case("POS selling at another location", "POST", sales, POS1, sale(&unique("bs"), "store-2", &format!("[{sale_line}]"), ""), 403, "forbidden"),
        case("storefront recording a sale", "POST", sales, STOREFRONT, ok_sale(&unique("bs")), 403, "forbidden"),
        case("publishable recording a sale", "POST", sales, PUBLISHABLE, ok_sale(&unique("bs")), 403, "forbidden"),
        case("sale line with sku and barcode", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!(r#"[{{"sku":"{sku}","barcode":"123","qty":1,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}]"#), ""), 400, "invalid_request"),
        case("sale line with neither sku nor barcode", "POST", sales, POS1, sale(&unique("bs"), "store-1", r#"[{"qty":1,"unit_price":{"amount":"9.99","currency":"EUR"}}]"#, ""), 400, "invalid_request"),
        case("sale qty 0", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!("[{}]", sale_line.replace(r#""qty":1"#, r#""qty":0"#)), ""), 400, "invalid_request"),
        case("sale unit_price as a number", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!(r#"[{{"sku":"{sku}","qty":1,"unit_price":9.99}}]"#), ""), 400, "invalid_request"),
        case("sale unit_price negative", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!("[{}]", sale_line.replace("9.99", "-9.99")), ""), 400, "invalid_request"),
        case("sale occurred_at not a time", "POST", sales, POS1, ok_sale(&unique("bs")).replace(&now, "yesterday"), 400, "invalid_request"),
        case("sale occurred_at far in the future", "POST", sales, POS1, ok_sale(&unique("bs")).replace(&now, "2999-01-01T00:00:00Z"), 400, "invalid_request"),
        case("sale device_seq negative", "POST", sales, POS1, ok_sale(&unique("bs")).replace(r#""device_seq":1"#, r#""device_seq":-1"#), 400, "invalid_request"),
        case("sale device_seq as a string", "POST", sales, POS1, ok_sale(&unique("bs")).replace(r#""device_seq":1"#, r#""device_seq":"1""#), 400, "invalid_request"),
        case("sale id with a space", "POST", sales, POS1, ok_sale("bad sale"), 400, "invalid_request"),
        case("sale id of 65 characters", "POST", sales, POS1, ok_sale(&long), 400, "invalid_request"),
        case("empty terminal id", "POST", sales, POS1, ok_sale(&unique("bs")).replace(r#""terminal_id":"bt-1""#, r#""terminal_id":"""#), 400, "invalid_request"),
        case("sale payment method with a space", "POST", sales, POS1, ok_sale(&unique("bs")).replace(r#""method":"card""#, r#""method":"credit card""#), 400, "invalid_request"),
        case("sale unknown field", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!("[{sale_line}]"), r#","discount":5"#), 400, "invalid_request"),
        case("sale of 101 lines", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!("[{}]", vec![sale_line.clone(); 101].join(",")), ""), 400, "invalid_request"),
        case("sale of an unknown barcode", "POST", sales, POS1, sale(&unique("bs"), "store-1", r#"[{"barcode":"0000000000000","qty":1,"unit_price":{"amount":"9.99","currency":"EUR"}}]"#, ""), 404, "not_found"),
        case("sale of an unknown SKU", "POST", sales, POS1, sale(&unique("bs"), "store-1", &format!("[{}]", sale_line.replace(&sku, "NO-SUCH-SKU-x")), ""), 404, "not_found"),
        case("empty batch", "POST", batch, POS1, r#"{"sales":[]}"#, 400, "invalid_request"),
        case("batch of 101 sales", "POST", batch, POS1, format!(r#"{{"sales":[{}]}}"#, (0..101).map(|_| ok_sale(&unique("bs"))).collect::<Vec<_>>().join(",")), 400, "invalid_request"),
        case("batch with one sale id twice", "POST", batch, POS1, format!(r#"{{"sales":[{},{}]}}"#, ok_sale("bs-twice"), ok_sale("bs-twice")), 400, "invalid_request"),
        case("batch with a malformed sale", "POST", batch, POS1, format!(r#"{{"sales":[{},{{"sale_id":1}}]}}"#, ok_sale(&unique("bs"))), 400, "invalid_request"),
        case("batch selling at another location", "POST", batch, POS1, format!(r#"{{"sales":[{}]}}"#, sale(&unique("bs"), "store-2", &format!("[{sale_line}]"), "")), 403, "forbidden"),
        case("batch is not an object", "POST", batch, POS1, format!("[{}]", ok_sale(&unique("bs"))), 400, "invalid_request"),
    ];

    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names are not distinct");
    assert!(cases.len() >= 50, "only {} cases", cases.len());

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let base = api.base.clone();
    let mut failures = Vec::new();
    let mut server_errors = 0;
    for c in &cases {
        match send(&agent, &base, c) {
            Ok(r) => {
                if r.status >= 500 {
                    server_errors += 1;
                }
                if let Err(e) = check_problem(&r, c.status, c.code) {
                    failures.push(format!(
                        "{} ({} {}): {e}; body {}",
                        c.name,
                        c.method,
                        c.path.chars().take(80).collect::<String>(),
                        r.body.chars().take(300).collect::<String>()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: no answer ({e})", c.name)),
        }
    }
    assert_eq!(server_errors, 0, "5xx answers; failures: {failures:#?}");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let after = snapshot(&api, &sku, &rid, &pid);
    assert_eq!(before, after, "the battery changed something");
    assert_eq!(after["online"][0]["on_hand"], 7);
    assert_eq!(after["online"][0]["reserved"], 1);
}
