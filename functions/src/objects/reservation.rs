//! `Reservation`: one object per reservation id. It holds either
//!
//! - the coordinator of a reservation across SKU objects: core's two-phase
//!   machine (`omnistock_core::reservation::Reservation`, sans-IO) stored as
//!   one JSON row. This object only stores it, sends what `poll_transmit`
//!   gives to the SKU objects, feeds their `HoldReply`s to `handle_reply`,
//!   and points the alarm at `poll_timeout` (`handle_timeout` when it
//!   fires). The machine decides every status, attempt and expiry. Before
//!   it holds anything, the id's `ReservationIndex` shard records the claim
//!   (or refuses it: the id names a live one-SKU reservation); or
//! - the pointer to the SKU object that holds a one-SKU reservation, as the
//!   version before the index shards wrote it (and a Worker of that version
//!   still does during a deploy): a request by id that the index does not
//!   know comes here, so those reservations stay findable.
//!
//! Requests to one reservation are served one at a time (a FIFO queue). An
//! ended reservation's storage is deleted by the alarm once its retention
//! (`RESERVATION_RETENTION_MS`) has passed.
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::reservation::{
    CreateRequest as CoreCreate, Done, Handled, Reservation as Machine, ReservationError,
    ReservationId, Ticket,
};
use omnistock_core::{Sku, Timestamp, RESERVATION_RETENTION_MS};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage;
use crate::http::Problem;
use crate::wire::reservation::{
    CoordinatorAnswer, CreateRequest, ReservationAnswer, ReservationRequest, ReservationView,
};
use crate::wire::reservation_index::{self, IndexRequest};
use crate::wire::sku_stock::{self, command_hold, HomedAnswer, Meta, ReservationOp, SkuRequest};
use crate::wire::{self, Idem};

/// Most rounds of messages one request drives before it answers "retry"
/// (the alarm goes on driving).
pub const MAX_ROUNDS: usize = 6;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS reservation (k TEXT PRIMARY KEY, json TEXT NOT NULL)";

/// A change's answer kept with its Idempotency-Key, for replays.
type Kept = (Idem, Result<ReservationView, Problem>);

// One value per request, loaded and stored whole: the size difference of the
// variants costs nothing worth a box per field.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    /// A reservation across SKU objects: core's machine, and the answers
    /// kept for Idempotency-Key replays (the create's, the last change's).
    Coordinator {
        machine: Box<Machine>,
        meta: Meta,
        #[serde(default)]
        created: Option<Kept>,
        #[serde(default)]
        last: Option<Kept>,
    },
    /// A one-SKU reservation lives in the SKU object of `sku`.
    Pointer {
        id: String,
        sku: Sku,
        fp: String,
        /// The last time the reservation could still be active, as far as
        /// this pointer knows (extensions are checked with the SKU object).
        until: i64,
    },
}

