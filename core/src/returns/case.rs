//! The return coordinator: one return (of a POS sale or an order) as a
//! sans-IO state machine, like [`crate::reservation::Reservation`]. It does
//! no IO, reads no clock and draws no random number: requests come in through
//! `handle_*` with the time, messages for SKU objects and the next wake-up come
//! out through [`ReturnCase::poll_transmit`] and [`ReturnCase::poll_timeout`].
//! It never panics on its inputs (a reply for an unknown receipt or line,
//! from an older round, twice, or out of order is ignored). It is `serde`:
//! its Durable Object stores it as one JSON row and resumes from it.
//!
//! # The protocol
//!
//! ```text
//! initiate (the source's claim: what was sold, where, what was paid)
//!   -> initiated --receive--> receiving --every line answered--> received
//!                                 (ReturnReceive to each line's SKU object,
//!                                  op id ret.<id>.<receipt>.<line>: applied once)
//!   received --refund(amount <= paid for the received units - earlier refunds)--> refunded
//!   received --exchange (replacement held by the shell, credit computed)--> exchanged
//! ```
//!
//! Units are never received beyond what the return initiated (counting
//! receipts still in flight); the return never initiates beyond what its
//! source sold, counting earlier returns: the source's record arbitrates
//! that when it answers the claim ([`Claim`]) before the return exists.
//!
//! # The driving loop (as for reservations)
//!
//! 1. Load from the JSON row (or [`ReturnCase::new`] with the claim); call
//!    the `handle_*` of the request with `now`.
//! 2. Drain [`ReturnCase::poll_transmit`]; store the row; send each
//!    [`Transmit`] to its SKU object (in parallel); feed each answer, turned
//!    into a [`ReceiptReply`], to [`ReturnCase::handle_reply`] with its [`Tag`].
//!    A failed call is not fed: the machine resends on its own timer.
//! 3. Repeat 2 until [`ReturnCase::outcome`] of the request's [`Ticket`] is
//!    `Some` (or the request's own bound passes: answer "retry").
//! 4. Store the row, point the alarm at [`ReturnCase::poll_timeout`]; the
//!    alarm calls [`ReturnCase::handle_timeout`] and goes on at 2.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::ReturnSource;
use crate::ids::{IdError, LocationId, OpId, ReturnId, SaleId, Sku};
use crate::money::{Currency, Decimal, Money, MoneyError, RoundingStrategy};
use crate::sku::{Command, Condition, Event, Rejection};
use crate::stock::{Qty, MAX_LINE_QTY};
use crate::time::Timestamp;

/// Most lines in a return, in a receipt, or in a claim.
pub const MAX_LINES: usize = 100;
/// Most receipts against one return.
pub const MAX_RECEIPTS: usize = 100;
/// Most refunds of one return.
pub const MAX_REFUNDS: usize = 100;
/// Longest reason text, in bytes.
pub const MAX_REASON_LEN: usize = 200;
/// Most sends of one line's `ReturnReceive` before the line is parked (a
/// retry of the receive request sends it again).
pub const MAX_SENDS: u32 = 10;
/// The wait before the first resend; it doubles with every send, capped at
/// [`MAX_RESEND_MS`].
pub const RESEND_AFTER_MS: i64 = 1_000;
pub const MAX_RESEND_MS: i64 = 60_000;

/// The wait after the `sends`-th send.
fn backoff(sends: u32) -> i64 {
    (RESEND_AFTER_MS << sends.saturating_sub(1).min(16)).min(MAX_RESEND_MS)
}

/// One SKU of the source as the source answered the claim: `qty` units
/// claimed for this return, sold at `location`, `paid` for exactly these
/// units (tax included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimedLine {
    pub sku: Sku,
    pub qty: Qty,
    pub location: LocationId,
    pub paid: Money,
}

/// The source's answer to a claim: one line per SKU of the return.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub currency: Currency,
    pub lines: Vec<ClaimedLine>,
}

/// A line of a return as the client asks: `qty` units of `sku`, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnLine {
    pub sku: Sku,
    pub qty: Qty,
    pub reason: String,
}

