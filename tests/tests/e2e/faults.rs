//! Faults: `wrangler dev` killed with SIGKILL in the middle of a load of
//! writes, then restarted on the same state.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::*;

#[derive(Clone, Debug)]
enum Write {
    Receipt { key: String, body: String },
    Cart { key: String, body: String },
}

type Attempt = (Write, Option<Resp>);

#[test]
fn sigkill_mid_load_loses_nothing_acknowledged_and_retries_complete_once() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 0);
    let b = api.new_sku("store-1", 10_000);
    let c = api.new_sku("store-1", 10_000);

    let stop = Arc::new(AtomicBool::new(false));
    // (write, acknowledged answer or None when unanswered)
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let (api, stop, log) = (api.clone(), stop.clone(), log.clone());
            let (a, b, c) = (a.clone(), b.clone(), c.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let key = unique(&format!("load{t}-{i}"));
                    let w = if i % 2 == 0 {
                        Write::Receipt {
                            key,
                            body: format!(
                                r#"{{"location":"store-1","lines":[{{"sku":"{a}","qty":1}}]}}"#
                            ),
                        }
                    } else {
                        let id = unique("kcart");
                        Write::Cart {
                            key,
                            body: format!(
                                r#"{{"id":"{id}","lines":[{{"sku":"{b}","qty":1}},{{"sku":"{c}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":3600}}"#
                            ),
                        }
                    };
                    let r = match &w {
                        Write::Receipt { key, body } => {
                            api.try_write("POST", "/v1/inventory/receipts", ADMIN, key, body)
                        }
                        Write::Cart { key, body } => {
                            api.try_write("POST", "/v1/reservations", STOREFRONT, key, body)
                        }
                    };
                    let failed = r.is_err();
                    log.lock().unwrap().push((w, r.ok()));
                    if failed {
                        break;
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2500));
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    server.start_again();
    let api = server.api();
    let log = log.lock().unwrap().clone();
    let acked_receipts = log
        .iter()
        .filter(|(w, r)| {
            matches!(w, Write::Receipt { .. }) && r.as_ref().is_some_and(|r| r.status == 200)
        })
        .count() as i64;
    let acked_carts = log
        .iter()
        .filter(|(w, r)| {
            matches!(w, Write::Cart { .. }) && r.as_ref().is_some_and(|r| r.status == 201)
        })
        .count() as i64;
    for (w, r) in &log {
        if let Some(r) = r {
            assert!(r.status < 500 || r.status == 503, "{w:?}: {}", r.body);
        }
    }
    assert!(
        acked_receipts + acked_carts > 10,
        "too little load before the kill"
    );

    // Every acknowledged write is there; nothing more than was sent.
    let on_hand = api.stock(&a, "store-1")["on_hand"].as_i64().unwrap();
    let sent_receipts = log
        .iter()
        .filter(|(w, _)| matches!(w, Write::Receipt { .. }))
        .count() as i64;
    assert!(
        on_hand >= acked_receipts && on_hand <= sent_receipts,
        "{on_hand} vs {acked_receipts}..{sent_receipts}"
    );
    // A cart is all or nothing per SKU object pair only once retried; before
    // that, a half-made cart may hold one line until its retry or its expiry.

    // Retrying every write with its key completes it exactly once.
    for (w, _) in &log {
        let r = match w {
            Write::Receipt { key, body } => {
                api.write("POST", "/v1/inventory/receipts", ADMIN, key, body)
            }
            Write::Cart { key, body } => {
                api.write("POST", "/v1/reservations", STOREFRONT, key, body)
            }
        };
        assert!(r.status == 200 || r.status == 201, "{w:?}: {}", r.body);
    }
    let receipts = sent_receipts;
    let carts = log
        .iter()
        .filter(|(w, _)| matches!(w, Write::Cart { .. }))
        .count() as i64;
    let ra = api.stock(&a, "store-1");
    assert_eq!(ra["on_hand"].as_i64().unwrap(), receipts);
    let rb = api.stock(&b, "store-1");
    let rc = api.stock(&c, "store-1");
    assert_eq!(rb["reserved"].as_i64().unwrap(), carts, "B: {rb}");
    assert_eq!(rc["reserved"].as_i64().unwrap(), carts, "C: {rc}");
    assert_eq!(rb["available"].as_i64().unwrap(), 10_000 - carts);
}
