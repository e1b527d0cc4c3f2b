//! `SkuStock`: the one Durable Object that owns a SKU's stock, keyed by
//! `id_from_name(sku)`.
//!
//! SQLite is the truth: `events` (the log: audit trail and ledger, never
//! pruned; also the event feed's outbox, each row with its feed body:
//! `crate::feed::forward_log`), `snapshot` (one row: the state after the event `seq`, rewritten
//! every [`SNAPSHOT_EVERY`] events, or [`snapshot_every`] for a large state;
//! in pieces, the rest in `snapshot_part`), `ops` (each command's answer under its
//! client id with the request's Idempotency-Key, so a retry gets exactly the
//! first answer; sales kept forever, the others [`OPS_KEEP_MS`]) and
//! `reservations` (the one-SKU reservations homed here, kept
//! [`RESERVATION_KEEP_MS`] after their last deadline). Memory is a cache
//! that may vanish between requests; a load reads the snapshot and replays
//! the events after it (fewer than [`MAX_SNAPSHOT_EVERY`]).
//!
//! Every rule is `omnistock_core::SkuState`'s. For each request: load,
//! `expire(now)`, `decide`, `apply`, then write the events, the answers (and
//! when due a snapshot and a bounded batch of pruning) in ONE SQLite
//! transaction with no await in between, then point the alarm at
//! `next_deadline()` (an absolute time). If the transaction fails, memory is
//! dropped (reloaded from SQLite next time) and the caller gets a retryable
//! 503: nothing was acknowledged.
use std::cell::{Cell, RefCell};

use omnistock_core::reservation::{single_hold_status, HoldReply};
use omnistock_core::sku::HoldState;
use omnistock_core::transfer::TransferReply;
use omnistock_core::{
    Channel, Command, Event, HoldId, LocationId, Rejection, SaleId, SkuState, TerminalId, Timestamp,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Request, Response, ScheduledTime, SqlStorage, State,
    WebSocket, WebSocketIncomingMessage,
};

use super::live;

use super::storage::{self, int, opt_text, text, Stmt};
use crate::http::{rfc3339, Problem};
use crate::wire::reservation::{
    CreateRequest, ReservationAnswer, ReservationLine, ReservationStatus, ReservationView,
};
use crate::wire::sku_stock::{
    answer_key, command_hold, command_location, event_location, rejection_problem, sale_key,
    ExecRequest, HomedAnswer, LedgerEntry, LedgerRequest, Meta, Outcome, ReadAnswer, ReadRequest,
    ReservationOp, SaleEvent, SkuRequest,
};
use crate::wire::{self, Idem};

/// A snapshot is written once this many events have been logged since the
/// last one, in the same transaction as the events that reach the count. A
/// load therefore replays fewer than this many events after the snapshot.
/// A large state is snapshot less often ([`snapshot_every`]).
pub const SNAPSHOT_EVERY: u64 = 256;
/// The most events between two snapshots of a large state (what a load
/// replays at most).
pub const MAX_SNAPSHOT_EVERY: u64 = 4_096;
/// A large state waits one event per this many bytes of its last snapshot:
/// a hot SKU with thousands of active holds or remembered sales (megabytes
/// of JSON) would otherwise serialise and write them every 256 writes.
pub const SNAPSHOT_BYTES_PER_EVENT: usize = 1_024;

/// Events between snapshots for a state whose last snapshot was `bytes`
/// long: [`SNAPSHOT_EVERY`] up to 256 KiB, then one per
/// [`SNAPSHOT_BYTES_PER_EVENT`], at most [`MAX_SNAPSHOT_EVERY`].
pub fn snapshot_every(bytes: usize) -> u64 {
    ((bytes / SNAPSHOT_BYTES_PER_EVENT) as u64).clamp(SNAPSHOT_EVERY, MAX_SNAPSHOT_EVERY)
}

/// The format of `snapshot.state`: the serde JSON of `SkuState`. Bump it when
/// that shape changes incompatibly; a snapshot of another format is ignored
/// (full replay) and replaced by the next one written.
pub const SNAPSHOT_FORMAT: i64 = 2;

/// How long `ops` rows other than sales are kept (by the time they were
/// written): API.md keeps Idempotency-Keys at least 24 h and core remembers
/// op and hold ids for 24 h. Sale rows (`sale:`) are kept forever (sale ids
/// are idempotent forever, and core keeps only a window of them).
pub const OPS_KEEP_MS: i64 = 48 * 3_600_000;

/// How long a homed reservation's row is kept after its last deadline.
pub const RESERVATION_KEEP_MS: i64 = 48 * 3_600_000;

/// Rows pruned per pruning write and table (bounded work, through a
/// partial index).
pub const PRUNE_BATCH: i64 = 100;

/// Writes between two pruning writes (an instance's first write prunes; a
/// write whose transaction fails still counts): up to `PRUNE_BATCH /
/// PRUNE_EVERY` (6) rows per write and table, above the one row most writes
/// add to a table, at two SQL statements every 16 writes instead of every
/// write (each statement costs workerd about as much as the write's own:
/// docs/benchmarks.md, 2026-12-07 session 2).
pub const PRUNE_EVERY: u64 = 16;

/// Deletes up to `PRUNE_BATCH` expired non-sale `ops` rows. The
/// `substr(id, 1, 5) <> 'sale:'` term matches the partial index `ops_prunable`
/// word for word, so SQLite uses it and never walks the sale rows.
const OPS_PRUNE: &str = "DELETE FROM ops WHERE id IN (
    SELECT id FROM ops WHERE substr(id, 1, 5) <> 'sale:' AND at < ? ORDER BY at LIMIT ?)";

const RESERVATIONS_PRUNE: &str = "DELETE FROM reservations WHERE id IN (
    SELECT id FROM reservations WHERE deadline < ? ORDER BY deadline LIMIT ?)";

/// The snapshot row, written after the events of the same transaction: its
/// `seq` is the last event it includes. `state` is the first of `parts`
/// pieces of the state's JSON (`storage::PIECE_BYTES` each, at most); the
/// others are rows 1.. of `snapshot_part` (SQLite refuses a string over its
/// limit, 2 MB in Cloudflare's runtime: a SKU with ~15,000 active holds has
/// a larger state).
const SNAPSHOT_WRITE: &str = "INSERT OR REPLACE INTO snapshot (id, seq, format, state, at, parts)
    VALUES (0, (SELECT coalesce(max(seq), 0) FROM events), ?, ?, ?, ?)";
const SNAPSHOT_PART_WRITE: &str = "INSERT OR REPLACE INTO snapshot_part (n, text) VALUES (?, ?)";
/// Drops the pieces of an earlier, longer snapshot.
const SNAPSHOT_PART_TRIM: &str = "DELETE FROM snapshot_part WHERE n >= ?";