/// `POST /v1/returns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitiateRequest {
    pub id: ReturnId,
    pub source: ReturnSource,
    pub lines: Vec<ReturnLine>,
    /// The caller's fingerprint of the content.
    pub fp: u64,
}

/// A line of a receipt: `qty` units of `sku` back in `condition`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiveLine {
    pub sku: Sku,
    pub qty: Qty,
    pub condition: Condition,
}

/// `POST /v1/returns/{id}/receive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// The caller's id of the request (its Idempotency-Key's hash): the
    /// same request again resumes or answers the same receipt.
    pub request: u64,
    pub fp: u64,
    pub location: LocationId,
    pub lines: Vec<ReceiveLine>,
}

/// Which question a message asks; its reply comes back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub receipt: u32,
    pub line: u32,
    pub round: u32,
}

/// A message for one SKU object (`ReturnReceive`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub tag: Tag,
    pub sku: Sku,
    pub command: Command,
}

/// What a SKU object answered a `ReturnReceive`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ReceiptReply {
    /// Booked (now, or by an earlier send of the same op id).
    Applied,
    /// Refused: nothing changed in the SKU object; `code` is the API's code.
    Refused { code: String, detail: String },
}

impl ReceiptReply {
    /// The reply to the `ReturnReceive` that a SKU state decided as `result`.
    pub fn from_sku(result: &Result<Vec<Event>, Rejection>) -> ReceiptReply {
        match result {
            Ok(_) | Err(Rejection::Exists) => ReceiptReply::Applied,
            Err(r) => ReceiptReply::Refused {
                code: r.code().to_string(),
                detail: r.to_string(),
            },
        }
    }
}

/// Names one receive: its result is [`ReturnCase::outcome`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ticket(pub u32);

/// What the API shows as the return's status.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Initiated,
    /// A receipt is being booked in the SKU objects.
    Receiving,
    Received,
    Refunded,
    Exchanged,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Initiated => "initiated",
            CaseStatus::Receiving => "receiving",
            CaseStatus::Received => "received",
            CaseStatus::Refunded => "refunded",
            CaseStatus::Exchanged => "exchanged",
        }
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request on a return was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseError {
    NoLines,
    TooManyLines {
        max: usize,
    },
    QtyOutOfRange {
        sku: Sku,
        qty: Qty,
    },
    BadReason {
        sku: Sku,
    },
    /// The claim does not match the lines (the source answered other SKUs or units).
    ClaimMismatch,
    /// A SKU that is not in this return.
    NotInReturn {
        sku: Sku,
    },
    /// More units than the return initiated, counting units received or in flight.
    ExceedsInitiated {
        sku: Sku,
        initiated: Qty,
        received: Qty,
        requested: Qty,
    },
    TooManyReceipts,
    TooManyRefunds,
    /// The same request id with other content.
    Conflict,
    /// Not in a state for this (`from`, and what it would go `to`).
    InvalidState {
        from: CaseStatus,
        to: CaseStatus,
    },
    /// More than what was paid for the units received, minus earlier refunds.
    RefundTooLarge {
        max: Money,
    },
    /// An amount of zero or less, or in another currency.
    BadAmount,
    Money(MoneyError),
    BadId(IdError),
    /// Every line of the receipt was refused by its SKU object.
    Refused {
        code: String,
        detail: String,
    },
    /// A SKU object did not confirm in time: retry the same request.
    Unconfirmed,
}

