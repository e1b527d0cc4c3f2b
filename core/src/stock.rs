//! The stock position of one SKU at one location, and the formulas of API.md.
use core::fmt;

/// Whole units. Signed: a recorded in-store oversell can drive a position below zero.
pub type Qty = i64;

/// Largest quantity on one line of a request.
pub const MAX_LINE_QTY: Qty = 1_000_000;

/// Who is asking for availability: the store till sees everything not held,
/// the online channel also leaves the safety stock alone.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Online,
    Pos,
}

/// Why an adjustment was made.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AdjustReason {
    Damaged,
    Shrinkage,
    Found,
    Correction,
    Promotion,
    Other,
}

impl AdjustReason {
    pub const ALL: [AdjustReason; 6] = [
        AdjustReason::Damaged,
        AdjustReason::Shrinkage,
        AdjustReason::Found,
        AdjustReason::Correction,
        AdjustReason::Promotion,
        AdjustReason::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustReason::Damaged => "damaged",
            AdjustReason::Shrinkage => "shrinkage",
            AdjustReason::Found => "found",
            AdjustReason::Correction => "correction",
            AdjustReason::Promotion => "promotion",
            AdjustReason::Other => "other",
        }
    }
}

impl fmt::Display for AdjustReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which unavailable bucket units sit in: counted in on_hand, never sold.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableBucket {
    Damaged,
    QualityControl,
}

impl UnavailableBucket {
    pub fn as_str(self) -> &'static str {
        match self {
            UnavailableBucket::Damaged => "damaged",
            UnavailableBucket::QualityControl => "quality_control",
        }
    }
}

/// One SKU at one location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Units physically there, sellable or not.
    pub on_hand: Qty,
    /// Held by active reservations.
    pub reserved: Qty,
    /// Allocated to paid orders not yet shipped or collected.
    pub committed: Qty,
    /// Unavailable: damaged.
    pub damaged: Qty,
    /// Unavailable: held for quality control.
    pub quality_control: Qty,
    /// Units the online channel may not take.
    pub safety_stock: Qty,
    /// Units in transit to this location.
    pub incoming: Qty,
    /// Rises with every change of this position.
    pub version: u64,
    /// The sum of the `oversold` recorded by events here, ever: a sale's units
    /// beyond availability, a count's units moved beyond what was counted, a
    /// shipment's units beyond what was on hand. An indicator (the same missing
    /// unit can be reported by a sale and later by the shipment it starved),
    /// not a unit count.
    /// on_hand may be below zero only when this is above zero.
    #[serde(default)]
    pub oversold: Qty,
}

impl Position {
    pub fn bucket(&self, bucket: UnavailableBucket) -> Qty {
        match bucket {
            UnavailableBucket::Damaged => self.damaged,
            UnavailableBucket::QualityControl => self.quality_control,
        }
    }

    pub fn unavailable(&self) -> Qty {
        self.damaged + self.quality_control
    }

    /// `on_hand - reserved - committed - unavailable` for the till; the online
    /// channel also subtracts the safety stock and is floored at zero.
    pub fn available(&self, channel: Channel) -> Qty {
        let pos = self.on_hand - self.reserved - self.committed - self.unavailable();
        match channel {
            Channel::Pos => pos,
            Channel::Online => (pos - self.safety_stock).max(0),
        }
    }
}
