//! Issue 7's hot path, end to end: catalog facts come from each isolate's
//! cache, yet an unknown SKU or location is still 404 and creates nothing,
//! and a catalog change is seen by the next stock request; an ended
//! reservation's object deletes its storage once its retention passed;
//! objects are called over RPC, and over fetch when they refuse RPC (a
//! deploy's older objects).
use std::path::Path;

use crate::harness::*;

fn sale(sku: &str) -> String {
    format!(
        r#"{{"sale_id":"{}","terminal_id":"hp-t1","device_seq":1,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"1.00","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(1000)
    )
}

#[test]
fn unknown_skus_and_locations_are_404_and_create_nothing() {
    let server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let (a, b) = (unique("HPA"), unique("HPB"));
    let product = unique("hp-p");
    let put = |skus: &[&str]| {
        let variants: Vec<String> = skus
            .iter()
            .map(|s| format!(r#"{{"sku":"{s}","price":{{"amount":"5.00","currency":"EUR"}}}}"#))
            .collect();
        let r = api.send(
            "PUT",
            &format!("/v1/products/{product}"),
            ADMIN,
            &format!(
                r#"{{"title":"Hot path","variants":[{}]}}"#,
                variants.join(",")
            ),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    };
    put(&[&a, &b]);
    api.receive(&a, "store-1", 5);
    api.receive(&b, "store-1", 5);
    // Warm the isolate's cache with both SKUs and every location.
    assert_eq!(api.available(&a, "store-1"), 5);
    assert_eq!(api.available(&b, "store-1"), 5);
    let skus_before = object_files(&server, "SkuStock").len();
    let reservations_before = object_files(&server, "Reservation").len();

    let ghost = unique("GHOST");
    let not_found = |r: Resp| {
        r.assert_problem(404, "not_found");
    };
    not_found(api.get(&format!("/v1/availability?sku={ghost}"), PUBLISHABLE));
    not_found(api.get(
        &format!("/v1/availability?sku={a},{ghost}&location=store-1"),
        ADMIN,
    ));
    not_found(api.get(&format!("/v1/availability?sku={a}&location=store-9"), ADMIN));
    not_found(api.get(&format!("/v1/skus/{ghost}/ledger"), ADMIN));
    not_found(api.reserve(&unique("hp-r"), &[(&ghost, 1)], "store-1", 60));
    not_found(api.reserve(&unique("hp-r"), &[(&a, 1), (&ghost, 1)], "store-1", 60));
    not_found(api.reserve(&unique("hp-r"), &[(&a, 1)], "store-9", 60));
    not_found(api.send(
        "POST",
        "/v1/inventory/receipts",
        ADMIN,
        &format!(r#"{{"location":"store-1","lines":[{{"sku":"{ghost}","qty":1}}]}}"#),
    ));
    not_found(api.send(
        "POST",
        "/v1/inventory/receipts",
        ADMIN,
        &format!(r#"{{"location":"store-9","lines":[{{"sku":"{a}","qty":1}}]}}"#),
    ));
    not_found(api.send("POST", "/v1/pos/sales", POS1, &sale(&ghost)));

    // The catalog drops a variant: stock requests for it are 404 at once.
    put(&[&a]);
    not_found(api.get(&format!("/v1/availability?sku={b}&location=store-1"), ADMIN));
    not_found(api.reserve(&unique("hp-r"), &[(&b, 1)], "store-1", 60));
    not_found(api.send("POST", "/v1/pos/sales", POS1, &sale(&b)));

    // Nothing was created: no new SKU or reservation object, no stock moved.
    assert_eq!(object_files(&server, "SkuStock").len(), skus_before);
    assert_eq!(
        object_files(&server, "Reservation").len(),
        reservations_before
    );
    assert_eq!(api.available(&a, "store-1"), 5);
}

#[test]
fn catalog_changes_are_seen_by_the_next_stock_request() {
    let api = shared().api();
    seed_locations(&api);
    let store = unique("hp-store");
    let put_store = |pickup: bool| {
        let r = api.send(
            "PUT",
            &format!("/v1/locations/{store}"),
            ADMIN,
            &format!(
                r#"{{"name":"Pop-up","kind":"store","lat":52.5,"lon":13.4,"ships_online":false,"pickup":{pickup}}}"#
            ),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    };
    put_store(true);
    let sku = api.new_sku(&store, 10);
    let r = api.reserve(&unique("hp-r"), &[(&sku, 1)], &store, 60);
    assert_eq!(r.status, 201, "{}", r.body);
    // Pickup withdrawn: the next reservation sees it.
    put_store(false);
    let r = api.reserve(&unique("hp-r"), &[(&sku, 1)], &store, 60);
    r.assert_problem(400, "invalid_request");
    put_store(true);
    let r = api.reserve(&unique("hp-r"), &[(&sku, 1)], &store, 60);
    assert_eq!(r.status, 201, "{}", r.body);

    // A bundle's components change: its availability follows at once.
    let bundle = unique("HPBND");
    let put_bundle = |qty: i64| {
        let r = api.send(
            "PUT",
            &format!("/v1/bundles/{bundle}"),
            ADMIN,
            &format!(
                r#"{{"title":"Pair","price":{{"amount":"9.00","currency":"EUR"}},"components":[{{"sku":"{sku}","qty":{qty}}}]}}"#
            ),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    };
    put_bundle(1);
    let online = |s: &str| {
        let r = api.get(
            &format!("/v1/availability?sku={s}&location={store}&channel=pos"),
            ADMIN,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"][0]["available"].as_i64().unwrap()
    };
    assert_eq!(online(&bundle), 8);
    put_bundle(3);
    assert_eq!(online(&bundle), 2);

    // A SKU added to the catalog is usable at once (never cached as missing).
    let later = unique("HPLATE");
    let r = api.send(
        "POST",
        "/v1/inventory/receipts",
        ADMIN,
        &format!(r#"{{"location":"{store}","lines":[{{"sku":"{later}","qty":1}}]}}"#),
    );
    r.assert_problem(404, "not_found");
    api.product(&[&later]);
    api.receive(&later, &store, 4);
    assert_eq!(api.available(&later, &store), 4);
}

#[test]
fn an_ended_reservation_deletes_its_storage_after_retention() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let (a, b) = (api.new_sku("store-1", 5), api.new_sku("store-1", 5));
    let id = unique("hp-cart");
    let r = api.reserve(&id, &[(&a, 2), (&b, 1)], "store-1", 600);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "released");
    assert_eq!(api.available(&a, "store-1"), 5);
    server.stop();

    let files = object_files(&server, "Reservation");
    assert_eq!(files.len(), 1, "{files:?}");
    let db = &files[0];
    let phase = |db: &Path| {
        sqlite(
            db,
            "SELECT json_extract(json, '$.machine.phase.phase') FROM reservation",
        )
    };
    assert_eq!(phase(db), "ended");
    // Travel 49 h forward: the end of the reservation moves 49 h back.
    sqlite(
        db,
        "UPDATE reservation SET json = json_set(json, '$.machine.phase.at',
            json_extract(json, '$.machine.phase.at') - 49 * 3600000)",
    );

    server.start_again();
    let api = server.api();
    let r = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    r.assert_problem(404, "not_found");
    // Its stock is untouched by the reclaim.
    assert_eq!(api.available(&a, "store-1"), 5);
    server.stop();
    // deleteAll() removed the rows (and the tables; the file may remain).
    if db.exists() {
        let tables = sqlite(
            db,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'reservation'",
        );
        if tables != "0" {
            assert_eq!(sqlite(db, "SELECT count(*) FROM reservation"), "0");
        }
    }
}

#[test]
fn one_reservation_id_never_names_two_reservations() {
    let api = shared().api();
    seed_locations(&api);
    let (a, b) = (api.new_sku("store-1", 5), api.new_sku("store-1", 5));
    let id = unique("hp-one");
    let body = |lines: &[(&str, i64)]| {
        let l: Vec<String> = lines
            .iter()
            .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q}}}"#))
            .collect();
        format!(
            r#"{{"id":"{id}","lines":[{}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#,
            l.join(",")
        )
    };
    let r = api.send("POST", "/v1/reservations", STOREFRONT, &body(&[(&a, 1)]));
    assert_eq!(r.status, 201, "{}", r.body);
    // The same id for one unit of another SKU: refused, and that SKU's hold
    // (made in parallel with the id's lookup) given back.
    let key = unique("idem");
    let r = api.write(
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &key,
        &body(&[(&b, 2)]),
    );
    r.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.available(&b, "store-1"), 5);
    // Its retry replays the refusal.
    let again = api.write(
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &key,
        &body(&[(&b, 2)]),
    );
    again.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.available(&b, "store-1"), 5);
    // Across SKUs: refused too.
    let r = api.send(
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &body(&[(&a, 1), (&b, 1)]),
    );
    r.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.available(&a, "store-1"), 4);
    assert_eq!(api.available(&b, "store-1"), 5);
    // The id still names the first reservation.
    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["lines"][0]["sku"], a.as_str());
    let d = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(api.available(&a, "store-1"), 5);

    // A cart first: its id is then refused to a one-SKU reservation (the
    // index shard asks the cart's object), and the hold made in parallel
    // is given back.
    let cart = unique("hp-cart-first");
    let r = api.reserve(&cart, &[(&a, 1), (&b, 1)], "store-1", 600);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.reserve(&cart, &[(&b, 2)], "store-1", 600);
    r.assert_problem(409, "idempotency_key_reused");
    assert_eq!(api.available(&a, "store-1"), 4);
    assert_eq!(api.available(&b, "store-1"), 4);
    let g = api.get(&format!("/v1/reservations/{cart}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["lines"].as_array().map(Vec::len), Some(2));
}

/// A reservation whose id the client chose is found through its index
/// shard by an isolate that did not make it (here: after a restart, whose
/// isolate has an empty cache), and the shard's row is deleted once the
/// reservation ended `RESERVATION_RETENTION_MS` (48 h) ago, while a row
/// whose reservation was extended since is kept with the later deadline.
#[test]
fn client_chosen_ids_are_found_through_the_index_and_pruned_after_retention() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 5);
    let (ended, live) = (unique("hp-ended"), unique("hp-live"));
    for id in [&ended, &live] {
        let r = api.reserve(id, &[(&sku, 1)], "store-1", 60);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // No Reservation object for either: one row each in the index.
    assert_eq!(object_files(&server, "Reservation").len(), 0);
    let d = api.send(
        "DELETE",
        &format!("/v1/reservations/{ended}"),
        STOREFRONT,
        "",
    );
    assert_eq!(d.status, 200, "{}", d.body);
    server.stop();

    server.start_again();
    let api = server.api();
    // Found by an isolate that never saw them: through the index.
    let g = api.get(&format!("/v1/reservations/{live}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["status"], "active");
    let e = api.send(
        "POST",
        &format!("/v1/reservations/{live}/extend"),
        STOREFRONT,
        r#"{"ttl_seconds":3600}"#,
    );
    assert_eq!(e.status, 200, "{}", e.body);
    let g = api.get(&format!("/v1/reservations/{ended}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["status"], "released");
    assert_eq!(api.available(&sku, "store-1"), 4);
    server.stop();

    // Travel 49 h forward: both rows' deadlines move 49 h back, and the
    // shards' alarms are due now.
    let row = |server: &Server, id: &str| {
        let files = object_files(server, "ReservationIndex");
        files.into_iter().find(|f| {
            sqlite(
                f,
                &format!("SELECT count(*) FROM pointer WHERE id = '{id}'"),
            ) == "1"
        })
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for id in [&ended, &live] {
        let db = row(&server, id).unwrap_or_else(|| panic!("no index row for {id}"));
        sqlite(
            &db,
            &format!("UPDATE pointer SET until = until - 49 * 3600000 WHERE id = '{id}'"),
        );
        sqlite(
            &db,
            &format!("UPDATE _cf_METADATA SET value = {now_ns} WHERE key = 1"),
        );
        let actor = db.file_stem().unwrap().to_string_lossy().to_string();
        let meta = db.with_file_name("metadata.sqlite");
        sqlite(
            &meta,
            &format!("UPDATE _cf_ALARM SET scheduled_time = {now_ns} WHERE actor_id = '{actor}'"),
        );
    }

    server.start_again();
    let api = server.api();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while row(&server, &ended).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the ended reservation's index row was not pruned: {}",
            server.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // The extended one is kept, with its deadline from its SKU object.
    let db = row(&server, &live).expect("the extended reservation's index row was pruned");
    let until = sqlite_i64(
        &db,
        &format!("SELECT until FROM pointer WHERE id = '{live}'"),
    );
    let now_ms = (now_ns / 1_000_000) as i64;
    assert!(until > now_ms + 3_000_000, "until {until}, now {now_ms}");
    let g = api.get(&format!("/v1/reservations/{live}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    let d = api.send(
        "DELETE",
        &format!("/v1/reservations/{live}"),
        STOREFRONT,
        "",
    );
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(api.available(&sku, "store-1"), 5);
}

#[test]
fn a_server_issued_reservation_id_names_its_sku_object() {
    let server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 5);
    let before = object_files(&server, "Reservation").len();
    let body = format!(
        r#"{{"lines":[{{"sku":"{sku}","qty":2}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#
    );
    let key = unique("idem");
    let r = api.write("POST", "/v1/reservations", STOREFRONT, &key, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with('r') && id.len() == 18 + sku.len() && id.ends_with(&format!(".{sku}")),
        "{id}"
    );
    // The same request again: the same reservation, replayed; held once.
    let again = api.write("POST", "/v1/reservations", STOREFRONT, &key, &body);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(api.available(&sku, "store-1"), 3);
    // Found, extended and released by id, with no object but the SKU's.
    let g = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["status"], "active");
    let e = api.send(
        "POST",
        &format!("/v1/reservations/{id}/extend"),
        STOREFRONT,
        r#"{"ttl_seconds":900}"#,
    );
    assert_eq!(e.status, 200, "{}", e.body);
    let d = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["status"], "released");
    assert_eq!(api.available(&sku, "store-1"), 5);
    assert_eq!(object_files(&server, "Reservation").len(), before);
    // Such ids are the server's to issue.
    let r = api.send(
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &body.replacen('{', &format!(r#"{{"id":"{id}","#), 1),
    );
    r.assert_problem(400, "invalid_request");
    // Every object call went over RPC: none fell back to fetch.
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(!log.contains("objects refuse RPC"), "{}", server.log_tail());
}

/// During a deploy a Worker of this version may call objects of the version
/// before RPC: their classes do not extend DurableObject, so workerd refuses
/// the RPC call and `wire::call` sends the message over the stub's fetch,
/// which every object still serves. OBJECT_RPC=off (functions/entry.mjs)
/// makes every object such an object.
#[test]
fn objects_without_rpc_are_called_over_fetch() {
    let server = Server::start_with_vars(&[("OBJECT_RPC", "off")]);
    let api = server.api();
    // The catalog object.
    seed_locations(&api);
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    // A SKU object: a one-line hold with a server-issued id, and its release.
    let body = format!(
        r#"{{"lines":[{{"sku":"{a}","qty":2}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":600}}"#
    );
    let r = api.write(
        "POST",
        "/v1/reservations",
        STOREFRONT,
        &unique("idem"),
        &body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(api.available(&a, "store-1"), 8);
    let d = api.send("DELETE", &format!("/v1/reservations/{id}"), STOREFRONT, "");
    assert_eq!(d.status, 200, "{}", d.body);
    // A Reservation coordinator: a two-SKU cart, held all or none.
    let cart = unique("cart");
    let r = api.reserve(&cart, &[(&a, 1), (&b, 3)], "store-1", 600);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.available(&a, "store-1"), 9);
    assert_eq!(api.available(&b, "store-1"), 7);
    // A Terminal and a SKU object: a POS sale, and the same sale again.
    let s = sale(&a);
    let first = api.write("POST", "/v1/pos/sales", POS1, &unique("idem"), &s);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = api.write("POST", "/v1/pos/sales", POS1, &unique("idem"), &s);
    assert_eq!(again.status, first.status, "{}", again.body);
    assert_eq!(again.json()["sale_id"], first.json()["sale_id"]);
    assert_eq!(api.stock(&a, "store-1")["on_hand"], 9);
    // It really went over fetch: the Worker said so (once per isolate).
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(log.contains("objects refuse RPC"), "{}", server.log_tail());
}