impl CaseError {
    /// The API's error code.
    pub fn code(&self) -> &str {
        match self {
            CaseError::Conflict => "idempotency_key_reused",
            CaseError::InvalidState { .. } => "invalid_transition",
            CaseError::Unconfirmed | CaseError::TooManyReceipts | CaseError::TooManyRefunds => {
                "overloaded"
            }
            CaseError::Refused { code, .. } => code,
            _ => "invalid_request",
        }
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaseError::NoLines => f.write_str("at least one line is required"),
            CaseError::TooManyLines { max } => write!(f, "at most {max} lines"),
            CaseError::QtyOutOfRange { sku, qty } => {
                write!(f, "{sku}: quantity {qty} is outside 1..={MAX_LINE_QTY}")
            }
            CaseError::BadReason { sku } => write!(
                f,
                "{sku}: reason must be 1 to {MAX_REASON_LEN} characters without control characters"
            ),
            CaseError::ClaimMismatch => f.write_str("the source answered other lines"),
            CaseError::NotInReturn { sku } => write!(f, "{sku} is not in this return"),
            CaseError::ExceedsInitiated {
                sku,
                initiated,
                received,
                requested,
            } => write!(
                f,
                "{sku}: {requested} requested, {initiated} in the return, {received} already received"
            ),
            CaseError::TooManyReceipts => write!(f, "at most {MAX_RECEIPTS} receipts per return"),
            CaseError::TooManyRefunds => write!(f, "at most {MAX_REFUNDS} refunds per return"),
            CaseError::Conflict => f.write_str("this request was already made with other content"),
            CaseError::InvalidState { from, to } => {
                write!(f, "a return cannot go from {from} to {to}")
            }
            CaseError::RefundTooLarge { max } => {
                write!(f, "refund above what was paid for the units received ({max})")
            }
            CaseError::BadAmount => {
                f.write_str("the amount must be above zero, in the currency of the sale")
            }
            CaseError::Money(e) => write!(f, "{e}"),
            CaseError::BadId(e) => write!(f, "return id: {e}"),
            CaseError::Refused { detail, .. } => write!(f, "refused: {detail}; nothing received"),
            CaseError::Unconfirmed => {
                f.write_str("a SKU object did not confirm the receipt yet; retry the same request")
            }
        }
    }
}

/// A line of the return and what came back of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseLine {
    pub sku: Sku,
    /// Units initiated.
    pub qty: Qty,
    pub reason: String,
    /// Where the source sold them.
    pub sold_at: LocationId,
    /// What was paid for the `qty` units (tax included).
    pub paid: Money,
    /// Units booked, per condition.
    pub restock: Qty,
    pub damaged: Qty,
    pub return_to_vendor: Qty,
}

impl CaseLine {
    pub fn received(&self) -> Qty {
        self.restock + self.damaged + self.return_to_vendor
    }
    fn add(&mut self, condition: Condition, qty: Qty) {
        match condition {
            Condition::Restock => self.restock += qty,
            Condition::Damaged => self.damaged += qty,
            Condition::ReturnToVendor => self.return_to_vendor += qty,
        }
    }
}

/// The state of one line of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
pub enum LineStatus {
    /// Sent (or to be sent) to its SKU object; `out` is `None` once parked.
    Pending {
        #[serde(default)]
        out: Option<Outgoing>,
    },
    Applied,
    Refused {
        code: String,
        detail: String,
    },
}

/// The timer of a pending line (public for the JSON row only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    sends: u32,
    next_at: Timestamp,
}

/// A line of a receipt and its state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptLine {
    pub sku: Sku,
    pub qty: Qty,
    pub condition: Condition,
    pub status: LineStatus,
}

/// One receive request and where its lines are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub n: u32,
    pub request: u64,
    pub fp: u64,
    pub location: LocationId,
    pub at: Timestamp,
    pub lines: Vec<ReceiptLine>,
}

impl Receipt {
    /// Every line answered (applied or refused).
    pub fn settled(&self) -> bool {
        !self
            .lines
            .iter()
            .any(|l| matches!(l.status, LineStatus::Pending { .. }))
    }
    fn in_flight(&self) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l.status, LineStatus::Pending { out: Some(_) }))
    }
}

/// A refund given against the return.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    pub request: u64,
    pub amount: Money,
    pub at: Timestamp,
}

/// The exchange the shell booked: the replacement order and the price difference.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    pub order_id: String,
    pub replacement_total: Money,
    pub credit: Money,
    /// Replacement total minus credit: positive, the customer pays.
    pub difference: Money,
    pub at: Timestamp,
}

/// One return's coordinator. See the module documentation for the loop.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnCase {
    id: ReturnId,
    source: ReturnSource,
    fp: u64,
    currency: Currency,
    lines: Vec<CaseLine>,
    receipts: Vec<Receipt>,
    refunds: Vec<Refund>,
    exchange: Option<Exchange>,
    created_at: Timestamp,
    round: u32,
}

