//! Receipts (issue 14): each form served by `Accept` (JSON, HTML for 80 mm
//! paper, 42-column text; 406 otherwise), a reprint marked as a copy, a
//! receipt that never changes after a later return (which gets its own), a
//! return started from a scanned receipt number (pre-filled, over-returns
//! refused), and email through a stand-in of the provider on loopback that
//! receives exactly one message for a retried send, across a SIGKILL.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::pages::{browser, click, until, Driver};

/// A POS sale at store-1 (terminal `terminal`) of `(sku, qty, unit price)`
/// lines, paid in cash with `cash`, for `customer`.
fn sell(
    api: &Api,
    terminal: &str,
    lines: &[(&str, i64, &str)],
    cash: &str,
    customer: Option<&str>,
) -> String {
    let sale = unique("rs");
    let ls: Vec<String> = lines
        .iter()
        .map(|(s, q, p)| {
            format!(r#"{{"sku":"{s}","qty":{q},"unit_price":{{"amount":"{p}","currency":"EUR"}}}}"#)
        })
        .collect();
    let cust = customer.map_or(String::new(), |c| format!(r#""customer_id":"{c}","#));
    let body = format!(
        r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":1,"location":"store-1",{cust}"occurred_at":"2026-11-29T09:12:00Z","lines":[{}],"payments":[{{"method":"cash","amount":{{"amount":"{cash}","currency":"EUR"}}}}]}}"#,
        ls.join(",")
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    sale
}

/// One unit of `sku` of return `ret` received back into store-1's stock.
fn receive_one(api: &Api, ret: &str, sku: &str) {
    let r = api.send(
        "POST",
        &format!("/v1/returns/{ret}/receive"),
        POS1,
        &format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{sku}","qty":1,"condition":"restock"}}]}}"#
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The thermal HTML receipt rendered by headless Chromium at 80 mm paper
/// width: `target/receipts/receipt.png` (a committed copy is
/// docs/screenshots/receipt.png).
fn screenshot(html: &str) {
    let dir = repo_root().join("target/receipts");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("receipt.html");
    let png = dir.join("receipt.png");
    std::fs::write(&page, html).unwrap();
    let _ = std::fs::remove_file(&png);
    let profile = TempDir::new("chromium");
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let status = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=320,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run chromium (apt-get install chromium)");
    assert!(status.success(), "chromium: {status}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 2_000, "a screenshot of the receipt: {size} bytes");
}

/// A receipt by number alone. A sale's number is findable once its Terminal
/// has told the receipt book (its alarm, just after the sale's answer): a
/// 404 is asked again for up to 3 s.
fn receipt(api: &Api, id: &str, accept: &str, query: &str) -> Resp {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let r = api.request(
            "GET",
            &format!("/v1/receipts/{id}{query}"),
            &[
                ("Authorization", &format!("Bearer {POS1}")),
                ("Accept", accept),
            ],
            None,
        );
        if r.status != 404 || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn each_form_is_served_by_accept_and_a_reprint_is_a_copy() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    // The catalog says 9.99; the till sold `a` at 7.50: a discount.
    let sale = sell(
        &api,
        "rct1",
        &[(&a, 2, "7.50"), (&b, 1, "9.99")],
        "30.00",
        Some("cust-7"),
    );

    let j = receipt(&api, &sale, "application/json", "");
    assert_eq!(j.status, 200, "{}", j.body);
    assert!(j
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = j.json();
    assert_eq!(v["kind"], "sale");
    assert_eq!(v["number"], sale);
    assert_eq!(v["barcode"], sale);
    assert_eq!(v["copy"], false);
    assert_eq!(v["location"], "store-1");
    assert_eq!(v["issued_at"], "2026-11-29T09:12:00.000Z");
    assert_eq!(v["customer"]["id"], "cust-7");
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
    assert_eq!(v["lines"][0]["sku"], a.as_str());
    assert_eq!(v["lines"][0]["discount"]["amount"], "4.98");
    // wrangler.toml's table: 8 % exclusive. 15.00 -> 1.20, 9.99 -> 0.80.
    assert_eq!(v["tax_inclusive"], false);
    assert_eq!(v["totals"]["tax"]["amount"], "2.00");
    assert_eq!(v["totals"]["total"]["amount"], "26.99");
    assert_eq!(v["totals"]["paid"]["amount"], "30.00");
    assert_eq!(v["totals"]["change"]["amount"], "3.01");
    assert_eq!(v["return_window_days"], 30);
    assert_eq!(v["return_by"], "2026-12-29T09:12:00.000Z");

    let h = receipt(&api, &sale, "text/html", "");
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(h.header("content-type").unwrap().starts_with("text/html"));
    assert!(h.body.contains("width:72mm"), "sized for 80 mm paper");
    assert!(
        h.body.contains("<svg") && h.body.contains("<rect"),
        "barcode bars"
    );
    assert!(!h.body.contains("<img") && !h.body.contains("<script"));
    assert!(!h.body.contains("<style"), "inline styles only");
    assert!(h.body.contains("26.99") && h.body.contains(&sale));
    assert!(!h.body.contains("COPY"));
    screenshot(&h.body);

    let t = receipt(&api, &sale, "text/plain", "");
    assert_eq!(t.status, 200, "{}", t.body);
    assert!(t.header("content-type").unwrap().starts_with("text/plain"));
    for l in t.body.lines() {
        assert!(l.chars().count() <= 42, "wider than 42 columns: {l:?}");
    }
    assert!(t.body.contains("TOTAL EUR"));
    assert!(t.body.contains("Change"));
    assert!(!t.body.contains("COPY"));

    // A reprint: the same receipt, marked as a copy, in every form.
    let tc = receipt(&api, &sale, "text/plain", "?copy=true");
    assert_eq!(tc.status, 200);
    assert!(tc.body.lines().next().unwrap().contains("COPY - REPRINT"));
    assert_eq!(
        tc.body.matches("26.99").count(),
        t.body.matches("26.99").count()
    );
    let hc = receipt(&api, &sale, "text/html", "?copy=true");
    assert!(hc.body.contains("COPY - REPRINT"));
    let jc = receipt(&api, &sale, "application/json", "?copy=true").json();
    assert_eq!(jc["copy"], true);
    assert_eq!(jc["totals"], v["totals"]);

    // Accept that names none of the three: 406, problem+json.
    let n = receipt(&api, &sale, "image/png", "");
    n.assert_problem(406, "invalid_request");
    // Bad parameters and unknown numbers.
    receipt(&api, &sale, "application/json", "?copy=maybe").assert_problem(400, "invalid_request");
    receipt(&api, &sale, "application/json", "?kind=invoice")
        .assert_problem(400, "invalid_request");
    receipt(&api, "no-such-receipt", "application/json", "").assert_problem(404, "not_found");
    receipt(&api, "bad%20id", "application/json", "").assert_problem(400, "invalid_request");
    // A publishable key may not read receipts.
    let p = api.get(&format!("/v1/receipts/{sale}"), PUBLISHABLE);
    assert_eq!(p.status, 403, "{}", p.body);
}

#[test]
fn a_return_from_a_scanned_number_is_prefilled_and_never_changes_the_sale_receipt() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let b = api.new_sku("store-1", 10);
    let sale = sell(
        &api,
        "rct2",
        &[(&a, 2, "9.99"), (&b, 1, "4.00")],
        "30.00",
        None,
    );
    let first = receipt(&api, &sale, "application/json", "");
    assert_eq!(first.status, 200, "{}", first.body);
    let first_text = receipt(&api, &sale, "text/plain", "").body;

    // The till scans the number: the receipt's lines pre-fill the return.
    let lines: Vec<(String, i64)> = first.json()["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_string(),
                l["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, vec![(a.clone(), 2), (b.clone(), 1)]);
    let body = |id: &str, qa: i64| {
        format!(
            r#"{{"id":"{id}","sale_id":"{sale}","lines":[{{"sku":"{a}","qty":{qa},"reason":"scanned"}}]}}"#
        )
    };
    // More than was sold: refused by the sale's terminal, nothing claimed.
    let over = api.send("POST", "/v1/returns", POS1, &body(&unique("rr"), 3));
    let p = over.assert_problem(400, "invalid_request");
    assert_eq!(p["lines"][0]["returnable"], 2, "{p}");
    let ret = unique("rr");
    let r = api.send("POST", "/v1/returns", POS1, &body(&ret, 1));
    assert_eq!(r.status, 201, "{}", r.body);
    receive_one(&api, &ret, &a);
    // The return's own receipt: units taken back, nothing refunded yet.
    let rr = receipt(&api, &ret, "application/json", "");
    assert_eq!(rr.status, 200, "{}", rr.body);
    assert_eq!(rr.json()["kind"], "return");
    let r = api.send(
        "POST",
        &format!("/v1/returns/{ret}/refund"),
        POS1,
        r#"{"amount":{"amount":"9.99","currency":"EUR"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The refund makes its own receipt; the earlier one stays as issued.
    let rf = receipt(&api, &ret, "application/json", "").json();
    assert_eq!(rf["kind"], "refund");
    assert_eq!(rf["reference"], sale.as_str());
    assert_eq!(rf["lines"][0]["direction"], "returned");
    assert_eq!(rf["lines"][0]["unit_price"]["amount"], "9.99");
    assert_eq!(rf["refunds"][0]["amount"]["amount"], "9.99");
    assert_eq!(rf["totals"]["total"]["amount"], "-10.79");
    let again = receipt(&api, &ret, "application/json", "?kind=return").json();
    assert_eq!(again, rr.json());
    // The sale's receipt never changed.
    assert_eq!(
        receipt(&api, &sale, "application/json", "").json(),
        first.json()
    );
    assert_eq!(receipt(&api, &sale, "text/plain", "").body, first_text);
    // What remains returnable is counted against the first return.
    let r = api.send("POST", "/v1/returns", POS1, &body(&unique("rr"), 2));
    assert_eq!(
        r.assert_problem(400, "invalid_request")["lines"][0]["returnable"],
        1
    );
}

/// What the provider stand-in received: each request's Idempotency-Key,
/// Authorization, body, and the status it answered.
#[derive(Clone, Debug)]
struct Got {
    key: String,
    auth: String,
    body: Value,
    status: u16,
}

/// A stand-in of Resend's `POST /emails` on 127.0.0.1: answers the first
/// `fail.len()` requests with those statuses, then 200 `{id}`; like Resend, a
/// key it accepted before is answered again without a second message.
fn provider(fail: Vec<u16>) -> (u16, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let g = got.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let (mut len, mut key, mut auth) = (0usize, String::new(), String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = v.trim().into(),
                    "authorization" => auth = v.trim().into(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut got = g.lock().unwrap();
            let n = got.len();
            let accepted_before = got.iter().any(|x| x.key == key && x.status == 200);
            let status = if n < fail.len() && !accepted_before {
                fail[n]
            } else {
                200
            };
            let answer = if status == 200 {
                format!(r#"{{"id":"msg-{key}"}}"#)
            } else {
                r#"{"message":"try later"}"#.into()
            };
            got.push(Got {
                key,
                auth,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                status: if accepted_before { 208 } else { status },
            });
            drop(got);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, got)
}

#[test]
fn a_retried_email_reaches_the_provider_once_across_a_sigkill() {
    let (port, got) = provider(vec![500, 429]);
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Server::start_with_vars(&[
        ("EMAIL_API_URL", &url),
        ("EMAIL_API_KEY", "re_test_key"),
        ("EMAIL_FROM", "shop@example.com"),
    ]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 5);
    let sale = sell(&api, "rct3", &[(&a, 1, "9.99")], "10.79", None);
    let key = unique("mail");
    let path = format!("/v1/receipts/{sale}/email");
    // The till names its terminal: the sale is found before it is indexed.
    let body = r#"{"to":"ada@example.com","terminal":"rct3"}"#;
    let r = api.write("POST", &path, POS1, &key, body);
    assert_eq!(r.status, 202, "{}", r.body);
    let first = r.json();
    assert_eq!(first["status"], "queued", "the first attempt got a 500");
    assert_eq!(first["receipt"], sale.as_str());
    // The same key again: the first answer, nothing sent again.
    let again = api.write("POST", &path, POS1, &key, body);
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first);
    // The same key with another body: 409.
    api.write("POST", &path, POS1, &key, r#"{"to":"bob@example.com"}"#)
        .assert_problem(409, "idempotency_key_reused");
    // Bad input changes nothing.
    api.send("POST", &path, POS1, r#"{"to":"a@b.c, d@e.f"}"#)
        .assert_problem(400, "invalid_request");
    api.send("POST", &path, POS1, r#"{"to":"ada@example.com","cc":"x"}"#)
        .assert_problem(400, "invalid_request");

    // The Worker dies with the email still queued; the outbox's alarm
    // retries after the restart (a 429, then accepted).
    server.kill9();
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && !got.lock().unwrap().iter().any(|g| g.status == 200) {
        thread::sleep(Duration::from_millis(250));
    }
    // Longer than the next backoff: nothing more arrives.
    thread::sleep(Duration::from_secs(5));
    let got = got.lock().unwrap().clone();
    let accepted: Vec<&Got> = got.iter().filter(|g| g.status == 200).collect();
    assert_eq!(accepted.len(), 1, "exactly one message: {got:?}");
    assert_eq!(got.len(), 3, "500, 429, then accepted once: {got:?}");
    let m = accepted[0];
    assert!(
        got.iter().all(|g| g.key == m.key),
        "one message id: {got:?}"
    );
    assert_eq!(m.key, first["id"].as_str().unwrap());
    assert_eq!(m.auth, "Bearer re_test_key");
    assert_eq!(m.body["to"][0], "ada@example.com");
    assert_eq!(m.body["from"], "shop@example.com");
    assert!(m.body["subject"].as_str().unwrap().contains(&sale));
    assert!(m.body["html"].as_str().unwrap().contains("<svg"));
    for l in m.body["text"].as_str().unwrap().lines() {
        assert!(l.chars().count() <= 42, "{l:?}");
    }
    let api = server.api();
    let replay = api.write("POST", &path, POS1, &key, body);
    assert_eq!(replay.json(), first, "replayed after the restart too");
}

/// The till (`/pos`) in headless Chromium: a scanned receipt number starts a
/// return pre-filled with the sale's lines; more than was sold is refused
/// and shown; the rest is received; a reprint opens the print dialog on the
/// thermal HTML receipt marked as a copy.
#[test]
fn the_till_returns_from_a_scanned_number_and_reprints_a_copy() {
    let server = Server::start_with_vars(&[("DEMO_PAGE_KEYS", DEV_KEYS)]);
    let api = server.api();
    seed_locations(&api);
    let a = api.new_sku("store-1", 5);
    let sale = sell(&api, "rct4", &[(&a, 2, "9.99")], "25.00", None);
    let driver = Driver::start();
    let base = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let c = browser(&driver).await;
        c.goto(&format!("{base}/pos")).await.expect("open /pos");
        until(&c, "the till's key", "document.getElementById('key-note').textContent.includes('sk_dev_pos_store-1')").await;
        let number = c.find(fantoccini::Locator::Css("#receipt-no")).await.unwrap();
        number.send_keys(&sale).await.unwrap();
        click(&c, "#start-return").await;
        until(&c, "the pre-filled lines", &format!("document.querySelector('#return-list input[data-sku=\"{a}\"]')?.value === '2'")).await;
        // More than was sold: the server refuses, the till shows why.
        c.execute(&format!("document.querySelector('#return-list input[data-sku=\"{a}\"]').value = '3'; return true;"), vec![])
            .await
            .unwrap();
        click(&c, "#return-go").await;
        let refused = until(&c, "the refusal", "document.getElementById('receipt-status').textContent.includes('refused') && document.getElementById('receipt-status').textContent").await;
        assert!(refused.as_str().unwrap().contains("2 of 3"), "{refused}");
        c.execute(&format!("document.querySelector('#return-list input[data-sku=\"{a}\"]').value = '1'; return true;"), vec![])
            .await
            .unwrap();
        click(&c, "#return-go").await;
        until(&c, "the return received", &format!("document.getElementById('receipt-status').textContent.includes('received against {sale}')")).await;
        // A reprint: the print dialog opens on the copy (print() is
        // recorded instead of shown).
        c.execute(
            "document.getElementById('print-frame').addEventListener('load', (e) => { \
               const w = e.target.contentWindow; w.print = () => { window.__printed = e.target.contentDocument.body.innerText; }; }); return true;",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#reprint").await;
        let printed = until(&c, "the print dialog", "window.__printed").await;
        let printed = printed.as_str().unwrap();
        assert!(printed.contains("COPY - REPRINT") && printed.contains(&sale), "{printed}");
        c.close().await.ok();
    });
    // The sale's receipt still says what was sold.
    let r = receipt(&api, &sale, "application/json", "").json();
    assert_eq!(r["lines"][0]["qty"], 2);
}

/// An online order has a receipt when paid and another when shipped; each
/// stays as issued, and its total is the order's to the cent.
#[test]
fn an_order_has_a_receipt_when_paid_and_when_shipped() {
    let api = shared().api();
    let a = api.new_sku("store-1", 10);
    let id = unique("ro");
    let r = api.send(
        "POST",
        "/v1/orders",
        STOREFRONT,
        &format!(
            r#"{{"id":"{id}","customer_id":"cust-9","lines":[{{"sku":"{a}","qty":3}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let gross = r.json()["totals"]["gross"].as_str().unwrap().to_string();
    let get = |q: &str| {
        api.request(
            "GET",
            &format!("/v1/receipts/{id}{q}"),
            &[("Authorization", &format!("Bearer {STOREFRONT}"))],
            None,
        )
    };
    // Not paid yet: no receipt to issue.
    get("").assert_problem(409, "invalid_transition");
    let step = |to: &str| {
        let r = api.send(
            "POST",
            &format!("/v1/orders/{id}/transitions"),
            ADMIN,
            &format!(r#"{{"to":"{to}"}}"#),
        );
        assert_eq!(r.status, 200, "{to}: {}", r.body);
    };
    step("paid");
    let paid = get("");
    assert_eq!(paid.status, 200, "{}", paid.body);
    let paid = paid.json();
    assert_eq!(paid["kind"], "order_paid");
    assert_eq!(paid["totals"]["total"]["amount"], gross.as_str());
    assert_eq!(paid["customer"]["id"], "cust-9");
    assert_eq!(paid["lines"][0]["qty"], 3);
    for to in ["ready_to_pick", "packed", "shipped"] {
        step(to);
    }
    let shipped = get("").json();
    assert_eq!(shipped["kind"], "order_fulfilled");
    assert_eq!(shipped["totals"], paid["totals"]);
    // The payment receipt is still the one issued.
    assert_eq!(get("?kind=order_paid").json(), paid);
    // A storefront key reads online orders' receipts, never a till's sale.
    let sale = sell(&api, "rct5", &[(&a, 1, "9.99")], "10.79", None);
    assert_eq!(receipt(&api, &sale, "application/json", "").status, 200);
    let r = api.get(&format!("/v1/receipts/{sale}"), STOREFRONT);
    r.assert_problem(403, "forbidden");
}

/// A product of one variant at `price` with `tax_code` (none: the table's
/// default code), `qty` received at store-1.
fn taxed_sku(api: &Api, price: &str, tax_code: Option<&str>, qty: i64) -> String {
    let sku = unique("TX");
    let code = tax_code.map_or(String::new(), |c| format!(r#","tax_code":"{c}""#));
    let r = api.send(
        "PUT",
        &format!("/v1/products/{}", unique("p")),
        ADMIN,
        &format!(
            r#"{{"title":"Taxed {sku}","variants":[{{"sku":"{sku}","options":{{}},"price":{{"amount":"{price}","currency":"EUR"}}{code}}}]}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    api.receive(&sku, "store-1", qty);
    sku
}

/// Cents of a decimal string or JSON number (exact: no float).
fn cents(v: &Value) -> i64 {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = format!("{frac:0<2}");
    assert!(frac.len() == 2, "more than 2 decimals: {s}");
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i64>().unwrap() * 100 + sign * frac.parse::<i64>().unwrap()
}

/// The day's QBO export once it holds `doc` (the feed forwards after the
/// sale's answer; up to 30 s).
fn exported(api: &Api, date: &str, doc: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(
            &format!("/v1/accounting/export?date={date}&format=qbo"),
            ADMIN,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        if let Some(e) = v["SalesReceipt"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["DocNumber"] == doc))
        {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "{doc} never exported: {v}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// One POS sale through the real path: its answer, its receipt and its
/// accounting export all state the same tax and total, equal to what was
/// paid and to the figures computed here, to the cent.
fn sale_agrees_everywhere(api: &Api, inclusive: bool, date: &str) {
    let a = taxed_sku(api, "7.50", None, 10);
    let b = taxed_sku(api, "3.33", Some("reduced"), 10);
    // Computed here: the standard rate on a, the reduced one on b.
    let (net_a, net_b) = (1500i64, 999i64); // 2 x 7.50, 3 x 3.33
    let (tax_a, tax_b, total) = if inclusive {
        // 20 % and 5.5 % inside the prices: 15.00 holds 2.50, 9.99 holds 0.52.
        (250, 52, net_a + net_b)
    } else {
        // 8 % and 2 % on top: 1.20 and 0.1998 -> 0.20.
        (120, 20, net_a + net_b + 120 + 20)
    };
    let paid = format!("{}.{:02}", total / 100, total % 100);
    let sale = unique("tx");
    let terminal = unique("ttx");
    let body = format!(
        r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":1,"location":"store-1","occurred_at":"{date}T11:00:00Z","lines":[{{"sku":"{a}","qty":2,"unit_price":{{"amount":"7.50","currency":"EUR"}}}},{{"sku":"{b}","qty":3}}],"payments":[{{"method":"card","amount":{{"amount":"{paid}","currency":"EUR"}}}}]}}"#
    );
    let r = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let answer = r.json();
    let t = &answer["totals"];
    assert_eq!(t["tax_inclusive"], inclusive, "{answer}");
    assert_eq!(cents(&t["gross"]), total, "{answer}");
    assert_eq!(cents(&t["tax"]), tax_a + tax_b, "{answer}");
    assert_eq!(cents(&answer["items"][0]["tax"]["tax"]["amount"]), tax_a);
    assert_eq!(cents(&answer["items"][1]["tax"]["tax"]["amount"]), tax_b);
    assert_eq!(answer["items"][1]["unit_price"]["amount"], "3.33");
    // A retry under another key answers the sale as first recorded.
    let again = api.send("POST", "/v1/pos/sales", POS1, &body);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json()["totals"], answer["totals"]);

    // The receipt (asked at once, before the Terminal's index reached the
    // book: the till passes its terminal).
    let rc = receipt(
        api,
        &sale,
        "application/json",
        &format!("?terminal={terminal}"),
    );
    assert_eq!(rc.status, 200, "{}", rc.body);
    let rc = rc.json();
    assert_eq!(rc["tax_inclusive"], inclusive, "{rc}");
    assert_eq!(cents(&rc["totals"]["total"]["amount"]), total, "{rc}");
    assert_eq!(cents(&rc["totals"]["tax"]["amount"]), tax_a + tax_b);
    assert_eq!(cents(&rc["totals"]["paid"]["amount"]), total);
    assert_eq!(cents(&rc["totals"]["change"]["amount"]), 0);
    assert_eq!(cents(&rc["lines"][0]["tax"]["tax"]["amount"]), tax_a);
    assert_eq!(cents(&rc["lines"][1]["tax"]["tax"]["amount"]), tax_b);

    // The books: the same receipt, the same cents.
    let e = exported(api, date, &sale);
    assert_eq!(cents(&e["TotalAmt"]), total, "{e}");
    assert_eq!(cents(&e["TxnTaxDetail"]["TotalTax"]), tax_a + tax_b, "{e}");
    let expect_calc = if inclusive {
        "TaxInclusive"
    } else {
        "TaxExcluded"
    };
    assert_eq!(e["GlobalTaxCalculation"], expect_calc);
    let lines: i64 = e["Line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| cents(&l["Amount"]))
        .sum();
    assert_eq!(lines, net_a + net_b, "{e}");
    for l in e["Line"].as_array().unwrap() {
        assert_eq!(
            l["SalesItemLineDetail"]["TaxCodeRef"]["value"], "TAX",
            "{e}"
        );
    }
    assert_eq!(e["PaymentMethodRef"]["value"], "card");
}

#[test]
fn a_pos_sale_receipt_equals_its_accounting_export_and_what_was_paid() {
    // The shared server: wrangler.toml's exclusive table (8 %, reduced 2 %).
    sale_agrees_everywhere(&shared().api(), false, "2026-11-23");
    // A deployment whose prices include tax (20 %, reduced 5.5 %).
    let table = r#"{"inclusive": true, "default_code": "standard", "rates": [
        {"location": "*", "code": "standard", "rate": "0.20"},
        {"location": "*", "code": "reduced", "rate": "0.055"}]}"#;
    let mut server = Server::start_with_vars(&[("TAX_TABLE", table)]);
    let api = server.api();
    seed_locations(&api);
    sale_agrees_everywhere(&api, true, "2026-11-23");
    server.stop();
}

#[test]
fn a_sale_with_a_customer_shows_its_points_on_its_receipt() {
    let api = shared().api();
    let sku = taxed_sku(&api, "10.00", None, 20);
    let cust = unique("cust");
    let r = api.send(
        "PUT",
        &format!("/v1/customers/{cust}"),
        ADMIN,
        r#"{"name":"Receipt Reader"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let sell_for = |sale: &str, qty: i64, paid: &str| {
        let terminal = format!("t-{sale}");
        let body = format!(
            r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":1,"location":"store-1","occurred_at":"2026-11-24T10:00:00Z","customer_id":"{cust}","lines":[{{"sku":"{sku}","qty":{qty}}}],"payments":[{{"method":"card","amount":{{"amount":"{paid}","currency":"EUR"}}}}]}}"#
        );
        let r = api.send("POST", "/v1/pos/sales", POS1, &body);
        assert_eq!(r.status, 201, "{}", r.body);
        // Asked at once: the Customer may not have the sale from the
        // Terminal's outbox yet; the receipt never shows a stale figure.
        let rc = receipt(
            &api,
            sale,
            "application/json",
            &format!("?terminal={terminal}"),
        );
        assert_eq!(rc.status, 200, "{}", rc.body);
        rc.json()
    };
    // 5 x 10.00 (+ 8 %: 54.00 paid): 50 points at rate 1 (prices before tax).
    let s1 = unique("sale");
    let r1 = sell_for(&s1, 5, "54.00");
    assert_eq!(r1["customer"]["id"], cust.as_str());
    assert_eq!(r1["customer"]["name"], Value::Null, "no personal data kept");
    assert_eq!(
        r1["customer"]["loyalty"],
        serde_json::json!({"earned": 50, "redeemed": 0, "balance": 50}),
        "{r1}"
    );
    // At the till: 20 points redeemed for the next sale, then the sale.
    let s2 = unique("sale");
    let rd = api.send(
        "POST",
        &format!("/v1/customers/{cust}/loyalty/redeem"),
        POS1,
        &format!(r#"{{"points":20,"reference":"{s2}"}}"#),
    );
    assert_eq!(rd.status, 200, "{}", rd.body);
    assert_eq!(rd.json()["balance"], 30);
    let r2 = sell_for(&s2, 1, "10.80");
    assert_eq!(
        r2["customer"]["loyalty"],
        serde_json::json!({"earned": 10, "redeemed": 20, "balance": 40}),
        "{r2}"
    );
    let text = receipt(&api, &s2, "text/plain", "").body;
    assert!(
        text.contains("Points earned") && text.contains("40"),
        "{text}"
    );
    // The customer agrees, once the Terminal's own delivery arrives too
    // (applied once: the receipt's delivery came first).
    let c = api.get(&format!("/v1/customers/{cust}"), ADMIN).json();
    assert_eq!(c["loyalty"]["balance"], 40, "{c}");
    assert_eq!(c["loyalty"]["earned"], 60, "{c}");
    thread::sleep(Duration::from_millis(300));
    let c = api.get(&format!("/v1/customers/{cust}"), ADMIN).json();
    assert_eq!(c["loyalty"]["earned"], 60, "earned once: {c}");
    // Later points movements never change an issued receipt.
    let rd = api.send(
        "POST",
        &format!("/v1/customers/{cust}/loyalty/redeem"),
        POS1,
        r#"{"points":5}"#,
    );
    assert_eq!(rd.status, 200, "{}", rd.body);
    let ret = unique("rr");
    let r = api.send(
        "POST",
        "/v1/returns",
        POS1,
        &format!(
            r#"{{"id":"{ret}","sale_id":"{s2}","lines":[{{"sku":"{sku}","qty":1,"reason":"changed mind"}}]}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    receive_one(&api, &ret, &sku);
    let later = receipt(&api, &s2, "application/json", "").json();
    assert_eq!(later["customer"], r2["customer"]);
    assert_eq!(later["totals"], r2["totals"]);
    // The return's receipt names the customer, not the sale's points.
    let rr = receipt(&api, &ret, "application/json", "").json();
    assert_eq!(rr["customer"]["id"], cust.as_str(), "{rr}");
    assert_eq!(rr["customer"]["loyalty"], Value::Null, "{rr}");
    // An anonymous sale's receipt has no customer at all.
    let s3 = unique("sale");
    let body = format!(
        r#"{{"sale_id":"{s3}","terminal_id":"t-{s3}","device_seq":1,"location":"store-1","occurred_at":"2026-11-24T10:00:00Z","lines":[{{"sku":"{sku}","qty":1}}]}}"#
    );
    assert_eq!(api.send("POST", "/v1/pos/sales", POS1, &body).status, 201);
    let r3 = receipt(&api, &s3, "application/json", &format!("?terminal=t-{s3}")).json();
    assert_eq!(r3["customer"], Value::Null, "{r3}");
}