/// One event's row: the log, and the event feed's outbox (`positions`: the
/// positions after the write, the rest of its feed body is the row;
/// `sale*`: the feed event of a one-SKU POS sale taken here, on its `Sold`
/// event; feed.rs, [`crate::feed::forward_log`]).
const EVENT_WRITE: &str =
    "INSERT INTO events (at, kind, location, json, actor, channel, reference, reason,
     positions, sale, sale_at, sale_location) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const ANSWER_WRITE: &str =
    "INSERT OR REPLACE INTO ops (id, result, at, req_key, req_fp) VALUES (?, ?, ?, ?, ?)";

const RESERVATION_WRITE: &str =
    "INSERT OR REPLACE INTO reservations (id, json, deadline) VALUES (?, ?, ?)";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        location TEXT,
        json TEXT NOT NULL,
        actor TEXT,
        channel TEXT,
        reference TEXT,
        reason TEXT)",
    "CREATE INDEX IF NOT EXISTS events_by_location ON events(location, seq)",
    "CREATE TABLE IF NOT EXISTS ops (id TEXT PRIMARY KEY, result TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ops_prunable ON ops(at) WHERE substr(id, 1, 5) <> 'sale:'",
    "CREATE TABLE IF NOT EXISTS snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        seq INTEGER NOT NULL,
        format INTEGER NOT NULL,
        state TEXT NOT NULL,
        at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshot_part (n INTEGER PRIMARY KEY, text TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS reservations (
        id TEXT PRIMARY KEY, json TEXT NOT NULL, deadline INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS reservations_by_deadline ON reservations(deadline)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
];

/// Columns added after the first schema (SQLite has no ADD COLUMN IF NOT
/// EXISTS: a duplicate column error is expected once the column is there).
const UPGRADES: &[&str] = &[
    "ALTER TABLE ops ADD COLUMN req_key TEXT",
    "ALTER TABLE ops ADD COLUMN req_fp TEXT",
    "ALTER TABLE snapshot ADD COLUMN parts INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE events ADD COLUMN positions TEXT",
    "ALTER TABLE events ADD COLUMN sale TEXT",
    "ALTER TABLE events ADD COLUMN sale_at INTEGER",
    "ALTER TABLE events ADD COLUMN sale_location TEXT",
];
const UPGRADE_INDEXES: &[&str] =
    &["CREATE INDEX IF NOT EXISTS ops_by_key ON ops(req_key) WHERE req_key IS NOT NULL"];

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[derive(Deserialize)]
struct ResultRow {
    result: String,
}

#[derive(Deserialize)]
struct KeyRow {
    req_fp: Option<String>,
}

#[derive(Deserialize)]
struct TextRow {
    v: String,
}

#[derive(Deserialize)]
struct SnapshotRow {
    seq: i64,
    format: i64,
    state: String,
    parts: i64,
}

/// A one-SKU reservation homed here, as stored (one row).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Homed {
    id: String,
    attempt: u32,
    fp: String,
    line: ReservationLine,
    ttl_ms: i64,
    channel: Channel,
    created_at: i64,
    /// The create's Idempotency-Key and first answer: a view, or the refusal
    /// of a failed attempt.
    key: Idem,
    first: Result<ReservationView, Problem>,
    /// The last release or extension, with its key, for replays.
    #[serde(default)]
    last: Option<(Idem, Result<ReservationView, Problem>)>,
    /// The latest deadline the hold had (for pruning and after core forgot it).
    expires_at: Option<i64>,
    /// Set once released or expired, for when core no longer remembers the hold.
    #[serde(default)]
    ended: Option<ReservationStatus>,
    /// The order its hold became (`ended` is then `Converted`).
    #[serde(default)]
    converted_to: Option<String>,
}

impl Homed {
    fn hold_id(&self) -> Result<HoldId, Problem> {
        hold_id(self.attempt, &self.id)
    }
    fn failed(&self) -> bool {
        self.first.is_err()
    }
}

/// The hold id of a reservation's attempt: `res.<attempt>.<id>`.
pub fn hold_id(attempt: u32, id: &str) -> Result<HoldId, Problem> {
    HoldId::parse(&format!("res.{attempt}.{id}"))
        .map_err(|e| Problem::invalid(format!("reservation id: {e}")))
}

/// Everything one request writes, committed in one transaction: its
/// events' rows first (made last, with the positions after the whole
/// request for the feed), then `stmts`.
#[derive(Default)]
struct Batch {
    logged: Vec<Logged>,
    stmts: Vec<Stmt>,
    events: u64,
    /// Locations whose position the events changed (pushed to live subscribers).
    touched: Vec<LocationId>,
}

/// An event of the request, for its row in `events`.
struct Logged {
    event: Event,
    meta: Meta,
    json: String,
    /// The feed event of the POS sale this `Sold` event is of.
    sale: Option<SaleEvent>,
}

impl Batch {
    fn events(&mut self, events: &[Event], meta: &Meta) -> Result<(), Problem> {
        for e in events {
            if let Some(l) = event_location(e) {
                if !self.touched.contains(l) {
                    self.touched.push(l.clone());
                }
            }
            // An event that does not encode is an error: never an empty row in the log.
            let json = serde_json::to_string(e)?;
            self.logged.push(Logged {
                event: e.clone(),
                meta: meta.clone(),
                json,
                sale: None,
            });
        }
        self.events += events.len() as u64;
        Ok(())
    }

    /// Puts a sale's feed event on its `Sold` event's row; `false` when no
    /// event of this request sold `sale` (or the event is too large to feed).
    fn feed_sale(&mut self, ev: &SaleEvent) -> bool {
        if ev.body.len() > crate::feed::MAX_BODY {
            worker::console_error!("feed: sale {} too large to feed here", ev.sale);
            return false;
        }
        let row = self
            .logged
            .iter_mut()
            .rev()
            .find(|l| matches!(&l.event, Event::Sold { sale, .. } if *sale == ev.sale));
        match row {
            Some(l) => {
                l.sale = Some(ev.clone());
                true
            }
            None => false,
        }
    }