/// `s` is a reason: 1 to [`MAX_REASON_LEN`] bytes, no control characters.
fn reason_ok(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_REASON_LEN && !s.chars().any(char::is_control)
}

fn check_qty(sku: &Sku, qty: Qty) -> Result<(), CaseError> {
    if (1..=MAX_LINE_QTY).contains(&qty) {
        Ok(())
    } else {
        Err(CaseError::QtyOutOfRange {
            sku: sku.clone(),
            qty,
        })
    }
}

fn check_count(n: usize) -> Result<(), CaseError> {
    match n {
        0 => Err(CaseError::NoLines),
        n if n > MAX_LINES => Err(CaseError::TooManyLines { max: MAX_LINES }),
        _ => Ok(()),
    }
}

/// Merges lines per SKU (in first-seen order), checking each quantity.
pub fn merge_return_lines(lines: &[ReturnLine]) -> Result<Vec<ReturnLine>, CaseError> {
    check_count(lines.len())?;
    let mut out: Vec<ReturnLine> = Vec::new();
    for l in lines {
        check_qty(&l.sku, l.qty)?;
        if !reason_ok(&l.reason) {
            return Err(CaseError::BadReason { sku: l.sku.clone() });
        }
        match out.iter_mut().find(|o| o.sku == l.sku) {
            Some(o) => {
                o.qty += l.qty;
                check_qty(&o.sku, o.qty)?;
            }
            None => out.push(l.clone()),
        }
    }
    Ok(out)
}

/// `total * part / whole`, rounded toward zero to the currency's minor unit.
fn share(total: Money, part: Qty, whole: Qty) -> Result<Money, CaseError> {
    if whole <= 0 || part <= 0 {
        return Ok(Money::zero(total.currency));
    }
    if part >= whole {
        return Ok(total);
    }
    let amount = total
        .amount
        .checked_mul(Decimal::from(part))
        .and_then(|x| x.checked_div(Decimal::from(whole)))
        .ok_or(CaseError::Money(MoneyError::Overflow))?;
    Ok(Money {
        amount,
        currency: total.currency,
    }
    .round(RoundingStrategy::ToZero))
}

/// What a claim of `qty` more units pays back when `before` units of the
/// `sold` ones were claimed already and `paid` was paid for all `sold`:
/// the difference of two proportional shares rounded toward zero, so the
/// claims of every unit add up to exactly `paid`.
pub fn claim_share(paid: Money, sold: Qty, before: Qty, qty: Qty) -> Result<Money, CaseError> {
    let upto = share(paid, before.saturating_add(qty), sold)?;
    let already = share(paid, before, sold)?;
    upto.checked_sub(already).map_err(CaseError::Money)
}

/// Splits `total` (a bundle line's price) over components by `weights`
/// (units of each per bundle): proportional shares rounded toward zero, the
/// rest on the last, so the shares add up to exactly `total`.
pub fn split_paid(total: Money, weights: &[Qty]) -> Result<Vec<Money>, CaseError> {
    let whole: Qty = weights.iter().map(|w| (*w).max(0)).sum();
    let mut out = Vec::with_capacity(weights.len());
    let mut given = Money::zero(total.currency);
    for (i, w) in weights.iter().enumerate() {
        let part = if i + 1 == weights.len() {
            total.checked_sub(given).map_err(CaseError::Money)?
        } else {
            share(total, (*w).max(0), whole)?
        };
        given = given.checked_add(part).map_err(CaseError::Money)?;
        out.push(part);
    }
    Ok(out)
}

