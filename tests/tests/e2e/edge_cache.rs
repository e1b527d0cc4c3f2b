//! Issue 13's edge availability cache, end to end: storefront and
//! publishable reads may come from the isolate's cache, but never show
//! anything older than 1 s (each item's `as_of`), a write is seen within
//! the bound (at once through this isolate), `consistency=strong` reads the
//! object, a change the isolate never hears of (a hold lapsing inside its
//! SKU object) shows within the bound, a 100-SKU read naming an unknown SKU
//! is still a 404 naming it, and a SKU created after such a miss is found.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::*;

/// The bound of API.md.
const BOUND_MS: i64 = 1_000;
/// The Worker's and this test's clocks are one machine's; a little for rounding.
const SKEW_MS: i64 = 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Epoch ms of an RFC 3339 time with milliseconds (`2026-11-29T09:01:38.130Z`).
fn parse_ms(t: &str) -> i64 {
    let b = t.as_bytes();
    assert!(t.len() == 24 && t.ends_with('Z'), "not an as_of: {t}");
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().expect("digits") };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    assert_eq!(b[10], b'T');
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1000 + n(20..23)
}

/// A cached read (publishable key) of these SKUs at store-1: the answer and
/// when it was sent.
fn cached(api: &Api, skus: &[String]) -> (Resp, i64) {
    let sent = now_ms();
    let r = api.get(
        &format!("/v1/availability?sku={}&location=store-1", skus.join(",")),
        PUBLISHABLE,
    );
    (r, sent)
}

/// Every item is at most the bound older than the moment the read was sent.
fn assert_fresh(body: &Value, sent: i64) {
    let items = body["items"].as_array().expect("items");
    assert!(!items.is_empty());
    for it in items {
        let as_of = parse_ms(it["as_of"].as_str().expect("as_of"));
        assert!(
            as_of >= sent - BOUND_MS - SKEW_MS,
            "an item {} ms older than its read: {it}",
            sent - as_of
        );
    }
}

fn row<'a>(body: &'a Value, sku: &str) -> &'a Value {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["sku"] == sku)
        .unwrap_or_else(|| panic!("no row for {sku}: {body}"))
}

fn adjust(api: &Api, sku: &str, delta: i64) {
    let r = api.send(
        "POST",
        "/v1/inventory/adjustments",
        ADMIN,
        &format!(r#"{{"location":"store-1","sku":"{sku}","delta":{delta},"reason":"found"}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_write_is_seen_by_a_cached_read_within_the_bound_and_by_strong_at_once() {
    let api = shared().api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 10);
    let skus = vec![sku.clone()];
    // Warm the cache.
    let (r, sent) = cached(&api, &skus);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(row(&r.json(), &sku)["available"], 10);
    assert_fresh(&r.json(), sent);
    adjust(&api, &sku, 5);
    let written = now_ms();
    // Strong: the object, at once.
    let r = api.get(
        &format!("/v1/availability?sku={sku}&location=store-1&consistency=strong"),
        STOREFRONT,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("omnistock-cache"), Some("strong"));
    assert_eq!(row(&r.json(), &sku)["available"], 15);
    // Cached: within the bound (through this isolate: at once).
    loop {
        let (r, sent) = cached(&api, &skus);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_fresh(&r.json(), sent);
        if row(&r.json(), &sku)["available"] == 15 {
            break;
        }
        assert!(
            sent - written <= BOUND_MS,
            "a read sent {} ms after the write still shows the old stock",
            sent - written
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reads of the cache are hits (no object call) once warm.
    let (r, _) = cached(&api, &skus);
    let how = r.header("omnistock-cache").unwrap_or_default().to_string();
    assert!(how.starts_with("hit="), "{how}");
}

/// A hold that lapses inside its SKU object is a change this isolate never
/// hears of (no write passes through it, no push reaches it): cached reads
/// keep within the bound all along and show the lapse within the bound.
#[test]
fn a_change_the_isolate_never_hears_of_shows_within_the_bound() {
    let api = shared().api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 10);
    let skus = vec![sku.clone()];
    let r = api.reserve(&unique("ec-r"), &[(&sku, 3)], "store-1", 30);
    assert_eq!(r.status, 201, "{}", r.body);
    let expires = parse_ms(r.json()["expires_at"].as_str().expect("expires_at"));
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut reads = 0;
    loop {
        let (r, sent) = cached(&api, &skus);
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        assert_fresh(&body, sent);
        reads += 1;
        let available = row(&body, &sku)["available"].as_i64().expect("available");
        if available == 10 {
            assert!(
                sent >= expires - SKEW_MS,
                "released before it lapsed: {body}"
            );
            break;
        }
        assert_eq!(available, 7, "{body}");
        assert!(
            sent <= expires + BOUND_MS + SKEW_MS,
            "a read sent {} ms after the hold lapsed still shows it",
            sent - expires
        );
        assert!(Instant::now() < deadline, "the hold never lapsed");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(reads > 20, "only {reads} reads");
}

#[test]
fn a_100_sku_read_naming_an_unknown_sku_is_404_and_a_sku_created_after_is_found() {
    let api = shared().api();
    seed_locations(&api);
    let skus: Vec<String> = (0..99).map(|i| unique(&format!("EC{i}"))).collect();
    let refs: Vec<&str> = skus.iter().map(String::as_str).collect();
    api.product(&refs);
    // Warm: 99 SKUs, no stock yet (0 everywhere), every item fresh.
    let (r, sent) = cached(&api, &skus);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(99));
    assert_fresh(&r.json(), sent);
    let ghost = unique("ECGHOST");
    let mut all = skus.clone();
    all.push(ghost.clone());
    let (r, _) = cached(&api, &all);
    let p = r.assert_problem(404, "not_found");
    assert_eq!(p["skus"], serde_json::json!([ghost]), "{p}");
    assert!(p["detail"].as_str().unwrap_or("").contains(&ghost), "{p}");
    // The SKU is created (and stocked) after that miss: found within the bound.
    api.product(&[&ghost]);
    api.receive(&ghost, "store-1", 4);
    let created = now_ms();
    loop {
        let (r, sent) = cached(&api, &all);
        if r.status == 200 {
            let body = r.json();
            assert_fresh(&body, sent);
            assert_eq!(body["items"].as_array().map(Vec::len), Some(100));
            assert_eq!(row(&body, &ghost)["available"], 4);
            break;
        }
        r.assert_problem(404, "not_found");
        assert!(
            sent - created <= BOUND_MS,
            "a SKU created {} ms ago is still unknown",
            sent - created
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL right after a write: after the restart, cached reads show the
/// write (the object's durable truth) and nothing older than the bound.
#[test]
fn after_a_sigkill_cached_reads_show_the_durable_truth() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 10);
    let skus = vec![sku.clone()];
    let (r, _) = cached(&api, &skus);
    assert_eq!(row(&r.json(), &sku)["available"], 10);
    adjust(&api, &sku, 2);
    server.kill9();
    server.start_again();
    let api = server.api();
    for _ in 0..5 {
        let (r, sent) = cached(&api, &skus);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_fresh(&r.json(), sent);
        assert_eq!(row(&r.json(), &sku)["available"], 12, "{}", r.body);
        std::thread::sleep(Duration::from_millis(300));
    }
}
