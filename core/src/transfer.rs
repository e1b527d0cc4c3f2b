//! The transfer coordinator: one transfer of several SKUs from one location
//! to another, as a sans-IO state machine like the reservation coordinator
//! ([`crate::reservation`]). It does no IO, reads no clock and draws no
//! random number: requests come in through `handle_*` with the time, the
//! messages for SKU objects and the next wake-up come out through
//! [`Transfer::poll_transmit`] and [`Transfer::poll_timeout`], and each SKU
//! object's answer ([`TransferReply::from_sku`]) is fed back with
//! [`Transfer::handle_reply`] and its [`Tag`]. It never panics on its inputs
//! (a stale, duplicated or unknown reply is ignored). It is `serde`: its
//! Durable Object stores it as one JSON row and resumes from it.
//! (One SKU's side of a transfer, the commands below, is `sku::transfers`.)
//!
//! # The protocol
//!
//! ```text
//! requested --ship--> shipping --every line answered--> in_transit  (at least one line shipped)
//!     |                    \--no line could ship------> cancelled
//!     \--cancel--> cancelled
//! in_transit --receive--> partially_received --receive--> ... --> received
//!                         (every line fully received, or closed with its shortfall)
//! ```
//!
//! - Ship sends `TransferShip` (idempotent by the transfer id) to every
//!   line's SKU object. Core refuses a ship for stock (`available` at `from`
//!   on the till's channel); a line refused (for stock or otherwise) is
//!   voided with `TransferCancel`, so a late duplicate of its ship can never
//!   land, and shows `shipped: 0` with why. If the void finds the transfer
//!   already shipped (a duplicate landed first), the line counts as shipped.
//!   A ship that shipped no line ends the transfer `cancelled` (and is
//!   answered `insufficient_stock`): a line's units left `from` or did not,
//!   never half.
//! - Receive `{lines, close}` is receipt number `n` (kept by the caller's
//!   key, so the same key is the same receipt): `TransferReceive` with op id
//!   `trr.<n>.<transfer id>` to each SKU named (and, with `close`, to every
//!   line still open, qty 0), so each receipt is applied once. A line closes
//!   when fully received or closed; `close` records the rest as shortfall.
//! - Cancel is allowed before shipping only; nothing was sent to any SKU, so
//!   nothing is to undo.
//! - A question is resent on a timer (doubling, at most [`MAX_RESEND_MS`]
//!   apart) until answered: a transfer's effect must complete, so it never
//!   gives up; a failed call is simply not fed.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::fulfillment::MAX_LINES;
use crate::ids::{LocationId, OpId, Sku, TransferId};
use crate::reservation::Refusal;
use crate::sku::{Command, Event, Rejection, SkuState};
use crate::stock::{Qty, MAX_LINE_QTY};
use crate::time::Timestamp;

/// Most receipts one transfer takes.
pub const MAX_RECEIPTS: usize = 100;
/// Most history entries kept (create, ship, every receipt, the end).
pub const MAX_HISTORY: usize = MAX_RECEIPTS + 8;
/// The wait before the first resend; it doubles with every send.
pub const RESEND_AFTER_MS: i64 = 1_000;
/// The longest wait between two sends of one question.
pub const MAX_RESEND_MS: i64 = 60_000;

/// Where a transfer stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Requested,
    /// Ship messages out: every line's answer.
    Shipping,
    InTransit,
    PartiallyReceived,
    /// Every line fully received or closed (with its shortfall).
    Received,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Shipping => "shipping",
            Status::InTransit => "in_transit",
            Status::PartiallyReceived => "partially_received",
            Status::Received => "received",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requested line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferLine {
    pub sku: Sku,
    pub qty: Qty,
}

/// A create request (or its retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: TransferId,
    pub from: LocationId,
    pub to: LocationId,
    /// 1 to [`MAX_LINES`], one per SKU, each `1..=MAX_LINE_QTY`.
    pub lines: Vec<TransferLine>,
    /// The caller's fingerprint of the content: the same id with another is a conflict.
    pub fp: u64,
}

