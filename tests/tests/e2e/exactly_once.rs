//! Issue 4's exactly-once tests: every write replayed with its
//! Idempotency-Key 1 to 5 times, some concurrently, changes stock once and
//! answers the same each time; POS sales are also deduplicated by sale id;
//! a key reused with another request is refused and changes nothing.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;

use serde_json::{json, Value};

use crate::concurrency::{is_proxy_reset, now_rfc3339, row, sale_body};
use crate::harness::*;

/// How a write is sent again with its key: `n` replays after the first
/// send, or `1 + n` sends all at once.
#[derive(Clone, Copy)]
enum Mode {
    OneByOne(usize),
    Together(usize),
}
use Mode::*;

/// Sends the same write `1 + n` times with one key, as `mode` says. Every answer must be the same
/// (status and body), exactly one of them the original and every other one
/// marked `Idempotent-Replayed: true`. Returns the original.
fn send_replays(
    api: &Api,
    method: &str,
    path: &str,
    key: &str,
    idem: &str,
    body: &str,
    mode: Mode,
) -> Resp {
    let (replays, concurrent) = match mode {
        OneByOne(n) => (n, false),
        Together(n) => (n, true),
    };
    let retries = &AtomicUsize::new(0);
    let rs: Vec<Resp> = if concurrent {
        let barrier = Barrier::new(1 + replays);
        thread::scope(|s| {
            let hs: Vec<_> = (0..=replays)
                .map(|_| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        send_retrying(api, method, path, key, idem, body, retries)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
                })
                .collect()
        })
    } else {
        (0..=replays)
            .map(|_| {
                send_retrying(api, method, path, key, idem, body, retries)
                    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            })
            .collect()
    };
    let originals: Vec<&Resp> = rs
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_none())
        .collect();
    // A retried send may have been applied before its answer was lost: then
    // its retry is a replay and no answer is the original.
    let retried = retries.load(Ordering::Relaxed) > 0;
    assert!(
        originals.len() == 1 || (originals.is_empty() && retried),
        "{method} {path}: want one original answer among {:?}",
        rs.iter()
            .map(|r| (r.status, r.header("idempotent-replayed"), &r.body))
            .collect::<Vec<_>>()
    );
    let first = originals.first().copied().unwrap_or(&rs[0]).clone();
    if !concurrent && !retried {
        assert!(rs[0].header("idempotent-replayed").is_none());
    }
    assert!(
        (200..300).contains(&first.status),
        "{method} {path}: {} {}",
        first.status,
        first.body
    );
    for r in &rs {
        assert_eq!(r.status, first.status, "{method} {path}: {}", r.body);
        assert_eq!(r.body, first.body, "{method} {path}");
        if r.header("idempotent-replayed").is_some() {
            assert_eq!(r.header("idempotent-replayed"), Some("true"));
        }
    }
    first
}

/// One send; a 503 that says "retry" (wrangler dev's proxy losing the
/// connection, or the Worker's `overloaded`) is retried with the same key, as
/// API.md tells clients to, at most 3 times. Every retry is reported.
fn send_retrying(
    api: &Api,
    method: &str,
    path: &str,
    key: &str,
    idem: &str,
    body: &str,
    retries: &AtomicUsize,
) -> Result<Resp, String> {
    let mut r = api.try_write(method, path, key, idem, body)?;
    for _ in 0..3 {
        let overloaded = r.status == 503
            && r.header("content-type") == Some("application/problem+json")
            && r.body.contains("\"overloaded\"");
        if !(is_proxy_reset(&r) || overloaded) {
            break;
        }
        eprintln!("{method} {path}: retrying after 503: {}", r.body);
        retries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(std::time::Duration::from_millis(200));
        r = api.try_write(method, path, key, idem, body)?;
    }
    Ok(r)
}

/// One more replay, later and on its own: the same answer again.
fn replay_once_more(
    api: &Api,
    method: &str,
    path: &str,
    key: &str,
    idem: &str,
    body: &str,
    first: &Resp,
) {
    let r = api.write(method, path, key, idem, body);
    assert_eq!(r.status, first.status, "{}", r.body);
    assert_eq!(r.body, first.body);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
}

