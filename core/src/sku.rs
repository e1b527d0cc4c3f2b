//! One SKU's stock across every location: commands, events, rejections, and
//! the state machine that turns the first into the second.
//!
//! Every table here is bounded: active holds, locations, open transfers and the
//! count window have a maximum; op ids, resolved holds and closed transfers are
//! pruned [`RETENTION_MS`] after they were last touched (by event time, never
//! by a clock). Sale ids are kept forever, as the API promises.
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;

use crate::fingerprint::Fnv;
use crate::ids::{HoldId, IdMap, Keyed, LocationId, OpId, SaleId, TerminalId, TransferId};
use crate::stock::{AdjustReason, Channel, Position, Qty, UnavailableBucket, MAX_LINE_QTY};
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};

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
/// How long op ids, resolved holds and closed transfers are remembered (by event time).
pub const RETENTION_MS: i64 = 24 * 3_600_000;
/// How far in the future a device's `occurred_at` / `counted_at` may be (clock skew).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// What became of a returned unit.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Back on the shelf: on_hand.
    Restock,
    /// On hand, but unavailable (damaged).
    Damaged,
    /// Sent back to the vendor: recorded, nothing sellable.
    ReturnToVendor,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Restock => "restock",
            Condition::Damaged => "damaged",
            Condition::ReturnToVendor => "return_to_vendor",
        }
    }
}

/// A request to change one SKU's stock. Every variant carries the client's id
/// (an [`OpId`], a [`HoldId`], a [`SaleId`] or a [`TransferId`]) so that a
/// retry is recognisably the same command.
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
    /// A physical count: `counted` units were there at `counted_at` (the
    /// device's time). on_hand becomes `counted` plus every movement that
    /// happened after `counted_at` and was already applied.
    Count {
        op: OpId,
        location: LocationId,
        counted: Qty,
        counted_at: Timestamp,
    },
    /// Moves units between sellable and an unavailable bucket (on_hand unchanged):
    /// `delta > 0` marks units damaged / in quality control, `delta < 0` clears them.
    MarkUnavailable {
        op: OpId,
        location: LocationId,
        bucket: UnavailableBucket,
        delta: Qty,
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
    /// Moves an active hold's deadline to `now + ttl_ms` (never earlier than it was).
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
    /// Returned units arrive at `location` in `condition`. With `sale`, the
    /// units returned against that POS sale never exceed what it sold.
    ReturnReceive {
        op: OpId,
        location: LocationId,
        qty: Qty,
        condition: Condition,
        sale: Option<SaleId>,
    },
    /// Units leave `from` (on_hand) and become incoming at `to`.
    TransferShip {
        transfer: TransferId,
        from: LocationId,
        to: LocationId,
        qty: Qty,
    },
    /// Units of a shipped transfer arrive. With `close`, whatever is still
    /// missing is recorded as a shortfall and the transfer is done.
    TransferReceive {
        op: OpId,
        transfer: TransferId,
        qty: Qty,
        close: bool,
    },
    /// Cancels a transfer that has not shipped (a later ship is then refused).
    TransferCancel { transfer: TransferId },
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
    Counted {
        op: OpId,
        fp: u64,
        location: LocationId,
        counted: Qty,
        counted_at: Timestamp,
        /// on_hand after the count (counted plus later movements).
        on_hand: Qty,
        /// on_hand after minus on_hand before.
        variance: Qty,
        /// Unavailable buckets after the count (cut down when fewer units were found).
        damaged: Qty,
        quality_control: Qty,
        /// Units moved after the count beyond what was counted.
        oversold: Qty,
        /// Holds at this location that can no longer be met, newest first.
        at_risk: Vec<HoldId>,
        at: Timestamp,
    },
    MarkedUnavailable {
        op: OpId,
        fp: u64,
        location: LocationId,
        bucket: UnavailableBucket,
        delta: Qty,
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
        location: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    Expired {
        hold: HoldId,
        location: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    Committed {
        hold: HoldId,
        location: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    Fulfilled {
        hold: HoldId,
        location: LocationId,
        qty: Qty,
        /// Units shipped beyond what was on hand and sellable (after an
        /// oversell, a count or a shrinkage adjustment took them).
        #[serde(default)]
        oversold: Qty,
        at: Timestamp,
    },
    Sold {
        sale: SaleId,
        fp: u64,
        terminal: TerminalId,
        device_seq: u64,
        location: LocationId,
        qty: Qty,
        /// The device's time: for reports, never for expiry.
        occurred_at: Timestamp,
        /// Units sold beyond what was available at the till.
        oversold: Qty,
        /// Holds at this location that can no longer be met, newest first.
        at_risk: Vec<HoldId>,
        /// The terminal had already uploaded a higher device sequence.
        #[serde(default)]
        late: bool,
        /// The sale happened before the last count at this location, which
        /// already saw the units gone: on_hand does not move again.
        #[serde(default)]
        absorbed_by_count: bool,
        at: Timestamp,
    },
    ReturnReceived {
        op: OpId,
        fp: u64,
        location: LocationId,
        qty: Qty,
        condition: Condition,
        sale: Option<SaleId>,
        at: Timestamp,
    },
    TransferShipped {
        transfer: TransferId,
        fp: u64,
        from: LocationId,
        to: LocationId,
        qty: Qty,
        at: Timestamp,
    },
    TransferReceived {
        op: OpId,
        fp: u64,
        transfer: TransferId,
        location: LocationId,
        qty: Qty,
        /// Units recorded missing when the receipt closed the transfer.
        shortfall: Qty,
        at: Timestamp,
    },
    TransferCancelled {
        transfer: TransferId,
        at: Timestamp,
    },
}

impl Event {
    /// When the event was recorded (server time).
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Received { at, .. }
            | Event::Adjusted { at, .. }
            | Event::Counted { at, .. }
            | Event::MarkedUnavailable { at, .. }
            | Event::SafetyStockSet { at, .. }
            | Event::Held { at, .. }
            | Event::Extended { at, .. }
            | Event::Released { at, .. }
            | Event::Expired { at, .. }
            | Event::Committed { at, .. }
            | Event::Fulfilled { at, .. }
            | Event::Sold { at, .. }
            | Event::ReturnReceived { at, .. }
            | Event::TransferShipped { at, .. }
            | Event::TransferReceived { at, .. }
            | Event::TransferCancelled { at, .. } => *at,
        }
    }

    /// A short snake_case name, used by the ledger.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Received { .. } => "received",
            Event::Adjusted { .. } => "adjusted",
            Event::Counted { .. } => "counted",
            Event::MarkedUnavailable { .. } => "marked_unavailable",
            Event::SafetyStockSet { .. } => "safety_stock_set",
            Event::Held { .. } => "held",
            Event::Extended { .. } => "extended",
            Event::Released { .. } => "released",
            Event::Expired { .. } => "expired",
            Event::Committed { .. } => "committed",
            Event::Fulfilled { .. } => "fulfilled",
            Event::Sold { .. } => "sold",
            Event::ReturnReceived { .. } => "return_received",
            Event::TransferShipped { .. } => "transfer_shipped",
            Event::TransferReceived { .. } => "transfer_received",
            Event::TransferCancelled { .. } => "transfer_cancelled",
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
    /// A transfer from a location to itself.
    SameLocation,
    /// A device time too far in the future.
    TimeInFuture { at: Timestamp },
    /// A retried command: it was already applied, with the same content.
    Exists,
    /// The id was already used for a command with other content.
    ExistsWithDifferentBody,
    /// No hold with this id was ever seen (or it was forgotten after the retention window).
    HoldNotFound,
    /// The hold already resolved; it does nothing a second time.
    HoldResolved { how: Resolution },
    /// The hold is in the wrong state for this command (e.g. fulfil before commit, extend a commitment).
    HoldNotActive,
    /// No transfer with this id shipped.
    TransferNotFound,
    /// The transfer was cancelled.
    TransferCancelled,
    /// The transfer shipped: it can no longer be cancelled.
    TransferAlreadyShipped,
    /// The transfer was fully received or closed.
    TransferClosed,
    /// A return names a sale this SKU never saw.
    SaleNotFound,
    /// `expected_version` is stale.
    VersionConflict { expected: u64, actual: u64 },
    /// A count older than the last count at this location.
    CountOutOfOrder { last_counted_at: Timestamp },
    /// A count older than the movements still remembered: its figure cannot be brought up to date.
    CountOutsideWindow { horizon: Timestamp },
    /// Too many locations for one SKU.
    TooManyLocations,
    /// Too many active holds on one SKU.
    TooManyHolds,
    /// Too many transfers in flight for one SKU.
    TooManyTransfers,
    /// Not enough available for the channel.
    InsufficientStock { requested: Qty, available: Qty },
    /// The change would take on_hand below the units that are unavailable (or below zero).
    OnHandBelowUnavailable { on_hand: Qty, unavailable: Qty },
    /// An unavailable bucket would go below zero.
    UnavailableBelowZero { bucket: UnavailableBucket, qty: Qty },
    /// A transfer receipt of more than is still in transit.
    OverReceived { remaining: Qty },
    /// A return of more units than the sale sold.
    ReturnExceedsSold { sold: Qty, returned: Qty },
    /// on_hand would pass [`MAX_ON_HAND`].
    OnHandLimit,
}

impl Rejection {
    /// The API's error `code` for this rejection (`exists` is not an error:
    /// the shell answers with the first response again).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Exists => "exists",
            Rejection::ExistsWithDifferentBody => "idempotency_key_reused",
            Rejection::HoldNotFound | Rejection::TransferNotFound | Rejection::SaleNotFound => {
                "not_found"
            }
            Rejection::HoldResolved { .. }
            | Rejection::HoldNotActive
            | Rejection::TransferCancelled
            | Rejection::TransferAlreadyShipped
            | Rejection::TransferClosed => "invalid_transition",
            Rejection::VersionConflict { .. } => "version_conflict",
            Rejection::InsufficientStock { .. } => "insufficient_stock",
            Rejection::TooManyLocations | Rejection::TooManyHolds | Rejection::TooManyTransfers => {
                "overloaded"
            }
            _ => "invalid_request",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::QtyOutOfRange { qty } => {
                write!(
                    f,
                    "quantity {qty} is out of range (lines take 0..={MAX_LINE_QTY})"
                )
            }
            Rejection::TtlOutOfRange { ttl_ms } => write!(
                f,
                "ttl of {} s is outside {}..={} s",
                ttl_ms / 1000,
                MIN_TTL_MS / 1000,
                MAX_TTL_MS / 1000
            ),
            Rejection::SameLocation => f.write_str("a transfer needs two different locations"),
            Rejection::TimeInFuture { at } => write!(f, "time {at:?} is in the future"),
            Rejection::Exists => f.write_str("already applied"),
            Rejection::ExistsWithDifferentBody => {
                f.write_str("this id was already used with different content")
            }
            Rejection::HoldNotFound => f.write_str("no such hold"),
            Rejection::HoldResolved { how } => write!(f, "the hold was already {how:?}"),
            Rejection::HoldNotActive => f.write_str("the hold is not in a state that allows this"),
            Rejection::TransferNotFound => f.write_str("no such transfer"),
            Rejection::TransferCancelled => f.write_str("the transfer was cancelled"),
            Rejection::TransferAlreadyShipped => f.write_str("the transfer already shipped"),
            Rejection::TransferClosed => f.write_str("the transfer is closed"),
            Rejection::SaleNotFound => f.write_str("no such sale of this SKU"),
            Rejection::VersionConflict { expected, actual } => {
                write!(
                    f,
                    "expected version {expected}, the position is at {actual}"
                )
            }
            Rejection::CountOutOfOrder { last_counted_at } => write!(
                f,
                "a later count ({last_counted_at:?}) was already recorded"
            ),
            Rejection::CountOutsideWindow { horizon } => write!(
                f,
                "the count is older than the remembered movements (from {horizon:?})"
            ),
            Rejection::TooManyLocations => f.write_str("too many locations for this SKU"),
            Rejection::TooManyHolds => f.write_str("too many active holds on this SKU"),
            Rejection::TooManyTransfers => f.write_str("too many transfers in flight"),
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
            Rejection::UnavailableBelowZero { bucket, qty } => {
                write!(f, "{} would be {qty}", bucket.as_str())
            }
            Rejection::OverReceived { remaining } => {
                write!(f, "only {remaining} units are still in transit")
            }
            Rejection::ReturnExceedsSold { sold, returned } => write!(
                f,
                "the sale sold {sold} units and {returned} were already returned"
            ),
            Rejection::OnHandLimit => write!(f, "on_hand would pass {MAX_ON_HAND}"),
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
    /// Order of creation, for at-risk reporting (newest first) and expiry order.
    pub seq: u64,
}

impl Hold {
    fn deadline(&self) -> Option<Timestamp> {
        match self.state {
            HoldState::Held { expires_at } => expires_at,
            HoldState::Committed => None,
        }
    }
}

/// A resolved hold, remembered for [`RETENTION_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub how: Resolution,
    pub fp: u64,
    pub at: Timestamp,
}

