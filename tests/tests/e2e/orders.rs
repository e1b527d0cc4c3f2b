//! Orders over HTTP: create (priced, taxed, placed, held all or none), every
//! transition with its stock effect checked on the owning objects
//! (`consistency=strong`), refused transitions, idempotency, role scoping,
//! the fulfillment rules (nearest, split by line, pickup), the queue, and a
//! SIGKILL of `wrangler dev` in the middle of multi-SKU orders.
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// (on_hand, reserved, committed) of one SKU at one location, from its object.
fn buckets(api: &Api, sku: &str, location: &str) -> (i64, i64, i64) {
    let r = api.get(
        &format!("/v1/availability?sku={sku}&location={location}&consistency=strong"),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let row = &r.json()["items"][0];
    (
        row["on_hand"].as_i64().unwrap(),
        row["reserved"].as_i64().unwrap(),
        row["committed"].as_i64().unwrap(),
    )
}

fn order_body(id: &str, lines: &[(&str, i64)], fulfillment: &str) -> String {
    let l: Vec<String> = lines
        .iter()
        .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q}}}"#))
        .collect();
    format!(
        r#"{{"id":"{id}","customer_id":"cust-1","lines":[{}],"fulfillment":{fulfillment}}}"#,
        l.join(",")
    )
}

const AT_STORE1: &str = r#"{"type":"ship","location":"store-1"}"#;

fn create(api: &Api, key: &str, id: &str, lines: &[(&str, i64)], fulfillment: &str) -> Resp {
    api.send(
        "POST",
        "/v1/orders",
        key,
        &order_body(id, lines, fulfillment),
    )
}

fn move_to(api: &Api, key: &str, id: &str, to: &str) -> Resp {
    api.send(
        "POST",
        &format!("/v1/orders/{id}/transitions"),
        key,
        &format!(r#"{{"to":"{to}"}}"#),
    )
}

#[test]
fn every_transition_moves_the_stock_buckets_once_and_refusals_change_nothing() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 5);
    let id = unique("ord");
    let r = create(&api, ADMIN, &id, &[(&a, 2), (&b, 1)], AT_STORE1);
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.json();
    assert_eq!(o["status"], "new");
    assert_eq!(o["channel"], "online");
    assert_eq!(o["customer_id"], "cust-1");
    assert_eq!(o["parts"][0]["location"], "store-1");
    assert_eq!(o["lines"][0]["unit_price"]["amount"], "9.99");
    assert_eq!(o["lines"][0]["part"], 0);
    // 8 % per line, rounded per line: 19.98 -> 1.60, 9.99 -> 0.80.
    assert_eq!(o["lines"][0]["tax"]["amount"], "1.60");
    assert_eq!(o["totals"]["net"], "29.97");
    assert_eq!(o["totals"]["tax"], "2.40");
    assert_eq!(o["totals"]["gross"], "32.37");
    assert_eq!(o["totals"]["currency"], "EUR");
    assert_eq!(buckets(&api, &a, "store-1"), (10, 2, 0));
    assert_eq!(buckets(&api, &b, "store-1"), (5, 1, 0));

    // Refused: nothing changes.
    let p = move_to(&api, ADMIN, &id, "shipped").assert_problem(409, "invalid_transition");
    assert_eq!(p["from"], "new");
    assert_eq!(p["to"], "shipped");
    assert_eq!(p["allowed"], serde_json::json!(["paid", "cancelled"]));
    assert_eq!(buckets(&api, &a, "store-1"), (10, 2, 0));

    let r = move_to(&api, ADMIN, &id, "paid");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "paid");
    assert_eq!(buckets(&api, &a, "store-1"), (10, 0, 2));
    assert_eq!(buckets(&api, &b, "store-1"), (5, 0, 1));
    move_to(&api, ADMIN, &id, "paid").assert_problem(409, "invalid_transition");
    move_to(&api, ADMIN, &id, "new").assert_problem(400, "invalid_request");
    move_to(&api, ADMIN, &id, "returned").assert_problem(400, "invalid_request");
    move_to(&api, ADMIN, &id, "lost").assert_problem(400, "invalid_request");
    for to in ["ready_to_pick", "packed"] {
        let r = move_to(&api, ADMIN, &id, to);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(buckets(&api, &a, "store-1"), (10, 0, 2));
    }
    let r = move_to(&api, ADMIN, &id, "shipped");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buckets(&api, &a, "store-1"), (8, 0, 0));
    assert_eq!(buckets(&api, &b, "store-1"), (4, 0, 0));
    let p = move_to(&api, ADMIN, &id, "cancelled").assert_problem(409, "invalid_transition");
    assert_eq!(p["allowed"], serde_json::json!(["returned"]));
    assert_eq!(buckets(&api, &a, "store-1"), (8, 0, 0));

    let r = api.get(&format!("/v1/orders/{id}"), ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json()["history"].as_array().unwrap().clone();
    let steps: Vec<(Value, Value)> = h
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (Value::Null, "new".into()),
            ("new".into(), "paid".into()),
            ("paid".into(), "ready_to_pick".into()),
            ("ready_to_pick".into(), "packed".into()),
            ("packed".into(), "shipped".into()),
        ]
    );
    assert!(h
        .iter()
        .all(|e| e["actor"] == "admin" && e["at"].is_string()));
    api.get("/v1/orders/nope-404", ADMIN)
        .assert_problem(404, "not_found");
}

