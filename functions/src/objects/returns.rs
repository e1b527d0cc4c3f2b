//! `ReturnCase`: one object per return id (binding `RETURN`). It drives
//! core's return coordinator (`omnistock_core::returns::ReturnCase`,
//! sans-IO) stored as one JSON row: it stores it, sends what
//! `poll_transmit` gives (a `ReturnReceive` per receipt line) to the SKU
//! objects in parallel, feeds their answers to `handle_reply`, and points
//! the alarm at `poll_timeout` (`handle_timeout` when it fires). The
//! machine decides what may be received and refunded; the source (the
//! sale's `Terminal`) decided what may be returned at all, once, when the
//! return was initiated.
//!
//! Every write's answer is kept in the row with its Idempotency-Key (key
//! hash and request fingerprint), written with the effect: the same key and
//! request again is the first answer, another request under the key is 409.
//! Requests to one return run one at a time (a FIFO queue).
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::money::{Currency, Money as CoreMoney, MoneyError};
use omnistock_core::returns::{
    CaseError, CaseStatus, Claim, ClaimedLine, InitiateRequest, ReceiptReply, ReceiveLine,
    ReceiveRequest, ReturnCase as Machine, ReturnSource, Ticket,
};
use omnistock_core::{Channel, Command, LocationId, OrderId, ReturnId, Sku, TerminalId, Timestamp};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage;
use crate::http::{rfc3339, Problem};
use crate::wire::order::{
    self as order_wire, ClaimLine as OrderClaimLine, OrderAnswer, OrderRequest, ReturnClaim, Scope,
};
use crate::wire::returns::{
    ExchangeCheck, HistoryEntry, Initiate, ReturnAnswer, ReturnRequest, ReturnView,
};
use crate::wire::sku_stock::{self, Meta, Outcome, SkuRequest};
use crate::wire::terminal::{ClaimLine, SaleClaim, TerminalRequest};
use crate::wire::{self, Idem, Namespace};

/// Most rounds of messages one request drives before it answers "retry"
/// (the alarm goes on driving).
pub const MAX_ROUNDS: usize = 6;
/// Most answers kept for Idempotency-Key replays (a return has at most
/// 100 receipts and 100 refunds, so every one of its writes fits).
pub const MAX_KEPT: usize = 256;
/// When an order could not be told its return was received, the alarm
/// tries again after this long.
pub const TELL_RETRY_MS: i64 = 5_000;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS return_case (k TEXT PRIMARY KEY, json TEXT NOT NULL)";

/// A write's answer kept with its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kept {
    key: Idem,
    answer: Result<(u16, ReturnView), Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    machine: Machine,
    terminal: Option<TerminalId>,
    #[serde(default)]
    customer_id: Option<String>,
    /// The initiating request's content fingerprint.
    fp: String,
    history: Vec<HistoryEntry>,
    kept: Vec<Kept>,
    /// The actor of each receipt's request (the meta of the ledger lines).
    receipt_meta: Vec<(u32, Meta)>,
    /// A return of an order: the order was told its units came back
    /// (`OrderRequest::Returned`, idempotent; retried by the alarm).
    #[serde(default)]
    order_told: bool,
    /// Each exchange attempt's key and replacement order id (a refused
    /// attempt's order id is not reused: the order keeps its refusal).
    #[serde(default)]
    exchange_orders: Vec<(String, String)>,
}

impl Stored {
    /// Starts (or, for the same request, resumes) a receipt in core's
    /// machine, and records who asked the first time.
    fn start_receipt(
        &mut self,
        now: Timestamp,
        idem: &Idem,
        meta: &Meta,
        location: LocationId,
        lines: Vec<ReceiveLine>,
    ) -> Result<Ticket, Problem> {
        let ticket = self
            .machine
            .handle_receive(
                now,
                ReceiveRequest {
                    request: storage::fp_u64(&idem.key),
                    fp: storage::fp_u64(&idem.fp),
                    location,
                    lines,
                },
            )
            .map_err(|e| problem(&e))?;
        if !self.receipt_meta.iter().any(|(n, _)| *n == ticket.0) {
            self.receipt_meta.push((ticket.0, meta.clone()));
            self.history.push(HistoryEntry {
                at: rfc3339(now.as_ms()),
                event: "receipt".into(),
                actor: meta.actor.clone(),
                receipt: Some(ticket.0),
                amount: None,
            });
        }
        Ok(ticket)
    }

