//! `SkuStock`: the one Durable Object that owns a SKU's stock, keyed by
//! `id_from_name(sku)`.
//!
//! SQLite is the truth: `events` (the log: audit trail and ledger, never
//! pruned), `snapshot` (one row: the state after the event `seq`, rewritten
//! every [`SNAPSHOT_EVERY`] events) and `ops` (the first result of every
//! command with a client id, so a retry answers exactly as the first time;
//! sales kept forever, the others [`OPS_KEEP_MS`]). Memory is a cache that
//! may vanish between requests; a load reads the snapshot and replays the
//! fewer than [`SNAPSHOT_EVERY`] events after it. Every rule is
//! `omnistock_core::SkuState`'s: this shell decides nothing itself. For each
//! request: load, `expire(now)`, `decide`, write the events and results (and
//! when due a snapshot, and a bounded batch of `ops` pruning) in one SQLite
//! transaction with no await in between, `apply`, then point the alarm at
//! `next_deadline()` (an absolute time).
use std::cell::{Cell, RefCell};

use omnistock_core::sku::Resolution;
use omnistock_core::{
    AdjustReason, Channel, Command, Event, HoldId, LocationId, OpId, Position, Rejection, SaleId,
    SkuState, TerminalId, Timestamp,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Request, Response, ScheduledTime, SqlStorage, State,
    Storage,
};

use crate::db::{self, int, opt_text, text, Stmt};
use crate::http::{envelope_response, Problem};
use crate::rpc;

/// A command as it crosses from the Worker (or a coordinator) to the object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WireCommand {
    Receive {
        op: OpId,
        location: LocationId,
        qty: i64,
    },
    Adjust {
        op: OpId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
        expected_version: Option<u64>,
    },
    SetSafetyStock {
        op: OpId,
        location: LocationId,
        qty: i64,
    },
    Count {
        op: OpId,
        location: LocationId,
        counted: i64,
        counted_at: i64,
    },
    Hold {
        hold: HoldId,
        location: LocationId,
        qty: i64,
        channel: Channel,
        ttl_ms: Option<i64>,
    },
    Extend {
        hold: HoldId,
        ttl_ms: i64,
    },
    Release {
        hold: HoldId,
    },
    Commit {
        hold: HoldId,
    },
    Fulfill {
        hold: HoldId,
    },
    Sell {
        sale: SaleId,
        terminal: TerminalId,
        device_seq: u64,
        location: LocationId,
        qty: i64,
        occurred_at: i64,
    },
}

impl WireCommand {
    fn to_core(&self) -> Command {
        match self.clone() {
            WireCommand::Receive { op, location, qty } => Command::Receive { op, location, qty },
            WireCommand::Adjust {
                op,
                location,
                delta,
                reason,
                expected_version,
            } => Command::Adjust {
                op,
                location,
                delta,
                reason,
                expected_version,
            },
            WireCommand::SetSafetyStock { op, location, qty } => {
                Command::SetSafetyStock { op, location, qty }
            }
            WireCommand::Count {
                op,
                location,
                counted,
                counted_at,
            } => Command::Count {
                op,
                location,
                counted,
                counted_at: Timestamp::from_ms(counted_at),
            },
            WireCommand::Hold {
                hold,
                location,
                qty,
                channel,
                ttl_ms,
            } => Command::Hold {
                hold,
                location,
                qty,
                channel,
                ttl_ms,
            },
            WireCommand::Extend { hold, ttl_ms } => Command::Extend { hold, ttl_ms },
            WireCommand::Release { hold } => Command::Release { hold },
            WireCommand::Commit { hold } => Command::Commit { hold },
            WireCommand::Fulfill { hold } => Command::Fulfill { hold },
            WireCommand::Sell {
                sale,
                terminal,
                device_seq,
                location,
                qty,
                occurred_at,
            } => Command::Sell {
                sale,
                terminal,
                device_seq,
                location,
                qty,
                occurred_at: Timestamp::from_ms(occurred_at),
            },
        }
    }

