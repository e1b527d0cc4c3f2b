//! Events: the facts recorded in the log and replayed on load.
use alloc::vec::Vec;

use super::command::Condition;
use crate::ids::{HoldId, LocationId, OpId, SaleId, TerminalId, TransferId};
use crate::stock::{AdjustReason, Channel, Qty, UnavailableBucket};
use crate::time::Timestamp;

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
    /// A held hold became permanent (no deadline).
    Kept {
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
            | Event::Kept { at, .. }
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
            Event::Kept { .. } => "kept",
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
