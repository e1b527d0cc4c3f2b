//! Overload is a clean answer (issue 12): with small limits, requests beyond
//! the per-key rate get 429 `rate_limited` and requests beyond the in-flight
//! bound 503 `overloaded`, both problem+json with `Retry-After`, quickly;
//! a refused write changed nothing and completes once when resent. Every
//! answer has a `Request-Id` (UUIDv7) that a problem+json repeats.
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn beyond_the_rate_per_key_is_429_and_beyond_the_in_flight_bound_503() {
    let server = Server::start_with_vars(&[("RATE_LIMIT_PER_KEY", "4"), ("MAX_IN_FLIGHT", "3")]);
    let api = server.api();
    seed_locations(&api);
    thread::sleep(Duration::from_millis(1100));
    let sku = api.new_sku("store-1", 0);
    thread::sleep(Duration::from_millis(1100));

    // Rate: 4 per second for the admin key. A burst of receipts, one after
    // another, until five were limited (at most 40): the bucket holds 4 and
    // refills at 4 per second, so however slow the machine, no more than
    // 4 + 4 x (the burst's seconds) pass.
    let body = format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1}}]}}"#);
    let mut keys: Vec<String> = Vec::new();
    let mut limited = Vec::new();
    let burst = Instant::now();
    while limited.len() < 5 && keys.len() < 40 {
        let k = unique("rl");
        keys.push(k.clone());
        let t = Instant::now();
        let r = api.write("POST", "/v1/inventory/receipts", ADMIN, &k, &body);
        if r.status == 429 {
            assert!(t.elapsed() < Duration::from_secs(1), "a 429 is quick");
            let p = r.assert_problem(429, "rate_limited");
            // The request id: a UUIDv7 in the header, the same in the problem.
            let id = r.header("request-id").expect("a Request-Id header");
            assert_eq!((id.len(), &id[14..15]), (36, "7"), "{id}");
            assert_eq!(p["request_id"], id);
            let after: u64 = r
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!((1..=2).contains(&after), "{after}");
            limited.push(k);
        } else {
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.header("request-id").is_some());
        }
    }
    let passed = keys.len() - limited.len();
    let most = 4 + (4.0 * burst.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        passed <= most,
        "{passed} passed in {:?}, the bucket allows {most}",
        burst.elapsed()
    );
    assert_eq!(
        limited.len(),
        5,
        "{} of {} limited",
        limited.len(),
        keys.len()
    );
    // Another key is not limited by the admin's bucket.
    assert_eq!(api.get("/v1/locations", STOREFRONT).status, 200);
    // Nothing changed for the refused ones; resent after Retry-After, each
    // takes effect once.
    thread::sleep(Duration::from_millis(1100));
    let strong = |api: &Api| {
        let r = api.get(
            &format!("/v1/availability?sku={sku}&location=store-1&consistency=strong"),
            STOREFRONT,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"][0]["on_hand"].as_i64().unwrap()
    };
    assert_eq!(strong(&api), passed as i64);
    for k in &limited {
        loop {
            let r = api.write("POST", "/v1/inventory/receipts", ADMIN, k, &body);
            if r.status == 429 {
                thread::sleep(Duration::from_millis(300));
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            break;
        }
    }
    assert_eq!(strong(&api), keys.len() as i64);

    // In flight: 24 concurrent reads by different tills' worth of keys
    // (rate is per key, so use the four keys) against a bound of 3.
    let start = Arc::new(Barrier::new(24));
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let (api, start, sku) = (api.clone(), start.clone(), sku.clone());
            thread::spawn(move || {
                let key = [ADMIN, STOREFRONT, POS1, PUBLISHABLE][i % 4];
                start.wait();
                let t = Instant::now();
                let r = api.get(
                    &format!("/v1/availability?sku={sku}&location=store-1&consistency=strong"),
                    key,
                );
                (r, t.elapsed())
            })
        })
        .collect();
    let mut overloaded = 0;
    for h in handles {
        let (r, took) = h.join().unwrap();
        match r.status {
            200 | 429 => {}
            503 => {
                let p = r.assert_problem(503, "overloaded");
                assert!(p["detail"].as_str().unwrap().contains("in flight"));
                assert_eq!(r.header("retry-after"), Some("1"));
                assert!(took < Duration::from_secs(2), "a 503 is quick: {took:?}");
                overloaded += 1;
            }
            s => panic!("{s}: {}", r.body),
        }
    }
    assert!(overloaded > 0, "24 at once against a bound of 3");

    // A publishable key is in every shopper's page: its bucket is per
    // shopper address (CF-Connecting-IP), so one busy shopper is limited
    // and another, on the same key, is not.
    thread::sleep(Duration::from_millis(1100));
    let read = |ip: &str| {
        api.request(
            "GET",
            &format!("/v1/availability?sku={sku}&location=store-1"),
            &[
                ("Authorization", &format!("Bearer {PUBLISHABLE}")),
                ("CF-Connecting-IP", ip),
            ],
            None,
        )
    };
    let mut reads = 0;
    loop {
        reads += 1;
        let r = read("203.0.113.7");
        if r.status == 429 {
            r.assert_problem(429, "rate_limited");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(reads < 40, "a shopper past the rate is limited");
    }
    let other = read("198.51.100.23");
    assert_eq!(other.status, 200, "another shopper: {}", other.body);
}