/// Where a transfer of this SKU stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Shipped, units in transit.
    InTransit,
    /// Every unit received or the rest recorded short.
    Closed,
    /// Cancelled before it shipped.
    Cancelled,
}

/// One transfer of this SKU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    pub fp: u64,
    pub from: Option<LocationId>,
    pub to: Option<LocationId>,
    pub shipped: Qty,
    pub received: Qty,
    pub shortfall: Qty,
    pub status: TransferStatus,
    /// Last change, for pruning once closed or cancelled.
    pub at: Timestamp,
}

/// A POS sale, remembered forever (sale ids are idempotent forever).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaleRecord {
    pub fp: u64,
    pub qty: Qty,
    pub returned: Qty,
}

/// Units that moved in or out of on_hand at one location, by cause. on_hand
/// always equals their signed sum (conservation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flows {
    pub received: Qty,
    pub adjusted: Qty,
    pub counted: Qty,
    pub sold: Qty,
    pub fulfilled: Qty,
    pub returned: Qty,
    pub transferred_out: Qty,
    pub transferred_in: Qty,
    pub shipped_to: Qty,
    pub shortfall: Qty,
}

impl Flows {
    pub fn on_hand(&self) -> Qty {
        self.received + self.adjusted + self.counted - self.sold - self.fulfilled + self.returned
            - self.transferred_out
            + self.transferred_in
    }
    pub fn incoming(&self) -> Qty {
        self.shipped_to - self.transferred_in - self.shortfall
    }
}

