//! The reservation coordinator: one reservation (a cart or a checkout) held
//! in several SKU objects at once, all or none, as a sans-IO state machine in
//! the style of quinn-proto's `Connection`. It does no IO, reads no clock and
//! draws no random number: inputs come in through `handle_*` with the time,
//! messages for SKU objects and the next wake-up come out through `poll_*`.
//! It never panics on its inputs (a reply for an unknown line, from an older
//! attempt, twice, or out of order is ignored). It is `serde`: its Durable
//! Object stores it as one JSON row, and a coordinator loaded from that row
//! resumes where it was.
//!
//! # The protocol
//!
//! ```text
//! create -> holding --every line held---------------> active --expires_at--> expired
//!              |  \--a line short/refused/silent--> releasing -> failed       (a later create: attempt + 1)
//!              \--release (abort)-----------------> releasing -> failed
//! active --release--> releasing -> released (or expired, if a SKU says the hold had lapsed)
//! active --extend--> extending -> active (new expires_at) | releasing -> expired (a hold lapsed)
//! ```
//!
//! Hold ids are `res.<attempt>.<id>`: a failed attempt's holds are released,
//! and a later attempt never meets them. Holds carry their TTL, so a
//! coordinator that stops (crash, lost alarm) leaks nothing: its holds expire
//! in their SKU objects. `expires_at` is the earliest deadline the SKU
//! objects reported: the API never promises longer than any SKU holds.
//!
//! # The driving loop (the contract the Durable Object follows)
//!
//! 1. Load the coordinator from its JSON row (or [`Reservation::new`]); call
//!    the `handle_*` of the request with `now`.
//! 2. Drain [`Reservation::poll_transmit`]; store the JSON row; then send
//!    each [`Transmit`] to its SKU object (in parallel). A SKU object runs the
//!    command through `decide`/`apply` and answers
//!    [`HoldReply::from_sku`]; feed each answer to
//!    [`Reservation::handle_reply`] with the `Transmit`'s [`Tag`]. A failed
//!    call is simply not fed: the coordinator resends on its own timer.
//! 3. Repeat 2 until [`Reservation::outcome`] of the request's [`Ticket`] is
//!    `Some` (or the request's own time bound passes: answer "retry later").
//! 4. Store the JSON row and point the alarm at [`Reservation::poll_timeout`].
//!    The alarm calls [`Reservation::handle_timeout`] and goes on at 2; when
//!    [`Reservation::is_reclaimable`] says so, it deletes the row instead.
//!
//! Orders, returns and transfers copy this shape: a line table with one
//! outstanding question per line ([`Tag`] = line, attempt, round), phases
//! named for what they wait on, timers derived from the state.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub mod index;
mod placement;
mod reply;

pub use placement::{
    channel_for, merge_lines, place, FulfillmentKind, Placement, PlacementError, Split,
};
pub use reply::{HoldReply, Refusal};

use crate::fulfillment::{Shortage, MAX_LINES};
use crate::ids::{validate_id, HoldId, IdError, LocationId, Sku};
use crate::sku::{Command, HoldState, Resolution, SkuState, RETENTION_MS};
use crate::stock::{Channel, Qty, MAX_LINE_QTY};
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS, RESERVATION_RETENTION_MS};

/// Most times one question is sent to a SKU object before the coordinator
/// gives up on its answer.
pub const MAX_SENDS: u32 = 5;
/// The wait before the first resend; it doubles with every send (1, 2, 4,
/// 8, 16 s: a question is given up 31 s after it was first sent).
pub const RESEND_AFTER_MS: i64 = 1_000;

// A reservation id created again after its row was deleted must never meet
// its old hold ids in a SKU object.
const _: () = assert!(RESERVATION_RETENTION_MS >= RETENTION_MS + MAX_TTL_MS);

/// A reservation id: the API's identifier rule (1 to 64 of `A-Z a-z 0-9 . _ -`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReservationId(String);

impl ReservationId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        validate_id(s)?;
        Ok(ReservationId(s.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReservationId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        validate_id(&s)?;
        Ok(ReservationId(s))
    }
}

impl From<ReservationId> for String {
    fn from(id: ReservationId) -> String {
        id.0
    }
}

impl fmt::Debug for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hold id of `attempt` of reservation `id`: `res.<attempt>.<id>`.
pub fn hold_id(attempt: u32, id: &ReservationId) -> Result<HoldId, IdError> {
    HoldId::parse(&format!("res.{attempt}.{}", id.as_str()))
}

