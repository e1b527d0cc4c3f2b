//! Commands: what a client asks of one SKU, and the content fingerprint
//! that tells a retry from another command under the same id.
use crate::fingerprint::Fnv;
use crate::ids::{HoldId, LocationId, OpId, SaleId, TerminalId, TransferId};
use crate::stock::{AdjustReason, Channel, Qty, UnavailableBucket};
use crate::time::Timestamp;

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
/// retry is recognisably the same command. Its serde form (tagged by
/// `type`) is what crosses from a Worker or coordinator to a SKU object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
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
    /// Makes a held hold permanent: it loses its deadline (an order, once
    /// every line is held, keeps its TTL holds). Refused unless held; a
    /// hold already kept (or committed) answers `Exists`.
    Keep { hold: HoldId },
    /// Turns a hold into a commitment (a paid order): reserved -> committed, no expiry.
    Commit { hold: HoldId },
    /// The committed units leave (shipped or collected): out of committed and on_hand.
    Fulfill { hold: HoldId },
    /// An in-store sale: never refused for stock.
    ///
    /// Core recognises a repeated `sale` id (`Exists`, or
    /// `ExistsWithDifferentBody` with other content) while it remembers it:
    /// for [`RETENTION_MS`](super::RETENTION_MS) after it was applied, among
    /// the last [`MAX_REMEMBERED_SALES`](super::MAX_REMEMBERED_SALES). A sale
    /// older than that window is recognised by the caller's durable record,
    /// not by core: the shell keeps every sale id (with its
    /// [`fingerprint`] and first answer) forever and, before deciding a
    /// `Sell` that [`SkuState::remembers_sale`](super::SkuState::remembers_sale)
    /// says core has forgotten, answers from that record if it has the id.
    Sell {
        sale: SaleId,
        terminal: TerminalId,
        device_seq: u64,
        location: LocationId,
        qty: Qty,
        occurred_at: Timestamp,
    },
    /// Returned units arrive at `location` in `condition`. With `sale`, the
    /// units returned against that POS sale never exceed what it sold, while
    /// core remembers the sale (see `Sell`); a sale it has forgotten is taken
    /// on the caller's word (the return coordinator, `returns::Return`, checks
    /// its lines against the durable sale record), and a sale it never saw is
    /// `SaleNotFound` as long as it has forgotten none.
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
        Command::Keep { .. } => f.u64(16),
    }
    .finish()
}