#[durable_object]
pub struct Reservation {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Reservation {
    fn new(state: State, env: Env) -> Self {
        Reservation {
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
impl wire::Receiver for Reservation {
    async fn receive(&self, msg: &str) -> String {
        let r = match wire::decode::<ReservationRequest>(msg) {
            Ok(x) => self.handle(x).await,
            Err(p) => Err(p),
        };
        wire::reply(r)
    }
}

crate::rpc_receiver!(Reservation);

/// A core refusal as the API's problem.
pub fn problem(e: &ReservationError, id: &str) -> Problem {
    match e {
        ReservationError::Insufficient(short) => crate::wire::reservation::shortage_problem(
            short,
            "not enough stock for every line; nothing was reserved",
        ),
        ReservationError::InvalidTransition { from, to } => {
            Problem::invalid_transition(from.as_str(), to.as_str(), &[])
        }
        ReservationError::Conflict => crate::wire::reservation::id_taken(id),
        ReservationError::NotFound => Problem::not_found("no such reservation"),
        e => {
            let status = match e.code() {
                "invalid_request" => 400,
                "not_found" => 404,
                "overloaded" => 503,
                _ => 409,
            };
            Problem::new(status, e.code(), e.to_string())
        }
    }
}

impl Reservation {
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            storage::exec(&self.state.storage().sql(), SCHEMA, vec![])?;
            self.schema_ok.set(true);
        }
        Ok(())
    }

    fn load(&self) -> Result<Option<Stored>, Problem> {
        self.ensure_schema()?;
        storage::load_json(&self.state.storage().sql(), "reservation", "r")
    }

    fn save(&self, s: &Stored) -> Result<(), Problem> {
        storage::save_json(
            &self.state.storage(),
            "reservation",
            "r",
            s,
            storage::piece_bytes(&self.env),
        )
    }

    /// Points the alarm at `at` (absolute), or clears it.
    async fn alarm_at(&self, at: Option<i64>) -> Result<(), Problem> {
        storage::alarm_at(&self.state.storage(), at).await
    }

    /// Deletes everything this object stored (its tables too).
    async fn reclaim(&self) -> Result<(), Problem> {
        self.state.storage().delete_all().await?;
        self.schema_ok.set(false);
        Ok(())
    }

    async fn handle(&self, req: ReservationRequest) -> Result<CoordinatorAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        let now = storage::now_ms();
        let mut stored = self.load()?;
        if let Some(Stored::Coordinator { machine, .. }) = &stored {
            // Past its retention (the alarm may not have run yet): gone.
            if machine.is_reclaimable(Timestamp::from_ms(now)) {
                self.reclaim().await?;
                stored = None;
            }
        }
        match (req, stored) {
            (
                ReservationRequest::Register {
                    id,
                    sku,
                    fp,
                    ttl_ms,
                },
                stored,
            ) => {
                match &stored {
                    // The id belongs to a reservation across SKUs (unless it failed).
                    Some(Stored::Coordinator { machine, .. })
                        if machine.get(Timestamp::from_ms(now)).is_ok() =>
                    {
                        return Err(problem(&ReservationError::Conflict, &id));
                    }
                    // Another one-SKU reservation under this id: only a failed one may be reused.
                    Some(Stored::Pointer {
                        sku: old,
                        fp: old_fp,
                        ..
                    }) if *old_fp != fp => {
                        let op = SkuRequest::Reservation(ReservationOp::Get { id: id.clone() });
                        match sku_stock::call::<HomedAnswer>(&self.env, old, &op).await {
                            Ok(HomedAnswer::Here(_) | HomedAnswer::Converted { .. }) => {
                                return Err(problem(&ReservationError::Conflict, &id))
                            }
                            Ok(HomedAnswer::NotHere) | Err(Problem { status: 404, .. }) => {}
                            Err(p) => return Err(p),
                        }
                    }
                    _ => {}
                }
                let until = now + ttl_ms;
                self.save(&Stored::Pointer { id, sku, fp, until })?;
                self.alarm_at(Some(until + RESERVATION_RETENTION_MS))
                    .await?;
                Ok(CoordinatorAnswer::Registered)
            }
            (ReservationRequest::Create(c), Some(Stored::Pointer { sku, .. })) => {
                // The id names a one-SKU reservation: only a failed one may be reused.
                let id = c.id.clone();
                let op = SkuRequest::Reservation(ReservationOp::Get { id: id.clone() });
                match sku_stock::call::<HomedAnswer>(&self.env, &sku, &op).await {
                    Ok(HomedAnswer::Here(_) | HomedAnswer::Converted { .. }) => {
                        Err(problem(&ReservationError::Conflict, &id))
                    }
                    Ok(HomedAnswer::NotHere) | Err(Problem { status: 404, .. }) => {
                        self.create(c, None).await
                    }
                    Err(p) => Err(p),
                }
            }
            (ReservationRequest::Create(c), stored) => self.create(c, stored).await,
            (_, Some(Stored::Pointer { sku, .. })) => Ok(CoordinatorAnswer::Sku { sku }),
            (_, None) => Err(Problem::not_found("no such reservation")),
            (
                req,
                Some(Stored::Coordinator {
                    machine,
                    meta,
                    created,
                    last,
                }),
            ) => self.change(req, *machine, meta, created, last).await,
        }
    }