/// The status at `now` of a reservation that is one hold in one SKU's state
/// (a one-SKU reservation, which its SKU object keeps without a
/// coordinator): the hold decides (a held one past its deadline is
/// expired). Once the state has forgotten the hold (`RETENTION_MS` after it
/// resolved), the holder's record decides: `ended`, if it saw the end, else
/// expired at or after `last_deadline`.
pub fn single_hold_status(
    state: &SkuState,
    now: Timestamp,
    hold: &HoldId,
    ended: Option<Status>,
    last_deadline: Option<Timestamp>,
) -> Status {
    if ended == Some(Status::Converted) {
        return Status::Converted;
    }
    if let Some(h) = state.hold(hold) {
        return match h.state {
            HoldState::Held {
                expires_at: Some(t),
            } if t <= now => Status::Expired,
            _ => Status::Active,
        };
    }
    match state.resolution(hold) {
        Some(Resolution::Expired) => Status::Expired,
        Some(_) => Status::Released,
        None => match (ended, last_deadline) {
            (Some(s), _) => s,
            (None, Some(t)) if t <= now => Status::Expired,
            (None, _) => Status::Active,
        },
    }
}

/// One line: `qty` units of `sku` held at `location` (one line per SKU).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReservationLine {
    pub sku: Sku,
    pub qty: Qty,
    pub location: LocationId,
}

/// A create (or its retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: ReservationId,
    /// At most [`MAX_LINES`], one per SKU, each `1..=MAX_LINE_QTY`.
    pub lines: Vec<ReservationLine>,
    /// `MIN_TTL_MS..=MAX_TTL_MS` (the API's default is [`crate::time::DEFAULT_TTL_MS`]).
    pub ttl_ms: i64,
    pub channel: Channel,
    /// The caller's fingerprint of the content (lines, fulfillment, TTL,
    /// channel): the same id with another fingerprint is a [`ReservationError::Conflict`].
    pub fp: u64,
}

/// What the API shows.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Holds asked for, not all answered (or a failed attempt being released).
    Pending,
    Active,
    Released,
    Expired,
    Failed,
    /// Its holds became an order's (`POST /v1/orders` with `reservation_id`).
    Converted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Converted => "converted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one operation (create, extend, release) on one reservation: its
/// result is [`Reservation::outcome`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ticket(pub u32);

/// Which question a message asks; the SKU object's reply is fed back with it.
/// A reply whose tag is not the current question of its line (an older
/// attempt or round, a line already answered) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    /// Index into the reservation's lines.
    pub line: u32,
    pub attempt: u32,
    /// Bumped whenever a new batch of questions starts.
    pub round: u32,
}

/// A message for one SKU object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub tag: Tag,
    /// The SKU object to send to.
    pub sku: Sku,
    /// `Hold` (with the TTL), `Extend` or `Release`.
    pub command: Command,
}

/// What the API shows of a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub id: ReservationId,
    pub status: Status,
    pub expires_at: Option<Timestamp>,
    pub lines: Vec<ReservationLine>,
    pub created_at: Timestamp,
    /// The order its holds became, once converted.
    pub converted_to: Option<String>,
}

/// A finished operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// A create that made the reservation (201), not one that found it (200).
    pub created: bool,
    pub view: View,
}

/// What a `handle_*` call started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Answered at once: nothing to send.
    Done(Done),
    /// Messages to send: drive the loop until `outcome(ticket)` is `Some`.
    Started(Ticket),
}

/// Why an operation did not succeed. The shell maps [`ReservationError::code`]
/// to its HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReservationError {
    NoLines,
    TooManyLines {
        max: usize,
    },
    /// Two lines of one SKU: merge them first ([`merge_lines`]).
    DuplicateSku(Sku),
    QtyOutOfRange {
        sku: Sku,
        qty: Qty,
    },
    TtlOutOfRange {
        ttl_ms: i64,
    },
    /// The id cannot make a hold id.
    BadId(IdError),
    /// The id exists with other content.
    Conflict,
    /// No such reservation (never created, pending, or failed).
    NotFound,
    InvalidTransition {
        from: Status,
        to: Status,
    },
    /// Not enough stock for every line: nothing was reserved.
    Insufficient(Vec<Shortage>),
    /// A SKU object refused for another reason: nothing was reserved (or extended).
    Refused(Refusal),
    /// A SKU object did not answer in time (or its hold lapsed while the
    /// reservation was pending): nothing was reserved (or extended); retry.
    Unconfirmed,
    /// A failed attempt is still being released: retry in a moment.
    Busy,
    /// A later operation replaced the one this ticket names.
    Superseded,
}

