//! What a SKU object answers a coordinator about one hold, built in one
//! place ([`HoldReply::from_sku`]) so the Durable Object and the simulation
//! answer exactly alike.
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::ids::HoldId;
use crate::sku::{Event, HoldState, Rejection, Resolution, SkuState};
use crate::stock::Qty;
use crate::time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};

/// A SKU object's answer to `Hold`, `Extend` or `Release` of one hold: the
/// hold's state after the command, or why the command was refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum HoldReply {
    /// The hold is active until `expires_at` (`None`: until resolved).
    Held { expires_at: Option<Timestamp> },
    /// The hold is committed to a paid order (orders; never a reservation's).
    Committed,
    /// The hold resolved (by this command or before it).
    Resolved { how: Resolution },
    /// The SKU object never saw this hold (or forgot it after its retention).
    NotFound,
    /// Not enough stock: nothing was held.
    Insufficient { requested: Qty, available: Qty },
    /// Refused for another reason: nothing changed.
    Refused { refusal: Refusal },
}

impl HoldReply {
    /// The reply to the command on `hold` that `state` decided at `now` as
    /// `result`. Works before or after the events are applied: an accepted
    /// command is answered from its event; a retried one (`Exists`) or a
    /// command on a resolved or unknown hold from the state, where a hold
    /// past its deadline counts as expired (lazy expiry).
    pub fn from_sku(
        state: &SkuState,
        now: Timestamp,
        hold: &HoldId,
        result: &Result<Vec<Event>, Rejection>,
    ) -> HoldReply {
        match result {
            Ok(events) => events
                .iter()
                .rev()
                .find_map(|e| from_event(hold, e))
                .unwrap_or_else(|| from_state(state, now, hold)),
            Err(Rejection::InsufficientStock {
                requested,
                available,
            }) => HoldReply::Insufficient {
                requested: *requested,
                available: *available,
            },
            Err(Rejection::HoldResolved { how }) => HoldReply::Resolved { how: *how },
            Err(Rejection::Exists | Rejection::HoldNotFound) => from_state(state, now, hold),
            Err(r) => HoldReply::Refused {
                refusal: Refusal::from_rejection(r),
            },
        }
    }
}

fn from_event(hold: &HoldId, e: &Event) -> Option<HoldReply> {
    let (id, reply) = match e {
        Event::Held {
            hold, expires_at, ..
        } => (
            hold,
            HoldReply::Held {
                expires_at: *expires_at,
            },
        ),
        Event::Extended {
            hold, expires_at, ..
        } => (
            hold,
            HoldReply::Held {
                expires_at: Some(*expires_at),
            },
        ),
        Event::Kept { hold, .. } => (hold, HoldReply::Held { expires_at: None }),
        Event::Committed { hold, .. } => (hold, HoldReply::Committed),
        Event::Released { hold, .. } => (
            hold,
            HoldReply::Resolved {
                how: Resolution::Released,
            },
        ),
        Event::Expired { hold, .. } => (
            hold,
            HoldReply::Resolved {
                how: Resolution::Expired,
            },
        ),
        Event::Fulfilled { hold, .. } => (
            hold,
            HoldReply::Resolved {
                how: Resolution::Fulfilled,
            },
        ),
        _ => return None,
    };
    (id == hold).then_some(reply)
}

fn from_state(state: &SkuState, now: Timestamp, hold: &HoldId) -> HoldReply {
    if let Some(h) = state.hold(hold) {
        return match h.state {
            HoldState::Held {
                expires_at: Some(t),
            } if t <= now => HoldReply::Resolved {
                how: Resolution::Expired,
            },
            HoldState::Held { expires_at } => HoldReply::Held { expires_at },
            HoldState::Committed => HoldReply::Committed,
        };
    }
    match state.resolution(hold) {
        Some(how) => HoldReply::Resolved { how },
        None => HoldReply::NotFound,
    }
}

/// Why a SKU object refused a hold command, other than for stock. The
/// commands a coordinator sends can meet only the first variants; `Other`
/// keeps the code of anything else.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    QtyOutOfRange {
        qty: Qty,
    },
    TtlOutOfRange {
        ttl_ms: i64,
    },
    /// The hold id was used with other content.
    ExistsWithDifferentBody,
    /// The hold is committed (or otherwise not in a state for this command).
    HoldNotActive,
    TooManyLocations,
    TooManyHolds,
    Other {
        code: String,
    },
}

impl Refusal {
    pub fn from_rejection(r: &Rejection) -> Refusal {
        match r {
            Rejection::QtyOutOfRange { qty } => Refusal::QtyOutOfRange { qty: *qty },
            Rejection::TtlOutOfRange { ttl_ms } => Refusal::TtlOutOfRange { ttl_ms: *ttl_ms },
            Rejection::ExistsWithDifferentBody => Refusal::ExistsWithDifferentBody,
            Rejection::HoldNotActive => Refusal::HoldNotActive,
            Rejection::TooManyLocations => Refusal::TooManyLocations,
            Rejection::TooManyHolds => Refusal::TooManyHolds,
            other => Refusal::Other {
                code: other.code().to_string(),
            },
        }
    }

    /// The API's error code, as [`Rejection::code`] gives it.
    pub fn code(&self) -> &str {
        match self {
            Refusal::QtyOutOfRange { .. } | Refusal::TtlOutOfRange { .. } => "invalid_request",
            Refusal::ExistsWithDifferentBody => "idempotency_key_reused",
            Refusal::HoldNotActive => "invalid_transition",
            Refusal::TooManyLocations | Refusal::TooManyHolds => "overloaded",
            Refusal::Other { code } => code,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::QtyOutOfRange { qty } => write!(f, "quantity {qty} is out of range"),
            Refusal::TtlOutOfRange { ttl_ms } => write!(
                f,
                "ttl of {} s is outside {}..={} s",
                ttl_ms / 1000,
                MIN_TTL_MS / 1000,
                MAX_TTL_MS / 1000
            ),
            Refusal::ExistsWithDifferentBody => {
                f.write_str("the hold id was already used with different content")
            }
            Refusal::HoldNotActive => f.write_str("the hold is not in a state that allows this"),
            Refusal::TooManyLocations => f.write_str("too many locations for this SKU"),
            Refusal::TooManyHolds => f.write_str("too many active holds on this SKU"),
            Refusal::Other { code } => write!(f, "refused: {code}"),
        }
    }
}
