//! Issue 2's slice, end to end against `wrangler dev`.
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::harness::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_time(s: &str) -> i64 {
    // 2026-11-26T14:44:07.976Z
    let b = s.as_bytes();
    let n = |a: usize, z: usize| -> i64 { s[a..z].parse().expect("digits") };
    let (y, mo, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (h, mi, se, ms) = (n(11, 13), n(14, 16), n(17, 19), n(20, 23));
    assert_eq!(b[23], b'Z', "{s}");
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms
}

#[test]
fn health_needs_no_key() {
    let api = shared().api();
    let r = api.request("GET", "/v1/health", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}

#[test]
fn receive_reserve_release() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 10);
    let row = api.stock(&sku, "store-1");
    assert_eq!(row["on_hand"], 10);
    assert_eq!(row["available"], 10);

    let id = unique("cart");
    let r = api.reserve(&id, &[(&sku, 3)], "store-1", 900);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["status"], "active");
    assert_eq!(
        v["lines"],
        json!([{"sku": sku, "qty": 3, "location": "store-1"}])
    );
    let expires = parse_time(v["expires_at"].as_str().unwrap());
    assert!(
        (expires - now_ms() - 900_000).abs() < 60_000,
        "expires_at {expires}"
    );

    let row = api.stock(&sku, "store-1");
    assert_eq!(row["available"], 7);
    assert_eq!(row["reserved"], 3);
    assert_eq!(row["on_hand"], 10);

    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["status"], "active");

    let d = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["status"], "released");
    assert_eq!(api.available(&sku, "store-1"), 10);
    assert_eq!(api.stock(&sku, "store-1")["reserved"], 0);

    // Releasing again is the same answer, not a second effect.
    let d2 = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(d2.status, 200);
    assert_eq!(d2.json()["status"], "released");
    assert_eq!(api.available(&sku, "store-1"), 10);
}

#[test]
fn availability_without_location_has_every_location_and_a_total() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 4);
    api.receive(&sku, "warehouse-1", 6);
    let r = api.get(&format!("/v1/availability?sku={sku}"), PUBLISHABLE);
    assert_eq!(r.status, 200, "{}", r.body);
    let items = r.json()["items"].as_array().unwrap().clone();
    // Every location (other tests may add their own), in id order, then the total.
    let locs: Vec<Value> = items.iter().map(|i| i["location"].clone()).collect();
    for l in ["store-1", "store-2", "warehouse-1"] {
        assert!(locs.contains(&json!(l)), "{l} missing in {locs:?}");
    }
    assert_eq!(locs.last(), Some(&Value::Null));
    let names: Vec<&str> = locs.iter().filter_map(|l| l.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let total = items.last().unwrap();
    assert_eq!(total["total"], true);
    assert_eq!(total["on_hand"], 10);
    assert_eq!(total["available"], 10);
    for i in &items {
        for f in [
            "sku",
            "on_hand",
            "reserved",
            "committed",
            "unavailable",
            "safety_stock",
            "incoming",
            "available",
            "version",
        ] {
            assert!(i.get(f).is_some(), "{f} missing in {i}");
        }
        assert!(
            i["unavailable"]["damaged"].is_i64() && i["unavailable"]["quality_control"].is_i64()
        );
    }
}

#[test]
fn a_hold_expires_by_alarm_at_its_deadline_never_before() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 5);
    let id = unique("cart");
    let r = api.reserve(&id, &[(&sku, 2)], "store-1", 30);
    assert_eq!(r.status, 201, "{}", r.body);
    let expires = parse_time(r.json()["expires_at"].as_str().unwrap());

    // Before the deadline it is held.
    let wait = expires - 2_000 - now_ms();
    if wait > 0 {
        thread::sleep(Duration::from_millis(wait as u64));
    }
    assert_eq!(api.available(&sku, "store-1"), 3);

    // No call at all until after the deadline: only the alarm can expire it.
    // The ledger is read without expiring anything: an `expired` event there
    // was written by the alarm, at or after the deadline. The alarm fires
    // milliseconds after it here; poll (bounded) so a busy machine does not
    // make this a timing test.
    let wait = expires + 500 - now_ms();
    thread::sleep(Duration::from_millis(wait.max(0) as u64));
    let mut expired: Vec<Value> = Vec::new();
    let mut items: Vec<Value> = Vec::new();
    for _ in 0..40 {
        let l = api.get(&format!("/v1/skus/{sku}/ledger"), ADMIN);
        assert_eq!(l.status, 200, "{}", l.body);
        items = l.json()["items"].as_array().unwrap().clone();
        expired = items
            .iter()
            .filter(|e| e["event"] == "expired")
            .cloned()
            .collect();
        if !expired.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(expired.len(), 1, "ledger: {items:?}");
    let at = parse_time(expired[0]["at"].as_str().unwrap());
    assert!(
        at >= expires,
        "expired at {at}, before the deadline {expires}"
    );
    assert!(at - expires < 10_000, "expired {} ms late", at - expires);
    assert_eq!(expired[0]["actor"], "system");

    assert_eq!(api.available(&sku, "store-1"), 5);
    assert_eq!(api.stock(&sku, "store-1")["reserved"], 0);
    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.json()["status"], "expired");
    // An expired reservation cannot be released.
    let d = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    let p = d.assert_problem(409, "invalid_transition");
    assert_eq!(p["from"], "expired");
}

