//! Returns of POS sales: initiated, received with each condition, refunded;
//! over-returns refused by the sale's terminal (counting earlier returns);
//! the ledger; idempotent replays; bad input; SIGKILL mid-receipt.
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A POS sale at store-1 by `terminal` of `(sku, qty, unit price)` lines.
fn sell(api: &Api, terminal: &str, lines: &[(&str, i64, &str)]) -> String {
    let sale = unique("sale");
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q, p)| {
            format!(r#"{{"sku":"{s}","qty":{q},"unit_price":{{"amount":"{p}","currency":"EUR"}}}}"#)
        })
        .collect();
    let body = format!(
        r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":1,"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","lines":[{}]}}"#,
        ls.join(",")
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    sale
}

fn return_body(id: &str, sale: &str, lines: &[(&str, i64)]) -> String {
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q},"reason":"does not fit"}}"#))
        .collect();
    format!(
        r#"{{"id":"{id}","sale_id":"{sale}","lines":[{}]}}"#,
        ls.join(",")
    )
}

fn receive_body(location: &str, lines: &[(&str, i64, &str)]) -> String {
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q, c)| format!(r#"{{"sku":"{s}","qty":{q},"condition":"{c}"}}"#))
        .collect();
    format!(r#"{{"location":"{location}","lines":[{}]}}"#, ls.join(","))
}

fn refund_body(amount: &str) -> String {
    format!(r#"{{"amount":{{"amount":"{amount}","currency":"EUR"}}}}"#)
}

/// The strong (owner's) availability row of one SKU at one location.
fn strong(api: &Api, sku: &str, location: &str) -> Value {
    let r = api.get(
        &format!("/v1/availability?sku={sku}&location={location}&consistency=strong"),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"][0].clone()
}

fn line<'a>(view: &'a Value, sku: &str) -> &'a Value {
    view["lines"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["sku"] == sku))
        .unwrap_or_else(|| panic!("no line {sku} in {view}"))
}

#[test]
fn a_pos_sale_returned_with_each_condition_moves_the_right_buckets_once() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let sale = sell(&api, "rt1", &[(&a, 3, "9.99"), (&b, 2, "5.00")]);
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&id, &sale, &[(&a, 3), (&b, 1)]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "initiated");
    assert_eq!(v["sale_id"], sale.as_str());
    assert_eq!(v["terminal_id"], "rt1");
    assert_eq!(line(&v, &a)["paid"]["amount"], "29.97");
    // Initiated: no stock change.
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 7);

    let key = unique("rcv");
    let body = receive_body(
        "store-1",
        &[
            (&a, 1, "restock"),
            (&a, 1, "damaged"),
            (&a, 1, "return_to_vendor"),
            (&b, 1, "damaged"),
        ],
    );
    let path = format!("/v1/returns/{id}/receive");
    let r = api.write("POST", &path, POS1, &key, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "received");
    assert_eq!(line(&v, &a)["received"]["restock"], 1);
    assert_eq!(line(&v, &a)["received"]["damaged"], 1);
    assert_eq!(line(&v, &a)["received"]["return_to_vendor"], 1);
    assert_eq!(line(&v, &b)["received"]["damaged"], 1);
    assert_eq!(v["receipts"][0]["status"], "booked");
    assert_eq!(v["refundable"]["amount"], "34.97");

    let check = |api: &Api| {
        let ra = strong(api, &a, "store-1");
        assert_eq!(ra["on_hand"], 9, "{ra}");
        assert_eq!(ra["unavailable"]["damaged"], 1, "{ra}");
        assert_eq!(ra["available"], 8, "{ra}");
        let rb = strong(api, &b, "store-1");
        assert_eq!(rb["on_hand"], 9, "{rb}");
        assert_eq!(rb["unavailable"]["damaged"], 1, "{rb}");
        assert_eq!(rb["available"], 8, "{rb}");
    };
    check(&api);

    // The same key and body: the first answer again, nothing booked twice.
    let again = api.write("POST", &path, POS1, &key, &body);
    assert_eq!(again.status, 200);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json(), v);
    check(&api);
    // The same key with another body.
    api.write(
        "POST",
        &path,
        POS1,
        &key,
        &receive_body("store-1", &[(&b, 1, "restock")]),
    )
    .assert_problem(409, "idempotency_key_reused");
    // Nothing more than initiated: B had 1, received 1.
    let e = api
        .send(
            "POST",
            &path,
            POS1,
            &receive_body("store-1", &[(&b, 1, "restock")]),
        )
        .assert_problem(400, "invalid_request");
    assert_eq!(e["lines"][0]["receivable"], 0);
    check(&api);

    // The ledger names the return.
    let entries: Vec<Value> = ledger(&api, &a)
        .into_iter()
        .filter(|e| e["reference"] == format!("return:{id}").as_str())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|e| e["event"] == "return_received"));

    // GET shows the same, with its history.
    let g = api.get(&format!("/v1/returns/{id}"), ADMIN);
    assert_eq!(g.status, 200, "{}", g.body);
    let g = g.json();
    assert_eq!(g["lines"], v["lines"]);
    let events: Vec<&str> = g["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert_eq!(events, ["initiated", "receipt"]);
}

