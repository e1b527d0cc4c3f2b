//! `Transfer`: one object per transfer id. It stores core's transfer
//! coordinator (`omnistock_core::transfer::Transfer`, sans-IO) as one JSON
//! row, sends what `poll_transmit` gives to the SKU objects (in parallel,
//! after the row is durable), feeds each `TransferReply` to
//! `handle_reply`, and points the alarm at `poll_timeout`, so a ship or
//! receipt a request could not finish (a crash, a failed call) is driven to
//! completion. Every answer is kept with its Idempotency-Key in the same
//! transaction as the row. Requests run one at a time (a FIFO queue).
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::transfer::{
    CreateRequest as CoreCreate, Transfer as Machine, TransferError, TransferReply,
};
use omnistock_core::Timestamp;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage::{self, int, text};
use crate::http::Problem;
use crate::wire::sku_stock::{self, Meta, SkuRequest};
use crate::wire::transfer::{problem, reference, view, TransferAnswer, TransferRequest};
use crate::wire::{self, Idem};

/// Most rounds of messages one request drives before it answers "retry"
/// (the alarm goes on driving).
pub const MAX_ROUNDS: usize = 6;

/// How long an answer is kept for its Idempotency-Key (API.md: at least 24 h).
pub const KEYS_KEEP_MS: i64 = 48 * 3_600_000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS transfer (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, fp TEXT NOT NULL,
        answer TEXT NOT NULL, at INTEGER NOT NULL)",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    machine: Machine,
    note: Option<String>,
    /// Who drives the SKU commands (the ledger's actor), and the reference.
    meta: Meta,
}

#[derive(Deserialize)]
struct KeyRow {
    fp: String,
    answer: String,
}

/// A kept answer.
type Answer = Result<TransferAnswer, Problem>;