#[test]
fn forty_concurrent_reservations_against_twenty_five_units() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 25);
    let barrier = Arc::new(Barrier::new(40));
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let api = api.clone();
            let sku = sku.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                api.reserve(&unique(&format!("race{i}")), &[(&sku, 1)], "store-1", 900)
            })
        })
        .collect();
    let results: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        ok,
        25,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != 201) {
        let p = r.assert_problem(409, "insufficient_stock");
        assert_eq!(p["lines"][0]["sku"], sku.as_str());
        assert_eq!(p["lines"][0]["requested"], 1);
        assert_eq!(p["lines"][0]["available"], 0);
    }
    let row = api.stock(&sku, "store-1");
    assert_eq!(row["available"], 0);
    assert_eq!(row["reserved"], 25);
}

#[test]
fn a_cart_is_all_or_nothing() {
    let api = shared().api();
    let a = api.new_sku("store-1", 5);
    let b = api.new_sku("store-1", 1);
    let r = api.reserve(&unique("cart"), &[(&a, 2), (&b, 2)], "store-1", 900);
    let p = r.assert_problem(409, "insufficient_stock");
    assert_eq!(
        p["lines"],
        json!([{"sku": b, "location": "store-1", "requested": 2, "available": 1}])
    );
    assert_eq!(api.available(&a, "store-1"), 5);
    assert_eq!(api.available(&b, "store-1"), 1);
}

#[test]
fn idempotency_key_replays_and_refuses_reuse() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 0);
    let key = unique("idem");
    let body = format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":5}}]}}"#);
    let first = api.write("POST", "/v1/inventory/receipts", ADMIN, &key, &body);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    // Same key, same body (other whitespace and key order): the first answer again.
    let same = format!(r#"{{ "lines": [ {{"qty": 5, "sku": "{sku}"}} ], "location": "store-1" }}"#);
    for _ in 0..3 {
        let again = api.write("POST", "/v1/inventory/receipts", ADMIN, &key, &same);
        assert_eq!(again.status, first.status);
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 5);
    // Same key, another body: refused, nothing changes.
    let other = format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":6}}]}}"#);
    let r = api.write("POST", "/v1/inventory/receipts", ADMIN, &key, &other);
    r.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 5);

    // A reservation replayed with its key, even concurrently, holds once.
    let key = unique("idem");
    let id = unique("cart");
    let body = format!(
        r#"{{"id":"{id}","lines":[{{"sku":"{sku}","qty":2}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#
    );
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let (api, key, body) = (api.clone(), key.clone(), body.clone());
            thread::spawn(move || api.write("POST", "/v1/reservations", STOREFRONT, &key, &body))
        })
        .collect();
    let rs: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = rs
        .iter()
        .find(|r| r.header("idempotent-replayed").is_none())
        .unwrap_or(&rs[0]);
    assert_eq!(first.status, 201, "{}", first.body);
    for r in &rs {
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body, first.body);
    }
    let row = api.stock(&sku, "store-1");
    assert_eq!(row["reserved"], 2);
    assert_eq!(row["available"], 3);
}