    /// The event rows, with the positions after the request (`st` at
    /// `now`), then the other statements.
    fn into_stmts(self, st: &SkuState, now: Timestamp) -> Result<Vec<Stmt>, Problem> {
        let mut out = Vec::with_capacity(self.logged.len() + self.stmts.len());
        for l in self.logged {
            let e = &l.event;
            let positions = crate::feed::positions(st, now, e)?;
            let (sale, sale_at, sale_location) = match l.sale {
                Some(s) => (Some(s.body), Some(s.at), Some(s.location)),
                None => (None, None, None),
            };
            out.push((
                EVENT_WRITE,
                vec![
                    int(e.at().as_ms()),
                    text(e.name()),
                    opt_text(event_location(e).map(|l| l.as_str())),
                    text(&l.json),
                    text(&l.meta.actor),
                    opt_text(l.meta.channel.as_deref()),
                    opt_text(l.meta.reference.as_deref()),
                    opt_text(l.meta.reason.as_deref()),
                    text(&positions),
                    opt_text(sale.as_deref()),
                    sale_at.map_or(worker::SqlStorageValue::Null, int),
                    opt_text(sale_location.as_deref()),
                ],
            ));
        }
        out.extend(self.stmts);
        Ok(out)
    }
}

#[durable_object]
pub struct SkuStock {
    state: State,
    /// The replayed state: a cache of the event log.
    mem: RefCell<Option<SkuState>>,
    /// Events logged since the last snapshot was written or attempted.
    since_snapshot: Cell<u64>,
    /// Events between snapshots, from the last one's size ([`snapshot_every`]).
    snapshot_every: Cell<u64>,
    /// The largest piece of a snapshot (bytes, `storage::piece_bytes`).
    part_bytes: usize,
    /// The alarm last asked for: `None` when unknown (after a start or a failure).
    alarm_at: Cell<Option<Option<i64>>>,
    schema_ok: Cell<bool>,
    env: Env,
    /// The live hubs relaying this SKU's changes to multi-SKU sockets.
    hubs: live::Hubs,
    /// When the alarm retries forwarding the event feed's outbox, if due.
    feed_due: Cell<Option<i64>>,
    /// When this instance last forwarded the feed (`feed::due`).
    fed_at: Cell<Option<i64>>,
    /// Writes this instance made (retention prunes every `PRUNE_EVERY`).
    writes: Cell<u64>,
    /// This object's SKU, once known (`storage::kept_name`).
    name: RefCell<Option<String>>,
}

