//! POS sales, counts, adjustments, safety stock and the ledger.
use std::thread;

use serde_json::json;

use crate::harness::*;

fn sale_body(sale: &str, terminal: &str, seq: u64, sku: &str, qty: i64) -> String {
    format!(
        r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":{seq},"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","lines":[{{"sku":"{sku}","qty":{qty},"unit_price":{{"amount":"9.99","currency":"EUR"}}}}],"payments":[{{"method":"card","amount":{{"amount":"9.99","currency":"EUR"}}}}]}}"#
    )
}

#[test]
fn a_pos_sale_is_never_refused_and_marks_oversell_and_at_risk_holds() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 3);
    let cart = unique("cart");
    assert_eq!(api.reserve(&cart, &[(&sku, 2)], "store-1", 900).status, 201);
    // 1 available at the till; sell 3.
    let r = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &sale_body(&unique("sale"), "t1", 1, &sku, 3),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "recorded");
    assert_eq!(v["oversold"], true);
    assert_eq!(v["lines"][0]["oversold"], 2);
    assert_eq!(v["at_risk"][0]["reservation"], cart.as_str());
    let row = api.stock(&sku, "store-1");
    assert_eq!(row["on_hand"], 0);
    assert_eq!(row["reserved"], 2);
}

#[test]
fn a_sale_is_idempotent_forever_by_sale_id() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 10);
    let sale = unique("sale");
    let body = sale_body(&sale, "t2", 7, &sku, 2);
    let first = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(first.status, 201, "{}", first.body);
    // Another Idempotency-Key, same sale: the same answer, no second effect.
    for _ in 0..3 {
        let again = api.send("POST", "/v1/pos/sales", POS1, &body);
        assert_eq!(again.status, 201);
        assert_eq!(again.json(), first.json());
    }
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 8);
    // The same sale id with other content is refused.
    let other = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &sale_body(&sale, "t2", 7, &sku, 3),
    );
    other.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 8);
}

#[test]
fn sales_by_barcode_and_pos_key_bound_to_its_location() {
    let api = shared().api();
    let sku = unique("BC");
    let digits: String = unique("x").chars().filter(|c| c.is_ascii_digit()).collect();
    let code = format!("40{digits:0>12}");
    let r = api.send(
        "PUT",
        &format!("/v1/products/{}", unique("p")),
        ADMIN,
        &format!(r#"{{"title":"Barcoded","variants":[{{"sku":"{sku}","barcode":"{code}","options":{{"size":"M"}},"price":{{"amount":"5.00","currency":"EUR"}}}}]}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let b = api.get(&format!("/v1/barcodes/{code}"), POS1);
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.json()["sku"], sku.as_str());
    api.receive(&sku, "store-1", 5);
    let body = format!(
        r#"{{"sale_id":"{}","terminal_id":"t3","device_seq":1,"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","lines":[{{"barcode":"{code}","qty":1,"unit_price":{{"amount":"5.00","currency":"EUR"}}}}]}}"#,
        unique("sale")
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 4);
    // A POS key bound to store-1 cannot sell at store-2.
    let elsewhere = body
        .replace("store-1", "store-2")
        .replace("\"t3\"", "\"t4\"");
    api.send("POST", "/v1/pos/sales", POS1, &elsewhere)
        .assert_problem(403, "forbidden");
    // An unknown barcode is 404.
    let unknown = body.replace(&code, "999999999999");
    api.send("POST", "/v1/pos/sales", POS1, &unknown)
        .assert_problem(404, "not_found");
}

#[test]
fn an_offline_batch_is_applied_in_device_order_and_answered_per_sale() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 10);
    let terminal = unique("term");
    let ids: Vec<String> = (0..5).map(|_| unique("sale")).collect();
    // Sent out of order.
    let sales: Vec<String> = [3usize, 0, 4, 1, 2]
        .iter()
        .map(|&i| sale_body(&ids[i], &terminal, i as u64 + 1, &sku, 1))
        .collect();
    let results = api.sale_batch(&sales);
    assert_eq!(results.len(), 5);
    for (res, &i) in results.iter().zip([3usize, 0, 4, 1, 2].iter()) {
        assert_eq!(res["sale_id"], ids[i].as_str());
        assert_eq!(res["status"], 201, "{res}");
    }
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 5);
    // The ledger shows the sales in device order.
    let l = api.get(&format!("/v1/skus/{sku}/ledger?location=store-1"), ADMIN);
    let sold: Vec<String> = l.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "sold")
        .map(|e| e["details"]["sale"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sold, ids);
    // Uploading the same queue again changes nothing.
    api.sale_batch(&sales);
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 5);
}