impl ReturnCase {
    /// A return initiated with the source's `claim` (one line per SKU of
    /// the merged request, the same units): no stock changes.
    pub fn new(now: Timestamp, req: InitiateRequest, claim: &Claim) -> Result<Self, CaseError> {
        let merged = merge_return_lines(&req.lines)?;
        if claim.lines.len() != merged.len() {
            return Err(CaseError::ClaimMismatch);
        }
        let mut lines = Vec::with_capacity(merged.len());
        for l in merged {
            let c = claim
                .lines
                .iter()
                .find(|c| c.sku == l.sku)
                .ok_or(CaseError::ClaimMismatch)?;
            if c.qty != l.qty || c.paid.currency != claim.currency || c.paid.is_negative() {
                return Err(CaseError::ClaimMismatch);
            }
            lines.push(CaseLine {
                sku: l.sku,
                qty: l.qty,
                reason: l.reason,
                sold_at: c.location.clone(),
                paid: c.paid,
                restock: 0,
                damaged: 0,
                return_to_vendor: 0,
            });
        }
        // The op ids of its receipts must be valid.
        op_id(&req.id, MAX_RECEIPTS as u32, MAX_LINES as u32).map_err(CaseError::BadId)?;
        Ok(ReturnCase {
            id: req.id,
            source: req.source,
            fp: req.fp,
            currency: claim.currency,
            lines,
            receipts: Vec::new(),
            refunds: Vec::new(),
            exchange: None,
            created_at: now,
            round: 0,
        })
    }

    // ---- inputs ----

    /// `POST /v1/returns/{id}/receive`: books units per line and condition
    /// at `location`. The same request again resumes its receipt (or answers
    /// it); other content under the same request id is a [`CaseError::Conflict`].
    pub fn handle_receive(
        &mut self,
        now: Timestamp,
        req: ReceiveRequest,
    ) -> Result<Ticket, CaseError> {
        self.advance(now);
        if let Some(r) = self.receipts.iter().position(|r| r.request == req.request) {
            if self.receipts[r].fp != req.fp {
                return Err(CaseError::Conflict);
            }
            self.round = self.round.wrapping_add(1);
            // Re-arm the parked lines: the same op ids, applied once.
            for l in &mut self.receipts[r].lines {
                if let LineStatus::Pending { out } = &mut l.status {
                    *out = Some(Outgoing {
                        sends: 0,
                        next_at: now,
                    });
                }
            }
            return Ok(Ticket(r as u32));
        }
        if self.exchange.is_some() {
            return Err(CaseError::InvalidState {
                from: CaseStatus::Exchanged,
                to: CaseStatus::Received,
            });
        }
        check_count(req.lines.len())?;
        if self.receipts.len() >= MAX_RECEIPTS {
            return Err(CaseError::TooManyReceipts);
        }
        for l in &req.lines {
            check_qty(&l.sku, l.qty)?;
            let Some(line) = self.lines.iter().find(|x| x.sku == l.sku) else {
                return Err(CaseError::NotInReturn { sku: l.sku.clone() });
            };
            let requested: Qty = req
                .lines
                .iter()
                .filter(|x| x.sku == l.sku)
                .map(|x| x.qty)
                .sum();
            let received = self.booked_or_pending(&l.sku);
            if received + requested > line.qty {
                return Err(CaseError::ExceedsInitiated {
                    sku: l.sku.clone(),
                    initiated: line.qty,
                    received,
                    requested,
                });
            }
        }
        let n = self.receipts.len() as u32;
        self.round = self.round.wrapping_add(1);
        self.receipts.push(Receipt {
            n,
            request: req.request,
            fp: req.fp,
            location: req.location,
            at: now,
            lines: req
                .lines
                .into_iter()
                .map(|l| ReceiptLine {
                    sku: l.sku,
                    qty: l.qty,
                    condition: l.condition,
                    status: LineStatus::Pending {
                        out: Some(Outgoing {
                            sends: 0,
                            next_at: now,
                        }),
                    },
                })
                .collect(),
        });
        Ok(Ticket(n))
    }

    /// A SKU object's answer to the message tagged `tag`.
    pub fn handle_reply(&mut self, now: Timestamp, tag: Tag, reply: ReceiptReply) {
        self.advance(now);
        let Some(r) = self.receipts.get_mut(tag.receipt as usize) else {
            return;
        };
        let Some(l) = r.lines.get_mut(tag.line as usize) else {
            return;
        };
        if !matches!(l.status, LineStatus::Pending { .. }) {
            return;
        }
        let (sku, qty, condition) = (l.sku.clone(), l.qty, l.condition);
        match reply {
            ReceiptReply::Applied => {
                l.status = LineStatus::Applied;
                if let Some(line) = self.lines.iter_mut().find(|x| x.sku == sku) {
                    line.add(condition, qty);
                }
            }
            ReceiptReply::Refused { code, detail } => {
                l.status = LineStatus::Refused { code, detail };
            }
        }
    }

