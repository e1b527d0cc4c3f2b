//! The event feed (issue 10): every producing object (SkuStock, Terminal,
//! Order, ReturnCase) writes its new events into an outbox table of its own
//! SQLite (`feed_out`), in the same transaction as the change, and forwards
//! them to D1's `events` table (binding `DB`, `migrations/0003_events.sql`)
//! after answering, from its alarm: [`LINGER_MS`] after the first event
//! since the last forward, and no sooner than [`MIN_INTERVAL_MS`] after the
//! last forward (so one D1 batch carries every event written in between, and
//! a busy producer sends one a second), and on failure again after `RETRY_MS`, doubled per failed
//! attempt up to `MAX_RETRY_MS`. A forward is `INSERT OR IGNORE` keyed by `(source,
//! seq)`, so a duplicate delivery changes nothing; rows leave the outbox
//! only after D1 acknowledged them, in seq order, so events reach D1 at
//! least once and in order per source. The write path never waits on D1.
//!
//! A one-SKU POS sale's event is written by its SkuStock, in the sale's
//! transaction there ([`sale_event`]; a sale of several SKUs', or one no SKU
//! object took, by the Terminal), so a till that sells now and then adds no
//! D1 batch of its own per sale.
//!
//! Read models (reports, accounting) read `events`; their `as_of` comes
//! from `feed_sources` (see [`as_of`]).
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{D1Database, Env, SqlStorage, Storage};

use crate::http::Problem;
use crate::objects::storage::{self, int, opt_text, text, Stmt};

/// Rows forwarded per D1 batch, and batches per forward.
pub const BATCH: i64 = 100;
pub const MAX_BATCHES: usize = 10;
/// A producer forwards from its alarm, this long after the first event
/// since its last forward: the events written in between go in the same
/// D1 batch, so a busy object forwards a few times a second, not once per
/// write, and the write path never waits on D1.
pub const LINGER_MS: i64 = 250;
/// A producer forwards at most once per this long (while it keeps writing,
/// a forward waits until this long after the last one), so a busy SKU or
/// till sends one D1 batch a second, not one per linger or per write.
pub const MIN_INTERVAL_MS: i64 = 1_000;

/// When a producer that wrote at `now` forwards: [`LINGER_MS`] later, and not
/// before [`MIN_INTERVAL_MS`] after its last forward (`last`, if it knows).
pub fn due(now: i64, last: Option<i64>) -> i64 {
    let after_last = last.map_or(i64::MIN, |t| t.saturating_add(MIN_INTERVAL_MS));
    (now + LINGER_MS).max(after_last)
}

/// A failed forward is retried by the alarm after this long, doubled per
/// consecutive failure up to [`MAX_RETRY_MS`].
pub const RETRY_MS: i64 = 2_000;
pub const MAX_RETRY_MS: i64 = 60_000;
/// Largest body of one event (JSON text): far above the largest order or
/// return snapshot the API's limits allow (100 lines, bounded history).
pub const MAX_BODY: usize = 512 * 1024;

/// The outbox of a producing object, and its cursor.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS feed_out (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,
     kind TEXT NOT NULL, location TEXT, sku TEXT, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feed_cursor (id INTEGER PRIMARY KEY CHECK (id = 0),
     through INTEGER NOT NULL, failures INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feed_last (id INTEGER PRIMARY KEY CHECK (id = 0),
     body TEXT NOT NULL)",
];

/// The seq is explicit: one past the last row and the cursor, so a seq is
/// never reused after forwarded rows were deleted.
const OUTBOX_WRITE: &str = "INSERT INTO feed_out (seq, at, kind, location, sku, body)
    VALUES (max(coalesce((SELECT max(seq) FROM feed_out), 0),
                coalesce((SELECT through FROM feed_cursor WHERE id = 0), 0)) + 1,
            ?, ?, ?, ?, ?)";

/// One event as forwarded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub location: Option<String>,
    pub sku: Option<String>,
    pub body: String,
}