/// One location's position plus what the core needs to keep it right.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Site {
    pos: Position,
    flows: Flows,
    /// Recent on_hand movements `(when, delta)`, oldest first, at most
    /// [`MAX_MOVEMENT_WINDOW`]: what a count adds back to its figure.
    moves: VecDeque<(Timestamp, Qty)>,
    /// Latest time of a movement dropped from `moves`: counts before it are refused.
    horizon: Option<Timestamp>,
    last_counted_at: Option<Timestamp>,
}

impl Site {
    fn record_move(&mut self, when: Timestamp, delta: Qty) {
        if self.moves.len() >= MAX_MOVEMENT_WINDOW {
            if let Some((t, _)) = self.moves.pop_front() {
                self.horizon = Some(self.horizon.map_or(t, |h| h.max(t)));
            }
        }
        self.moves.push_back((when, delta));
    }
}

/// The alarm table: `(deadline, seq, hash of the hold id)` in (deadline, seq) order, with
/// lazy deletion. A hold that resolves, commits or is extended leaves its old
/// entry behind, stale; an entry is live while its hold is still held until
/// exactly that deadline with that seq ([`entry_live`]). The front entry is
/// always live (stale ones are popped when they reach it), so the next
/// deadline is the front's, and the table is compacted when stale entries
/// outnumber the holds. Holds are mostly created in deadline order (`now` +
/// a TTL), so an insert is usually a push at the back.
///
/// Derived from `holds`: two states with the same holds have the same live
/// entries, so equality looks no further (the stale ones are history).
#[derive(Clone, Default)]
struct Deadlines(VecDeque<(Timestamp, u64, u64)>);

impl PartialEq for Deadlines {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Deadlines {}

impl fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deadlines({} entries)", self.0.len())
    }
}

/// The hold a deadline entry `(deadline, seq, hash of the hold id)` stands
/// for, if it is still held until exactly then (seqs are unique, so at most
/// one hold matches).
#[inline]
fn entry_hold<'a>(
    holds: &'a IdMap<HoldId, Hold>,
    &(t, seq, hash): &(Timestamp, u64, u64),
) -> Option<(&'a HoldId, &'a Hold)> {
    holds.find_by_hash(hash, |h| h.seq == seq && h.deadline() == Some(t))
}

/// Whether a deadline entry still stands for its hold.
#[inline]
fn entry_live(holds: &IdMap<HoldId, Hold>, e: &(Timestamp, u64, u64)) -> bool {
    entry_hold(holds, e).is_some()
}

/// One SKU's stock across every location. Rebuilt by replaying its events, or
/// from a serde snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "SkuStateData")]
pub struct SkuState {
    /// By location id; [`SkuState::sites_sorted`] iterates them in id order.
    #[serde(with = "by_location")]
    sites: IdMap<LocationId, Site>,
    holds: IdMap<HoldId, Hold>,
    /// Active holds with a deadline, by (deadline, seq): the alarm table.
    /// Derived from `holds`, rebuilt when a snapshot is loaded.
    #[serde(skip)]
    deadlines: Deadlines,
    resolved: IdMap<HoldId, Resolved>,
    /// `(when, hash of the hold id)` per resolved hold, oldest first: what
    /// pruning walks. The entry it names is the resolved hold with that id
    /// hash resolved at that time (serialised as `[when, id]`, as it always was).
    resolved_log: VecDeque<(Timestamp, u64)>,
    ops: IdMap<OpId, (u64, Timestamp)>,
    /// `(when, hash of the op id)` per op id kept, oldest first (as `resolved_log`).
    ops_log: VecDeque<(Timestamp, u64)>,
    sales: IdMap<SaleId, SaleRecord>,
    /// Highest device sequence seen per terminal.
    terminals: IdMap<TerminalId, u64>,
    transfers: IdMap<TransferId, Transfer>,
    transfers_log: VecDeque<(Timestamp, TransferId)>,
    open_transfers: usize,
    hold_seq: u64,
    events_applied: u64,
    /// The latest event time seen: the clock that prunes.
    clock: Timestamp,
}

/// The sites serialised as a map from location id to site, in id order.
mod by_location {
    use super::{BTreeMap, IdMap, LocationId, Site};

    pub fn serialize<S: serde::Serializer>(
        m: &IdMap<LocationId, Site>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let sorted: BTreeMap<&LocationId, &Site> = m.iter_unordered().collect();
        s.collect_map(sorted)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<IdMap<LocationId, Site>, D::Error> {
        let sorted = <BTreeMap<LocationId, Site> as serde::Deserialize>::deserialize(d)?;
        let mut m = IdMap::default();
        for (k, v) in sorted {
            m.insert(k, v);
        }
        Ok(m)
    }
}

/// A retention log serialised as `[when, id]` pairs: each `(when, id hash)`
/// names the entry of `table` with that id hash and that time (at most one:
/// two ids of one hash touched in the same millisecond would be one 64-bit
/// hash collision; they would be pruned together all the same).
struct LogOut<'a, K: Keyed, V> {
    log: &'a VecDeque<(Timestamp, u64)>,
    table: &'a IdMap<K, V>,
    at: fn(&V) -> Timestamp,
}

impl<K: Keyed + serde::Serialize, V> serde::Serialize for LogOut<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.log.iter().filter_map(|&(t, h)| {
            self.table
                .find_by_hash(h, |v| (self.at)(v) == t)
                .map(|(k, _)| (t, k))
        }))
    }
}

fn sites_out<S: serde::Serializer>(m: &&IdMap<LocationId, Site>, s: S) -> Result<S::Ok, S::Error> {
    by_location::serialize(m, s)
}

/// [`SkuState`] as serialised: the same fields in the same order as
/// [`SkuStateData`], without the derived indexes.
#[derive(serde::Serialize)]
struct SkuStateOut<'a> {
    #[serde(serialize_with = "sites_out")]
    sites: &'a IdMap<LocationId, Site>,
    holds: &'a IdMap<HoldId, Hold>,
    resolved: &'a IdMap<HoldId, Resolved>,
    resolved_log: LogOut<'a, HoldId, Resolved>,
    ops: &'a IdMap<OpId, (u64, Timestamp)>,
    ops_log: LogOut<'a, OpId, (u64, Timestamp)>,
    sales: &'a IdMap<SaleId, SaleRecord>,
    terminals: &'a IdMap<TerminalId, u64>,
    transfers: &'a IdMap<TransferId, Transfer>,
    transfers_log: &'a VecDeque<(Timestamp, TransferId)>,
    open_transfers: usize,
    hold_seq: u64,
    events_applied: u64,
    clock: Timestamp,
}

impl serde::Serialize for SkuState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SkuStateOut {
            sites: &self.sites,
            holds: &self.holds,
            resolved: &self.resolved,
            resolved_log: LogOut {
                log: &self.resolved_log,
                table: &self.resolved,
                at: |r| r.at,
            },
            ops: &self.ops,
            ops_log: LogOut {
                log: &self.ops_log,
                table: &self.ops,
                at: |o| o.1,
            },
            sales: &self.sales,
            terminals: &self.terminals,
            transfers: &self.transfers,
            transfers_log: &self.transfers_log,
            open_transfers: self.open_transfers,
            hold_seq: self.hold_seq,
            events_applied: self.events_applied,
            clock: self.clock,
        }
        .serialize(s)
    }
}

