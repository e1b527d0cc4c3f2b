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
//! A SKU object has no outbox rows: its event log is its outbox
//! ([`LOG_SCHEMA`], [`forward_log`]). Each `events` row carries the
//! positions after it (`positions`: the rest of its feed body is the row,
//! [`stock_body`]) and, for a one-SKU POS sale taken there, the sale's event
//! (`sale`, [`sale_event`]; a sale of several SKUs', or one no SKU object
//! took, is written by the Terminal), so a stock write is its event row and
//! its answer row (issue 7) and a till that sells now and then adds no D1
//! batch of its own per sale. In D1 a log row `s` is the stock event
//! `base + 2s` and its sale `base + 2s + 1` of the SKU's source: `base`
//! continues the numbering of the outbox the SKU objects used before.
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
    Ok(after_failures(
        n.first().map_or(0, |r| r.n),
        c.failures,
        now,
    ))
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

/// Sends one batch of rows to D1 with the source's cursor row (`pending`
/// rows, the oldest at `oldest`, wait after it). The rows are in seq order.
async fn send(
    db: &D1Database,
    source: &str,
    rows: &[OutRow],
    pending: i64,
    oldest: Option<i64>,
) -> Result<(), Problem> {
    let Some(last) = rows.last() else {
        return Ok(());
    };
    let mut batch = Vec::with_capacity(rows.len() + 1);
    for r in rows {
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
            num(last.seq),
            num(last.at),
            num(pending),
            oldest.map_or(JsValue::NULL, num),
            num(storage::now_ms()),
        ])
        .map_err(d1_error("prepare the cursor"))?,
    );
    db.batch(batch)
        .await
        .map(|_| ())
        .map_err(d1_error("forward events"))
}