/// Why a request was refused. The shell maps [`TransferError::code`] to HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    NoLines,
    TooManyLines {
        max: usize,
    },
    DuplicateSku(Sku),
    QtyOutOfRange {
        sku: Sku,
        qty: Qty,
    },
    SameLocation,
    /// A receipt names a SKU that is not a shipped line of this transfer.
    UnknownLine(Sku),
    /// A receipt of more units than are still in transit on a line.
    OverReceived {
        sku: Sku,
        remaining: Qty,
    },
    TooManyReceipts {
        max: usize,
    },
    /// The same id (or receipt key) with other content.
    Conflict,
    InvalidTransition {
        from: Status,
        to: Status,
        allowed: Vec<Status>,
    },
    /// No line could ship (the first line refused for stock, with what was available).
    Insufficient(Vec<(Sku, Qty, Qty)>),
    /// Another operation is still being driven: retry in a moment.
    Busy,
}

impl TransferError {
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::NoLines
            | TransferError::TooManyLines { .. }
            | TransferError::DuplicateSku(_)
            | TransferError::QtyOutOfRange { .. }
            | TransferError::SameLocation
            | TransferError::UnknownLine(_)
            | TransferError::OverReceived { .. }
            | TransferError::TooManyReceipts { .. } => "invalid_request",
            TransferError::Conflict => "idempotency_key_reused",
            TransferError::InvalidTransition { .. } => "invalid_transition",
            TransferError::Insufficient(_) => "insufficient_stock",
            TransferError::Busy => "overloaded",
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NoLines => f.write_str("a transfer needs at least one line"),
            TransferError::TooManyLines { max } => write!(f, "at most {max} lines"),
            TransferError::DuplicateSku(s) => write!(f, "two lines of {s}"),
            TransferError::QtyOutOfRange { sku, qty } => {
                write!(f, "{sku}: quantity {qty} is outside the allowed range")
            }
            TransferError::SameLocation => f.write_str("from and to must be different locations"),
            TransferError::UnknownLine(s) => {
                write!(f, "{s} is not a shipped line of this transfer")
            }
            TransferError::OverReceived { sku, remaining } => {
                write!(f, "{sku}: only {remaining} units are still in transit")
            }
            TransferError::TooManyReceipts { max } => write!(f, "at most {max} receipts"),
            TransferError::Conflict => {
                f.write_str("this id or key was already used with other content")
            }
            TransferError::InvalidTransition { from, to, .. } => {
                write!(f, "a transfer cannot go from {from} to {to}")
            }
            TransferError::Insufficient(_) => {
                f.write_str("no line could ship: not enough available at the source")
            }
            TransferError::Busy => f.write_str("the transfer is busy; retry"),
        }
    }
}

/// What a SKU object answers a transfer command, built in one place so the
/// Durable Object and the simulation answer alike.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum TransferReply {
    /// Applied now or before (a retry).
    Done,
    /// A ship refused for stock at the source: nothing moved.
    Insufficient { requested: Qty, available: Qty },
    /// A void (cancel) found the transfer already shipped at this SKU.
    AlreadyShipped,
    /// Refused otherwise: nothing moved.
    Refused { refusal: Refusal },
}

impl TransferReply {
    /// The reply to a transfer command decided as `result`.
    pub fn from_sku(result: &Result<Vec<Event>, Rejection>) -> TransferReply {
        match result {
            Ok(_) | Err(Rejection::Exists) => TransferReply::Done,
            Err(Rejection::InsufficientStock {
                requested,
                available,
            }) => TransferReply::Insufficient {
                requested: *requested,
                available: *available,
            },
            Err(Rejection::TransferAlreadyShipped) => TransferReply::AlreadyShipped,
            Err(r) => TransferReply::Refused {
                refusal: Refusal::from_rejection(r),
            },
        }
    }

    /// Decides and applies `cmd` on `state` at `now` and answers (what a SKU
    /// object does; for tests and the simulation).
    pub fn run(state: &mut SkuState, now: Timestamp, cmd: &Command) -> TransferReply {
        let r = state.decide(now, cmd);
        if let Ok(events) = &r {
            for e in events {
                state.apply(e);
            }
        }
        TransferReply::from_sku(&r)
    }
}

/// Which question a message asks; a reply is fed back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub line: u32,
    /// The line's question number: a reply to an older one is ignored.
    pub seq: u32,
}

