//! Reports and accounting (issue 10) against a real `wrangler dev`: a short
//! week of mixed traffic (POS sales, an online order, a return with a
//! refund, adjustments), the event feed into D1 (with deliveries
//! duplicated), every weekly figure and the day's accounting totals checked
//! against numbers computed here, the CSV parsed back, and the QuickBooks
//! Online sync against a stand-in on loopback: a 429 backed off, a rejected
//! receipt recorded, and every receipt booked once across a SIGKILL of the
//! server mid-sync and a retry.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// What the QBO stand-in saw.
#[derive(Default)]
struct Seen {
    /// requestid -> (entity kind, DocNumber, QBO Id) of what was booked.
    booked: BTreeMap<String, (String, String, String)>,
    /// Posts whose requestid was already booked (answered with the booking).
    duplicates: u32,
    posts: u32,
    refresh_tokens: Vec<String>,
    too_many_sent: bool,
    /// The refund post being held (for the crash), and whether it was.
    hang_started: bool,
    shape_errors: Vec<String>,
}

struct StandIn {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    reject_doc: Arc<Mutex<String>>,
    hang_refund: Arc<Mutex<bool>>,
}

fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(f64::NAN) * 100.0).round() as i64
}

fn check_shape(kind: &str, e: &Value) -> Result<(), String> {
    let doc = e["DocNumber"].as_str().ok_or("no DocNumber")?;
    if doc.is_empty() || doc.len() > 21 {
        return Err(format!("DocNumber {doc:?}"));
    }
    let date = e["TxnDate"].as_str().ok_or("no TxnDate")?;
    if date.len() != 10 {
        return Err(format!("TxnDate {date}"));
    }
    e["PaymentMethodRef"]["value"]
        .as_str()
        .ok_or("no PaymentMethodRef")?;
    let tax = cents(&e["TxnTaxDetail"]["TotalTax"]);
    let lines = e["Line"].as_array().ok_or("no Line")?;
    if lines.is_empty() {
        return Err("empty Line".into());
    }
    let mut sum = 0;
    for l in lines {
        if l["DetailType"] != "SalesItemLineDetail" {
            return Err(format!("{kind}: DetailType {}", l["DetailType"]));
        }
        let d = &l["SalesItemLineDetail"];
        d["ItemRef"]["value"].as_str().ok_or("no ItemRef")?;
        d["TaxCodeRef"]["value"].as_str().ok_or("no TaxCodeRef")?;
        d["Qty"].as_i64().ok_or("no Qty")?;
        d["UnitPrice"].as_f64().ok_or("no UnitPrice")?;
        sum += cents(&l["Amount"]);
    }
    let total = cents(&e["TotalAmt"]);
    let inclusive = e["GlobalTaxCalculation"] == "TaxInclusive";
    let want = if inclusive { sum } else { sum + tax };
    if total != want {
        return Err(format!("TotalAmt {total} != lines {sum} + tax {tax}"));
    }
    Ok(())
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the QBO stand-in");
        let port = listener.local_addr().unwrap().port();
        let s = StandIn {
            port,
            seen: Arc::default(),
            reject_doc: Arc::default(),
            hang_refund: Arc::default(),
        };
        let (seen, reject, hang) = (s.seen.clone(), s.reject_doc.clone(), s.hang_refund.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (seen, reject, hang) = (seen.clone(), reject.clone(), hang.clone());
                thread::spawn(move || {
                    let _ = serve(conn, &seen, &reject, &hang);
                });
            }
        });
        s
    }

    fn vars(&self) -> Vec<(String, String)> {
        let base = format!("http://127.0.0.1:{}", self.port);
        vec![
            ("QBO_BASE_URL".into(), base.clone()),
            ("QBO_REALM_ID".into(), "4620816365".into()),
            (
                "QBO_TOKEN_URL".into(),
                format!("{base}/oauth2/v1/tokens/bearer"),
            ),
            ("QBO_CLIENT_ID".into(), "client-1".into()),
            ("QBO_CLIENT_SECRET".into(), "secret-1".into()),
            ("QBO_REFRESH_TOKEN".into(), "rt-1".into()),
        ]
    }
}

