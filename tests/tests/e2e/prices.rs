//! Prices per channel, compare-at prices and scheduled price changes (issue 11).
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

fn eur(a: &str) -> String {
    format!(r#"{{"amount":"{a}","currency":"EUR"}}"#)
}

fn order(api: &Api, sku: &str) -> serde_json::Value {
    let r = api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{}","lines":[{{"sku":"{sku}","qty":1}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#,
            unique("po")
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn sale(api: &Api, sku: &str, seq: u64) -> serde_json::Value {
    let r = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &format!(
            r#"{{"sale_id":"{}","terminal_id":"t-prices","device_seq":{seq},"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1}}]}}"#,
            unique("ps"),
            rfc3339_ago(0)
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[test]
fn channels_charge_their_own_price_and_a_scheduled_sale_starts_on_time() {
    let api = shared().api();
    let sku = unique("PRICE");
    let product = unique("pp");
    let starts = rfc3339_ago(-4_000);
    let body = format!(
        r#"{{"title":"Priced tee","variants":[{{"sku":"{sku}","price":{},"channel_prices":{{"online":{}}},"compare_at_price":{},"scheduled_prices":[{{"at":"{starts}","price":{},"compare_at_price":{}}}]}}]}}"#,
        eur("20.00"),
        eur("18.00"),
        eur("25.00"),
        eur("15.00"),
        eur("20.00"),
    );
    let r = api.send("PUT", &format!("/v1/products/{product}"), ADMIN, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = &r.json()["variants"][0];
    assert_eq!(v["channel_prices"]["online"]["amount"], "18.00");
    assert_eq!(v["scheduled_prices"][0]["price"]["amount"], "15.00");
    api.receive(&sku, "store-1", 50);

    // Before the change: online 18 (its own price), the till 20 (the base).
    let o = order(&api, &sku);
    assert_eq!(o["lines"][0]["unit_price"]["amount"], "18.00", "{o}");
    let s = sale(&api, &sku, 1);
    assert_eq!(s["items"][0]["unit_price"]["amount"], "20.00", "{s}");
    // A till's own price still wins.
    let r = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &format!(
            r#"{{"sale_id":"{}","terminal_id":"t-prices","device_seq":2,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1,"unit_price":{}}}]}}"#,
            unique("ps"),
            rfc3339_ago(0),
            eur("12.00")
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["items"][0]["unit_price"]["amount"], "12.00");

    // After its time: 15 on every channel, whatever the alarm has done yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.get(&format!("/v1/products/{product}"), ADMIN).json()["variants"][0]
        .get("scheduled_prices")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the catalog's alarm never folded the change in"
        );
        thread::sleep(Duration::from_millis(250));
    }
    let p = api.get(&format!("/v1/products/{product}"), ADMIN).json();
    let v = &p["variants"][0];
    assert_eq!(v["price"]["amount"], "15.00", "{p}");
    assert_eq!(v["compare_at_price"]["amount"], "20.00", "{p}");
    assert!(
        v.get("channel_prices").is_none(),
        "a base change drops channel prices: {p}"
    );
    let sku_info = api.get(&format!("/v1/skus/{sku}"), ADMIN).json();
    assert_eq!(sku_info["variant"]["price"]["amount"], "15.00");
    let o = order(&api, &sku);
    assert_eq!(o["lines"][0]["unit_price"]["amount"], "15.00", "{o}");
    let s = sale(&api, &sku, 3);
    assert_eq!(s["items"][0]["unit_price"]["amount"], "15.00", "{s}");
}

#[test]
fn bad_prices_are_refused_and_change_nothing() {
    let api = shared().api();
    let sku = unique("PRICE");
    let product = unique("pp");
    let put = |variant: String| {
        api.send(
            "PUT",
            &format!("/v1/products/{product}"),
            ADMIN,
            &format!(r#"{{"title":"Bad prices","variants":[{variant}]}}"#),
        )
    };
    let mixed = format!(
        r#"{{"sku":"{sku}","price":{},"channel_prices":{{"pos":{{"amount":"1.00","currency":"USD"}}}}}}"#,
        eur("2.00")
    );
    put(mixed).assert_problem(400, "invalid_request");
    let late = format!(
        r#"{{"sku":"{sku}","price":{},"scheduled_prices":[{{"at":"tomorrow","price":{}}}]}}"#,
        eur("2.00"),
        eur("1.00")
    );
    put(late).assert_problem(400, "invalid_request");
    let many: Vec<String> = (0..21)
        .map(|i| {
            format!(
                r#"{{"at":"{}","price":{}}}"#,
                rfc3339_ago(-60_000 - i),
                eur("1.00")
            )
        })
        .collect();
    let too_many = format!(
        r#"{{"sku":"{sku}","price":{},"scheduled_prices":[{}]}}"#,
        eur("2.00"),
        many.join(",")
    );
    put(too_many).assert_problem(400, "invalid_request");
    assert_eq!(
        api.get(&format!("/v1/products/{product}"), ADMIN).status,
        404
    );
}