/// A message for one SKU object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub tag: Tag,
    pub sku: Sku,
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
enum Ask {
    Ship,
    /// Cancel a line whose ship was refused, so a late duplicate cannot land.
    Void,
    Receive {
        receipt: u32,
        qty: Qty,
        close: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outgoing {
    ask: Ask,
    seq: u32,
    sends: u32,
    next_at: Timestamp,
}

/// Why a line did not ship.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum NotShipped {
    Insufficient { available: Qty },
    Refused { refusal: Refusal },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
enum Shipment {
    Pending,
    Shipped,
    /// Refused: voided (or being voided).
    NotShipped {
        why: NotShipped,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LineState {
    line: TransferLine,
    shipment: Shipment,
    received: Qty,
    shortfall: Qty,
    closed: bool,
    /// Receipts queued for this line (receipt, qty, close), oldest first.
    queue: Vec<(u32, Qty, bool)>,
    out: Option<Outgoing>,
    seq: u32,
}

impl LineState {
    fn shipped(&self) -> Qty {
        match self.shipment {
            Shipment::Shipped => self.line.qty,
            _ => 0,
        }
    }
    /// Units in transit and not claimed by a receipt under way.
    fn unclaimed(&self) -> Qty {
        let queued: Qty = self.queue.iter().map(|(_, q, _)| *q).sum();
        let sending = match self.out.map(|o| o.ask) {
            Some(Ask::Receive { qty, .. }) => qty,
            _ => 0,
        };
        self.shipped() - self.received - self.shortfall - queued - sending
    }
}

/// A receipt as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub n: u32,
    /// The caller's key for it (its Idempotency-Key hash): the same key is the same receipt.
    pub key: String,
    pub lines: Vec<TransferLine>,
    pub close: bool,
    pub at: Timestamp,
    pub actor: String,
}

/// One change of status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub actor: String,
    pub from: Option<Status>,
    pub to: Status,
    #[serde(default)]
    pub note: Option<String>,
}

/// A line as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView {
    pub sku: Sku,
    pub requested: Qty,
    pub shipped: Qty,
    pub received: Qty,
    pub shortfall: Qty,
    /// Units still in transit.
    pub in_transit: Qty,
    pub closed: bool,
    pub not_shipped: Option<NotShipped>,
}

/// One transfer's coordinator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    id: TransferId,
    fp: u64,
    from: LocationId,
    to: LocationId,
    lines: Vec<LineState>,
    status: Status,
    receipts: Vec<Receipt>,
    history: Vec<HistoryEntry>,
    created_at: Timestamp,
}

fn validate(req: &CreateRequest) -> Result<(), TransferError> {
    if req.lines.is_empty() {
        return Err(TransferError::NoLines);
    }
    if req.lines.len() > MAX_LINES {
        return Err(TransferError::TooManyLines { max: MAX_LINES });
    }
    if req.from == req.to {
        return Err(TransferError::SameLocation);
    }
    for (i, l) in req.lines.iter().enumerate() {
        if !(1..=MAX_LINE_QTY).contains(&l.qty) {
            return Err(TransferError::QtyOutOfRange {
                sku: l.sku.clone(),
                qty: l.qty,
            });
        }
        if req.lines[..i].iter().any(|o| o.sku == l.sku) {
            return Err(TransferError::DuplicateSku(l.sku.clone()));
        }
    }
    Ok(())
}

/// The op id of receipt `n` of transfer `id`: `trr.<n>.<id>`.
pub fn receipt_op(n: u32, id: &TransferId) -> Option<OpId> {
    OpId::parse(&format!("trr.{n}.{}", id.as_str())).ok()
}

impl Transfer {
    /// A new transfer in `requested` (nothing is sent).
    pub fn new(now: Timestamp, actor: &str, req: CreateRequest) -> Result<Transfer, TransferError> {
        validate(&req)?;
        Ok(Transfer {
            lines: req
                .lines
                .into_iter()
                .map(|line| LineState {
                    line,
                    shipment: Shipment::Pending,
                    received: 0,
                    shortfall: 0,
                    closed: false,
                    queue: Vec::new(),
                    out: None,
                    seq: 0,
                })
                .collect(),
            id: req.id,
            fp: req.fp,
            from: req.from,
            to: req.to,
            status: Status::Requested,
            receipts: Vec::new(),
            history: alloc::vec![HistoryEntry {
                at: now,
                actor: actor.into(),
                from: None,
                to: Status::Requested,
                note: None,
            }],
            created_at: now,
        })
    }

    /// A create retried: the same content is the same transfer, other content a conflict.
    pub fn check_same(&self, req: &CreateRequest) -> Result<(), TransferError> {
        validate(req)?;
        if req.fp == self.fp && req.id == self.id {
            Ok(())
        } else {
            Err(TransferError::Conflict)
        }
    }