fn serve(
    mut conn: TcpStream,
    seen: &Mutex<Seen>,
    reject: &Mutex<String>,
    hang: &Mutex<bool>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).to_string();
    let (status, extra, answer) = handle(&target, &auth, &body, seen, reject, hang);
    let resp = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    conn.write_all(resp.as_bytes())
}

fn handle(
    target: &str,
    auth: &str,
    body: &str,
    seen: &Mutex<Seen>,
    reject: &Mutex<String>,
    hang: &Mutex<bool>,
) -> (u16, String, String) {
    if target.starts_with("/oauth2/v1/tokens/bearer") {
        // client-1:secret-1
        if auth != "Basic Y2xpZW50LTE6c2VjcmV0LTE=" {
            return (401, String::new(), r#"{"error":"invalid_client"}"#.into());
        }
        let rt = body
            .split('&')
            .find_map(|p| p.strip_prefix("refresh_token="))
            .unwrap_or("")
            .to_string();
        if !body.contains("grant_type=refresh_token") {
            return (
                400,
                String::new(),
                r#"{"error":"unsupported_grant_type"}"#.into(),
            );
        }
        seen.lock().unwrap().refresh_tokens.push(rt);
        return (
            200,
            String::new(),
            r#"{"access_token":"at-1","refresh_token":"rt-2","expires_in":3600,"token_type":"bearer"}"#
                .into(),
        );
    }
    let Some(rest) = target.strip_prefix("/v3/company/4620816365/") else {
        return (404, String::new(), "{}".into());
    };
    let (entity, query) = rest.split_once('?').unwrap_or((rest, ""));
    let kind = match entity {
        "salesreceipt" => "SalesReceipt",
        "refundreceipt" => "RefundReceipt",
        _ => return (404, String::new(), "{}".into()),
    };
    if auth != "Bearer at-1" {
        return (401, String::new(), "{}".into());
    }
    let rid = query
        .split('&')
        .find_map(|p| p.strip_prefix("requestid="))
        .unwrap_or("")
        .to_string();
    let e: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let doc = e["DocNumber"].as_str().unwrap_or("").to_string();
    {
        let mut s = seen.lock().unwrap();
        s.posts += 1;
        if rid.is_empty() {
            s.shape_errors.push(format!("{doc}: no requestid"));
        }
        if let Err(why) = check_shape(kind, &e) {
            s.shape_errors.push(format!("{doc}: {why}"));
        }
        if let Some((k, _, id)) = s.booked.get(&rid).cloned() {
            // QBO answers a repeated requestid with the first result.
            s.duplicates += 1;
            return (200, String::new(), json!({ k: {"Id": id} }).to_string());
        }
        if !s.too_many_sent {
            s.too_many_sent = true;
            return (
                429,
                "Retry-After: 1\r\n".into(),
                r#"{"Fault":{"type":"ThrottleExceeded"}}"#.into(),
            );
        }
        if *reject.lock().unwrap() == doc {
            return (
                400,
                String::new(),
                r#"{"Fault":{"Error":[{"Message":"Invalid Reference Id","code":"2500"}],"type":"ValidationFault"}}"#
                    .into(),
            );
        }
        // QBO books on receipt; the answer may never reach the client.
        let id = (s.booked.len() + 100).to_string();
        s.booked
            .insert(rid.clone(), (kind.into(), doc.clone(), id.clone()));
        if kind == "RefundReceipt" && *hang.lock().unwrap() {
            *hang.lock().unwrap() = false;
            s.hang_started = true;
            drop(s);
            thread::sleep(Duration::from_secs(20));
        }
        (200, String::new(), json!({ kind: {"Id": id} }).to_string())
    }
}

fn now_rfc3339() -> String {
    rfc3339_ago(0)
}

fn pos_sale(
    api: &Api,
    terminal: &str,
    seq: i64,
    lines: &[(&str, i64, &str)],
    pay: (&str, &str),
) -> String {
    let sale = unique("sale");
    post_sale(api, &sale, terminal, seq, lines, pay, &now_rfc3339());
    sale
}

fn post_sale(
    api: &Api,
    sale: &str,
    terminal: &str,
    seq: i64,
    lines: &[(&str, i64, &str)],
    pay: (&str, &str),
    at: &str,
) -> Resp {
    let ls: Vec<Value> = lines
        .iter()
        .map(
            |(s, q, p)| json!({"sku": s, "qty": q, "unit_price": {"amount": p, "currency": "EUR"}}),
        )
        .collect();
    let body = json!({
        "sale_id": sale, "terminal_id": terminal, "device_seq": seq, "location": "store-1",
        "occurred_at": at, "lines": ls,
        "payments": [{"method": pay.0, "amount": {"amount": pay.1, "currency": "EUR"}}],
    });
    let r = api.write(
        "POST",
        "/v1/pos/sales",
        POS1,
        &format!("k-{sale}"),
        &body.to_string(),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
    r
}

fn ok(r: Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    r.json()
}

/// Waits until every source has forwarded its outbox and `done` holds.
fn weekly_when(api: &Api, week: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.get(
            &format!("/v1/reports/weekly?week={week}&location=store-1"),
            ADMIN,
        );
        let v = ok(r, 200);
        if v["sources_behind"] == 0 && done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the feed did not catch up: {v}");
        thread::sleep(Duration::from_millis(300));
    }
}

fn parse_ms(s: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400_000 + n(11, 13) * 3_600_000 + n(14, 16) * 60_000 + n(17, 19) * 1000 + n(20, 23)
}

/// The ISO week (`YYYY-Www`) of the epoch milliseconds `ms`.
fn iso_week(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let thursday = days - (days + 3).rem_euclid(7) + 3;
    let year = |d: i64| {
        // The year of a day number (civil_from_days).
        let z = d + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        yoe + era * 400 + i64::from(mp >= 10)
    };
    let y = year(thursday);
    let jan1 = parse_ms(&format!("{y:04}-01-01T00:00:00.000Z")).div_euclid(86_400_000);
    format!("{y:04}-W{:02}", (thursday - jan1) / 7 + 1)
}

fn row<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no {key}={value} in {list}"))
}