    async fn create(
        &self,
        c: CreateRequest,
        stored: Option<Stored>,
    ) -> Result<CoordinatorAnswer, Problem> {
        let now = Timestamp::from_ms(storage::now_ms());
        let id = ReservationId::parse(&c.id).map_err(|e| Problem::invalid(format!("id: {e}")))?;
        let req = CoreCreate {
            id,
            lines: c.lines.clone(),
            ttl_ms: c.ttl_ms,
            channel: c.channel,
            fp: storage::fp_u64(&c.fp),
        };
        let (mut machine, created, last, handled) = match stored {
            Some(Stored::Coordinator {
                machine,
                created,
                last,
                ..
            }) => {
                let mut machine = *machine;
                // The same key and request again: the first answer.
                if let Some((k, answer)) = &created {
                    if k.key == c.idem.key {
                        if k.fp != c.idem.fp {
                            return Err(Problem::key_reused());
                        }
                        return replay(answer.clone(), true);
                    }
                }
                self.claim(&c).await?;
                let h = machine
                    .handle_create(now, req)
                    .map_err(|e| problem(&e, &c.id))?;
                (machine, created, last, h)
            }
            _ => {
                self.claim(&c).await?;
                let (m, t) = Machine::new(now, req).map_err(|e| problem(&e, &c.id))?;
                (m, None, None, Handled::Started(t))
            }
        };
        let outcome = match handled {
            Handled::Done(d) => Ok(d),
            Handled::Started(t) => {
                self.drive(&mut machine, &c.meta, (&created, &last), Some(t))
                    .await?
            }
        };
        let answer = outcome
            .as_ref()
            .map(|d| ReservationView::from_core(&d.view))
            .map_err(|e| problem(e, &c.id));
        let first = matches!(&outcome, Ok(Done { created: true, .. }))
            || matches!(&outcome, Err(ReservationError::Insufficient(_)));
        let created = if first {
            Some((c.idem.clone(), answer.clone()))
        } else {
            created
        };
        self.store(Stored::Coordinator {
            machine: Box::new(machine),
            meta: c.meta,
            created,
            last,
        })
        .await?;
        let done = outcome.map_err(|e| problem(&e, &c.id))?;
        Ok(CoordinatorAnswer::Here(ReservationAnswer {
            created: done.created,
            replayed: false,
            view: ReservationView::from_core(&done.view),
        }))
    }

    /// Records in the id's index shard that this object coordinates it, or
    /// 409 if the id names a live one-SKU reservation (the index is the
    /// arbiter of ids the client chose). Before anything is held.
    async fn claim(&self, c: &CreateRequest) -> Result<(), Problem> {
        let claim = IndexRequest::Claim {
            id: c.id.clone(),
            until: storage::now_ms() + c.ttl_ms,
        };
        reservation_index::call(&self.env, &c.id, &claim).await?;
        Ok(())
    }

