//! Methods a path does not list (issue 12, found by `make schemathesis`):
//! the `worker` crate reads a method it does not know (QUERY, PROPFIND) as
//! GET, so QUERY /v1/locations used to answer the list. Each is a 405 with an
//! `Allow` header naming the path's methods, and changes nothing.

use crate::harness::{shared, ADMIN};

#[test]
fn unknown_and_unlisted_methods_are_405_with_allow() {
    let api = shared().api();
    let auth = format!("Bearer {ADMIN}");
    let h = [("Authorization", auth.as_str())];
    for (method, path, allow) in [
        ("QUERY", "/v1/locations", "GET"),
        ("QUERY", "/v1/health", "GET"),
        ("PROPFIND", "/v1/config/fulfillment", "GET"),
        ("QUERY", "/v1/dev/keys", "GET"),
        ("PATCH", "/v1/locations", "GET"),
    ] {
        let r = api.request(method, path, &h, None);
        r.assert_problem(405, "invalid_request");
        let got = r.header("Allow").unwrap_or("");
        let mut got: Vec<&str> = got.split(", ").collect();
        let mut want: Vec<&str> = allow.split(", ").collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}: Allow {:?}", r.header("Allow"));
    }
    // The methods the path lists still work.
    assert_eq!(api.request("GET", "/v1/locations", &h, None).status, 200);
}
