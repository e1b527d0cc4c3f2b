//! Time is an argument: milliseconds since the Unix epoch, UTC.
use core::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// Shortest hold a client may ask for.
pub const MIN_TTL_MS: i64 = 30_000;
/// Longest hold a client may ask for.
pub const MAX_TTL_MS: i64 = 3_600_000;
/// The hold a reservation gets when the client names no TTL (15 minutes).
pub const DEFAULT_TTL_MS: i64 = 900_000;
/// How long an ended reservation (released, expired, failed) is kept before
/// its coordinator's storage may be deleted: longer than a SKU object
/// remembers a resolved hold after its longest TTL, so a reservation id
/// created again after that can never meet its old hold ids.
pub const RESERVATION_RETENTION_MS: i64 = 48 * 3_600_000;

impl Timestamp {
    pub const fn from_ms(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn as_ms(self) -> i64 {
        self.0
    }
    /// `self + ms`, saturating (time never wraps).
    pub const fn plus_ms(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}