    /// The alarm: resends are due or lines are parked.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// `POST /v1/returns/{id}/refund`: at most what was paid for the units
    /// received (tax included), minus earlier refunds. The same request id
    /// again answers the same refund.
    pub fn handle_refund(
        &mut self,
        now: Timestamp,
        request: u64,
        amount: Money,
    ) -> Result<(), CaseError> {
        if let Some(r) = self.refunds.iter().find(|r| r.request == request) {
            return if r.amount == amount {
                Ok(())
            } else {
                Err(CaseError::Conflict)
            };
        }
        let status = self.status();
        if matches!(status, CaseStatus::Exchanged | CaseStatus::Initiated) {
            return Err(CaseError::InvalidState {
                from: status,
                to: CaseStatus::Refunded,
            });
        }
        if self.refunds.len() >= MAX_REFUNDS {
            return Err(CaseError::TooManyRefunds);
        }
        if amount.currency != self.currency || amount.is_negative() || amount.amount.is_zero() {
            return Err(CaseError::BadAmount);
        }
        let max = self.refundable()?;
        let over = amount.checked_sub(max).map_err(CaseError::Money)?;
        if over.amount > Decimal::ZERO {
            return Err(CaseError::RefundTooLarge { max });
        }
        self.refunds.push(Refund {
            request,
            amount,
            at: now,
        });
        Ok(())
    }

    /// What an exchange whose replacement costs `replacement_total` would
    /// cost the customer: the total minus the credit (what was paid for the
    /// received units, minus refunds). Positive: the customer pays.
    pub fn exchange_quote(&self, replacement_total: Money) -> Result<(Money, Money), CaseError> {
        if replacement_total.currency != self.currency || replacement_total.is_negative() {
            return Err(CaseError::BadAmount);
        }
        let credit = self.refundable()?;
        let difference = replacement_total
            .checked_sub(credit)
            .map_err(CaseError::Money)?;
        Ok((credit, difference))
    }

    /// Whether an exchange may start now (no exchange yet, no receipt in flight).
    pub fn check_exchange(&self) -> Result<(), CaseError> {
        let status = self.status();
        match status {
            CaseStatus::Exchanged | CaseStatus::Receiving => Err(CaseError::InvalidState {
                from: status,
                to: CaseStatus::Exchanged,
            }),
            _ => Ok(()),
        }
    }

    /// Records the exchange the shell booked (the replacement held, the
    /// receipt booked). Once only.
    pub fn record_exchange(
        &mut self,
        now: Timestamp,
        order_id: String,
        replacement_total: Money,
    ) -> Result<&Exchange, CaseError> {
        if self.exchange.is_some() {
            return Err(CaseError::InvalidState {
                from: CaseStatus::Exchanged,
                to: CaseStatus::Exchanged,
            });
        }
        let (credit, difference) = self.exchange_quote(replacement_total)?;
        Ok(self.exchange.insert(Exchange {
            order_id,
            replacement_total,
            credit,
            difference,
            at: now,
        }))
    }

    // ---- outputs ----