impl DurableObject for SkuStock {
    fn new(state: State, env: Env) -> Self {
        let part_bytes = storage::piece_bytes(&env);
        SkuStock {
            env,
            hubs: live::Hubs::default(),
            state,
            mem: RefCell::new(None),
            since_snapshot: Cell::new(0),
            snapshot_every: Cell::new(SNAPSHOT_EVERY),
            part_bytes,
            alarm_at: Cell::new(None),
            schema_ok: Cell::new(false),
            feed_due: Cell::new(None),
            fed_at: Cell::new(None),
            writes: Cell::new(0),
            name: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if live::is_upgrade(&req) {
            let r = live::accept(&self.state, &req, &|l| self.positions(l));
            self.sync_alarm().await;
            return r;
        }
        wire::serve(self, req).await
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let r = live::on_message(&ws, message, &|l| self.positions(l));
        self.sync_alarm().await;
        r
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        live::on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        live::on_close(&ws, 1011);
        Ok(())
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Inside alarm() no alarm is set any more.
        self.alarm_at.set(Some(None));
        self.forward_feed().await;
        let r = self.guarded(|| {
            self.exec(
                ExecRequest {
                    cmds: Vec::new(),
                    meta: system_meta("alarm"),
                    idem: None,
                    sale_event: None,
                },
                false,
            )
        });
        self.sync_alarm().await;
        self.hubs.flush(&self.state.storage(), &self.env).await;
        match r {
            Ok(_) => Response::ok(""),
            // An error makes the runtime retry the alarm: expiry is idempotent.
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for SkuStock {
    async fn receive(&self, msg: &str) -> String {
        use wire::reply;
        // Each answer is encoded once, straight from its type.
        let r = match wire::decode::<SkuRequest>(msg) {
            Ok(SkuRequest::Exec(x)) => reply(self.guarded(|| self.exec(x, false))),
            Ok(SkuRequest::ExecAll(x)) => reply(self.guarded(|| self.exec(x, true))),
            Ok(SkuRequest::Read(x)) => reply(self.guarded(|| self.read(x))),
            Ok(SkuRequest::Ledger(x)) => reply(self.ledger(x)),
            // A refusal is an answer (written with its row), not a failure.
            Ok(SkuRequest::Reserve(x)) => reply(self.guarded(|| self.reserve(x)).and_then(|r| r)),
            Ok(SkuRequest::Reservation(x)) => {
                reply(self.guarded(|| self.reservation(x)).and_then(|r| r))
            }
            Ok(SkuRequest::Coordinate { cmd, meta }) => {
                reply(self.guarded(|| self.coordinate(cmd, meta)))
            }
            Ok(SkuRequest::Transfer { cmd, meta }) => {
                reply(self.guarded(|| self.transfer(cmd, meta)))
            }
            Ok(SkuRequest::SaleTerminal { sale }) => reply(self.sale_terminal(&sale)),
            Ok(SkuRequest::LiveHub { hub, sku }) => reply(
                self.hubs
                    .register(&self.state.storage(), &hub, sku.as_str())
                    .and_then(|()| self.guarded(|| self.read(ReadRequest { locations: None }))),
            ),
            Err(p) => reply::<()>(Err(p)),
        };
        self.sync_alarm().await;
        self.hubs.flush(&self.state.storage(), &self.env).await;
        r
    }
}

crate::rpc_receiver!(SkuStock);

fn system_meta(reference: &str) -> Meta {
    Meta {
        actor: "system".into(),
        channel: None,
        reference: Some(reference.into()),
        reason: None,
    }
}

impl SkuStock {
    /// Runs `f`; if it fails, memory may differ from SQLite: drop it.
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, Problem>) -> Result<T, Problem> {
        let r = f();
        if r.is_err() {
            *self.mem.borrow_mut() = None;
        }
        r
    }

    fn ensure_schema(&self) -> Result<(), Problem> {
        if self.schema_ok.get() {
            return Ok(());
        }
        let sql = self.state.storage().sql();
        let parts = [
            SCHEMA,
            UPGRADES,
            UPGRADE_INDEXES,
            crate::feed::SCHEMA,
            crate::feed::LOG_SCHEMA,
        ];
        storage::ensure_schema(&sql, &parts, || {
            for q in SCHEMA {
                storage::exec(&sql, q, Vec::new())?;
            }
            for q in UPGRADES {
                // Fails once the column exists; that is the expected case.
                let _ = sql.exec(q, None);
            }
            for q in UPGRADE_INDEXES {
                storage::exec(&sql, q, Vec::new())?;
            }
            crate::feed::ensure(&sql)?;
            // After the outbox tables: the log's cursor starts past them.
            for q in crate::feed::LOG_SCHEMA {
                storage::exec(&sql, q, Vec::new())?;
            }
            Ok(())
        })?;
        self.schema_ok.set(true);
        Ok(())
    }

    /// The state, rebuilt from SQLite if memory lost it: the snapshot (when
    /// there is a usable one) plus the events after it, else the whole log.
    fn load(&self) -> Result<(), Problem> {
        self.ensure_schema()?;
        if self.mem.borrow().is_some() {
            return Ok(());
        }
        let sql = self.state.storage().sql();
        let key = hash_key(&sql)?;
        // Kept for an instance its alarm wakes, which has no name.
        storage::kept_name(&self.state.id(), &sql, &self.name)?;
        let (mut st, after, bytes) = match read_snapshot(&sql)? {
            Some((st, seq, bytes)) => (st, seq, bytes),
            None => (SkuState::new(), 0, 0),
        };
        self.snapshot_every.set(snapshot_every(bytes));
        st.set_hash_key(key);
        let mut replayed = replay(&sql, &mut st, after)?;
        if after > 0 && st.events_applied() != after as u64 + replayed {
            // The snapshot does not account for the log before it: trust the log.
            worker::console_error!(
                "snapshot at seq {after} does not match the event log; replaying all of it"
            );
            st = SkuState::with_hash_key(key);
            replayed = replay(&sql, &mut st, 0)?;
        }
        *self.mem.borrow_mut() = Some(st);
        self.since_snapshot.set(replayed);
        // Events an earlier instance wrote and did not forward: forwarded
        // soon (their alarm may be lost, or later than what this sets).
        if self.feed_due.get().is_none() && crate::feed::sku_pending(&sql)? {
            self.feed_due
                .set(Some(storage::now_ms() + crate::feed::LINGER_MS));
        }
        Ok(())
    }

    /// Runs `f` on the loaded state at `now` after expiring lapsed holds,
    /// then commits everything `f` added to the batch in one transaction
    /// (with a snapshot when due and, now and then, a pruning batch).
    /// Synchronous from load to commit: no other request interleaves.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut SkuState, Timestamp, &mut Batch) -> Result<T, Problem>,
    ) -> Result<T, Problem> {
        self.load()?;
        let now = Timestamp::from_ms(storage::now_ms());
        let mut guard = self.mem.borrow_mut();
        let st = guard
            .as_mut()
            .ok_or_else(|| Problem::overloaded("state not loaded"))?;
        let mut batch = Batch::default();
        let expired = st.expire(now);
        for e in &expired {
            st.apply(e);
        }
        batch.events(&expired, &system_meta("expiry"))?;
        let out = f(st, now, &mut batch)?;
        if batch.stmts.is_empty() && batch.logged.is_empty() {
            return Ok(out);
        }
        // Retention: one batch per table every PRUNE_EVERY writes (the
        // first write of an instance included), not two statements per write.
        let writes = self.writes.get();
        self.writes.set(writes.wrapping_add(1));
        if writes.is_multiple_of(PRUNE_EVERY) {
            batch.stmts.push((
                OPS_PRUNE,
                vec![int(now.as_ms() - OPS_KEEP_MS), int(PRUNE_BATCH)],
            ));
            batch.stmts.push((
                RESERVATIONS_PRUNE,
                vec![int(now.as_ms() - RESERVATION_KEEP_MS), int(PRUNE_BATCH)],
            ));
        }
        let mut since = self.since_snapshot.get() + batch.events;
        if since >= self.snapshot_every.get() {
            since = 0;
            match snapshot_json(st) {
                Ok(json) => {
                    // The next one after an interval fitting this size.
                    self.snapshot_every.set(snapshot_every(json.len()));
                    batch
                        .stmts
                        .extend(snapshot_stmts(&json, self.part_bytes, now.as_ms()))
                }
                // The log stays the truth; try again after another
                // interval of events (not on every write: bounded work).
                Err(why) => worker::console_error!("no snapshot written: {why}"),
            }
        }
        let fed = !batch.logged.is_empty();
        let touched = std::mem::take(&mut batch.touched);
        storage::atomically(&self.state.storage(), batch.into_stmts(st, now)?)?;
        if fed {
            // Forwarded by the alarm, LINGER_MS after the first write
            // since the last forward and at least MIN_INTERVAL_MS after
            // that forward: the writes in between ride one D1 batch
            // (feed.rs), so a busy SKU forwards once a second, not once per
            // write.
            let at = crate::feed::due(now.as_ms(), self.fed_at.get());
            if self.feed_due.get().is_none_or(|d| d > at) {
                self.feed_due.set(Some(at));
            }
        }
        self.since_snapshot.set(since);
        // Durable now: tell the live subscribers (before the HTTP answer).
        live::push(&self.state, |l| st.position_at(now, l), &touched);
        let sql = self.state.storage().sql();
        self.hubs
            .note(&sql, now.as_ms(), |l| st.position_at(now, l), &touched);
        Ok(out)
    }

    /// The terminal of a sale recorded here (its `sale:` row's `sold` event).
    fn sale_terminal(&self, sale: &SaleId) -> Result<Option<TerminalId>, Problem> {
        self.ensure_schema()?;
        Ok(self.stored(&sale_key(sale))?.and_then(|o| {
            o.events().iter().find_map(|e| match e {
                Event::Sold { terminal, .. } => Some(terminal.clone()),
                _ => None,
            })
        }))
    }

    /// The stored answer of a command id, if any.
    fn stored(&self, key: &str) -> Result<Option<Outcome>, Problem> {
        let sql = self.state.storage().sql();
        let rows: Vec<ResultRow> =
            storage::query(&sql, "SELECT result FROM ops WHERE id = ?", vec![text(key)])?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| serde_json::from_str::<Outcome>(&r.result).ok()))
    }

    /// Refuses a request whose Idempotency-Key this object saw with another request.
    fn check_key(&self, idem: &Idem) -> Result<(), Problem> {
        let sql = self.state.storage().sql();
        let rows: Vec<KeyRow> = storage::query(
            &sql,
            "SELECT req_fp FROM ops WHERE req_key = ? LIMIT 1",
            vec![text(&idem.key)],
        )?;
        match rows.first() {
            Some(KeyRow { req_fp: Some(fp) }) if *fp != idem.fp => Err(Problem::key_reused()),
            _ => Ok(()),
        }
    }