    fn view(&self) -> ReturnView {
        ReturnView::from_core(&self.machine, self.terminal.as_ref(), &self.history)
    }
    fn replay(&self, idem: &Idem) -> Option<Result<ReturnAnswer, Problem>> {
        let k = self.kept.iter().find(|k| k.key.key == idem.key)?;
        if k.key.fp != idem.fp {
            return Some(Err(Problem::key_reused()));
        }
        Some(match &k.answer {
            Ok((status, view)) => Ok(ReturnAnswer {
                status: *status,
                replayed: true,
                view: view.clone(),
            }),
            Err(p) => {
                let mut p = p.clone();
                p.replayed = true;
                Err(p)
            }
        })
    }
    /// A return of an order with units booked whose order was not told yet.
    fn order_to_tell(&self) -> Option<OrderId> {
        match self.machine.source() {
            ReturnSource::Order(o)
                if !self.order_told && self.machine.lines().iter().any(|l| l.received() > 0) =>
            {
                Some(o.clone())
            }
            _ => None,
        }
    }
    fn keep(&mut self, key: &Idem, answer: Result<(u16, ReturnView), Problem>) {
        if self.kept.len() >= MAX_KEPT {
            self.kept.remove(0);
        }
        self.kept.push(Kept {
            key: key.clone(),
            answer,
        });
    }
}

