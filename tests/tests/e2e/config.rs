//! `GET /v1/config/fulfillment`: the deployment's rule and tax table, as
//! wrangler.toml's vars set them.
use crate::harness::*;

#[test]
fn the_rule_and_tax_table_in_force_are_readable_by_staff_and_shops() {
    let api = shared().api();
    for key in [ADMIN, STOREFRONT, POS1] {
        let r = api.get("/v1/config/fulfillment", key);
        assert_eq!(r.status, 200, "{}", r.body);
        let c = r.json();
        assert_eq!(c["rule"], "nearest");
        assert_eq!(c["split"], "never");
        assert_eq!(c["location"], serde_json::Value::Null);
        assert_eq!(c["pickup_overdue_hours"], 72);
        assert_eq!(c["tax"]["inclusive"], false);
        assert_eq!(c["tax"]["default_code"], "standard");
        let rates = c["tax"]["rates"].as_array().unwrap();
        let standard = rates
            .iter()
            .find(|r| r["code"] == "standard" && r["location"] == "*")
            .expect("a standard rate for every location");
        assert_eq!(standard["rate"], "0.08");
        assert!(c["tax"]["rounding"].as_str().unwrap().contains("per line"));
    }
    api.get("/v1/config/fulfillment", PUBLISHABLE)
        .assert_problem(403, "forbidden");
    api.get("/v1/config/fulfillment", "sk_nope")
        .assert_problem(401, "unauthorized");
}