/// The same key with another request: 409 idempotency_key_reused.
fn refused_reuse(api: &Api, method: &str, path: &str, key: &str, idem: &str, body: &str) {
    let r = api.write(method, path, key, idem, body);
    r.assert_problem(409, "idempotency_key_reused");
    assert_eq!(r.header("idempotent-replayed"), None);
}

/// What the writes can change: both channels' rows at every location and the ledger.
fn state(api: &Api, skus: &[&str]) -> Value {
    let mut out = Vec::new();
    for s in skus {
        for ch in ["online", "pos"] {
            // Named locations: other tests add locations to the shared server.
            let r = api.get(
                &format!(
                    "/v1/availability?sku={s}&channel={ch}&location=store-1,store-2,warehouse-1"
                ),
                ADMIN,
            );
            assert_eq!(r.status, 200, "{}", r.body);
            out.push(without_as_of(r.json()["items"].clone()));
        }
        out.push(Value::Array(ledger(api, s)));
    }
    Value::Array(out)
}

fn events(api: &Api, sku: &str, kind: &str) -> usize {
    ledger(api, sku)
        .iter()
        .filter(|e| e["event"] == kind)
        .count()
}

fn on_hand(api: &Api, sku: &str, location: &str) -> i64 {
    row(api, sku, location, "pos")["on_hand"].as_i64().unwrap()
}