fn eur(v: &Value) -> String {
    let a = v.as_array().expect("money list");
    assert_eq!(a.len(), 1, "{v}");
    assert_eq!(a[0]["currency"], "EUR");
    a[0]["amount"].as_str().unwrap().to_string()
}

/// The D1 database file of the server (the read models).
fn d1_file(server: &Server) -> std::path::PathBuf {
    object_files(server, "D1DatabaseObject")
        .into_iter()
        .next()
        .expect("the D1 database file")
}

#[test]
fn a_week_of_traffic_gives_exact_reports_and_books_each_receipt_once_in_qbo() {
    let qbo = StandIn::start();
    let vars = qbo.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = Server::start_with_vars(&vars);
    let api = server.api();
    seed_locations(&api);
    let (a, b, c) = (
        api.new_sku("store-1", 10),
        api.new_sku("store-1", 10),
        api.new_sku("store-1", 10),
    );
    let week = iso_week(parse_ms(&now_rfc3339()));

    // POS: two sales at the till, the second one sent twice.
    let s1 = pos_sale(
        &api,
        "rep-t1",
        1,
        &[(&a, 3, "10.00"), (&b, 1, "5.50")],
        ("card", "35.50"),
    );
    let s2 = unique("sale");
    let at = now_rfc3339();
    post_sale(
        &api,
        &s2,
        "rep-t1",
        2,
        &[(&a, 2, "10.00")],
        ("cash", "20.00"),
        &at,
    );
    let again = post_sale(
        &api,
        &s2,
        "rep-t1",
        2,
        &[(&a, 2, "10.00")],
        ("cash", "20.00"),
        &at,
    );
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    // Online: an order of 2 B, paid (catalog price 9.99, 8 % tax excluded).
    let o1 = unique("ord");
    let order = json!({"id": o1, "channel": "online", "lines": [{"sku": b, "qty": 2}],
        "fulfillment": {"type": "pickup", "location": "store-1"}});
    ok(
        api.write(
            "POST",
            "/v1/orders",
            STOREFRONT,
            &unique("k"),
            &order.to_string(),
        ),
        201,
    );
    ok(
        api.write(
            "POST",
            &format!("/v1/orders/{o1}/transitions"),
            ADMIN,
            &unique("k"),
            r#"{"to":"paid"}"#,
        ),
        200,
    );
    // A transfer of 2 B from store-1 to store-2, shipped (in transit).
    let tr = unique("tr");
    let t = json!({"id": tr, "from": "store-1", "to": "store-2", "lines": [{"sku": b, "qty": 2}]});
    ok(
        api.write("POST", "/v1/transfers", ADMIN, &unique("k"), &t.to_string()),
        201,
    );
    let shipped = api.write(
        "POST",
        &format!("/v1/transfers/{tr}/ship"),
        ADMIN,
        &unique("k"),
        "{}",
    );
    assert_eq!(shipped.status, 200, "{}", shipped.body);
    // A return of one A from the first sale, restocked and refunded.
    let r1 = unique("ret");
    let ret =
        json!({"id": r1, "sale_id": s1, "lines": [{"sku": a, "qty": 1, "reason": "too small"}]});
    ok(
        api.write("POST", "/v1/returns", POS1, &unique("k"), &ret.to_string()),
        201,
    );
    let rec =
        json!({"location": "store-1", "lines": [{"sku": a, "qty": 1, "condition": "restock"}]});
    let r = api.write(
        "POST",
        &format!("/v1/returns/{r1}/receive"),
        POS1,
        &unique("k"),
        &rec.to_string(),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    let refund = r#"{"amount":{"amount":"10.00","currency":"EUR"}}"#;
    let r = api.write(
        "POST",
        &format!("/v1/returns/{r1}/refund"),
        POS1,
        &unique("k"),
        refund,
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.body);
    // Adjustments of C, then C sold out at the till.
    for (delta, reason) in [(-2, "damaged"), (1, "found")] {
        let adj = json!({"location": "store-1", "sku": c, "delta": delta, "reason": reason});
        let r = api.write(
            "POST",
            "/v1/inventory/adjustments",
            ADMIN,
            &unique("k"),
            &adj.to_string(),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
    }
    let s3 = pos_sale(&api, "rep-t2", 1, &[(&c, 9, "2.00")], ("card", "18.00"));
    let sold_out_at = ledger(&api, &c)
        .iter()
        .rev()
        .find(|e| e["event"] == "sold")
        .map(|e| parse_ms(e["at"].as_str().unwrap()))
        .expect("the sale of C in the ledger");

    // The feed catches up (the tills' sales and the SKU objects' stock
    // events come from different sources, each forwarding at its own pace:
    // up to ~1.25 s after its last write); then every figure, computed here.
    let v = weekly_when(&api, &week, |v| {
        v["report"]["units_sold"] == 17 && v["report"]["on_hand_end"] == 13
    });
    let rep = &v["report"];
    assert!(v["as_of"].is_string(), "{v}");
    assert_eq!(rep["units_sold"], 17);
    assert_eq!(eur(&rep["revenue"]), "93.48"); // 30 + 5.50 + 20 + 18 + 19.98
    let pos = row(&rep["channels"], "channel", "pos");
    let online = row(&rep["channels"], "channel", "online");
    assert_eq!(
        (pos["units_sold"].clone(), online["units_sold"].clone()),
        (json!(15), json!(2))
    );
    assert_eq!(eur(&pos["revenue"]), "73.50");
    assert_eq!(eur(&online["revenue"]), "19.98");
    // On hand at week end at store-1: A 10-5+1, B 10-1-2 (the order is paid,
    // not shipped; 2 left on the transfer), C 0.
    assert_eq!(rep["on_hand_end"], 13);
    assert_eq!(rep["sell_through"], "0.5667"); // 17 / 30
    assert_eq!(pos["sell_through"], "0.5357"); // 15 / 28
    assert_eq!(online["sell_through"], "0.1333"); // 2 / 15
    let ra = row(&rep["returns"], "sku", &a);
    assert_eq!(
        (ra["units_sold"].clone(), ra["units_returned"].clone()),
        (json!(5), json!(1))
    );
    assert_eq!(ra["return_rate"], "0.2");
    assert_eq!(ra["reasons"]["too small"], 1);
    assert_eq!(row(&rep["returns"], "sku", &b)["return_rate"], "0");
    let damaged = row(&rep["adjustments"], "reason", "damaged");
    assert_eq!(
        (damaged["count"].clone(), damaged["units_out"].clone()),
        (json!(1), json!(2))
    );
    let found = row(&rep["adjustments"], "reason", "found");
    assert_eq!(
        (found["count"].clone(), found["net"].clone()),
        (json!(1), json!(1))
    );
    let top = rep["top_sellers"].as_array().unwrap();
    assert_eq!(top[0]["sku"], c.as_str());
    assert_eq!(top[0]["units"], 9);
    let built = parse_ms(v["built_at"].as_str().unwrap());
    let hours = (built - sold_out_at) as f64 / 3_600_000.0;
    let got: f64 = top[0]["stockout_hours"].as_str().unwrap().parse().unwrap();
    assert!(
        (got - hours).abs() <= 0.006,
        "C stockout {got} h, expected {hours}"
    );
    assert_eq!(row(&rep["top_sellers"], "sku", &a)["stockout_hours"], "0");

    // A one-SKU sale's event reached the feed once, from its SKU's object
    // (written with its stock change there); a sale of two SKUs, once, from
    // its till (written once both SKU objects had sold).
    let d1 = d1_file(&server);
    let source = |sale: &str| {
        sqlite(
            &d1,
            &format!(
                "SELECT source FROM events WHERE kind = 'sale'
                 AND json_extract(body, '$.sale_id') = '{sale}'"
            ),
        )
    };
    assert_eq!(source(&s2), format!("sku:{a}"));
    assert_eq!(source(&s1), "terminal:rep-t1");
    // Deliveries duplicated: every sale and snapshot row again under a new
    // seq, every stock row again under its own (ignored). Nothing changes.
    sqlite(
        &d1,
        "INSERT INTO events SELECT source, seq + 1000000, at, kind, location, sku, body
         FROM events WHERE kind IN ('sale', 'order', 'return');
         INSERT OR IGNORE INTO events SELECT * FROM events WHERE kind = 'stock';",
    );
    let again = weekly_when(&api, &week, |_| true);
    assert_eq!(again["report"]["channels"], rep["channels"]);
    assert_eq!(again["report"]["returns"], rep["returns"]);
    assert_eq!(again["report"]["adjustments"], rep["adjustments"]);
    assert_eq!(again["report"]["units_sold"], 17);

    // Only admin keys read reports; a bad week is a 400.
    api.get(&format!("/v1/reports/weekly?week={week}"), POS1)
        .assert_problem(403, "forbidden");
    api.get("/v1/reports/weekly?week=2026-W54", ADMIN)
        .assert_problem(400, "invalid_request");
    // A stored build answers the same figures (what the Monday run keeps).
    let body = json!({"week": week, "location": "store-1"}).to_string();
    let built = ok(
        api.write("POST", "/v1/reports/weekly/build", ADMIN, "build-1", &body),
        201,
    );
    assert_eq!(built["source"], "stored");
    let replay = api.write("POST", "/v1/reports/weekly/build", ADMIN, "build-1", &body);
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    let stored = weekly_when(&api, &week, |_| true);
    assert_eq!(stored["source"], "stored");
    assert_eq!(stored["report"]["channels"], rep["channels"]);

    // CSV parses back to the same figures.
    let csv = api.request(
        "GET",
        &format!("/v1/reports/weekly?week={week}&location=store-1"),
        &[
            ("Authorization", "Bearer sk_dev_admin"),
            ("Accept", "text/csv"),
        ],
        None,
    );
    assert_eq!(csv.status, 200, "{}", csv.body);
    let mut figures = BTreeMap::new();
    for l in csv.body.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 5, "{l}");
        figures.insert(
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
            ),
            f[4].to_string(),
        );
    }
    let fig = |s: &str, k: &str, sub: &str, m: &str| {
        figures
            .get(&(s.to_string(), k.to_string(), sub.to_string(), m.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("no {s},{k},{sub},{m} in the CSV"))
    };
    assert_eq!(fig("total", "", "", "units_sold"), "17");
    assert_eq!(fig("total", "", "", "revenue"), "93.48 EUR");
    assert_eq!(fig("channel", "pos", "", "units_sold"), "15");
    assert_eq!(fig("channel", "online", "", "revenue"), "19.98 EUR");
    assert_eq!(fig("returns", &a, "", "return_rate"), "0.2");
    assert_eq!(fig("returns", &a, "too small", "units"), "1");
    assert_eq!(fig("adjustments", "damaged", "", "units_out"), "2");

    // Accounting: the day's receipts; their net equals the report's revenue.
    let today = &now_rfc3339()[..10];
    let ex = ok(
        api.get(
            &format!("/v1/accounting/export?date={today}&format=qbo"),
            ADMIN,
        ),
        200,
    );
    let sales = ex["SalesReceipt"].as_array().unwrap();
    let refunds = ex["RefundReceipt"].as_array().unwrap();
    assert_eq!((sales.len(), refunds.len()), (4, 1), "{ex}");
    for e in sales.iter().chain(refunds) {
        check_shape("export", e).unwrap_or_else(|w| panic!("{w}: {e}"));
    }
    let t = &ex["totals"][0];
    assert_eq!(t["sales_net"], "93.48");
    // Tax as recorded at sale time (wrangler.toml: 8 % excluded): the POS
    // sales' 30.00, 5.50, 20.00 and 18.00 carry 2.40, 0.44, 1.60 and 1.44,
    // the order 1.60.
    assert_eq!(t["sales_tax"], "7.48");
    assert_eq!(t["sales_total"], "100.96");
    let first = sales
        .iter()
        .find(|e| e["DocNumber"] == s1.as_str())
        .expect("the first sale's receipt");
    assert_eq!(cents(&first["TotalAmt"]), 3834);
    assert_eq!(cents(&first["TxnTaxDetail"]["TotalTax"]), 284);
    assert_eq!(first["GlobalTaxCalculation"], "TaxExcluded");
    assert_eq!(t["refunds_total"], "10.00");
    let o = sales
        .iter()
        .find(|e| e["DocNumber"] == o1.as_str())
        .expect("the order's receipt");
    assert_eq!(cents(&o["TotalAmt"]), 2158);
    assert_eq!(cents(&o["TxnTaxDetail"]["TotalTax"]), 160);
    let csv = api.get(
        &format!("/v1/accounting/export?date={today}&format=csv"),
        ADMIN,
    );
    assert_eq!(csv.status, 200);
    let net: i64 = csv
        .body
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("SalesReceipt"))
        .map(|l| (l.split(',').nth(9).unwrap().parse::<f64>().unwrap() * 100.0).round() as i64)
        .sum();
    assert_eq!(net, 9348);

    // QBO: the third sale is rejected; the first post gets a 429; the
    // refund's post is held while the server is killed.
    *qbo.reject_doc.lock().unwrap() = s3.clone();
    *qbo.hang_refund.lock().unwrap() = true;
    let url = server.url();
    let date = today.to_string();
    let first = thread::spawn(move || {
        let api = Api::new(&url);
        api.try_write(
            "POST",
            "/v1/accounting/sync",
            ADMIN,
            "sync-1",
            &json!({"date": date}).to_string(),
        )
        .map(|r| r.status)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !qbo.seen.lock().unwrap().hang_started {
        assert!(
            Instant::now() < deadline,
            "the sync never reached the refund"
        );
        thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    let _ = first.join();
    server.start_again();
    let api = server.api();
    let run = ok(
        api.write(
            "POST",
            "/v1/accounting/sync",
            ADMIN,
            "sync-2",
            &json!({"date": today}).to_string(),
        ),
        200,
    );
    assert_eq!(run["configured"], true);
    let st = ok(
        api.get(&format!("/v1/accounting/sync?date={today}"), ADMIN),
        200,
    );
    assert_eq!(st["counts"]["synced"], 4, "{st}");
    assert_eq!(st["counts"]["rejected"], 1, "{st}");
    let rejected = row(&st["receipts"], "status", "rejected");
    assert_eq!(rejected["doc"], format!("S:{s3}"));
    assert!(rejected["error"]
        .as_str()
        .unwrap()
        .contains("Invalid Reference Id"));
    // A third run books nothing new.
    let run = ok(
        api.write(
            "POST",
            "/v1/accounting/sync",
            ADMIN,
            "sync-3",
            &json!({"date": today}).to_string(),
        ),
        200,
    );
    assert_eq!(
        (run["synced"].clone(), run["already_synced"].clone()),
        (json!(0), json!(4))
    );
    let seen = qbo.seen.lock().unwrap();
    assert!(seen.shape_errors.is_empty(), "{:?}", seen.shape_errors);
    assert!(seen.too_many_sent);
    // Each receipt booked once: 4 requestids, the refund's sent twice.
    assert_eq!(seen.booked.len(), 4, "{:?}", seen.booked);
    assert_eq!(seen.duplicates, 1);
    let docs: Vec<&str> = seen.booked.values().map(|(_, d, _)| d.as_str()).collect();
    assert!(
        docs.contains(&o1.as_str()) && docs.contains(&s1.as_str()) && docs.contains(&s2.as_str())
    );
    // The refresh token rotated by the token endpoint was used next time.
    assert_eq!(
        seen.refresh_tokens.first().map(String::as_str),
        Some("rt-1")
    );
    assert_eq!(seen.refresh_tokens.last().map(String::as_str), Some("rt-2"));
}

/// Polls `q` (an integer) on `db` until it is `want`, for at most 30 s.
fn sqlite_until(db: &std::path::Path, q: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sqlite_i64(db, q);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: {got}, waited for {want}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// A SKU object's feed is its event log (each row carries its feed body):
/// a stock write is its event row and its answer, no outbox row. Its log
/// row `s` is D1 seq `base + 2s` of its source. An object of the version
/// before fed through its outbox: after the upgrade, what that outbox still
/// held is forwarded, the events it fed are not fed again, and the new
/// events continue its numbering.
#[test]
fn a_sku_object_feeds_its_log_and_continues_the_outbox_of_the_version_before() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 10);
    api.receive(&sku, "store-1", 5);
    let skus = object_files(&server, "SkuStock");
    assert_eq!(skus.len(), 1, "SkuStock files: {skus:?}");
    let db = skus[0].clone();
    let d1 = d1_file(&server);
    let rows = |cond: &str| {
        format!("SELECT count(*) FROM events WHERE source = 'sku:{sku}' AND kind = 'stock' {cond}")
    };
    // Every event fed once, at seq 2s; no outbox row written.
    let m = sqlite_i64(&db, "SELECT max(seq) FROM events");
    assert!(m >= 2, "{m} events");
    sqlite_until(&d1, &rows(""), m);
    assert_eq!(
        sqlite(&d1, &format!("SELECT group_concat(seq) FROM (SELECT seq FROM events WHERE source = 'sku:{sku}' ORDER BY seq)")),
        (1..=m).map(|s| (2 * s).to_string()).collect::<Vec<_>>().join(",")
    );
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM feed_out"), 0);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM events WHERE positions IS NULL"),
        0
    );
    // Its name is kept, for an instance its alarm wakes (which has none).
    assert_eq!(sqlite(&db, "SELECT name FROM object_name"), sku);
    // The outbox's cursor follows the log's seqs (a rolled-back version
    // numbers its outbox rows after them).
    sqlite_until(&db, "SELECT through FROM feed_cursor WHERE id = 0", 2 * m);

    // Make it an object of the version before: no log cursor, no feed
    // bodies, an outbox forwarded through seq f and one row still in it.
    server.stop();
    let f = 2 * m + 99;
    sqlite(
        &db,
        &format!(
            "INSERT INTO feed_out (seq, at, kind, location, sku, body)
               SELECT {f} + 1, at, 'stock', location, '{sku}', json FROM events WHERE seq = {m};
             INSERT OR REPLACE INTO feed_cursor (id, through, failures) VALUES (0, {f}, 0);
             UPDATE events SET positions = NULL;
             DROP TABLE feed_log;
             DELETE FROM schema_version;"
        ),
    );
    server.start_again();
    let api = server.api();
    api.receive(&sku, "store-1", 1);
    // The outbox's row, then the new event after it; nothing fed twice.
    sqlite_until(&d1, &rows(""), m + 2);
    assert_eq!(sqlite_i64(&d1, &rows(&format!("AND seq = {f} + 1"))), 1);
    assert_eq!(sqlite_i64(&d1, &rows(&format!("AND seq = {f} + 3"))), 1);
    assert_eq!(
        sqlite_i64(
            &d1,
            &format!("SELECT through_seq FROM feed_sources WHERE source = 'sku:{sku}'")
        ),
        f + 3
    );
    sqlite_until(&db, "SELECT count(*) FROM feed_out", 0);
    assert_eq!(
        api.available(&sku, "store-1"),
        16,
        "the stock is the log's, whatever its feed"
    );
}

