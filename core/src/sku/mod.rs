//! One SKU's stock across every location: commands, events, rejections, and
//! the state machine that turns the first into the second.
//!
//! Every table here is bounded: active holds, locations, open transfers,
//! terminals and the count window have a maximum; op ids, sale ids, resolved
//! holds and closed transfers are pruned [`RETENTION_MS`] after they were last
//! touched (by event time, never by a clock), and sale ids are also capped at
//! [`MAX_REMEMBERED_SALES`]. The API keeps sale ids idempotent forever: that
//! is the shell's durable record's job, not core's (see [`Command::Sell`]).
//!
//! Map of the module (one file per concern; each adds the `decide_*` and
//! `apply_*` of its commands and events to [`SkuState`]):
//! - `mod.rs`: the limits, [`SkuState`] (its fields, written once), its
//!   public API, and [`SkuState::decide`] / [`SkuState::apply`] as a dispatch.
//! - [`command`], [`event`], [`rejection`]: the vocabulary, and the input checks.
//! - `site`: one location's position, flows and movement window; receive,
//!   adjust, mark unavailable, safety stock.
//! - `counts`: physical counts, brought up to date with later movements.
//! - [`holds`]: holds (hold, extend, release, commit, fulfil), resolutions,
//!   lazy expiry and the deadline table.
//! - `sales`: POS sales and returns against them; the sale window and terminals.
//! - `transfers`: transfers between locations.
//! - `retention`: op ids and what is forgotten after [`RETENTION_MS`].
//! - `snapshot`: the serde form where it is not derived.
//! - `invariants`: [`SkuState::check_invariants`] and [`SkuState::state_hash`].
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::ids::{HoldId, IdMap, LocationId, OpId, SaleId, TerminalId, TransferId};
use crate::stock::{Channel, Position, Qty};
use crate::time::Timestamp;

pub mod command;
mod counts;
pub mod event;
pub mod holds;
mod invariants;
pub mod rejection;
mod retention;
mod sales;
mod site;
mod snapshot;
mod transfers;

pub use command::{fingerprint, Command, Condition};
pub use event::Event;
pub use holds::{Hold, HoldState, Resolution, Resolved};
pub use rejection::Rejection;
pub use sales::{SaleRecord, TerminalSeen};
pub use site::Flows;
pub use transfers::{Transfer, TransferStatus};

use holds::ActiveHolds;
use site::Site;

