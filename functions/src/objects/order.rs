//! `Order`: one object per order id. It stores core's order coordinator
//! (`omnistock_core::order::OrderMachine`, sans-IO) and the order's priced
//! lines as one JSON row, sends what `poll_transmit` gives to the SKU
//! objects, feeds their `HoldReply`s back, and points the alarm at the
//! machine's next timer, a queue write that failed, or the next
//! ready-for-pickup part that becomes overdue. The machine decides every
//! status and stock effect; this object adds the answers kept for
//! Idempotency-Keys, the version the queue (D1) is guarded by, the pickup
//! overdue flags and the return claims.
//!
//! Requests to one order are served one at a time (a FIFO queue).
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::money::{Decimal, Money, RoundingStrategy};
use omnistock_core::order::{
    CreateOrder as CoreCreate, Done, Handled, OrderFailure, OrderMachine, OrderStatus, Target,
    Ticket, Waits,
};
use omnistock_core::{OrderId, Sku, Timestamp};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage;
use crate::http::{rfc3339, Problem};
use crate::queue::{self, OrderRow, PartRow};
use crate::wire::order::{
    channel_str, ClaimLine, ClaimedLine, CreateOrder, HistoryOut, OrderAnswer, OrderRequest,
    OrderView, PartOut, PricedOrder, ReturnClaim, Scope,
};
use crate::wire::reservation::shortage_problem;
use crate::wire::sku_stock::{self, Meta, SkuRequest};
use crate::wire::{self, Idem};

/// Most rounds of messages one request drives before it answers "retry".
pub const MAX_ROUNDS: usize = 6;
/// Answers of transitions kept for their Idempotency-Keys.
pub const MAX_KEPT_KEYS: usize = 32;
/// Most returns that may claim lines of one order.
pub const MAX_CLAIMS: usize = 100;
/// A failed queue write is retried after this long (by the alarm).
pub const QUEUE_RETRY_MS: i64 = 5_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS ord (k TEXT PRIMARY KEY, json TEXT NOT NULL)";

type Kept = (Idem, Result<OrderView, Problem>);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Claim {
    return_id: String,
    lines: Vec<ClaimLine>,
    answer: ReturnClaim,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    machine: OrderMachine,
    order: PricedOrder,
    meta: Meta,
    /// The create's first answer (201 or its refusal): the same id and
    /// content always get it again.
    created: Option<Kept>,
    /// The last transitions' answers, by key.
    keys: Vec<Kept>,
    /// Keys whose transition was started and not yet answered: saved with
    /// the machine before its first stock message, so a move that a crash
    /// interrupted and the alarm finished still answers its key's retry
    /// with the move's outcome (not "cannot go from shipped to shipped").
    #[serde(default)]
    waiting: Waits<Idem>,
    /// Rises with every change the queue must see.
    version: u64,
    /// The version the queue has.
    queued: u64,
    updated_at: i64,
    /// Parts flagged overdue for pickup.
    overdue: Vec<u32>,
    claims: Vec<Claim>,
}

