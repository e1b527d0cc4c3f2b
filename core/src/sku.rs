//! One SKU's stock across every location: commands, events, rejections, and
//! the state machine that turns the first into the second.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::fingerprint::Fnv;
use crate::ids::{HoldId, LocationId, OpId, SaleId, TerminalId};
use crate::stock::{AdjustReason, Channel, Position, Qty, MAX_LINE_QTY};
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};

/// Most active (held or committed) holds one SKU keeps; past it, new holds are refused.
pub const MAX_ACTIVE_HOLDS: usize = 100_000;
/// Largest count a physical count may report.
pub const MAX_COUNTED: Qty = 100_000_000;

/// A request to change one SKU's stock. Every variant carries the client's id
/// (an [`OpId`], a [`HoldId`] or a [`SaleId`]) so that a retry is recognisably
/// the same command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Units arrive at a location.
    Receive {
        op: OpId,
        location: LocationId,
        qty: Qty,
    },
    /// A manual correction of on_hand, optionally compare-and-set on the position's version.
    Adjust {
        op: OpId,
        location: LocationId,
        delta: Qty,
        reason: AdjustReason,
        expected_version: Option<u64>,
    },
    /// Sets the safety stock the online channel may not take.
    SetSafetyStock {
        op: OpId,
        location: LocationId,
        qty: Qty,
    },
    /// Holds `qty` units at `location` for `channel`. `ttl_ms: None` holds until
    /// resolved (an order's allocation); `Some` must be within the TTL bounds.
    Hold {
        hold: HoldId,
        location: LocationId,
        qty: Qty,
        channel: Channel,
        ttl_ms: Option<i64>,
    },
    /// Moves an active hold's deadline to `now + ttl_ms`.
    Extend { hold: HoldId, ttl_ms: i64 },
    /// Gives the held (or committed) units back.
    Release { hold: HoldId },
    /// Turns a hold into a commitment (a paid order): reserved -> committed, no expiry.
    Commit { hold: HoldId },
    /// The committed units leave (shipped or collected): out of committed and on_hand.
    Fulfill { hold: HoldId },
    /// An in-store sale: never refused for stock.
    Sell {
        sale: SaleId,
        terminal: TerminalId,
        device_seq: u64,
        location: LocationId,
        qty: Qty,
        occurred_at: Timestamp,
    },
}

/// A fact, recorded in the event log and replayed on load.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Received {
        op: OpId,
        fp: u64,
        location: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    Adjusted {
        op: OpId,
        fp: u64,
        location: LocationId,
        delta: Qty,
        reason: AdjustReason,
        at: Timestamp,
    },
    SafetyStockSet {
        op: OpId,
        fp: u64,
        location: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    Held {
        hold: HoldId,
        fp: u64,
        location: LocationId,
        qty: Qty,
        channel: Channel,
        expires_at: Option<Timestamp>,
        at: Timestamp,
    },
    Extended {
        hold: HoldId,
        expires_at: Timestamp,
        at: Timestamp,
    },
    Released {
        hold: HoldId,
        at: Timestamp,
    },
    Expired {
        hold: HoldId,
        at: Timestamp,
    },
    Committed {
        hold: HoldId,
        at: Timestamp,
    },
    Fulfilled {
        hold: HoldId,
        at: Timestamp,
    },
    Sold {
        sale: SaleId,
        fp: u64,
        terminal: TerminalId,
        device_seq: u64,
        location: LocationId,
        qty: Qty,
        occurred_at: Timestamp,
        /// Units sold beyond what was available at the till.
        oversold: Qty,
        /// Holds at this location that can no longer be met, newest first.
        at_risk: Vec<HoldId>,
        at: Timestamp,
    },
}

impl Event {
    /// When the event was recorded (server time).
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Received { at, .. }
            | Event::Adjusted { at, .. }
            | Event::SafetyStockSet { at, .. }
            | Event::Held { at, .. }
            | Event::Extended { at, .. }
            | Event::Released { at, .. }
            | Event::Expired { at, .. }
            | Event::Committed { at, .. }
            | Event::Fulfilled { at, .. }
            | Event::Sold { at, .. } => *at,
        }
    }

    /// A short snake_case name, used by the ledger.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Received { .. } => "received",
            Event::Adjusted { .. } => "adjusted",
            Event::SafetyStockSet { .. } => "safety_stock_set",
            Event::Held { .. } => "held",
            Event::Extended { .. } => "extended",
            Event::Released { .. } => "released",
            Event::Expired { .. } => "expired",
            Event::Committed { .. } => "committed",
            Event::Fulfilled { .. } => "fulfilled",
            Event::Sold { .. } => "sold",
        }
    }
}

