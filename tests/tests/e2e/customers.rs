//! Customers and loyalty (issue 10): one customer's online order and POS
//! sale both in its history with their returns and an exchange; lookup by
//! normalised email and phone, one contact per customer; points earned,
//! reversed on returns, redeemed all or nothing, never below zero,
//! idempotent; erasure; and a SIGKILL in the middle of a customer's sales
//! and redemptions, after which the balance is still exactly right.
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn put_customer(api: &Api, id: &str, body: &str) -> Resp {
    api.send("PUT", &format!("/v1/customers/{id}"), ADMIN, body)
}

fn customer(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/v1/customers/{id}"), ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The customer once `done` holds (facts arrive at least once, usually
/// within the producing request; the producer's alarm retries).
fn customer_when(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = customer(api, id);
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "never reached: {c}");
        thread::sleep(Duration::from_millis(200));
    }
}

fn sale_body(
    sale: &str,
    terminal: &str,
    seq: u64,
    customer: &str,
    sku: &str,
    qty: i64,
    price: &str,
) -> String {
    format!(
        r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":{seq},"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","customer_id":"{customer}","lines":[{{"sku":"{sku}","qty":{qty},"unit_price":{{"amount":"{price}","currency":"EUR"}}}}]}}"#
    )
}

fn sell(api: &Api, customer: &str, sku: &str, qty: i64, price: &str) -> String {
    let sale = unique("sale");
    let r = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &sale_body(&sale, &format!("t-{sale}"), 1, customer, sku, qty, price),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    sale
}