#[durable_object]
pub struct ReturnCase {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for ReturnCase {
    fn new(state: State, env: Env) -> Self {
        ReturnCase {
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
impl wire::Receiver for ReturnCase {
    async fn receive(&self, msg: &str) -> String {
        let r = match wire::decode::<ReturnRequest>(msg) {
            Ok(ReturnRequest::ExchangeCheck { idem, receive }) => {
                return wire::reply(self.exchange_check(idem, receive).await)
            }
            Ok(x) => self.handle(x).await,
            Err(p) => Err(p),
        };
        wire::reply(r)
    }
}

crate::rpc_receiver!(ReturnCase);

/// A core refusal as the API's problem.
pub fn problem(e: &CaseError) -> Problem {
    match e {
        CaseError::InvalidState { from, to } => {
            let allowed: &[&str] = match from {
                CaseStatus::Initiated => &["receiving", "received"],
                CaseStatus::Receiving => &["received"],
                CaseStatus::Received | CaseStatus::Refunded => {
                    &["received", "refunded", "exchanged"]
                }
                CaseStatus::Exchanged => &[],
            };
            Problem::invalid_transition(from.as_str(), to.as_str(), allowed)
        }
        CaseError::RefundTooLarge { max } => {
            Problem::invalid(e.to_string()).with("refundable", max)
        }
        CaseError::ExceedsInitiated {
            sku,
            initiated,
            received,
            requested,
        } => Problem::invalid(e.to_string()).with(
            "lines",
            [serde_json::json!({
                "sku": sku, "requested": requested, "initiated": initiated,
                "received": received, "receivable": (initiated - received).max(0),
            })],
        ),
        CaseError::Conflict => Problem::new(409, "idempotency_key_reused", e.to_string()),
        CaseError::Unconfirmed | CaseError::TooManyReceipts | CaseError::TooManyRefunds => {
            Problem::overloaded(e.to_string())
        }
        CaseError::Refused { code, .. } => {
            let status = match code.as_str() {
                "invalid_request" => 400,
                "not_found" => 404,
                "overloaded" => 503,
                _ => 409,
            };
            Problem::new(status, code, e.to_string())
        }
        _ => Problem::invalid(e.to_string()),
    }
}

impl ReturnCase {
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
        storage::load_json(&self.state.storage().sql(), "return_case", "r")
    }

    fn save(&self, s: &Stored) -> Result<(), Problem> {
        storage::save_json(
            &self.state.storage(),
            "return_case",
            "r",
            s,
            storage::piece_bytes(&self.env),
        )
    }

    /// Stores the row and points the alarm at the machine's next timer.
    async fn store(&self, s: &Stored) -> Result<(), Problem> {
        self.ensure_schema()?;
        // Customers and loyalty (issue 10): the return of a customer's
        // purchase is offered to them with the row; sent below, retried by
        // the alarm.
        let offer = super::customer_feed::return_offer(
            &s.machine,
            s.customer_id.as_deref(),
            storage::now_ms(),
        );
        let offered = offer.is_some();
        super::customer_feed::save_with_offer(
            &self.state.storage(),
            super::customer_feed::Home::Return,
            s,
            offer,
            storage::piece_bytes(&self.env),
        )?;
        // Saved already: a feed failure is logged, never the request's.
        if let Err(p) = self.feed(s) {
            worker::console_error!("feed: snapshot not written: {}", p.detail);
        }
        let customer_retry = if offered {
            super::customer_feed::flush(&self.env, &self.state.storage())
                .await?
                .map(Timestamp::from_ms)
        } else {
            None
        };
        let tell = s
            .order_to_tell()
            .map(|_| Timestamp::from_ms(storage::now_ms() + TELL_RETRY_MS));
        let feed_retry = crate::feed::retry_at(&self.state.storage().sql(), storage::now_ms())?
            .map(Timestamp::from_ms);
        let at = s
            .machine
            .poll_timeout()
            .into_iter()
            .chain(tell)
            .chain(feed_retry)
            .chain(customer_retry)
            .min();
        storage::alarm_at(&self.state.storage(), at.map(|t| t.as_ms())).await
    }

    /// The event feed: a snapshot of the return after each change (feed.rs),
    /// forwarded after the answer; the alarm retries.
    fn feed(&self, s: &Stored) -> Result<(), Problem> {
        let channel = match s.machine.source() {
            ReturnSource::Sale(_) => Channel::Pos,
            ReturnSource::Order(_) => Channel::Online,
        };
        let body = crate::feed::return_body(&s.machine, channel)?;
        let sql = self.state.storage().sql();
        // Forwarded by the alarm, which is pointed at the outbox's time.
        crate::feed::snapshot(&sql, storage::now_ms(), "return", &body)?;
        Ok(())
    }

    async fn handle(&self, req: ReturnRequest) -> Result<ReturnAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        let stored = self.load()?;
        match (req, stored) {
            (ReturnRequest::Initiate(i), stored) => self.initiate(i, stored).await,
            (_, None) => Err(Problem::not_found("no such return")),
            (ReturnRequest::Get, Some(s)) => Ok(ReturnAnswer {
                status: 200,
                replayed: false,
                view: s.view(),
            }),
            (
                ReturnRequest::Receive {
                    location,
                    lines,
                    meta,
                    idem,
                },
                Some(s),
            ) => self.receive(s, location, lines, meta, idem).await,
            (ReturnRequest::ExchangeCheck { .. }, Some(_)) => {
                Err(Problem::invalid("an exchange check is answered on its own"))
            }
            (
                ReturnRequest::Exchange {
                    order_id,
                    replacement_total,
                    receive,
                    meta,
                    idem,
                },
                Some(s),
            ) => {
                self.exchange(s, order_id, replacement_total, receive, meta, idem)
                    .await
            }
            (ReturnRequest::Refund { amount, meta, idem }, Some(mut s)) => {
                if let Some(r) = s.replay(&idem) {
                    return r;
                }
                let now = Timestamp::from_ms(storage::now_ms());
                match s
                    .machine
                    .handle_refund(now, storage::fp_u64(&idem.key), amount)
                {
                    Ok(()) => {
                        s.history.push(HistoryEntry {
                            at: rfc3339(now.as_ms()),
                            event: "refund".into(),
                            actor: meta.actor,
                            receipt: None,
                            amount: Some(amount),
                        });
                        let view = s.view();
                        s.keep(&idem, Ok((200, view.clone())));
                        self.store(&s).await?;
                        Ok(ReturnAnswer {
                            status: 200,
                            replayed: false,
                            view,
                        })
                    }
                    Err(e) => {
                        let p = problem(&e);
                        if p.status == 409 && !p.is_key_reused() {
                            s.keep(&idem, Err(p.clone()));
                            self.store(&s).await?;
                        }
                        Err(p)
                    }
                }
            }
        }
    }

    async fn initiate(&self, i: Initiate, stored: Option<Stored>) -> Result<ReturnAnswer, Problem> {
        if let Some(s) = stored {
            if let Some(r) = s.replay(&i.idem) {
                return r;
            }
            if s.fp != i.fp {
                return Err(Problem::new(
                    409,
                    "idempotency_key_reused",
                    format!("return {} already exists with other content", i.id),
                ));
            }
            // The same return again under another key: found.
            return Ok(ReturnAnswer {
                status: 200,
                replayed: false,
                view: s.view(),
            });
        }
        let id = ReturnId::parse(&i.id).map_err(|e| Problem::invalid(format!("id: {e}")))?;
        let merged =
            omnistock_core::returns::merge_return_lines(&i.lines).map_err(|e| problem(&e))?;
        let claim_lines: Vec<ClaimLine> = merged
            .iter()
            .map(|l| ClaimLine {
                sku: l.sku.clone(),
                qty: l.qty,
            })
            .collect();
        // The source arbitrates, once per return id (idempotent there).
        // The source arbitrates, once per return id (idempotent there).
        let claim = self.claim(&i, &merged[0].sku, claim_lines).await?;
        let terminal = claim.terminal.clone();
        let now = Timestamp::from_ms(storage::now_ms());
        let machine = Machine::new(
            now,
            InitiateRequest {
                id,
                source: i.source.clone(),
                lines: merged,
                fp: storage::fp_u64(&i.fp),
            },
            &claim.claim,
        )
        .map_err(|e| problem(&e))?;
        let mut s = Stored {
            machine,
            terminal,
            customer_id: claim.customer_id,
            fp: i.fp.clone(),
            history: vec![HistoryEntry {
                at: rfc3339(now.as_ms()),
                event: "initiated".into(),
                actor: i.meta.actor.clone(),
                receipt: None,
                amount: None,
            }],
            kept: Vec::new(),
            receipt_meta: Vec::new(),
            order_told: false,
            exchange_orders: Vec::new(),
        };
        let view = s.view();
        s.keep(&i.idem, Ok((201, view.clone())));
        self.store(&s).await?;
        Ok(ReturnAnswer {
            status: 201,
            replayed: false,
            view,
        })
    }

    /// Claims the return's lines from its source (see [`SourceClaim`]).
    async fn claim(
        &self,
        i: &Initiate,
        first_sku: &Sku,
        lines: Vec<ClaimLine>,
    ) -> Result<SourceClaim, Problem> {
        match &i.source {
            ReturnSource::Sale(sale) => {
                let terminal = match &i.terminal_id {
                    Some(t) => t.clone(),
                    None => self.find_terminal(sale, first_sku).await?,
                };
                let c: SaleClaim = wire::call(
                    &self.env,
                    Namespace::Terminal,
                    terminal.as_str(),
                    &TerminalRequest::ClaimReturn {
                        return_id: i.id.clone(),
                        sale_id: sale.clone(),
                        lines,
                    },
                )
                .await?;
                Ok(SourceClaim {
                    claim: c.claim,
                    terminal: Some(terminal),
                    customer_id: c.customer_id,
                })
            }
            ReturnSource::Order(order) => {
                claim_from_order(&self.env, order, &i.id, lines, i.online_only).await
            }
        }
    }

    /// Before an exchange holds its replacement: the same key's first
    /// answer, or whether the return may be exchanged now (and the receipt,
    /// when given, would be accepted). Changes nothing.
    async fn exchange_check(
        &self,
        idem: Idem,
        receive: Option<(LocationId, Vec<ReceiveLine>)>,
    ) -> Result<ExchangeCheck, Problem> {
        let _turn = self.serial.turn().await?;
        let Some(mut s) = self.load()? else {
            return Err(Problem::not_found("no such return"));
        };
        if let Some(r) = s.replay(&idem) {
            return r.map(|a| ExchangeCheck::Replay(Box::new(a)));
        }
        let order_id = |s: &Stored| -> String {
            if let Some((_, o)) = s.exchange_orders.iter().find(|(k, _)| *k == idem.key) {
                return o.clone();
            }
            let id = s.machine.id().as_str();
            let n = s.exchange_orders.len();
            let o = if n == 0 {
                format!("x.{id}")
            } else {
                format!("x{n}.{id}")
            };
            if o.len() <= omnistock_core::ids::MAX_ID_LEN {
                o
            } else {
                format!(
                    "x{n}.{}",
                    &crate::extract::fingerprint(&[id.as_bytes()])[..24]
                )
            }
        };
        // A retry of an exchange whose receipt was started: go on.
        let resumed = s
            .machine
            .receipts()
            .iter()
            .any(|r| r.request == storage::fp_u64(&idem.key));
        if !(s.machine.exchange().is_none() && resumed) {
            s.machine.check_exchange().map_err(|e| problem(&e))?;
            let mut trial = s.machine.clone();
            let now = Timestamp::from_ms(storage::now_ms());
            match receive {
                Some((location, lines)) => {
                    let req = ReceiveRequest {
                        request: storage::fp_u64(&idem.key),
                        fp: storage::fp_u64(&idem.fp),
                        location,
                        lines,
                    };
                    trial.handle_receive(now, req).map_err(|e| problem(&e))?;
                }
                None if trial.lines().iter().all(|l| l.received() == 0) => {
                    return Err(Problem::invalid(
                        "nothing of this return was received: give the units to receive (receive)",
                    ));
                }
                None => {}
            }
        }
        let order = order_id(&s);
        if !s.exchange_orders.iter().any(|(k, _)| *k == idem.key) {
            if s.exchange_orders.len() >= MAX_KEPT {
                return Err(Problem::overloaded("too many exchange attempts"));
            }
            s.exchange_orders.push((idem.key.clone(), order.clone()));
            self.save(&s)?;
        }
        Ok(ExchangeCheck::Go {
            customer_id: s.customer_id.clone(),
            currency: s.machine.currency().to_string(),
            order_id: order,
        })
    }

    /// The replacement order is held: books the receipt (when given) like
    /// `receive`, then records the exchange and its price difference. A
    /// refused receipt records nothing (the caller releases the order).
    async fn exchange(
        &self,
        mut s: Stored,
        order_id: String,
        replacement_total: CoreMoney,
        receive: Option<(LocationId, Vec<ReceiveLine>)>,
        meta: Meta,
        idem: Idem,
    ) -> Result<ReturnAnswer, Problem> {
        if let Some(r) = s.replay(&idem) {
            return r;
        }
        let now = Timestamp::from_ms(storage::now_ms());
        if let Some((location, lines)) = receive {
            let ticket = s.start_receipt(now, &idem, &meta, location, lines)?;
            let outcome = self.drive(&mut s, Some(ticket)).await?;
            self.tell_order(&mut s).await;
            match outcome {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let p = problem(&e);
                    if p.status != 503 {
                        s.keep(&idem, Err(p.clone()));
                    }
                    self.store(&s).await?;
                    return Err(p);
                }
                None => {
                    self.store(&s).await?;
                    return Err(problem(&CaseError::Unconfirmed));
                }
            }
        }
        let answer = match s.machine.record_exchange(now, order_id, replacement_total) {
            Ok(x) => {
                let amount = x.difference;
                s.history.push(HistoryEntry {
                    at: rfc3339(now.as_ms()),
                    event: "exchange".into(),
                    actor: meta.actor,
                    receipt: None,
                    amount: Some(amount),
                });
                Ok((200, s.view()))
            }
            Err(e) => Err(problem(&e)),
        };
        s.keep(&idem, answer.clone());
        self.store(&s).await?;
        answer.map(|(status, view)| ReturnAnswer {
            status,
            replayed: false,
            view,
        })
    }