    /// Get, extend or release a reservation across SKUs.
    async fn change(
        &self,
        req: ReservationRequest,
        mut machine: Machine,
        meta: Meta,
        created: Option<Kept>,
        last: Option<Kept>,
    ) -> Result<CoordinatorAnswer, Problem> {
        let now = Timestamp::from_ms(storage::now_ms());
        let id = machine.id().to_string();
        let (handled, idem, meta) = match req {
            ReservationRequest::Get => {
                let v = machine.get(now).map_err(|e| problem(&e, &id))?;
                return Ok(CoordinatorAnswer::Here(ReservationAnswer {
                    created: false,
                    replayed: false,
                    view: ReservationView::from_core(&v),
                }));
            }
            ReservationRequest::Extend {
                ttl_ms,
                meta: m,
                idem,
            } => {
                if let Some(r) = replay_last(&last, &idem) {
                    return r;
                }
                (
                    machine.handle_extend(now, ttl_ms),
                    idem,
                    Meta {
                        channel: meta.channel.clone(),
                        ..m
                    },
                )
            }
            ReservationRequest::Release { meta: m, idem } => {
                if let Some(r) = replay_last(&last, &idem) {
                    return r;
                }
                (
                    machine.handle_release(now),
                    idem,
                    Meta {
                        channel: meta.channel.clone(),
                        ..m
                    },
                )
            }
            ReservationRequest::Convert { order_id } => {
                let done = machine
                    .handle_convert(now, &order_id)
                    .map_err(|e| problem(&e, &id))?;
                let hold = machine.hold_id().clone();
                self.store(Stored::Coordinator {
                    machine: Box::new(machine),
                    meta,
                    created,
                    last,
                })
                .await?;
                return Ok(CoordinatorAnswer::Converted {
                    answer: ReservationAnswer {
                        created: false,
                        replayed: false,
                        view: ReservationView::from_core(&done.view),
                    },
                    hold,
                });
            }
            ReservationRequest::Create(_) | ReservationRequest::Register { .. } => {
                return Err(Problem::invalid("not a change of a reservation"))
            }
        };
        let outcome = match handled {
            Ok(Handled::Done(d)) => Ok(d),
            Ok(Handled::Started(t)) => {
                self.drive(&mut machine, &meta, (&created, &last), Some(t))
                    .await?
            }
            Err(e) => Err(e),
        };
        let answer = outcome
            .as_ref()
            .map(|d| ReservationView::from_core(&d.view))
            .map_err(|e| problem(e, &id));
        let settled = !matches!(
            &outcome,
            Err(ReservationError::Unconfirmed
                | ReservationError::Busy
                | ReservationError::Superseded)
        );
        let last = if settled {
            Some((idem, answer.clone()))
        } else {
            last
        };
        self.store(Stored::Coordinator {
            machine: Box::new(machine),
            meta,
            created,
            last,
        })
        .await?;
        answer.map(|view| {
            CoordinatorAnswer::Here(ReservationAnswer {
                created: false,
                replayed: false,
                view,
            })
        })
    }

    /// Stores the coordinator and points the alarm at its next timer.
    async fn store(&self, s: Stored) -> Result<(), Problem> {
        let at = match &s {
            Stored::Coordinator { machine, .. } => machine.poll_timeout().map(|t| t.as_ms()),
            Stored::Pointer { until, .. } => Some(until + RESERVATION_RETENTION_MS),
        };
        self.save(&s)?;
        self.alarm_at(at).await
    }

    /// The driving loop: store, send every due message in parallel, feed
    /// the replies, until the operation `ticket` has its outcome (or
    /// [`MAX_ROUNDS`] passed: the alarm goes on). A failed call is not fed:
    /// the machine resends on its own timer.
    async fn drive(
        &self,
        machine: &mut Machine,
        meta: &Meta,
        kept: (&Option<Kept>, &Option<Kept>),
        ticket: Option<Ticket>,
    ) -> Result<Result<Done, ReservationError>, Problem> {
        for _ in 0..MAX_ROUNDS {
            let now = Timestamp::from_ms(storage::now_ms());
            if let Some(t) = ticket {
                if let Some(o) = machine.outcome(now, t) {
                    return Ok(o);
                }
            }
            let mut out = Vec::new();
            while let Some(t) = machine.poll_transmit(now) {
                out.push(t);
            }
            if out.is_empty() {
                break;
            }
            // Durable before any message: a crash from here on is resumed
            // from this row (by a retry or the alarm).
            self.save(&Stored::Coordinator {
                machine: Box::new(machine.clone()),
                meta: meta.clone(),
                created: kept.0.clone(),
                last: kept.1.clone(),
            })?;
            let replies = join_all(out.iter().map(|t| {
                let req = command_hold(&t.command).map(|_| SkuRequest::Coordinate {
                    cmd: t.command.clone(),
                    meta: meta.clone(),
                });
                let sku = t.sku.clone();
                let env = &self.env;
                async move {
                    match req {
                        Some(req) => sku_stock::call(env, &sku, &req).await,
                        None => Err(Problem::invalid("a coordinator sends hold commands only")),
                    }
                }
            }))
            .await;
            let now = Timestamp::from_ms(storage::now_ms());
            for (t, r) in out.iter().zip(replies) {
                match r {
                    Ok(reply) => machine.handle_reply(now, t.tag, reply),
                    Err(p) => {
                        worker::console_warn!("a hold message failed ({}); resent later", p.detail)
                    }
                }
            }
        }
        let now = Timestamp::from_ms(storage::now_ms());
        Ok(match ticket.and_then(|t| machine.outcome(now, t)) {
            Some(o) => o,
            None => Err(ReservationError::Unconfirmed),
        })
    }