#[derive(Deserialize)]
struct CursorRow {
    through: i64,
    failures: i64,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
    oldest: Option<i64>,
}

/// Creates the outbox tables (idempotent). Every producing object runs it
/// with its own schema, once per instance (its `ensure_schema`): the other
/// functions here that read or write the outbox expect the tables to exist,
/// rather than running these statements again on every write and forward.
pub fn ensure(sql: &SqlStorage) -> Result<(), Problem> {
    for q in SCHEMA {
        storage::exec(sql, q, Vec::new())?;
    }
    Ok(())
}

/// The statement that puts one event in the outbox (add it to the
/// transaction of the change). `body` is the event's JSON.
pub fn outbox(
    at: i64,
    kind: &str,
    location: Option<&str>,
    sku: Option<&str>,
    body: &str,
) -> Result<Stmt, Problem> {
    if body.len() > MAX_BODY {
        return Err(Problem::invalid("feed event too large"));
    }
    Ok((
        OUTBOX_WRITE,
        vec![
            int(at),
            text(kind),
            opt_text(location),
            opt_text(sku),
            text(body),
        ],
    ))
}

/// Puts a snapshot of a coordinator (an order, a return) in the outbox
/// unless the last one written is the same; `Ok(true)` when written.
/// The outbox tables exist ([`ensure`]).
pub fn snapshot(sql: &SqlStorage, at: i64, kind: &str, body: &str) -> Result<bool, Problem> {
    #[derive(Deserialize)]
    struct Last {
        body: String,
    }
    let last: Vec<Last> = storage::query(
        sql,
        "SELECT body FROM feed_out ORDER BY seq DESC LIMIT 1",
        vec![],
    )?;
    let last_fed: Vec<Last> =
        storage::query(sql, "SELECT body FROM feed_last WHERE id = 0", vec![])?;
    let same = match last.first() {
        Some(l) => l.body == body,
        None => last_fed.first().is_some_and(|l| l.body == body),
    };
    if same {
        return Ok(false);
    }
    let (q, b) = outbox(at, kind, None, None, body)?;
    storage::exec(sql, q, b)?;
    Ok(true)
}

/// Whether the outbox holds a row not yet forwarded (one indexed lookup:
/// forwarded rows are deleted), for an instance that starts without knowing.
pub fn pending(sql: &SqlStorage) -> Result<bool, Problem> {
    #[derive(Deserialize)]
    struct One {
        #[allow(dead_code)]
        n: i64,
    }
    let rows: Vec<One> = storage::query(sql, "SELECT 1 AS n FROM feed_out LIMIT 1", vec![])?;
    Ok(!rows.is_empty())
}

/// Whether the outbox has rows waiting, and when the alarm should retry
/// (`None`: nothing waits).
pub fn retry_at(sql: &SqlStorage, now: i64) -> Result<Option<i64>, Problem> {
    let c = cursor(sql)?;
    let n: Vec<CountRow> = storage::query(
        sql,
        "SELECT count(*) AS n, min(at) AS oldest FROM feed_out WHERE seq > ?",
        vec![int(c.through)],
    )?;
    if n.first().map_or(0, |r| r.n) == 0 {
        return Ok(None);
    }
    if c.failures <= 0 {
        return Ok(Some(now + LINGER_MS));
    }
    let shift = (c.failures - 1).clamp(0, 5) as u32;
    Ok(Some(now + (RETRY_MS << shift).min(MAX_RETRY_MS)))
}

fn cursor(sql: &SqlStorage) -> Result<CursorRow, Problem> {
    let rows: Vec<CursorRow> = storage::query(
        sql,
        "SELECT through, failures FROM feed_cursor WHERE id = 0",
        vec![],
    )?;
    Ok(rows.into_iter().next().unwrap_or(CursorRow {
        through: 0,
        failures: 0,
    }))
}