#[test]
fn over_returns_are_refused_counting_earlier_returns() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let sale = sell(&api, "rt2", &[(&a, 2, "10.00")]);
    let r1 = unique("ret");
    let first = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&r1, &sale, &[(&a, 1)]),
    );
    assert_eq!(first.status, 201, "{}", first.body);
    // 2 more of A: only 1 is returnable now.
    let r2 = unique("ret");
    let e = api
        .send(
            "POST",
            "/v1/returns",
            POS1,
            &return_body(&r2, &sale, &[(&a, 2)]),
        )
        .assert_problem(400, "invalid_request");
    assert_eq!(e["lines"][0]["sku"], a.as_str());
    assert_eq!(e["lines"][0]["requested"], 2);
    assert_eq!(e["lines"][0]["returnable"], 1);
    // A SKU the sale did not sell.
    let e = api
        .send(
            "POST",
            "/v1/returns",
            POS1,
            &return_body(&r2, &sale, &[(&b, 1)]),
        )
        .assert_problem(404, "not_found");
    assert!(e["detail"].as_str().unwrap().contains(&sale));
    let e = api
        .send(
            "POST",
            "/v1/returns",
            POS1,
            &format!(
                r#"{{"id":"{r2}","sale_id":"{sale}","terminal_id":"rt2","lines":[{{"sku":"{b}","qty":1,"reason":"x"}}]}}"#
            ),
        )
        .assert_problem(400, "invalid_request");
    assert_eq!(e["lines"][0]["returnable"], 0);
    // The refused one was not claimed: the last unit is still returnable.
    let ok = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&r2, &sale, &[(&a, 1)]),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let r3 = unique("ret");
    let e = api
        .send(
            "POST",
            "/v1/returns",
            POS1,
            &return_body(&r3, &sale, &[(&a, 1)]),
        )
        .assert_problem(400, "invalid_request");
    assert_eq!(e["lines"][0]["returnable"], 0);
    // The same return again (another key): found, 200; other content: 409.
    let same = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&r1, &sale, &[(&a, 1)]),
    );
    assert_eq!(same.status, 200, "{}", same.body);
    api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&r1, &sale, &[(&a, 2)]),
    )
    .assert_problem(409, "idempotency_key_reused");
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 8);
}