/// What waits after a batch of `taken` rows that ended at `last_seq`: the
/// count and the oldest time `q` finds after it. A short batch took every
/// row after the cursor, and nothing was written since (no await in
/// between): nothing.
fn waiting(
    sql: &SqlStorage,
    taken: usize,
    q: &str,
    last_seq: i64,
) -> Result<(i64, Option<i64>), Problem> {
    if (taken as i64) < BATCH {
        return Ok((0, None));
    }
    let left: Vec<CountRow> = storage::query(sql, q, vec![int(last_seq)])?;
    Ok(left.first().map_or((0, None), |r| (r.n, r.oldest)))
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
        let last_seq = last.seq;
        let (pending, oldest) = waiting(
            &sql,
            rows.len(),
            "SELECT count(*) AS n, min(at) AS oldest FROM feed_out WHERE seq > ?",
            last_seq,
        )?;
        if let Err(p) = send(&db, source, &rows, pending, oldest).await {
            // (No cursor row yet: through 0, as read above.)
            storage::exec(
                &sql,
                "INSERT INTO feed_cursor (id, through, failures) VALUES (0, 0, 1)
                 ON CONFLICT (id) DO UPDATE SET failures = failures + 1",
                vec![],
            )?;
            return Err(p);
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

/// A SKU object's feed cursor over its own event log (`events`, the
/// SkuStock's table, with the columns `positions`, `sale`, `sale_at` and
/// `sale_location`): the log row it forwarded through, and the D1 seq base.
/// Created after the object's schema and the outbox tables ([`SCHEMA`]).
/// The one row is made once, at the end of the log as it then is, with
/// `base` past every seq the object's outbox used: an object of the
/// version before fed its events through `feed_out` (forwarded first by
/// [`forward_sku`]), and its rows are not fed again.
pub const LOG_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS feed_log (id INTEGER PRIMARY KEY CHECK (id = 0),
     through INTEGER NOT NULL, base INTEGER NOT NULL, failures INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO feed_log (id, through, base, failures)
     SELECT 0, e.m, max(coalesce((SELECT max(seq) FROM feed_out), 0),
                        coalesce((SELECT through FROM feed_cursor WHERE id = 0), 0)) - 2 * e.m, 0
     FROM (SELECT coalesce(max(seq), 0) AS m FROM events) e",
];

/// The D1 seq of log row `seq`'s stock event (its sale's is one more).
pub fn log_seq(base: i64, seq: i64) -> i64 {
    base + 2 * seq
}

#[derive(Deserialize)]
struct LogCursor {
    through: i64,
    base: i64,
    failures: i64,
}

/// A SkuStock's log row as the feed reads it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogRow {
    pub seq: i64,
    pub at: i64,
    pub location: Option<String>,
    /// The event's JSON.
    pub json: String,
    pub channel: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// The positions after the event (JSON); none on a row of the version
    /// before, which fed it through its outbox.
    pub positions: Option<String>,
    pub sale: Option<String>,
    pub sale_at: Option<i64>,
    pub sale_location: Option<String>,
}

fn log_cursor(sql: &SqlStorage) -> Result<LogCursor, Problem> {
    let rows: Vec<LogCursor> = storage::query(
        sql,
        "SELECT through, base, failures FROM feed_log WHERE id = 0",
        vec![],
    )?;
    rows.into_iter()
        .next()
        .ok_or_else(|| Problem::overloaded("the feed's log cursor is missing"))
}

/// The D1 rows of log rows (a row without positions, none: it was fed
/// through the outbox).
fn log_out(rows: &[LogRow], base: i64, sku: &str) -> Result<Vec<OutRow>, Problem> {
    let mut out = Vec::with_capacity(rows.len() + 1);
    for r in rows {
        if let Some(body) = stock_body(sku, r)? {
            out.push(OutRow {
                seq: log_seq(base, r.seq),
                at: r.at,
                kind: "stock".into(),
                location: r.location.clone(),
                sku: Some(sku.into()),
                body,
            });
        }
        if let Some(body) = &r.sale {
            out.push(OutRow {
                seq: log_seq(base, r.seq) + 1,
                at: r.sale_at.unwrap_or(r.at),
                kind: "sale".into(),
                location: r.sale_location.clone(),
                sku: None,
                body: body.clone(),
            });
        }
    }
    Ok(out)
}

/// Forwards a SKU object's log after its cursor to D1 (at most
/// `MAX_BATCHES` batches of `BATCH` log rows), moving the cursor as D1
/// acknowledges. `Ok(true)`: nothing is left.
pub async fn forward_log(
    storage: &Storage,
    env: &Env,
    source: &str,
    sku: &str,
) -> Result<bool, Problem> {
    let sql = storage.sql();
    let db = db(env)?;
    for _ in 0..MAX_BATCHES {
        let c = log_cursor(&sql)?;
        let rows: Vec<LogRow> = storage::query(
            &sql,
            "SELECT seq, at, location, json, channel, reason, reference, positions,
               sale, sale_at, sale_location FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![int(c.through), int(BATCH)],
        )?;
        let Some(last) = rows.last() else {
            return Ok(true);
        };
        let last_seq = last.seq;
        let (pending, oldest) = waiting(
            &sql,
            rows.len(),
            "SELECT count(*) AS n, min(at) AS oldest FROM events WHERE seq > ?",
            last_seq,
        )?;
        let out = log_out(&rows, c.base, sku)?;
        if let Err(p) = send(&db, source, &out, pending, oldest).await {
            storage::exec(
                &sql,
                "UPDATE feed_log SET failures = failures + 1 WHERE id = 0",
                vec![],
            )?;
            return Err(p);
        }
        storage::exec(
            &sql,
            "UPDATE feed_log SET through = max(through, ?), failures = 0 WHERE id = 0",
            vec![int(last_seq)],
        )?;
        // The outbox's cursor past every seq the log used: a version
        // before this one (a rollback) numbers its outbox rows after it,
        // never over a seq D1 already has from the log.
        if let Some(sent) = out.last() {
            storage::exec(
                &sql,
                "INSERT INTO feed_cursor (id, through, failures) VALUES (0, ?1, 0)
                 ON CONFLICT (id) DO UPDATE SET through = max(through, ?1)",
                vec![int(sent.seq)],
            )?;
        }
        if pending == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Forwards a SKU object's feed: what its outbox still holds from the
/// version before, then its log. `Ok(true)`: nothing is left.
pub async fn forward_sku(
    storage: &Storage,
    env: &Env,
    source: &str,
    sku: &str,
) -> Result<bool, Problem> {
    if !forward(storage, env, source).await? {
        return Ok(false);
    }
    forward_log(storage, env, source, sku).await
}

/// Whether a SKU object's feed has anything not yet forwarded.
pub fn sku_pending(sql: &SqlStorage) -> Result<bool, Problem> {
    #[derive(Deserialize)]
    struct One {
        #[allow(dead_code)]
        n: i64,
    }
    let rows: Vec<One> = storage::query(
        sql,
        "SELECT 1 AS n FROM events WHERE seq > (SELECT through FROM feed_log WHERE id = 0) LIMIT 1",
        vec![],
    )?;
    Ok(!rows.is_empty() || pending(sql)?)
}

/// When a SKU object's alarm should forward again (`None`: nothing waits):
/// its outbox's time while it holds rows, else its log's.
pub fn sku_retry_at(sql: &SqlStorage, now: i64) -> Result<Option<i64>, Problem> {
    if let Some(at) = retry_at(sql, now)? {
        return Ok(Some(at));
    }
    let c = log_cursor(sql)?;
    let rows: Vec<CountRow> = storage::query(
        sql,
        "SELECT count(*) AS n, min(at) AS oldest FROM
           (SELECT at FROM events WHERE seq > ? ORDER BY seq LIMIT 1)",
        vec![int(c.through)],
    )?;
    Ok(after_failures(
        rows.first().map_or(0, |r| r.n),
        c.failures,
        now,
    ))
}

/// The retry time of a source with `waiting` rows after `failures`
/// consecutive failed forwards.
fn after_failures(waiting: i64, failures: i64, now: i64) -> Option<i64> {
    if waiting == 0 {
        return None;
    }
    if failures <= 0 {
        return Some(now + LINGER_MS);
    }
    let shift = (failures - 1).clamp(0, 5) as u32;
    Some(now + (RETRY_MS << shift).min(MAX_RETRY_MS))
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

/// The positions an event of a SKU object changed, as they are after the
/// write (`st` at `now`), as JSON: kept in the event's own log row, they
/// and the row make its feed body ([`stock_body`]).
pub fn positions(
    st: &omnistock_core::SkuState,
    now: omnistock_core::Timestamp,
    e: &omnistock_core::Event,
) -> Result<String, Problem> {
    use omnistock_core::report::PositionAfter;
    use omnistock_core::{Channel, Event};
    let mut locs = Vec::new();
    if let Event::TransferShipped { from, .. } = e {
        locs.push(from.clone());
    }
    if let Some(l) = crate::wire::sku_stock::event_location(e) {
        locs.push(l.clone());
    }
    let positions: Vec<PositionAfter> = locs
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
    Ok(serde_json::to_string(&positions)?)
}

/// The feed body of a SKU object's log row: core's `StockBody` as JSON,
/// assembled from the row's event JSON, positions and meta (the same text
/// serde writes for it: unit test); `None` for a row without positions.
pub fn stock_body(sku: &str, r: &LogRow) -> Result<Option<String>, Problem> {
    let Some(positions) = &r.positions else {
        return Ok(None);
    };
    let body = format!(
        "{{\"sku\":{},\"event\":{},\"positions\":{},\"channel\":{},\"reason\":{},\"reference\":{}}}",
        serde_json::to_string(sku)?,
        r.json,
        positions,
        serde_json::to_string(&r.channel)?,
        serde_json::to_string(&r.reason)?,
        serde_json::to_string(&r.reference)?,
    );
    if body.len() > MAX_BODY {
        return Err(Problem::invalid("feed event too large"));
    }
    Ok(Some(body))
}

/// The outbox row of a POS sale ([`sale_event`]), for the terminal's own
/// outbox (when no SKU object took the event: `wire::sku_stock::sell`).
pub fn sale_outbox(s: &crate::wire::terminal::Sale) -> Result<Stmt, Problem> {
    let ev = sale_event(s)?;
    outbox(ev.at, "sale", Some(ev.location.as_str()), None, &ev.body)
}

/// A POS sale's feed event (core's `SaleBody`): lines as sold (a bundle as
/// its own SKU), the tax recorded with the sale. A one-SKU sale's goes into
/// its SKU object's log row of the `Sold` event, in the transaction of its
/// `Sell`; else into the terminal's outbox.
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

    /// A log row's assembled feed body is the text serde writes for core's
    /// `StockBody` (field for field, in order), and reads back as it.
    #[test]
    fn a_log_rows_feed_body_is_the_stock_body_serde_writes() {
        use omnistock_core::report::{PositionAfter, StockBody};
        use omnistock_core::{Command, LocationId, OpId, Sku, SkuState, Timestamp, TransferId};
        let loc = |s: &str| LocationId::parse(s).unwrap();
        let mut st = SkuState::new();
        let now = Timestamp::from_ms(1_700_000_000_000);
        let cmds = [
            Command::Receive {
                op: OpId::parse("r-1").unwrap(),
                location: loc("store-1"),
                qty: 7,
            },
            Command::TransferShip {
                transfer: TransferId::parse("t-1").unwrap(),
                from: loc("store-1"),
                to: loc("wh-2"),
                qty: 3,
            },
        ];
        let metas = [
            (Some("pos"), None, Some("po \"7\"")),
            (None, Some("damaged"), None),
        ];
        let mut located = Vec::new();
        for (cmd, (channel, reason, reference)) in cmds.iter().zip(metas) {
            let events = st.decide(now, cmd).expect("accepted");
            for e in &events {
                st.apply(e);
            }
            for e in &events {
                let row = LogRow {
                    json: serde_json::to_string(e).unwrap(),
                    channel: channel.map(String::from),
                    reason: reason.map(String::from),
                    reference: reference.map(String::from),
                    positions: Some(positions(&st, now, e).unwrap()),
                    ..LogRow::default()
                };
                let body = stock_body("SKU-1", &row).unwrap().unwrap();
                let want = StockBody {
                    sku: Sku::parse("SKU-1").unwrap(),
                    event: e.clone(),
                    positions: serde_json::from_str::<Vec<PositionAfter>>(
                        row.positions.as_deref().unwrap(),
                    )
                    .unwrap(),
                    channel: row.channel.clone(),
                    reason: row.reason.clone(),
                    reference: row.reference.clone(),
                };
                assert_eq!(body, serde_json::to_string(&want).unwrap());
                assert_eq!(serde_json::from_str::<StockBody>(&body).unwrap(), want);
                located.push(want.positions.len());
            }
        }
        // A receipt's body has its location's position; a shipment's both.
        assert_eq!(located, [1, 2]);
        // A row of the version before (no positions) has no body here.
        assert_eq!(stock_body("SKU-1", &LogRow::default()).unwrap(), None);
    }

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