#[test]
fn cancel_releases_held_and_committed_units_and_pickup_is_collected() {
    let api = shared().api();
    let a = api.new_sku("store-1", 6);
    let held = unique("ord");
    assert_eq!(
        create(&api, STOREFRONT, &held, &[(&a, 2)], AT_STORE1).status,
        201
    );
    let paid = unique("ord");
    assert_eq!(
        create(&api, STOREFRONT, &paid, &[(&a, 1)], AT_STORE1).status,
        201
    );
    assert_eq!(move_to(&api, STOREFRONT, &paid, "paid").status, 200);
    assert_eq!(buckets(&api, &a, "store-1"), (6, 2, 1));
    let r = move_to(&api, STOREFRONT, &held, "cancelled");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buckets(&api, &a, "store-1"), (6, 0, 1));
    assert_eq!(move_to(&api, ADMIN, &paid, "cancelled").status, 200);
    assert_eq!(buckets(&api, &a, "store-1"), (6, 0, 0));
    move_to(&api, ADMIN, &paid, "paid").assert_problem(409, "invalid_transition");

    // Click and collect at store-2.
    let b = api.new_sku("store-2", 3);
    let id = unique("ord");
    let r = create(
        &api,
        STOREFRONT,
        &id,
        &[(&b, 2)],
        r#"{"type":"pickup","location":"store-2"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for to in ["paid", "ready_to_pick", "packed", "ready_for_pickup"] {
        assert_eq!(move_to(&api, ADMIN, &id, to).status, 200, "{to}");
    }
    assert_eq!(buckets(&api, &b, "store-2"), (3, 0, 2));
    let r = move_to(&api, ADMIN, &id, "collected");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buckets(&api, &b, "store-2"), (1, 0, 0));
    // A pickup store must hold every line; warehouse-1 offers no pickup.
    create(
        &api,
        STOREFRONT,
        &unique("ord"),
        &[(&b, 5)],
        r#"{"type":"pickup","location":"store-2"}"#,
    )
    .assert_problem(409, "insufficient_stock");
    create(
        &api,
        STOREFRONT,
        &unique("ord"),
        &[(&b, 1)],
        r#"{"type":"pickup","location":"warehouse-1"}"#,
    )
    .assert_problem(400, "invalid_request");
    assert_eq!(buckets(&api, &b, "store-2"), (1, 0, 0));
}