#[test]
fn refunds_are_checked_against_what_was_paid_for_the_units_received() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let sale = sell(&api, "rt3", &[(&a, 2, "10.00")]);
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        ADMIN,
        &return_body(&id, &sale, &[(&a, 2)]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/v1/returns/{id}/refund");
    // Nothing received yet.
    let e = api
        .send("POST", &path, POS1, &refund_body("1.00"))
        .assert_problem(409, "invalid_transition");
    assert_eq!(e["from"], "initiated");
    let rcv = api.send(
        "POST",
        &format!("/v1/returns/{id}/receive"),
        POS1,
        &receive_body("store-1", &[(&a, 1, "restock")]),
    );
    assert_eq!(rcv.status, 200, "{}", rcv.body);
    let e = api
        .send("POST", &path, POS1, &refund_body("10.01"))
        .assert_problem(400, "invalid_request");
    assert_eq!(e["refundable"]["amount"], "10.00");
    let key = unique("refund");
    let ok = api.write("POST", &path, POS1, &key, &refund_body("6.00"));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["status"], "refunded");
    assert_eq!(ok.json()["refundable"]["amount"], "4.00");
    // Replayed, not refunded twice.
    let again = api.write("POST", &path, POS1, &key, &refund_body("6.00"));
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json(), ok.json());
    api.write("POST", &path, POS1, &key, &refund_body("5.00"))
        .assert_problem(409, "idempotency_key_reused");
    api.send("POST", &path, POS1, &refund_body("4.01"))
        .assert_problem(400, "invalid_request");
    api.send(
        "POST",
        &path,
        POS1,
        r#"{"amount":{"amount":"1.00","currency":"USD"}}"#,
    )
    .assert_problem(400, "invalid_request");
    let last = api.send("POST", &path, POS1, &refund_body("4.00"));
    assert_eq!(last.status, 200, "{}", last.body);
    let v = last.json();
    assert_eq!(v["refunded"]["amount"], "10.00");
    assert_eq!(v["refundable"]["amount"], "0.00");
    assert_eq!(v["refunds"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_a_typed_4xx_that_changes_nothing() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let sale = sell(&api, "rt4", &[(&a, 2, "3.00")]);
    let id = unique("ret");
    for body in [
        format!(
            r#"{{"id":"{id}","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":1,"reason":"x"}}],"extra":1}}"#
        ),
        format!(
            r#"{{"id":"{id}","sale_id":"{sale}","order_id":"o1","lines":[{{"sku":"{a}","qty":1,"reason":"x"}}]}}"#
        ),
        format!(r#"{{"id":"{id}","lines":[{{"sku":"{a}","qty":1,"reason":"x"}}]}}"#),
        format!(
            r#"{{"id":"{id}","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":0,"reason":"x"}}]}}"#
        ),
        format!(
            r#"{{"id":"{id}","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":1,"reason":""}}]}}"#
        ),
        format!(
            r#"{{"id":"bad id","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":1,"reason":"x"}}]}}"#
        ),
        format!(r#"{{"id":"{id}","sale_id":"{sale}","lines":[]}}"#),
        "not json".to_string(),
    ] {
        api.send("POST", "/v1/returns", ADMIN, &body)
            .assert_problem(400, "invalid_request");
    }
    // Unknown SKU, unknown sale.
    api.send(
        "POST",
        "/v1/returns",
        ADMIN,
        &return_body(&id, &sale, &[("NO-SUCH-SKU", 1)]),
    )
    .assert_problem(404, "not_found");
    api.send(
        "POST",
        "/v1/returns",
        ADMIN,
        &return_body(&id, "no-such-sale", &[(&a, 1)]),
    )
    .assert_problem(404, "not_found");
    // A storefront does not return POS sales; a publishable key does nothing.
    api.send(
        "POST",
        "/v1/returns",
        STOREFRONT,
        &return_body(&id, &sale, &[(&a, 1)]),
    )
    .assert_problem(403, "forbidden");
    api.send(
        "POST",
        "/v1/returns",
        PUBLISHABLE,
        &return_body(&id, &sale, &[(&a, 1)]),
    )
    .assert_problem(403, "forbidden");
    // No Idempotency-Key.
    let r = api.request(
        "POST",
        "/v1/returns",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        Some(return_body(&id, &sale, &[(&a, 1)]).as_bytes()),
    );
    r.assert_problem(400, "invalid_request");
    // None of that made the return.
    api.get(&format!("/v1/returns/{id}"), ADMIN)
        .assert_problem(404, "not_found");
    let ok = api.send(
        "POST",
        "/v1/returns",
        ADMIN,
        &return_body(&id, &sale, &[(&a, 2)]),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let path = format!("/v1/returns/{id}/receive");
    // A POS key receives at its own location only; unknown location; bad condition.
    api.send(
        "POST",
        &path,
        POS1,
        &receive_body("store-2", &[(&a, 1, "restock")]),
    )
    .assert_problem(403, "forbidden");
    api.send(
        "POST",
        &path,
        ADMIN,
        &receive_body("nowhere", &[(&a, 1, "restock")]),
    )
    .assert_problem(404, "not_found");
    api.send(
        "POST",
        &path,
        ADMIN,
        &receive_body("store-1", &[(&a, 1, "lost")]),
    )
    .assert_problem(400, "invalid_request");
    api.send(
        "POST",
        &path,
        ADMIN,
        &receive_body("store-1", &[(&a, 3, "restock")]),
    )
    .assert_problem(400, "invalid_request");
    api.send(
        "POST",
        "/v1/returns/no-such-return/receive",
        ADMIN,
        &receive_body("store-1", &[(&a, 1, "restock")]),
    )
    .assert_problem(404, "not_found");
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 8);
    let g = api.get(&format!("/v1/returns/{id}"), ADMIN).json();
    assert_eq!(g["status"], "initiated");
    assert!(g["receipts"].as_array().unwrap().is_empty());
}

#[test]
fn sigkill_during_a_multi_sku_receipt_then_a_retry_books_it_once() {
    let mut server = Server::start();
    seed_locations(&server.api());
    // Killed at several moments of the receipt (before, while and after
    // the SKU objects book it); each time the retry with the same key
    // completes it, and each line is booked exactly once.
    for delay_ms in [5, 20, 45, 90] {
        let api = server.api();
        let skus: Vec<String> = (0..4).map(|_| api.new_sku("store-1", 20)).collect();
        let lines: Vec<(&str, i64, &str)> = skus.iter().map(|s| (s.as_str(), 5, "9.00")).collect();
        let sale = sell(&api, "rtk", &lines);
        let id = unique("ret");
        let ret_lines: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 5)).collect();
        let r = api.send(
            "POST",
            "/v1/returns",
            ADMIN,
            &return_body(&id, &sale, &ret_lines),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let conditions = ["restock", "damaged", "return_to_vendor", "restock"];
        let rl: Vec<(&str, i64, &str)> = skus
            .iter()
            .zip(conditions)
            .map(|(s, c)| (s.as_str(), 5, c))
            .collect();
        let body = receive_body("store-1", &rl);
        let key = unique("rcv-kill");
        let path = format!("/v1/returns/{id}/receive");
        let t = {
            let (api, path, key, body) = (api.clone(), path.clone(), key.clone(), body.clone());
            thread::spawn(move || api.try_write("POST", &path, ADMIN, &key, &body))
        };
        thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        let first = t.join().unwrap();
        server.start_again();
        let api = server.api();
        // Retry with the same key until answered (a 503 is retryable).
        let mut answer = None;
        for _ in 0..20 {
            let r = api.write("POST", &path, ADMIN, &key, &body);
            if r.status != 503 {
                answer = Some(r);
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        let r = answer.expect("answered");
        let first = first.map(|r| r.status);
        assert_eq!(
            r.status, 200,
            "{} (killed after {delay_ms} ms: {first:?})",
            r.body
        );
        let v = r.json();
        assert_eq!(v["status"], "received", "{v}");
        for (s, c) in skus.iter().zip(conditions) {
            assert_eq!(line(&v, s)["received"][c], 5, "{v}");
            let row = strong(&api, s, "store-1");
            let (on_hand, damaged) = match c {
                "restock" => (20, 0),
                "damaged" => (20, 5),
                _ => (15, 0),
            };
            assert_eq!(row["on_hand"], on_hand, "{s} {c}: {row}");
            assert_eq!(row["unavailable"]["damaged"], damaged, "{s} {c}: {row}");
            let booked = ledger(&api, s)
                .into_iter()
                .filter(|e| e["event"] == "return_received")
                .count();
            assert_eq!(booked, 1, "{s}: booked {booked} times");
        }
        // And again: the same answer.
        let again = api.write("POST", &path, ADMIN, &key, &body);
        assert_eq!(again.status, 200);
        assert_eq!(again.json()["lines"], v["lines"]);
        eprintln!("killed after {delay_ms} ms: first answer {first:?}");
    }
}

/// An online order of `lines` at store-1, taken through to `shipped`.
fn shipped_order(api: &Api, lines: &[(&str, i64)]) -> (String, Value) {
    let id = unique("ord");
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q}}}"#))
        .collect();
    let r = api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{id}","customer_id":"cust-9","lines":[{}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#,
            ls.join(",")
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut last = r.json();
    for to in ["paid", "ready_to_pick", "packed", "shipped"] {
        let t = api.send(
            "POST",
            &format!("/v1/orders/{id}/transitions"),
            ADMIN,
            &format!(r#"{{"to":"{to}"}}"#),
        );
        assert_eq!(t.status, 200, "{to}: {}", t.body);
        last = t.json();
    }
    (id, last)
}

fn order_return_body(id: &str, order: &str, lines: &[(&str, i64)]) -> String {
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q},"reason":"changed mind"}}"#))
        .collect();
    format!(
        r#"{{"id":"{id}","order_id":"{order}","lines":[{}]}}"#,
        ls.join(",")
    )
}

