//! Catalog: products, variants, barcodes, locations, bundles.
use serde_json::json;

use crate::harness::*;

#[test]
fn products_own_their_skus_and_barcodes() {
    let api = shared().api();
    let (p1, p2) = (unique("prod"), unique("prod"));
    let (a, b) = (unique("V"), unique("V"));
    let digits: String = unique("x").chars().filter(|c| c.is_ascii_digit()).collect();
    let code = format!("42{digits:0>12}");
    let put = |id: &str, body: String| api.send("PUT", &format!("/v1/products/{id}"), ADMIN, &body);
    let variant = |sku: &str, barcode: &str| {
        format!(
            r#"{{"sku":"{sku}","barcode":"{barcode}","options":{{"size":"M"}},"price":{{"amount":"19.90","currency":"EUR"}}}}"#
        )
    };
    let r = put(
        &p1,
        format!(r#"{{"title":"Shirt","variants":[{}]}}"#, variant(&a, &code)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Replacing is 200.
    let r = put(
        &p1,
        format!(
            r#"{{"title":"Shirt v2","variants":[{}]}}"#,
            variant(&a, &code)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        api.get(&format!("/v1/products/{p1}"), STOREFRONT).json()["title"],
        "Shirt v2"
    );
    // A SKU belongs to one product; a barcode to one SKU.
    let r = put(
        &p2,
        format!(r#"{{"title":"Thief","variants":[{}]}}"#, variant(&a, "123")),
    );
    r.assert_problem(409, "invalid_request");
    let r = put(
        &p2,
        format!(r#"{{"title":"Thief","variants":[{}]}}"#, variant(&b, &code)),
    );
    r.assert_problem(409, "invalid_request");
    // Lookups.
    let s = api.get(&format!("/v1/skus/{a}"), STOREFRONT);
    assert_eq!(s.status, 200);
    assert_eq!(s.json()["product_id"], p1.as_str());
    assert_eq!(s.json()["variant"]["options"], json!({"size": "M"}));
    assert_eq!(
        api.get(&format!("/v1/barcodes/{code}"), POS1).json()["sku"],
        a.as_str()
    );
    api.get("/v1/barcodes/0000", POS1)
        .assert_problem(404, "not_found");
    api.get("/v1/skus/bad%20sku", POS1)
        .assert_problem(400, "invalid_request");
    // Listing with a query and a cursor.
    let page = api.get("/v1/products?query=shirt&limit=1", STOREFRONT);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["items"].as_array().unwrap().len(), 1);
    // Money is a decimal string, never a float.
    let r = put(
        &unique("prod"),
        format!(
            r#"{{"title":"Float","variants":[{{"sku":"{}","price":{{"amount":19.9,"currency":"EUR"}}}}]}}"#,
            unique("V")
        ),
    );
    r.assert_problem(400, "invalid_request");
    // Stock operations on an unknown location are 404, not silently created.
    let r = api.send(
        "POST",
        "/v1/inventory/receipts",
        ADMIN,
        &format!(
            r#"{{"location":"{}","lines":[{{"sku":"{a}","qty":1}}]}}"#,
            unique("loc")
        ),
    );
    r.assert_problem(404, "not_found");
    // Locations: the publishable key may read them (store names are public).
    let l = api.get("/v1/locations", PUBLISHABLE);
    assert_eq!(l.status, 200);
    assert!(l.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == "store-1"));
    api.get(&format!("/v1/products/{p1}"), PUBLISHABLE)
        .assert_problem(403, "forbidden");
}

#[test]
fn a_bundle_has_the_availability_of_its_scarcest_component_and_reserves_and_sells_them() {
    let api = shared().api();
    let tee = api.new_sku("store-1", 7);
    let mug = api.new_sku("store-1", 2);
    let bundle = unique("BUNDLE");
    let r = api.send(
        "PUT",
        &format!("/v1/bundles/{bundle}"),
        ADMIN,
        &format!(r#"{{"title":"Gift set","price":{{"amount":"25.00","currency":"EUR"}},"components":[{{"sku":"{tee}","qty":2}},{{"sku":"{mug}","qty":1}}]}}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let avail = |sku: &str| api.available(sku, "store-1");
    // min(7/2, 2/1) = 2
    assert_eq!(avail(&bundle), 2);
    let rows = api
        .get(&format!("/v1/availability?sku={bundle}"), PUBLISHABLE)
        .json();
    assert_eq!(rows["items"][0]["bundle"], true);
    // Reserving one bundle holds 2 tees and 1 mug.
    let res = unique("cart");
    let r = api.reserve(&res, &[(&bundle, 1)], "store-1", 600);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(avail(&tee), 5);
    assert_eq!(avail(&mug), 1);
    assert_eq!(avail(&bundle), 1);
    // Selling one at the till sells the components.
    let sale = format!(
        r#"{{"sale_id":"{}","terminal_id":"tb","device_seq":1,"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{bundle}","qty":1,"unit_price":{{"amount":"25.00","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(1000)
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &sale);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.stock(&tee, "store-1")["on_hand"], 5);
    assert_eq!(api.stock(&mug, "store-1")["on_hand"], 1);
    assert_eq!(avail(&bundle), 0);
    // A bundle has no stock of its own.
    api.send(
        "POST",
        "/v1/inventory/receipts",
        ADMIN,
        &format!(r#"{{"location":"store-1","lines":[{{"sku":"{bundle}","qty":1}}]}}"#),
    )
    .assert_problem(400, "invalid_request");
    // Bundles do not nest.
    api.send(
        "PUT",
        &format!("/v1/bundles/{}", unique("NEST")),
        ADMIN,
        &format!(r#"{{"title":"Nest","price":{{"amount":"1.00","currency":"EUR"}},"components":[{{"sku":"{bundle}","qty":1}}]}}"#),
    )
    .assert_problem(400, "invalid_request");
}