#[test]
fn all_or_none_and_idempotent_by_key_and_by_id() {
    let api = shared().api();
    let a = api.new_sku("store-1", 5);
    let b = api.new_sku("store-1", 1);
    let id = unique("ord");
    let p = create(&api, ADMIN, &id, &[(&a, 2), (&b, 3)], AT_STORE1)
        .assert_problem(409, "insufficient_stock");
    let lines = p["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sku"], b.as_str());
    assert_eq!(lines[0]["requested"], 3);
    assert_eq!(lines[0]["available"], 1);
    // The held line was given back.
    assert_eq!(buckets(&api, &a, "store-1"), (5, 0, 0));
    assert_eq!(buckets(&api, &b, "store-1"), (1, 0, 0));

    let id = unique("ord");
    let body = order_body(&id, &[(&a, 2)], AT_STORE1);
    let key = unique("k");
    let first = api.write("POST", "/v1/orders", ADMIN, &key, &body);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = api.write("POST", "/v1/orders", ADMIN, &key, &body);
    assert_eq!(again.status, 201);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);
    // The same id and content under another key: the same order, held once.
    let other_key = api.write("POST", "/v1/orders", ADMIN, &unique("k"), &body);
    assert_eq!(other_key.status, 201, "{}", other_key.body);
    assert_eq!(buckets(&api, &a, "store-1"), (5, 2, 0));
    // The same id with other content.
    create(&api, ADMIN, &id, &[(&a, 1)], AT_STORE1).assert_problem(409, "idempotency_key_reused");
    api.write(
        "POST",
        "/v1/orders",
        ADMIN,
        &key,
        &order_body(&unique("x"), &[(&a, 1)], AT_STORE1),
    )
    .assert_problem(409, "idempotency_key_reused");
    // A transition replayed by its key.
    let tkey = unique("t");
    let path = format!("/v1/orders/{id}/transitions");
    let t1 = api.write("POST", &path, ADMIN, &tkey, r#"{"to":"paid"}"#);
    assert_eq!(t1.status, 200, "{}", t1.body);
    let t2 = api.write("POST", &path, ADMIN, &tkey, r#"{"to":"paid"}"#);
    assert_eq!(t2.status, 200);
    assert_eq!(t2.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(buckets(&api, &a, "store-1"), (5, 0, 2));
    // Bad input changes nothing.
    for bad in [
        r#"{"id":"x y","lines":[{"sku":"A","qty":1}]}"#.to_string(),
        format!(r#"{{"id":"{}","lines":[]}}"#, unique("o")),
        format!(
            r#"{{"id":"{}","lines":[{{"sku":"{a}","qty":0}}]}}"#,
            unique("o")
        ),
        format!(
            r#"{{"id":"{}","lines":[{{"sku":"{a}","qty":1}}],"extra":1}}"#,
            unique("o")
        ),
        format!(
            r#"{{"id":"{}","lines":[{{"sku":"{a}","qty":1,"unit_price":{{"amount":"1.00","currency":"EUR"}}}}]}}"#,
            unique("o")
        ),
    ] {
        api.send("POST", "/v1/orders", STOREFRONT, &bad)
            .assert_problem(400, "invalid_request");
    }
    create(
        &api,
        ADMIN,
        &unique("o"),
        &[("NO-SUCH-SKU-1", 1)],
        AT_STORE1,
    )
    .assert_problem(404, "not_found");
    assert_eq!(buckets(&api, &a, "store-1"), (5, 0, 2));
}

#[test]
fn roles_see_and_change_only_their_orders_and_a_till_sets_its_price() {
    let api = shared().api();
    let a = api.new_sku("store-1", 5);
    let c = api.new_sku("store-2", 5);
    // A till's order: its store, its own price, the POS channel.
    let id = unique("pos");
    let r = api.send(
        "POST",
        "/v1/orders",
        POS1,
        &format!(
            r#"{{"id":"{id}","lines":[{{"sku":"{a}","qty":1,"unit_price":{{"amount":"5.00","currency":"EUR"}}}}],"fulfillment":{{"type":"pickup"}}}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.json();
    assert_eq!(o["channel"], "pos");
    assert_eq!(o["lines"][0]["unit_price"]["amount"], "5.00");
    assert_eq!(o["totals"]["net"], "5.00");
    assert_eq!(o["totals"]["tax"], "0.40");
    // A storefront reads online orders only; a till its location's.
    api.get(&format!("/v1/orders/{id}"), STOREFRONT)
        .assert_problem(404, "not_found");
    move_to(&api, STOREFRONT, &id, "cancelled").assert_problem(404, "not_found");
    assert_eq!(api.get(&format!("/v1/orders/{id}"), POS1).status, 200);
    let online = unique("web");
    assert_eq!(
        create(
            &api,
            STOREFRONT,
            &online,
            &[(&c, 1)],
            r#"{"type":"ship","location":"store-2"}"#
        )
        .status,
        201
    );
    api.get(&format!("/v1/orders/{online}"), POS1)
        .assert_problem(404, "not_found");
    assert_eq!(
        api.get(&format!("/v1/orders/{online}"), STOREFRONT).status,
        200
    );
    // A storefront may not open a till's order, nor a till another store's.
    api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{}","channel":"pos","lines":[{{"sku":"{a}","qty":1}}]}}"#,
            unique("o")
        ),
    )
    .assert_problem(403, "forbidden");
    create(
        &api,
        POS1,
        &unique("o"),
        &[(&c, 1)],
        r#"{"type":"pickup","location":"store-2"}"#,
    )
    .assert_problem(403, "forbidden");
    api.get("/v1/orders", PUBLISHABLE)
        .assert_problem(403, "forbidden");
    // The queue is scoped the same way.
    api.get("/v1/orders?channel=pos", STOREFRONT)
        .assert_problem(403, "forbidden");
    api.get("/v1/orders?location=store-2", POS1)
        .assert_problem(403, "forbidden");
}

#[test]
fn the_queue_filters_pages_and_scopes() {
    let server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 50);
    let w = api.new_sku("warehouse-1", 50);
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = format!("q-{i}");
        let (sku, f) = if i % 2 == 0 {
            (&a, AT_STORE1)
        } else {
            (&w, r#"{"type":"ship","location":"warehouse-1"}"#)
        };
        assert_eq!(create(&api, STOREFRONT, &id, &[(sku, 1)], f).status, 201);
        ids.push(id);
        thread::sleep(Duration::from_millis(5));
    }
    let pos = "q-pos";
    assert_eq!(
        create(&api, POS1, pos, &[(&a, 1)], r#"{"type":"pickup"}"#).status,
        201
    );
    assert_eq!(move_to(&api, ADMIN, "q-0", "paid").status, 200);
    let list = |q: &str, key: &str| -> (Vec<String>, Option<String>) {
        let r = api.get(&format!("/v1/orders?{q}"), key);
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        let j = r.json();
        (
            j["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string())
                .collect(),
            j["next_cursor"].as_str().map(String::from),
        )
    };
    // Newest first.
    assert_eq!(
        list("", ADMIN).0,
        ["q-pos", "q-4", "q-3", "q-2", "q-1", "q-0"]
    );
    assert_eq!(list("status=paid", ADMIN).0, ["q-0"]);
    assert_eq!(
        list("status=new&location=store-1", ADMIN).0,
        ["q-pos", "q-4", "q-2"]
    );
    assert_eq!(list("channel=pos", ADMIN).0, ["q-pos"]);
    assert_eq!(list("location=warehouse-1", ADMIN).0, ["q-3", "q-1"]);
    assert_eq!(list("at_risk=true", ADMIN).0, Vec::<String>::new());
    // Scoped: a storefront sees online orders, a till its store's.
    assert_eq!(list("", STOREFRONT).0, ["q-4", "q-3", "q-2", "q-1", "q-0"]);
    assert_eq!(list("", POS1).0, ["q-pos", "q-4", "q-2", "q-0"]);
    // Pages.
    let (p1, c1) = list("limit=2", ADMIN);
    assert_eq!(p1, ["q-pos", "q-4"]);
    let (p2, c2) = list(&format!("limit=2&cursor={}", c1.unwrap()), ADMIN);
    assert_eq!(p2, ["q-3", "q-2"]);
    let (p3, c3) = list(&format!("limit=2&cursor={}", c2.unwrap()), ADMIN);
    assert_eq!(p3, ["q-1", "q-0"]);
    assert_eq!(c3, None);
    for bad in [
        "limit=0",
        "limit=101",
        "status=lost",
        "cursor=zzz",
        "at_risk=maybe",
    ] {
        api.get(&format!("/v1/orders?{bad}"), ADMIN)
            .assert_problem(400, "invalid_request");
    }
    // The queue shows the latest state.
    let r = api.get("/v1/orders?status=paid", ADMIN).json();
    assert_eq!(r["items"][0]["parts"][0]["status"], "paid");
}

#[test]
fn fulfillment_rules_choose_the_nearest_and_split_by_line() {
    let server = Server::start_with_vars(&[("FULFILLMENT_SPLIT", "by_line")]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 5);
    api.receive(&a, "warehouse-1", 5);
    let b = api.new_sku("warehouse-1", 5);
    // Near store-1 (Berlin centre): store-1 ships and has a.
    let near_store = r#"{"type":"ship","destination":{"lat":52.52,"lon":13.40}}"#;
    let near_wh = r#"{"type":"ship","destination":{"lat":52.39,"lon":13.06}}"#;
    let r = create(&api, STOREFRONT, "n-1", &[(&a, 1)], near_store);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["parts"][0]["location"], "store-1");
    let r = create(&api, STOREFRONT, "n-2", &[(&a, 1)], near_wh);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["parts"][0]["location"], "warehouse-1");
    // a and b together: only warehouse-1 has both.
    let r = create(&api, STOREFRONT, "n-3", &[(&a, 1), (&b, 1)], near_store);
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.json();
    assert_eq!(o["parts"].as_array().unwrap().len(), 1);
    assert_eq!(o["parts"][0]["location"], "warehouse-1");
    // More a than warehouse-1 has left, with b: split by line.
    let r = create(&api, STOREFRONT, "n-4", &[(&a, 4), (&b, 1)], near_wh);
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.json();
    let parts = o["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{o}");
    let loc_of = |sku: &str| {
        o["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["sku"] == sku)
            .map(|l| (l["location"].clone(), l["part"].clone()))
            .unwrap()
    };
    assert_eq!(loc_of(&a).0, "store-1");
    assert_eq!(loc_of(&b).0, "warehouse-1");
    assert_eq!(buckets(&api, &a, "store-1"), (5, 5, 0));
    assert_eq!(buckets(&api, &b, "warehouse-1"), (5, 2, 0));
    // Each part moves on its own.
    let part_a = loc_of(&a).1.as_u64().unwrap();
    let r = api.send(
        "POST",
        "/v1/orders/n-4/transitions",
        ADMIN,
        &format!(r#"{{"to":"paid","part":{part_a}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buckets(&api, &a, "store-1"), (5, 1, 4));
    assert_eq!(buckets(&api, &b, "warehouse-1"), (5, 2, 0));
    let o = r.json();
    assert_eq!(o["status"], "new");
    api.send(
        "POST",
        "/v1/orders/n-4/transitions",
        ADMIN,
        r#"{"to":"paid","part":7}"#,
    )
    .assert_problem(400, "invalid_request");
    let r = move_to(&api, ADMIN, "n-4", "cancelled");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buckets(&api, &a, "store-1"), (5, 1, 0));
    assert_eq!(buckets(&api, &b, "warehouse-1"), (5, 1, 0));
    // Nobody can fill 20: 409 with the shortage.
    create(&api, STOREFRONT, "n-5", &[(&a, 20)], near_store)
        .assert_problem(409, "insufficient_stock");
}

#[test]
fn sigkill_mid_orders_then_retries_with_the_same_ids_take_effect_once_or_not_at_all() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let skus: Vec<String> = (0..3).map(|_| api.new_sku("store-1", 1_000)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (api, skus, stop) = (api.clone(), skus.clone(), stop.clone());
            thread::spawn(move || {
                let mut sent = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("k{t}-{i}");
                    let key = format!("key-{t}-{i}");
                    let body = order_body(
                        &id,
                        &[(&skus[0], 1), (&skus[1], 2), (&skus[2], 3)],
                        AT_STORE1,
                    );
                    let r = api.try_write("POST", "/v1/orders", ADMIN, &key, &body);
                    let failed = r.is_err();
                    sent.push((id, key, body));
                    if failed {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2_000));
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent: Vec<(String, String, String)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(!sent.is_empty());
    server.start_again();
    let api = server.api();
    // Retry every order with its id and key: each is placed once, or refused.
    let mut placed = 0;
    for (id, key, body) in &sent {
        let r = api.write("POST", "/v1/orders", ADMIN, key, body);
        match r.status {
            200 | 201 => placed += 1,
            _ => panic!("{id}: {} {}", r.status, r.body),
        }
    }
    assert_eq!(placed, sent.len());
    let n = sent.len() as i64;
    for (i, sku) in skus.iter().enumerate() {
        let per = i as i64 + 1;
        assert_eq!(buckets(&api, sku, "store-1"), (1_000, n * per, 0), "{sku}");
    }
    // Kept holds have no deadline: after the placement TTL nothing lapses.
    thread::sleep(Duration::from_millis(61_000));
    for (i, sku) in skus.iter().enumerate() {
        assert_eq!(buckets(&api, sku, "store-1").1, n * (i as i64 + 1), "{sku}");
    }
}

#[test]
fn a_pos_sale_that_takes_committed_units_marks_the_order_at_risk() {
    let server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 3);
    let id = "risk-1";
    assert_eq!(
        create(&api, STOREFRONT, id, &[(&a, 2)], AT_STORE1).status,
        201
    );
    assert_eq!(move_to(&api, ADMIN, id, "paid").status, 200);
    assert_eq!(buckets(&api, &a, "store-1"), (3, 0, 2));
    // The till first sells something that puts no order at risk (its
    // object then knows its at-risk outbox is empty)...
    let other = api.new_sku("store-1", 5);
    let plain = format!(
        r#"{{"sale_id":"{}","terminal_id":"t-risk","device_seq":1,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{other}","qty":1,"unit_price":{{"amount":"1.00","currency":"EUR"}}}}],"payments":[{{"method":"cash","amount":{{"amount":"1.00","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(2000)
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &plain);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["at_risk"], serde_json::json!([]), "{}", r.body);
    // ...then sells 2: one more than is free; the paid order can no longer be met.
    let sale = format!(
        r#"{{"sale_id":"{}","terminal_id":"t-risk","device_seq":2,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{a}","qty":2,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}],"payments":[{{"method":"cash","amount":{{"amount":"19.98","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(1000)
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &sale);
    assert_eq!(r.status, 201, "{}", r.body);
    let risk = r.json()["at_risk"].clone();
    assert_eq!(risk[0]["order"], id, "{risk}");
    let o = api.get(&format!("/v1/orders/{id}"), ADMIN).json();
    assert_eq!(o["parts"][0]["at_risk"], true, "{o}");
    let q = api.get("/v1/orders?at_risk=true", ADMIN).json();
    let ids: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id]);
    assert_eq!(
        api.get("/v1/orders?at_risk=false", ADMIN).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // An order made from a reservation: its holds are the reservation's;
    // the sale names the reservation's hold and the order still learns it.
    let c = api.new_sku("store-1", 2);
    let res = unique("res");
    assert_eq!(api.reserve(&res, &[(&c, 2)], "store-1", 600).status, 201);
    let body =
        format!(r#"{{"id":"risk-2","reservation_id":"{res}","lines":[{{"sku":"{c}","qty":2}}]}}"#);
    let r = api.send("POST", "/v1/orders", STOREFRONT, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(move_to(&api, ADMIN, "risk-2", "paid").status, 200);
    let sale = format!(
        r#"{{"sale_id":"{}","terminal_id":"t-risk","device_seq":2,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{c}","qty":1,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}],"payments":[{{"method":"cash","amount":{{"amount":"9.99","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(1000)
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &sale);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["at_risk"][0]["reservation"], res.as_str());
    let o = api.get("/v1/orders/risk-2", ADMIN).json();
    assert_eq!(o["parts"][0]["at_risk"], true, "{o}");
}

#[test]
fn an_order_from_a_reservation_takes_its_holds_without_a_second_hold() {
    let api = shared().api();
    let a = api.new_sku("store-1", 5);
    let b = api.new_sku("store-1", 5);
    for (lines, name) in [
        (vec![(a.as_str(), 2)], "one SKU"),
        (vec![(a.as_str(), 1), (b.as_str(), 1)], "two SKUs"),
    ] {
        let res = unique("res");
        let r = api.reserve(&res, &lines, "store-1", 30);
        assert_eq!(r.status, 201, "{name}: {}", r.body);
        let before: Vec<_> = [&a, &b]
            .iter()
            .map(|s| buckets(&api, s, "store-1"))
            .collect();
        let id = unique("ord");
        let l: Vec<String> = lines
            .iter()
            .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q}}}"#))
            .collect();
        let body = format!(
            r#"{{"id":"{id}","reservation_id":"{res}","lines":[{}]}}"#,
            l.join(",")
        );
        let key = unique("k");
        let r = api.write("POST", "/v1/orders", STOREFRONT, &key, &body);
        assert_eq!(r.status, 201, "{name}: {}", r.body);
        assert_eq!(r.json()["reservation_id"], res.as_str());
        // No second hold: the buckets did not move.
        let after: Vec<_> = [&a, &b]
            .iter()
            .map(|s| buckets(&api, s, "store-1"))
            .collect();
        assert_eq!(before, after, "{name}");
        // The same ids again (another key): the same order, nothing more held.
        let again = api.write("POST", "/v1/orders", STOREFRONT, &unique("k"), &body);
        assert_eq!(again.status, 201, "{name}: {}", again.body);
        let v = api
            .get(&format!("/v1/reservations/{res}"), STOREFRONT)
            .json();
        assert_eq!(v["status"], "converted", "{name}: {v}");
        assert_eq!(v["order_id"], id.as_str());
        // The reservation can no longer be released or extended.
        api.write(
            "DELETE",
            &format!("/v1/reservations/{res}"),
            STOREFRONT,
            &unique("k"),
            "",
        )
        .assert_problem(409, "invalid_transition");
        api.send(
            "POST",
            &format!("/v1/reservations/{res}/extend"),
            STOREFRONT,
            r#"{"ttl_seconds":60}"#,
        )
        .assert_problem(409, "invalid_transition");
        // Another order from it: refused.
        let other = format!(
            r#"{{"id":"{}","reservation_id":"{res}","lines":[{}]}}"#,
            unique("ord"),
            l.join(",")
        );
        api.send("POST", "/v1/orders", STOREFRONT, &other)
            .assert_problem(409, "invalid_transition");
        // The holds outlive the reservation's TTL: the order kept them; then paid commits them.
        assert_eq!(move_to(&api, STOREFRONT, &id, "paid").status, 200, "{name}");
    }
    // Lines that differ from the reservation's: 400, nothing changes.
    let res = unique("res");
    assert_eq!(api.reserve(&res, &[(&a, 1)], "store-1", 30).status, 201);
    api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{}","reservation_id":"{res}","lines":[{{"sku":"{a}","qty":2}}]}}"#,
            unique("ord")
        ),
    )
    .assert_problem(400, "invalid_request");
    assert_eq!(
        api.get(&format!("/v1/reservations/{res}"), STOREFRONT)
            .json()["status"],
        "active"
    );
    thread::sleep(Duration::from_millis(31_000));
    // The order holds survived the reservation TTL (kept); the plain reservation expired.
    assert_eq!(buckets(&api, &a, "store-1"), (5, 0, 3));
    assert_eq!(buckets(&api, &b, "store-1"), (5, 0, 1));
}

