//! Messages to a `Reservation` object (one per reservation id: the
//! coordinator of a reservation that spans SKU objects, or the pointer to
//! the SKU object that holds a one-SKU reservation) and the reservation's
//! public shape.
use omnistock_core::{Channel, LocationId, Sku};
use serde::{Deserialize, Serialize};

use super::sku_stock::Meta;
use super::Idem;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationLine {
    pub sku: Sku,
    pub qty: i64,
    pub location: LocationId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Pending,
    Active,
    Released,
    Expired,
    Failed,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "pending",
            ReservationStatus::Active => "active",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
            ReservationStatus::Failed => "failed",
        }
    }
}

/// What the API returns for a reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationView {
    pub id: String,
    pub status: ReservationStatus,
    pub expires_at: Option<String>,
    pub lines: Vec<ReservationLine>,
    pub created_at: String,
}

/// A reservation operation's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReservationAnswer {
    /// Created by this request (201), rather than found (200).
    pub created: bool,
    /// The same Idempotency-Key and request again: the first answer.
    #[serde(default)]
    pub replayed: bool,
    pub view: ReservationView,
}

/// A reservation that spans SKU objects, for its coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    pub lines: Vec<ReservationLine>,
    pub ttl_ms: i64,
    pub channel: Channel,
    /// Fingerprint of the content (lines, ttl, channel).
    pub fp: String,
    pub meta: Meta,
    pub idem: Idem,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReservationRequest {
    /// Create (or resume, or find) a reservation across SKU objects.
    Create(CreateRequest),
    /// Record that the one-SKU reservation `id` lives in the SKU object of `sku`.
    Register {
        sku: Sku,
        fp: String,
        ttl_ms: i64,
    },
    Get,
    Extend {
        ttl_ms: i64,
        meta: Meta,
        idem: Idem,
    },
    Release {
        meta: Meta,
        idem: Idem,
    },
}

/// The answer of a `Reservation` object: the reservation, or the SKU object
/// that holds it (a one-SKU reservation), or that the id is unknown.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "home", rename_all = "snake_case")]
pub enum CoordinatorAnswer {
    Here(ReservationAnswer),
    Sku { sku: Sku },
    Registered,
}