#[test]
fn counts_adjustments_safety_stock_and_the_ledger() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 10);
    // Safety stock: the online channel leaves 3 units alone.
    let r = api.send(
        "PUT",
        "/v1/inventory/safety-stock",
        ADMIN,
        &format!(r#"{{"location":"store-1","sku":"{sku}","qty":3}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["item"]["safety_stock"], 3);
    assert_eq!(api.available(&sku, "store-1"), 7);
    // Adjustment with expected_version.
    let v = api.stock(&sku, "store-1")["version"].as_i64().unwrap();
    let adj = |delta: i64, version: i64| {
        api.send(
            "POST",
            "/v1/inventory/adjustments",
            ADMIN,
            &format!(r#"{{"location":"store-1","sku":"{sku}","delta":{delta},"reason":"shrinkage","note":"broken shelf","expected_version":{version}}}"#),
        )
    };
    let r = adj(-2, v);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["item"]["on_hand"], 8);
    adj(-1, v).assert_problem(409, "version_conflict");
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 8);
    // A count by the POS at its store sets on_hand and reports the variance.
    let r = api.send(
        "POST",
        "/v1/inventory/counts",
        POS1,
        &format!(r#"{{"location":"store-1","counted_at":"2099-01-01T00:00:00Z","lines":[{{"sku":"{sku}","counted":6}}]}}"#),
    );
    // A count from the future is refused; one from now is accepted.
    assert_eq!(r.status, 400, "{}", r.body);
    thread::sleep(std::time::Duration::from_millis(1100));
    let r = api.send(
        "POST",
        "/v1/inventory/counts",
        POS1,
        &format!(
            r#"{{"location":"store-1","counted_at":"{}","lines":[{{"sku":"{sku}","counted":6}}]}}"#,
            rfc3339_ago(300)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["lines"][0]["on_hand"], 6);
    assert_eq!(r.json()["lines"][0]["variance"], -2);
    assert_eq!(api.stock(&sku, "store-1")["on_hand"], 6);
    // The ledger lists every change with actor, reason and reference.
    let l = api.get(&format!("/v1/skus/{sku}/ledger?location=store-1"), ADMIN);
    assert_eq!(l.status, 200, "{}", l.body);
    let events: Vec<(String, String)> = l.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            ("received".to_string(), "admin".to_string()),
            ("safety_stock_set".to_string(), "admin".to_string()),
            ("adjusted".to_string(), "admin".to_string()),
            ("counted".to_string(), "pos@store-1".to_string()),
        ]
    );
    let adjusted = &l.json()["items"][2];
    assert_eq!(adjusted["reason"], "shrinkage");
    assert_eq!(adjusted["reference"], "broken shelf");
    assert_eq!(adjusted["qty"], json!(-2));
    // A POS key reads the ledger of its own store only.
    api.get(&format!("/v1/skus/{sku}/ledger?location=store-2"), POS1)
        .assert_problem(403, "forbidden");
    api.get(&format!("/v1/skus/{sku}/ledger"), STOREFRONT)
        .assert_problem(403, "forbidden");
}

/// A product of one variant at 10.00 EUR with `tax_code`, 5 received at store-1.
fn coded_sku(api: &Api, tax_code: &str) -> String {
    let sku = unique("TC");
    let r = api.send(
        "PUT",
        &format!("/v1/products/{}", unique("p")),
        ADMIN,
        &format!(
            r#"{{"title":"Coded {sku}","variants":[{{"sku":"{sku}","options":{{}},"price":{{"amount":"10.00","currency":"EUR"}},"tax_code":"{tax_code}"}}]}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    api.receive(&sku, "store-1", 5);
    sku
}

#[test]
fn a_sale_records_its_tax_per_line_and_bad_tax_input_changes_nothing() {
    let api = shared().api();
    // wrangler.toml's table: standard 8 %, reduced 2 %, exempt 0, excluded.
    let std_sku = api.new_sku("store-1", 5);
    let exempt = coded_sku(&api, "exempt");
    let unknown_code = coded_sku(&api, "luxury");
    let line = |sku: &str, qty: i64, amount: &str, cur: &str| json!({"sku": sku, "qty": qty, "unit_price": {"amount": amount, "currency": cur}});
    let sale = |id: &str, lines: Vec<serde_json::Value>| {
        json!({"sale_id": id, "terminal_id": "tax-t1", "device_seq": 1, "location": "store-1",
               "occurred_at": "2026-01-02T10:00:00Z", "lines": lines})
    };
    // Lines in two currencies: 400, nothing sold.
    let mixed = sale(
        &unique("sale"),
        vec![
            line(&std_sku, 1, "9.99", "EUR"),
            line(&exempt, 1, "10.00", "USD"),
        ],
    );
    api.send("POST", "/v1/pos/sales", POS1, &mixed.to_string())
        .assert_problem(400, "invalid_request");
    // A tax code the table has no rate for: 400, nothing sold.
    let bad = sale(
        &unique("sale"),
        vec![line(&unknown_code, 1, "10.00", "EUR")],
    );
    let p = api
        .send("POST", "/v1/pos/sales", POS1, &bad.to_string())
        .assert_problem(400, "invalid_request");
    assert!(p["detail"].as_str().unwrap().contains("luxury"), "{p}");
    for s in [&std_sku, &exempt, &unknown_code] {
        assert_eq!(api.stock(s, "store-1")["on_hand"], 5, "{s} unchanged");
    }
    // A batch: each sale answers its own recorded tax.
    let (a, b) = (unique("sale"), unique("sale"));
    let mut sa = sale(&a, vec![line(&std_sku, 2, "9.99", "EUR")]);
    let mut sb = sale(&b, vec![line(&exempt, 1, "10.00", "EUR")]);
    sb["device_seq"] = json!(2);
    sa["terminal_id"] = json!("tax-t2");
    sb["terminal_id"] = json!("tax-t2");
    let r = api.send(
        "POST",
        "/v1/pos/sales/batch",
        POS1,
        &json!({"sales": [sa, sb]}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let body = |id: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["sale_id"] == id)
            .map(|x| x["body"].clone())
            .unwrap()
    };
    // 19.98 at 8 %: 1.60 (1.5984 rounded); exempt: 0.
    let ba = body(&a);
    assert_eq!(ba["totals"]["tax"], "1.60", "{ba}");
    assert_eq!(ba["totals"]["gross"], "21.58");
    assert_eq!(ba["totals"]["tax_inclusive"], false);
    assert_eq!(ba["items"][0]["tax"]["rate"], "0.08");
    let bb = body(&b);
    assert_eq!(bb["items"][0]["tax"]["rate"], "0");
    assert_eq!(bb["totals"]["gross"], "10.00", "{bb}");
}