#[test]
fn concurrent_bundle_and_component_orders_and_sales_keep_bundle_and_component_stock_consistent() {
    let api = shared().api();
    let x = api.new_sku("store-1", 12);
    let y = api.new_sku("store-1", 12);
    let bundle = unique("OBUNDLE");
    let r = api.send(
        "PUT",
        &format!("/v1/bundles/{bundle}"),
        ADMIN,
        &format!(r#"{{"title":"Set","price":{{"amount":"15.00","currency":"EUR"}},"components":[{{"sku":"{x}","qty":1}},{{"sku":"{y}","qty":2}}]}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Bundle orders, component orders and component sales race.
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let (api, x, y, bundle) = (api.clone(), x.clone(), y.clone(), bundle.clone());
            thread::spawn(move || {
                let mut done = (0i64, 0i64, 0i64); // bundle orders, x orders, y sales
                for i in 0..4 {
                    let id = format!("{}-{t}-{i}", unique("cc"));
                    match t % 3 {
                        0 => {
                            let r = create(&api, STOREFRONT, &id, &[(&bundle, 1)], AT_STORE1);
                            match r.status {
                                201 => done.0 += 1,
                                409 => assert_eq!(r.json()["code"], "insufficient_stock"),
                                s => panic!("bundle order: {s} {}", r.body),
                            }
                        }
                        1 => {
                            let r = create(&api, STOREFRONT, &id, &[(&x, 1)], AT_STORE1);
                            match r.status {
                                201 => done.1 += 1,
                                409 => assert_eq!(r.json()["code"], "insufficient_stock"),
                                s => panic!("x order: {s} {}", r.body),
                            }
                        }
                        _ => {
                            let sale = format!(
                                r#"{{"sale_id":"{id}","terminal_id":"t-cc-{t}","device_seq":{},"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{y}","qty":1,"unit_price":{{"amount":"5.00","currency":"EUR"}}}}],"payments":[{{"method":"cash","amount":{{"amount":"5.00","currency":"EUR"}}}}]}}"#,
                                i + 1,
                                rfc3339_ago(1000)
                            );
                            let r = api.send("POST", "/v1/pos/sales", POS1, &sale);
                            assert_eq!(r.status, 201, "{}", r.body);
                            done.2 += 1;
                        }
                    }
                }
                done
            })
        })
        .collect();
    let (mut b, mut xo, mut ys) = (0, 0, 0);
    for w in workers {
        let (a, c, d) = w.join().unwrap();
        b += a;
        xo += c;
        ys += d;
    }
    // Each bundle order held 1 x and 2 y; each x order 1 x; each sale took 1 y.
    let (xon, xres, _) = buckets(&api, &x, "store-1");
    let (yon, yres, _) = buckets(&api, &y, "store-1");
    assert_eq!((xon, xres), (12, b + xo));
    assert_eq!((yon, yres), (12 - ys, 2 * b));
    // The bundle's availability is its scarcest component's.
    let avail = |s: &str| {
        api.get(
            &format!("/v1/availability?sku={s}&location=store-1&channel=pos&consistency=strong"),
            ADMIN,
        )
        .json()["items"][0]["available"]
            .as_i64()
            .unwrap()
    };
    let (ax, ay) = (avail(&x), avail(&y));
    assert_eq!(ax, 12 - b - xo);
    assert_eq!(ay, 12 - ys - 2 * b);
    assert_eq!(avail(&bundle), ax.min(ay / 2).max(0));
}