fn db(env: &Env) -> Result<D1Database, Problem> {
    env.d1("DB")
        .map_err(|_| Problem::overloaded("the event feed (D1 binding DB) is not configured"))
}

fn d1_error(what: &'static str) -> impl Fn(worker::Error) -> Problem {
    move |e| {
        worker::console_error!("feed: {what}: {e}");
        Problem::overloaded(format!("the event feed could not {what}; retry"))
    }
}

fn num(n: i64) -> JsValue {
    // D1 integers bound as i32 lose range: JS numbers are exact to 2^53.
    JsValue::from_f64(n as f64)
}

fn opt(s: &Option<String>) -> JsValue {
    s.as_deref().map_or(JsValue::NULL, JsValue::from_str)
}

/// Forwards the outbox to D1 (at most `MAX_BATCHES` batches), then deletes
/// what D1 acknowledged. Safe to run twice at once: D1 ignores duplicates
/// and the cursor only moves forward. `Ok(true)`: nothing is left.
/// The outbox tables exist ([`ensure`]).
pub async fn forward(storage: &Storage, env: &Env, source: &str) -> Result<bool, Problem> {
    let sql = storage.sql();
    let db = db(env)?;
    for _ in 0..MAX_BATCHES {
        // The rows after the cursor (no cursor row yet: from the start).
        let rows: Vec<OutRow> = storage::query(
            &sql,
            "SELECT seq, at, kind, location, sku, body FROM feed_out
             WHERE seq > coalesce((SELECT through FROM feed_cursor WHERE id = 0), 0)
             ORDER BY seq LIMIT ?",
            vec![int(BATCH)],
        )?;
        let Some(last) = rows.last() else {
            return Ok(true);
        };
        let (last_seq, last_at) = (last.seq, last.at);
        // What waits after this batch. A short batch took every row after
        // the cursor, and nothing was written since (no await in between).
        let (pending, oldest) = if (rows.len() as i64) < BATCH {
            (0, None)
        } else {
            let left: Vec<CountRow> = storage::query(
                &sql,
                "SELECT count(*) AS n, min(at) AS oldest FROM feed_out WHERE seq > ?",
                vec![int(last_seq)],
            )?;
            left.first().map_or((0, None), |r| (r.n, r.oldest))
        };
        let mut batch = Vec::with_capacity(rows.len() + 1);
        for r in &rows {
            batch.push(
                db.prepare(
                    "INSERT OR IGNORE INTO events (source, seq, at, kind, location, sku, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .bind(&[
                    JsValue::from_str(source),
                    num(r.seq),
                    num(r.at),
                    JsValue::from_str(&r.kind),
                    opt(&r.location),
                    opt(&r.sku),
                    JsValue::from_str(&r.body),
                ])
                .map_err(d1_error("prepare an event"))?,
            );
        }
        batch.push(
            db.prepare(
                "INSERT INTO feed_sources (source, through_seq, last_at, pending,
                   oldest_pending_at, forwarded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source) DO UPDATE SET
                   through_seq = max(through_seq, excluded.through_seq),
                   last_at = max(last_at, excluded.last_at),
                   pending = excluded.pending, oldest_pending_at = excluded.oldest_pending_at,
                   forwarded_at = excluded.forwarded_at
                 WHERE excluded.through_seq >= feed_sources.through_seq",
            )
            .bind(&[
                JsValue::from_str(source),
                num(last_seq),
                num(last_at),
                num(pending),
                oldest.map_or(JsValue::NULL, num),
                num(storage::now_ms()),
            ])
            .map_err(d1_error("prepare the cursor"))?,
        );
        if let Err(e) = db.batch(batch).await {
            // (No cursor row yet: through 0, as read above.)
            storage::exec(
                &sql,
                "INSERT INTO feed_cursor (id, through, failures) VALUES (0, 0, 1)
                 ON CONFLICT (id) DO UPDATE SET failures = failures + 1",
                vec![],
            )?;
            return Err(d1_error("forward events")(e));
        }
        // Acknowledged: move the cursor (never back) and drop those rows,
        // keeping the last body for snapshot comparisons.
        storage::exec(
            &sql,
            "INSERT INTO feed_cursor (id, through, failures) VALUES (0, ?1, 0)
             ON CONFLICT (id) DO UPDATE SET through = max(through, ?1), failures = 0",
            vec![int(last_seq)],
        )?;
        storage::exec(
            &sql,
            "INSERT OR REPLACE INTO feed_last (id, body)
             SELECT 0, body FROM feed_out WHERE seq = ?",
            vec![int(last_seq)],
        )?;
        storage::exec(
            &sql,
            "DELETE FROM feed_out WHERE seq <= ?",
            vec![int(last_seq)],
        )?;
        if pending == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Brings the alarm forward to the outbox's retry time, if something waits