/// An instance the runtime wakes for its alarm has no name (`ctx.id.name`
/// is unset), and the feed's source is made of it: a till's sale of two
/// SKUs, forwarded by its alarm after a SIGKILL and a restart (nothing
/// else wakes the till), reaches D1 under `terminal:<id>` and its stock
/// events under `sku:<SKU>`, from the names the objects kept. (The build
/// before forwarded them as `terminal:` and `sku:?`, where every till's
/// and every SKU's seqs collide.)
#[test]
fn an_object_woken_by_its_alarm_feeds_under_its_own_name() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let (a, b) = (api.new_sku("store-1", 5), api.new_sku("store-1", 5));
    let till = unique("till");
    // Let the stock events of the seeding go first.
    thread::sleep(Duration::from_millis(1_500));
    let sale = pos_sale(
        &api,
        &till,
        1,
        &[(&a, 1, "2.00"), (&b, 1, "3.00")],
        ("cash", "5.00"),
    );
    // The till forwards its sale event from its alarm, 250 ms after the
    // sale: kill the server before that.
    server.kill9();
    server.start_again();
    let d1 = d1_file(&server);
    let q = format!(
        "SELECT count(*) FROM events WHERE kind = 'sale' AND json_extract(body, '$.sale_id') = '{sale}'"
    );
    sqlite_until(&d1, &q, 1);
    assert_eq!(
        sqlite(
            &d1,
            &format!(
                "SELECT source FROM events WHERE kind = 'sale'
                 AND json_extract(body, '$.sale_id') = '{sale}'"
            )
        ),
        format!("terminal:{till}")
    );
    // Both SKUs' sold events too, each under its SKU.
    for s in [&a, &b] {
        sqlite_until(
            &d1,
            &format!(
                "SELECT count(*) FROM events WHERE source = 'sku:{s}'
                 AND json_extract(body, '$.event.type') = 'sold'"
            ),
            1,
        );
    }
    assert_eq!(
        sqlite_i64(
            &d1,
            "SELECT count(*) FROM events WHERE source IN ('terminal:', 'sku:?', 'sku:')"
        ),
        0
    );
}
