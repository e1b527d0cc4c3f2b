//! Messages to an `Order` object (one per order id: core's order coordinator
//! and the order's priced lines) and the order's public shape.
//!
//! The returns contract lives here too: `OrderRequest::ClaimReturn` (which
//! lines of a fulfilled order a return may take back, priced as sold) and
//! `OrderRequest::Returned` (the order's parts become `returned`).
use omnistock_core::money::Money;
use omnistock_core::order::OrderStatus;
use omnistock_core::{Channel, HoldId, LocationId, Qty, Sku};
use serde::{Deserialize, Serialize};

use super::sku_stock::Meta;
use super::{Idem, Namespace};
use crate::http::Problem;
use worker::Env;

/// One priced line of an order as the API shows it: the SKU the customer
/// bought (a bundle stays one line; its components are held), its price
/// and tax, and the location and part that serve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderLineView {
    pub sku: Sku,
    pub qty: Qty,
    pub unit_price: Money,
    /// The tax of the whole line (rounded to the currency's minor unit).
    pub tax: Money,
    pub net: Money,
    pub gross: Money,
    pub location: LocationId,
    pub part: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartOut {
    pub part: u32,
    pub location: LocationId,
    pub status: OrderStatus,
    pub at_risk: bool,
    pub pickup_overdue: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TotalsOut {
    pub net: String,
    pub tax: String,
    pub gross: String,
    pub currency: String,
    /// How tax was rounded (per line, to the currency's minor unit).
    pub rounding: String,
    /// Prices included tax.
    pub tax_inclusive: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryOut {
    pub part: u32,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub actor: String,
    pub at: String,
}

/// What the API returns for an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub status: OrderStatus,
    pub channel: String,
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    pub lines: Vec<OrderLineView>,
    pub parts: Vec<PartOut>,
    pub totals: TotalsOut,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
    pub history: Vec<HistoryOut>,
}

/// An order ready to place: priced and placed by the Worker, held by the
/// object. `stock` are the held lines (bundles expanded, one per SKU and
/// part); `parts` the location of each part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PricedOrder {
    pub id: String,
    pub channel: Channel,
    pub customer_id: Option<String>,
    pub reservation_id: Option<String>,
    pub lines: Vec<OrderLineView>,
    pub stock: Vec<(Sku, Qty, u32)>,
    pub parts: Vec<LocationId>,
    pub totals: TotalsOut,
    /// Fingerprint of the content (everything above): the same id with
    /// other content is 409 `idempotency_key_reused`.
    pub fp: String,
    /// The hold of each `stock` line when they are a converted
    /// reservation's (kept, not held again); `None`: `ord.<id>.<line>`.
    #[serde(default)]
    pub holds: Option<Vec<HoldId>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateOrder {
    pub draft: PricedOrder,
    pub meta: Meta,
    pub idem: Idem,
}

/// Who may see or change an order: checked by the object against the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "value", rename_all = "snake_case")]
pub enum Scope {
    Any,
    /// A storefront key: orders of this channel only.
    Channel(Channel),
    /// A POS key: orders with a part at this location only.
    Location(LocationId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLine {
    pub sku: Sku,
    pub qty: Qty,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedLine {
    pub sku: Sku,
    pub qty: Qty,
    pub location: LocationId,
    /// The unit price as sold (decimal string).
    pub unit_price: String,
    /// The tax of these `qty` units (decimal string).
    pub tax: String,
}

/// What a return may take back of an order, priced as sold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnClaim {
    pub order_id: String,
    pub channel: Channel,
    pub customer_id: Option<String>,
    pub currency: String,
    pub lines: Vec<ClaimedLine>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OrderRequest {
    /// Create (or find, or resume) the order.
    Create(Box<CreateOrder>),
    Get {
        scope: Scope,
    },
    /// Moves one part (`part`) or every part to `to`.
    Transition {
        to: OrderStatus,
        part: Option<u32>,
        scope: Scope,
        meta: Meta,
        idem: Idem,
    },
    /// SKU objects reported these holds at risk (a POS sale took their units).
    AtRisk {
        holds: Vec<HoldId>,
    },
    /// A return claims these lines of a fulfilled order (idempotent by `return_id`).
    ClaimReturn {
        return_id: String,
        lines: Vec<ClaimLine>,
    },
    /// The return `return_id` was received: shipped/collected parts become returned.
    Returned {
        return_id: String,
    },
}

/// An order operation's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderAnswer {
    pub created: bool,
    #[serde(default)]
    pub replayed: bool,
    pub view: OrderView,
}

/// The API's name of a channel.
pub fn channel_str(c: Channel) -> &'static str {
    match c {
        Channel::Online => "online",
        Channel::Pos => "pos",
    }
}

/// Calls the Order object of `id`.
pub async fn call<A: serde::de::DeserializeOwned>(
    env: &Env,
    id: &str,
    req: &OrderRequest,
) -> Result<A, Problem> {
    super::call(env, Namespace::Order, id, req).await
}