#[test]
fn bad_input_is_a_4xx_problem_and_changes_nothing() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 7);
    let before = api.stock(&sku, "store-1");
    let receipt =
        |s: &str| format!(r#"{{"location":"store-1","lines":[{{"sku":"{s}","qty":1}}]}}"#);
    let auth = |k: &str| format!("Bearer {k}");
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, String)>,
        String,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            "/v1/inventory/receipts",
            vec![],
            "{\"location\":".into(),
            400,
            "invalid_request",
        ),
        (
            "not an object",
            "/v1/inventory/receipts",
            vec![],
            "[1,2]".into(),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1}}],"extra":1}}"#),
            400,
            "invalid_request",
        ),
        (
            "unknown line field",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1,"price":2}}]}}"#),
            400,
            "invalid_request",
        ),
        (
            "bad SKU characters",
            "/v1/inventory/receipts",
            vec![],
            receipt("TEE BLK"),
            400,
            "invalid_request",
        ),
        (
            "SKU with slash",
            "/v1/inventory/receipts",
            vec![],
            receipt("a/b"),
            400,
            "invalid_request",
        ),
        (
            "SKU too long",
            "/v1/inventory/receipts",
            vec![],
            receipt(&"A".repeat(65)),
            400,
            "invalid_request",
        ),
        (
            "negative quantity",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":-1}}]}}"#),
            400,
            "invalid_request",
        ),
        (
            "fractional quantity",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1.5}}]}}"#),
            400,
            "invalid_request",
        ),
        (
            "quantity too large",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1000001}}]}}"#),
            400,
            "invalid_request",
        ),
        (
            "no lines",
            "/v1/inventory/receipts",
            vec![],
            r#"{"location":"store-1","lines":[]}"#.into(),
            400,
            "invalid_request",
        ),
        (
            "unknown SKU",
            "/v1/inventory/receipts",
            vec![],
            receipt("NO-SUCH-SKU-x"),
            404,
            "not_found",
        ),
        (
            "unknown location",
            "/v1/inventory/receipts",
            vec![],
            format!(r#"{{"location":"nowhere","lines":[{{"sku":"{sku}","qty":1}}]}}"#),
            404,
            "not_found",
        ),
        (
            "missing key",
            "/v1/inventory/receipts",
            vec![("Authorization", String::new())],
            receipt(&sku),
            401,
            "unauthorized",
        ),
        (
            "wrong key",
            "/v1/inventory/receipts",
            vec![("Authorization", auth("sk_dev_nope"))],
            receipt(&sku),
            401,
            "unauthorized",
        ),
        (
            "wrong role: storefront",
            "/v1/inventory/receipts",
            vec![("Authorization", auth(STOREFRONT))],
            receipt(&sku),
            403,
            "forbidden",
        ),
        (
            "wrong role: publishable",
            "/v1/inventory/receipts",
            vec![("Authorization", auth(PUBLISHABLE))],
            receipt(&sku),
            403,
            "forbidden",
        ),
        (
            "wrong role: pos",
            "/v1/inventory/receipts",
            vec![("Authorization", auth(POS1))],
            receipt(&sku),
            403,
            "forbidden",
        ),
        (
            "missing Idempotency-Key",
            "/v1/inventory/receipts",
            vec![("Idempotency-Key", String::new())],
            receipt(&sku),
            400,
            "invalid_request",
        ),
        (
            "Idempotency-Key too long",
            "/v1/inventory/receipts",
            vec![("Idempotency-Key", "k".repeat(256))],
            receipt(&sku),
            400,
            "invalid_request",
        ),
        (
            "body too large",
            "/v1/inventory/receipts",
            vec![],
            format!(
                r#"{{"location":"store-1","reference":"{}","lines":[]}}"#,
                "x".repeat(70_000)
            ),
            413,
            "payload_too_large",
        ),
        (
            "reservation with zero qty",
            "/v1/reservations",
            vec![("Authorization", auth(STOREFRONT))],
            format!(
                r#"{{"id":"z-{sku}","lines":[{{"sku":"{sku}","qty":0}}],"fulfillment":{{"type":"pickup","location":"store-1"}}}}"#
            ),
            400,
            "invalid_request",
        ),
        (
            "reservation ttl too short",
            "/v1/reservations",
            vec![("Authorization", auth(STOREFRONT))],
            format!(
                r#"{{"id":"t-{sku}","lines":[{{"sku":"{sku}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":5}}"#
            ),
            400,
            "invalid_request",
        ),
        (
            "reservation bad id",
            "/v1/reservations",
            vec![("Authorization", auth(STOREFRONT))],
            format!(
                r#"{{"id":"bad id","lines":[{{"sku":"{sku}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}}}}"#
            ),
            400,
            "invalid_request",
        ),
        (
            "reservation by publishable key",
            "/v1/reservations",
            vec![("Authorization", auth(PUBLISHABLE))],
            format!(
                r#"{{"id":"p-{sku}","lines":[{{"sku":"{sku}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}}}}"#
            ),
            403,
            "forbidden",
        ),
    ];
    for (name, path, overrides, body, status, code) in cases {
        let mut headers: Vec<(&str, String)> = vec![
            ("Authorization", auth(ADMIN)),
            ("Idempotency-Key", unique("bad")),
            ("Content-Type", "application/json".into()),
        ];
        for (k, v) in overrides {
            headers.retain(|(h, _)| *h != k);
            if !v.is_empty() {
                headers.push((k, v));
            }
        }
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = api.request("POST", path, &hs, Some(body.as_bytes()));
        assert_eq!(r.status, status, "{name}: {}", r.body);
        r.assert_problem(status, code);
        assert!(
            !r.body.contains("sk_dev"),
            "{name}: a key leaked into {}",
            r.body
        );
    }
    let after = api.stock(&sku, "store-1");
    assert_eq!(before, after, "bad input changed the stock");
}