/// How a hold was resolved. A hold resolves exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Released,
    Expired,
    Fulfilled,
}

/// Why a command was refused. Flat, ordered by precedence: when several apply,
/// the first in this order is reported. A rejection changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A quantity outside `0..=MAX_LINE_QTY` (or zero where zero means nothing).
    QtyOutOfRange { qty: Qty },
    /// A TTL outside `MIN_TTL_MS..=MAX_TTL_MS`.
    TtlOutOfRange { ttl_ms: i64 },
    /// A retried command: it was already applied, with the same content.
    Exists,
    /// The id was already used for a command with other content.
    ExistsWithDifferentBody,
    /// No hold with this id was ever seen.
    HoldNotFound,
    /// The hold already resolved; it does nothing a second time.
    HoldResolved { how: Resolution },
    /// The hold is in the wrong state for this command (e.g. fulfil before commit, extend a commitment).
    HoldNotActive,
    /// `expected_version` is stale.
    VersionConflict { expected: u64, actual: u64 },
    /// Not enough available for the channel.
    InsufficientStock { requested: Qty, available: Qty },
    /// The adjustment would take on_hand below the units that are unavailable (or below zero).
    OnHandBelowUnavailable { on_hand: Qty, unavailable: Qty },
    /// Too many active holds on one SKU.
    TooManyHolds,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::QtyOutOfRange { qty } => {
                write!(f, "quantity {qty} is outside 0..={MAX_LINE_QTY}")
            }
            Rejection::TtlOutOfRange { ttl_ms } => write!(
                f,
                "ttl of {} s is outside {}..={} s",
                ttl_ms / 1000,
                MIN_TTL_MS / 1000,
                MAX_TTL_MS / 1000
            ),
            Rejection::Exists => f.write_str("already applied"),
            Rejection::ExistsWithDifferentBody => {
                f.write_str("this id was already used with different content")
            }
            Rejection::HoldNotFound => f.write_str("no such hold"),
            Rejection::HoldResolved { how } => write!(f, "the hold was already {how:?}"),
            Rejection::HoldNotActive => f.write_str("the hold is not in a state that allows this"),
            Rejection::VersionConflict { expected, actual } => {
                write!(
                    f,
                    "expected version {expected}, the position is at {actual}"
                )
            }
            Rejection::InsufficientStock {
                requested,
                available,
            } => {
                write!(f, "requested {requested}, available {available}")
            }
            Rejection::OnHandBelowUnavailable {
                on_hand,
                unavailable,
            } => write!(
                f,
                "on_hand would be {on_hand}, below the {unavailable} unavailable units"
            ),
            Rejection::TooManyHolds => f.write_str("too many active holds on this SKU"),
        }
    }
}

/// The state a hold waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Reserved, until `expires_at` (or until resolved when `None`).
    Held { expires_at: Option<Timestamp> },
    /// Committed to a paid order, until fulfilled or released.
    Committed,
}

/// An active hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub location: LocationId,
    pub qty: Qty,
    pub channel: Channel,
    pub state: HoldState,
    pub fp: u64,
    /// Order of creation, for at-risk reporting (newest first).
    pub seq: u64,
}

/// One SKU's stock across every location. Rebuilt by replaying its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkuState {
    positions: BTreeMap<LocationId, Position>,
    holds: BTreeMap<HoldId, Hold>,
    /// Active holds with a deadline, by deadline: the alarm table.
    deadlines: BTreeMap<(Timestamp, HoldId), ()>,
    resolved: BTreeMap<HoldId, (Resolution, u64)>,
    ops: BTreeMap<OpId, u64>,
    sales: BTreeMap<SaleId, u64>,
    /// Highest device sequence seen per terminal.
    terminals: BTreeMap<TerminalId, u64>,
    hold_seq: u64,
    events_applied: u64,
}