    /// The key under which the first result is kept (commands with a client id).
    fn result_key(&self) -> Option<String> {
        match self {
            WireCommand::Receive { op, .. }
            | WireCommand::Adjust { op, .. }
            | WireCommand::SetSafetyStock { op, .. }
            | WireCommand::Count { op, .. } => Some(format!("op:{op}")),
            WireCommand::Hold { hold, .. } => Some(format!("hold:{hold}")),
            WireCommand::Sell { sale, .. } => Some(format!("sale:{sale}")),
            _ => None,
        }
    }

    fn hold(&self) -> Option<&HoldId> {
        match self {
            WireCommand::Hold { hold, .. }
            | WireCommand::Extend { hold, .. }
            | WireCommand::Release { hold }
            | WireCommand::Commit { hold }
            | WireCommand::Fulfill { hold } => Some(hold),
            _ => None,
        }
    }

    fn location(&self) -> Option<&LocationId> {
        match self {
            WireCommand::Receive { location, .. }
            | WireCommand::Adjust { location, .. }
            | WireCommand::SetSafetyStock { location, .. }
            | WireCommand::Count { location, .. }
            | WireCommand::Hold { location, .. }
            | WireCommand::Sell { location, .. } => Some(location),
            _ => None,
        }
    }
}

/// Who did it, for the ledger.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub actor: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    pub cmds: Vec<WireCommand>,
    pub meta: Meta,
}

/// Why a command was refused, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRejection {
    /// The API error code (`Rejection::code`).
    pub code: String,
    /// The kind the shell acts on: `insufficient_stock`, `hold_resolved`, `ttl_out_of_range`...
    pub kind: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl WireRejection {
    fn from_core(r: &Rejection) -> Self {
        let mut w = WireRejection {
            code: r.code().to_string(),
            kind: String::new(),
            detail: r.to_string(),
            requested: None,
            available: None,
            expected: None,
            actual: None,
            resolution: None,
        };
        // The few kinds the shell acts on; every other refusal keeps core's code.
        w.kind = match r {
            Rejection::TtlOutOfRange { .. } => "ttl_out_of_range",
            Rejection::Exists => "exists",
            Rejection::HoldNotFound => "hold_not_found",
            Rejection::HoldResolved { how } => {
                w.resolution = Some(resolution_name(*how).to_string());
                "hold_resolved"
            }
            Rejection::VersionConflict { expected, actual } => {
                w.expected = Some(*expected);
                w.actual = Some(*actual);
                "version_conflict"
            }
            Rejection::InsufficientStock {
                requested,
                available,
            } => {
                w.requested = Some(*requested);
                w.available = Some(*available);
                "insufficient_stock"
            }
            _ => "other",
        }
        .to_string();
        w
    }

    /// The HTTP problem for a rejection the caller does not handle itself.
    pub fn to_problem(&self) -> Problem {
        let status = match self.code.as_str() {
            "not_found" => 404,
            "invalid_transition"
            | "version_conflict"
            | "insufficient_stock"
            | "idempotency_key_reused" => 409,
            "overloaded" => 503,
            _ => 400,
        };
        let mut p = Problem::new(status, &self.code, self.detail.clone());
        if self.kind == "version_conflict" {
            p = p
                .with("expected_version", self.expected)
                .with("version", self.actual);
        }
        p
    }
}

pub fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::Released => "released",
        Resolution::Expired => "expired",
        Resolution::Fulfilled => "fulfilled",
        #[allow(unreachable_patterns)]
        _ => "resolved",
    }
}

