//! The order coordinator: one order's stock across SKU objects, as a
//! sans-IO state machine shaped like [`crate::reservation::Reservation`].
//! It does no IO and reads no clock; inputs come through `handle_*` with
//! the time, messages and the next wake-up leave through `poll_*`. It never
//! panics on its inputs. It is `serde`: its Durable Object stores it as one
//! JSON row and a machine loaded from that row resumes where it was.
//!
//! # The protocol
//!
//! ```text
//! create -> placing --every line held (TTL)--> keeping --every hold kept--> placed
//!             \--a line short/refused/silent--------\--a hold lapsed--> releasing -> failed
//! placed: each part moves through `OrderStatus` on its own; a transition
//!         with a stock effect asks `Commit` / `Fulfill` / `Release` of every
//!         line of its parts and is answered once every SKU object confirmed.
//! ```
//!
//! Placement holds carry a TTL ([`ORDER_PLACEMENT_TTL_MS`]): a coordinator
//! that dies mid-way leaks nothing. Once every line is held, `Keep` makes
//! each hold permanent. An order made from a reservation starts at
//! `keeping` with the reservation's (converted) holds. Stock effects are
//! idempotent by hold id, so a resend, a duplicate or a restart never
//! applies one twice.
//!
//! The driving loop is the reservation's: handle the request, drain
//! [`OrderMachine::poll_transmit`], store the row, send, feed each
//! [`crate::reservation::HoldReply`] to [`OrderMachine::handle_reply`] with
//! its [`Tag`], until [`OrderMachine::outcome`] of the [`Ticket`] is `Some`;
//! point the alarm at [`OrderMachine::poll_timeout`].
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{order_hold_id, transition, InvalidTransition, OrderStatus, StockEffect};
use crate::fulfillment::{Shortage, MAX_LINES};
use crate::ids::{HoldId, IdError, LocationId, OrderId, Sku};
use crate::reservation::{HoldReply, Refusal};
use crate::sku::{Command, Resolution};
use crate::stock::{Channel, Qty, MAX_LINE_QTY};
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};

/// The TTL of a placement hold, until every line is held and kept.
pub const ORDER_PLACEMENT_TTL_MS: i64 = 60_000;
/// Most parts (locations) of one order.
pub const MAX_PARTS: usize = 16;
/// Most sends of a placement question (a hold or keep) before giving up on it.
pub const MAX_PLACE_SENDS: u32 = 5;
/// Most sends of a stock effect or a release before the machine waits for
/// a retry of the request (each retry asks again).
pub const MAX_EFFECT_SENDS: u32 = 64;
/// The first resend delay; it doubles up to [`MAX_BACKOFF_MS`].
pub const RESEND_AFTER_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 30_000;
/// Most history entries kept (each part moves at most 6 times; a bound anyway).
pub const MAX_HISTORY: usize = 256;
/// Longest actor name kept in the history.
pub const MAX_ACTOR_LEN: usize = 128;

const _: () = assert!(ORDER_PLACEMENT_TTL_MS >= MIN_TTL_MS && ORDER_PLACEMENT_TTL_MS <= MAX_TTL_MS);

/// The order a hold id names (`ord.<order>.<line>`), and the line.
pub fn parse_order_hold(hold: &HoldId) -> Option<(OrderId, u32)> {
    let rest = hold.as_str().strip_prefix("ord.")?;
    let (order, line) = rest.rsplit_once('.')?;
    let line: u32 = line.parse().ok()?;
    if line as usize >= MAX_LINES || alloc::format!("{line}") != rest.rsplit_once('.')?.1 {
        return None;
    }
    Some((OrderId::parse(order).ok()?, line))
}

/// One stock line: `qty` units of `sku` held at `location` (the location of
/// part `part`) under `hold`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockLine {
    pub sku: Sku,
    pub qty: Qty,
    pub location: LocationId,
    pub part: u32,
    pub hold: HoldId,
}