fn check_qty(qty: Qty) -> Result<(), Rejection> {
    if (0..=MAX_LINE_QTY).contains(&qty) {
        Ok(())
    } else {
        Err(Rejection::QtyOutOfRange { qty })
    }
}

fn check_ttl(ttl_ms: i64) -> Result<(), Rejection> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(Rejection::TtlOutOfRange { ttl_ms })
    }
}

/// The content fingerprint of a command, without its id.
pub fn fingerprint(cmd: &Command) -> u64 {
    let f = Fnv::default();
    match cmd {
        Command::Receive { location, qty, .. } => f.u64(1).str(location.as_str()).i64(*qty),
        Command::Adjust {
            location,
            delta,
            reason,
            expected_version,
            ..
        } => f
            .u64(2)
            .str(location.as_str())
            .i64(*delta)
            .str(reason.as_str())
            .u64(expected_version.map_or(0, |v| v.wrapping_add(1))),
        Command::SetSafetyStock { location, qty, .. } => f.u64(3).str(location.as_str()).i64(*qty),
        Command::Hold {
            location,
            qty,
            channel,
            ttl_ms,
            ..
        } => f
            .u64(4)
            .str(location.as_str())
            .i64(*qty)
            .u64(*channel as u64)
            .i64(ttl_ms.unwrap_or(-1)),
        Command::Extend { ttl_ms, .. } => f.u64(5).i64(*ttl_ms),
        Command::Release { .. } => f.u64(6),
        Command::Commit { .. } => f.u64(7),
        Command::Fulfill { .. } => f.u64(8),
        Command::Sell {
            terminal,
            device_seq,
            location,
            qty,
            occurred_at,
            ..
        } => f
            .u64(9)
            .str(terminal.as_str())
            .u64(*device_seq)
            .str(location.as_str())
            .i64(*qty)
            .i64(occurred_at.as_ms()),
    }
    .finish()
}