#[durable_object]
pub struct Order {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Order {
    fn new(state: State, env: Env) -> Self {
        Order {
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
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for Order {
    async fn receive(&self, msg: &str) -> String {
        match wire::decode::<OrderRequest>(msg) {
            Ok(OrderRequest::ClaimReturn { return_id, lines }) => {
                wire::reply(self.claim_return(return_id, lines).await)
            }
            Ok(x) => wire::reply(self.handle(x).await),
            Err(p) => wire::reply::<OrderAnswer>(Err(p)),
        }
    }
}

crate::rpc_receiver!(Order);

/// A core refusal as the API's problem.
pub fn problem(e: &OrderFailure, id: &str) -> Problem {
    match e {
        OrderFailure::Insufficient { .. } => shortage_problem(
            &e.shortages(),
            "not enough stock for every line; nothing was held",
        ),
        OrderFailure::InvalidTransition { part, from, to } => {
            let allowed: Vec<&str> = from.allowed().iter().map(|s| s.as_str()).collect();
            Problem::invalid_transition(from.as_str(), to.as_str(), &allowed).with("part", part)
        }
        OrderFailure::Conflict => Problem::new(
            409,
            "idempotency_key_reused",
            format!("order {id} already exists with other content"),
        ),
        OrderFailure::NotFound => Problem::not_found("no such order"),
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

fn in_scope(scope: &Scope, m: &OrderMachine) -> bool {
    match scope {
        Scope::Any => true,
        Scope::Channel(c) => m.channel() == *c,
        Scope::Location(l) => m.parts().iter().any(|p| &p.location == l),
    }
}

fn replay(answer: &Result<OrderView, Problem>, created: bool) -> Result<OrderAnswer, Problem> {
    match answer {
        Ok(view) => Ok(OrderAnswer {
            created,
            replayed: true,
            view: view.clone(),
        }),
        Err(p) => {
            let mut p = p.clone();
            p.replayed = true;
            Err(p)
        }
    }
}

/// The order as the API shows it.
fn view(st: &Stored) -> OrderView {
    let m = &st.machine;
    OrderView {
        id: st.order.id.clone(),
        status: m.status(),
        channel: channel_str(m.channel()).into(),
        customer_id: st.order.customer_id.clone(),
        reservation_id: st.order.reservation_id.clone(),
        lines: st.order.lines.clone(),
        parts: m
            .parts()
            .into_iter()
            .map(|p| PartOut {
                pickup_overdue: st.overdue.contains(&p.part),
                part: p.part,
                location: p.location,
                status: p.status,
                at_risk: p.at_risk,
            })
            .collect(),
        totals: st.order.totals.clone(),
        created_at: rfc3339(m.created_at().as_ms()),
        updated_at: rfc3339(st.updated_at),
        version: st.version,
        history: m
            .history()
            .into_iter()
            .map(|h| HistoryOut {
                part: h.part,
                from: h.from,
                to: h.to,
                actor: h.actor,
                at: rfc3339(h.at.as_ms()),
            })
            .collect(),
    }
}

/// The queue's row of an order.
fn queue_row(st: &Stored) -> OrderRow {
    let mut summary = serde_json::to_value(view(st)).unwrap_or_default();
    if let Some(o) = summary.as_object_mut() {
        o.remove("history");
    }
    OrderRow {
        id: st.order.id.clone(),
        channel: channel_str(st.machine.channel()).into(),
        customer_id: st.order.customer_id.clone(),
        created_at_ms: st.machine.created_at().as_ms(),
        updated_at_ms: st.updated_at,
        version: st.version,
        parts: st
            .machine
            .parts()
            .into_iter()
            .map(|p| PartRow {
                part: p.part,
                location: p.location.to_string(),
                status: p.status.as_str().into(),
                at_risk: p.at_risk,
                pickup_overdue: st.overdue.contains(&p.part),
            })
            .collect(),
        summary,
    }
}

/// Gives the keys that waited on a move the outcome it reached (core's
/// [`Waits::settle`]; the alarm may finish a move whose request was cut
/// off): kept like any settled answer.
fn settle_waiting(st: &mut Stored) {
    let id = st.order.id.clone();
    for (idem, outcome) in st.waiting.settle(&st.machine) {
        let answer = outcome.map(|_| view(st)).map_err(|e| problem(&e, &id));
        if st.keys.len() >= MAX_KEPT_KEYS {
            drop(st.keys.remove(0));
        }
        st.keys.push((idem, answer));
    }
}

fn bump(st: &mut Stored) {
    st.version += 1;
    st.updated_at = storage::now_ms();
}

/// `amount * num / den`, rounded to the currency's minor unit (half away from zero).
fn share(m: Money, num: i64, den: i64) -> String {
    if num == den || den == 0 {
        return m.amount.to_string();
    }
    let places = m.currency.minor_units();
    m.amount
        .checked_mul(Decimal::from(num))
        .and_then(|x| x.checked_div(Decimal::from(den)))
        .map(|x| x.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero))
        .unwrap_or(Decimal::ZERO)
        .to_string()
}

impl Order {
    /// Its table, the event feed's outbox and the customer feed, once per
    /// instance (those modules expect their tables to exist).
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            let sql = self.state.storage().sql();
            storage::exec(&sql, SCHEMA, vec![])?;
            crate::feed::ensure(&sql)?;
            storage::exec(&sql, super::customer_feed::SCHEMA, vec![])?;
            self.schema_ok.set(true);
        }
        Ok(())
    }

    fn load(&self) -> Result<Option<Stored>, Problem> {
        self.ensure_schema()?;
        storage::load_json(&self.state.storage().sql(), "ord", "o")
    }

    fn save(&self, s: &Stored) -> Result<(), Problem> {
        storage::save_json(
            &self.state.storage(),
            "ord",
            "o",
            s,
            storage::piece_bytes(&self.env),
        )
    }

    /// The event feed: a snapshot of a placed order after each change
    /// (feed.rs), forwarded by the alarm after the answer.
    fn feed(&self, st: &Stored) -> Result<(), Problem> {
        if !st.machine.is_placed() {
            return Ok(());
        }
        let body = crate::feed::order_body(&st.order, &st.machine)?;
        let sql = self.state.storage().sql();
        // Forwarded by the alarm, which store() points at the outbox's time.
        crate::feed::snapshot(&sql, storage::now_ms(), "order", &body)?;
        Ok(())
    }

    fn overdue_ms(&self) -> i64 {
        crate::config::get(&self.env)
            .map(|c| c.pickup_overdue_ms)
            .unwrap_or(crate::config::DEFAULT_PICKUP_OVERDUE_HOURS * 3_600_000)
    }

    /// Stores the row, writes the queue if it lags, and points the alarm.
    async fn store(&self, st: &mut Stored) -> Result<(), Problem> {
        self.ensure_schema()?;
        settle_waiting(st);
        // A part that left ready_for_pickup is no longer overdue.
        let parts = st.machine.parts();
        st.overdue.retain(|p| {
            parts
                .get(*p as usize)
                .is_some_and(|x| x.status == OrderStatus::ReadyForPickup)
        });
        // Customers and loyalty (issue 10): a complete order of a customer is
        // offered to them with the row; sent below, retried by the alarm.
        let offer = super::customer_feed::order_offer(&st.order, &parts, st.updated_at);
        let offered = offer.is_some();
        super::customer_feed::save_with_offer(
            &self.state.storage(),
            super::customer_feed::Home::Order,
            st,
            offer,
            storage::piece_bytes(&self.env),
        )?;
        // Saved already: a feed failure is logged, never the request's.
        if let Err(p) = self.feed(st) {
            worker::console_error!("feed: snapshot not written: {}", p.detail);
        }
        let customer_retry = if offered {
            super::customer_feed::flush(&self.env, &self.state.storage()).await?
        } else {
            None
        };
        if st.queued < st.version && st.machine.is_placed() {
            match queue::upsert(&self.env, &queue_row(st)).await {
                Ok(()) => {
                    st.queued = st.version;
                    self.save(st)?;
                }
                Err(p) => worker::console_warn!(
                    "order {}: queue write failed ({}); retried by the alarm",
                    st.order.id,
                    p.detail
                ),
            }
        }
        let now = storage::now_ms();
        let overdue_ms = self.overdue_ms();
        let next_overdue = st
            .machine
            .next_overdue(overdue_ms, &st.overdue)
            .map(|t| t.as_ms());
        let retry =
            (st.queued < st.version && st.machine.is_placed()).then_some(now + QUEUE_RETRY_MS);
        let feed_retry = crate::feed::retry_at(&self.state.storage().sql(), now)?;
        let at = [
            st.machine.poll_timeout().map(|t| t.as_ms()),
            next_overdue,
            retry,
            feed_retry,
            customer_retry,
        ]
        .into_iter()
        .flatten()
        .min();
        storage::alarm_at(&self.state.storage(), at.map(|at| at.max(now + 1))).await
    }

    async fn handle(&self, req: OrderRequest) -> Result<OrderAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        let stored = self.load()?;
        match req {
            OrderRequest::Create(c) => self.create(*c, stored).await,
            req => {
                let Some(st) = stored else {
                    return Err(Problem::not_found("no such order"));
                };
                self.change(req, st).await
            }
        }
    }

    async fn create(&self, c: CreateOrder, stored: Option<Stored>) -> Result<OrderAnswer, Problem> {
        let now = Timestamp::from_ms(storage::now_ms());
        let o = &c.draft;
        let id = OrderId::parse(&o.id).map_err(|e| Problem::invalid(format!("id: {e}")))?;
        let mut lines = omnistock_core::order::CreateOrder::lines_for(&id, &o.parts, &o.stock)
            .map_err(|e| problem(&e, &o.id))?;
        if let Some(holds) = &o.holds {
            if holds.len() != lines.len() {
                return Err(Problem::invalid("one hold per stock line"));
            }
            for (l, h) in lines.iter_mut().zip(holds) {
                l.hold = h.clone();
            }
        }
        let req = CoreCreate {
            id,
            channel: o.channel,
            fp: storage::fp_u64(&o.fp),
            lines,
            parts: o.parts.clone(),
            from_reservation: o.holds.is_some(),
            actor: c.meta.actor.clone(),
        };
        let (mut st, handled) = match stored {
            Some(mut st) => {
                if let Some((k, answer)) = &st.created {
                    if k.key == c.idem.key && k.fp != c.idem.fp {
                        return Err(Problem::key_reused());
                    }
                    if st.order.fp == o.fp {
                        // The same order again: its first answer.
                        return replay(answer, answer.is_ok());
                    }
                }
                let h = st
                    .machine
                    .handle_create(now, &req)
                    .map_err(|e| problem(&e, &o.id))?;
                (st, h)
            }
            None => {
                let (machine, t) = OrderMachine::new(now, req).map_err(|e| problem(&e, &o.id))?;
                let st = Stored {
                    machine,
                    order: c.draft.clone(),
                    meta: c.meta.clone(),
                    created: None,
                    keys: Vec::new(),
                    waiting: Waits::default(),
                    version: 0,
                    queued: 0,
                    updated_at: now.as_ms(),
                    overdue: Vec::new(),
                    claims: Vec::new(),
                };
                (st, Handled::Started(t))
            }
        };
        let outcome = match handled {
            Handled::Done(d) => Ok(d),
            Handled::Started(t) => self.drive(&mut st, Some(t)).await?,
        };
        let settled = outcome.as_ref().err().is_none_or(OrderFailure::is_final);
        if matches!(outcome, Ok(Done { created: true })) {
            bump(&mut st);
        }
        let answer = outcome
            .as_ref()
            .map(|_| view(&st))
            .map_err(|e| problem(e, &o.id));
        if settled && st.created.is_none() {
            st.created = Some((c.idem.clone(), answer.clone()));
        }
        self.store(&mut st).await?;
        answer.map(|view| OrderAnswer {
            created: matches!(outcome, Ok(Done { created: true })),
            replayed: false,
            view,
        })
    }

    async fn change(&self, req: OrderRequest, mut st: Stored) -> Result<OrderAnswer, Problem> {
        let now = Timestamp::from_ms(storage::now_ms());
        let id = st.order.id.clone();
        let found = |st: &Stored| OrderAnswer {
            created: false,
            replayed: false,
            view: view(st),
        };
        match req {
            OrderRequest::Create(_) => Err(Problem::invalid("not a change of an order")),
            OrderRequest::Get { scope } => {
                if !st.machine.is_placed() || !in_scope(&scope, &st.machine) {
                    return Err(Problem::not_found("no such order"));
                }
                Ok(found(&st))
            }
            OrderRequest::Transition {
                to,
                part,
                scope,
                meta,
                idem,
            } => {
                if !st.machine.is_placed() || !in_scope(&scope, &st.machine) {
                    return Err(Problem::not_found("no such order"));
                }
                if let Some((k, answer)) = st.keys.iter().find(|(k, _)| k.key == idem.key) {
                    if k.fp != idem.fp {
                        return Err(Problem::key_reused());
                    }
                    return replay(answer, false);
                }
                if let Some(k) = st.waiting.get(&idem.key) {
                    if k.fp != idem.fp {
                        return Err(Problem::key_reused());
                    }
                }
                let target = part.map_or(Target::All, Target::Part);
                let before = st.machine.history().len();
                let handled = st.machine.handle_transition(now, target, to, &meta.actor);
                let outcome = match handled {
                    Ok(Handled::Done(d)) => Ok(d),
                    Ok(Handled::Started(t)) => {
                        st.meta = Meta {
                            reason: Some(to.as_str().into()),
                            ..meta.clone()
                        };
                        st.waiting.wait(idem.clone(), t);
                        self.drive(&mut st, Some(t)).await?
                    }
                    Err(e) => Err(e),
                };
                if st.machine.history().len() != before {
                    bump(&mut st);
                }
                let answer = outcome
                    .as_ref()
                    .map(|_| view(&st))
                    .map_err(|e| problem(e, &id));
                let settled = outcome.as_ref().err().is_none_or(OrderFailure::is_final);
                if settled {
                    st.waiting.forget(&idem.key);
                    if st.keys.len() >= MAX_KEPT_KEYS {
                        drop(st.keys.remove(0));
                    }
                    st.keys.push((idem, answer.clone()));
                }
                self.store(&mut st).await?;
                answer.map(|view| OrderAnswer {
                    created: false,
                    replayed: false,
                    view,
                })
            }
            OrderRequest::AtRisk { holds } => {
                let mut changed = false;
                for h in holds.iter().take(crate::http::MAX_LINES) {
                    changed |= st.machine.handle_at_risk(h);
                }
                if changed {
                    bump(&mut st);
                    self.store(&mut st).await?;
                }
                if !st.machine.is_placed() {
                    return Err(Problem::not_found("no such order"));
                }
                Ok(found(&st))
            }
            OrderRequest::Returned { return_id } => {
                crate::http::check_id(&return_id, "return_id")?;
                let changed = st
                    .machine
                    .handle_returned(now, None, &format!("return:{return_id}"))
                    .map_err(|e| problem(&e, &id))?;
                if !changed
                    && !st
                        .machine
                        .parts()
                        .iter()
                        .any(|p| p.status == OrderStatus::Returned)
                {
                    let from = st.machine.status();
                    return Err(problem(
                        &OrderFailure::InvalidTransition {
                            part: 0,
                            from,
                            to: OrderStatus::Returned,
                        },
                        &id,
                    ));
                }
                if changed {
                    bump(&mut st);
                    self.store(&mut st).await?;
                }
                Ok(found(&st))
            }
            OrderRequest::ClaimReturn { .. } => Err(Problem::invalid("use claim_return")),
        }
    }

    /// The returns contract: what `lines` of this order a return may take back.
    async fn claim_return(
        &self,
        return_id: String,
        lines: Vec<ClaimLine>,
    ) -> Result<ReturnClaim, Problem> {
        let _turn = self.serial.turn().await?;
        crate::http::check_id(&return_id, "return_id")?;
        if lines.is_empty() || lines.len() > crate::http::MAX_LINES {
            return Err(Problem::invalid("a return claims 1 to 100 lines"));
        }
        let Some(mut st) = self.load()? else {
            return Err(Problem::not_found("no such order"));
        };
        if !st.machine.is_placed() {
            return Err(Problem::not_found("no such order"));
        }
        if let Some(c) = st.claims.iter().find(|c| c.return_id == return_id) {
            if c.lines == lines {
                return Ok(c.answer.clone());
            }
            return Err(Problem::new(
                409,
                "idempotency_key_reused",
                format!("return {return_id} already claimed other lines of this order"),
            ));
        }
        if st.claims.len() >= MAX_CLAIMS {
            return Err(Problem::invalid("too many returns against this order"));
        }
        let parts = st.machine.parts();
        let fulfilled = |part: u32| {
            parts.get(part as usize).is_some_and(|p| {
                matches!(
                    p.status,
                    OrderStatus::Shipped | OrderStatus::Collected | OrderStatus::Returned
                )
            })
        };
        let claimed_before = |sku: &Sku| -> i64 {
            st.claims
                .iter()
                .flat_map(|c| c.lines.iter())
                .filter(|l| &l.sku == sku)
                .map(|l| l.qty)
                .sum()
        };
        let mut over = Vec::new();
        let mut out: Vec<ClaimedLine> = Vec::new();
        for (i, cl) in lines.iter().enumerate() {
            if cl.qty < 1 || cl.qty > omnistock_core::MAX_LINE_QTY {
                return Err(Problem::invalid(format!("lines[{i}].qty out of range")));
            }
            if lines[..i].iter().any(|o| o.sku == cl.sku) {
                return Err(Problem::invalid(format!("two lines of {}", cl.sku)));
            }
            let of_sku: Vec<_> = st.order.lines.iter().filter(|l| l.sku == cl.sku).collect();
            if let Some(l) = of_sku.iter().find(|l| !fulfilled(l.part)) {
                if !of_sku.iter().any(|l| fulfilled(l.part)) {
                    let from = parts
                        .get(l.part as usize)
                        .map_or(OrderStatus::New, |p| p.status);
                    return Err(problem(
                        &OrderFailure::InvalidTransition {
                            part: l.part,
                            from,
                            to: OrderStatus::Returned,
                        },
                        &st.order.id,
                    ));
                }
            }
            let sold: i64 = of_sku
                .iter()
                .filter(|l| fulfilled(l.part))
                .map(|l| l.qty)
                .sum();
            let returnable = (sold - claimed_before(&cl.sku)).max(0);
            if cl.qty > returnable {
                over.push(serde_json::json!({"sku": cl.sku, "requested": cl.qty, "returnable": returnable}));
                continue;
            }
            // Take the units from the fulfilled lines in order, after the
            // units earlier returns took.
            let mut skip = claimed_before(&cl.sku);
            let mut left = cl.qty;
            for l in of_sku.iter().filter(|l| fulfilled(l.part)) {
                let free = (l.qty - skip).max(0);
                skip = (skip - l.qty).max(0);
                let take = free.min(left);
                if take == 0 {
                    continue;
                }
                left -= take;
                out.push(ClaimedLine {
                    sku: cl.sku.clone(),
                    qty: take,
                    location: l.location.clone(),
                    unit_price: l.unit_price.amount.to_string(),
                    tax: share(l.tax, take, l.qty),
                });
            }
        }
        if !over.is_empty() {
            return Err(
                Problem::invalid("more units than were fulfilled and not yet returned")
                    .with("lines", over),
            );
        }
        let answer = ReturnClaim {
            order_id: st.order.id.clone(),
            channel: st.machine.channel(),
            customer_id: st.order.customer_id.clone(),
            currency: st.order.totals.currency.clone(),
            lines: out,
        };
        st.claims.push(Claim {
            return_id,
            lines,
            answer: answer.clone(),
        });
        self.save(&st)?;
        Ok(answer)
    }

    /// The driving loop: store, send every due message in parallel, feed the
    /// replies, until `ticket` has its outcome (or [`MAX_ROUNDS`] passed).
    async fn drive(
        &self,
        st: &mut Stored,
        ticket: Option<Ticket>,
    ) -> Result<Result<Done, OrderFailure>, Problem> {
        for _ in 0..MAX_ROUNDS {
            if let Some(o) = ticket.and_then(|t| st.machine.outcome(t)) {
                return Ok(o);
            }
            let now = Timestamp::from_ms(storage::now_ms());
            let mut out = Vec::new();
            while let Some(t) = st.machine.poll_transmit(now) {
                out.push(t);
            }
            if out.is_empty() {
                break;
            }
            // Durable before any message: a crash from here on resumes from this row.
            self.save(st)?;
            let meta = st.meta.clone();
            let replies = join_all(out.iter().map(|t| {
                let req = SkuRequest::Coordinate {
                    cmd: t.command.clone(),
                    meta: meta.clone(),
                };
                let env = &self.env;
                let sku = t.sku.clone();
                async move { sku_stock::call(env, &sku, &req).await }
            }))
            .await;
            let now = Timestamp::from_ms(storage::now_ms());
            for (t, r) in out.iter().zip(replies) {
                match r {
                    Ok(reply) => st.machine.handle_reply(now, t.tag, reply),
                    Err(p) => worker::console_warn!(
                        "order {}: a stock message failed ({}); resent later",
                        st.order.id,
                        p.detail
                    ),
                }
            }
            for t in &out {
                crate::cache::stock_changed(&t.sku);
            }
        }
        Ok(match ticket.and_then(|t| st.machine.outcome(t)) {
            Some(o) => o,
            None => Err(OrderFailure::Unconfirmed),
        })
    }

    async fn on_alarm(&self) -> Result<(), Problem> {
        let _turn = self.serial.turn().await?;
        let Some(mut st) = self.load()? else {
            return Ok(());
        };
        let source = format!("order:{}", st.order.id);
        crate::feed::forward(&self.state.storage(), &self.env, &source)
            .await
            .map(|_| ())
            .unwrap_or_else(|p| worker::console_warn!("feed {source}: {}", p.detail));
        let now = storage::now_ms();
        st.machine.handle_timeout(Timestamp::from_ms(now));
        let before = st.machine.history().len();
        let _ = self.drive(&mut st, None).await?;
        if st.machine.history().len() != before {
            bump(&mut st);
        }
        let overdue_ms = self.overdue_ms();
        let late: Vec<u32> = st
            .machine
            .overdue_parts(Timestamp::from_ms(now), overdue_ms)
            .into_iter()
            .filter(|p| !st.overdue.contains(p))
            .collect();
        if !late.is_empty() {
            st.overdue.extend(late);
            bump(&mut st);
        }
        self.store(&mut st).await
    }
}