    pub fn id(&self) -> &TransferId {
        &self.id
    }
    pub fn from(&self) -> &LocationId {
        &self.from
    }
    pub fn to(&self) -> &LocationId {
        &self.to
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }
    pub fn receipts(&self) -> &[Receipt] {
        &self.receipts
    }

    /// Every line as the API shows it.
    pub fn lines(&self) -> Vec<LineView> {
        self.lines
            .iter()
            .map(|l| LineView {
                sku: l.line.sku.clone(),
                requested: l.line.qty,
                shipped: l.shipped(),
                received: l.received,
                shortfall: l.shortfall,
                in_transit: l.shipped() - l.received - l.shortfall,
                closed: l.closed,
                not_shipped: match &l.shipment {
                    Shipment::NotShipped { why } => Some(why.clone()),
                    _ => None,
                },
            })
            .collect()
    }

    /// No question is outstanding: the last operation is complete.
    pub fn is_settled(&self) -> bool {
        self.lines
            .iter()
            .all(|l| l.out.is_none() && l.queue.is_empty())
    }

    fn allowed(&self) -> Vec<Status> {
        match self.status {
            Status::Requested => alloc::vec![Status::InTransit, Status::Cancelled],
            Status::Shipping => alloc::vec![Status::InTransit],
            Status::InTransit | Status::PartiallyReceived => {
                alloc::vec![Status::PartiallyReceived, Status::Received]
            }
            Status::Received | Status::Cancelled => Vec::new(),
        }
    }

    fn invalid(&self, to: Status) -> TransferError {
        TransferError::InvalidTransition {
            from: self.status,
            to,
            allowed: self.allowed(),
        }
    }

    fn record(&mut self, now: Timestamp, actor: &str, to: Status, note: Option<String>) {
        if self.status == to {
            return;
        }
        if self.history.len() < MAX_HISTORY {
            self.history.push(HistoryEntry {
                at: now,
                actor: actor.into(),
                from: Some(self.status),
                to,
                note,
            });
        }
        self.status = to;
    }

    fn ask(line: &mut LineState, ask: Ask, now: Timestamp) {
        line.seq = line.seq.wrapping_add(1);
        line.out = Some(Outgoing {
            ask,
            seq: line.seq,
            sends: 0,
            next_at: now,
        });
    }

    /// Ships: `Ok(true)` when ship messages went out (drive until settled),
    /// `Ok(false)` when it already shipped (nothing to do).
    pub fn handle_ship(&mut self, now: Timestamp, actor: &str) -> Result<bool, TransferError> {
        match self.status {
            Status::Requested => {}
            Status::Shipping => return Ok(true),
            Status::InTransit | Status::PartiallyReceived | Status::Received => return Ok(false),
            Status::Cancelled => return Err(self.invalid(Status::InTransit)),
        }
        for l in &mut self.lines {
            Self::ask(l, Ask::Ship, now);
        }
        self.record(now, actor, Status::Shipping, None);
        Ok(true)
    }

    /// The result of the ship, once settled: `Err(Insufficient)` when no line shipped.
    pub fn ship_outcome(&self) -> Option<Result<(), TransferError>> {
        match self.status {
            Status::Shipping => None,
            Status::Cancelled if self.lines.iter().all(|l| l.shipment != Shipment::Pending) => {
                let short: Vec<(Sku, Qty, Qty)> = self
                    .lines
                    .iter()
                    .filter_map(|l| match &l.shipment {
                        Shipment::NotShipped {
                            why: NotShipped::Insufficient { available },
                        } => Some((l.line.sku.clone(), l.line.qty, *available)),
                        _ => None,
                    })
                    .collect();
                Some(Err(TransferError::Insufficient(short)))
            }
            Status::Cancelled => Some(Err(self.invalid(Status::InTransit))),
            _ => Some(Ok(())),
        }
    }

    /// Cancels before shipping (nothing was sent, nothing to undo).
    pub fn handle_cancel(&mut self, now: Timestamp, actor: &str) -> Result<(), TransferError> {
        match self.status {
            Status::Requested => {
                self.record(now, actor, Status::Cancelled, None);
                Ok(())
            }
            Status::Cancelled => Ok(()),
            _ => Err(self.invalid(Status::Cancelled)),
        }
    }