/// An online order of `customer`, collected at store-1; its view.
fn collected_order(api: &Api, customer: &str, sku: &str, qty: i64) -> (String, Value) {
    let id = unique("ord");
    let r = api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{id}","channel":"online","customer_id":"{customer}","lines":[{{"sku":"{sku}","qty":{qty}}}],"fulfillment":{{"type":"pickup","location":"store-1"}}}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut last = r.json();
    for to in [
        "paid",
        "ready_to_pick",
        "packed",
        "ready_for_pickup",
        "collected",
    ] {
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

/// Initiates, receives (restock) and refunds `amount` of a return.
fn return_and_refund(api: &Api, source: &str, sku: &str, qty: i64, amount: &str) -> String {
    let id = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        ADMIN,
        &format!(
            r#"{{"id":"{id}",{source},"lines":[{{"sku":"{sku}","qty":{qty},"reason":"too small"}}]}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.send(
        "POST",
        &format!("/v1/returns/{id}/receive"),
        POS1,
        &format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":{qty},"condition":"restock"}}]}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.send(
        "POST",
        &format!("/v1/returns/{id}/refund"),
        POS1,
        &format!(r#"{{"amount":{{"amount":"{amount}","currency":"EUR"}}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    id
}

fn purchase<'a>(c: &'a Value, id: &str) -> &'a Value {
    c["purchases"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["source"]["id"] == id))
        .unwrap_or_else(|| panic!("no purchase {id} in {c}"))
}

fn redeem(api: &Api, id: &str, idem: &str, points: i64) -> Resp {
    api.write(
        "POST",
        &format!("/v1/customers/{id}/loyalty/redeem"),
        POS1,
        idem,
        &format!(r#"{{"points":{points}}}"#),
    )
}

fn lookup(api: &Api, query: &str) -> Vec<String> {
    let r = api.get(&format!("/v1/customers?{query}"), POS1);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn one_customer_across_channels_earns_reverses_redeems_and_is_erased() {
    let api = shared().api();
    let sku = api.new_sku("store-1", 50);
    let id = unique("cust");
    let tag = unique("m").to_lowercase();
    let email = format!("{tag}@example.com");
    // The shared server's D1 is fresh per run: this phone is this test's.
    let digits = 5_550_102_030u64;
    let key = unique("put");
    let body = format!(
        r#"{{"name":" Ana Doe ","email":"  {} ","phone":"({}) {}-{}"}}"#,
        email.to_uppercase(),
        &digits.to_string()[..3],
        &digits.to_string()[3..6],
        &digits.to_string()[6..]
    );
    let r = api.write("PUT", &format!("/v1/customers/{id}"), ADMIN, &key, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["profile"]["name"], "Ana Doe");
    assert_eq!(v["profile"]["email"], email.as_str());
    assert_eq!(v["profile"]["phone"], format!("+1{digits}").as_str());
    let again = api.write("PUT", &format!("/v1/customers/{id}"), ADMIN, &key, &body);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json(), v);
    // Looked up by the normalised email and phone, however written.
    assert_eq!(
        lookup(&api, &format!("email={}", email.to_uppercase())),
        vec![id.clone()]
    );
    assert_eq!(
        lookup(&api, &format!("phone=%2B1+{digits}")),
        vec![id.clone()]
    );
    assert_eq!(lookup(&api, &format!("phone={digits}")), vec![id.clone()]);
    // One email belongs to one customer: another is refused, unchanged.
    let other = unique("cust");
    let e = put_customer(
        &api,
        &other,
        &format!(r#"{{"name":"Eve","email":"{email}"}}"#),
    )
    .assert_problem(409, "contact_taken");
    assert_eq!(e["field"], "email");
    assert_eq!(e["customer_id"], id.as_str());
    assert_eq!(
        api.get(&format!("/v1/customers/{other}"), ADMIN).status,
        404
    );
    // Bad input is a 400 that changes nothing.
    put_customer(&api, &id, r#"{"name":"Ana","email":"not-an-email"}"#)
        .assert_problem(400, "invalid_request");
    put_customer(&api, &id, r#"{"name":"Ana","phone":"12"}"#)
        .assert_problem(400, "invalid_request");
    put_customer(&api, &id, r#"{"name":"Ana","age":3}"#).assert_problem(400, "invalid_request");
    assert_eq!(customer(&api, &id)["profile"]["email"], email.as_str());

    // A POS sale: 2 x 10.00 = 20 points at the till.
    let sale = sell(&api, &id, &sku, 2, "10.00");
    // An online order collected: 1 x 9.99 + 8% tax = 10.79, 10 points.
    let (order, view) = collected_order(&api, &id, &sku, 1);
    assert_eq!(view["totals"]["gross"], "10.79", "{view}");
    let c = customer_when(&api, &id, |c| c["purchases"].as_array().unwrap().len() == 2);
    assert_eq!(purchase(&c, &sale)["channel"], "pos");
    assert_eq!(purchase(&c, &sale)["total"]["amount"], "20.00");
    assert_eq!(purchase(&c, &order)["channel"], "online");
    assert_eq!(purchase(&c, &order)["points_earned"], 10);
    assert_eq!(c["loyalty"]["balance"], 30, "{c}");
    // The sale again under another key (a till's retry): the first answer,
    // and the customer's purchase is not counted twice.
    let retry = api.get(&format!("/v1/customers/{id}"), ADMIN).json()["purchases"].clone();
    let again = api.send(
        "POST",
        "/v1/pos/sales",
        POS1,
        &sale_body(&sale, &format!("t-{sale}"), 1, &id, &sku, 2, "10.00"),
    );
    assert_eq!(again.status, 201, "{}", again.body);
    let c = customer(&api, &id);
    assert_eq!(c["purchases"], retry);
    assert_eq!(c["loyalty"]["earned"], 30, "{c}");

    // Half the sale returned and refunded: floor(20 * 10.00 / 20.00) = 10 back.
    let ret = return_and_refund(&api, &format!(r#""sale_id":"{sale}""#), &sku, 1, "10.00");
    let c = customer_when(&api, &id, |c| c["loyalty"]["reversed"] == 10);
    let p = purchase(&c, &sale);
    assert_eq!(p["returns"][0]["return_id"], ret.as_str(), "{p}");
    assert_eq!(p["returns"][0]["refunded"]["amount"], "10.00");
    assert_eq!(p["returns"][0]["lines"][0]["qty"], 1);
    assert_eq!(c["loyalty"]["balance"], 20);

    // Redemption: all or nothing, idempotent.
    let too_many = redeem(&api, &id, &unique("rd"), 21).assert_problem(409, "insufficient_points");
    assert_eq!(too_many["balance"], 20);
    let k = unique("rd");
    let r = redeem(&api, &id, &k, 15);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["balance"], 5);
    let again = redeem(&api, &id, &k, 15);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json(), r.json());
    redeem(&api, &id, &k, 3).assert_problem(409, "idempotency_key_reused");
    redeem(&api, &id, &unique("rd"), 0).assert_problem(400, "invalid_request");
    assert_eq!(customer(&api, &id)["loyalty"]["balance"], 5);

    // The whole order returned after points were spent: the balance floors
    // at 0 and the shortfall is recorded.
    return_and_refund(&api, &format!(r#""order_id":"{order}""#), &sku, 1, "10.79");
    let c = customer_when(&api, &id, |c| c["loyalty"]["reversed"] == 20);
    assert_eq!(c["loyalty"]["balance"], 0, "{c}");
    assert_eq!(c["loyalty"]["shortfall"], 5);
    assert_eq!(purchase(&c, &order)["points_reversed"], 10);
    redeem(&api, &id, &unique("rd"), 1).assert_problem(409, "insufficient_points");
    let kinds: Vec<&str> = c["loyalty"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reversed", "redeemed", "reversed", "earned", "earned"]
    );

    // Erasure: the profile goes, the history stays, the contacts are free.
    let path = format!("/v1/customers/{id}/erase");
    api.send("POST", &path, POS1, "{}")
        .assert_problem(403, "forbidden");
    let r = api.send("POST", &path, ADMIN, "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let c = customer(&api, &id);
    assert_eq!(c["profile"], Value::Null);
    assert_eq!(c["erased"], true);
    assert_eq!(c["purchases"].as_array().unwrap().len(), 2);
    assert!(!c.to_string().contains(&tag), "personal data left: {c}");
    assert!(lookup(&api, &format!("email={email}")).is_empty());
    put_customer(&api, &id, r#"{"name":"Ana"}"#).assert_problem(409, "invalid_transition");
    // The email can now be another customer's.
    assert_eq!(
        put_customer(
            &api,
            &other,
            &format!(r#"{{"name":"Eve","email":"{email}"}}"#)
        )
        .status,
        201
    );
}

#[test]
fn an_exchange_reverses_the_points_of_what_came_back() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let id = unique("cust");
    assert_eq!(put_customer(&api, &id, r#"{"name":"Bo"}"#).status, 201);
    let sale = sell(&api, &id, &a, 1, "30.00");
    let ret = unique("ret");
    let r = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &format!(r#"{{"id":"{ret}","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":1,"reason":"colour"}}]}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.send(
        "POST",
        &format!("/v1/returns/{ret}/exchange"),
        POS1,
        &format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{b}","qty":1}}],"receive":[{{"sku":"{a}","qty":1,"condition":"restock"}}]}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = customer_when(&api, &id, |c| c["loyalty"]["reversed"] == 30);
    let p = purchase(&c, &sale);
    assert_eq!(p["returns"][0]["credited"]["amount"], "30.00", "{p}");
    assert_eq!(c["loyalty"]["balance"], 0);
}

#[test]
fn two_customers_racing_for_one_email_one_wins() {
    let api = shared().api();
    let email = format!("{}@race.example", unique("r").to_lowercase());
    for round in 0..3 {
        let ids: Vec<String> = (0..4).map(|_| unique("racer")).collect();
        let answers: Vec<u16> = ids
            .iter()
            .map(|id| {
                let (api, id, email) = (api.clone(), id.clone(), format!("{round}{email}"));
                thread::spawn(move || {
                    put_customer(&api, &id, &format!(r#"{{"name":"R","email":"{email}"}}"#)).status
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(
            answers.iter().filter(|s| **s == 201).count(),
            1,
            "{answers:?}"
        );
        assert_eq!(
            answers.iter().filter(|s| **s == 409).count(),
            3,
            "{answers:?}"
        );
        let winner = &ids[answers.iter().position(|s| *s == 201).unwrap()];
        assert_eq!(
            lookup(&api, &format!("email={round}{email}")),
            vec![winner.clone()]
        );
    }
    // An unencoded + in the query still finds the number.
    let id = unique("cust");
    let r = put_customer(&api, &id, r#"{"name":"P","phone":"+44 20 7946 0958"}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(lookup(&api, "phone=+442079460958"), vec![id]);
}

#[test]
fn lookups_and_ids_are_checked() {
    let api = shared().api();
    for q in [
        "",
        "email=a@b.co&phone=123456789",
        "name=x",
        "email=nope",
        "phone=abc",
    ] {
        api.get(&format!("/v1/customers?{q}"), ADMIN)
            .assert_problem(400, "invalid_request");
    }
    api.get("/v1/customers/bad%20id", ADMIN)
        .assert_problem(400, "invalid_request");
    api.get(&format!("/v1/customers/{}", unique("none")), ADMIN)
        .assert_problem(404, "not_found");
    api.get("/v1/customers?email=a@b.co", PUBLISHABLE)
        .assert_problem(403, "forbidden");
    let r = api.send("PUT", "/v1/customers/x1", ADMIN, r#"{"name":""}"#);
    r.assert_problem(400, "invalid_request");
}

#[test]
fn sigkill_mid_sales_and_redemptions_keeps_the_balance_exact() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 1_000);
    let id = unique("cust");
    assert_eq!(put_customer(&api, &id, r#"{"name":"Kim"}"#).status, 201);
    // Sales of 1 x 7.50 each (7 points), every one retried with its own
    // key and sale id until answered; redemptions of 3 points likewise.
    let sales: Vec<(String, String, String)> = (0..24)
        .map(|i| {
            let s = unique("sale");
            (
                unique("k"),
                s.clone(),
                sale_body(&s, "tk", i + 1, &id, &sku, 1, "7.50"),
            )
        })
        .collect();
    let answered: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let base = Arc::new(Mutex::new(api.base.clone()));
    let worker = {
        let answered = answered.clone();
        let base = base.clone();
        let sales = sales.clone();
        thread::spawn(move || {
            for (key, sale, body) in sales {
                loop {
                    let api = Api::new(&base.lock().unwrap());
                    match api.try_write("POST", "/v1/pos/sales", POS1, &key, &body) {
                        Ok(r) if r.status == 201 => {
                            answered.lock().unwrap().push(sale);
                            break;
                        }
                        _ => thread::sleep(Duration::from_millis(100)),
                    }
                }
            }
        })
    };
    // Let some sales land, then kill everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 8 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    thread::sleep(Duration::from_millis(300));
    server.start_again();
    *base.lock().unwrap() = server.url();
    worker.join().unwrap();
    assert_eq!(answered.lock().unwrap().len(), 24);
    // Redemptions across another kill: each key once.
    let keys: Vec<String> = (0..5).map(|_| unique("rd")).collect();
    for (i, k) in keys.iter().enumerate() {
        if i == 2 {
            server.kill9();
            server.start_again();
        }
        let api = server.api();
        let r = redeem(&api, &id, k, 3);
        assert_eq!(r.status, 200, "{}", r.body);
        // A retry after the answer: replayed, nothing redeemed twice.
        let again = redeem(&api, &id, k, 3);
        assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    }
    let api = server.api();
    let c = customer_when(&api, &id, |c| {
        c["purchases"].as_array().unwrap().len() == 24
    });
    assert_eq!(c["loyalty"]["earned"], 24 * 7, "{c}");
    assert_eq!(c["loyalty"]["redeemed"], 15);
    assert_eq!(c["loyalty"]["balance"], 24 * 7 - 15);
}

/// Stored JSON rows larger than a piece (`STORAGE_PIECE_BYTES`; 512 KiB by
/// default, since SQLite refuses a string over 2 MB in the runtime, which a
/// customer at core's bounds exceeds) are written in pieces and read back
/// whole: here the Customer's and the Order's rows with 1 KiB pieces, across
/// a restart; a piece lost is a 503, never a guessed state.
#[test]
fn rows_larger_than_a_piece_are_stored_in_pieces_and_read_back() {
    let mut server = Server::start_with_vars(&[("STORAGE_PIECE_BYTES", "1024")]);
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 100);
    let id = unique("cust-pieces");
    let r = put_customer(&api, &id, r#"{"name":"Ada Pieces"}"#);
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let mut sales = Vec::new();
    for _ in 0..8 {
        sales.push(sell(&api, &id, &sku, 1, "10.00"));
    }
    let (order, _) = collected_order(&api, &id, &sku, 2);
    return_and_refund(&api, &format!(r#""order_id":"{order}""#), &sku, 1, "10.00");
    customer_when(&api, &id, |c| {
        c["purchases"].as_array().map(Vec::len) == Some(9)
            && c["loyalty"]["reversed"].as_i64() > Some(0)
    });
    let order_before = api.get(&format!("/v1/orders/{order}"), ADMIN);
    assert_eq!(order_before.status, 200, "{}", order_before.body);
    // A write whose answer (the whole customer view) is larger than a
    // piece: kept in pieces with its Idempotency-Key, replayed whole.
    let key = unique("idem");
    let rename = |api: &Api| {
        api.write(
            "PUT",
            &format!("/v1/customers/{id}"),
            ADMIN,
            &key,
            r#"{"name":"Ada P."}"#,
        )
    };
    let assert_replayed = |api: &Api, first: &Resp| {
        let again = rename(api);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!((again.status, again.json()), (first.status, first.json()));
    };
    let put = rename(&api);
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(put.body.len() > 1024, "a small answer: {}", put.body);
    assert_replayed(&api, &put);
    let before = customer(&api, &id);
    server.stop();

    // In pieces: the first row says how many, the rest are `<key>#0001`...
    let pieces = |class: &str, table: &str, key: &str| -> i64 {
        object_files(&server, class)
            .iter()
            .map(|f| {
                sqlite_i64(
                    f,
                    &format!("SELECT count(*) FROM {table} WHERE k > '{key}#' AND k < '{key}$'"),
                )
            })
            .max()
            .unwrap_or(0)
    };
    assert!(
        pieces("Customer", "customer", "c") >= 2,
        "the customer's row is not in pieces"
    );
    let answer_pieces: i64 = object_files(&server, "Customer")
        .iter()
        .map(|f| sqlite_i64(f, "SELECT count(*) FROM key_pieces"))
        .sum();
    assert!(answer_pieces >= 1, "the kept answer is not in pieces");
    assert!(
        pieces("Order", "ord", "o") >= 1,
        "the order's row is not in pieces"
    );

    server.start_again();
    let api = server.api();
    assert_eq!(customer(&api, &id), before);
    let order_after = api.get(&format!("/v1/orders/{order}"), ADMIN);
    assert_eq!(order_after.json(), order_before.json());
    assert_replayed(&api, &put);
    // Still written in pieces after the restart: one more sale.
    sales.push(sell(&api, &id, &sku, 1, "10.00"));
    let after = customer_when(&api, &id, |c| {
        c["purchases"].as_array().map(Vec::len) == Some(10)
    });
    assert_eq!(
        after["loyalty"]["earned"].as_i64(),
        before["loyalty"]["earned"].as_i64().map(|e| e + 10),
        "{after}"
    );
    server.stop();

    // A piece lost: the customer cannot be read (503), nothing is guessed.
    let files = object_files(&server, "Customer");
    let db = files
        .iter()
        .find(|f| sqlite_i64(f, "SELECT count(*) FROM customer WHERE k = 'c#0001'") == 1)
        .expect("the customer's file");
    sqlite(db, "DELETE FROM customer WHERE k = 'c#0001'");
    server.start_again();
    let r = server.api().get(&format!("/v1/customers/{id}"), ADMIN);
    r.assert_problem(503, "overloaded");
}