#[test]
fn an_online_order_returned_moves_stock_marks_the_order_and_bounds_refunds() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    // Not shipped yet: nothing to return.
    let early = unique("ord");
    let r = api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{early}","lines":[{{"sku":"{a}","qty":1}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    api.send(
        "POST",
        "/v1/returns",
        STOREFRONT,
        &order_return_body(&unique("ret"), &early, &[(&a, 1)]),
    )
    .assert_problem(409, "invalid_transition");

    let (order, view) = shipped_order(&api, &[(&a, 2), (&b, 1)]);
    // 2 shipped (the early order holds 1, still on hand).
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 8);
    let gross_a = view["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == a.as_str())
        .map(|l| l["gross"]["amount"].as_str().unwrap().to_string())
        .unwrap();
    // A storefront may return its online orders.
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        STOREFRONT,
        &order_return_body(&id, &order, &[(&a, 2)]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["order_id"], order.as_str());
    assert_eq!(line(&v, &a)["paid"]["amount"], gross_a.as_str());
    // Counting that return, no more A is returnable.
    let e = api
        .send(
            "POST",
            "/v1/returns",
            ADMIN,
            &order_return_body(&unique("ret"), &order, &[(&a, 1)]),
        )
        .assert_problem(400, "invalid_request");
    assert_eq!(e["lines"][0]["returnable"], 0);
    // Received: one restocked, one damaged.
    let r = api.send(
        "POST",
        &format!("/v1/returns/{id}/receive"),
        POS1,
        &receive_body("store-1", &[(&a, 1, "restock"), (&a, 1, "damaged")]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let row = strong(&api, &a, "store-1");
    assert_eq!(row["on_hand"], 10, "{row}");
    assert_eq!(row["unavailable"]["damaged"], 1, "{row}");
    assert_eq!(row["reserved"], 1, "{row}");
    assert_eq!(row["available"], 8, "{row}");
    // The order knows.
    let o = api.get(&format!("/v1/orders/{order}"), ADMIN);
    assert_eq!(o.status, 200, "{}", o.body);
    assert_eq!(o.json()["status"], "returned", "{}", o.body);
    // Refunds up to what was paid for A, tax included.
    let over: f64 = gross_a.parse::<f64>().unwrap() + 0.01;
    api.send(
        "POST",
        &format!("/v1/returns/{id}/refund"),
        ADMIN,
        &refund_body(&format!("{over:.2}")),
    )
    .assert_problem(400, "invalid_request");
    let ok = api.send(
        "POST",
        &format!("/v1/returns/{id}/refund"),
        ADMIN,
        &refund_body(&gross_a),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["refundable"]["amount"], "0.00");
    // A storefront sees returns of orders, not of POS sales.
    assert_eq!(
        api.get(&format!("/v1/returns/{id}"), STOREFRONT).status,
        200
    );
}

fn money(v: &Value) -> f64 {
    v["amount"].as_str().unwrap().parse().unwrap()
}

#[test]
fn an_exchange_holds_the_replacement_books_the_receipt_and_prices_the_difference() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let empty = api.new_sku("store-1", 0);
    let sale = sell(&api, "rtx", &[(&a, 1, "9.99")]);
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&id, &sale, &[(&a, 1)]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/v1/returns/{id}/exchange");
    let body = |sku: &str| {
        format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1}}],"receive":[{{"sku":"{a}","qty":1,"condition":"restock"}}]}}"#
        )
    };
    // The replacement cannot be held: nothing is booked.
    api.send("POST", &path, POS1, &body(&empty))
        .assert_problem(409, "insufficient_stock");
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 9);
    let g = api.get(&format!("/v1/returns/{id}"), ADMIN).json();
    assert_eq!(g["status"], "initiated", "{g}");
    assert!(g["receipts"].as_array().unwrap().is_empty());
    // Now with stock: held, received, priced.
    let key = unique("exch");
    let r = api.write("POST", &path, POS1, &key, &body(&b));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "exchanged", "{v}");
    let x = &v["exchange"];
    // The refused attempt's order keeps its refusal: this is the next id.
    assert_eq!(x["order_id"], format!("x1.{id}").as_str());
    assert_eq!(x["credit"]["amount"], "9.99");
    let diff = money(&x["replacement_total"]) - money(&x["credit"]);
    assert!((money(&x["difference"]) - diff).abs() < 1e-9, "{x}");
    assert_eq!(line(&v, &a)["received"]["restock"], 1);
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 10);
    let rb = strong(&api, &b, "store-1");
    assert_eq!(rb["reserved"], 1, "{rb}");
    let o = api.get(&format!("/v1/orders/x1.{id}"), ADMIN);
    assert_eq!(o.status, 200, "{}", o.body);
    assert_eq!(o.json()["status"], "new");
    // Replayed with the same key; a second exchange is refused.
    let again = api.write("POST", &path, POS1, &key, &body(&b));
    assert_eq!(again.status, 200);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json(), v);
    api.send("POST", &path, POS1, &body(&b))
        .assert_problem(409, "invalid_transition");
    assert_eq!(strong(&api, &b, "store-1")["reserved"], 1);
    assert_eq!(strong(&api, &a, "store-1")["on_hand"], 10);
}