impl ReservationError {
    /// The API's error code.
    pub fn code(&self) -> &str {
        match self {
            ReservationError::NoLines
            | ReservationError::TooManyLines { .. }
            | ReservationError::DuplicateSku(_)
            | ReservationError::QtyOutOfRange { .. }
            | ReservationError::TtlOutOfRange { .. }
            | ReservationError::BadId(_) => "invalid_request",
            ReservationError::Conflict => "idempotency_key_reused",
            ReservationError::NotFound => "not_found",
            ReservationError::InvalidTransition { .. } => "invalid_transition",
            ReservationError::Insufficient(_) => "insufficient_stock",
            ReservationError::Refused(r) => r.code(),
            ReservationError::Unconfirmed
            | ReservationError::Busy
            | ReservationError::Superseded => "overloaded",
        }
    }
}

impl fmt::Display for ReservationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReservationError::NoLines => f.write_str("a reservation needs at least one line"),
            ReservationError::TooManyLines { max } => write!(f, "at most {max} lines"),
            ReservationError::DuplicateSku(s) => write!(f, "two lines of {s}"),
            ReservationError::QtyOutOfRange { sku, qty } => {
                write!(f, "{sku}: quantity {qty} is outside 1..={MAX_LINE_QTY}")
            }
            ReservationError::TtlOutOfRange { ttl_ms } => write!(
                f,
                "ttl of {} s is outside {}..={} s",
                ttl_ms / 1000,
                MIN_TTL_MS / 1000,
                MAX_TTL_MS / 1000
            ),
            ReservationError::BadId(e) => write!(f, "reservation id: {e}"),
            ReservationError::Conflict => {
                f.write_str("the reservation already exists with other content")
            }
            ReservationError::NotFound => f.write_str("no such reservation"),
            ReservationError::InvalidTransition { from, to } => {
                write!(f, "a reservation cannot go from {from} to {to}")
            }
            ReservationError::Insufficient(_) => {
                f.write_str("not enough stock for every line; nothing was reserved")
            }
            ReservationError::Refused(r) => write!(f, "{r}; nothing was reserved"),
            ReservationError::Unconfirmed => {
                f.write_str("a hold was not confirmed; nothing was reserved; retry")
            }
            ReservationError::Busy => f.write_str("the reservation is busy; retry"),
            ReservationError::Superseded => {
                f.write_str("a later request on this reservation replaced this one")
            }
        }
    }
}

/// The question outstanding on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    Hold,
    Extend,
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outgoing {
    ask: Ask,
    /// Sends so far.
    sends: u32,
    /// The next send (or, after [`MAX_SENDS`], when to give up).
    next_at: Timestamp,
}

/// What the coordinator last learnt of a line's hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
enum Known {
    /// Nothing yet.
    Unknown,
    Held {
        expires_at: Option<Timestamp>,
    },
    /// Refused for stock: nothing held.
    Short {
        available: Qty,
    },
    /// Refused otherwise: nothing held.
    Refused {
        refusal: Refusal,
    },
    /// Nothing held any more: resolved (`how`), or never seen (`None`).
    Gone {
        how: Option<Resolution>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LineState {
    line: ReservationLine,
    known: Known,
    /// An `Extend` went out and was not answered yet.
    unsure: bool,
    /// An `Extend` went out in this attempt: a duplicate or a late one may
    /// still move the deadline past what `known` says. (A retried `Hold`
    /// never moves it: the SKU object answers with the first deadline.)
    #[serde(default)]
    extended: bool,
    out: Option<Outgoing>,
}

/// How a finished reservation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum End {
    Released,
    Expired,
    Failed,
    Converted,
}

impl End {
    fn status(self) -> Status {
        match self {
            End::Released => Status::Released,
            End::Expired => Status::Expired,
            End::Failed => Status::Failed,
            End::Converted => Status::Converted,
        }
    }
}

/// What the reservation waits on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Holds asked for: every line's answer.
    Holding,
    /// Every line held: `expires_at`, or a request.
    Active,
    /// Extends asked for: every line's answer (still active meanwhile).
    Extending {
        ttl_ms: i64,
        refused: Option<Refusal>,
    },
    /// Releases asked for: every line's answer; then `to`, and the current
    /// operation's result becomes `then` (when given).
    Releasing { to: End, then: Option<OpResult> },
    /// Over; the row may be deleted [`RESERVATION_RETENTION_MS`] after `at`.
    Ended { status: End, at: Timestamp },
}

/// The stored result of an operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum OpResult {
    Created,
    Extended,
    Released,
    /// The short lines: (line index, available).
    Insufficient {
        short: Vec<(u32, Qty)>,
    },
    Refused {
        refusal: Refusal,
    },
    Unconfirmed,
    InvalidTransition {
        from: Status,
        to: Status,
    },
    NotFound,
}

