//! Rejections: why a command was refused, in precedence order, and the
//! input checks every concern shares.
use core::fmt;

use super::holds::Resolution;
use super::{MAX_CLOCK_SKEW_MS, MAX_ON_HAND};
use crate::stock::{Qty, UnavailableBucket, MAX_LINE_QTY};
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};

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
    /// A return names a sale this SKU never saw (reported while no sale id
    /// has been forgotten: see `Command::ReturnReceive`).
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

pub(super) fn check_qty(qty: Qty) -> Result<(), Rejection> {
    if (0..=MAX_LINE_QTY).contains(&qty) {
        Ok(())
    } else {
        Err(Rejection::QtyOutOfRange { qty })
    }
}

pub(super) fn check_positive_qty(qty: Qty) -> Result<(), Rejection> {
    if (1..=MAX_LINE_QTY).contains(&qty) {
        Ok(())
    } else {
        Err(Rejection::QtyOutOfRange { qty })
    }
}

pub(super) fn check_ttl(ttl_ms: i64) -> Result<(), Rejection> {
    if (MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(Rejection::TtlOutOfRange { ttl_ms })
    }
}

pub(super) fn check_device_time(now: Timestamp, at: Timestamp) -> Result<(), Rejection> {
    if at > now.plus_ms(MAX_CLOCK_SKEW_MS) {
        Err(Rejection::TimeInFuture { at })
    } else {
        Ok(())
    }
}

pub(super) fn known(old: u64, fp: u64) -> Rejection {
    if old == fp {
        Rejection::Exists
    } else {
        Rejection::ExistsWithDifferentBody
    }
}