    /// Runs the commands in order, in one transaction. With `all_or_none`,
    /// a refusal of any command writes nothing (the batch is dropped and
    /// `guarded` drops memory) and is the answer.
    fn exec(&self, req: ExecRequest, all_or_none: bool) -> Result<Vec<Outcome>, Problem> {
        self.ensure_schema()?;
        if let Some(i) = &req.idem {
            self.check_key(i)?;
        }
        self.write(|st, now, batch| {
            let mut out = Vec::with_capacity(req.cmds.len());
            for cmd in &req.cmds {
                let o = self.exec_one(st, now, batch, cmd, &req)?;
                if all_or_none {
                    if let Some(p) = o.problem() {
                        return Err(p);
                    }
                }
                out.push(o);
            }
            Ok(out)
        })
    }

    fn exec_one(
        &self,
        st: &mut SkuState,
        now: Timestamp,
        batch: &mut Batch,
        cmd: &Command,
        req: &ExecRequest,
    ) -> Result<Outcome, Problem> {
        let (meta, idem, sale_event) = (&req.meta, req.idem.as_ref(), req.sale_event.as_ref());
        let core_cmd = cmd;
        // A sale core no longer remembers (it keeps a window) may still be
        // recorded here: sale ids are idempotent forever. While core has
        // forgotten none, every sale ever applied here is in its window (the
        // same rule core's own return check uses), so a new sale id needs no
        // read of the sale rows.
        if let Command::Sell { sale, .. } = cmd {
            if !st.remembers_sale(sale) && st.sales_forgotten() > 0 {
                if let Some(mut o) = self.stored(&sale_key(sale))? {
                    let fp = omnistock_core::sku::fingerprint(core_cmd);
                    let same = o.events().iter().any(|e| {
                        matches!(e, Event::Sold { sale: s, fp: f, .. } if s == sale && *f == fp)
                    });
                    if !same {
                        let r = rejection_problem(&Rejection::ExistsWithDifferentBody);
                        return Ok(describe(st, now, cmd, Err(r)));
                    }
                    o.replayed = true;
                    return Ok(o);
                }
            }
        }
        match st.decide(now, core_cmd) {
            Ok(events) => {
                for e in &events {
                    st.apply(e);
                }
                batch.events(&events, meta)?;
                let mut o = describe(st, now, cmd, Ok(events));
                // A new sale's event for the feed, on its stock event's row.
                // (A sale is never refused for its feed event: one that
                // does not fit is logged, and the terminal writes its own.)
                if let (Command::Sell { sale, .. }, Some(ev)) = (cmd, sale_event) {
                    o.fed = ev.sale == *sale && batch.feed_sale(ev);
                }
                if let Some(key) = answer_key(cmd) {
                    batch.stmts.push((
                        ANSWER_WRITE,
                        vec![
                            text(&key),
                            text(&serde_json::to_string(&o)?),
                            int(now.as_ms()),
                            opt_text(idem.map(|i| i.key.as_str())),
                            opt_text(idem.map(|i| i.fp.as_str())),
                        ],
                    ));
                }
                Ok(o)
            }
            Err(Rejection::Exists) => {
                let stored = match answer_key(cmd) {
                    Some(key) => self.stored(&key)?,
                    None => None,
                };
                let mut o = match stored {
                    Some(o) => o,
                    // Nothing kept (or a command without an id): describe it now.
                    None => describe(st, now, cmd, Ok(Vec::new())),
                };
                o.replayed = true;
                Ok(o)
            }
            Err(r) => Ok(describe(st, now, cmd, Err(rejection_problem(&r)))),
        }
    }

    /// Positions for a live snapshot (the same read as `Read`).
    fn positions(&self, locations: Option<Vec<LocationId>>) -> Result<live::Positions, Problem> {
        let a = self.guarded(|| self.read(ReadRequest { locations }))?;
        Ok((a.now, a.positions))
    }

    fn read(&self, req: ReadRequest) -> Result<ReadAnswer, Problem> {
        // Expire first so the log shows it; a read never shows a lapsed hold anyway.
        self.write(|st, now, _| {
            let positions = match req.locations {
                Some(locs) => locs
                    .into_iter()
                    .map(|l| {
                        let p = st.position_at(now, &l);
                        (l, p)
                    })
                    .collect(),
                None => st
                    .positions()
                    .map(|(l, _)| (l.clone(), st.position_at(now, l)))
                    .collect(),
            };
            Ok(ReadAnswer {
                now: now.as_ms(),
                positions,
            })
        })
    }