    async fn on_alarm(&self) -> Result<(), Problem> {
        let _turn = self.serial.turn().await?;
        let now = Timestamp::from_ms(storage::now_ms());
        match self.load()? {
            None => self.reclaim().await?,
            Some(Stored::Pointer { id, sku, fp, until }) => {
                if now.as_ms() < until + RESERVATION_RETENTION_MS {
                    return self.alarm_at(Some(until + RESERVATION_RETENTION_MS)).await;
                }
                // Extended since? The SKU object knows; keep the pointer while it may be active.
                match self.deadline_at_home(&id, &sku).await {
                    Some(later) if later + RESERVATION_RETENTION_MS > now.as_ms() => {
                        self.store(Stored::Pointer {
                            id,
                            sku,
                            fp,
                            until: later,
                        })
                        .await?
                    }
                    _ => self.reclaim().await?,
                }
            }
            Some(Stored::Coordinator {
                mut machine,
                meta,
                created,
                last,
            }) => {
                machine.handle_timeout(now);
                if machine.is_reclaimable(now) {
                    return self.reclaim().await;
                }
                // No request waits: whatever the messages settle is stored.
                let _ = self
                    .drive(&mut machine, &meta, (&created, &last), None)
                    .await?;
                self.store(Stored::Coordinator {
                    machine,
                    meta,
                    created,
                    last,
                })
                .await?;
            }
        }
        Ok(())
    }

    /// The current deadline of the one-SKU reservation this object points
    /// to, if its SKU object still has it active (ms).
    async fn deadline_at_home(&self, id: &str, sku: &Sku) -> Option<i64> {
        let op = SkuRequest::Reservation(ReservationOp::Get { id: id.to_string() });
        match sku_stock::call::<HomedAnswer>(&self.env, sku, &op).await {
            Ok(HomedAnswer::Here(a)) => a
                .view
                .expires_at
                .as_deref()
                .and_then(crate::http::parse_rfc3339),
            _ => None,
        }
    }
}

fn replay(
    answer: Result<ReservationView, Problem>,
    created: bool,
) -> Result<CoordinatorAnswer, Problem> {
    match answer {
        Ok(view) => Ok(CoordinatorAnswer::Here(ReservationAnswer {
            created,
            replayed: true,
            view,
        })),
        Err(mut p) => {
            p.replayed = true;
            Err(p)
        }
    }
}

/// The last change's answer again when its key comes again (or a reused key).
fn replay_last(last: &Option<Kept>, idem: &Idem) -> Option<Result<CoordinatorAnswer, Problem>> {
    let (k, answer) = last.as_ref()?;
    if k.key != idem.key {
        return None;
    }
    if k.fp != idem.fp {
        return Some(Err(Problem::key_reused()));
    }
    Some(replay(answer.clone(), false))
}