/// What one command did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    /// True when the command had already been applied: `events` are the first time's.
    #[serde(default)]
    pub replayed: bool,
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub rejection: Option<WireRejection>,
    /// For hold commands: whether the hold is active after the command, and its deadline.
    #[serde(default)]
    pub hold_active: Option<bool>,
    #[serde(default)]
    pub hold_expires_at: Option<i64>,
    /// The position the command touched, after it (at the time of the answer).
    #[serde(default)]
    pub location: Option<LocationId>,
    #[serde(default)]
    pub position: Option<Position>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadRequest {
    /// Only these locations; `None` for every location with a position.
    #[serde(default)]
    pub locations: Option<Vec<LocationId>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadAnswer {
    pub now: i64,
    pub positions: Vec<(LocationId, Position)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LedgerRequest {
    #[serde(default)]
    pub location: Option<LocationId>,
    /// Only entries with a sequence number above this.
    #[serde(default)]
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub location: Option<String>,
    pub json: String,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub reference: Option<String>,
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[derive(Deserialize)]
struct ResultRow {
    result: String,
}

#[derive(Deserialize)]
struct SnapshotRow {
    seq: i64,
    format: i64,
    state: String,
}

/// A snapshot is written once this many events have been logged since the
/// last one, in the same transaction as the events that reach the count. A
/// load therefore replays fewer than this many events after the snapshot.
pub const SNAPSHOT_EVERY: u64 = 256;

/// The format of `snapshot.state`: the serde JSON of `SkuState`. Bump it when
/// that shape changes incompatibly; a snapshot of another format is ignored
/// (full replay) and replaced by the next one written.
pub const SNAPSHOT_FORMAT: i64 = 1;

/// How long `ops` rows other than sales are kept (by the time they were
/// written): API.md keeps Idempotency-Keys at least 24 h, core remembers op
/// and hold ids for `RETENTION_MS` (24 h), and the Idempotency objects keep
/// answers 48 h. Past this, a retry is never `Exists` for the op ids, and a
/// hold's answer is described from the state anyway. Sale rows (`sale:`) are
/// kept forever (sale ids are idempotent forever).
pub const OPS_KEEP_MS: i64 = 48 * 3_600_000;

/// At most this many `ops` rows are pruned per write (bounded work).
pub const OPS_PRUNE_BATCH: i64 = 100;

/// Deletes up to `OPS_PRUNE_BATCH` expired non-sale `ops` rows. The
/// `substr(id, 1, 5) <> 'sale:'` term matches the partial index `ops_prunable`
/// word for word, so SQLite uses it and never walks the sale rows.
const OPS_PRUNE: &str = "DELETE FROM ops WHERE id IN (
    SELECT id FROM ops WHERE substr(id, 1, 5) <> 'sale:' AND at < ? ORDER BY at LIMIT ?)";

/// The snapshot row, written after the events of the same transaction: its
/// `seq` is the last event it includes.
const SNAPSHOT_WRITE: &str = "INSERT OR REPLACE INTO snapshot (id, seq, format, state, at)
    VALUES (0, (SELECT coalesce(max(seq), 0) FROM events), ?, ?, ?)";

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
];

#[durable_object]
pub struct SkuStock {
    state: State,
    /// The replayed state: a cache of the event log.
    mem: RefCell<Option<SkuState>>,
    /// Events logged since the last snapshot was written or attempted (all
    /// replayed events after a load that found no usable snapshot).
    since_snapshot: Cell<u64>,
    /// The alarm last asked for: `None` when unknown (after a start or a failure).
    alarm_at: Cell<Option<Option<i64>>>,
    schema_ok: Cell<bool>,
}

impl DurableObject for SkuStock {
    fn new(state: State, _env: Env) -> Self {
        SkuStock {
            state,
            mem: RefCell::new(None),
            since_snapshot: Cell::new(0),
            alarm_at: Cell::new(None),
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let op = rpc::op_of(&req);
        let body = match req.text().await {
            Ok(b) => b,
            Err(e) => return envelope_response::<()>(Err(e.into())),
        };
        match op.as_str() {
            "exec" => {
                let r = match serde_json::from_str::<ExecRequest>(&body) {
                    Ok(x) => self.exec(x),
                    Err(e) => Err(Problem::invalid(format!("bad exec request: {e}"))),
                };
                if r.is_ok() {
                    self.sync_alarm().await;
                }
                envelope_response(r)
            }
            "read" => {
                let r = match serde_json::from_str::<ReadRequest>(&body) {
                    Ok(x) => self.read(x),
                    Err(e) => Err(Problem::invalid(format!("bad read request: {e}"))),
                };
                self.sync_alarm().await;
                envelope_response(r)
            }
            "ledger" => {
                let r = match serde_json::from_str::<LedgerRequest>(&body) {
                    Ok(x) => self.ledger(x),
                    Err(e) => Err(Problem::invalid(format!("bad ledger request: {e}"))),
                };
                envelope_response(r)
            }
            _ => envelope_response::<()>(Err(Problem::not_found("no such operation"))),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // Inside alarm() no alarm is set any more.
        self.alarm_at.set(Some(None));
        let r = self.exec(ExecRequest {
            cmds: Vec::new(),
            meta: Meta {
                actor: "system".into(),
                channel: None,
                reference: Some("alarm".into()),
                reason: None,
            },
        });
        self.sync_alarm().await;
        match r {
            Ok(_) => Response::ok(""),
            // An error makes the runtime retry the alarm: expiry is idempotent.
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

impl SkuStock {
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            let sql = self.state.storage().sql();
            for q in SCHEMA {
                db::exec(&sql, q, Vec::new())?;
            }
            self.schema_ok.set(true);
        }
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
        let (mut st, after) = match read_snapshot(&sql)? {
            Some((st, seq)) => (st, seq),
            None => (SkuState::new(), 0),
        };
        let mut replayed = replay(&sql, &mut st, after)?;
        if after > 0 && st.events_applied() != after as u64 + replayed {
            // The snapshot does not account for the log before it: trust the log.
            worker::console_error!(
                "snapshot at seq {after} does not match the event log; replaying all of it"
            );
            st = SkuState::new();
            replayed = replay(&sql, &mut st, 0)?;
        }
        *self.mem.borrow_mut() = Some(st);
        self.since_snapshot.set(replayed);
        Ok(())
    }

    /// Records `events` (and `extra` statements, the command's result) in one
    /// transaction, with a snapshot when [`SNAPSHOT_EVERY`] events have been
    /// logged since the last one and a batch of `ops` pruning; then applies
    /// them to `st`. On an error nothing is written and `st` is unchanged
    /// (the caller drops memory anyway).
    fn record(
        &self,
        storage: &Storage,
        st: &mut SkuState,
        now: Timestamp,
        events: &[Event],
        meta: &Meta,
        extra: Vec<Stmt>,
    ) -> Result<(), Problem> {
        if events.is_empty() && extra.is_empty() {
            return Ok(());
        }
        let mut stmts = event_stmts(events, meta);
        stmts.extend(extra);
        stmts.push((
            OPS_PRUNE,
            vec![int(now.as_ms() - OPS_KEEP_MS), int(OPS_PRUNE_BATCH)],
        ));
        let mut since = self.since_snapshot.get() + events.len() as u64;
        let next = if since >= SNAPSHOT_EVERY {
            since = 0;
            let mut next = st.clone();
            for e in events {
                next.apply(e);
            }
            match snapshot_json(&next) {
                Ok(json) => {
                    stmts.push((
                        SNAPSHOT_WRITE,
                        vec![int(SNAPSHOT_FORMAT), text(&json), int(now.as_ms())],
                    ));
                    Some(next)
                }
                Err(why) => {
                    // The log stays the truth; try again after another
                    // SNAPSHOT_EVERY events (not on every write: bounded work).
                    worker::console_error!("no snapshot written: {why}");
                    None
                }
            }
        } else {
            None
        };
        db::atomically(storage, stmts)?;
        match next {
            Some(next) => *st = next,
            None => {
                for e in events {
                    st.apply(e);
                }
            }
        }
        self.since_snapshot.set(since);
        Ok(())
    }

    /// Runs the commands in order. Synchronous from load to the last write:
    /// no other request interleaves.
    fn exec(&self, req: ExecRequest) -> Result<Vec<Outcome>, Problem> {
        let r = self.exec_inner(req);
        if r.is_err() {
            // Memory may now differ from SQLite: drop it, reload next time.
            *self.mem.borrow_mut() = None;
        }
        r
    }

    fn exec_inner(&self, req: ExecRequest) -> Result<Vec<Outcome>, Problem> {
        self.load()?;
        let now = Timestamp::from_ms(db::now_ms());
        let storage = self.state.storage();
        let sql = storage.sql();
        let mut guard = self.mem.borrow_mut();
        let st = guard
            .as_mut()
            .ok_or_else(|| Problem::overloaded("state not loaded"))?;

        let system = Meta {
            actor: "system".into(),
            channel: None,
            reference: Some("expiry".into()),
            reason: None,
        };
        let expired = st.expire(now);
        if !expired.is_empty() {
            self.record(&storage, st, now, &expired, &system, Vec::new())?;
        }

        let mut out = Vec::with_capacity(req.cmds.len());
        for cmd in &req.cmds {
            let core_cmd = cmd.to_core();
            let outcome = match st.decide(now, &core_cmd) {
                Ok(events) => {
                    let mut o = Outcome {
                        ok: true,
                        replayed: false,
                        events: events.clone(),
                        rejection: None,
                        hold_active: None,
                        hold_expires_at: None,
                        location: None,
                        position: None,
                    };
                    let mut result = Vec::new();
                    if let Some(key) = cmd.result_key() {
                        result.push((
                            "INSERT OR REPLACE INTO ops (id, result, at) VALUES (?, ?, ?)",
                            vec![
                                text(&key),
                                text(&serde_json::to_string(&o)?),
                                int(now.as_ms()),
                            ],
                        ));
                    }
                    self.record(&storage, st, now, &events, &req.meta, result)?;
                    o.events = events;
                    o
                }
                Err(Rejection::Exists) => {
                    let stored = match cmd.result_key() {
                        Some(key) => db::query::<ResultRow>(
                            &sql,
                            "SELECT result FROM ops WHERE id = ?",
                            vec![text(&key)],
                        )?
                        .into_iter()
                        .next()
                        .and_then(|r| serde_json::from_str::<Outcome>(&r.result).ok()),
                        None => None,
                    };
                    let mut o = stored.unwrap_or(Outcome {
                        ok: true,
                        replayed: true,
                        events: Vec::new(),
                        rejection: None,
                        hold_active: None,
                        hold_expires_at: None,
                        location: None,
                        position: None,
                    });
                    o.replayed = true;
                    o
                }
                Err(r) => Outcome {
                    ok: false,
                    replayed: false,
                    events: Vec::new(),
                    rejection: Some(WireRejection::from_core(&r)),
                    hold_active: None,
                    hold_expires_at: None,
                    location: None,
                    position: None,
                },
            };
            out.push(describe(st, now, cmd, outcome));
        }
        Ok(out)
    }

    fn read(&self, req: ReadRequest) -> Result<ReadAnswer, Problem> {
        // Expire first so the log shows it; a read never shows a lapsed hold anyway.
        self.exec(ExecRequest {
            cmds: Vec::new(),
            meta: Meta {
                actor: "system".into(),
                ..Meta::default()
            },
        })?;
        let now = Timestamp::from_ms(db::now_ms());
        let guard = self.mem.borrow();
        let st = guard
            .as_ref()
            .ok_or_else(|| Problem::overloaded("state not loaded"))?;
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
    }

    fn ledger(&self, req: LedgerRequest) -> Result<Vec<LedgerEntry>, Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let limit = req.limit.clamp(1, 1000);
        let after = req.after.unwrap_or(0);
        match &req.location {
            Some(l) => db::query(
                &sql,
                "SELECT seq, at, kind, location, json, actor, channel, reference, reason FROM events
                 WHERE location = ? AND seq > ? ORDER BY seq LIMIT ?",
                vec![text(l.as_str()), int(after), int(limit)],
            ),
            None => db::query(
                &sql,
                "SELECT seq, at, kind, location, json, actor, channel, reference, reason FROM events
                 WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![int(after), int(limit)],
            ),
        }
    }

    /// Points the alarm at the earliest deadline (absolute time), or clears it.
    /// The value is recorded before the await: storage calls apply in the
    /// order they are issued, so the last one issued wins.
    async fn sync_alarm(&self) {
        let want = match self.mem.borrow().as_ref() {
            Some(st) => st.next_deadline().map(|t| t.as_ms()),
            None => return,
        };
        if self.alarm_at.get() == Some(want) {
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

/// The usable snapshot and the seq of its last event, if there is one. A
/// snapshot of another format, one that does not decode, or one that breaks
/// core's invariants is ignored (logged, never its content): the caller then
/// replays the whole log.
fn read_snapshot(sql: &SqlStorage) -> Result<Option<(SkuState, i64)>, Problem> {
    let rows: Vec<SnapshotRow> = db::query(
        sql,
        "SELECT seq, format, state FROM snapshot WHERE id = 0",
        vec![],
    )?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
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
    Ok(Some((st, row.seq)))
}

/// Applies the logged events after `after` to `st`; returns how many.
fn replay(sql: &SqlStorage, st: &mut SkuState, after: i64) -> Result<u64, Problem> {
    let rows: Vec<JsonRow> = db::query(
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

/// The snapshot of `st`, if it is sound (a snapshot is never written from a
/// state that breaks core's invariants).
fn snapshot_json(st: &SkuState) -> Result<String, String> {
    st.check_invariants()?;
    serde_json::to_string(st).map_err(|e| e.to_string())
}

/// Fills the hold and position fields of an outcome from the current state.
fn describe(st: &SkuState, now: Timestamp, cmd: &WireCommand, mut o: Outcome) -> Outcome {
    if let Some(h) = cmd.hold() {
        match st.hold(h) {
            Some(hold) => {
                let lapsed = matches!(
                    hold.state,
                    omnistock_core::sku::HoldState::Held { expires_at: Some(t) } if t <= now
                );
                o.hold_active = Some(!lapsed);
                o.hold_expires_at = match hold.state {
                    omnistock_core::sku::HoldState::Held { expires_at } => {
                        expires_at.map(|t| t.as_ms())
                    }
                    _ => None,
                };
                o.location = Some(hold.location.clone());
            }
            None => o.hold_active = Some(false),
        }
    }
    if o.location.is_none() {
        o.location = cmd.location().cloned();
    }
    if let Some(l) = &o.location {
        o.position = Some(st.position_at(now, l));
    }
    o
}

/// The rows that record `events` (the location of a hold event is the hold's).
fn event_stmts(events: &[Event], meta: &Meta) -> Vec<Stmt> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let location = event_location(e);
        let json = serde_json::to_string(e).unwrap_or_default();
        out.push((
            "INSERT INTO events (at, kind, location, json, actor, channel, reference, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                int(e.at().as_ms()),
                text(e.name()),
                opt_text(location.as_deref()),
                text(&json),
                text(&meta.actor),
                opt_text(meta.channel.as_deref()),
                opt_text(meta.reference.as_deref()),
                opt_text(meta.reason.as_deref()),
            ],
        ));
    }
    out
}

fn event_location(e: &Event) -> Option<String> {
    // Every event that touches a position names its location.
    match serde_json::to_value(e) {
        Ok(v) => v
            .get("location")
            .or_else(|| v.get("to"))
            .and_then(|l| l.as_str())
            .map(str::to_string),
        Err(_) => None,
    }
}