/// [`SkuState`] as stored, without its derived indexes.
#[derive(serde::Deserialize)]
struct SkuStateData {
    #[serde(with = "by_location")]
    sites: IdMap<LocationId, Site>,
    holds: IdMap<HoldId, Hold>,
    resolved: IdMap<HoldId, Resolved>,
    resolved_log: VecDeque<(Timestamp, HoldId)>,
    ops: IdMap<OpId, (u64, Timestamp)>,
    ops_log: VecDeque<(Timestamp, OpId)>,
    sales: IdMap<SaleId, SaleRecord>,
    terminals: IdMap<TerminalId, u64>,
    transfers: IdMap<TransferId, Transfer>,
    transfers_log: VecDeque<(Timestamp, TransferId)>,
    open_transfers: usize,
    hold_seq: u64,
    events_applied: u64,
    clock: Timestamp,
}

impl From<SkuStateData> for SkuState {
    fn from(d: SkuStateData) -> Self {
        let mut deadlines: Vec<(Timestamp, u64, u64)> = d
            .holds
            .iter_unordered()
            .filter_map(|(id, h)| h.deadline().map(|t| (t, h.seq, id.key_hash())))
            .collect();
        deadlines.sort_unstable_by_key(|(t, seq, _)| (*t, *seq));
        let deadlines = Deadlines(deadlines.into());
        SkuState {
            sites: d.sites,
            holds: d.holds,
            deadlines,
            resolved: d.resolved,
            resolved_log: d
                .resolved_log
                .iter()
                .map(|(t, id)| (*t, id.key_hash()))
                .collect(),
            ops: d.ops,
            ops_log: d
                .ops_log
                .iter()
                .map(|(t, op)| (*t, op.key_hash()))
                .collect(),
            sales: d.sales,
            terminals: d.terminals,
            transfers: d.transfers,
            transfers_log: d.transfers_log,
            open_transfers: d.open_transfers,
            hold_seq: d.hold_seq,
            events_applied: d.events_applied,
            clock: d.clock,
        }
    }
}

fn check_qty(qty: Qty) -> Result<(), Rejection> {
    if (0..=MAX_LINE_QTY).contains(&qty) {
        Ok(())
    } else {
        Err(Rejection::QtyOutOfRange { qty })
    }
}

