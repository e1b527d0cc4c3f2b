//! Staff identities (issue 12): named keys (`key:role[@location][#name]`),
//! several per role (rotation: old and new valid together), the ledger and
//! the order history record the key's name; a key not configured is 401.
use crate::harness::*;

const ALICE: &str = "sk_test_alice";
const BOB: &str = "sk_test_bob_new";
const TILL3: &str = "sk_test_till3";

#[test]
fn named_keys_are_recorded_as_the_actor_and_rotate_without_downtime() {
    let keys = format!(
        "{DEV_KEYS},{ALICE}:admin#alice,sk_test_bob_old:admin#bob,{BOB}:admin#bob,\
         {TILL3}:pos@store-1#till-3,bad-entry,sk_x:admin#bad name"
    );
    let server = Server::start_with_vars(&[("API_KEYS", &keys)]);
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 0);
    // Alice receives, a named till counts; the ledger names them.
    let r = api.send(
        "POST",
        "/v1/inventory/receipts",
        ALICE,
        &format!(r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":5}}]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.send(
        "POST",
        "/v1/inventory/counts",
        TILL3,
        &format!(
            r#"{{"location":"store-1","counted_at":"{}","lines":[{{"sku":"{sku}","counted":4}}]}}"#,
            rfc3339_ago(300)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let actors: Vec<String> = ledger(&api, &sku)
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(actors.contains(&"admin#alice".to_string()), "{actors:?}");
    assert!(
        actors.contains(&"pos@store-1#till-3".to_string()),
        "{actors:?}"
    );
    // Bob's old and new keys both work (rotation); the history names bob.
    let id = unique("kord");
    let body = format!(
        r#"{{"id":"{id}","customer_id":"c","lines":[{{"sku":"{sku}","qty":1}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#
    );
    let r = api.send("POST", "/v1/orders", "sk_test_bob_old", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.send(
        "POST",
        &format!("/v1/orders/{id}/transitions"),
        BOB,
        r#"{"to":"paid"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = api.get(&format!("/v1/orders/{id}"), ALICE).json()["history"].clone();
    let who: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(who, ["admin#bob", "admin#bob"], "{h}");
    // A key that is not configured (or whose entry was malformed) is 401.
    for k in ["sk_test_carol", "sk_x", "bad-entry"] {
        let r = api.get("/v1/locations", k);
        let p = r.assert_problem(401, "unauthorized");
        assert!(p["request_id"].is_string());
        assert!(!r.body.contains(k), "a key never appears in an answer");
    }
}