    /// Tells the order of a return whose units came back that it is
    /// returned (its shipped or collected parts become `returned`). A
    /// failure is retried by the alarm.
    async fn tell_order(&self, s: &mut Stored) {
        let Some(order) = s.order_to_tell() else {
            return;
        };
        let req = OrderRequest::Returned {
            return_id: s.machine.id().to_string(),
        };
        match order_wire::call::<OrderAnswer>(&self.env, order.as_str(), &req).await {
            Ok(_) => s.order_told = true,
            // A refusal will not change by asking again: say so, stop asking.
            Err(p) if p.status < 500 => {
                worker::console_error!("order {order} refused its return: {}", p.detail);
                s.order_told = true;
            }
            Err(p) => worker::console_warn!("order {order} not told of its return: {}", p.detail),
        }
    }

    /// The terminal that sold `sale`, from the record `sku`'s object keeps.
    async fn find_terminal(
        &self,
        sale: &omnistock_core::SaleId,
        sku: &Sku,
    ) -> Result<TerminalId, Problem> {
        let t: Option<TerminalId> = sku_stock::call(
            &self.env,
            sku,
            &SkuRequest::SaleTerminal { sale: sale.clone() },
        )
        .await?;
        t.ok_or_else(|| {
            Problem::not_found(format!("unknown sale {sale} (or it did not sell {sku})"))
        })
    }