/// A create (or its retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOrder {
    pub id: OrderId,
    pub channel: Channel,
    /// The caller's fingerprint of the whole content: the same id with
    /// another fingerprint is [`OrderFailure::Conflict`].
    pub fp: u64,
    /// At most [`MAX_LINES`]; one per (SKU, part); each part's location.
    pub lines: Vec<StockLine>,
    /// The location of each part, by part number.
    pub parts: Vec<LocationId>,
    /// The lines' holds already exist (a converted reservation): keep them.
    pub from_reservation: bool,
    pub actor: String,
}

impl CreateOrder {
    /// Stock lines for `(sku, qty, part)` with [`order_hold_id`] holds.
    pub fn lines_for(
        id: &OrderId,
        parts: &[LocationId],
        lines: &[(Sku, Qty, u32)],
    ) -> Result<Vec<StockLine>, OrderFailure> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (sku, qty, part))| {
                let location = parts
                    .get(*part as usize)
                    .ok_or(OrderFailure::invalid("a line names no part"))?;
                Ok(StockLine {
                    sku: sku.clone(),
                    qty: *qty,
                    location: location.clone(),
                    part: *part,
                    hold: order_hold_id(id, i).map_err(|e: IdError| {
                        OrderFailure::invalid(&alloc::format!("order id: {e}"))
                    })?,
                })
            })
            .collect()
    }
}

/// Which parts a transition moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "parts", content = "part", rename_all = "snake_case")]
pub enum Target {
    All,
    Part(u32),
}

/// One entry of an order's history: part `part` went from `from` (none at
/// creation) to `to`, by `actor`, at `at`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub part: u32,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub actor: String,
    pub at: Timestamp,
}

/// What the API shows of one part.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartView {
    pub part: u32,
    pub location: LocationId,
    pub status: OrderStatus,
    pub at_risk: bool,
    /// When the part became ready for pickup (for the overdue flag).
    pub ready_at: Option<Timestamp>,
}

/// Names one operation; its result is [`OrderMachine::outcome`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ticket(pub u32);

/// Which question a message asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub line: u32,
    pub round: u32,
}

/// A message for one SKU object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub tag: Tag,
    pub sku: Sku,
    pub command: Command,
}

/// A finished operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Done {
    /// A create that placed the order (201), not one that found it.
    pub created: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    Done(Done),
    Started(Ticket),
}

/// Why an operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum OrderFailure {
    /// Bad input (a limit, a line, a part, an id).
    Invalid {
        why: String,
    },
    /// The id exists with other content.
    Conflict,
    /// No such order (never placed, or its placement failed).
    NotFound,
    UnknownPart {
        part: u32,
    },
    InvalidTransition {
        part: u32,
        from: OrderStatus,
        to: OrderStatus,
    },
    /// Not enough stock for every line: nothing is held.
    Insufficient {
        short: Vec<(Sku, LocationId, Qty, Qty)>,
    },
    /// A SKU object refused for another reason: nothing is held.
    Refused {
        refusal: Refusal,
    },
    /// A hold the order was made from had lapsed: nothing is held.
    Lapsed,
    /// A SKU object did not answer in time: retry.
    Unconfirmed,
    /// Another transition is in progress: retry.
    Busy,
    /// A later operation replaced this one.
    Superseded,
}

impl OrderFailure {
    pub fn invalid(why: &str) -> OrderFailure {
        OrderFailure::Invalid { why: why.into() }
    }