fn check_positive_qty(qty: Qty) -> Result<(), Rejection> {
    if (1..=MAX_LINE_QTY).contains(&qty) {
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

fn check_device_time(now: Timestamp, at: Timestamp) -> Result<(), Rejection> {
    if at > now.plus_ms(MAX_CLOCK_SKEW_MS) {
        Err(Rejection::TimeInFuture { at })
    } else {
        Ok(())
    }
}

fn known(old: u64, fp: u64) -> Rejection {
    if old == fp {
        Rejection::Exists
    } else {
        Rejection::ExistsWithDifferentBody
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
        Command::Count {
            location,
            counted,
            counted_at,
            ..
        } => f
            .u64(10)
            .str(location.as_str())
            .i64(*counted)
            .i64(counted_at.as_ms()),
        Command::MarkUnavailable {
            location,
            bucket,
            delta,
            ..
        } => f
            .u64(11)
            .str(location.as_str())
            .str(bucket.as_str())
            .i64(*delta),
        Command::ReturnReceive {
            location,
            qty,
            condition,
            sale,
            ..
        } => f
            .u64(12)
            .str(location.as_str())
            .i64(*qty)
            .str(condition.as_str())
            .str(sale.as_ref().map_or("", |s| s.as_str())),
        Command::TransferShip { from, to, qty, .. } => {
            f.u64(13).str(from.as_str()).str(to.as_str()).i64(*qty)
        }
        Command::TransferReceive {
            transfer,
            qty,
            close,
            ..
        } => f
            .u64(14)
            .str(transfer.as_str())
            .i64(*qty)
            .u64(u64::from(*close)),
        Command::TransferCancel { .. } => f.u64(15),
    }
    .finish()
}

impl SkuState {
    pub fn new() -> Self {
        Self::default()
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

    pub fn hold(&self, hold: &HoldId) -> Option<&Hold> {
        self.holds.get(hold)
    }

    pub fn resolution(&self, hold: &HoldId) -> Option<Resolution> {
        self.resolved.get(hold).map(|r| r.how)
    }

    pub fn active_holds(&self) -> impl Iterator<Item = (&HoldId, &Hold)> {
        self.holds.iter()
    }

    pub fn transfer(&self, transfer: &TransferId) -> Option<&Transfer> {
        self.transfers.get(transfer)
    }

    pub fn sale(&self, sale: &SaleId) -> Option<&SaleRecord> {
        self.sales.get(sale)
    }

    /// Highest device sequence applied for `terminal`.
    pub fn terminal_seq(&self, terminal: &TerminalId) -> Option<u64> {
        self.terminals.get(terminal).copied()
    }

    /// How many events built this state.
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }

    /// Sizes of the bounded tables: (active holds, resolved holds kept, op ids kept, sales, transfers kept).
    pub fn table_sizes(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.holds.len(),
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

    /// [`SkuState::decide`] for the commands that give exactly one event (all of them today).
    pub fn decide_one(&self, now: Timestamp, cmd: &Command) -> Result<Event, Rejection> {
        // Commands on an existing hold carry no content to compare: no fingerprint.
        let fp = match cmd {
            Command::Extend { .. }
            | Command::Release { .. }
            | Command::Commit { .. }
            | Command::Fulfill { .. }
            | Command::TransferCancel { .. } => 0,
            _ => fingerprint(cmd),
        };
        match cmd {
            Command::Receive { op, location, qty } => {
                check_qty(*qty)?;
                self.check_op(op, fp)?;
                self.check_location(location)?;
                self.check_on_hand_limit(location, *qty)?;
                Ok(Event::Received {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    at: now,
                })
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
                self.check_location(location)?;
                let on_hand = p.on_hand + delta;
                if *delta < 0 && on_hand < p.unavailable() {
                    return Err(Rejection::OnHandBelowUnavailable {
                        on_hand,
                        unavailable: p.unavailable(),
                    });
                }
                self.check_on_hand_limit(location, *delta)?;
                Ok(Event::Adjusted {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    delta: *delta,
                    reason: *reason,
                    at: now,
                })
            }
            Command::Count {
                op,
                location,
                counted,
                counted_at,
            } => {
                if !(0..=MAX_COUNTED).contains(counted) {
                    return Err(Rejection::QtyOutOfRange { qty: *counted });
                }
                check_device_time(now, *counted_at)?;
                self.check_op(op, fp)?;
                self.check_location(location)?;
                let site = self.sites.get(location);
                if let Some(last) = site.and_then(|s| s.last_counted_at) {
                    if *counted_at < last {
                        return Err(Rejection::CountOutOfOrder {
                            last_counted_at: last,
                        });
                    }
                }
                if let Some(h) = site.and_then(|s| s.horizon) {
                    if *counted_at < h {
                        return Err(Rejection::CountOutsideWindow { horizon: h });
                    }
                }
                let after: Qty = site.map_or(0, |s| {
                    s.moves
                        .iter()
                        .filter(|(t, _)| t > counted_at)
                        .map(|(_, d)| d)
                        .sum()
                });
                let p = self.position(location);
                let on_hand = counted + after;
                let oversold = (-on_hand).max(0);
                // Fewer units than were marked unavailable: the unavailable
                // buckets cannot hold more than there is.
                let room = on_hand.max(0);
                let damaged = p.damaged.min(room);
                let quality_control = p.quality_control.min(room - damaged);
                let available = on_hand - p.reserved - p.committed - damaged - quality_control
                    + self.lapsed_at(now, location);
                let at_risk = if available < 0 {
                    self.at_risk(now, location, -available)
                } else {
                    Vec::new()
                };
                Ok(Event::Counted {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    counted: *counted,
                    counted_at: *counted_at,
                    on_hand,
                    variance: on_hand - p.on_hand,
                    damaged,
                    quality_control,
                    oversold,
                    at_risk,
                    at: now,
                })
            }
            Command::MarkUnavailable {
                op,
                location,
                bucket,
                delta,
            } => {
                if delta.unsigned_abs() > MAX_LINE_QTY as u64 {
                    return Err(Rejection::QtyOutOfRange { qty: *delta });
                }
                self.check_op(op, fp)?;
                self.check_location(location)?;
                let p = self.position(location);
                let qty = p.bucket(*bucket) + delta;
                if qty < 0 {
                    return Err(Rejection::UnavailableBelowZero {
                        bucket: *bucket,
                        qty,
                    });
                }
                if p.unavailable() + delta > p.on_hand {
                    return Err(Rejection::OnHandBelowUnavailable {
                        on_hand: p.on_hand,
                        unavailable: p.unavailable() + delta,
                    });
                }
                // Units held or committed cannot be marked: release them first.
                let available = self.available_at(now, location, Channel::Pos);
                if *delta > 0 && *delta > available {
                    return Err(Rejection::InsufficientStock {
                        requested: *delta,
                        available: available.max(0),
                    });
                }
                Ok(Event::MarkedUnavailable {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    bucket: *bucket,
                    delta: *delta,
                    at: now,
                })
            }
            Command::SetSafetyStock { op, location, qty } => {
                check_qty(*qty)?;
                self.check_op(op, fp)?;
                self.check_location(location)?;
                Ok(Event::SafetyStockSet {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    at: now,
                })
            }
            Command::Hold {
                hold,
                location,
                qty,
                channel,
                ttl_ms,
            } => {
                check_positive_qty(*qty)?;
                if let Some(ttl) = ttl_ms {
                    check_ttl(*ttl)?;
                }
                if let Some(h) = self.holds.get(hold) {
                    return Err(known(h.fp, fp));
                }
                if let Some(r) = self.resolved.get(hold) {
                    return Err(known(r.fp, fp));
                }
                self.check_location(location)?;
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
                Ok(Event::Held {
                    hold: hold.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    channel: *channel,
                    expires_at: ttl_ms.map(|t| now.plus_ms(t)),
                    at: now,
                })
            }
            Command::Extend { hold, ttl_ms } => {
                check_ttl(*ttl_ms)?;
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Held {
                        expires_at: Some(old),
                    } => Ok(Event::Extended {
                        hold: hold.clone(),
                        expires_at: old.max(now.plus_ms(*ttl_ms)),
                        at: now,
                    }),
                    _ => Err(Rejection::HoldNotActive),
                }
            }
            Command::Release { hold } => {
                let h = self.live_hold(now, hold)?;
                Ok(Event::Released {
                    hold: hold.clone(),
                    location: h.location.clone(),
                    qty: h.qty,
                    at: now,
                })
            }
            Command::Commit { hold } => {
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Held { .. } => Ok(Event::Committed {
                        hold: hold.clone(),
                        location: h.location.clone(),
                        qty: h.qty,
                        at: now,
                    }),
                    HoldState::Committed => Err(Rejection::Exists),
                }
            }
            Command::Fulfill { hold } => {
                let h = self.live_hold(now, hold)?;
                match h.state {
                    HoldState::Committed => {
                        let p = self.position(&h.location);
                        let there = (p.on_hand - p.unavailable()).max(0);
                        Ok(Event::Fulfilled {
                            hold: hold.clone(),
                            location: h.location.clone(),
                            qty: h.qty,
                            oversold: (h.qty - there).clamp(0, h.qty),
                            at: now,
                        })
                    }
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
                check_device_time(now, *occurred_at)?;
                if let Some(old) = self.sales.get(sale) {
                    return Err(known(old.fp, fp));
                }
                self.check_location(location)?;
                let site = self.sites.get(location);
                let absorbed_by_count = site
                    .and_then(|s| s.last_counted_at)
                    .is_some_and(|c| *occurred_at <= c);
                let late = self
                    .terminals
                    .get(terminal)
                    .is_some_and(|seen| *device_seq < *seen);
                let (oversold, at_risk) = if absorbed_by_count {
                    (0, Vec::new())
                } else {
                    // `site` is the position's site: no second lookup.
                    let mut p = site.map(|s| s.pos).unwrap_or_default();
                    p.reserved -= self.lapsed_at(now, location);
                    let available = p.available(Channel::Pos);
                    let after = available - qty;
                    if after < 0 {
                        ((-after).min(*qty), self.at_risk(now, location, -after))
                    } else {
                        (0, Vec::new())
                    }
                };
                Ok(Event::Sold {
                    sale: sale.clone(),
                    fp,
                    terminal: terminal.clone(),
                    device_seq: *device_seq,
                    location: location.clone(),
                    qty: *qty,
                    occurred_at: *occurred_at,
                    oversold,
                    at_risk,
                    late,
                    absorbed_by_count,
                    at: now,
                })
            }
            Command::ReturnReceive {
                op,
                location,
                qty,
                condition,
                sale,
            } => {
                check_positive_qty(*qty)?;
                self.check_op(op, fp)?;
                if let Some(sale) = sale {
                    let Some(s) = self.sales.get(sale) else {
                        return Err(Rejection::SaleNotFound);
                    };
                    if s.returned + qty > s.qty {
                        return Err(Rejection::ReturnExceedsSold {
                            sold: s.qty,
                            returned: s.returned,
                        });
                    }
                }
                self.check_location(location)?;
                if *condition != Condition::ReturnToVendor {
                    self.check_on_hand_limit(location, *qty)?;
                }
                Ok(Event::ReturnReceived {
                    op: op.clone(),
                    fp,
                    location: location.clone(),
                    qty: *qty,
                    condition: *condition,
                    sale: sale.clone(),
                    at: now,
                })
            }
            Command::TransferShip {
                transfer,
                from,
                to,
                qty,
            } => {
                check_positive_qty(*qty)?;
                if from == to {
                    return Err(Rejection::SameLocation);
                }
                if let Some(t) = self.transfers.get(transfer) {
                    return Err(match t.status {
                        TransferStatus::Cancelled => Rejection::TransferCancelled,
                        _ => known(t.fp, fp),
                    });
                }
                let new_sites = usize::from(!self.sites.contains_key(from))
                    + usize::from(!self.sites.contains_key(to));
                if self.sites.len() + new_sites > MAX_LOCATIONS {
                    return Err(Rejection::TooManyLocations);
                }
                if self.open_transfers >= MAX_OPEN_TRANSFERS {
                    return Err(Rejection::TooManyTransfers);
                }
                let available = self.available_at(now, from, Channel::Pos);
                if *qty > available {
                    return Err(Rejection::InsufficientStock {
                        requested: *qty,
                        available: available.max(0),
                    });
                }
                Ok(Event::TransferShipped {
                    transfer: transfer.clone(),
                    fp,
                    from: from.clone(),
                    to: to.clone(),
                    qty: *qty,
                    at: now,
                })
            }
            Command::TransferReceive {
                op,
                transfer,
                qty,
                close,
            } => {
                check_qty(*qty)?;
                self.check_op(op, fp)?;
                let Some(t) = self.transfers.get(transfer) else {
                    return Err(Rejection::TransferNotFound);
                };
                let to = match (t.status, &t.to) {
                    (TransferStatus::Cancelled, _) => return Err(Rejection::TransferCancelled),
                    (TransferStatus::Closed, _) => return Err(Rejection::TransferClosed),
                    (TransferStatus::InTransit, Some(to)) => to,
                    (TransferStatus::InTransit, None) => return Err(Rejection::TransferNotFound),
                };
                let remaining = t.shipped - t.received - t.shortfall;
                if *qty > remaining {
                    return Err(Rejection::OverReceived { remaining });
                }
                if *qty == 0 && !close {
                    return Err(Rejection::QtyOutOfRange { qty: 0 });
                }
                self.check_on_hand_limit(to, *qty)?;
                Ok(Event::TransferReceived {
                    op: op.clone(),
                    fp,
                    transfer: transfer.clone(),
                    location: to.clone(),
                    qty: *qty,
                    shortfall: if *close { remaining - qty } else { 0 },
                    at: now,
                })
            }
            Command::TransferCancel { transfer } => match self.transfers.get(transfer) {
                Some(t) => Err(match t.status {
                    TransferStatus::Cancelled => Rejection::Exists,
                    _ => Rejection::TransferAlreadyShipped,
                }),
                None => Ok(Event::TransferCancelled {
                    transfer: transfer.clone(),
                    at: now,
                }),
            },
        }
    }

    fn check_op(&self, op: &OpId, fp: u64) -> Result<(), Rejection> {
        match self.ops.get(op) {
            None => Ok(()),
            Some((old, _)) => Err(known(*old, fp)),
        }
    }

    /// A new location is refused once the SKU has [`MAX_LOCATIONS`].
    fn check_location(&self, location: &LocationId) -> Result<(), Rejection> {
        if self.sites.len() >= MAX_LOCATIONS && !self.sites.contains_key(location) {
            Err(Rejection::TooManyLocations)
        } else {
            Ok(())
        }
    }

    fn check_on_hand_limit(&self, location: &LocationId, delta: Qty) -> Result<(), Rejection> {
        if self.position(location).on_hand + delta > MAX_ON_HAND {
            Err(Rejection::OnHandLimit)
        } else {
            Ok(())
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
            Some(r) => Err(Rejection::HoldResolved { how: r.how }),
            None => Err(Rejection::HoldNotFound),
        }
    }

    /// Holds past their deadline at `now` (not yet expired in the log), in expiry order.
    fn lapsed(&self, now: Timestamp) -> impl Iterator<Item = (&HoldId, &Hold)> {
        let holds = &self.holds;
        self.deadlines
            .0
            .iter()
            .take_while(move |(t, _, _)| *t <= now)
            .filter_map(move |e| entry_hold(holds, e))
    }

    /// Units held at `location` by holds that are past their deadline at `now`
    /// but not yet expired in the log: they count as available.
    fn lapsed_at(&self, now: Timestamp, location: &LocationId) -> Qty {
        // Fast path: nothing has lapsed (the driving loop expires first).
        if self.next_deadline().is_none_or(|d| d > now) {
            return 0;
        }
        self.lapsed(now)
            .filter(|(_, h)| &h.location == location)
            .map(|(_, h)| h.qty)
            .sum()
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

    /// Holds at `location` that `deficit` units of oversell leave unmet, newest first.
    fn at_risk(&self, now: Timestamp, location: &LocationId, deficit: Qty) -> Vec<HoldId> {
        let mut live: Vec<(&HoldId, &Hold)> = self
            .holds
            .iter_unordered()
            .filter(|(_, h)| &h.location == location)
            .filter(|(_, h)| h.deadline().is_none_or(|t| t > now))
            .collect();
        live.sort_by_key(|(_, h)| core::cmp::Reverse(h.seq));
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

    /// The holds whose deadline is at or before `now`, as `Expired` events, in
    /// deadline order. Idempotent: applying them twice changes nothing more.
    pub fn expire(&self, now: Timestamp) -> Vec<Event> {
        self.lapsed(now)
            .map(|(id, h)| Event::Expired {
                hold: id.clone(),
                location: h.location.clone(),
                qty: h.qty,
                at: now,
            })
            .collect()
    }

    /// The earliest deadline of an active hold: what the alarm is set to.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.0.front().map(|(t, _, _)| *t)
    }

    /// Adds a hold's deadline to the alarm table (usually at the back).
    fn push_deadline(&mut self, t: Timestamp, seq: u64, id: &HoldId) {
        let dl = &mut self.deadlines.0;
        if dl.back().is_none_or(|(bt, bs, _)| (*bt, *bs) <= (t, seq)) {
            dl.push_back((t, seq, id.key_hash()));
        } else {
            let i = dl.partition_point(|(bt, bs, _)| (*bt, *bs) < (t, seq));
            dl.insert(i, (t, seq, id.key_hash()));
        }
        // Compaction: stale entries never outnumber the holds by much.
        if dl.len() > 2 * self.holds.len() + 64 {
            let holds = &self.holds;
            dl.retain(|e| entry_live(holds, e));
        }
    }

    /// The entry `(t, seq)` just went stale (its hold resolved, committed or
    /// moved its deadline): if it was the front, pops stale entries until the
    /// front is live again.
    fn drop_deadline(&mut self, t: Timestamp, seq: u64) {
        let dl = &mut self.deadlines.0;
        if dl.front().is_some_and(|(ft, fs, _)| (*ft, *fs) == (t, seq)) {
            dl.pop_front();
            while let Some(e) = dl.front() {
                if entry_live(&self.holds, e) {
                    break;
                }
                dl.pop_front();
            }
        }
    }

    /// The sites in location id order.
    fn sites_sorted(&self) -> Vec<(&LocationId, &Site)> {
        let mut all: Vec<(&LocationId, &Site)> = self.sites.iter_unordered().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    fn site_mut(&mut self, location: &LocationId) -> &mut Site {
        // A new location clones the id (a reference count, not a copy).
        self.sites.get_or_insert_with(location, Site::default)
    }

    /// Resolves an active hold (`oversold`: units a fulfilment shipped beyond what was there).
    fn resolve(&mut self, hold: &HoldId, how: Resolution, at: Timestamp, oversold: Qty) {
        if let Some((id, h)) = self.holds.remove_entry(hold) {
            if let Some(t) = h.deadline() {
                self.drop_deadline(t, h.seq);
            }
            let site = self.site_mut(&h.location);
            site.pos.oversold += oversold;
            let p = &mut site.pos;
            match h.state {
                HoldState::Held { .. } => p.reserved -= h.qty,
                HoldState::Committed => {
                    p.committed -= h.qty;
                    if how == Resolution::Fulfilled {
                        p.on_hand -= h.qty;
                        site.flows.fulfilled += h.qty;
                        site.record_move(at, -h.qty);
                    }
                }
            }
            site.pos.version += 1;
            self.resolved_log.push_back((at, id.key_hash()));
            self.resolved.insert(id, Resolved { how, fp: h.fp, at });
        }
    }

    fn remember_op(&mut self, op: &OpId, fp: u64, at: Timestamp) -> bool {
        if !self.ops.insert_if_absent(op, || (fp, at)) {
            return false;
        }
        self.ops_log.push_back((at, op.key_hash()));
        true
    }

    /// Forgets op ids, resolved holds and closed transfers older than the retention window.
    fn prune(&mut self) {
        let horizon = Timestamp(self.clock.0.saturating_sub(RETENTION_MS));
        while let Some((t, _)) = self.ops_log.front() {
            if *t >= horizon {
                break;
            }
            if let Some((t, h)) = self.ops_log.pop_front() {
                self.ops.remove_by_hash(h, |o| o.1 == t);
            }
        }
        while let Some((t, _)) = self.resolved_log.front() {
            if *t >= horizon {
                break;
            }
            if let Some((t, h)) = self.resolved_log.pop_front() {
                self.resolved.remove_by_hash(h, |r| r.at == t);
            }
        }
        while let Some((t, _)) = self.transfers_log.front() {
            if *t >= horizon {
                break;
            }
            if let Some((_, id)) = self.transfers_log.pop_front() {
                if self
                    .transfers
                    .get(&id)
                    .is_some_and(|t| t.status != TransferStatus::InTransit)
                {
                    self.transfers.remove(&id);
                }
            }
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
            Event::Received {
                op,
                fp,
                location,
                qty,
                at,
            } => {
                if self.remember_op(op, *fp, *at) {
                    let s = self.site_mut(location);
                    s.pos.on_hand += qty;
                    s.flows.received += qty;
                    s.pos.version += 1;
                    s.record_move(*at, *qty);
                }
            }
            Event::Adjusted {
                op,
                fp,
                location,
                delta,
                at,
                ..
            } => {
                if self.remember_op(op, *fp, *at) {
                    let s = self.site_mut(location);
                    s.pos.on_hand += delta;
                    s.flows.adjusted += delta;
                    s.pos.version += 1;
                    s.record_move(*at, *delta);
                }
            }
            Event::Counted {
                op,
                fp,
                location,
                counted_at,
                on_hand,
                damaged,
                quality_control,
                oversold,
                at,
                ..
            } => {
                if self.remember_op(op, *fp, *at) {
                    let s = self.site_mut(location);
                    s.flows.counted += on_hand - s.pos.on_hand;
                    s.pos.on_hand = *on_hand;
                    s.pos.damaged = *damaged;
                    s.pos.quality_control = *quality_control;
                    s.pos.oversold += oversold;
                    s.pos.version += 1;
                    s.last_counted_at = Some(*counted_at);
                }
            }
            Event::MarkedUnavailable {
                op,
                fp,
                location,
                bucket,
                delta,
                at,
            } => {
                if self.remember_op(op, *fp, *at) {
                    let s = self.site_mut(location);
                    match bucket {
                        UnavailableBucket::Damaged => s.pos.damaged += delta,
                        UnavailableBucket::QualityControl => s.pos.quality_control += delta,
                    }
                    s.pos.version += 1;
                }
            }
            Event::SafetyStockSet {
                op,
                fp,
                location,
                qty,
                at,
            } => {
                if self.remember_op(op, *fp, *at) {
                    let s = self.site_mut(location);
                    s.pos.safety_stock = *qty;
                    s.pos.version += 1;
                }
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
                if self.resolved.contains_key(hold) {
                    return;
                }
                let seq = self.hold_seq + 1;
                let new = self.holds.insert_if_absent(hold, || Hold {
                    location: location.clone(),
                    qty: *qty,
                    channel: *channel,
                    state: HoldState::Held {
                        expires_at: *expires_at,
                    },
                    fp: *fp,
                    seq,
                });
                if !new {
                    return;
                }
                self.hold_seq = seq;
                if let Some(t) = expires_at {
                    self.push_deadline(*t, seq, hold);
                }
                let s = self.site_mut(location);
                s.pos.reserved += qty;
                s.pos.version += 1;
            }
            Event::Extended {
                hold, expires_at, ..
            } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    if let HoldState::Held {
                        expires_at: Some(old),
                    } = h.state
                    {
                        // Never shortens: a duplicate or reordered extension changes nothing.
                        if *expires_at <= old {
                            return;
                        }
                        h.state = HoldState::Held {
                            expires_at: Some(*expires_at),
                        };
                        let seq = h.seq;
                        self.sites
                            .get_or_insert_with(&h.location, Site::default)
                            .pos
                            .version += 1;
                        self.push_deadline(*expires_at, seq, hold);
                        self.drop_deadline(old, seq);
                    }
                }
            }
            Event::Released { hold, at, .. } => self.resolve(hold, Resolution::Released, *at, 0),
            Event::Expired { hold, at, .. } => self.resolve(hold, Resolution::Expired, *at, 0),
            Event::Fulfilled {
                hold, oversold, at, ..
            } => self.resolve(hold, Resolution::Fulfilled, *at, *oversold),
            Event::Committed { hold, .. } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    if let HoldState::Held { expires_at } = h.state {
                        h.state = HoldState::Committed;
                        let (qty, seq) = (h.qty, h.seq);
                        let s = self.sites.get_or_insert_with(&h.location, Site::default);
                        s.pos.reserved -= qty;
                        s.pos.committed += qty;
                        s.pos.version += 1;
                        if let Some(t) = expires_at {
                            self.drop_deadline(t, seq);
                        }
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
                occurred_at,
                oversold,
                absorbed_by_count,
                ..
            } => {
                let new = self.sales.insert_if_absent(sale, || SaleRecord {
                    fp: *fp,
                    qty: *qty,
                    returned: 0,
                });
                if !new {
                    return;
                }
                match self.terminals.get_mut(terminal) {
                    Some(seen) => *seen = (*seen).max(*device_seq),
                    None => {
                        self.terminals.insert(terminal.clone(), *device_seq);
                    }
                }
                let s = self.site_mut(location);
                if !absorbed_by_count {
                    s.pos.on_hand -= qty;
                    s.flows.sold += qty;
                    s.record_move(*occurred_at, -qty);
                }
                s.pos.oversold += oversold;
                s.pos.version += 1;
            }
            Event::ReturnReceived {
                op,
                fp,
                location,
                qty,
                condition,
                sale,
                at,
            } => {
                if self.remember_op(op, *fp, *at) {
                    if let Some(r) = sale.as_ref().and_then(|s| self.sales.get_mut(s)) {
                        r.returned += qty;
                    }
                    let s = self.site_mut(location);
                    match condition {
                        Condition::Restock => {
                            s.pos.on_hand += qty;
                            s.flows.returned += qty;
                            s.record_move(*at, *qty);
                        }
                        Condition::Damaged => {
                            s.pos.on_hand += qty;
                            s.pos.damaged += qty;
                            s.flows.returned += qty;
                            s.record_move(*at, *qty);
                        }
                        Condition::ReturnToVendor => {}
                    }
                    s.pos.version += 1;
                }
            }
            Event::TransferShipped {
                transfer,
                fp,
                from,
                to,
                qty,
                at,
            } => {
                if self.transfers.contains_key(transfer) {
                    return;
                }
                self.transfers.insert(
                    transfer.clone(),
                    Transfer {
                        fp: *fp,
                        from: Some(from.clone()),
                        to: Some(to.clone()),
                        shipped: *qty,
                        received: 0,
                        shortfall: 0,
                        status: TransferStatus::InTransit,
                        at: *at,
                    },
                );
                self.open_transfers += 1;
                let s = self.site_mut(from);
                s.pos.on_hand -= qty;
                s.flows.transferred_out += qty;
                s.pos.version += 1;
                s.record_move(*at, -qty);
                let s = self.site_mut(to);
                s.pos.incoming += qty;
                s.flows.shipped_to += qty;
                s.pos.version += 1;
            }
            Event::TransferReceived {
                op,
                fp,
                transfer,
                location,
                qty,
                shortfall,
                at,
            } => {
                let Some(t) = self.transfers.get_mut(transfer) else {
                    return;
                };
                if t.status != TransferStatus::InTransit || self.ops.contains_key(op) {
                    return;
                }
                t.received += qty;
                t.shortfall += shortfall;
                t.at = *at;
                let closed = t.received + t.shortfall >= t.shipped;
                if closed {
                    t.status = TransferStatus::Closed;
                }
                self.remember_op(op, *fp, *at);
                if closed {
                    self.open_transfers -= 1;
                    self.transfers_log.push_back((*at, transfer.clone()));
                }
                let s = self.site_mut(location);
                s.pos.incoming -= qty + shortfall;
                s.pos.on_hand += qty;
                s.flows.transferred_in += qty;
                s.flows.shortfall += shortfall;
                s.pos.version += 1;
                s.record_move(*at, *qty);
            }
            Event::TransferCancelled { transfer, at } => {
                if self.transfers.contains_key(transfer) {
                    return;
                }
                self.transfers.insert(
                    transfer.clone(),
                    Transfer {
                        fp: 0,
                        from: None,
                        to: None,
                        shipped: 0,
                        received: 0,
                        shortfall: 0,
                        status: TransferStatus::Cancelled,
                        at: *at,
                    },
                );
                self.transfers_log.push_back((*at, transfer.clone()));
            }
        }
    }

    /// The invariants that hold after every event. Returns the first broken one.
    /// O(holds + locations): the tests run it after every event; the shell may
    /// run it after loading a snapshot or every N events.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut sums: BTreeMap<&LocationId, (Qty, Qty)> = BTreeMap::new();
        for h in self.holds.values_unordered() {
            if h.qty <= 0 {
                return Err("a hold of no units");
            }
            let e = sums.entry(&h.location).or_insert((0, 0));
            match h.state {
                HoldState::Held { .. } => e.0 += h.qty,
                HoldState::Committed => e.1 += h.qty,
            }
        }
        for (loc, s) in self.sites_sorted() {
            let p = &s.pos;
            if p.reserved < 0 || p.committed < 0 || p.damaged < 0 || p.quality_control < 0 {
                return Err("a bucket went below zero");
            }
            if p.safety_stock < 0 || p.incoming < 0 || p.oversold < 0 {
                return Err("safety stock, incoming or oversold below zero");
            }
            if p.on_hand < 0 && p.oversold == 0 {
                return Err("on_hand below zero without a recorded oversell");
            }
            if p.unavailable() > p.on_hand.max(0) && p.oversold == 0 {
                return Err("more units unavailable than on hand without a recorded oversell");
            }
            let (held, committed) = sums.get(loc).copied().unwrap_or((0, 0));
            if held != p.reserved {
                return Err("reserved differs from the sum of active holds");
            }
            if committed != p.committed {
                return Err("committed differs from the sum of commitments");
            }
            if s.flows.on_hand() != p.on_hand {
                return Err("on_hand differs from the sum of its flows (conservation)");
            }
            if s.flows.incoming() != p.incoming {
                return Err("incoming differs from shipped minus received and short");
            }
            if s.moves.len() > MAX_MOVEMENT_WINDOW {
                return Err("the movement window is over its limit");
            }
        }
        for loc in sums.keys() {
            if !self.sites.contains_key(*loc) {
                return Err("a hold at a location with no position");
            }
        }
        let dl = &self.deadlines.0;
        let live = dl.iter().filter(|e| entry_live(&self.holds, e)).count();
        if live
            != self
                .holds
                .values_unordered()
                .filter(|h| h.deadline().is_some())
                .count()
        {
            return Err("the deadline table and the timed holds differ");
        }
        if dl.front().is_some_and(|e| !entry_live(&self.holds, e)) {
            return Err("the deadline table's front is stale");
        }
        if dl
            .iter()
            .zip(dl.iter().skip(1))
            .any(|(a, b)| (a.0, a.1) >= (b.0, b.1))
        {
            return Err("the deadline table is out of order");
        }
        for id in self.holds.keys_unordered() {
            if self.resolved.contains_key(id) {
                return Err("a hold is both active and resolved");
            }
        }
        if self.holds.values_unordered().any(|h| h.seq > self.hold_seq) {
            return Err("a hold sequence from the future");
        }
        let open = self
            .transfers
            .values_unordered()
            .filter(|t| t.status == TransferStatus::InTransit)
            .count();
        if open != self.open_transfers {
            return Err("the open transfer count is wrong");
        }
        for t in self.transfers.values_unordered() {
            if t.received + t.shortfall > t.shipped {
                return Err("a transfer received more than it shipped");
            }
        }
        for r in self.sales.values_unordered() {
            if r.returned > r.qty {
                return Err("a sale returned more than it sold");
            }
        }
        if self.ops.len() != self.ops_log.len() || self.resolved.len() > self.resolved_log.len() {
            return Err("a retention log is out of step with its table");
        }
        Ok(())
    }

    /// A stable 64-bit hash of everything observable: positions, holds,
    /// resolutions, sales, transfers. The same on every target (no `Hash`
    /// derive: those hash `usize` at the platform's width).
    pub fn state_hash(&self) -> u64 {
        let mut f = Fnv::default();
        for (loc, s) in self.sites_sorted() {
            let p = &s.pos;
            f = f
                .str(loc.as_str())
                .i64(p.on_hand)
                .i64(p.reserved)
                .i64(p.committed)
                .i64(p.damaged)
                .i64(p.quality_control)
                .i64(p.safety_stock)
                .i64(p.incoming)
                .u64(p.version)
                .i64(p.oversold);
        }
        for (id, h) in self.holds.iter() {
            f = f
                .str(id.as_str())
                .str(h.location.as_str())
                .i64(h.qty)
                .u64(h.seq)
                .i64(h.deadline().map_or(-1, |t| t.0))
                .u64(u64::from(h.state == HoldState::Committed));
        }
        for (id, r) in self.resolved.iter() {
            f = f.str(id.as_str()).u64(r.how as u64).i64(r.at.0);
        }
        for (id, s) in self.sales.iter() {
            f = f.str(id.as_str()).i64(s.qty).i64(s.returned);
        }
        for (id, t) in self.transfers.iter() {
            f = f
                .str(id.as_str())
                .i64(t.shipped)
                .i64(t.received)
                .i64(t.shortfall)
                .u64(t.status as u64);
        }
        f.u64(self.ops.len() as u64)
            .u64(self.hold_seq)
            .i64(self.clock.0)
            .finish()
    }
}