#[test]
fn restart_keeps_every_acknowledged_change() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 10);
    api.receive(&sku, "store-2", 4);
    let held = unique("cart");
    assert_eq!(
        api.reserve(&held, &[(&sku, 3)], "store-1", 3600).status,
        201
    );
    let gone = unique("cart");
    assert_eq!(
        api.reserve(&gone, &[(&sku, 1)], "store-1", 3600).status,
        201
    );
    let key = unique("idem");
    let d = api.write(
        "DELETE",
        &format!("/v1/reservations/{gone}"),
        STOREFRONT,
        &key,
        "",
    );
    assert_eq!(d.status, 200);
    let before: Vec<Value> = ["store-1", "store-2"]
        .iter()
        .map(|l| api.stock(&sku, l))
        .collect();

    server.restart();
    let api = server.api();
    let after: Vec<Value> = ["store-1", "store-2"]
        .iter()
        .map(|l| api.stock(&sku, l))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after[0]["reserved"], 3);
    assert_eq!(after[0]["available"], 7);
    assert_eq!(after[1]["on_hand"], 4);
    assert_eq!(
        api.get(&format!("/v1/reservations/{held}"), STOREFRONT)
            .json()["status"],
        "active"
    );
    assert_eq!(
        api.get(&format!("/v1/reservations/{gone}"), STOREFRONT)
            .json()["status"],
        "released"
    );
    // The idempotency record survived too.
    let again = api.write(
        "DELETE",
        &format!("/v1/reservations/{gone}"),
        STOREFRONT,
        &key,
        "",
    );
    assert_eq!(again.body, d.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // And the held reservation still works after the restart.
    let rel = api.send(
        "DELETE",
        &format!("/v1/reservations/{held}"),
        STOREFRONT,
        "",
    );
    assert_eq!(rel.status, 200);
    assert_eq!(api.available(&sku, "store-1"), 10);
}

#[test]
fn cors_lets_any_origin_read_availability_and_nothing_else() {
    let api = shared().api();
    let origin = ("Origin", "https://shop.example");
    let pre = api.request(
        "OPTIONS",
        "/v1/availability?sku=X",
        &[
            origin,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        None,
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_lowercase()
        .contains("authorization"));
    let sku = api.new_sku("store-1", 1);
    let r = api.request(
        "GET",
        &format!("/v1/availability?sku={sku}"),
        &[origin, ("Authorization", "Bearer pk_dev")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Writes are not open to other origins: the preflight is refused and
    // the answers carry no CORS header.
    let pre = api.request(
        "OPTIONS",
        "/v1/inventory/receipts",
        &[origin, ("Access-Control-Request-Method", "POST")],
        None,
    );
    pre.assert_problem(403, "forbidden");
    assert_eq!(pre.header("access-control-allow-origin"), None);
    let r = api.request(
        "GET",
        &format!("/v1/skus/{sku}"),
        &[origin, ("Authorization", "Bearer sk_dev_storefront")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Unknown paths and wrong methods are problem+json too.
    api.get("/v1/nothing-here", ADMIN)
        .assert_problem(404, "not_found");
    let m = api.request(
        "PATCH",
        "/v1/inventory/receipts",
        &[("Authorization", "Bearer sk_dev_admin")],
        Some(b"{}"),
    );
    assert_eq!(m.status, 405);
    assert_eq!(m.header("allow"), Some("POST"));
}