    async fn receive(
        &self,
        mut s: Stored,
        location: LocationId,
        lines: Vec<ReceiveLine>,
        meta: Meta,
        idem: Idem,
    ) -> Result<ReturnAnswer, Problem> {
        if let Some(r) = s.replay(&idem) {
            return r;
        }
        let now = Timestamp::from_ms(storage::now_ms());
        let ticket = s.start_receipt(now, &idem, &meta, location, lines)?;
        let outcome = self.drive(&mut s, Some(ticket)).await?;
        self.tell_order(&mut s).await;
        let answer = match outcome {
            Some(Ok(())) => Ok((200, s.view())),
            Some(Err(e)) => Err(problem(&e)),
            None => Err(problem(&CaseError::Unconfirmed)),
        };
        let settled = !matches!(&answer, Err(p) if p.status == 503);
        if settled {
            s.keep(&idem, answer.clone());
        }
        self.store(&s).await?;
        answer.map(|(status, view)| ReturnAnswer {
            status,
            replayed: false,
            view,
        })
    }

    /// The driving loop: store, send every due message in parallel, feed
    /// the replies, until the receipt `ticket` has its outcome (or
    /// [`MAX_ROUNDS`] passed: the alarm goes on). A failed call is not fed:
    /// the machine resends on its own timer.
    async fn drive(
        &self,
        s: &mut Stored,
        ticket: Option<Ticket>,
    ) -> Result<Option<Result<(), CaseError>>, Problem> {
        let reference = format!("return:{}", s.machine.id());
        for _ in 0..MAX_ROUNDS {
            if let Some(o) = ticket.and_then(|t| s.machine.outcome(t)) {
                return Ok(Some(o.map(|_| ())));
            }
            let now = Timestamp::from_ms(storage::now_ms());
            let mut out = Vec::new();
            while let Some(t) = s.machine.poll_transmit(now) {
                out.push(t);
            }
            if out.is_empty() {
                break;
            }
            // Durable before any message, with the alarm at the resend time:
            // a crash from here on is resumed from this row (by the alarm,
            // or a retry of the same request).
            self.store(s).await?;
            let replies =
                join_all(out.iter().map(|t| {
                    let actor = s
                        .receipt_meta
                        .iter()
                        .find(|(n, _)| *n == t.tag.receipt)
                        .map(|(_, m)| m.actor.clone())
                        .unwrap_or_else(|| "system".into());
                    let condition = match &t.command {
                        Command::ReturnReceive { condition, .. } => condition.as_str(),
                        _ => "",
                    };
                    let meta = Meta {
                        actor,
                        channel: None,
                        reference: Some(reference.clone()),
                        reason: Some(format!("return_{condition}")),
                    };
                    let env = &self.env;
                    async move {
                        sku_stock::exec(env, &t.sku, vec![t.command.clone()], &meta, None).await
                    }
                }))
                .await;
            let now = Timestamp::from_ms(storage::now_ms());
            for (t, r) in out.iter().zip(replies) {
                match r.map(|mut o| o.pop()) {
                    Ok(Some(o)) => {
                        s.machine.handle_reply(now, t.tag, reply_of(&o));
                    }
                    Ok(None) => worker::console_warn!("an empty answer to a return line"),
                    Err(p) => {
                        worker::console_warn!("a return line failed ({}); resent later", p.detail)
                    }
                }
            }
        }
        Ok(ticket
            .and_then(|t| s.machine.outcome(t))
            .map(|o| o.map(|_| ())))
    }