    /// The next message to send now, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        let round = self.round;
        let sale: Option<SaleId> = match &self.source {
            ReturnSource::Sale(s) => Some(s.clone()),
            ReturnSource::Order(_) => None,
        };
        for r in &mut self.receipts {
            for (i, l) in r.lines.iter_mut().enumerate() {
                let LineStatus::Pending { out: Some(o) } = &mut l.status else {
                    continue;
                };
                if o.next_at > now || o.sends >= MAX_SENDS {
                    continue;
                }
                o.sends += 1;
                o.next_at = now.plus_ms(backoff(o.sends));
                let op = op_id(&self.id, r.n, i as u32).ok()?;
                return Some(Transmit {
                    tag: Tag {
                        receipt: r.n,
                        line: i as u32,
                        round,
                    },
                    sku: l.sku.clone(),
                    command: Command::ReturnReceive {
                        op,
                        location: r.location.clone(),
                        qty: l.qty,
                        condition: l.condition,
                        sale: sale.clone(),
                    },
                });
            }
        }
        None
    }

    /// When [`ReturnCase::handle_timeout`] is next due: the earliest resend
    /// or give-up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.receipts
            .iter()
            .flat_map(|r| &r.lines)
            .filter_map(|l| match l.status {
                LineStatus::Pending { out: Some(o) } => Some(o.next_at),
                _ => None,
            })
            .min()
    }

    /// The result of the receive `ticket` names: `None` while a line waits
    /// for its answer.
    pub fn outcome(&self, ticket: Ticket) -> Option<Result<&Receipt, CaseError>> {
        let r = self.receipts.get(ticket.0 as usize)?;
        if r.settled() {
            let refused = r.lines.iter().find_map(|l| match &l.status {
                LineStatus::Refused { code, detail } => Some((code, detail)),
                _ => None,
            });
            let all_refused = r
                .lines
                .iter()
                .all(|l| matches!(l.status, LineStatus::Refused { .. }));
            return Some(match refused {
                Some((code, detail)) if all_refused => Err(CaseError::Refused {
                    code: code.clone(),
                    detail: detail.clone(),
                }),
                _ => Ok(r),
            });
        }
        if r.in_flight() {
            None
        } else {
            Some(Err(CaseError::Unconfirmed))
        }
    }

    /// True while some message still waits for its answer.
    pub fn in_flight(&self) -> bool {
        self.receipts.iter().any(Receipt::in_flight)
    }

    // ---- reads ----

    pub fn status(&self) -> CaseStatus {
        if self.exchange.is_some() {
            CaseStatus::Exchanged
        } else if !self.refunds.is_empty() {
            CaseStatus::Refunded
        } else if self.receipts.iter().any(|r| !r.settled()) {
            CaseStatus::Receiving
        } else if self.lines.iter().any(|l| l.received() > 0) {
            CaseStatus::Received
        } else {
            CaseStatus::Initiated
        }
    }

    /// What may still be refunded: what was paid for the units received,
    /// minus refunds (never below zero).
    pub fn refundable(&self) -> Result<Money, CaseError> {
        let mut value = Money::zero(self.currency);
        for l in &self.lines {
            value = value
                .checked_add(share(l.paid, l.received(), l.qty)?)
                .map_err(CaseError::Money)?;
        }
        let refunded = self.refunded()?;
        let left = value.checked_sub(refunded).map_err(CaseError::Money)?;
        Ok(if left.is_negative() {
            Money::zero(self.currency)
        } else {
            left
        })
    }

    pub fn refunded(&self) -> Result<Money, CaseError> {
        Money::sum(self.currency, self.refunds.iter().map(|r| r.amount)).map_err(CaseError::Money)
    }

    /// Units of `sku` received or on their way (receipt lines not refused).
    pub fn booked_or_pending(&self, sku: &Sku) -> Qty {
        self.receipts
            .iter()
            .flat_map(|r| &r.lines)
            .filter(|l| &l.sku == sku && !matches!(l.status, LineStatus::Refused { .. }))
            .map(|l| l.qty)
            .sum()
    }

    pub fn id(&self) -> &ReturnId {
        &self.id
    }
    pub fn source(&self) -> &ReturnSource {
        &self.source
    }
    pub fn fp(&self) -> u64 {
        self.fp
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn lines(&self) -> &[CaseLine] {
        &self.lines
    }
    pub fn receipts(&self) -> &[Receipt] {
        &self.receipts
    }
    pub fn refunds(&self) -> &[Refund] {
        &self.refunds
    }
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    // ---- the machine ----

    /// Time: park lines whose last send went unanswered.
    fn advance(&mut self, now: Timestamp) {
        for r in &mut self.receipts {
            for l in &mut r.lines {
                if let LineStatus::Pending { out } = &mut l.status {
                    if out.is_some_and(|o| o.sends >= MAX_SENDS && o.next_at <= now) {
                        *out = None;
                    }
                }
            }
        }
    }
}

/// The op id of line `line` of receipt `receipt`: `ret.<id>.<receipt>.<line>`.
pub fn op_id(id: &ReturnId, receipt: u32, line: u32) -> Result<OpId, IdError> {
    OpId::parse(&format!("ret.{id}.{receipt}.{line}"))
}