/// and no earlier alarm is set.
pub async fn rearm(storage: &Storage) {
    let now = storage::now_ms();
    let Ok(Some(at)) = retry_at(&storage.sql(), now) else {
        return;
    };
    let current = storage.get_alarm().await.ok().flatten();
    if current.is_none_or(|c| c > at) {
        if let Err(p) = storage::alarm_at(storage, Some(at)).await {
            worker::console_error!("feed: setting the retry alarm failed: {}", p.detail);
        }
    }
}

/// From an object's alarm: forwards what waits, and re-arms on failure.
/// A forward that stopped at its batch bound with rows left re-arms too
/// (after `LINGER_MS`), so a long backlog drains without waiting for the
/// next write.
pub async fn forward_and_rearm(storage: &Storage, env: &Env, source: &str) {
    match forward(storage, env, source).await {
        Ok(true) => {}
        Ok(false) => rearm(storage).await,
        Err(p) => {
            worker::console_warn!("feed {source}: forward failed ({}); retried", p.detail);
            rearm(storage).await;
        }
    }
}

/// The terminal whose object keeps the POS sale `sale_id`, from the
/// `sale_terminals` index D1 builds from the feed's sale events
/// (`migrations/0004_sale_terminals.sql`); `None` until the sale's event
/// was forwarded (0.25 to about 1.25 s after the sale: [`due`]).
pub async fn sale_terminal(
    env: &Env,
    sale_id: &str,
) -> Result<Option<omnistock_core::TerminalId>, Problem> {
    #[derive(Deserialize)]
    struct Row {
        terminal: String,
    }
    let row: Option<Row> = db(env)?
        .prepare("SELECT terminal FROM sale_terminals WHERE sale_id = ?1")
        .bind(&[JsValue::from_str(sale_id)])
        .map_err(d1_error("prepare the sale index lookup"))?
        .first(None)
        .await
        .map_err(d1_error("read the sale index"))?;
    match row {
        None => Ok(None),
        Some(r) => omnistock_core::TerminalId::parse(&r.terminal)
            .map(Some)
            .map_err(|e| Problem::overloaded(format!("sale index: terminal {e}"))),
    }
}

/// How current the feed is: `(as_of_ms, sources, behind)`. `as_of` is the
/// oldest event still waiting in a source's outbox when any source is
/// behind (every event before it has been forwarded), else the latest
/// forward; `None` when nothing was ever forwarded.
pub async fn as_of(env: &Env) -> Result<(Option<i64>, i64, i64), Problem> {
    #[derive(Deserialize)]
    struct Row {
        sources: f64,
        behind: Option<f64>,
        oldest: Option<f64>,
        latest: Option<f64>,
    }
    let db = db(env)?;
    let r: Option<Row> = db
        .prepare(
            "SELECT count(*) AS sources, sum(pending > 0) AS behind,
               min(CASE WHEN pending > 0 THEN oldest_pending_at END) AS oldest,
               max(forwarded_at) AS latest FROM feed_sources",
        )
        .first(None)
        .await
        .map_err(d1_error("read the feed's cursors"))?;
    Ok(match r {
        Some(r) => (
            r.oldest.or(r.latest).map(|t| t as i64),
            r.sources as i64,
            r.behind.unwrap_or(0.0) as i64,
        ),
        None => (None, 0, 0),
    })
}