/// One reservation's coordinator. See the module documentation for the loop
/// that drives it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    id: ReservationId,
    fp: u64,
    attempt: u32,
    hold: HoldId,
    channel: Channel,
    ttl_ms: i64,
    lines: Vec<LineState>,
    phase: Phase,
    expires_at: Option<Timestamp>,
    created_at: Timestamp,
    /// The current (or last) operation's ticket, and its result once it finished.
    op: u32,
    result: Option<OpResult>,
    round: u32,
    /// The order its holds became (status converted). Absent from the row
    /// otherwise (rows of reservations that never converted are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    converted_to: Option<String>,
}

fn validate(req: &CreateRequest) -> Result<(), ReservationError> {
    if req.lines.is_empty() {
        return Err(ReservationError::NoLines);
    }
    if req.lines.len() > MAX_LINES {
        return Err(ReservationError::TooManyLines { max: MAX_LINES });
    }
    check_ttl(req.ttl_ms)?;
    for (i, l) in req.lines.iter().enumerate() {
        if !(1..=MAX_LINE_QTY).contains(&l.qty) {
            return Err(ReservationError::QtyOutOfRange {
                sku: l.sku.clone(),
                qty: l.qty,
            });
        }
        if req.lines[..i].iter().any(|o| o.sku == l.sku) {
            return Err(ReservationError::DuplicateSku(l.sku.clone()));
        }
    }
    Ok(())
}

fn check_ttl(ttl_ms: i64) -> Result<(), ReservationError> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(ReservationError::TtlOutOfRange { ttl_ms })
    }
}

/// The wait after the `sends`-th send.
fn backoff(sends: u32) -> i64 {
    RESEND_AFTER_MS << sends.saturating_sub(1).min(16)
}

/// A lapsed deadline is a resolution, whatever a late message says.
fn known_held(expires_at: Option<Timestamp>, now: Timestamp) -> Known {
    match expires_at {
        Some(t) if t <= now => Known::Gone {
            how: Some(Resolution::Expired),
        },
        _ => Known::Held { expires_at },
    }
}

impl Reservation {
    /// The first create of `req.id`: attempt 1, holds to send.
    pub fn new(
        now: Timestamp,
        req: CreateRequest,
    ) -> Result<(Reservation, Ticket), ReservationError> {
        validate(&req)?;
        let r = Self::start(now, req, 1, 1, 0)?;
        Ok((r, Ticket(1)))
    }

    fn start(
        now: Timestamp,
        req: CreateRequest,
        attempt: u32,
        op: u32,
        round: u32,
    ) -> Result<Reservation, ReservationError> {
        let hold = hold_id(attempt, &req.id).map_err(ReservationError::BadId)?;
        let mut r = Reservation {
            id: req.id,
            fp: req.fp,
            attempt,
            hold,
            channel: req.channel,
            ttl_ms: req.ttl_ms,
            lines: req
                .lines
                .into_iter()
                .map(|line| LineState {
                    line,
                    known: Known::Unknown,
                    unsure: false,
                    extended: false,
                    out: None,
                })
                .collect(),
            phase: Phase::Holding,
            expires_at: None,
            created_at: now,
            op,
            result: None,
            round,
            converted_to: None,
        };
        r.ask(now, Ask::Hold, |_, _| true);
        Ok(r)
    }

    // ---- inputs ----