#[test]
fn receipts_apply_once() {
    let api = shared().api();
    let a = api.new_sku("store-1", 0);
    let b = api.new_sku("store-1", 0);
    let path = "/v1/inventory/receipts";
    let idem = unique("idem");
    // Two lines of A and one of B: several SKU objects behind one key.
    let body = format!(
        r#"{{"location":"store-1","reference":"PO-1","lines":[{{"sku":"{a}","qty":2}},{{"sku":"{b}","qty":3}},{{"sku":"{a}","qty":1}}]}}"#
    );
    let first = send_replays(&api, "POST", path, ADMIN, &idem, &body, Together(4));
    assert_eq!(first.status, 200);
    assert_eq!(on_hand(&api, &a, "store-1"), 3);
    assert_eq!(on_hand(&api, &b, "store-1"), 3);
    assert_eq!(events(&api, &a, "received"), 2);
    assert_eq!(events(&api, &b, "received"), 1);
    let snap = state(&api, &[&a, &b]);
    replay_once_more(&api, "POST", path, ADMIN, &idem, &body, &first);
    let other = body.replace(r#""qty":3"#, r#""qty":4"#);
    refused_reuse(&api, "POST", path, ADMIN, &idem, &other);
    // The same key on another endpoint is another request too.
    refused_reuse(
        &api,
        "POST",
        "/v1/inventory/adjustments",
        ADMIN,
        &idem,
        &format!(r#"{{"location":"store-1","sku":"{a}","delta":1,"reason":"found"}}"#),
    );
    assert_eq!(state(&api, &[&a, &b]), snap);

    // Sequential replays of a second receipt: once more, exactly once.
    let idem2 = unique("idem");
    let body2 = format!(r#"{{"location":"store-2","lines":[{{"sku":"{a}","qty":7}}]}}"#);
    let first2 = send_replays(&api, "POST", path, ADMIN, &idem2, &body2, OneByOne(2));
    assert_eq!(first2.status, 200);
    assert_eq!(on_hand(&api, &a, "store-2"), 7);
    assert_eq!(on_hand(&api, &a, "store-1"), 3);
}

#[test]
fn reservation_create_extend_release_apply_once() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let id = unique("xcart");
    let create = format!(
        r#"{{"id":"{id}","lines":[{{"sku":"{a}","qty":2}},{{"sku":"{b}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#
    );
    let idem = unique("idem");
    let first = send_replays(
        &api,
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &idem,
        &create,
        Together(5),
    );
    assert!(first.status == 201 || first.status == 200, "{}", first.body);
    let v = first.json();
    assert_eq!(v["status"], "active");
    let expires = v["expires_at"].clone();
    let reserved = |s: &str| {
        row(&api, s, "store-1", "online")["reserved"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((reserved(&a), reserved(&b)), (2, 1));
    assert_eq!(events(&api, &a, "held"), 1);
    assert_eq!(events(&api, &b, "held"), 1);
    let snap = state(&api, &[&a, &b]);
    replay_once_more(
        &api,
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &idem,
        &create,
        &first,
    );
    refused_reuse(
        &api,
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &idem,
        &create.replace(r#""qty":2"#, r#""qty":3"#),
    );
    assert_eq!(state(&api, &[&a, &b]), snap);

    // Extend: replays do not extend again.
    let ext = format!("/v1/reservations/{id}/extend");
    let idem = unique("idem");
    let body = r#"{"ttl_seconds":1200}"#;
    let first = send_replays(&api, "POST", &ext, STOREFRONT, &idem, body, OneByOne(3));
    assert_eq!(first.status, 200);
    let extended = first.json()["expires_at"].clone();
    assert_ne!(extended, expires);
    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.json()["expires_at"], extended);
    assert_eq!(events(&api, &a, "extended"), 1);
    assert_eq!(events(&api, &b, "extended"), 1);
    let snap = state(&api, &[&a, &b]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    replay_once_more(&api, "POST", &ext, STOREFRONT, &idem, body, &first);
    refused_reuse(
        &api,
        "POST",
        &ext,
        STOREFRONT,
        &idem,
        r#"{"ttl_seconds":1300}"#,
    );
    assert_eq!(state(&api, &[&a, &b]), snap);
    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.json()["expires_at"], extended);

    // Release: once, even when three race.
    let del = format!("/v1/reservations/{id}");
    let idem = unique("idem");
    let first = send_replays(&api, "DELETE", &del, STOREFRONT, &idem, "", Together(2));
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["status"], "released");
    assert_eq!((reserved(&a), reserved(&b)), (0, 0));
    assert_eq!(events(&api, &a, "released"), 1);
    assert_eq!(events(&api, &b, "released"), 1);
    let snap = state(&api, &[&b]);
    replay_once_more(&api, "DELETE", &del, STOREFRONT, &idem, "", &first);
    // The same key on another reservation is another request.
    let other = unique("xcart");
    let r = api.reserve(&other, &[(&a, 1)], "store-1", 600);
    assert_eq!(r.status, 201, "{}", r.body);
    refused_reuse(
        &api,
        "DELETE",
        &format!("/v1/reservations/{other}"),
        STOREFRONT,
        &idem,
        "",
    );
    assert_eq!(reserved(&a), 1);
    let d = api.send(
        "DELETE",
        &format!("/v1/reservations/{other}"),
        STOREFRONT,
        "",
    );
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(reserved(&a), 0);
    assert_eq!(events(&api, &a, "released"), 2);
    assert_eq!(state(&api, &[&b]), snap);
}

#[test]
fn pos_sales_apply_once_by_key_and_by_sale_id() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let sale_id = unique("xs");
    let body = sale_body(
        &sale_id,
        &unique("xt"),
        1,
        "store-1",
        &[(&a, 2), (&b, 1), (&a, 1)],
    );
    let idem = unique("idem");
    let first = send_replays(
        &api,
        "POST",
        "/v1/pos/sales",
        POS1,
        &idem,
        &body,
        Together(5),
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let v = first.json();
    assert_eq!(v["status"], "recorded");
    assert_eq!(v["oversold"], false);
    assert_eq!(on_hand(&api, &a, "store-1"), 7);
    assert_eq!(on_hand(&api, &b, "store-1"), 9);
    assert_eq!(events(&api, &a, "sold"), 1);
    let snap = state(&api, &[&a, &b]);
    replay_once_more(&api, "POST", "/v1/pos/sales", POS1, &idem, &body, &first);

    // The same sale under new keys, three at once: the first answer, no second sale.
    let answers: Vec<Resp> = thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (api, body) = (&api, &body);
                s.spawn(move || api.send("POST", "/v1/pos/sales", POS1, body))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &answers {
        assert_eq!(r.status, first.status, "{}", r.body);
        assert_eq!(r.json(), v);
    }
    // By an admin key too (another principal): still that sale.
    let r = api.send("POST", "/v1/pos/sales", ADMIN, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json(), v);
    assert_eq!(state(&api, &[&a, &b]), snap);

    // The same sale id with other content under a new key: refused.
    let changed = body.replace(r#""qty":2"#, r#""qty":3"#);
    let r = api.send("POST", "/v1/pos/sales", POS1, &changed);
    r.assert_problem(409, "idempotency_key_reused");
    // The same key with another sale: refused.
    let another = sale_body(&unique("xs"), &unique("xt"), 1, "store-1", &[(&a, 1)]);
    refused_reuse(&api, "POST", "/v1/pos/sales", POS1, &idem, &another);
    assert_eq!(state(&api, &[&a, &b]), snap);
}

#[test]
fn pos_batches_apply_once_by_key_and_by_sale_id() {
    let api = shared().api();
    let a = api.new_sku("store-1", 20);
    let terminal = unique("xt");
    let ids: Vec<String> = (0..3).map(|_| unique("xb")).collect();
    // Uploaded out of order: applied by device_seq.
    let sales: Vec<String> = [2u64, 0, 1]
        .iter()
        .map(|&i| {
            sale_body(
                &ids[i as usize],
                &terminal,
                i + 1,
                "store-1",
                &[(&a, i as i64 + 1)],
            )
        })
        .collect();
    let body = format!(r#"{{"sales":[{}]}}"#, sales.join(","));
    let idem = unique("idem");
    let first = send_replays(
        &api,
        "POST",
        "/v1/pos/sales/batch",
        POS1,
        &idem,
        &body,
        Together(3),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let results = first.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    for r in &results {
        assert_eq!(r["status"], 201, "{r}");
    }
    assert_eq!(on_hand(&api, &a, "store-1"), 20 - 6);
    assert_eq!(events(&api, &a, "sold"), 3);
    let snap = state(&api, &[&a]);
    replay_once_more(
        &api,
        "POST",
        "/v1/pos/sales/batch",
        POS1,
        &idem,
        &body,
        &first,
    );

    // The same batch under a new key: the same per-sale answers, nothing sold twice.
    let again = api.send("POST", "/v1/pos/sales/batch", POS1, &body);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["results"], json!(results));
    // Each sale alone, under a new key: its answer from the batch.
    for (i, s) in sales.iter().enumerate() {
        let r = api.send("POST", "/v1/pos/sales", POS1, s);
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json(), results[i]["body"], "sale {i}");
    }
    assert_eq!(state(&api, &[&a]), snap);

    // A batch with one known and one new sale: only the new one is applied.
    let new_id = unique("xb");
    let mixed = format!(
        r#"{{"sales":[{},{}]}}"#,
        sales[1],
        sale_body(&new_id, &terminal, 4, "store-1", &[(&a, 5)])
    );
    let idem2 = unique("idem");
    let r = send_replays(
        &api,
        "POST",
        "/v1/pos/sales/batch",
        POS1,
        &idem2,
        &mixed,
        Together(2),
    );
    let rs = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(rs[0], results[1]);
    assert_eq!(rs[1]["status"], 201, "{}", r.body);
    assert_eq!(on_hand(&api, &a, "store-1"), 20 - 6 - 5);
    assert_eq!(events(&api, &a, "sold"), 4);
    refused_reuse(&api, "POST", "/v1/pos/sales/batch", POS1, &idem2, &body);
    assert_eq!(on_hand(&api, &a, "store-1"), 20 - 6 - 5);
}

#[test]
fn adjustments_counts_and_safety_stock_apply_once() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let adj = "/v1/inventory/adjustments";

    // Adjustment, replayed concurrently.
    let idem = unique("idem");
    let body = format!(
        r#"{{"location":"store-1","sku":"{a}","delta":-2,"reason":"shrinkage","note":"broken"}}"#
    );
    let first = send_replays(&api, "POST", adj, ADMIN, &idem, &body, Together(4));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(on_hand(&api, &a, "store-1"), 8);
    assert_eq!(events(&api, &a, "adjusted"), 1);
    let snap = state(&api, &[&a]);
    replay_once_more(&api, "POST", adj, ADMIN, &idem, &body, &first);
    refused_reuse(&api, "POST", adj, ADMIN, &idem, &body.replace("-2", "-3"));
    assert_eq!(state(&api, &[&a]), snap);

    // With expected_version: a replay after the version moved is still the
    // first answer, not a version conflict, and not a second change.
    let version = row(&api, &a, "store-1", "online")["version"]
        .as_u64()
        .unwrap();
    let idem = unique("idem");
    let body = format!(
        r#"{{"location":"store-1","sku":"{a}","delta":3,"reason":"found","expected_version":{version}}}"#
    );
    let first = send_replays(&api, "POST", adj, ADMIN, &idem, &body, OneByOne(1));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(on_hand(&api, &a, "store-1"), 11);
    api.receive(&a, "store-1", 1);
    replay_once_more(&api, "POST", adj, ADMIN, &idem, &body, &first);
    assert_eq!(on_hand(&api, &a, "store-1"), 12);
    // A new key with the stale version is a conflict that changes nothing.
    let snap = state(&api, &[&a]);
    let r = api.send("POST", adj, ADMIN, &body);
    r.assert_problem(409, "version_conflict");
    assert_eq!(state(&api, &[&a]), snap);

    // Count: replayed after a later receipt, it does not reset on_hand again.
    // A count is as of `counted_at` (one second ago here): wait until every
    // earlier change is older than that, so the variance is exact.
    thread::sleep(std::time::Duration::from_millis(1_200));
    let idem = unique("idem");
    let body = format!(
        r#"{{"location":"store-1","counted_at":"{}","lines":[{{"sku":"{a}","counted":9}}]}}"#,
        now_rfc3339()
    );
    let first = send_replays(
        &api,
        "POST",
        "/v1/inventory/counts",
        ADMIN,
        &idem,
        &body,
        Together(3),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["lines"][0]["variance"], -3, "{}", first.body);
    assert_eq!(on_hand(&api, &a, "store-1"), 9);
    assert_eq!(events(&api, &a, "counted"), 1);
    api.receive(&a, "store-1", 2);
    let snap = state(&api, &[&a]);
    replay_once_more(
        &api,
        "POST",
        "/v1/inventory/counts",
        ADMIN,
        &idem,
        &body,
        &first,
    );
    refused_reuse(
        &api,
        "POST",
        "/v1/inventory/counts",
        ADMIN,
        &idem,
        &body.replace(r#""counted":9"#, r#""counted":1"#),
    );
    assert_eq!(state(&api, &[&a]), snap);
    assert_eq!(on_hand(&api, &a, "store-1"), 11);

    // Safety stock.
    let ss = "/v1/inventory/safety-stock";
    let idem = unique("idem");
    let body = format!(r#"{{"location":"store-1","sku":"{a}","qty":4}}"#);
    let first = send_replays(&api, "PUT", ss, ADMIN, &idem, &body, Together(2));
    assert_eq!(first.status, 200, "{}", first.body);
    let online = row(&api, &a, "store-1", "online");
    assert_eq!(online["safety_stock"], 4);
    assert_eq!(online["available"], 11 - 4);
    assert_eq!(events(&api, &a, "safety_stock_set"), 1);
    let snap = state(&api, &[&a]);
    replay_once_more(&api, "PUT", ss, ADMIN, &idem, &body, &first);
    refused_reuse(
        &api,
        "PUT",
        ss,
        ADMIN,
        &idem,
        &body.replace(r#""qty":4"#, r#""qty":5"#),
    );
    assert_eq!(state(&api, &[&a]), snap);
}