#[test]
fn single_location_and_pickup_rules_place_orders_as_configured() {
    let server = Server::start_with_vars(&[
        ("FULFILLMENT_RULE", "single_location"),
        ("FULFILLMENT_LOCATION", "warehouse-1"),
    ]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("warehouse-1", 4);
    api.receive(&a, "store-1", 4);
    let ship = r#"{"type":"ship","destination":{"lat":52.52,"lon":13.40}}"#;
    // Near store-1, but the rule ships everything from warehouse-1.
    let r = create(&api, STOREFRONT, "s-1", &[(&a, 3)], ship);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["parts"][0]["location"], "warehouse-1");
    create(&api, STOREFRONT, "s-2", &[(&a, 2)], ship).assert_problem(409, "insufficient_stock");
    assert_eq!(buckets(&api, &a, "warehouse-1"), (4, 3, 0));
    assert_eq!(buckets(&api, &a, "store-1"), (4, 0, 0));
    drop(server);

    let server = Server::start_with_vars(&[("FULFILLMENT_RULE", "pickup")]);
    let api = server.api();
    seed_locations(&api);
    let b = api.new_sku("store-2", 2);
    // Click and collect only: a shipment is refused, a pickup at a store that holds every line is placed.
    create(&api, STOREFRONT, "p-1", &[(&b, 1)], r#"{"type":"ship"}"#)
        .assert_problem(400, "invalid_request");
    let r = create(
        &api,
        STOREFRONT,
        "p-2",
        &[(&b, 2)],
        r#"{"type":"pickup","location":"store-2"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["parts"][0]["location"], "store-2");
    create(
        &api,
        STOREFRONT,
        "p-3",
        &[(&b, 1)],
        r#"{"type":"pickup","location":"store-1"}"#,
    )
    .assert_problem(409, "insufficient_stock");
    assert_eq!(buckets(&api, &b, "store-2"), (2, 2, 0));
}