    fn ledger(&self, req: LedgerRequest) -> Result<Vec<LedgerEntry>, Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let limit = req.limit.clamp(1, 1000);
        let after = req.after.unwrap_or(0);
        match &req.location {
            Some(l) => storage::query(
                &sql,
                "SELECT seq, at, kind, location, json, actor, channel, reference, reason FROM events
                 WHERE location = ? AND seq > ? ORDER BY seq LIMIT ?",
                vec![text(l.as_str()), int(after), int(limit)],
            ),
            None => storage::query(
                &sql,
                "SELECT seq, at, kind, location, json, actor, channel, reference, reason FROM events
                 WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![int(after), int(limit)],
            ),
        }
    }

    fn homed(&self, id: &str) -> Result<Option<Homed>, Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let rows: Vec<JsonRow> = storage::query(
            &sql,
            "SELECT json FROM reservations WHERE id = ?",
            vec![text(id)],
        )?;
        match rows.first() {
            Some(r) => Ok(Some(serde_json::from_str(&r.json)?)),
            None => Ok(None),
        }
    }

    /// A one-SKU reservation: hold and record it in one transaction
    /// (two rows: the `held` event and the reservation).
    fn reserve(&self, req: CreateRequest) -> Result<Result<HomedAnswer, Problem>, Problem> {
        let [line] = req.lines.as_slice() else {
            return Err(Problem::invalid(
                "a reservation homed in a SKU object has one line",
            ));
        };
        let line = line.clone();
        let existing = self.homed(&req.id)?;
        self.write(|st, now, batch| {
            let attempt = match &existing {
                Some(h) if h.failed() && h.key == req.idem => {
                    // The same request again: its first answer.
                    let mut p = h.first.clone().err().unwrap_or_else(|| {
                        Problem::overloaded("a failed reservation without its refusal")
                    });
                    p.replayed = true;
                    return Ok(Err(p));
                }
                Some(h) if h.failed() => h.attempt + 1,
                Some(h) if h.fp != req.fp => {
                    return Ok(Err(Problem::new(
                        409,
                        "idempotency_key_reused",
                        format!("reservation {} already exists with other content", h.id),
                    )))
                }
                Some(h) => {
                    let replay = h.key == req.idem;
                    let view = match (&h.first, replay) {
                        (Ok(v), true) => v.clone(),
                        _ => view_of(st, now, h)?,
                    };
                    return Ok(Ok(HomedAnswer::Here(ReservationAnswer {
                        created: replay,
                        replayed: replay,
                        view,
                    })));
                }
                None => 1,
            };
            let hold = hold_id(attempt, &req.id)?;
            let cmd = omnistock_core::Command::Hold {
                hold: hold.clone(),
                location: line.location.clone(),
                qty: line.qty,
                channel: req.channel,
                ttl_ms: Some(req.ttl_ms),
            };
            let mut h = Homed {
                id: req.id.clone(),
                attempt,
                fp: req.fp.clone(),
                line: line.clone(),
                ttl_ms: req.ttl_ms,
                channel: req.channel,
                created_at: now.as_ms(),
                key: req.idem.clone(),
                first: Err(Problem::overloaded("not decided")),
                last: None,
                expires_at: None,
                ended: None,
                converted_to: None,
            };
            match st.decide(now, &cmd) {
                Ok(events) => {
                    for e in &events {
                        st.apply(e);
                    }
                    batch.events(&events, &req.meta)?;
                    h.expires_at = deadline(st, &hold);
                    h.first = Ok(view_of(st, now, &h)?);
                }
                Err(Rejection::InsufficientStock {
                    requested,
                    available,
                }) => {
                    h.first = Err(Problem::new(
                        409,
                        "insufficient_stock",
                        "not enough stock for every line; nothing was reserved",
                    )
                    .with(
                        "lines",
                        [serde_json::json!({
                            "sku": line.sku, "location": line.location,
                            "requested": requested, "available": available.max(0),
                        })],
                    ));
                }
                Err(Rejection::Exists) => {
                    // Held already by this attempt (a row lost with its
                    // transaction cannot be: both are written together).
                    h.expires_at = deadline(st, &hold);
                    h.first = Ok(view_of(st, now, &h)?);
                }
                Err(r) => return Ok(Err(rejection_problem(&r))),
            }
            batch.stmts.push(homed_row(&h)?);
            Ok(match &h.first {
                Ok(v) => Ok(HomedAnswer::Here(ReservationAnswer {
                    created: true,
                    replayed: false,
                    view: v.clone(),
                })),
                Err(p) => Err(p.clone()),
            })
        })
    }

    /// A coordinator's `Hold`, `Extend` or `Release` of one of its holds:
    /// one event row at most (a retry is answered from the state).
    fn coordinate(&self, cmd: Command, meta: Meta) -> Result<HoldReply, Problem> {
        let Some(hold) = command_hold(&cmd).cloned() else {
            return Err(Problem::invalid("a coordinator asks about holds only"));
        };
        self.write(|st, now, batch| {
            let result = st.decide(now, &cmd);
            if let Ok(events) = &result {
                for e in events {
                    st.apply(e);
                }
                batch.events(events, &meta)?;
            }
            Ok(HoldReply::from_sku(st, now, &hold, &result))
        })
    }

    /// A transfer coordinator's command, answered with core's `TransferReply`.
    fn transfer(&self, cmd: Command, meta: Meta) -> Result<TransferReply, Problem> {
        if !matches!(
            cmd,
            Command::TransferShip { .. }
                | Command::TransferReceive { .. }
                | Command::TransferCancel { .. }
        ) {
            return Err(Problem::invalid(
                "a transfer coordinator sends transfer commands only",
            ));
        }
        self.write(|st, now, batch| {
            let result = st.decide(now, &cmd);
            if let Ok(events) = &result {
                for e in events {
                    st.apply(e);
                }
                batch.events(events, &meta)?;
            }
            Ok(TransferReply::from_sku(&result))
        })
    }

    /// Reads, releases or extends a reservation homed here.
    fn reservation(&self, op: ReservationOp) -> Result<Result<HomedAnswer, Problem>, Problem> {
        let id = match &op {
            ReservationOp::Get { id }
            | ReservationOp::Release { id, .. }
            | ReservationOp::Extend { id, .. }
            | ReservationOp::Abandon { id, .. }
            | ReservationOp::Convert { id, .. } => id.clone(),
        };
        let Some(mut h) = self.homed(&id)? else {
            return Ok(Ok(HomedAnswer::NotHere));
        };
        if let ReservationOp::Abandon { fp, problem, .. } = &op {
            return self.abandon(h, fp, problem.clone());
        }
        if h.failed() {
            return Ok(Err(Problem::not_found("no such reservation")));
        }
        // The same key as the last change: its answer again (or a key reused).
        if let ReservationOp::Release { idem, .. } | ReservationOp::Extend { idem, .. } = &op {
            if let Some((k, answer)) = &h.last {
                if k.key == idem.key {
                    if k.fp != idem.fp {
                        return Ok(Err(Problem::key_reused()));
                    }
                    return Ok(match answer {
                        Ok(v) => Ok(HomedAnswer::Here(ReservationAnswer {
                            created: false,
                            replayed: true,
                            view: v.clone(),
                        })),
                        Err(p) => {
                            let mut p = p.clone();
                            p.replayed = true;
                            Err(p)
                        }
                    });
                }
            }
        }
        self.write(|st, now, batch| {
            let hold = h.hold_id()?;
            let status = status_of(st, now, &h);
            let answer: Result<ReservationView, Problem> = match (&op, status) {
                (ReservationOp::Get { .. }, _) => {
                    return Ok(Ok(HomedAnswer::Here(ReservationAnswer {
                        created: false,
                        replayed: false,
                        view: view_of(st, now, &h)?,
                    })))
                }
                (ReservationOp::Release { .. }, ReservationStatus::Released) => {
                    view_of(st, now, &h)
                }
                (ReservationOp::Release { .. }, ReservationStatus::Expired) => {
                    Err(Problem::invalid_transition("expired", "released", &[]))
                }
                (ReservationOp::Release { .. }, ReservationStatus::Converted) => {
                    Err(Problem::invalid_transition("converted", "released", &[]))
                }
                (ReservationOp::Convert { order_id, .. }, ReservationStatus::Active) => {
                    h.ended = Some(ReservationStatus::Converted);
                    h.converted_to = Some(order_id.clone());
                    batch.stmts.push(homed_row(&h)?);
                    return Ok(Ok(HomedAnswer::Converted {
                        answer: ReservationAnswer {
                            created: false,
                            replayed: false,
                            view: view_of(st, now, &h)?,
                        },
                        hold,
                    }));
                }
                (ReservationOp::Convert { order_id, .. }, ReservationStatus::Converted)
                    if h.converted_to.as_deref() == Some(order_id.as_str()) =>
                {
                    return Ok(Ok(HomedAnswer::Converted {
                        answer: ReservationAnswer {
                            created: false,
                            replayed: false,
                            view: view_of(st, now, &h)?,
                        },
                        hold,
                    }));
                }
                (ReservationOp::Convert { .. }, s) => {
                    return Ok(Err(Problem::invalid_transition(
                        s.as_str(),
                        "converted",
                        &[],
                    )))
                }
                (ReservationOp::Release { meta, .. }, _) => {
                    let meta = &with_channel(meta, h.channel);
                    match st.decide(now, &omnistock_core::Command::Release { hold }) {
                        Ok(events) => {
                            for e in &events {
                                st.apply(e);
                            }
                            batch.events(&events, meta)?;
                            h.ended = Some(ReservationStatus::Released);
                            view_of(st, now, &h)
                        }
                        Err(r) => Err(rejection_problem(&r)),
                    }
                }
                (ReservationOp::Extend { ttl_ms, meta, .. }, ReservationStatus::Active) => {
                    let meta = &with_channel(meta, h.channel);
                    match st.decide(
                        now,
                        &omnistock_core::Command::Extend {
                            hold: hold.clone(),
                            ttl_ms: *ttl_ms,
                        },
                    ) {
                        Ok(events) => {
                            for e in &events {
                                st.apply(e);
                            }
                            batch.events(&events, meta)?;
                            h.expires_at = deadline(st, &hold).or(h.expires_at);
                            h.ttl_ms = *ttl_ms;
                            view_of(st, now, &h)
                        }
                        Err(r) => Err(rejection_problem(&r)),
                    }
                }
                (ReservationOp::Extend { .. }, s) => {
                    Err(Problem::invalid_transition(s.as_str(), "active", &[]))
                }
                (ReservationOp::Abandon { .. }, _) => {
                    return Err(Problem::invalid("abandon is answered before"))
                }
            };
            if let ReservationOp::Release { idem, .. } | ReservationOp::Extend { idem, .. } = &op {
                h.last = Some((idem.clone(), answer.clone()));
                batch.stmts.push(homed_row(&h)?);
            }
            Ok(answer.map(|view| {
                HomedAnswer::Here(ReservationAnswer {
                    created: false,
                    replayed: false,
                    view,
                })
            }))
        })
    }

    /// Gives back the hold of a reservation whose id belongs to another one
    /// and records it as failed with `problem` (one transaction).
    fn abandon(
        &self,
        mut h: Homed,
        fp: &str,
        problem: Problem,
    ) -> Result<Result<HomedAnswer, Problem>, Problem> {
        if h.fp != fp || h.failed() {
            return Ok(Err(problem));
        }
        self.write(|st, now, batch| {
            let hold = h.hold_id()?;
            if let Ok(events) = st.decide(now, &Command::Release { hold }) {
                for e in &events {
                    st.apply(e);
                }
                batch.events(&events, &system_meta("reservation id taken"))?;
            }
            h.first = Err(problem.clone());
            h.ended = Some(ReservationStatus::Failed);
            batch.stmts.push(homed_row(&h)?);
            Ok(Err(problem))
        })
    }

    /// Points the alarm at the earliest deadline (absolute time), or clears it.
    /// The value is recorded before the await: storage calls apply in the
    /// order they are issued, so the last one issued wins.
    async fn sync_alarm(&self) {
        let want = match self.mem.borrow().as_ref() {
            Some(st) => st.next_deadline().map(|t| t.as_ms()),
            None => return,
        };
        let want = want.into_iter().chain(self.feed_due.get()).min();
        if self.alarm_at.get() == Some(want) {
            return;
        }
        if want.is_none() && self.alarm_at.get().is_none() {
            // A fresh instance with nothing due (no hold, no event left
            // unforwarded: `load`), most often woken by a read: no storage
            // call. An alarm left from before finds nothing to do.
            self.alarm_at.set(Some(None));
            return;
        }
        self.alarm_at.set(Some(want));
        let storage = self.state.storage();
        let r = match want {
            Some(at) => {
                let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
                storage.set_alarm(ScheduledTime::new(date)).await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = r {
            worker::console_error!("setting the alarm failed: {e}");
            self.alarm_at.set(None);
        }
    }
}

/// The event feed's source name of this SKU object.
fn sku_source(name: &str) -> String {
    format!("sku:{name}")
}

impl SkuStock {
    /// Forwards the feed's outbox (from the alarm) and sets when to retry.
    async fn forward_feed(&self) {
        if self.ensure_schema().is_err() {
            return;
        }
        let storage = self.state.storage();
        let now = storage::now_ms();
        let sku = match storage::kept_name(&self.state.id(), &storage.sql(), &self.name) {
            Ok(Some(sku)) => sku,
            // Woken by its alarm before any instance with its name kept
            // it: the log waits for a named instance (whose load or write
            // forwards it), with no alarm of its own meanwhile (bounded:
            // no retry loop for a SKU nobody asks for).
            Ok(None) => {
                worker::console_warn!("feed: a SKU object without its name; forwarded later");
                self.feed_due.set(None);
                return;
            }
            // Storage failed: tried again after the feed's retry time.
            Err(p) => {
                worker::console_warn!("feed: reading the SKU's name failed ({})", p.detail);
                self.feed_due.set(Some(now + crate::feed::RETRY_MS));
                return;
            }
        };
        let was_due = self.feed_due.get().is_some_and(|d| d <= now);
        let source = sku_source(&sku);
        let r = crate::feed::forward_sku(&storage, &self.env, &source, &sku).await;
        match &r {
            Err(p) => worker::console_warn!("feed: forward failed ({}); retried", p.detail),
            Ok(_) if was_due => self.fed_at.set(Some(now)),
            Ok(_) => {}
        }
        let due = crate::feed::sku_retry_at(&storage.sql(), storage::now_ms()).unwrap_or(None);
        self.feed_due.set(due);
    }
}

/// The ledger's channel of a change to a reservation: the reservation's own.
fn with_channel(meta: &Meta, channel: Channel) -> Meta {
    let name = match channel {
        Channel::Pos => "pos",
        _ => "online",
    };
    Meta {
        channel: meta.channel.clone().or(Some(name.into())),
        ..meta.clone()
    }
}

fn homed_row(h: &Homed) -> Result<Stmt, Problem> {
    let deadline = h.expires_at.unwrap_or(h.created_at);
    Ok((
        RESERVATION_WRITE,
        vec![text(&h.id), text(&serde_json::to_string(h)?), int(deadline)],
    ))
}

/// The deadline of an active hold.
fn deadline(st: &SkuState, hold: &HoldId) -> Option<i64> {
    match st.hold(hold).map(|h| h.state) {
        Some(HoldState::Held { expires_at }) => expires_at.map(|t| t.as_ms()),
        _ => None,
    }
}

/// A homed reservation's status at `now` (core's rule for a one-hold reservation).
fn status_of(st: &SkuState, now: Timestamp, h: &Homed) -> ReservationStatus {
    match h.hold_id() {
        Ok(hold) => single_hold_status(
            st,
            now,
            &hold,
            h.ended,
            h.expires_at.map(Timestamp::from_ms),
        ),
        Err(_) => ReservationStatus::Failed,
    }
}

fn view_of(st: &SkuState, now: Timestamp, h: &Homed) -> Result<ReservationView, Problem> {
    let hold = h.hold_id()?;
    Ok(ReservationView {
        id: h.id.clone(),
        status: status_of(st, now, h),
        expires_at: deadline(st, &hold).or(h.expires_at).map(rfc3339),
        lines: vec![h.line.clone()],
        created_at: rfc3339(h.created_at),
        order_id: h.converted_to.clone(),
    })
}

/// This object's key for core's hash tables: random, drawn once (the
/// JavaScript crypto source, through getrandom) and kept in SQLite (as hex:
/// a JavaScript number cannot hold 64 bits), so ids a client chooses cannot
/// be made to collide in its tables.
fn hash_key(sql: &SqlStorage) -> Result<u64, Problem> {
    let rows: Vec<TextRow> =
        storage::query(sql, "SELECT v FROM meta WHERE k = 'hash_key'", vec![])?;
    if let Some(key) = rows
        .first()
        .and_then(|r| u64::from_str_radix(&r.v, 16).ok())
    {
        return Ok(key);
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| {
        worker::console_error!("no random source: {e}");
        Problem::overloaded("no random source; retry")
    })?;
    let key = u64::from_le_bytes(b);
    storage::exec(
        sql,
        "INSERT OR REPLACE INTO meta (k, v) VALUES ('hash_key', ?)",
        vec![text(&format!("{key:016x}"))],
    )?;
    Ok(key)
}

/// The usable snapshot, the seq of its last event and its length (bytes of
/// JSON), if there is one. A snapshot of another format, one that does not
/// decode, or one that breaks core's invariants is ignored (logged, never
/// its content): the caller then replays the whole log.
fn read_snapshot(sql: &SqlStorage) -> Result<Option<(SkuState, i64, usize)>, Problem> {
    let rows: Vec<SnapshotRow> = storage::query(
        sql,
        "SELECT seq, format, state, parts FROM snapshot WHERE id = 0",
        vec![],
    )?;
    let Some(mut row) = rows.into_iter().next() else {
        return Ok(None);
    };
    if row.parts > 1 {
        let rest: Vec<PartRow> = storage::query(
            sql,
            "SELECT text FROM snapshot_part WHERE n > 0 AND n < ? ORDER BY n",
            vec![int(row.parts)],
        )?;
        if rest.len() as i64 != row.parts - 1 {
            worker::console_error!(
                "snapshot at seq {} has {} of its {} parts; replaying the whole log",
                row.seq,
                rest.len() + 1,
                row.parts
            );
            return Ok(None);
        }
        for p in rest {
            row.state.push_str(&p.text);
        }
    }
    if row.format != SNAPSHOT_FORMAT {
        worker::console_warn!(
            "snapshot at seq {} has format {} (expected {SNAPSHOT_FORMAT}); replaying the whole log",
            row.seq,
            row.format
        );
        return Ok(None);
    }
    let st: SkuState = match serde_json::from_str(&row.state) {
        Ok(st) => st,
        Err(e) => {
            worker::console_error!(
                "snapshot at seq {} does not decode ({e}); replaying the whole log",
                row.seq
            );
            return Ok(None);
        }
    };
    if let Err(why) = st.check_invariants() {
        worker::console_error!(
            "snapshot at seq {} breaks an invariant ({why}); replaying the whole log",
            row.seq
        );
        return Ok(None);
    }
    Ok(Some((st, row.seq, row.state.len())))
}

/// Applies the logged events after `after` to `st`; returns how many.
fn replay(sql: &SqlStorage, st: &mut SkuState, after: i64) -> Result<u64, Problem> {
    let rows: Vec<JsonRow> = storage::query(
        sql,
        "SELECT json FROM events WHERE seq > ? ORDER BY seq",
        vec![int(after)],
    )?;
    let n = rows.len() as u64;
    for row in rows {
        let ev: Event = serde_json::from_str(&row.json).map_err(|e| {
            worker::console_error!("undecodable event in the log: {e}");
            Problem::overloaded("the event log could not be read")
        })?;
        st.apply(&ev);
    }
    Ok(n)
}

#[derive(Deserialize)]
struct PartRow {
    text: String,
}

/// The statements that write snapshot `json` in pieces of at most
/// `part_bytes` (cut at character boundaries; see [`SNAPSHOT_WRITE`]).
fn snapshot_stmts(json: &str, part_bytes: usize, now_ms: i64) -> Vec<storage::Stmt> {
    let parts = storage::split_parts(json, part_bytes);
    let mut stmts = vec![(SNAPSHOT_PART_TRIM, vec![int(parts.len() as i64)])];
    for (n, p) in parts.iter().enumerate().skip(1) {
        stmts.push((SNAPSHOT_PART_WRITE, vec![int(n as i64), text(p)]));
    }
    stmts.push((
        SNAPSHOT_WRITE,
        vec![
            int(SNAPSHOT_FORMAT),
            text(parts[0]),
            int(now_ms),
            int(parts.len() as i64),
        ],
    ));
    stmts
}

/// The snapshot of `st`, if it is sound (a snapshot is never written from a
/// state that breaks core's invariants).
fn snapshot_json(st: &SkuState) -> Result<String, String> {
    st.check_invariants()?;
    serde_json::to_string(st).map_err(|e| e.to_string())
}

/// A command's outcome, with the position it left (after applying).
fn describe(
    st: &SkuState,
    now: Timestamp,
    cmd: &Command,
    result: Result<Vec<Event>, Problem>,
) -> Outcome {
    // A hold command's location is its hold's.
    let location = command_hold(cmd)
        .and_then(|h| st.hold(h))
        .map(|h| h.location.clone())
        .or_else(|| command_location(cmd).cloned());
    Outcome {
        replayed: false,
        result,
        position: location.as_ref().map(|l| st.position_at(now, l)),
        location,
        fed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_is_snapshot_less_often_within_a_bound() {
        assert_eq!(snapshot_every(0), SNAPSHOT_EVERY);
        assert_eq!(snapshot_every(256 * 1024), SNAPSHOT_EVERY);
        assert_eq!(snapshot_every(3 * 1024 * 1024), 3_072);
        assert_eq!(snapshot_every(64 * 1024 * 1024), MAX_SNAPSHOT_EVERY);
    }
}