    /// `POST /v1/reservations` for this id again: the same content resumes a
    /// pending create (same hold ids) or finds the reservation; after a
    /// failure any content starts the next attempt; other content is a
    /// [`ReservationError::Conflict`].
    pub fn handle_create(
        &mut self,
        now: Timestamp,
        req: CreateRequest,
    ) -> Result<Handled, ReservationError> {
        self.advance(now);
        validate(&req)?;
        if req.id != self.id {
            return Err(ReservationError::Conflict);
        }
        if let Phase::Ended {
            status: End::Failed,
            ..
        } = self.phase
        {
            let attempt = self
                .attempt
                .checked_add(1)
                .ok_or(ReservationError::Conflict)?;
            let op = self.op.wrapping_add(1);
            *self = Self::start(now, req, attempt, op, self.round)?;
            return Ok(Handled::Started(Ticket(op)));
        }
        if req.fp != self.fp {
            return Err(ReservationError::Conflict);
        }
        match &self.phase {
            Phase::Holding => {
                // Resume: ask every line again, same hold ids; the SKU
                // objects answer a retried hold with its current state.
                for l in &mut self.lines {
                    l.known = Known::Unknown;
                }
                self.ask(now, Ask::Hold, |_, _| true);
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Releasing {
                to: End::Failed,
                then,
            } => {
                if then == &Some(OpResult::NotFound) {
                    // Being cancelled: a create is a new attempt once that is done.
                    return Err(ReservationError::Busy);
                }
                self.resume_releases(now);
                Ok(Handled::Started(Ticket(self.op)))
            }
            _ => Ok(Handled::Done(Done {
                created: false,
                view: self.view(now),
            })),
        }
    }

    /// `POST /v1/reservations/{id}/extend`: every hold's deadline moves to
    /// `now + ttl_ms` (never earlier); `expires_at` becomes the earliest.
    pub fn handle_extend(
        &mut self,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Handled, ReservationError> {
        self.advance(now);
        check_ttl(ttl_ms)?;
        let from = match &self.phase {
            Phase::Holding
            | Phase::Releasing {
                to: End::Failed, ..
            }
            | Phase::Ended {
                status: End::Failed,
                ..
            } => return Err(ReservationError::NotFound),
            Phase::Releasing { to, .. } | Phase::Ended { status: to, .. } => to.status(),
            Phase::Extending { ttl_ms: t, .. } if *t == ttl_ms => {
                // The same extend again: ask the lines that have not answered.
                self.ask(now, Ask::Extend, |_, l| l.unsure);
                self.settle(now);
                return Ok(Handled::Started(Ticket(self.op)));
            }
            Phase::Active | Phase::Extending { .. } => {
                self.begin_op();
                self.phase = Phase::Extending {
                    ttl_ms,
                    refused: None,
                };
                self.ask(now, Ask::Extend, |_, _| true);
                return Ok(Handled::Started(Ticket(self.op)));
            }
        };
        Err(ReservationError::InvalidTransition {
            from,
            to: Status::Active,
        })
    }

    /// `DELETE /v1/reservations/{id}`: give every line back. Releasing a
    /// released reservation answers it again; an expired one is an
    /// [`ReservationError::InvalidTransition`]; a pending one is cancelled
    /// (its holds released) and answers [`ReservationError::NotFound`].
    pub fn handle_release(&mut self, now: Timestamp) -> Result<Handled, ReservationError> {
        self.advance(now);
        match &self.phase {
            Phase::Ended {
                status: End::Released,
                ..
            } => Ok(Handled::Done(Done {
                created: false,
                view: self.view(now),
            })),
            Phase::Ended {
                status: End::Expired,
                ..
            }
            | Phase::Releasing {
                to: End::Expired, ..
            } => Err(ReservationError::InvalidTransition {
                from: Status::Expired,
                to: Status::Released,
            }),
            Phase::Ended {
                status: End::Converted,
                ..
            }
            | Phase::Releasing {
                to: End::Converted, ..
            } => Err(ReservationError::InvalidTransition {
                from: Status::Converted,
                to: Status::Released,
            }),
            Phase::Ended {
                status: End::Failed,
                ..
            }
            | Phase::Releasing {
                to: End::Failed, ..
            } => Err(ReservationError::NotFound),
            Phase::Releasing {
                to: End::Released, ..
            } => {
                self.resume_releases(now);
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Holding => {
                self.begin_op();
                self.release_all(now, End::Failed, Some(OpResult::NotFound));
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Active | Phase::Extending { .. } => {
                self.begin_op();
                self.release_all(now, End::Released, Some(OpResult::Released));
                Ok(Handled::Started(Ticket(self.op)))
            }
        }
    }

    /// `POST /v1/orders` with this reservation: its holds become order
    /// `order`'s (the order keeps them; nothing is sent from here). Only an
    /// active reservation converts; the same order again is answered again;
    /// a converted reservation is never released nor extended, and its row
    /// is reclaimed after the retention like an ended one.
    pub fn handle_convert(
        &mut self,
        now: Timestamp,
        order: &str,
    ) -> Result<Done, ReservationError> {
        self.advance(now);
        let done = |r: &Reservation| Done {
            created: false,
            view: r.view(now),
        };
        match &self.phase {
            Phase::Active if self.status(now) == Status::Active => {
                self.begin_op();
                self.converted_to = Some(order.into());
                self.phase = Phase::Ended {
                    status: End::Converted,
                    at: now,
                };
                Ok(done(self))
            }
            Phase::Ended {
                status: End::Converted,
                ..
            } if self.converted_to.as_deref() == Some(order) => Ok(done(self)),
            Phase::Holding
            | Phase::Releasing {
                to: End::Failed, ..
            }
            | Phase::Ended {
                status: End::Failed,
                ..
            } => Err(ReservationError::NotFound),
            Phase::Extending { .. } => Err(ReservationError::Busy),
            _ => Err(ReservationError::InvalidTransition {
                from: self.status(now),
                to: Status::Converted,
            }),
        }
    }

    /// A SKU object's answer to the message tagged `tag`.
    pub fn handle_reply(&mut self, now: Timestamp, tag: Tag, reply: HoldReply) {
        self.advance(now);
        if tag.attempt != self.attempt || tag.round != self.round {
            return;
        }
        let extend_refused = {
            let Some(l) = self.lines.get_mut(tag.line as usize) else {
                return;
            };
            let Some(out) = l.out else {
                return;
            };
            let mut refused = None;
            match (out.ask, reply) {
                (Ask::Hold | Ask::Extend, HoldReply::Held { expires_at }) => {
                    l.known = known_held(expires_at, now);
                    l.unsure = false;
                }
                (Ask::Hold, HoldReply::Insufficient { available, .. }) => {
                    l.known = Known::Short { available }
                }
                (Ask::Hold, HoldReply::Refused { refusal }) => l.known = Known::Refused { refusal },
                (Ask::Hold, HoldReply::Committed) => {
                    l.known = Known::Refused {
                        refusal: Refusal::HoldNotActive,
                    }
                }
                (_, HoldReply::Resolved { how }) => {
                    l.known = Known::Gone { how: Some(how) };
                    l.unsure = false;
                }
                (_, HoldReply::NotFound) => {
                    l.known = Known::Gone { how: None };
                    l.unsure = false;
                }
                (Ask::Extend, HoldReply::Refused { refusal }) => {
                    // Nothing changed in the SKU object.
                    l.unsure = false;
                    refused = Some(refusal);
                }
                (Ask::Extend, HoldReply::Committed | HoldReply::Insufficient { .. }) => {
                    l.unsure = false;
                    refused = Some(Refusal::HoldNotActive);
                }
                // Not an answer to a release: keep asking.
                (Ask::Release, _) => return,
            }
            l.out = None;
            refused
        };
        if let (
            Some(r),
            Phase::Extending {
                refused: first @ None,
                ..
            },
        ) = (extend_refused, &mut self.phase)
        {
            *first = Some(r);
        }
        self.settle(now);
    }

    /// The alarm: resends are due, questions are given up, the reservation
    /// expires, or its retention ends. Call it at (or after) [`Reservation::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    // ---- outputs ----

    /// The next message to send now, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        let extend_ttl = match &self.phase {
            Phase::Extending { ttl_ms, .. } => *ttl_ms,
            _ => self.ttl_ms,
        };
        let tag = |line: usize| Tag {
            line: line as u32,
            attempt: self.attempt,
            round: self.round,
        };
        let (i, l) = self.lines.iter_mut().enumerate().find(|(_, l)| {
            l.out
                .is_some_and(|o| o.next_at <= now && o.sends < MAX_SENDS)
        })?;
        let out = l.out.as_mut()?;
        out.sends += 1;
        out.next_at = now.plus_ms(backoff(out.sends));
        let hold = self.hold.clone();
        let command = match out.ask {
            Ask::Hold => Command::Hold {
                hold,
                location: l.line.location.clone(),
                qty: l.line.qty,
                channel: self.channel,
                ttl_ms: Some(self.ttl_ms),
            },
            Ask::Extend => Command::Extend {
                hold,
                ttl_ms: extend_ttl,
            },
            Ask::Release => Command::Release { hold },
        };
        Some(Transmit {
            tag: tag(i),
            sku: l.line.sku.clone(),
            command,
        })
    }

    /// When [`Reservation::handle_timeout`] is next due: the earliest resend
    /// or give-up, the expiry, or the end of retention.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let resend = self.lines.iter().filter_map(|l| l.out.map(|o| o.next_at));
        let phase = match self.phase {
            Phase::Active | Phase::Extending { .. } => self.expires_at,
            Phase::Releasing {
                to: End::Released, ..
            } => self.expires_at,
            Phase::Ended { at, .. } => Some(at.plus_ms(RESERVATION_RETENTION_MS)),
            Phase::Holding | Phase::Releasing { .. } => None,
        };
        resend.chain(phase).min()
    }

    /// The result of the operation `ticket` names, once it finished.
    pub fn outcome(
        &self,
        now: Timestamp,
        ticket: Ticket,
    ) -> Option<Result<Done, ReservationError>> {
        if ticket.0 != self.op {
            return Some(Err(ReservationError::Superseded));
        }
        let done = |created| {
            Ok(Done {
                created,
                view: self.view(now),
            })
        };
        Some(match self.result.as_ref()? {
            OpResult::Created => done(true),
            OpResult::Extended | OpResult::Released => done(false),
            OpResult::Insufficient { short } => Err(ReservationError::Insufficient(
                short
                    .iter()
                    .filter_map(|(i, available)| {
                        let l = &self.lines.get(*i as usize)?.line;
                        Some(Shortage {
                            sku: l.sku.clone(),
                            location: Some(l.location.clone()),
                            requested: l.qty,
                            available: *available,
                        })
                    })
                    .collect(),
            )),
            OpResult::Refused { refusal } => Err(ReservationError::Refused(refusal.clone())),
            OpResult::Unconfirmed => Err(ReservationError::Unconfirmed),
            OpResult::InvalidTransition { from, to } => Err(ReservationError::InvalidTransition {
                from: *from,
                to: *to,
            }),
            OpResult::NotFound => Err(ReservationError::NotFound),
        })
    }

    /// True when the reservation ended and its retention passed: the Durable
    /// Object may delete its row.
    pub fn is_reclaimable(&self, now: Timestamp) -> bool {
        matches!(self.phase, Phase::Ended { at, .. } if now >= at.plus_ms(RESERVATION_RETENTION_MS))
    }

    /// True while some message still waits for its answer.
    pub fn in_flight(&self) -> bool {
        self.lines.iter().any(|l| l.out.is_some())
    }

    // ---- reads ----

    /// The status at `now`: an active reservation at or past `expires_at` is expired.
    pub fn status(&self, now: Timestamp) -> Status {
        match &self.phase {
            Phase::Holding
            | Phase::Releasing {
                to: End::Failed, ..
            } => Status::Pending,
            Phase::Releasing {
                to: End::Expired, ..
            } => Status::Expired,
            // Never entered: a conversion ends at once.
            Phase::Releasing {
                to: End::Converted, ..
            } => Status::Converted,
            Phase::Active
            | Phase::Extending { .. }
            | Phase::Releasing {
                to: End::Released, ..
            } => match self.expires_at {
                Some(t) if t <= now => Status::Expired,
                _ => Status::Active,
            },
            Phase::Ended { status, .. } => status.status(),
        }
    }

    pub fn view(&self, now: Timestamp) -> View {
        View {
            id: self.id.clone(),
            status: self.status(now),
            expires_at: self.expires_at,
            lines: self.lines().cloned().collect(),
            created_at: self.created_at,
            converted_to: self.converted_to.clone(),
        }
    }

    /// `GET /v1/reservations/{id}`: a pending or failed reservation is not found.
    pub fn get(&self, now: Timestamp) -> Result<View, ReservationError> {
        match self.status(now) {
            Status::Pending | Status::Failed => Err(ReservationError::NotFound),
            _ => Ok(self.view(now)),
        }
    }

    pub fn id(&self) -> &ReservationId {
        &self.id
    }
    pub fn fp(&self) -> u64 {
        self.fp
    }
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The hold id of the current attempt, the same in every SKU object.
    pub fn hold_id(&self) -> &HoldId {
        &self.hold
    }
    pub fn channel(&self) -> Channel {
        self.channel
    }
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// The earliest deadline the SKU objects reported (once active).
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    pub fn lines(&self) -> impl Iterator<Item = &ReservationLine> {
        self.lines.iter().map(|l| &l.line)
    }

    // ---- the machine ----

    fn begin_op(&mut self) {
        self.op = self.op.wrapping_add(1);
        self.result = None;
    }

    /// Starts a new round: `ask` every line `which` selects, nothing else.
    fn ask(&mut self, now: Timestamp, ask: Ask, which: impl Fn(usize, &LineState) -> bool) {
        self.round = self.round.wrapping_add(1);
        for (i, l) in self.lines.iter_mut().enumerate() {
            l.out = which(i, l).then_some(Outgoing {
                ask,
                sends: 0,
                next_at: now,
            });
            if l.out.is_some() && ask == Ask::Extend {
                l.unsure = true;
                l.extended = true;
            }
        }
    }

    fn release_all(&mut self, now: Timestamp, to: End, then: Option<OpResult>) {
        self.phase = Phase::Releasing { to, then };
        self.ask(now, Ask::Release, |_, _| true);
        self.settle(now);
    }

    /// Asks again every line whose hold may still be there.
    fn resume_releases(&mut self, now: Timestamp) {
        self.ask(now, Ask::Release, |_, l| {
            !matches!(l.known, Known::Gone { .. })
        });
        self.settle(now);
    }

    /// Time: give up on silent lines, expire at `expires_at`, settle.
    fn advance(&mut self, now: Timestamp) {
        for l in &mut self.lines {
            if l.out
                .is_some_and(|o| o.sends >= MAX_SENDS && o.next_at <= now)
            {
                l.out = None;
            }
        }
        self.settle(now);
        if self.expires_at.is_none_or(|t| t > now) {
            return;
        }
        match self.phase {
            Phase::Active | Phase::Extending { .. } => {
                if matches!(self.phase, Phase::Extending { .. }) {
                    self.result = Some(OpResult::InvalidTransition {
                        from: Status::Expired,
                        to: Status::Active,
                    });
                }
                self.phase = Phase::Releasing {
                    to: End::Expired,
                    then: None,
                };
                // Lines that may be held past `expires_at` are given back
                // now; the others expire in their SKU objects.
                self.ask(now, Ask::Release, |_, l| {
                    l.extended
                        || match l.known {
                            Known::Held {
                                expires_at: Some(t),
                            } => t > now,
                            Known::Gone { .. } | Known::Short { .. } | Known::Refused { .. } => {
                                false
                            }
                            Known::Unknown | Known::Held { expires_at: None } => true,
                        }
                });
                self.settle(now);
            }
            Phase::Releasing {
                to: End::Released, ..
            } => {
                self.phase = Phase::Releasing {
                    to: End::Expired,
                    then: Some(OpResult::InvalidTransition {
                        from: Status::Expired,
                        to: Status::Released,
                    }),
                };
            }
            _ => {}
        }
    }

    /// When no line waits for an answer, the phase's step is over: move on.
    fn settle(&mut self, now: Timestamp) {
        if self.in_flight() {
            return;
        }
        match &self.phase {
            Phase::Holding => {
                let held: Option<Vec<Option<Timestamp>>> = self
                    .lines
                    .iter()
                    .map(|l| match l.known {
                        Known::Held { expires_at } => Some(expires_at),
                        _ => None,
                    })
                    .collect();
                if let Some(deadlines) = held {
                    self.expires_at = deadlines.into_iter().flatten().min();
                    self.phase = Phase::Active;
                    self.result = Some(OpResult::Created);
                    return;
                }
                let short: Vec<(u32, Qty)> = self
                    .lines
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| match l.known {
                        Known::Short { available } => Some((i as u32, available)),
                        _ => None,
                    })
                    .collect();
                let refused = self.lines.iter().find_map(|l| match &l.known {
                    Known::Refused { refusal } => Some(refusal.clone()),
                    _ => None,
                });
                let why = if !short.is_empty() {
                    OpResult::Insufficient { short }
                } else if let Some(refusal) = refused {
                    OpResult::Refused { refusal }
                } else {
                    OpResult::Unconfirmed
                };
                // All or none: give back every line (a refused line too: a
                // resent hold may have been held after its refusal was sent).
                self.release_all(now, End::Failed, Some(why));
            }
            Phase::Extending { ttl_ms, refused } => {
                let (ttl_ms, refused) = (*ttl_ms, refused.clone());
                if self
                    .lines
                    .iter()
                    .any(|l| matches!(l.known, Known::Gone { .. }))
                {
                    // A hold lapsed under us: the reservation has expired.
                    self.phase = Phase::Releasing {
                        to: End::Expired,
                        then: Some(OpResult::InvalidTransition {
                            from: Status::Expired,
                            to: Status::Active,
                        }),
                    };
                    self.ask(now, Ask::Release, |_, l| {
                        !matches!(l.known, Known::Gone { .. })
                    });
                    self.settle(now);
                    return;
                }
                // Lines that did not answer keep the deadline last reported:
                // the earliest stays a promise every SKU object keeps.
                self.expires_at = self
                    .lines
                    .iter()
                    .filter_map(|l| match l.known {
                        Known::Held { expires_at } => expires_at,
                        _ => None,
                    })
                    .min();
                let unconfirmed = self.lines.iter().any(|l| l.unsure);
                self.result = Some(match refused {
                    Some(refusal) => OpResult::Refused { refusal },
                    None if unconfirmed => OpResult::Unconfirmed,
                    None => {
                        self.ttl_ms = ttl_ms;
                        OpResult::Extended
                    }
                });
                self.phase = Phase::Active;
            }
            Phase::Releasing { to, then } => {
                let lapsed = self.lines.iter().any(|l| {
                    l.known
                        == Known::Gone {
                            how: Some(Resolution::Expired),
                        }
                });
                let (to, then) = match (to, then) {
                    (End::Released, _) if lapsed => (
                        End::Expired,
                        Some(OpResult::InvalidTransition {
                            from: Status::Expired,
                            to: Status::Released,
                        }),
                    ),
                    (to, then) => (*to, then.clone()),
                };
                if let Some(r) = then {
                    self.result = Some(r);
                }
                self.phase = Phase::Ended {
                    status: to,
                    at: now,
                };
            }
            Phase::Active | Phase::Ended { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