    /// A receipt. `key` names it (the same key again is the same receipt:
    /// its number, nothing new sent). Lines are merged into queued
    /// questions; drive until settled.
    pub fn handle_receive(
        &mut self,
        now: Timestamp,
        actor: &str,
        key: &str,
        lines: &[TransferLine],
        close: bool,
    ) -> Result<u32, TransferError> {
        if let Some(r) = self.receipts.iter().find(|r| r.key == key) {
            return if r.lines == lines && r.close == close {
                Ok(r.n)
            } else {
                Err(TransferError::Conflict)
            };
        }
        match self.status {
            Status::InTransit | Status::PartiallyReceived => {}
            Status::Shipping => return Err(TransferError::Busy),
            _ => return Err(self.invalid(Status::Received)),
        }
        if lines.len() > MAX_LINES || (lines.is_empty() && !close) {
            return Err(if lines.is_empty() {
                TransferError::NoLines
            } else {
                TransferError::TooManyLines { max: MAX_LINES }
            });
        }
        if self.receipts.len() >= MAX_RECEIPTS {
            return Err(TransferError::TooManyReceipts { max: MAX_RECEIPTS });
        }
        let mut idx = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            if lines[..i].iter().any(|o| o.sku == l.sku) {
                return Err(TransferError::DuplicateSku(l.sku.clone()));
            }
            let Some(at) = self.lines.iter().position(|s| s.line.sku == l.sku) else {
                return Err(TransferError::UnknownLine(l.sku.clone()));
            };
            let s = &self.lines[at];
            if s.shipment != Shipment::Shipped {
                return Err(TransferError::UnknownLine(l.sku.clone()));
            }
            let min = if close { 0 } else { 1 };
            if !(min..=MAX_LINE_QTY).contains(&l.qty) {
                return Err(TransferError::QtyOutOfRange {
                    sku: l.sku.clone(),
                    qty: l.qty,
                });
            }
            let remaining = if s.closed { 0 } else { s.unclaimed() };
            if l.qty > remaining {
                return Err(TransferError::OverReceived {
                    sku: l.sku.clone(),
                    remaining,
                });
            }
            idx.push((at, l.qty));
        }
        let n = self.receipts.len() as u32 + 1;
        for (i, s) in self.lines.iter_mut().enumerate() {
            let named = idx.iter().find(|(at, _)| *at == i).map(|(_, q)| *q);
            let open = s.shipment == Shipment::Shipped && !s.closed;
            match named {
                Some(q) if open && (q > 0 || close) => s.queue.push((n, q, close)),
                None if close && open => s.queue.push((n, 0, true)),
                _ => {}
            }
        }
        self.receipts.push(Receipt {
            n,
            key: key.into(),
            lines: lines.to_vec(),
            close,
            at: now,
            actor: actor.into(),
        });
        self.start_queued(now);
        Ok(n)
    }

    fn start_queued(&mut self, now: Timestamp) {
        for l in &mut self.lines {
            if l.out.is_none() && !l.queue.is_empty() {
                let (receipt, qty, close) = l.queue.remove(0);
                Self::ask(
                    l,
                    Ask::Receive {
                        receipt,
                        qty,
                        close,
                    },
                    now,
                );
            }
        }
    }

    /// The messages due at `now` (first sends and resends), each with its tag.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Vec<Transmit> {
        let mut out = Vec::new();
        for (i, l) in self.lines.iter_mut().enumerate() {
            let Some(o) = l.out.as_mut() else { continue };
            if o.next_at > now {
                continue;
            }
            let command = match o.ask {
                Ask::Ship => Command::TransferShip {
                    transfer: self.id.clone(),
                    from: self.from.clone(),
                    to: self.to.clone(),
                    qty: l.line.qty,
                },
                Ask::Void => Command::TransferCancel {
                    transfer: self.id.clone(),
                },
                Ask::Receive {
                    receipt,
                    qty,
                    close,
                } => match receipt_op(receipt, &self.id) {
                    Some(op) => Command::TransferReceive {
                        op,
                        transfer: self.id.clone(),
                        qty,
                        close,
                    },
                    None => continue,
                },
            };
            let wait = RESEND_AFTER_MS
                .saturating_mul(1_i64 << o.sends.min(10))
                .min(MAX_RESEND_MS);
            o.sends = o.sends.saturating_add(1);
            o.next_at = now.plus_ms(wait);
            out.push(Transmit {
                tag: Tag {
                    line: i as u32,
                    seq: o.seq,
                },
                sku: l.line.sku.clone(),
                command,
            });
        }
        out
    }

    /// When to call [`Transfer::poll_transmit`] again (resends), if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.lines
            .iter()
            .filter_map(|l| l.out.map(|o| o.next_at))
            .min()
    }

    /// A SKU object's answer to the message tagged `tag`.
    pub fn handle_reply(&mut self, now: Timestamp, tag: Tag, reply: &TransferReply) {
        let Some(l) = self.lines.get_mut(tag.line as usize) else {
            return;
        };
        let Some(o) = l.out else { return };
        if o.seq != tag.seq {
            return;
        }
        l.out = None;
        match (o.ask, reply) {
            (Ask::Ship, TransferReply::Done) => l.shipment = Shipment::Shipped,
            (Ask::Ship, TransferReply::Insufficient { available, .. }) => {
                l.shipment = Shipment::NotShipped {
                    why: NotShipped::Insufficient {
                        available: *available,
                    },
                };
                Self::ask(l, Ask::Void, now);
            }
            (Ask::Ship, TransferReply::Refused { refusal }) => {
                l.shipment = Shipment::NotShipped {
                    why: NotShipped::Refused {
                        refusal: refusal.clone(),
                    },
                };
                Self::ask(l, Ask::Void, now);
            }
            // A void that finds it shipped: a duplicate ship landed first.
            (Ask::Void, TransferReply::AlreadyShipped) => l.shipment = Shipment::Shipped,
            (Ask::Void, _) => {}
            (Ask::Receive { qty, close, .. }, TransferReply::Done) => {
                l.received += qty;
                if close {
                    l.shortfall = l.shipped() - l.received;
                }
                l.closed = l.received + l.shortfall >= l.shipped();
            }
            // A receipt refused by the SKU (it is closed there): stop asking.
            (Ask::Receive { .. }, _) => {
                l.queue.clear();
                l.closed = true;
                l.shortfall = l.shipped() - l.received;
            }
            (Ask::Ship, TransferReply::AlreadyShipped) => {}
        }
        self.start_queued(now);
        self.advance(now);
    }

    fn advance(&mut self, now: Timestamp) {
        if self.status == Status::Shipping
            && self
                .lines
                .iter()
                .all(|l| l.shipment != Shipment::Pending && l.out.is_none())
        {
            let actor = self
                .history
                .last()
                .map(|h| h.actor.clone())
                .unwrap_or_default();
            if self.lines.iter().any(|l| l.shipment == Shipment::Shipped) {
                self.record(now, &actor, Status::InTransit, None);
            } else {
                self.record(
                    now,
                    &actor,
                    Status::Cancelled,
                    Some("no line could ship".into()),
                );
            }
        }
        if matches!(self.status, Status::InTransit | Status::PartiallyReceived) {
            let shipped: Vec<&LineState> = self
                .lines
                .iter()
                .filter(|l| l.shipment == Shipment::Shipped)
                .collect();
            let actor = self
                .receipts
                .last()
                .map(|r| r.actor.clone())
                .unwrap_or_default();
            if shipped.iter().all(|l| l.closed) {
                self.record(now, &actor, Status::Received, None);
            } else if shipped.iter().any(|l| l.received > 0 || l.closed) {
                self.record(now, &actor, Status::PartiallyReceived, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_ms(1_700_000_000_000 + ms)
    }
    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap_or_else(|_| Sku::parse("X").unwrap_or_else(|_| unreachable!()))
    }
    fn loc(s: &str) -> LocationId {
        LocationId::parse(s).unwrap_or_else(|_| unreachable!())
    }
    fn line(s: &str, qty: Qty) -> TransferLine {
        TransferLine { sku: sku(s), qty }
    }
    fn req(lines: Vec<TransferLine>) -> CreateRequest {
        CreateRequest {
            id: TransferId::parse("T1").unwrap_or_else(|_| unreachable!()),
            from: loc("w"),
            to: loc("s"),
            lines,
            fp: 7,
        }
    }
    /// Two SKU states with stock at `w`, and the coordinator driven over a
    /// perfect network until settled.
    fn drive(tr: &mut Transfer, skus: &mut BTreeMapLike, now: Timestamp) {
        for _ in 0..20 {
            let out = tr.poll_transmit(now);
            if out.is_empty() {
                break;
            }
            for m in out {
                let st = skus.get(&m.sku);
                let reply = TransferReply::run(st, now, &m.command);
                tr.handle_reply(now, m.tag, &reply);
            }
        }
    }
    struct BTreeMapLike(alloc::collections::BTreeMap<Sku, SkuState>);
    impl BTreeMapLike {
        fn get(&mut self, s: &Sku) -> &mut SkuState {
            self.0.entry(s.clone()).or_default()
        }
    }
    fn stocked(pairs: &[(&str, Qty)]) -> BTreeMapLike {
        let mut m = BTreeMapLike(Default::default());
        for (i, (s, q)) in pairs.iter().enumerate() {
            let st = m.get(&sku(s));
            let cmd = Command::Receive {
                op: OpId::parse(&format!("r{i}")).unwrap_or_else(|_| unreachable!()),
                location: loc("w"),
                qty: *q,
            };
            let _ = TransferReply::run(st, t(0), &cmd);
        }
        m
    }

    #[test]
    fn validates_the_request() {
        let e = |r: CreateRequest| Transfer::new(t(0), "a", r).err();
        assert_eq!(e(req(Vec::new())), Some(TransferError::NoLines));
        assert_eq!(
            e(req(alloc::vec![line("A", 1), line("A", 2)])),
            Some(TransferError::DuplicateSku(sku("A")))
        );
        assert!(matches!(
            e(req(alloc::vec![line("A", 0)])),
            Some(TransferError::QtyOutOfRange { .. })
        ));
        let mut same = req(alloc::vec![line("A", 1)]);
        same.to = loc("w");
        assert_eq!(e(same), Some(TransferError::SameLocation));
        let many: Vec<TransferLine> = (0..101).map(|i| line(&format!("S{i}"), 1)).collect();
        assert_eq!(e(req(many)), Some(TransferError::TooManyLines { max: 100 }));
    }

    #[test]
    fn ships_receives_in_parts_and_closes_with_a_shortfall() {
        let mut skus = stocked(&[("A", 10), ("B", 5)]);
        let mut tr = Transfer::new(t(0), "admin", req(alloc::vec![line("A", 4), line("B", 5)]))
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(tr.handle_ship(t(1), "admin"), Ok(true));
        assert_eq!(tr.status(), Status::Shipping);
        drive(&mut tr, &mut skus, t(1));
        assert_eq!(tr.status(), Status::InTransit);
        assert_eq!(tr.ship_outcome(), Some(Ok(())));
        let a = skus.get(&sku("A")).position(&loc("w"));
        assert_eq!(a.on_hand, 6);
        assert_eq!(skus.get(&sku("A")).position(&loc("s")).incoming, 4);
        // A receipt of 3 A, then the same key again: one receipt.
        let n = tr.handle_receive(t(2), "pos", "k1", &[line("A", 3)], false);
        assert_eq!(n, Ok(1));
        drive(&mut tr, &mut skus, t(2));
        assert_eq!(
            tr.handle_receive(t(3), "pos", "k1", &[line("A", 3)], false),
            Ok(1)
        );
        assert_eq!(
            tr.handle_receive(t(3), "pos", "k1", &[line("A", 2)], false),
            Err(TransferError::Conflict)
        );
        drive(&mut tr, &mut skus, t(3));
        assert_eq!(tr.status(), Status::PartiallyReceived);
        assert!(matches!(
            tr.handle_receive(t(4), "pos", "k2", &[line("A", 2)], false),
            Err(TransferError::OverReceived { remaining: 1, .. })
        ));
        // Close: A's last unit and B's five are short.
        assert_eq!(tr.handle_receive(t(4), "pos", "k3", &[], true), Ok(2));
        drive(&mut tr, &mut skus, t(4));
        assert_eq!(tr.status(), Status::Received);
        let v = tr.lines();
        assert_eq!((v[0].received, v[0].shortfall, v[0].in_transit), (3, 1, 0));
        assert_eq!((v[1].received, v[1].shortfall), (0, 5));
        let s = skus.get(&sku("A")).position(&loc("s"));
        assert_eq!((s.on_hand, s.incoming), (3, 0));
        assert_eq!(skus.get(&sku("B")).position(&loc("s")).incoming, 0);
        assert!(tr.is_settled());
        let statuses: Vec<Status> = tr.history().iter().map(|h| h.to).collect();
        assert_eq!(
            statuses,
            alloc::vec![
                Status::Requested,
                Status::Shipping,
                Status::InTransit,
                Status::PartiallyReceived,
                Status::Received
            ]
        );
    }

    #[test]
    fn a_line_short_of_stock_is_voided_and_no_line_shipped_cancels() {
        let mut skus = stocked(&[("A", 10), ("B", 1)]);
        let mut tr = Transfer::new(t(0), "a", req(alloc::vec![line("A", 4), line("B", 5)]))
            .unwrap_or_else(|_| unreachable!());
        let _ = tr.handle_ship(t(1), "a");
        drive(&mut tr, &mut skus, t(1));
        assert_eq!(tr.status(), Status::InTransit);
        let v = tr.lines();
        assert_eq!((v[0].shipped, v[1].shipped), (4, 0));
        assert_eq!(
            v[1].not_shipped,
            Some(NotShipped::Insufficient { available: 1 })
        );
        // A late duplicate of B's ship never lands: the SKU has it cancelled.
        let late = Command::TransferShip {
            transfer: tr.id().clone(),
            from: loc("w"),
            to: loc("s"),
            qty: 1,
        };
        assert!(matches!(
            TransferReply::run(skus.get(&sku("B")), t(2), &late),
            TransferReply::Refused { .. }
        ));
        assert!(matches!(
            tr.handle_receive(t(2), "a", "k", &[line("B", 1)], false),
            Err(TransferError::UnknownLine(_))
        ));

        let mut skus = stocked(&[("A", 1)]);
        let mut tr = Transfer::new(t(0), "a", req(alloc::vec![line("A", 4)]))
            .unwrap_or_else(|_| unreachable!());
        let _ = tr.handle_ship(t(1), "a");
        drive(&mut tr, &mut skus, t(1));
        assert_eq!(tr.status(), Status::Cancelled);
        assert_eq!(
            tr.ship_outcome(),
            Some(Err(TransferError::Insufficient(alloc::vec![(
                sku("A"),
                4,
                1
            )])))
        );
        assert_eq!(skus.get(&sku("A")).position(&loc("w")).on_hand, 1);
    }

    #[test]
    fn cancel_only_before_shipping_and_ship_after_cancel_is_refused() {
        let mut tr = Transfer::new(t(0), "a", req(alloc::vec![line("A", 1)]))
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(tr.handle_cancel(t(1), "a"), Ok(()));
        assert_eq!(tr.handle_cancel(t(2), "a"), Ok(()));
        assert!(matches!(
            tr.handle_ship(t(3), "a"),
            Err(TransferError::InvalidTransition {
                from: Status::Cancelled,
                ..
            })
        ));
        assert!(tr.poll_transmit(t(3)).is_empty());
        let mut tr = Transfer::new(t(0), "a", req(alloc::vec![line("A", 1)]))
            .unwrap_or_else(|_| unreachable!());
        let _ = tr.handle_ship(t(1), "a");
        match tr.handle_cancel(t(2), "a") {
            Err(TransferError::InvalidTransition { from, to, allowed }) => {
                assert_eq!((from, to), (Status::Shipping, Status::Cancelled));
                assert_eq!(allowed, alloc::vec![Status::InTransit]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resends_until_answered_and_ignores_stale_replies() {
        let mut skus = stocked(&[("A", 10)]);
        let mut tr = Transfer::new(t(0), "a", req(alloc::vec![line("A", 2)]))
            .unwrap_or_else(|_| unreachable!());
        let _ = tr.handle_ship(t(0), "a");
        let first = tr.poll_transmit(t(0));
        assert_eq!(first.len(), 1);
        assert!(tr.poll_transmit(t(500)).is_empty());
        assert_eq!(tr.poll_timeout(), Some(t(1_000)));
        let again = tr.poll_transmit(t(1_000));
        assert_eq!(again.len(), 1);
        assert_eq!(tr.poll_timeout(), Some(t(3_000)));
        // Both copies land at the SKU: one ship.
        let r1 = TransferReply::run(skus.get(&sku("A")), t(1_000), &first[0].command);
        let r2 = TransferReply::run(skus.get(&sku("A")), t(1_001), &again[0].command);
        assert_eq!((&r1, &r2), (&TransferReply::Done, &TransferReply::Done));
        tr.handle_reply(t(1_001), again[0].tag, &r2);
        tr.handle_reply(t(1_002), first[0].tag, &r1);
        tr.handle_reply(t(1_002), Tag { line: 9, seq: 1 }, &r1);
        assert_eq!(tr.status(), Status::InTransit);
        assert_eq!(skus.get(&sku("A")).position(&loc("w")).on_hand, 8);
        assert_eq!(tr.poll_timeout(), None);
        // The serde row resumes where it was.
        let row = serde_json::to_string(&tr).unwrap_or_default();
        let back: Transfer = serde_json::from_str(&row).unwrap_or_else(|_| unreachable!());
        assert_eq!(back, tr);
    }
}