#[test]
fn an_exchange_of_units_received_before_and_a_refused_receipt_holds_nothing() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let sale = sell(&api, "rty", &[(&a, 2, "8.00")]);
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &return_body(&id, &sale, &[(&a, 2)]),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/v1/returns/{id}/exchange");
    // Nothing received and nothing to receive: refused before any hold.
    api.send(
        "POST",
        &path,
        POS1,
        &format!(r#"{{"location":"store-1","lines":[{{"sku":"{b}","qty":1}}]}}"#),
    )
    .assert_problem(400, "invalid_request");
    let r = api.send(
        "POST",
        &format!("/v1/returns/{id}/receive"),
        POS1,
        &receive_body("store-1", &[(&a, 1, "damaged")]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // More than the return initiated: refused before any hold.
    api.send(
        "POST",
        &path,
        POS1,
        &format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{b}","qty":1}}],"receive":[{{"sku":"{a}","qty":2,"condition":"restock"}}]}}"#
        ),
    )
    .assert_problem(400, "invalid_request");
    assert_eq!(strong(&api, &b, "store-1")["reserved"], 0);
    api.get(&format!("/v1/orders/x.{id}"), ADMIN)
        .assert_problem(404, "not_found");
    // The unit received before is the credit.
    let r = api.send(
        "POST",
        &path,
        POS1,
        &format!(r#"{{"location":"store-1","lines":[{{"sku":"{b}","qty":2}}]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let x = r.json()["exchange"].clone();
    assert_eq!(x["credit"]["amount"], "8.00", "{x}");
    assert_eq!(x["order_id"], format!("x.{id}").as_str());
    assert_eq!(strong(&api, &b, "store-1")["reserved"], 2);
    let row = strong(&api, &a, "store-1");
    assert_eq!(
        (
            row["on_hand"].as_i64(),
            row["unavailable"]["damaged"].as_i64()
        ),
        (Some(9), Some(1))
    );
}