/// Most active (held or committed) holds one SKU keeps; past it, new holds are refused.
pub const MAX_ACTIVE_HOLDS: usize = 100_000;
/// Most locations one SKU has a position at.
pub const MAX_LOCATIONS: usize = 1_024;
/// Most transfers of one SKU in flight (shipped, not yet fully received).
pub const MAX_OPEN_TRANSFERS: usize = 10_000;
/// Largest count a physical count may report.
pub const MAX_COUNTED: Qty = 100_000_000;
/// Largest on_hand a position may reach.
pub const MAX_ON_HAND: Qty = 1_000_000_000;
/// On-hand movements remembered per location, so that a count can add back
/// what moved after it was taken.
pub const MAX_MOVEMENT_WINDOW: usize = 256;
/// How long op ids, sale ids, resolved holds and closed transfers are
/// remembered (by event time).
pub const RETENTION_MS: i64 = 24 * 3_600_000;
/// Most sale ids one SKU remembers (within [`RETENTION_MS`]); past it the
/// oldest is forgotten first.
pub const MAX_REMEMBERED_SALES: usize = 100_000;
/// Most terminals one SKU remembers the last device sequence of; past it the
/// terminal seen longest ago is forgotten (its next late upload is not
/// flagged `late`).
pub const MAX_TERMINALS: usize = 4_096;
/// How far in the future a device's `occurred_at` / `counted_at` may be (clock skew).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// One SKU's stock across every location. Rebuilt by replaying its events, or
/// from a serde snapshot (this struct's derived form: its fields in this order;
/// `snapshot` gives the few field types that need one their own form).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkuState {
    /// By location id, serialised as a map in id order.
    #[serde(with = "snapshot::by_location")]
    sites: IdMap<LocationId, Site>,
    /// Active holds, with their deadline table (derived, rebuilt on load).
    holds: ActiveHolds,
    resolved: IdMap<HoldId, Resolved>,
    /// `(when, hold id)` per resolved hold, oldest first: what pruning walks.
    resolved_log: VecDeque<(Timestamp, HoldId)>,
    /// First fingerprint and time per op id.
    ops: IdMap<OpId, (u64, Timestamp)>,
    /// `(when, op id)` per op id kept, oldest first.
    ops_log: VecDeque<(Timestamp, OpId)>,
    /// The sales remembered: the window of [`RETENTION_MS`], at most [`MAX_REMEMBERED_SALES`].
    sales: IdMap<SaleId, SaleRecord>,
    /// `(when, sale id)` per sale remembered, oldest first. Left out of the
    /// snapshot when empty (a state without sales keeps its old form).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    sales_log: VecDeque<(Timestamp, SaleId)>,
    /// How many sale ids were forgotten (by age or by the cap).
    #[serde(default, skip_serializing_if = "is_zero")]
    sales_forgotten: u64,
    /// Highest device sequence and latest sale time per terminal, at most [`MAX_TERMINALS`].
    terminals: IdMap<TerminalId, TerminalSeen>,
    transfers: IdMap<TransferId, Transfer>,
    /// `(when, transfer id)` per closed or cancelled transfer, oldest first.
    transfers_log: VecDeque<(Timestamp, TransferId)>,
    open_transfers: usize,
    hold_seq: u64,
    events_applied: u64,
    /// The latest event time seen: the clock that prunes.
    clock: Timestamp,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SkuState {
    /// An empty state whose tables hash under key 0. An owner that takes ids
    /// from clients uses [`SkuState::with_hash_key`] instead.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state whose id tables hash under `key` (see
    /// [`SkuState::set_hash_key`]).
    pub fn with_hash_key(key: u64) -> Self {
        let mut s = Self::default();
        s.set_hash_key(key);
        s
    }

    /// Rehashes every id table under `key` (SipHash-1-3 of the id's bytes),
    /// so that clients who pick SKU, location, hold, op, sale, terminal or
    /// transfer ids cannot make them collide: the owner keeps a random key of
    /// its own (the Durable Object, in its SQLite) and never shows it.
    ///
    /// Nothing observable depends on the key: events, rejections, iteration
    /// order, [`SkuState::state_hash`] and the snapshot JSON are the same under
    /// every key. The key is not part of the snapshot: a state loaded from one
    /// hashes under key 0 until the owner calls this again, which it does right
    /// after the load (O(n log n), as is the load, however the ids hash).
    pub fn set_hash_key(&mut self, key: u64) {
        self.sites.set_hash_key(key);
        self.holds.map.set_hash_key(key);
        self.resolved.set_hash_key(key);
        self.ops.set_hash_key(key);
        self.sales.set_hash_key(key);
        self.terminals.set_hash_key(key);
        self.transfers.set_hash_key(key);
    }

    /// The key the id tables hash under (0 unless set).
    pub fn hash_key(&self) -> u64 {
        self.sites.hash_key()
    }

    /// The position at `location` as recorded (all zeros if nothing happened there yet).
    /// Holds past their deadline still count until their `Expired` event is
    /// applied; use [`SkuState::position_at`] for what a reader should see.
    pub fn position(&self, location: &LocationId) -> Position {
        self.sites.get(location).map(|s| s.pos).unwrap_or_default()
    }

    /// Every location with a position, in id order.
    pub fn positions(&self) -> impl Iterator<Item = (&LocationId, &Position)> {
        self.sites_sorted().into_iter().map(|(l, s)| (l, &s.pos))
    }

    /// The flows that make up on_hand and incoming at `location`.
    pub fn flows(&self, location: &LocationId) -> Flows {
        self.sites
            .get(location)
            .map(|s| s.flows)
            .unwrap_or_default()
    }

    /// Availability at `now`, counting lapsed holds as released (lazy expiry).
    pub fn available_at(&self, now: Timestamp, location: &LocationId, channel: Channel) -> Qty {
        self.position_at(now, location).available(channel)
    }

    /// The position at `now`, with lapsed holds counted as released.
    pub fn position_at(&self, now: Timestamp, location: &LocationId) -> Position {
        let mut p = self.position(location);
        p.reserved -= self.lapsed_at(now, location);
        p
    }

    pub fn hold(&self, hold: &HoldId) -> Option<&Hold> {
        self.holds.map.get(hold)
    }

    pub fn resolution(&self, hold: &HoldId) -> Option<Resolution> {
        self.resolved.get(hold).map(|r| r.how)
    }

    pub fn active_holds(&self) -> impl Iterator<Item = (&HoldId, &Hold)> {
        self.holds.map.iter()
    }

    pub fn transfer(&self, transfer: &TransferId) -> Option<&Transfer> {
        self.transfers.get(transfer)
    }

    /// The sale, while it is remembered (see [`SkuState::remembers_sale`]).
    pub fn sale(&self, sale: &SaleId) -> Option<&SaleRecord> {
        self.sales.get(sale)
    }

    /// Whether core still remembers `sale`: applied less than
    /// [`RETENTION_MS`] before the latest event and among the last
    /// [`MAX_REMEMBERED_SALES`]. While it does, a `Sell` with that id is
    /// `Exists` (or `ExistsWithDifferentBody`); once it does not, `decide`
    /// would sell again, so the shell, which keeps every sale id durably,
    /// answers a repeat from its own record (see [`Command::Sell`]).
    pub fn remembers_sale(&self, sale: &SaleId) -> bool {
        self.sales.contains_key(sale)
    }

    /// How many sale ids core has forgotten (by age or by the cap).
    pub fn sales_forgotten(&self) -> u64 {
        self.sales_forgotten
    }

    /// Highest device sequence applied for `terminal` (while it is remembered).
    pub fn terminal_seq(&self, terminal: &TerminalId) -> Option<u64> {
        self.terminals.get(terminal).map(|t| t.device_seq)
    }

    /// How many events built this state.
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// Sizes of the bounded tables: (active holds, resolved holds kept, op ids kept, sales kept, transfers kept).
    pub fn table_sizes(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.holds.map.len(),
            self.resolved.len(),
            self.ops.len(),
            self.sales.len(),
            self.transfers.len(),
        )
    }

    /// Decides what `cmd` does at `now`, without changing anything. Holds
    /// whose deadline is at or before `now` count as expired (lazy expiry);
    /// call [`SkuState::expire`] and apply its events so the log shows them.
    pub fn decide(&self, now: Timestamp, cmd: &Command) -> Result<Vec<Event>, Rejection> {
        self.decide_one(now, cmd).map(|e| alloc::vec![e])
    }

    /// [`SkuState::decide`] for the commands that give exactly one event (all
    /// of them today): a dispatch to the concern that owns the command.
    pub fn decide_one(&self, now: Timestamp, cmd: &Command) -> Result<Event, Rejection> {
        // Commands on an existing hold or transfer carry no content to
        // compare: no fingerprint.
        let fp = match cmd {
            Command::Extend { .. }
            | Command::Release { .. }
            | Command::Commit { .. }
            | Command::Keep { .. }
            | Command::Fulfill { .. }
            | Command::TransferCancel { .. } => 0,
            _ => fingerprint(cmd),
        };
        match cmd {
            Command::Receive { op, location, qty } => {
                self.decide_receive(now, fp, op, location, *qty)
            }
            Command::Adjust {
                op,
                location,
                delta,
                reason,
                expected_version,
            } => self.decide_adjust(now, fp, op, location, *delta, *reason, *expected_version),
            Command::Count {
                op,
                location,
                counted,
                counted_at,
            } => self.decide_count(now, fp, op, location, *counted, *counted_at),
            Command::MarkUnavailable {
                op,
                location,
                bucket,
                delta,
            } => self.decide_mark_unavailable(now, fp, op, location, *bucket, *delta),
            Command::SetSafetyStock { op, location, qty } => {
                self.decide_safety_stock(now, fp, op, location, *qty)
            }
            Command::Hold {
                hold,
                location,
                qty,
                channel,
                ttl_ms,
            } => self.decide_hold(now, fp, hold, location, *qty, *channel, *ttl_ms),
            Command::Extend { hold, ttl_ms } => self.decide_extend(now, hold, *ttl_ms),
            Command::Release { hold } => self.decide_release(now, hold),
            Command::Commit { hold } => self.decide_commit(now, hold),
            Command::Keep { hold } => self.decide_keep(now, hold),
            Command::Fulfill { hold } => self.decide_fulfill(now, hold),
            Command::Sell {
                sale,
                terminal,
                device_seq,
                location,
                qty,
                occurred_at,
            } => self.decide_sell(
                now,
                fp,
                sale,
                terminal,
                *device_seq,
                location,
                *qty,
                *occurred_at,
            ),
            Command::ReturnReceive {
                op,
                location,
                qty,
                condition,
                sale,
            } => self.decide_return(now, fp, op, location, *qty, *condition, sale.as_ref()),
            Command::TransferShip {
                transfer,
                from,
                to,
                qty,
            } => self.decide_transfer_ship(now, fp, transfer, from, to, *qty),
            Command::TransferReceive {
                op,
                transfer,
                qty,
                close,
            } => self.decide_transfer_receive(now, fp, op, transfer, *qty, *close),
            Command::TransferCancel { transfer } => self.decide_transfer_cancel(now, transfer),
        }
    }

    /// Applies a fact. Infallible: an event that no longer matches the state
    /// (a duplicate delivered twice) changes nothing.
    pub fn apply(&mut self, event: &Event) {
        self.events_applied += 1;
        let at = event.at();
        if at > self.clock {
            self.clock = at;
            self.prune();
        }
        match event {
            Event::Received { .. }
            | Event::Adjusted { .. }
            | Event::MarkedUnavailable { .. }
            | Event::SafetyStockSet { .. } => self.apply_site_op(event),
            Event::Counted { .. } => self.apply_counted(event),
            Event::Held { .. } => self.apply_held(event),
            Event::Extended {
                hold, expires_at, ..
            } => self.apply_extended(hold, *expires_at),
            Event::Kept { hold, .. } => self.apply_kept(hold),
            Event::Committed { hold, .. } => self.apply_committed(hold),
            Event::Released { hold, at, .. } => self.resolve(hold, Resolution::Released, *at, 0),
            Event::Expired { hold, at, .. } => self.resolve(hold, Resolution::Expired, *at, 0),
            Event::Fulfilled {
                hold, oversold, at, ..
            } => self.resolve(hold, Resolution::Fulfilled, *at, *oversold),
            Event::Sold { .. } => self.apply_sold(event),
            Event::ReturnReceived { .. } => self.apply_return_received(event),
            Event::TransferShipped { .. } => self.apply_transfer_shipped(event),
            Event::TransferReceived { .. } => self.apply_transfer_received(event),
            Event::TransferCancelled { transfer, at } => {
                self.apply_transfer_cancelled(transfer, *at)
            }
        }
    }
}