#[durable_object]
pub struct Transfer {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Transfer {
    fn new(state: State, env: Env) -> Self {
        Transfer {
            state,
            env,
            serial: Serial::default(),
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        match self.on_alarm().await {
            Ok(()) => Response::ok(""),
            // The runtime retries a failed alarm; every step is idempotent.
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for Transfer {
    async fn receive(&self, msg: &str) -> String {
        let r = match wire::decode::<TransferRequest>(msg) {
            Ok(x) => self.handle(x).await,
            Err(p) => Err(p),
        };
        wire::reply(r)
    }
}

crate::rpc_receiver!(Transfer);

fn ok(status: u16, s: &Stored) -> Answer {
    Ok(TransferAnswer {
        status,
        replayed: false,
        body: view(&s.machine, s.note.as_deref()),
    })
}

impl Transfer {
    fn ensure_schema(&self) -> Result<(), Problem> {
        storage::create_once(&self.schema_ok, &self.state.storage().sql(), SCHEMA)
    }

    fn load(&self) -> Result<Option<Stored>, Problem> {
        self.ensure_schema()?;
        storage::load_json(&self.state.storage().sql(), "transfer", "t")
    }

    /// Stores the row and, when given, the answer under its key, in one transaction.
    fn save(&self, s: &Stored, kept: Option<(&Idem, &Answer)>) -> Result<(), Problem> {
        let now = storage::now_ms();
        let mut stmts = storage::json_row_stmts(
            "INSERT OR REPLACE INTO transfer (k, json) VALUES (?, ?)",
            "DELETE FROM transfer WHERE k > ? AND k < ?",
            "t",
            &serde_json::to_string(s)?,
            storage::piece_bytes(&self.env),
        );
        if let Some((idem, answer)) = kept {
            stmts.push((
                "INSERT OR REPLACE INTO keys (key, fp, answer, at) VALUES (?, ?, ?, ?)",
                vec![
                    text(&idem.key),
                    text(&idem.fp),
                    text(&serde_json::to_string(answer)?),
                    int(now),
                ],
            ));
            stmts.push((
                "DELETE FROM keys WHERE at < ?",
                vec![int(now - KEYS_KEEP_MS)],
            ));
        }
        storage::atomically(&self.state.storage(), stmts)
    }

    /// The kept answer of `idem`: a replay, or 409 if the key came with another request.
    fn kept(&self, idem: &Idem) -> Result<Option<Answer>, Problem> {
        self.ensure_schema()?;
        let rows: Vec<KeyRow> = storage::query(
            &self.state.storage().sql(),
            "SELECT fp, answer FROM keys WHERE key = ?",
            vec![text(&idem.key)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        if row.fp != idem.fp {
            return Err(Problem::key_reused());
        }
        let answer: Answer = serde_json::from_str(&row.answer)?;
        Ok(Some(match answer {
            Ok(mut a) => {
                a.replayed = true;
                Ok(a)
            }
            Err(mut p) => {
                p.replayed = true;
                Err(p)
            }
        }))
    }

    async fn alarm_at(&self, at: Option<Timestamp>) -> Result<(), Problem> {
        storage::alarm_at(&self.state.storage(), at.map(|t| t.as_ms())).await
    }

    async fn handle(&self, req: TransferRequest) -> Answer {
        let _turn = self.serial.turn().await?;
        let now = Timestamp::from_ms(storage::now_ms());
        let idem = match &req {
            TransferRequest::Create { idem, .. }
            | TransferRequest::Ship { idem, .. }
            | TransferRequest::Receive { idem, .. }
            | TransferRequest::Cancel { idem, .. } => Some(idem.clone()),
            TransferRequest::Get { .. } => None,
        };
        if let Some(i) = &idem {
            if let Some(a) = self.kept(i)? {
                return a;
            }
        }
        let stored = self.load()?;
        let not_found = || Problem::not_found("no such transfer");
        let (s, answer) = match (req, stored) {
            (TransferRequest::Get { .. }, Some(s)) => return ok(200, &s),
            (TransferRequest::Get { .. }, None) => return Err(not_found()),
            (
                TransferRequest::Create {
                    id,
                    from,
                    to,
                    lines,
                    note,
                    fp,
                    meta,
                    ..
                },
                stored,
            ) => {
                let core = CoreCreate {
                    id: id.clone(),
                    from,
                    to,
                    lines,
                    fp: storage::fp_u64(&fp),
                };
                match stored {
                    Some(s) => {
                        let a = match s.machine.check_same(&core) {
                            Ok(()) => ok(200, &s),
                            Err(TransferError::Conflict) => Err(Problem::new(
                                409,
                                "idempotency_key_reused",
                                format!("transfer {id} already exists with other content"),
                            )),
                            Err(e) => Err(problem(&e, Some(&s.machine))),
                        };
                        (s, a)
                    }
                    None => {
                        let machine =
                            Machine::new(now, &meta.actor, core).map_err(|e| problem(&e, None))?;
                        let s = Stored {
                            machine,
                            note,
                            meta: Meta {
                                reference: Some(reference(&id)),
                                ..meta
                            },
                        };
                        let a = ok(201, &s);
                        (s, a)
                    }
                }
            }
            (_, None) => return Err(not_found()),
            (TransferRequest::Ship { meta, .. }, Some(mut s)) => {
                s.meta.actor = meta.actor.clone();
                let a = match s.machine.handle_ship(now, &meta.actor) {
                    Err(e) => Err(problem(&e, Some(&s.machine))),
                    Ok(_) => {
                        self.drive(&mut s).await?;
                        match s.machine.ship_outcome() {
                            None => Err(Problem::overloaded(
                                "the shipment is still being confirmed; retry with the same key",
                            )),
                            Some(Ok(())) => ok(200, &s),
                            Some(Err(e)) => Err(problem(&e, Some(&s.machine))),
                        }
                    }
                };
                (s, a)
            }
            (
                TransferRequest::Receive {
                    lines,
                    close,
                    meta,
                    idem,
                    ..
                },
                Some(mut s),
            ) => {
                s.meta.actor = meta.actor.clone();
                let a = match s
                    .machine
                    .handle_receive(now, &meta.actor, &idem.key, &lines, close)
                {
                    Err(e) => Err(problem(&e, Some(&s.machine))),
                    Ok(_) => {
                        self.drive(&mut s).await?;
                        if s.machine.is_settled() {
                            ok(200, &s)
                        } else {
                            Err(Problem::overloaded(
                                "the receipt is still being applied; retry with the same key",
                            ))
                        }
                    }
                };
                (s, a)
            }
            (TransferRequest::Cancel { meta, .. }, Some(mut s)) => {
                let a = match s.machine.handle_cancel(now, &meta.actor) {
                    Ok(()) => ok(200, &s),
                    Err(e) => Err(problem(&e, Some(&s.machine))),
                };
                (s, a)
            }
        };
        // Keep final answers only: a 503 is retried with the same key.
        let keep = match &answer {
            Ok(_) => true,
            Err(p) => p.status == 409,
        };
        self.save(&s, idem.as_ref().filter(|_| keep).map(|i| (i, &answer)))?;
        self.alarm_at(s.machine.poll_timeout()).await?;
        answer
    }

    /// Sends what the machine has due, feeds the replies, at most
    /// [`MAX_ROUNDS`] times. A failed call is not fed: the machine resends
    /// on its own timer (the alarm).
    async fn drive(&self, s: &mut Stored) -> Result<(), Problem> {
        for _ in 0..MAX_ROUNDS {
            let now = Timestamp::from_ms(storage::now_ms());
            let out = s.machine.poll_transmit(now);
            if out.is_empty() {
                break;
            }
            // The alarm first (a wake-up with nothing due does nothing), then
            // the row: durable before any message, so a crash from here on is
            // resumed from this row by the alarm, or by a retry.
            self.alarm_at(s.machine.poll_timeout()).await?;
            self.save(s, None)?;
            let meta = &s.meta;
            let replies = join_all(out.iter().map(|t| {
                let req = SkuRequest::Transfer {
                    cmd: t.command.clone(),
                    meta: meta.clone(),
                };
                let sku = t.sku.clone();
                let env = &self.env;
                async move { sku_stock::call::<TransferReply>(env, &sku, &req).await }
            }))
            .await;
            let now = Timestamp::from_ms(storage::now_ms());
            for (t, r) in out.iter().zip(replies) {
                match r {
                    Ok(reply) => s.machine.handle_reply(now, t.tag, &reply),
                    Err(p) => worker::console_warn!(
                        "a transfer message failed ({}); resent later",
                        p.detail
                    ),
                }
            }
        }
        Ok(())
    }

    async fn on_alarm(&self) -> Result<(), Problem> {
        let _turn = self.serial.turn().await?;
        let Some(mut s) = self.load()? else {
            return Ok(());
        };
        self.drive(&mut s).await?;
        self.save(&s, None)?;
        self.alarm_at(s.machine.poll_timeout()).await
    }
}
