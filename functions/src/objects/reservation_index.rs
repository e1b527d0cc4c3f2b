//! `ReservationIndex`: one of `wire::reservation_index::SHARDS` shards, each
//! recording where the reservations whose ids the client chose live (the
//! shard of an id is a fixed hash of it). A row is either a one-SKU
//! reservation's SKU object (`sku`, with the content fingerprint `fp`) or,
//! with no `sku`, the mark that the id is coordinated by its own
//! `Reservation` object.
//!
//! The index is the arbiter of those ids: registering an id that names
//! another reservation (other content, or coordinated elsewhere) asks that
//! reservation's home whether it is still live, and refuses (409) if it is.
//! The common case (a new id, or the same reservation again) reads one row
//! and writes one, with nothing awaited in between, so concurrent requests
//! need no queue; the rare case that awaits its check writes only if the
//! row is still the one it checked.
//!
//! Rows are deleted `RESERVATION_RETENTION_MS` after their reservation's
//! last deadline: the alarm checks each due row with its home (an extension
//! moves the deadline) in batches of [`PRUNE_BATCH`].
//!
//! The rules (what to write, when to ask the home, when an id is taken,
//! which due row goes) are core's, pure and tested there
//! (`omnistock_core::reservation::index`); this object reads, asks, writes.
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::reservation::index::{self, Home, Pointer, Prune, Take, Taken};
use omnistock_core::{Sku, RESERVATION_RETENTION_MS};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::storage::{self, int, opt_text, text};
use crate::http::{parse_rfc3339, Problem};
use crate::wire::reservation::{
    id_taken, CoordinatorAnswer, ReservationRequest, ReservationStatus, ReservationView,
};
use crate::wire::reservation_index::{IndexRequest, Located};
use crate::wire::sku_stock::{self, HomedAnswer, ReservationOp, SkuRequest};
use crate::wire::{self, Namespace};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS pointer (id TEXT PRIMARY KEY, sku TEXT, fp TEXT NOT NULL,
     until INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS pointer_until ON pointer (until)",
];

/// Due rows one alarm checks (in parallel); more due: the alarm comes again.
pub const PRUNE_BATCH: usize = 32;
/// When a row's check failed, the alarm tries again this much later (ms).
const PRUNE_RETRY_MS: i64 = 60_000;

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Row {
    sku: Option<String>,
    fp: String,
    until: i64,
}

impl Row {
    fn pointer(&self) -> Result<Pointer, Problem> {
        Ok(Pointer {
            sku: self.sku.as_deref().map(parse_sku).transpose()?,
            fp: self.fp.clone(),
            until: self.until,
        })
    }
}

#[derive(Deserialize)]
struct DueRow {
    id: String,
    sku: Option<String>,
    until: i64,
}

/// A row `RETURNING` gave back (its column is not needed).
#[derive(Deserialize)]
struct Inserted {}

#[derive(Deserialize)]
struct Earliest {
    until: Option<i64>,
}

#[durable_object]
pub struct ReservationIndex {
    state: State,
    env: Env,
    schema_ok: Cell<bool>,
    /// The alarm this instance knows is set (ms), if any.
    armed: Cell<Option<i64>>,
}

