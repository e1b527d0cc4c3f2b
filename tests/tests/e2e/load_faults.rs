//! Faults under load (issue 12): a sustained mixed load (receipts, POS sales
//! sent twice, offline batches, orders through their states, returns,
//! transfers, carts) while `wrangler dev` is killed with SIGKILL several times
//! and restarted on the same state. Every request is resent with the same
//! Idempotency-Key (and sale id) until it is answered, so every operation
//! completes; afterwards the test checks, per SKU and location, that the
//! object's on_hand equals what the client's acknowledged operations imply and
//! what the ledger sums to, that every sale, shipment, return and transfer is
//! in the ledger exactly once, and that no hold outlives its TTL.
//!
//! `FAULTS_SECONDS` (default 60) and `FAULTS_KILLS` (default 3) size the run;
//! `make faults` runs a longer one. The figures are printed at the end
//! (`--nocapture`) and go into docs/reliability.md.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// The hold TTL of a cart (core's minimum).
const CART_TTL_S: u64 = 30;
/// How long one request may stay unanswered (down time included).
const GIVE_UP: Duration = Duration::from_secs(180);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    answered: AtomicU64,
    unanswered: AtomicU64,
    overloaded: AtomicU64,
    operations: AtomicU64,
}

/// What the client knows once every operation completed.
#[derive(Default)]
struct Model {
    /// (sku, location) -> expected on_hand change.
    on_hand: BTreeMap<(String, String), i64>,
    sales: Vec<String>,
    /// Orders shipped (their holds are fulfilled once per line).
    shipped: Vec<String>,
    cancelled: Vec<String>,
    returns: Vec<String>,
    transfers: Vec<String>,
    receipts: u64,
    /// (cart id, when it was acknowledged, released by the client).
    carts: Vec<(String, Instant, bool)>,
    /// Answers of 5xx other than 503 (the server must never give one).
    server_errors: Vec<String>,
}

impl Model {
    fn add(&mut self, sku: &str, location: &str, d: i64) {
        *self
            .on_hand
            .entry((sku.to_string(), location.to_string()))
            .or_default() += d;
    }
}

struct Load {
    base: RwLock<String>,
    stats: Stats,
    model: Mutex<Model>,
    s1: String,
    s2: String,
    w: String,
}

