//! Catalog import (issue 11) against the real Worker: a Shopify export with
//! every kind of problem, its dry-run report line by line, the fixed file
//! applied once, then stock and a POS sale by barcode; and a SIGKILL in the
//! middle of an apply.
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(name)).expect("fixture")
}

fn post_csv(api: &Api, path: &str, idem: &str, body: &[u8]) -> Resp {
    api.request(
        "POST",
        path,
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Idempotency-Key", idem),
            ("Content-Type", "text/csv"),
        ],
        Some(body),
    )
}

fn legacy_product(api: &Api) {
    let r = api.send(
        "PUT",
        "/v1/products/legacy-tote",
        ADMIN,
        r#"{"title":"Legacy tote","variants":[{"sku":"IMP-OLD-1","barcode":"5012345678948","price":{"amount":"9.00","currency":"EUR"}}]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

fn rows(v: &Value) -> Vec<(i64, String, String, String)> {
    v["report"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["severity"].as_str().unwrap().to_string(),
                r["code"].as_str().unwrap().to_string(),
                r["field"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn shopify_export_dry_run_report_then_fixed_file_applied_once() {
    let server = Server::start();
    let api = server.api();
    seed_locations(&api);
    legacy_product(&api);

    // The messy export: a dry run that changes nothing.
    let r = post_csv(
        &api,
        "/v1/catalog/imports?location=store-1",
        "imp-messy",
        &fixture("shopify_export_messy.csv"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "7", "a UUIDv7: {id}");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["format"], "shopify");
    let expect: Vec<(i64, &str, &str, &str)> = vec![
        (1, "info", "ignored_columns", "header"),
        (2, "info", "stock_receipt", "Variant Inventory Qty"),
        (3, "error", "invalid_barcode", "Variant Barcode"),
        (3, "warning", "option_value_variant", "Option1 Value"),
        (3, "info", "stock_receipt", "Variant Inventory Qty"),
        (4, "error", "duplicate_sku", "Variant SKU"),
        (5, "info", "skipped_row", "Handle"),
        (6, "error", "missing_sku", "Variant SKU"),
        (6, "error", "invalid_price", "Variant Price"),
        (6, "warning", "title_convention", "Title"),
        (7, "error", "duplicate_barcode", "Variant Barcode"),
        (7, "error", "negative_price", "Variant Price"),
        (7, "error", "invalid_quantity", "Variant Inventory Qty"),
        (8, "error", "sku_in_catalog", "Variant SKU"),
        (9, "error", "barcode_in_catalog", "Variant Barcode"),
        (9, "info", "stock_receipt", "Variant Inventory Qty"),
    ];
    let got = rows(&v);
    let got_ref: Vec<(i64, &str, &str, &str)> = got
        .iter()
        .map(|(l, s, c, f)| (*l, s.as_str(), c.as_str(), f.as_str()))
        .collect();
    assert_eq!(got_ref, expect, "{}", v["report"]);
    let msgs: Vec<&str> = v["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(msgs[2].contains("5012345678901"), "{}", msgs[2]);
    assert!(msgs[3].contains("\"black \"") && msgs[3].contains("line 2"));
    assert!(msgs[1].contains("10 units would be received at store-1"));
    assert!(msgs[5].contains("also on line 2"));
    assert!(msgs[10].contains("also on line 2"));
    assert!(msgs[13].contains("legacy-tote"));
    assert!(msgs[14].contains("IMP-OLD-1"));
    let s = &v["report"]["summary"];
    assert_eq!(
        (
            s["data_rows"].as_i64(),
            s["products"].as_i64(),
            s["variants"].as_i64()
        ),
        (Some(8), Some(3), Some(7))
    );
    assert_eq!(
        (
            s["errors"].as_i64(),
            s["warnings"].as_i64(),
            s["infos"].as_i64()
        ),
        (Some(9), Some(2), Some(5))
    );
    assert_eq!(s["products_with_errors"], 3);
    assert_eq!(s["receipt_units"], 16);
    // Nothing changed: the tee is not in the catalog.
    api.get("/v1/skus/IMP-TEE-BLK-S", ADMIN)
        .assert_problem(404, "not_found");
    // The same key and file again: the same import.
    let again = post_csv(
        &api,
        "/v1/catalog/imports?location=store-1",
        "imp-messy",
        &fixture("shopify_export_messy.csv"),
    );
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    // The problems as CSV, one line each.
    let csv = api.request(
        "GET",
        &format!("/v1/catalog/imports/{id}"),
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Accept", "text/csv"),
        ],
        None,
    );
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "line,severity,code,field,message");
    assert_eq!(lines.len(), expect.len() + 1);
    assert!(lines[3].starts_with("3,error,invalid_barcode,Variant Barcode,"));
    // Errors remain: apply refuses; skipping them leaves every product out.
    let r = api.write(
        "POST",
        &format!("/v1/catalog/imports/{id}/apply"),
        ADMIN,
        "ap-1",
        "{}",
    );
    let p = r.assert_problem(409, "invalid_request");
    assert_eq!(p["errors"], 9);
    let r = api.write(
        "POST",
        &format!("/v1/catalog/imports/{id}/apply"),
        ADMIN,
        "ap-2",
        r#"{"skip_rows_with_errors":true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["apply"]["products_skipped"], 3);
    assert_eq!(r.json()["apply"]["products_applied"], 0);
    api.get("/v1/skus/IMP-TOTE-BLK", ADMIN)
        .assert_problem(404, "not_found");

    // The fixed file: no errors; applied once.
    let r = post_csv(
        &api,
        "/v1/catalog/imports?location=store-1",
        "imp-fixed",
        &fixture("shopify_export_fixed.csv"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let fixed = r.json();
    let fid = fixed["id"].as_str().unwrap().to_string();
    assert_eq!(
        fixed["report"]["summary"]["errors"], 0,
        "{}",
        fixed["report"]
    );
    assert_eq!(fixed["report"]["summary"]["receipt_units"], 19);
    let apply = |key: &str| {
        api.write(
            "POST",
            &format!("/v1/catalog/imports/{fid}/apply"),
            ADMIN,
            key,
            "{}",
        )
    };
    let first = apply("fx-1");
    assert_eq!(first.status, 200, "{}", first.body);
    let a = first.json()["apply"].clone();
    assert_eq!(
        (
            a["products_applied"].as_i64(),
            a["variants_applied"].as_i64()
        ),
        (Some(3), Some(7))
    );
    assert_eq!(a["units_received"], 19);
    // A replay (same key) and another apply (new key) change nothing.
    let replay = apply("fx-1");
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(replay.json()["apply"], a);
    let other = apply("fx-2");
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["apply"], a);
    assert_eq!(api.stock("IMP-TEE-BLK-S", "store-1")["on_hand"], 10);
    assert_eq!(api.stock("IMP-BEANIE-NAVY", "store-1")["on_hand"], 3);
    assert_eq!(api.stock("IMP-TOTE-BLK", "store-1")["on_hand"], 2);
    let got = api.get(&format!("/v1/catalog/imports/{fid}"), ADMIN).json();
    assert_eq!(got["status"], "applied");
    // The imported product as the catalog has it.
    let p = api.get("/v1/products/organic-tee", ADMIN).json();
    assert_eq!(p["title"], "Organic cotton tee");
    assert_eq!(p["variants"][1]["options"]["Size"], "M");
    assert_eq!(p["variants"][1]["price"]["amount"], "19.90");
    let tote = api.get("/v1/skus/IMP-TOTE-NAT", ADMIN).json();
    assert_eq!(tote["variant"]["tax_code"], "exempt");
    // Staff search: prefix, any case, over SKU, barcode, title words and
    // option values.
    let search = |q: &str| -> Vec<String> {
        let r = api.get(&format!("/v1/products?query={q}"), POS1);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(search("imp-tote"), ["canvas-tote"]);
    assert_eq!(search("COTTON"), ["organic-tee"]);
    assert_eq!(search("Organic%20cot"), ["organic-tee"]);
    assert_eq!(search("nav"), ["wool-beanie"]);
    assert_eq!(search("5012345678962"), ["wool-beanie"]);
    assert_eq!(
        search("50123456789"),
        ["canvas-tote", "legacy-tote", "organic-tee", "wool-beanie"]
    );
    assert!(search("otton").is_empty(), "prefix, not substring");
    let page = api
        .get("/v1/products?query=50123456789&limit=3", POS1)
        .json();
    assert_eq!(page["next_cursor"], "organic-tee");
    let rest = api
        .get(
            "/v1/products?query=50123456789&limit=3&cursor=organic-tee",
            POS1,
        )
        .json();
    assert_eq!(rest["items"][0]["id"], "wool-beanie");
    assert!(rest["next_cursor"].is_null());
    // Availability and a POS sale by barcode of an imported variant.
    assert_eq!(api.available("IMP-TEE-BLK-S", "store-1"), 10);
    let sale = format!(
        r#"{{"sale_id":"{}","terminal_id":"t-imp","device_seq":1,"location":"store-1","occurred_at":"{}","lines":[{{"barcode":"5012345678900","qty":1,"unit_price":{{"amount":"19.90","currency":"EUR"}}}}]}}"#,
        unique("sale"),
        rfc3339_ago(1000)
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &sale);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(api.available("IMP-TEE-BLK-S", "store-1"), 9);
}

#[test]
fn bad_import_requests_are_typed_and_change_nothing() {
    let api = shared().api();
    let r = api.write("POST", "/v1/catalog/imports", ADMIN, &unique("k"), "{}");
    r.assert_problem(415, "invalid_request");
    post_csv(&api, "/v1/catalog/imports", &unique("k"), b"a,b\n1,2\n")
        .assert_problem(400, "invalid_request");
    post_csv(&api, "/v1/catalog/imports", &unique("k"), b"").assert_problem(400, "invalid_request");
    post_csv(
        &api,
        "/v1/catalog/imports",
        &unique("k"),
        b"Handle,Title,Variant SKU\nh,\xff\n",
    )
    .assert_problem(400, "invalid_request");
    post_csv(
        &api,
        "/v1/catalog/imports?location=nowhere-9",
        &unique("k"),
        b"product_id,title,sku,price\np,P,S,1\n",
    )
    .assert_problem(404, "not_found");
    // Over 4 MiB: 413 before the body is read.
    let big = vec![b'a'; 4 * 1024 * 1024 + 1];
    post_csv(&api, "/v1/catalog/imports", &unique("k"), &big)
        .assert_problem(413, "payload_too_large");
    api.get("/v1/catalog/imports/no-such-import", ADMIN)
        .assert_problem(404, "not_found");
    api.get("/v1/catalog/imports/x", POS1)
        .assert_problem(403, "forbidden");
    // A plain omnistock CSV with no location but quantities: an error row.
    let sku = unique("OMS");
    let csv = format!("product_id,title,sku,price,qty\n{sku},Plain,{sku},3.50,2\n");
    let r = post_csv(&api, "/v1/catalog/imports", &unique("k"), csv.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["format"], "omnistock");
    assert_eq!(rows(&v)[0].2, "no_location");
}

#[test]
fn sigkill_during_apply_then_retry_applies_exactly_once() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    // 30 products of 3 variants, each with stock: enough work to be cut.
    let mut csv =
        String::from("product_id,title,sku,barcode,option1_name,option1_value,price,qty\n");
    for p in 0..30 {
        for v in 0..3 {
            csv.push_str(&format!(
                "kp-{p},Killed {p},KP-{p}-{v},,Size,S{v},1.00,{}\n",
                v + 1
            ));
        }
    }
    let r = post_csv(
        &api,
        "/v1/catalog/imports?location=store-1",
        "kill-imp",
        csv.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/catalog/imports/{id}/apply");
    let (a2, p2) = (api.clone(), path.clone());
    let t = thread::spawn(move || a2.try_write("POST", &p2, ADMIN, "kill-apply", "{}"));
    thread::sleep(Duration::from_millis(150));
    server.kill9();
    let _ = t.join();
    server.start_again();
    let api = server.api();
    // The import survived; the retry finishes what was started, once.
    let r = api.write("POST", &path, ADMIN, "kill-apply", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let a = r.json()["apply"].clone();
    assert_eq!(a["products_applied"], 30);
    assert_eq!(a["units_received"], 180);
    for p in [0, 17, 29] {
        for v in 0..3 {
            assert_eq!(
                api.stock(&format!("KP-{p}-{v}"), "store-1")["on_hand"],
                v + 1,
                "KP-{p}-{v}"
            );
        }
    }
    let again = api.write("POST", &path, ADMIN, "kill-apply-2", "{}");
    assert_eq!(again.json()["apply"], a);
    assert_eq!(api.stock("KP-5-2", "store-1")["on_hand"], 3);
}

#[test]
fn a_large_apply_is_a_job_whose_progress_can_be_followed() {
    let api = shared().api();
    let tag = unique("job").replace('-', "");
    // 60 products of 2 variants: six steps of the job.
    let mut csv =
        String::from("product_id,title,sku,barcode,option1_name,option1_value,price,qty\n");
    for p in 0..60 {
        for v in 0..2 {
            csv.push_str(&format!(
                "{tag}-{p},Job {p},{tag}-{p}-{v},,Size,S{v},2.00,{}\n",
                v + 1
            ));
        }
    }
    let r = post_csv(
        &api,
        "/v1/catalog/imports?location=store-1",
        &unique("job-imp"),
        csv.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/catalog/imports/{id}/apply");
    let started = api.request(
        "POST",
        &path,
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Idempotency-Key", &unique("job-apply")),
            ("Prefer", "respond-async"),
        ],
        Some(b"{}"),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(
        started.header("Location"),
        Some(format!("/v1/catalog/imports/{id}").as_str())
    );
    let v = started.json();
    assert_eq!(v["status"], "applying");
    assert_eq!(v["progress"]["products_total"], 60);
    // Follow it: progress only grows, then the outcome.
    let mut last = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let view = loop {
        let g = api.get(&format!("/v1/catalog/imports/{id}"), ADMIN).json();
        let done = g["progress"]["products_done"].as_i64().unwrap_or(0);
        assert!(done >= last, "progress went back: {last} -> {done}");
        last = done;
        if g["status"] == "applied" {
            break g;
        }
        assert_eq!(g["status"], "applying", "{g}");
        assert!(
            std::time::Instant::now() < deadline,
            "the job never finished: {g}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(view["progress"]["products_done"], 60);
    assert_eq!(view["apply"]["products_applied"], 60);
    assert_eq!(view["apply"]["variants_applied"], 120);
    assert_eq!(view["apply"]["units_received"], 180);
    assert_eq!(api.stock(&format!("{tag}-59-1"), "store-1")["on_hand"], 2);
    // Applying again joins nothing new: the first outcome, replayed.
    let again = api.send("POST", &path, ADMIN, "{}");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.json()["apply"], view["apply"]);
}