impl DurableObject for ReservationIndex {
    fn new(state: State, env: Env) -> Self {
        ReservationIndex {
            state,
            env,
            schema_ok: Cell::new(false),
            armed: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        match self.prune().await {
            Ok(()) => Response::ok(""),
            // The runtime retries a failed alarm; pruning is idempotent.
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for ReservationIndex {
    async fn receive(&self, msg: &str) -> String {
        let r = match wire::decode::<IndexRequest>(msg) {
            Ok(x) => self.handle(x).await,
            Err(p) => Err(p),
        };
        wire::reply(r)
    }
}

crate::rpc_receiver!(ReservationIndex);

impl ReservationIndex {
    fn ensure_schema(&self) -> Result<(), Problem> {
        storage::create_once(&self.schema_ok, &self.state.storage().sql(), &SCHEMA)
    }

    fn row(&self, id: &str) -> Result<Option<Row>, Problem> {
        self.ensure_schema()?;
        let rows: Vec<Row> = storage::query(
            &self.state.storage().sql(),
            "SELECT sku, fp, until FROM pointer WHERE id = ?",
            vec![text(id)],
        )?;
        Ok(rows.into_iter().next())
    }

    fn put(&self, id: &str, p: &Pointer) -> Result<(), Problem> {
        storage::exec(
            &self.state.storage().sql(),
            "INSERT OR REPLACE INTO pointer (id, sku, fp, until) VALUES (?, ?, ?, ?)",
            vec![
                text(id),
                opt_text(p.sku.as_ref().map(|s| s.as_str())),
                text(&p.fp),
                int(p.until),
            ],
        )
    }

    /// Inserts `row` for `id` unless `id` has a row; whether it did.
    fn insert_new(&self, id: &str, row: &Row) -> Result<bool, Problem> {
        self.ensure_schema()?;
        let inserted: Vec<Inserted> = storage::query(
            &self.state.storage().sql(),
            "INSERT INTO pointer (id, sku, fp, until) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING RETURNING until",
            vec![
                text(id),
                opt_text(row.sku.as_deref()),
                text(&row.fp),
                int(row.until),
            ],
        )?;
        Ok(!inserted.is_empty())
    }

    async fn handle(&self, req: IndexRequest) -> Result<Located, Problem> {
        match req {
            IndexRequest::Lookup { id } => Ok(match self.row(&id)?.and_then(|r| r.sku) {
                Some(s) => Located::Sku {
                    sku: parse_sku(&s)?,
                },
                None => Located::Own,
            }),
            IndexRequest::Register {
                id,
                sku,
                fp,
                ttl_ms,
            } => {
                let until = storage::now_ms() + ttl_ms;
                let want = Row {
                    sku: Some(sku.to_string()),
                    fp,
                    until,
                };
                self.take(&id, want).await?;
                Ok(Located::Sku { sku })
            }
            IndexRequest::Claim { id, until } => {
                let want = Row {
                    sku: None,
                    fp: String::new(),
                    until,
                };
                self.take(&id, want).await?;
                Ok(Located::Own)
            }
        }
    }

    /// Records `want` as the home of `id`, unless `id` names another live
    /// reservation (409). The same reservation again keeps the later deadline.
    /// The rules are core's (`omnistock_core::reservation::index`); this
    /// reads, asks the home, writes.
    async fn take(&self, id: &str, want: Row) -> Result<(), Problem> {
        // A new id (the common case): one statement.
        if self.insert_new(id, &want)? {
            return self.arm(want.until + RESERVATION_RETENTION_MS).await;
        }
        let seen = self.row(id)?;
        let want = want.pointer()?;
        let until = match (
            index::take(
                seen.as_ref().map(Row::pointer).transpose()?.as_ref(),
                want.clone(),
            ),
            &seen,
        ) {
            (Take::Write(p), _) => {
                self.put(id, &p)?;
                p.until
            }
            (Take::Unchanged, Some(r)) => r.until,
            (Take::AskHome, Some(r)) => {
                let home = self.home(id, r.sku.as_deref()).await?;
                index::after_home(home).map_err(|Taken| id_taken(id))?;
                // Checked while awaiting: write only over the row checked.
                if self.row(id)? != seen {
                    return Err(Problem::overloaded(format!(
                        "reservation {id} changed while it was being created; retry"
                    )));
                }
                self.put(id, &want)?;
                want.until
            }
            // (Core asks about or keeps only a row it was given.)
            (Take::Unchanged | Take::AskHome, None) => {
                return Err(Problem::overloaded(format!(
                    "reservation {id}: no row to keep; retry"
                )))
            }
        };
        self.arm(until + RESERVATION_RETENTION_MS).await
    }

    /// What the home of reservation `id` (its SKU object, or its own object
    /// when `sku` is none) says of it. A home that cannot be asked is an
    /// error: never guess "gone".
    async fn home(&self, id: &str, sku: Option<&str>) -> Result<Home, Problem> {
        let sku = match sku {
            Some(s) => parse_sku(s)?,
            None => {
                let own: Result<CoordinatorAnswer, Problem> = wire::call(
                    &self.env,
                    Namespace::Reservation,
                    id,
                    &ReservationRequest::Get,
                )
                .await;
                return match own {
                    Ok(CoordinatorAnswer::Here(a)) => Ok(Home::Live(deadline(&a.view))),
                    Ok(CoordinatorAnswer::Converted { .. }) => Ok(Home::Live(None)),
                    // A pointer of the version before, in the id's own object.
                    Ok(CoordinatorAnswer::Sku { sku }) => self.homed(id, sku).await,
                    Ok(CoordinatorAnswer::Registered) => Ok(Home::Gone),
                    // Failed, reclaimed or never made: the id is free.
                    Err(p) if p.status < 500 => Ok(Home::Gone),
                    Err(p) => Err(p),
                };
            }
        };
        self.homed(id, sku).await
    }

    async fn homed(&self, id: &str, sku: Sku) -> Result<Home, Problem> {
        let op = SkuRequest::Reservation(ReservationOp::Get { id: id.to_string() });
        match sku_stock::call::<HomedAnswer>(&self.env, &sku, &op).await {
            Ok(HomedAnswer::Here(a)) => Ok(Home::Live(deadline(&a.view))),
            Ok(HomedAnswer::Converted { .. }) => Ok(Home::Live(None)),
            Ok(HomedAnswer::NotHere) | Err(Problem { status: 404, .. }) => Ok(Home::Gone),
            Err(p) => Err(p),
        }
    }

    /// Sets the alarm for `at` unless this instance knows it is set earlier.
    async fn arm(&self, at: i64) -> Result<(), Problem> {
        if self.armed.get().is_some_and(|set| set <= at) {
            return Ok(());
        }
        let st = self.state.storage();
        match st.get_alarm().await? {
            Some(set) if set <= at => self.armed.set(Some(set)),
            _ => {
                storage::alarm_at(&st, Some(at)).await?;
                self.armed.set(Some(at));
            }
        }
        Ok(())
    }

    /// Deletes the rows whose reservation ended `RESERVATION_RETENTION_MS`
    /// ago at its home, keeps (with the later deadline) the extended ones,
    /// and points the alarm at the next due row.
    async fn prune(&self) -> Result<(), Problem> {
        self.armed.set(None);
        self.ensure_schema()?;
        let now = storage::now_ms();
        let sql = self.state.storage().sql();
        let due: Vec<DueRow> = storage::query(
            &sql,
            "SELECT id, sku, until FROM pointer WHERE until <= ? ORDER BY until LIMIT ?",
            vec![int(now - RESERVATION_RETENTION_MS), int(PRUNE_BATCH as i64)],
        )?;
        let checks = join_all(due.iter().map(|r| self.home(&r.id, r.sku.as_deref()))).await;
        let mut failed = false;
        for (r, c) in due.iter().zip(checks) {
            // Only over the row as read: a create may have taken the id since.
            // Kept while its deadline (moved by extensions) is within retention;
            // a converted reservation is its order's from then on.
            match c.map(|home| index::prune(home, now)) {
                Ok(Prune::Keep(later)) => storage::exec(
                    &sql,
                    "UPDATE pointer SET until = ? WHERE id = ? AND until = ?",
                    vec![int(later), text(&r.id), int(r.until)],
                )?,
                Ok(Prune::Delete) => storage::exec(
                    &sql,
                    "DELETE FROM pointer WHERE id = ? AND until = ?",
                    vec![text(&r.id), int(r.until)],
                )?,
                Err(p) => {
                    worker::console_warn!(
                        "reservation index: checking {} failed: {}",
                        r.id,
                        p.detail
                    );
                    failed = true;
                }
            }
        }
        let next: Vec<Earliest> =
            storage::query(&sql, "SELECT MIN(until) AS until FROM pointer", vec![])?;
        let mut at = next
            .first()
            .and_then(|e| e.until)
            .map(|u| u + RESERVATION_RETENTION_MS);
        if failed {
            at = Some(at.map_or(now + PRUNE_RETRY_MS, |a| a.max(now + PRUNE_RETRY_MS)));
        } else if due.len() == PRUNE_BATCH {
            at = Some(now + 1_000);
        }
        storage::alarm_at(&self.state.storage(), at).await?;
        self.armed.set(at);
        Ok(())
    }
}

fn parse_sku(s: &str) -> Result<Sku, Problem> {
    Sku::parse(s).map_err(|e| Problem::overloaded(format!("a stored pointer's sku: {e}")))
}

/// The deadline of a reservation that may still move (pending or active:
/// an extension moves it); an ended one's row goes by its own `until`.
fn deadline(v: &ReservationView) -> Option<i64> {
    match v.status {
        ReservationStatus::Pending | ReservationStatus::Active => {
            v.expires_at.as_deref().and_then(parse_rfc3339)
        }
        _ => None,
    }
}
