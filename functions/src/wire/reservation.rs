//! Messages to a `Reservation` object (one per reservation id: the
//! coordinator of a reservation that spans SKU objects, or a pointer of the
//! version before `wire::reservation_index`) and the reservation's public
//! shape.
pub use omnistock_core::reservation::{ReservationLine, Status as ReservationStatus};
use omnistock_core::{Channel, HoldId, Sku};
use serde::{Deserialize, Serialize};

use super::sku_stock::Meta;
use super::Idem;
use crate::http::{rfc3339, Problem};
use omnistock_core::fulfillment::Shortage;
use serde_json::json;

/// What the API returns for a reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationView {
    pub id: String,
    pub status: ReservationStatus,
    pub expires_at: Option<String>,
    pub lines: Vec<ReservationLine>,
    pub created_at: String,
    /// The order its holds became (status `converted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl ReservationView {
    pub fn from_core(v: &omnistock_core::reservation::View) -> Self {
        ReservationView {
            id: v.id.to_string(),
            status: v.status,
            expires_at: v.expires_at.map(|t| rfc3339(t.as_ms())),
            lines: v.lines.clone(),
            created_at: rfc3339(v.created_at.as_ms()),
            order_id: v.converted_to.clone(),
        }
    }
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
    /// Record that the one-SKU reservation `id` lives in the SKU object of
    /// `sku`: what a Worker of the version before the index shards sends
    /// (kept for a deploy; this version registers in `ReservationIndex`).
    Register {
        id: String,
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
    /// Its holds become order `order_id`'s (idempotent for the same order).
    Convert {
        order_id: String,
    },
}

/// The answer of a `Reservation` object: the reservation, or the SKU object
/// that holds it (a one-SKU reservation), or that the id is unknown.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "home", rename_all = "snake_case")]
pub enum CoordinatorAnswer {
    Here(ReservationAnswer),
    Sku {
        sku: Sku,
    },
    Registered,
    /// Converted: the reservation and the hold id its SKU objects know.
    Converted {
        answer: ReservationAnswer,
        hold: HoldId,
    },
}

/// 409: the id names another reservation (other content).
pub fn id_taken(id: &str) -> Problem {
    Problem::new(
        409,
        "idempotency_key_reused",
        format!("reservation {id} already exists with other content"),
    )
}

/// 409 `insufficient_stock` with its lines.
pub fn shortage_problem(short: &[Shortage], detail: &str) -> Problem {
    Problem::new(409, "insufficient_stock", detail).with(
        "lines",
        short
            .iter()
            .map(|s| {
                json!({"sku": s.sku, "location": s.location, "requested": s.requested,
                       "available": s.available.max(0)})
            })
            .collect::<Vec<_>>(),
    )
}

/// The SKU object a server-issued reservation id names.
pub fn routed_sku(id: &str) -> Option<Sku> {
    let rest = id.strip_prefix('r')?;
    let (hex, sku) = (rest.get(..16)?, rest.get(16..)?.strip_prefix('.')?);
    if !hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    Sku::parse(sku).ok()
}