    /// Whether this is the operation's answer for good: not one the request
    /// may resend to learn (unconfirmed, busy or superseded: the API's 503).
    /// A key that got a final failure keeps it; a retryable one is free.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            OrderFailure::Unconfirmed | OrderFailure::Busy | OrderFailure::Superseded
        )
    }

    /// The API's error code.
    pub fn code(&self) -> &str {
        match self {
            OrderFailure::Invalid { .. } | OrderFailure::UnknownPart { .. } => "invalid_request",
            OrderFailure::Conflict => "idempotency_key_reused",
            OrderFailure::NotFound => "not_found",
            OrderFailure::InvalidTransition { .. } | OrderFailure::Lapsed => "invalid_transition",
            OrderFailure::Insufficient { .. } => "insufficient_stock",
            OrderFailure::Refused { refusal } => refusal.code(),
            OrderFailure::Unconfirmed | OrderFailure::Busy | OrderFailure::Superseded => {
                "overloaded"
            }
        }
    }

    /// The refusal as core's `invalid_transition` (from, to, allowed).
    pub fn invalid_transition(&self) -> Option<InvalidTransition> {
        match self {
            OrderFailure::InvalidTransition { from, to, .. } => Some(InvalidTransition {
                from: *from,
                to: *to,
                allowed: from.allowed(),
            }),
            _ => None,
        }
    }

    /// The shortages of an `Insufficient`.
    pub fn shortages(&self) -> Vec<Shortage> {
        match self {
            OrderFailure::Insufficient { short } => short
                .iter()
                .map(|(sku, location, requested, available)| Shortage {
                    sku: sku.clone(),
                    location: Some(location.clone()),
                    requested: *requested,
                    available: *available,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for OrderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderFailure::Invalid { why } => f.write_str(why),
            OrderFailure::Conflict => f.write_str("the order already exists with other content"),
            OrderFailure::NotFound => f.write_str("no such order"),
            OrderFailure::UnknownPart { part } => write!(f, "the order has no part {part}"),
            OrderFailure::InvalidTransition { part, from, to } => {
                let allowed = InvalidTransition {
                    from: *from,
                    to: *to,
                    allowed: from.allowed(),
                };
                write!(f, "part {part}: {allowed}")
            }
            OrderFailure::Insufficient { .. } => {
                f.write_str("not enough stock for every line; nothing was held")
            }
            OrderFailure::Refused { refusal } => write!(f, "{refusal}; nothing was held"),
            OrderFailure::Lapsed => {
                f.write_str("a hold the order was made from had lapsed; nothing is held")
            }
            OrderFailure::Unconfirmed => f.write_str("a SKU object did not confirm in time; retry"),
            OrderFailure::Busy => f.write_str("another change of this order is in progress; retry"),
            OrderFailure::Superseded => f.write_str("a later request replaced this one"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    Hold,
    Keep,
    Commit,
    Fulfill,
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outgoing {
    ask: Ask,
    sends: u32,
    next_at: Timestamp,
}

/// What the machine last learnt of a line's hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "is", rename_all = "snake_case")]
enum Known {
    Unknown,
    /// Held with a deadline (placement).
    Held,
    /// Held for good (kept).
    Kept,
    Committed,
    Short {
        available: Qty,
    },
    Refused {
        refusal: Refusal,
    },
    /// Nothing held any more (`how`), or never seen.
    Gone {
        how: Option<Resolution>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LineState {
    line: StockLine,
    known: Known,
    out: Option<Outgoing>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PartState {
    location: LocationId,
    status: OrderStatus,
    at_risk: bool,
    #[serde(default)]
    ready_at: Option<Timestamp>,
    /// A transition asked of the SKU objects, not yet confirmed.
    #[serde(default)]
    pending: Option<OrderStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    Placing,
    Keeping,
    Placed,
    Releasing { why: OrderFailure },
    Failed { why: OrderFailure },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Transition {
    target: Target,
    to: OrderStatus,
    actor: String,
}

/// One order's coordinator. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderMachine {
    id: OrderId,
    fp: u64,
    channel: Channel,
    from_reservation: bool,
    lines: Vec<LineState>,
    parts: Vec<PartState>,
    phase: Phase,
    history: Vec<HistoryEntry>,
    created_at: Timestamp,
    creator: String,
    /// The transition in progress.
    moving: Option<Transition>,
    op: u32,
    result: Option<Result<Done, OrderFailure>>,
    round: u32,
}

fn validate(req: &CreateOrder) -> Result<(), OrderFailure> {
    if req.lines.is_empty() {
        return Err(OrderFailure::invalid("an order needs at least one line"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(OrderFailure::invalid("an order has at most 100 lines"));
    }
    if req.parts.is_empty() || req.parts.len() > MAX_PARTS {
        return Err(OrderFailure::invalid("an order has 1 to 16 parts"));
    }
    for (i, l) in req.lines.iter().enumerate() {
        if !(1..=MAX_LINE_QTY).contains(&l.qty) {
            return Err(OrderFailure::invalid("a line's quantity is out of range"));
        }
        if req.parts.get(l.part as usize) != Some(&l.location) {
            return Err(OrderFailure::invalid("a line's location is not its part's"));
        }
        if req.lines[..i]
            .iter()
            .any(|o| o.sku == l.sku && (o.hold == l.hold || o.part == l.part))
        {
            return Err(OrderFailure::invalid("two lines of one SKU in one part"));
        }
    }
    for p in 0..req.parts.len() {
        if !req.lines.iter().any(|l| l.part as usize == p) {
            return Err(OrderFailure::invalid("a part without lines"));
        }
    }
    Ok(())
}

fn backoff(sends: u32) -> i64 {
    (RESEND_AFTER_MS << sends.saturating_sub(1).min(16)).min(MAX_BACKOFF_MS)
}

fn max_sends(ask: Ask) -> u32 {
    match ask {
        Ask::Hold | Ask::Keep => MAX_PLACE_SENDS,
        Ask::Commit | Ask::Fulfill | Ask::Release => MAX_EFFECT_SENDS,
    }
}

fn clip_actor(actor: &str) -> String {
    let mut end = actor.len().min(MAX_ACTOR_LEN);
    while !actor.is_char_boundary(end) {
        end -= 1;
    }
    actor[..end].into()
}

impl OrderMachine {
    /// The first create of `req.id`: placement starts.
    pub fn new(now: Timestamp, req: CreateOrder) -> Result<(OrderMachine, Ticket), OrderFailure> {
        validate(&req)?;
        let mut m = OrderMachine {
            id: req.id,
            fp: req.fp,
            channel: req.channel,
            from_reservation: req.from_reservation,
            lines: req
                .lines
                .into_iter()
                .map(|line| LineState {
                    line,
                    known: Known::Unknown,
                    out: None,
                })
                .collect(),
            parts: req
                .parts
                .into_iter()
                .map(|location| PartState {
                    location,
                    status: OrderStatus::New,
                    at_risk: false,
                    ready_at: None,
                    pending: None,
                })
                .collect(),
            phase: Phase::Placing,
            history: Vec::new(),
            created_at: now,
            creator: clip_actor(&req.actor),
            moving: None,
            op: 1,
            result: None,
            round: 0,
        };
        if m.from_reservation {
            m.phase = Phase::Keeping;
            m.ask(now, Ask::Keep, |_| true);
        } else {
            m.ask(now, Ask::Hold, |_| true);
        }
        Ok((m, Ticket(1)))
    }

    // ---- inputs ----

    /// `POST /v1/orders` with this id again: the same content resumes a
    /// placement or finds the order (or its failure); other content is a
    /// [`OrderFailure::Conflict`].
    pub fn handle_create(
        &mut self,
        now: Timestamp,
        req: &CreateOrder,
    ) -> Result<Handled, OrderFailure> {
        self.advance(now);
        if req.id != self.id || req.fp != self.fp {
            return Err(OrderFailure::Conflict);
        }
        match &self.phase {
            Phase::Placing => {
                self.begin_op();
                for l in &mut self.lines {
                    l.known = Known::Unknown;
                }
                self.ask(now, Ask::Hold, |_| true);
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Keeping => {
                self.begin_op();
                self.ask(now, Ask::Keep, |l| l.known != Known::Kept);
                self.settle(now);
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Releasing { .. } => {
                self.begin_op();
                self.ask(now, Ask::Release, |l| {
                    !matches!(l.known, Known::Gone { .. })
                });
                self.settle(now);
                Ok(Handled::Started(Ticket(self.op)))
            }
            Phase::Failed { why } => Err(why.clone()),
            Phase::Placed => Ok(Handled::Done(Done { created: false })),
        }
    }

    /// `POST /v1/orders/{id}/transitions`: moves the `target` parts to `to`.
    /// A transition with a stock effect is answered once every SKU object
    /// confirmed it; the same transition again resumes it.
    pub fn handle_transition(
        &mut self,
        now: Timestamp,
        target: Target,
        to: OrderStatus,
        actor: &str,
    ) -> Result<Handled, OrderFailure> {
        self.advance(now);
        if !matches!(self.phase, Phase::Placed) {
            return Err(OrderFailure::NotFound);
        }
        if let Some(t) = &self.moving {
            if t.target == target && t.to == to {
                self.begin_op();
                let parts = self.parts_of(target);
                let ask = self.effect_ask(to);
                self.ask(now, ask, |l| {
                    parts.contains(&l.line.part) && l.out.is_some()
                });
                self.settle(now);
                return Ok(Handled::Started(Ticket(self.op)));
            }
            return Err(OrderFailure::Busy);
        }
        let parts = match target {
            Target::All => (0..self.parts.len() as u32).collect::<Vec<u32>>(),
            Target::Part(p) if (p as usize) < self.parts.len() => alloc::vec![p],
            Target::Part(part) => return Err(OrderFailure::UnknownPart { part }),
        };
        // Every part must allow it (`all`: parts already there are skipped
        // only when some other part moves).
        let mut moving: Vec<u32> = Vec::new();
        let mut effect = StockEffect::None;
        for &p in &parts {
            let from = self.parts[p as usize].status;
            if target == Target::All && from == to && parts.len() > 1 {
                continue;
            }
            match transition(from, to) {
                Ok(e) => {
                    effect = e;
                    moving.push(p);
                }
                Err(_) => return Err(OrderFailure::InvalidTransition { part: p, from, to }),
            }
        }
        if moving.is_empty() {
            let from = self.parts[0].status;
            return Err(OrderFailure::InvalidTransition { part: 0, from, to });
        }
        self.begin_op();
        let actor = clip_actor(actor);
        if effect == StockEffect::None {
            for p in moving {
                self.move_part(now, p, to, &actor);
            }
            self.result = Some(Ok(Done { created: false }));
            return Ok(Handled::Done(Done { created: false }));
        }
        for &p in &moving {
            self.parts[p as usize].pending = Some(to);
        }
        self.moving = Some(Transition { target, to, actor });
        let ask = self.effect_ask(to);
        self.ask(now, ask, |l| moving.contains(&l.line.part));
        self.settle(now);
        Ok(Handled::Started(Ticket(self.op)))
    }

    /// A SKU object reported `hold` at risk (a POS sale took its units):
    /// its part is marked. True when this changed something.
    pub fn handle_at_risk(&mut self, hold: &HoldId) -> bool {
        let Some(part) = self
            .lines
            .iter()
            .find(|l| &l.line.hold == hold)
            .map(|l| l.line.part)
        else {
            return false;
        };
        match self.parts.get_mut(part as usize) {
            Some(p) if !p.at_risk && !p.status.is_final() => {
                p.at_risk = true;
                true
            }
            _ => false,
        }
    }

    /// A return came back for part `part` (or every fulfilled part):
    /// shipped/collected -> returned, by `actor`. No stock moves here (the
    /// return receives the units). Idempotent: a returned part stays so.
    pub fn handle_returned(
        &mut self,
        now: Timestamp,
        part: Option<u32>,
        actor: &str,
    ) -> Result<bool, OrderFailure> {
        self.advance(now);
        if !matches!(self.phase, Phase::Placed) {
            return Err(OrderFailure::NotFound);
        }
        let actor = clip_actor(actor);
        let mut changed = false;
        for p in 0..self.parts.len() as u32 {
            if part.is_some_and(|x| x != p) {
                continue;
            }
            let from = self.parts[p as usize].status;
            match from {
                OrderStatus::Shipped | OrderStatus::Collected => {
                    self.move_part(now, p, OrderStatus::Returned, &actor);
                    changed = true;
                }
                OrderStatus::Returned => {}
                _ if part.is_some() => {
                    return Err(OrderFailure::InvalidTransition {
                        part: p,
                        from,
                        to: OrderStatus::Returned,
                    })
                }
                _ => {}
            }
        }
        Ok(changed)
    }

    /// A SKU object's answer to the message tagged `tag`.
    pub fn handle_reply(&mut self, now: Timestamp, tag: Tag, reply: HoldReply) {
        self.advance(now);
        if tag.round != self.round {
            return;
        }
        let Some(l) = self.lines.get_mut(tag.line as usize) else {
            return;
        };
        let Some(out) = l.out else {
            return;
        };
        let known = match (out.ask, reply) {
            (
                Ask::Hold,
                HoldReply::Held {
                    expires_at: Some(t),
                },
            ) if t <= now => Known::Gone {
                how: Some(Resolution::Expired),
            },
            (
                Ask::Hold,
                HoldReply::Held {
                    expires_at: Some(_),
                },
            ) => Known::Held,
            (Ask::Hold | Ask::Keep, HoldReply::Held { expires_at: None }) => Known::Kept,
            (Ask::Hold, HoldReply::Insufficient { available, .. }) => Known::Short { available },
            (Ask::Hold, HoldReply::Refused { refusal }) => Known::Refused { refusal },
            (Ask::Hold | Ask::Keep | Ask::Commit, HoldReply::Committed) => Known::Committed,
            (Ask::Keep, HoldReply::Refused { refusal }) => Known::Refused { refusal },
            // Not kept yet (a reordered answer): ask again.
            (Ask::Keep, HoldReply::Held { .. }) => return,
            (_, HoldReply::Resolved { how }) => Known::Gone { how: Some(how) },
            (_, HoldReply::NotFound) => Known::Gone { how: None },
            // A commit or fulfil that changed nothing yet (a reordered
            // answer), or a refusal of an effect: keep asking.
            (Ask::Commit | Ask::Fulfill | Ask::Release, _) => return,
            (Ask::Keep, HoldReply::Insufficient { .. }) => return,
        };
        l.known = known;
        l.out = None;
        self.settle(now);
    }

    /// The alarm: resends are due or given up. Call at [`OrderMachine::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    // ---- outputs ----

    /// The next message to send now, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        let round = self.round;
        let channel = self.channel;
        let (i, l) = self.lines.iter_mut().enumerate().find(|(_, l)| {
            l.out
                .is_some_and(|o| o.next_at <= now && o.sends < max_sends(o.ask))
        })?;
        let out = l.out.as_mut()?;
        out.sends += 1;
        out.next_at = now.plus_ms(backoff(out.sends));
        let hold = l.line.hold.clone();
        let command = match out.ask {
            Ask::Hold => Command::Hold {
                hold,
                location: l.line.location.clone(),
                qty: l.line.qty,
                channel,
                ttl_ms: Some(ORDER_PLACEMENT_TTL_MS),
            },
            Ask::Keep => Command::Keep { hold },
            Ask::Commit => Command::Commit { hold },
            Ask::Fulfill => Command::Fulfill { hold },
            Ask::Release => Command::Release { hold },
        };
        Some(Transmit {
            tag: Tag {
                line: i as u32,
                round,
            },
            sku: l.line.sku.clone(),
            command,
        })
    }

    /// When [`OrderMachine::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.lines
            .iter()
            .filter_map(|l| l.out)
            .filter(|o| o.sends < max_sends(o.ask) || matches!(o.ask, Ask::Hold | Ask::Keep))
            .map(|o| o.next_at)
            .min()
    }

    /// The result of the operation `ticket` names, once it finished.
    pub fn outcome(&self, ticket: Ticket) -> Option<Result<Done, OrderFailure>> {
        if ticket.0 != self.op {
            return Some(Err(OrderFailure::Superseded));
        }
        self.result.clone()
    }

    /// True while some message waits for its answer.
    pub fn in_flight(&self) -> bool {
        self.lines.iter().any(|l| l.out.is_some())
    }

    // ---- reads ----

    pub fn id(&self) -> &OrderId {
        &self.id
    }
    pub fn fp(&self) -> u64 {
        self.fp
    }
    pub fn channel(&self) -> Channel {
        self.channel
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    pub fn from_reservation(&self) -> bool {
        self.from_reservation
    }
    /// Parts ready for pickup for `after_ms` or longer at `now` (to flag as
    /// overdue; never released).
    pub fn overdue_parts(&self, now: Timestamp, after_ms: i64) -> Vec<u32> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.status == OrderStatus::ReadyForPickup)
            .filter(|(_, p)| p.ready_at.is_some_and(|t| t.plus_ms(after_ms) <= now))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// When the next part ready for pickup (and not in `flagged`) becomes overdue.
    pub fn next_overdue(&self, after_ms: i64, flagged: &[u32]) -> Option<Timestamp> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.status == OrderStatus::ReadyForPickup && !flagged.contains(&(*i as u32))
            })
            .filter_map(|(_, p)| p.ready_at.map(|t| t.plus_ms(after_ms)))
            .min()
    }

    /// The transition in progress, if any: the same again resumes it.
    pub fn moving(&self) -> Option<(Target, OrderStatus)> {
        self.moving.as_ref().map(|t| (t.target, t.to))
    }
    /// Placed (every line held for good): the order exists.
    pub fn is_placed(&self) -> bool {
        matches!(self.phase, Phase::Placed)
    }
    /// The placement failed (final): why.
    pub fn failure(&self) -> Option<&OrderFailure> {
        match &self.phase {
            Phase::Failed { why } => Some(why),
            _ => None,
        }
    }
    pub fn lines(&self) -> impl Iterator<Item = &StockLine> {
        self.lines.iter().map(|l| &l.line)
    }
    pub fn parts(&self) -> Vec<PartView> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| PartView {
                part: i as u32,
                location: p.location.clone(),
                status: p.status,
                at_risk: p.at_risk,
                ready_at: p.ready_at,
            })
            .collect()
    }
    /// The creation entry first, then every move of every part.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let created = (0..self.parts.len() as u32).map(|part| HistoryEntry {
            part,
            from: None,
            to: OrderStatus::New,
            actor: self.creator.clone(),
            at: self.created_at,
        });
        created.chain(self.history.iter().cloned()).collect()
    }
    /// The order's status: its parts' when they agree; else the least
    /// advanced part that is not cancelled (cancelled when all are).
    pub fn status(&self) -> OrderStatus {
        let live = self
            .parts
            .iter()
            .map(|p| p.status)
            .filter(|s| *s != OrderStatus::Cancelled)
            .min();
        live.unwrap_or(OrderStatus::Cancelled)
    }

    // ---- the machine ----

    fn begin_op(&mut self) {
        self.op = self.op.wrapping_add(1);
        self.result = None;
    }

    fn parts_of(&self, target: Target) -> Vec<u32> {
        match target {
            Target::All => self
                .parts
                .iter()
                .enumerate()
                .filter(|(_, p)| p.pending.is_some())
                .map(|(i, _)| i as u32)
                .collect(),
            Target::Part(p) => alloc::vec![p],
        }
    }

    fn effect_ask(&self, to: OrderStatus) -> Ask {
        match to {
            OrderStatus::Paid => Ask::Commit,
            OrderStatus::Shipped | OrderStatus::Collected => Ask::Fulfill,
            _ => Ask::Release,
        }
    }

    fn move_part(&mut self, now: Timestamp, p: u32, to: OrderStatus, actor: &str) {
        let Some(part) = self.parts.get_mut(p as usize) else {
            return;
        };
        let from = part.status;
        part.status = to;
        part.pending = None;
        part.ready_at = (to == OrderStatus::ReadyForPickup).then_some(now);
        if to.is_final() || matches!(to, OrderStatus::Shipped | OrderStatus::Collected) {
            part.at_risk = false;
        }
        if self.history.len() < MAX_HISTORY {
            self.history.push(HistoryEntry {
                part: p,
                from: Some(from),
                to,
                actor: actor.into(),
                at: now,
            });
        }
    }

    /// A new round: `ask` every line `which` selects (others keep no question).
    fn ask(&mut self, now: Timestamp, ask: Ask, which: impl Fn(&LineState) -> bool) {
        self.round = self.round.wrapping_add(1);
        for l in &mut self.lines {
            l.out = which(l).then_some(Outgoing {
                ask,
                sends: 0,
                next_at: now,
            });
        }
    }

    fn advance(&mut self, now: Timestamp) {
        // Placement questions are given up after their sends (the holds
        // expire on their own); effects and releases wait for a retry.
        let mut gave_up = false;
        for l in &mut self.lines {
            if l.out.is_some_and(|o| {
                matches!(o.ask, Ask::Hold | Ask::Keep)
                    && o.sends >= MAX_PLACE_SENDS
                    && o.next_at <= now
            }) {
                l.out = None;
                gave_up = true;
            }
        }
        if gave_up {
            self.settle(now);
        }
    }

    /// All or none: the failure is the answer only once every line is
    /// given back (`settle` in `Releasing`), so a caller told "nothing was
    /// held" never sees a held unit afterwards.
    fn fail(&mut self, now: Timestamp, why: OrderFailure) {
        self.phase = Phase::Releasing { why };
        // All or none: give back every line (a refused one too: a resent
        // hold may have been held after its refusal was sent).
        self.ask(now, Ask::Release, |_| true);
        self.settle(now);
    }

    fn settle(&mut self, now: Timestamp) {
        if self.in_flight() {
            return;
        }
        match &self.phase {
            Phase::Placing => {
                if self
                    .lines
                    .iter()
                    .all(|l| matches!(l.known, Known::Held | Known::Kept))
                {
                    self.phase = Phase::Keeping;
                    self.ask(now, Ask::Keep, |l| l.known != Known::Kept);
                    self.settle(now);
                    return;
                }
                let short: Vec<(Sku, LocationId, Qty, Qty)> = self
                    .lines
                    .iter()
                    .filter_map(|l| match l.known {
                        Known::Short { available } => Some((
                            l.line.sku.clone(),
                            l.line.location.clone(),
                            l.line.qty,
                            available,
                        )),
                        _ => None,
                    })
                    .collect();
                let refused = self.lines.iter().find_map(|l| match &l.known {
                    Known::Refused { refusal } => Some(refusal.clone()),
                    _ => None,
                });
                let why = if !short.is_empty() {
                    OrderFailure::Insufficient { short }
                } else if let Some(refusal) = refused {
                    OrderFailure::Refused { refusal }
                } else {
                    OrderFailure::Unconfirmed
                };
                self.fail(now, why);
            }
            Phase::Keeping => {
                if self
                    .lines
                    .iter()
                    .all(|l| matches!(l.known, Known::Kept | Known::Committed))
                {
                    self.phase = Phase::Placed;
                    self.result = Some(Ok(Done { created: true }));
                    return;
                }
                let lapsed = self
                    .lines
                    .iter()
                    .any(|l| matches!(l.known, Known::Gone { .. }));
                let refused = self.lines.iter().find_map(|l| match &l.known {
                    Known::Refused { refusal } => Some(refusal.clone()),
                    _ => None,
                });
                let why = match (lapsed, refused) {
                    (true, _) => OrderFailure::Lapsed,
                    (false, Some(refusal)) => OrderFailure::Refused { refusal },
                    (false, None) => OrderFailure::Unconfirmed,
                };
                self.fail(now, why);
            }
            Phase::Releasing { why } => {
                let why = why.clone();
                if self.result.is_none() {
                    self.result = Some(Err(why.clone()));
                }
                self.phase = Phase::Failed { why };
            }
            Phase::Placed => {
                let Some(t) = self.moving.take() else {
                    return;
                };
                let moved: Vec<u32> = self
                    .parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.pending.is_some())
                    .map(|(i, _)| i as u32)
                    .collect();
                for &p in &moved {
                    self.move_part(now, p, t.to, &t.actor);
                }
                let known = match t.to {
                    OrderStatus::Paid => Known::Committed,
                    OrderStatus::Cancelled => Known::Gone {
                        how: Some(Resolution::Released),
                    },
                    _ => Known::Gone {
                        how: Some(Resolution::Fulfilled),
                    },
                };
                for l in &mut self.lines {
                    if moved.contains(&l.line.part) {
                        l.known = known.clone();
                    }
                }
                self.result = Some(Ok(Done { created: false }));
            }
            Phase::Failed { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