/// The outbox rows of a SKU object's write: each event with the positions
/// it changed after the write (core's `StockBody`).
pub fn sku_outbox(
    sku: Option<&str>,
    st: &omnistock_core::SkuState,
    now: omnistock_core::Timestamp,
    fed: &[(omnistock_core::Event, crate::wire::sku_stock::Meta)],
) -> Result<Vec<Stmt>, Problem> {
    use omnistock_core::report::{PositionAfter, StockBody};
    use omnistock_core::{Channel, Event, Sku};
    let Some(sku) = sku.and_then(|s| Sku::parse(s).ok()) else {
        // An object without a name (never the case for id_from_name): no feed.
        worker::console_error!("feed: a SKU object without its name; events not fed");
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(fed.len());
    for (e, meta) in fed {
        let mut locs = Vec::new();
        if let Event::TransferShipped { from, .. } = e {
            locs.push(from.clone());
        }
        if let Some(l) = crate::wire::sku_stock::event_location(e) {
            locs.push(l.clone());
        }
        let positions = locs
            .iter()
            .map(|l| {
                let p = st.position_at(now, l);
                PositionAfter {
                    location: l.clone(),
                    on_hand: p.on_hand,
                    available: p.available(Channel::Pos),
                }
            })
            .collect();
        let body = StockBody {
            sku: sku.clone(),
            event: e.clone(),
            positions,
            channel: meta.channel.clone(),
            reason: meta.reason.clone(),
            reference: meta.reference.clone(),
        };
        let json = serde_json::to_string(&body)?;
        out.push(outbox(
            e.at().as_ms(),
            "stock",
            crate::wire::sku_stock::event_location(e).map(|l| l.as_str()),
            Some(sku.as_str()),
            &json,
        )?);
    }
    Ok(out)
}

/// The outbox row of a POS sale ([`sale_event`]), for the terminal's own
/// outbox (when no SKU object took the event: `wire::sku_stock::sell`).
pub fn sale_outbox(s: &crate::wire::terminal::Sale) -> Result<Stmt, Problem> {
    let ev = sale_event(s)?;
    outbox(ev.at, "sale", Some(ev.location.as_str()), None, &ev.body)
}

/// A POS sale's feed event (core's `SaleBody`): lines as sold (a bundle as
/// its own SKU), the tax recorded with the sale. A one-SKU sale's goes into
/// its SKU object's outbox, in the transaction of its `Sell`; else into the
/// terminal's.
pub fn sale_event(
    s: &crate::wire::terminal::Sale,
) -> Result<crate::wire::sku_stock::SaleEvent, Problem> {
    use omnistock_core::money::{Currency, Decimal};
    use omnistock_core::report::{Paid, SaleBody, SoldLine};
    use omnistock_core::Timestamp;
    let dec = |a: &str| {
        a.parse::<Decimal>()
            .map_err(|_| Problem::invalid("sale amount is not a decimal"))
    };
    let currency = s
        .lines
        .first()
        .map(|l| l.unit_price.currency.as_str())
        .or(s.payments.first().map(|p| p.amount.currency.as_str()))
        .unwrap_or("XXX");
    let currency =
        Currency::parse(currency).map_err(|_| Problem::invalid("sale currency is not ISO 4217"))?;
    // The tax recorded with the sale (its receipt reads the same figures).
    let tax = s.recorded_tax()?;
    let body = SaleBody {
        sale_id: s.sale_id.to_string(),
        terminal_id: s.terminal_id.to_string(),
        location: s.location.clone(),
        occurred_at: Timestamp::from_ms(s.occurred_at),
        customer_id: s.customer_id.clone(),
        currency,
        lines: s
            .lines
            .iter()
            .zip(&tax.lines)
            .map(|(l, t)| {
                Ok(SoldLine {
                    sku: l.sku.clone(),
                    qty: l.qty,
                    unit_price: dec(&l.unit_price.amount)?,
                    tax: t.tax.amount,
                    location: s.location.clone(),
                })
            })
            .collect::<Result<_, Problem>>()?,
        payments: s
            .payments
            .iter()
            .map(|p| {
                Ok(Paid {
                    method: p.method.clone(),
                    amount: dec(&p.amount.amount)?,
                })
            })
            .collect::<Result<_, Problem>>()?,
        tax_inclusive: tax.inclusive,
    };
    Ok(crate::wire::sku_stock::SaleEvent {
        sale: s.sale_id.clone(),
        at: s.occurred_at,
        location: s.location.to_string(),
        body: serde_json::to_string(&body)?,
    })
}

/// The snapshot of an order (core's `OrderBody`) as JSON.
pub fn order_body(
    o: &crate::wire::order::PricedOrder,
    m: &omnistock_core::order::OrderMachine,
) -> Result<String, Problem> {
    use omnistock_core::money::Currency;
    use omnistock_core::report::{OrderBody, PartChange, SoldLine};
    let body = OrderBody {
        id: o.id.clone(),
        channel: m.channel(),
        customer_id: o.customer_id.clone(),
        currency: Currency::parse(&o.totals.currency)
            .map_err(|_| Problem::invalid("order currency is not ISO 4217"))?,
        tax_inclusive: o.totals.tax_inclusive,
        lines: o
            .lines
            .iter()
            .map(|l| {
                Ok::<_, Problem>((
                    l.part,
                    SoldLine {
                        sku: l.sku.clone(),
                        qty: l.qty,
                        unit_price: l.unit_price.amount,
                        tax: l.tax.amount,
                        location: l.location.clone(),
                    },
                ))
            })
            .collect::<Result<_, Problem>>()?,
        history: m
            .history()
            .into_iter()
            .map(|h| PartChange {
                part: h.part,
                to: h.to,
                at: h.at,
            })
            .collect(),
    };
    Ok(serde_json::to_string(&body)?)
}

/// The snapshot of a return (core's `ReturnBody`) as JSON.
pub fn return_body(
    m: &omnistock_core::returns::ReturnCase,
    channel: omnistock_core::Channel,
) -> Result<String, Problem> {
    use omnistock_core::report::{Refund, ReturnBody, ReturnLine};
    use omnistock_core::returns::ReturnSource;
    let against = match m.source() {
        ReturnSource::Sale(s) => s.to_string(),
        ReturnSource::Order(o) => o.to_string(),
    };
    let body = ReturnBody {
        id: m.id().to_string(),
        against,
        channel,
        currency: m.currency(),
        created_at: m.created_at(),
        lines: m
            .lines()
            .iter()
            .map(|l| ReturnLine {
                sku: l.sku.clone(),
                qty: l.qty,
                reason: l.reason.clone(),
                sold_at: l.sold_at.clone(),
                paid: l.paid.amount,
            })
            .collect(),
        refunds: m
            .refunds()
            .iter()
            .map(|r| Refund {
                amount: r.amount.amount,
                at: r.at,
            })
            .collect(),
    };
    Ok(serde_json::to_string(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_lingers_and_keeps_its_interval() {
        // Quiet producer: the linger alone.
        assert_eq!(due(10_000, None), 10_000 + LINGER_MS);
        assert_eq!(due(10_000, Some(5_000)), 10_000 + LINGER_MS);
        // Busy: not before MIN_INTERVAL_MS after the last forward.
        assert_eq!(due(10_100, Some(10_000)), 10_000 + MIN_INTERVAL_MS);
        assert_eq!(
            due(10_000 + MIN_INTERVAL_MS - LINGER_MS, Some(10_000)),
            10_000 + MIN_INTERVAL_MS
        );
        assert_eq!(due(0, Some(i64::MAX)), i64::MAX);
    }
}