impl Load {
    /// Sends until answered with a status below 500 (a transport error or a
    /// 503 is resent as it was, same Idempotency-Key and body).
    fn call(&self, method: &str, path: &str, key: &str, idem: &str, body: Option<&str>) -> Resp {
        let start = Instant::now();
        loop {
            let base = self.base.read().unwrap().clone();
            let api = Api::new(&base);
            let auth = format!("Bearer {key}");
            let mut headers = vec![("Authorization", auth.as_str()), ("Idempotency-Key", idem)];
            if body.is_some() {
                headers.push(("Content-Type", "application/json"));
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match api.try_request(method, path, &headers, body.map(str::as_bytes)) {
                Ok(r) if r.status < 500 => {
                    self.stats.answered.fetch_add(1, Ordering::Relaxed);
                    return r;
                }
                Ok(r) => {
                    if r.status == 503 {
                        self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.model
                            .lock()
                            .unwrap()
                            .server_errors
                            .push(format!("{method} {path}: {} {}", r.status, r.body));
                    }
                }
                Err(_) => {
                    self.stats.unanswered.fetch_add(1, Ordering::Relaxed);
                }
            }
            assert!(
                start.elapsed() < GIVE_UP,
                "{method} {path} unanswered for {GIVE_UP:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// A write that must succeed with one of `ok` once answered.
    fn must(&self, method: &str, path: &str, key: &str, body: Option<&str>, ok: &[u16]) -> Value {
        let idem = unique("fk");
        let r = self.call(method, path, key, &idem, body);
        assert!(
            ok.contains(&r.status),
            "{method} {path} {body:?}: {} {}",
            r.status,
            r.body
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        }
    }

    fn receipt(&self) {
        let body = format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{}","qty":2}}]}}"#,
            self.s1
        );
        self.must("POST", "/v1/inventory/receipts", ADMIN, Some(&body), &[200]);
        let mut m = self.model.lock().unwrap();
        m.add(&self.s1, "store-1", 2);
        m.receipts += 1;
    }

    fn sale_body(&self, sale: &str, terminal: &str, seq: u64, sku: &str) -> String {
        format!(
            r#"{{"sale_id":"{sale}","terminal_id":"{terminal}","device_seq":{seq},"location":"store-1","occurred_at":"2026-01-02T10:00:00Z","lines":[{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}]}}"#
        )
    }

    /// A sale sent twice (the till did not see the first answer), then for
    /// every other one a return of it, received back into stock.
    fn sale_and_return(&self, terminal: &str, seq: &mut u64, with_return: bool) {
        let sale = unique("fsale");
        *seq += 1;
        let body = self.sale_body(&sale, terminal, *seq, &self.s2);
        let first = self.must("POST", "/v1/pos/sales", POS1, Some(&body), &[201]);
        let again = self.must("POST", "/v1/pos/sales", POS1, Some(&body), &[201]);
        assert_eq!(first, again, "a duplicate sale answers the first answer");
        {
            let mut m = self.model.lock().unwrap();
            m.add(&self.s2, "store-1", -1);
            m.sales.push(sale.clone());
        }
        if !with_return {
            return;
        }
        let id = unique("fret");
        let body = format!(
            r#"{{"id":"{id}","sale_id":"{sale}","lines":[{{"sku":"{}","qty":1,"reason":"load"}}]}}"#,
            self.s2
        );
        self.must("POST", "/v1/returns", POS1, Some(&body), &[200, 201]);
        let body = format!(
            r#"{{"location":"store-1","lines":[{{"sku":"{}","qty":1,"condition":"restock"}}]}}"#,
            self.s2
        );
        let path = format!("/v1/returns/{id}/receive");
        self.must("POST", &path, POS1, Some(&body), &[200]);
        let mut m = self.model.lock().unwrap();
        m.add(&self.s2, "store-1", 1);
        m.returns.push(id);
    }

    /// An offline queue of three sales uploaded as one batch.
    fn batch(&self, terminal: &str, seq: &mut u64) {
        let ids: Vec<String> = (0..3).map(|_| unique("fbatch")).collect();
        let sales: Vec<String> = ids
            .iter()
            .map(|id| {
                *seq += 1;
                self.sale_body(id, terminal, *seq, &self.s1)
            })
            .collect();
        let body = format!(r#"{{"sales":[{}]}}"#, sales.join(","));
        let v = self.must("POST", "/v1/pos/sales/batch", POS1, Some(&body), &[200]);
        let results = v["results"].as_array().cloned().unwrap_or_default();
        assert_eq!(results.len(), 3, "{v}");
        for r in &results {
            let s = r["status"].as_u64().unwrap_or(0);
            assert!(s == 200 || s == 201, "{r}");
        }
        let mut m = self.model.lock().unwrap();
        m.add(&self.s1, "store-1", -3);
        m.sales.extend(ids);
    }

    /// An order from new to shipped, or to cancelled after paid.
    fn order(&self, cancel: bool) {
        let id = unique("ford");
        let body = format!(
            r#"{{"id":"{id}","customer_id":"cust-load","lines":[{{"sku":"{}","qty":1}},{{"sku":"{}","qty":1}}],"fulfillment":{{"type":"ship","location":"store-1"}}}}"#,
            self.s1, self.s2
        );
        self.must("POST", "/v1/orders", ADMIN, Some(&body), &[200, 201]);
        let path = format!("/v1/orders/{id}/transitions");
        let steps: &[&str] = if cancel {
            &["paid", "cancelled"]
        } else {
            &["paid", "ready_to_pick", "packed", "shipped"]
        };
        for to in steps {
            let body = format!(r#"{{"to":"{to}"}}"#);
            let v = self.must("POST", &path, ADMIN, Some(&body), &[200]);
            assert_eq!(v["status"], *to, "{v}");
        }
        let mut m = self.model.lock().unwrap();
        if cancel {
            m.cancelled.push(id);
        } else {
            m.add(&self.s1, "store-1", -1);
            m.add(&self.s2, "store-1", -1);
            m.shipped.push(id);
        }
    }

    /// Two units from the warehouse to store-2: requested, shipped, received.
    fn transfer(&self) {
        let id = unique("ftr");
        let body = format!(
            r#"{{"id":"{id}","from":"warehouse-1","to":"store-2","lines":[{{"sku":"{}","qty":2}}],"note":"load"}}"#,
            self.w
        );
        self.must("POST", "/v1/transfers", ADMIN, Some(&body), &[200, 201]);
        self.must(
            "POST",
            &format!("/v1/transfers/{id}/ship"),
            ADMIN,
            Some("{}"),
            &[200],
        );
        let body = format!(
            r#"{{"lines":[{{"sku":"{}","qty":2}}],"close":true}}"#,
            self.w
        );
        let v = self.must(
            "POST",
            &format!("/v1/transfers/{id}/receive"),
            ADMIN,
            Some(&body),
            &[200],
        );
        assert_eq!(v["status"], "received", "{v}");
        let mut m = self.model.lock().unwrap();
        m.add(&self.w, "warehouse-1", -2);
        m.add(&self.w, "store-2", 2);
        m.transfers.push(id);
    }

    /// A cart holding one of each store SKU; every other one released.
    fn cart(&self, release: bool) {
        let id = unique("fcart");
        let body = format!(
            r#"{{"id":"{id}","lines":[{{"sku":"{}","qty":1}},{{"sku":"{}","qty":1}}],"fulfillment":{{"type":"pickup","location":"store-1"}},"ttl_seconds":{CART_TTL_S}}}"#,
            self.s1, self.s2
        );
        self.must("POST", "/v1/reservations", STOREFRONT, Some(&body), &[201]);
        let at = Instant::now();
        if release {
            let path = format!("/v1/reservations/{id}");
            self.must("DELETE", &path, STOREFRONT, None, &[200, 204]);
        }
        self.model.lock().unwrap().carts.push((id, at, release));
    }
}

/// on_hand per location implied by a SKU's ledger.
fn ledger_on_hand(entries: &[Value]) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for e in entries {
        let d = &e["details"];
        let qty = d["qty"].as_i64().unwrap_or(0);
        let at = |k: &str| d[k].as_str().unwrap_or("").to_string();
        let (loc, delta) = match e["event"].as_str().unwrap_or("") {
            "received" => (at("location"), qty),
            "adjusted" => (at("location"), d["delta"].as_i64().unwrap_or(0)),
            "sold" if d["absorbed_by_count"] != true => (at("location"), -qty),
            "fulfilled" => (at("location"), -qty),
            "return_received" if d["condition"] != "return_to_vendor" => (at("location"), qty),
            "transfer_shipped" => (at("from"), -qty),
            "transfer_received" => (at("location"), qty),
            _ => continue,
        };
        *out.entry(loc).or_default() += delta;
    }
    out
}

/// How many ledger entries of `event` carry each value of `details[field]`.
fn tally(entries: &[Value], event: &str, field: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e["event"] == event) {
        let k = match &e["details"][field] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

fn strong(api: &Api, sku: &str, location: &str) -> Value {
    let r = api.get(
        &format!("/v1/availability?sku={sku}&location={location}&consistency=strong"),
        ADMIN,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["items"][0].clone()
}

#[test]
fn sustained_mixed_load_with_sigkills_loses_nothing_and_applies_everything_once() {
    let seconds = env_u64("FAULTS_SECONDS", 60).max(20);
    let kills = env_u64("FAULTS_KILLS", 3).max(1);
    let threads = env_u64("FAULTS_THREADS", 4).clamp(1, 32);
    let started = Instant::now();
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    const START: i64 = 100_000;
    let s1 = api.new_sku("store-1", START);
    let s2 = api.new_sku("store-1", START);
    let w = api.new_sku("warehouse-1", START);
    let load = Arc::new(Load {
        base: RwLock::new(server.url()),
        stats: Stats::default(),
        model: Mutex::new(Model::default()),
        s1: s1.clone(),
        s2: s2.clone(),
        w: w.clone(),
    });
    {
        let mut m = load.model.lock().unwrap();
        m.add(&s1, "store-1", START);
        m.add(&s2, "store-1", START);
        m.add(&w, "warehouse-1", START);
        m.add(&w, "store-2", 0);
    }
    let run = Duration::from_secs(seconds);
    // Carts stop early enough for the last one to expire before the checks.
    let carts_until = run.saturating_sub(Duration::from_secs(CART_TTL_S + 5));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (load, stop) = (load.clone(), stop.clone());
            thread::spawn(move || {
                let terminal = unique(&format!("fterm{t}"));
                let mut seq = 0u64;
                let mut i = t as usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    match i % 7 {
                        0 => load.receipt(),
                        1 => load.sale_and_return(&terminal, &mut seq, i.is_multiple_of(2)),
                        2 => load.batch(&terminal, &mut seq),
                        3 => load.order(i.is_multiple_of(3)),
                        4 => load.transfer(),
                        5 if t0.elapsed() < carts_until => load.cart(i.is_multiple_of(2)),
                        _ => load.sale_and_return(&terminal, &mut seq, false),
                    }
                    load.stats.operations.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Kills spread over the run; each restart is on the same state.
    let mut down = Duration::ZERO;
    for k in 1..=kills {
        let at = run * k as u32 / (kills as u32 + 1);
        if let Some(wait) = at.checked_sub(t0.elapsed()) {
            thread::sleep(wait);
        }
        server.kill9();
        let d = Instant::now();
        thread::sleep(Duration::from_millis(300));
        server.start_again();
        down += d.elapsed();
        *load.base.write().unwrap() = server.url();
    }
    if let Some(wait) = run.checked_sub(t0.elapsed()) {
        thread::sleep(wait);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("a load thread failed");
    }
    let load_time = t0.elapsed();

    // Every cart's TTL has passed (plus a margin) before the checks.
    let last_cart = load.model.lock().unwrap().carts.iter().map(|c| c.1).max();
    if let Some(last) = last_cart {
        let until = last + Duration::from_secs(CART_TTL_S + 5);
        if let Some(wait) = until.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }

    let api = server.api();
    let m = load.model.lock().unwrap();
    assert!(
        m.server_errors.is_empty(),
        "5xx other than 503: {:#?}",
        m.server_errors
    );
    let mut violations = 0usize;
    let mut report = Vec::new();
    let mut ledgers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for sku in [&s1, &s2, &w] {
        ledgers.insert(sku.clone(), ledger(&api, sku));
    }
    for ((sku, loc), expected) in &m.on_hand {
        let row = strong(&api, sku, loc);
        let on_hand = row["on_hand"].as_i64().unwrap_or(i64::MIN);
        let from_ledger = ledger_on_hand(&ledgers[sku]).get(loc).copied().unwrap_or(0);
        let (reserved, committed) = (row["reserved"].as_i64(), row["committed"].as_i64());
        if on_hand != *expected
            || from_ledger != *expected
            || reserved != Some(0)
            || committed != Some(0)
        {
            violations += 1;
            report.push(format!(
                "{sku}@{loc}: expected on_hand {expected}, object {row}, ledger {from_ledger}"
            ));
        }
    }
    // Exactly once: every sale sold once, each shipped order's two lines
    // fulfilled once, each return received once, each transfer shipped and
    // received once.
    let mut sold = tally(&ledgers[&s1], "sold", "sale");
    for (k, n) in tally(&ledgers[&s2], "sold", "sale") {
        *sold.entry(k).or_insert(0) += n;
    }
    let sales: BTreeSet<&String> = m.sales.iter().collect();
    assert_eq!(sales.len(), m.sales.len(), "sale ids are unique");
    for s in &m.sales {
        if sold.get(s) != Some(&1) {
            violations += 1;
            report.push(format!("sale {s} sold {:?} times", sold.get(s)));
        }
    }
    if sold.len() != m.sales.len() {
        violations += 1;
        report.push(format!(
            "{} sales in the ledger, {} sent",
            sold.len(),
            m.sales.len()
        ));
    }
    for sku in [&s1, &s2] {
        let fulfilled = tally(&ledgers[sku], "fulfilled", "hold");
        let n: usize = fulfilled.values().sum();
        if n != m.shipped.len() || fulfilled.values().any(|&c| c != 1) {
            violations += 1;
            report.push(format!("{sku}: {n} fulfilled, {} shipped", m.shipped.len()));
        }
    }
    let returned = ledgers[&s2]
        .iter()
        .filter(|e| e["event"] == "return_received")
        .count();
    if returned != m.returns.len() {
        violations += 1;
        report.push(format!("{returned} returns received, {}", m.returns.len()));
    }
    for ev in ["transfer_shipped", "transfer_received"] {
        let t = tally(&ledgers[&w], ev, "transfer");
        let ok = m.transfers.iter().all(|id| t.get(id) == Some(&1));
        if !ok || t.len() != m.transfers.len() {
            violations += 1;
            report.push(format!("{ev}: {t:?}"));
        }
    }
    let received = ledgers[&s1]
        .iter()
        .filter(|e| e["event"] == "received")
        .count() as u64;
    if received != m.receipts + 1 {
        violations += 1;
        report.push(format!(
            "{received} receipts in the ledger, {}+1 sent",
            m.receipts
        ));
    }
    // No hold outlives its TTL: every cart is released or expired.
    for (id, _, released) in &m.carts {
        let r = api.get(&format!("/v1/reservations/{id}"), STOREFRONT);
        let status = if r.status == 200 {
            r.json()["status"].as_str().unwrap_or("").to_string()
        } else {
            format!("HTTP {}", r.status)
        };
        let want = if *released { "released" } else { "expired" };
        if status != want {
            violations += 1;
            report.push(format!("cart {id}: {status}, expected {want}"));
        }
    }
    let s = &load.stats;
    eprintln!(
        "faults under load: {seconds} s of load ({:.1} s measured) by {threads} threads, \
         {kills} SIGKILLs ({:.1} s down in all); {} operations ({} sales, {} orders shipped, \
         {} cancelled, {} returns, {} transfers, {} receipts, {} carts); {} requests, {} \
         answered, {} unanswered and resent, {} 503 resent; violations: {violations}; \
         {:.0} s in all",
        load_time.as_secs_f64(),
        down.as_secs_f64(),
        s.operations.load(Ordering::Relaxed),
        m.sales.len(),
        m.shipped.len(),
        m.cancelled.len(),
        m.returns.len(),
        m.transfers.len(),
        m.receipts,
        m.carts.len(),
        s.requests.load(Ordering::Relaxed),
        s.answered.load(Ordering::Relaxed),
        s.unanswered.load(Ordering::Relaxed),
        s.overloaded.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(violations, 0, "violations:\n{}", report.join("\n"));
    assert!(
        s.operations.load(Ordering::Relaxed) >= 7 * threads,
        "too little load to prove anything"
    );
    assert!(
        s.unanswered.load(Ordering::Relaxed) > 0,
        "no kill hit a request"
    );
}