    async fn on_alarm(&self) -> Result<(), Problem> {
        let _turn = self.serial.turn().await?;
        let Some(mut s) = self.load()? else {
            return Ok(());
        };
        let source = format!("return:{}", s.machine.id());
        crate::feed::forward(&self.state.storage(), &self.env, &source)
            .await
            .map(|_| ())
            .unwrap_or_else(|p| worker::console_warn!("feed {source}: {}", p.detail));
        let now = Timestamp::from_ms(storage::now_ms());
        s.machine.handle_timeout(now);
        let _ = self.drive(&mut s, None).await?;
        self.tell_order(&mut s).await;
        self.store(&s).await
    }
}

/// What a return's source answered its claim: what was sold where and paid,
/// for the units claimed (a sale's terminal, or an order).
pub struct SourceClaim {
    pub claim: Claim,
    pub terminal: Option<TerminalId>,
    pub customer_id: Option<String>,
}

/// The claim of a return on an order: the `Order` object answers
/// `OrderRequest::ClaimReturn` (idempotent by return id; 409
/// `invalid_transition` unless the lines were shipped or collected; 400
/// with `lines: [{sku, requested, returnable}]` beyond what it fulfilled
/// minus other returns' claims), converted by [`order_claim`]. A storefront
/// (`online_only`) may return online orders only: the order is read in that
/// scope first (404 otherwise), before anything is claimed.
async fn claim_from_order(
    env: &Env,
    order: &OrderId,
    return_id: &str,
    lines: Vec<ClaimLine>,
    online_only: bool,
) -> Result<SourceClaim, Problem> {
    if online_only {
        let _: OrderAnswer = order_wire::call(
            env,
            order.as_str(),
            &OrderRequest::Get {
                scope: Scope::Channel(Channel::Online),
            },
        )
        .await?;
    }
    let c: ReturnClaim = order_wire::call(
        env,
        order.as_str(),
        &OrderRequest::ClaimReturn {
            return_id: return_id.to_string(),
            lines: lines
                .into_iter()
                .map(|l| OrderClaimLine {
                    sku: l.sku,
                    qty: l.qty,
                })
                .collect(),
        },
    )
    .await?;
    let rows: Vec<(Sku, i64, LocationId, &str, &str)> = c
        .lines
        .iter()
        .map(|l| {
            (
                l.sku.clone(),
                l.qty,
                l.location.clone(),
                l.unit_price.as_str(),
                l.tax.as_str(),
            )
        })
        .collect();
    Ok(SourceClaim {
        claim: order_claim(&c.currency, &rows)?,
        terminal: None,
        customer_id: c.customer_id,
    })
}

/// An order's claim as core's: per line, what was paid for the units
/// claimed is `unit_price * qty + tax` (the tax of those units), in the
/// order's currency.
pub fn order_claim(
    currency: &str,
    lines: &[(Sku, i64, LocationId, &str, &str)],
) -> Result<Claim, Problem> {
    let currency = Currency::parse(currency)
        .map_err(|e| Problem::overloaded(format!("an order answered a bad currency: {e}")))?;
    let bad = |e: MoneyError| Problem::overloaded(format!("an order answered a bad amount: {e}"));
    let mut out: Vec<ClaimedLine> = Vec::with_capacity(lines.len());
    for (sku, qty, location, unit_price, tax) in lines {
        let unit = CoreMoney::parse(unit_price, currency.as_str()).map_err(bad)?;
        let tax = CoreMoney::parse(tax, currency.as_str()).map_err(bad)?;
        let paid = unit
            .checked_mul_qty(*qty)
            .and_then(|m| m.checked_add(tax))
            .map_err(bad)?;
        // One line per SKU (an order may have fulfilled it from several lines).
        match out.iter_mut().find(|l| &l.sku == sku) {
            Some(l) => {
                l.qty += qty;
                l.paid = l.paid.checked_add(paid).map_err(bad)?;
            }
            None => out.push(ClaimedLine {
                sku: sku.clone(),
                qty: *qty,
                location: location.clone(),
                paid,
            }),
        }
    }
    Ok(Claim {
        currency,
        lines: out,
    })
}

/// A SKU object's answer to a `ReturnReceive` as core's reply.
fn reply_of(o: &Outcome) -> ReceiptReply {
    match &o.result {
        Ok(_) => ReceiptReply::Applied,
        Err(p) => ReceiptReply::Refused {
            code: p.code.clone(),
            detail: p.detail.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_claim_pays_back_price_times_units_plus_their_tax() {
        let sku = Sku::parse("A").unwrap();
        let loc = LocationId::parse("store-1").unwrap();
        let c = order_claim("EUR", &[(sku.clone(), 2, loc.clone(), "10.00", "3.80")]).unwrap();
        assert_eq!(c.lines[0].paid, CoreMoney::parse("23.80", "EUR").unwrap());
        assert_eq!(c.lines[0].location, loc);
        let two = order_claim(
            "EUR",
            &[
                (sku.clone(), 1, loc.clone(), "10.00", "1.90"),
                (sku.clone(), 2, loc.clone(), "9.00", "3.42"),
            ],
        )
        .unwrap();
        assert_eq!(two.lines.len(), 1);
        assert_eq!(two.lines[0].qty, 3);
        assert_eq!(two.lines[0].paid, CoreMoney::parse("33.32", "EUR").unwrap());
        assert!(order_claim("EUR", &[(sku.clone(), 1, loc.clone(), "x", "0")]).is_err());
        assert!(order_claim("eur", &[(sku, 1, loc, "1", "0")]).is_err());
    }
}