impl SkuState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position at `location` (all zeros if nothing happened there yet).
    pub fn position(&self, location: &LocationId) -> Position {
        self.positions.get(location).cloned().unwrap_or_default()
    }

    /// Every location with a position, in id order.
    pub fn positions(&self) -> impl Iterator<Item = (&LocationId, &Position)> {
        self.positions.iter()
    }

    pub fn hold(&self, hold: &HoldId) -> Option<&Hold> {
        self.holds.get(hold)
    }

    pub fn resolution(&self, hold: &HoldId) -> Option<Resolution> {
        self.resolved.get(hold).map(|(r, _)| *r)
    }

    pub fn active_holds(&self) -> impl Iterator<Item = (&HoldId, &Hold)> {
        self.holds.iter()
    }

    /// How many events built this state.
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// Decides what `cmd` does at `now`, without changing anything. Holds
    /// whose deadline is at or before `now` count as expired: call
    /// [`SkuState::expire`] first and apply its events so the log shows them.
    pub fn decide(&self, now: Timestamp, cmd: &Command) -> Result<Vec<Event>, Rejection> {
        let fp = fingerprint(cmd);
        match cmd {
            Command::Receive { op, location, qty } => {
                check_qty(*qty)?;
                self.check_op(op, fp)?;
                Ok(alloc::vec![Event::Received {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    at: now
                }])
            }
            Command::Adjust {
                op,
                location,
                delta,
                reason,
                expected_version,
            } => {
                if delta.unsigned_abs() > MAX_LINE_QTY as u64 {
                    return Err(Rejection::QtyOutOfRange { qty: *delta });
                }
                self.check_op(op, fp)?;
                let p = self.position(location);
                if let Some(expected) = expected_version {
                    if *expected != p.version {
                        return Err(Rejection::VersionConflict {
                            expected: *expected,
                            actual: p.version,
                        });
                    }
                }
                let on_hand = p.on_hand + delta;
                if *delta < 0 && on_hand < p.unavailable().max(0) {
                    return Err(Rejection::OnHandBelowUnavailable {
                        on_hand,
                        unavailable: p.unavailable(),
                    });
                }
                Ok(alloc::vec![Event::Adjusted {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    delta: *delta,
                    reason: *reason,
                    at: now
                }])
            }
            Command::SetSafetyStock { op, location, qty } => {
                check_qty(*qty)?;
                self.check_op(op, fp)?;
                Ok(alloc::vec![Event::SafetyStockSet {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    at: now
                }])
            }
            Command::Hold {
                hold,
                location,
                qty,
                channel,
                ttl_ms,
            } => {
                if *qty == 0 {
                    return Err(Rejection::QtyOutOfRange { qty: 0 });
                }
                check_qty(*qty)?;
                if let Some(ttl) = ttl_ms {
                    check_ttl(*ttl)?;
                }
                if let Some(h) = self.holds.get(hold) {
                    return Err(if h.fp == fp {
                        Rejection::Exists
                    } else {
                        Rejection::ExistsWithDifferentBody
                    });
                }
                if let Some((_, old)) = self.resolved.get(hold) {
                    return Err(if *old == fp {
                        Rejection::Exists
                    } else {
                        Rejection::ExistsWithDifferentBody
                    });
                }
                if self.holds.len() >= MAX_ACTIVE_HOLDS {
                    return Err(Rejection::TooManyHolds);
                }
                let available = self.available_at(now, location, *channel);
                if *qty > available {
                    return Err(Rejection::InsufficientStock {
                        requested: *qty,
                        available: available.max(0),
                    });
                }
                Ok(alloc::vec![Event::Held {
                    hold: hold.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    channel: *channel,
                    expires_at: ttl_ms.map(|t| now.plus_ms(t)),
                    at: now
                }])
            }
            Command::Extend { hold, ttl_ms } => {
                check_ttl(*ttl_ms)?;
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Held {
                        expires_at: Some(_),
                    } => Ok(alloc::vec![Event::Extended {
                        hold: hold.clone(),
                        expires_at: now.plus_ms(*ttl_ms),
                        at: now
                    }]),
                    _ => Err(Rejection::HoldNotActive),
                }
            }
            Command::Release { hold } => {
                self.live_hold(now, hold)?;
                Ok(alloc::vec![Event::Released {
                    hold: hold.clone(),
                    at: now
                }])
            }
            Command::Commit { hold } => {
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Held { .. } => Ok(alloc::vec![Event::Committed {
                        hold: hold.clone(),
                        at: now
                    }]),
                    HoldState::Committed => Err(Rejection::Exists),
                }
            }
            Command::Fulfill { hold } => {
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Committed => Ok(alloc::vec![Event::Fulfilled {
                        hold: hold.clone(),
                        at: now
                    }]),
                    HoldState::Held { .. } => Err(Rejection::HoldNotActive),
                }
            }
            Command::Sell {
                sale,
                terminal,
                device_seq,
                location,
                qty,
                occurred_at,
            } => {
                check_qty(*qty)?;
                if let Some(old) = self.sales.get(sale) {
                    return Err(if *old == fp {
                        Rejection::Exists
                    } else {
                        Rejection::ExistsWithDifferentBody
                    });
                }
                let available = self.available_at(now, location, Channel::Pos);
                let after = available - qty;
                let oversold = if after < 0 { (-after).min(*qty) } else { 0 };
                let at_risk = if after < 0 {
                    self.at_risk(now, location, -after)
                } else {
                    Vec::new()
                };
                Ok(alloc::vec![Event::Sold {
                    sale: sale.clone(),
                    fp,
                    terminal: terminal.clone(),
                    device_seq: *device_seq,
                    location: location.clone(),
                    qty: *qty,
                    occurred_at: *occurred_at,
                    oversold,
                    at_risk,
                    at: now
                }])
            }
        }
    }

    fn check_op(&self, op: &OpId, fp: u64) -> Result<(), Rejection> {
        match self.ops.get(op) {
            None => Ok(()),
            Some(old) if *old == fp => Err(Rejection::Exists),
            Some(_) => Err(Rejection::ExistsWithDifferentBody),
        }
    }

    /// The hold, if it is active at `now` (a hold past its deadline counts as expired).
    fn live_hold(&self, now: Timestamp, hold: &HoldId) -> Result<&Hold, Rejection> {
        if let Some(h) = self.holds.get(hold) {
            if let HoldState::Held {
                expires_at: Some(t),
            } = h.state
            {
                if t <= now {
                    return Err(Rejection::HoldResolved {
                        how: Resolution::Expired,
                    });
                }
            }
            return Ok(h);
        }
        match self.resolved.get(hold) {
            Some((how, _)) => Err(Rejection::HoldResolved { how: *how }),
            None => Err(Rejection::HoldNotFound),
        }
    }

    /// Units held at `location` by holds that are past their deadline at `now`
    /// but not yet expired in the log: they count as available.
    fn lapsed_at(&self, now: Timestamp, location: &LocationId) -> Qty {
        self.deadlines
            .range(..=(now, max_hold_id()))
            .filter_map(|((_, id), _)| self.holds.get(id))
            .filter(|h| &h.location == location)
            .map(|h| h.qty)
            .sum()
    }

    /// Availability at `now`, counting lapsed holds as released (lazy expiry).
    pub fn available_at(&self, now: Timestamp, location: &LocationId, channel: Channel) -> Qty {
        let mut p = self.position(location);
        p.reserved -= self.lapsed_at(now, location);
        p.available(channel)
    }

    /// The position at `now`, with lapsed holds counted as released.
    pub fn position_at(&self, now: Timestamp, location: &LocationId) -> Position {
        let mut p = self.position(location);
        p.reserved -= self.lapsed_at(now, location);
        p
    }

    /// Holds at `location` that `deficit` units of oversell leave unmet, newest first.
    fn at_risk(&self, now: Timestamp, location: &LocationId, deficit: Qty) -> Vec<HoldId> {
        let mut live: Vec<(&HoldId, &Hold)> = self
            .holds
            .iter()
            .filter(|(_, h)| &h.location == location)
            .filter(
                |(_, h)| !matches!(h.state, HoldState::Held { expires_at: Some(t) } if t <= now),
            )
            .collect();
        live.sort_by(|a, b| b.1.seq.cmp(&a.1.seq));
        let mut out = Vec::new();
        let mut left = deficit;
        for (id, h) in live {
            if left <= 0 {
                break;
            }
            out.push(id.clone());
            left -= h.qty;
        }
        out
    }

    /// The holds whose deadline is at or before `now`, as `Expired` events.
    pub fn expire(&self, now: Timestamp) -> Vec<Event> {
        self.deadlines
            .range(..=(now, max_hold_id()))
            .map(|((_, id), _)| Event::Expired {
                hold: id.clone(),
                at: now,
            })
            .collect()
    }

    /// The earliest deadline of an active hold: what the alarm is set to.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.keys().next().map(|(t, _)| *t)
    }

    fn pos_mut(&mut self, location: &LocationId) -> &mut Position {
        self.positions.entry(location.clone()).or_default()
    }

    fn resolve(&mut self, hold: &HoldId, how: Resolution) {
        if let Some(h) = self.holds.remove(hold) {
            if let HoldState::Held {
                expires_at: Some(t),
            } = h.state
            {
                self.deadlines.remove(&(t, hold.clone()));
            }
            let p = self.pos_mut(&h.location);
            match h.state {
                HoldState::Held { .. } => p.reserved -= h.qty,
                HoldState::Committed => {
                    p.committed -= h.qty;
                    if how == Resolution::Fulfilled {
                        p.on_hand -= h.qty;
                    }
                }
            }
            p.version += 1;
            self.resolved.insert(hold.clone(), (how, h.fp));
        }
    }

    /// Applies a fact. Infallible: an event that no longer matches the state
    /// (a duplicate resolution) changes nothing.
    pub fn apply(&mut self, event: &Event) {
        self.events_applied += 1;
        match event {
            Event::Received {
                op,
                fp,
                location,
                qty,
                ..
            } => {
                self.ops.insert(op.clone(), *fp);
                let p = self.pos_mut(location);
                p.on_hand += qty;
                p.version += 1;
            }
            Event::Adjusted {
                op,
                fp,
                location,
                delta,
                ..
            } => {
                self.ops.insert(op.clone(), *fp);
                let p = self.pos_mut(location);
                p.on_hand += delta;
                p.version += 1;
            }
            Event::SafetyStockSet {
                op,
                fp,
                location,
                qty,
                ..
            } => {
                self.ops.insert(op.clone(), *fp);
                let p = self.pos_mut(location);
                p.safety_stock = *qty;
                p.version += 1;
            }
            Event::Held {
                hold,
                fp,
                location,
                qty,
                channel,
                expires_at,
                ..
            } => {
                if self.holds.contains_key(hold) || self.resolved.contains_key(hold) {
                    return;
                }
                self.hold_seq += 1;
                self.holds.insert(
                    hold.clone(),
                    Hold {
                        location: location.clone(),
                        qty: *qty,
                        channel: *channel,
                        state: HoldState::Held {
                            expires_at: *expires_at,
                        },
                        fp: *fp,
                        seq: self.hold_seq,
                    },
                );
                if let Some(t) = expires_at {
                    self.deadlines.insert((*t, hold.clone()), ());
                }
                let p = self.pos_mut(location);
                p.reserved += qty;
                p.version += 1;
            }
            Event::Extended {
                hold, expires_at, ..
            } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    if let HoldState::Held {
                        expires_at: Some(old),
                    } = h.state
                    {
                        h.state = HoldState::Held {
                            expires_at: Some(*expires_at),
                        };
                        self.deadlines.remove(&(old, hold.clone()));
                        self.deadlines.insert((*expires_at, hold.clone()), ());
                        let loc = h.location.clone();
                        self.pos_mut(&loc).version += 1;
                    }
                }
            }
            Event::Released { hold, .. } => self.resolve(hold, Resolution::Released),
            Event::Expired { hold, .. } => self.resolve(hold, Resolution::Expired),
            Event::Fulfilled { hold, .. } => self.resolve(hold, Resolution::Fulfilled),
            Event::Committed { hold, .. } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    if let HoldState::Held { expires_at } = h.state {
                        h.state = HoldState::Committed;
                        let (loc, qty) = (h.location.clone(), h.qty);
                        if let Some(t) = expires_at {
                            self.deadlines.remove(&(t, hold.clone()));
                        }
                        let p = self.pos_mut(&loc);
                        p.reserved -= qty;
                        p.committed += qty;
                        p.version += 1;
                    }
                }
            }
            Event::Sold {
                sale,
                fp,
                terminal,
                device_seq,
                location,
                qty,
                ..
            } => {
                self.sales.insert(sale.clone(), *fp);
                let seen = self.terminals.entry(terminal.clone()).or_insert(0);
                *seen = (*seen).max(*device_seq);
                let p = self.pos_mut(location);
                p.on_hand -= qty;
                p.version += 1;
            }
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }

    /// The invariants that hold after every event. Returns the first broken one.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        for (loc, p) in &self.positions {
            if p.reserved < 0 || p.committed < 0 || p.damaged < 0 || p.quality_control < 0 {
                return Err("a bucket went below zero");
            }
            if p.safety_stock < 0 || p.incoming < 0 {
                return Err("safety stock or incoming below zero");
            }
            let held: Qty = self
                .holds
                .values()
                .filter(|h| &h.location == loc && matches!(h.state, HoldState::Held { .. }))
                .map(|h| h.qty)
                .sum();
            let committed: Qty = self
                .holds
                .values()
                .filter(|h| &h.location == loc && h.state == HoldState::Committed)
                .map(|h| h.qty)
                .sum();
            if held != p.reserved {
                return Err("reserved differs from the sum of active holds");
            }
            if committed != p.committed {
                return Err("committed differs from the sum of commitments");
            }
        }
        for ((t, id), _) in &self.deadlines {
            match self.holds.get(id) {
                Some(Hold {
                    state:
                        HoldState::Held {
                            expires_at: Some(e),
                        },
                    ..
                }) if e == t => {}
                _ => return Err("the deadline table names a hold that is not held until then"),
            }
        }
        for id in self.holds.keys() {
            if self.resolved.contains_key(id) {
                return Err("a hold is both active and resolved");
            }
        }
        Ok(())
    }
}

/// The largest hold id, as a range bound: `(t, max_hold_id())` sorts after
/// every `(t, id)`.
fn max_hold_id() -> HoldId {
    // 64 tildes sort after every valid id character; built once per call, cheap.
    HoldId::max_sentinel()
}
