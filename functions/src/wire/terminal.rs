//! Messages to a `Terminal` object (one per POS terminal: applies its sales
//! in device order and keeps every sale's answer forever).
use omnistock_core::{LocationId, SaleId, Sku, TerminalId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalog::{BundleComponent, Money};
use super::Idem;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: String,
    pub amount: Money,
}

/// A line with its SKU resolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleLine {
    pub sku: Sku,
    /// For a bundle: the component SKUs and units per bundle it sells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<BundleComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    pub qty: i64,
    pub unit_price: Money,
}

/// A validated sale, as the Terminal object applies it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sale {
    pub sale_id: SaleId,
    pub terminal_id: TerminalId,
    pub device_seq: u64,
    pub location: LocationId,
    pub occurred_at: i64,
    pub customer_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    /// Fingerprint of the sale's content: the same sale id with other content is refused.
    pub fp: String,
    pub actor: String,
}

/// One sale's answer (its HTTP status and body).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleResult {
    pub sale_id: String,
    pub status: u16,
    pub body: Value,
    /// The sale was already recorded: this is the first answer.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TerminalRequest {
    /// Sales of this terminal, applied in `(device_seq, sale_id)` order.
    Sell { sales: Vec<Sale>, idem: Idem },
    /// A return claims units of one of this terminal's sales, once per
    /// return id: refused beyond what the sale sold minus what other
    /// returns claimed. Answered with a [`SaleClaim`].
    ClaimReturn {
        return_id: String,
        sale_id: SaleId,
        lines: Vec<ClaimLine>,
    },
    /// Receipts (issue 14): the sale as applied (`None`: not recorded here).
    GetSale { sale_id: SaleId },
}

/// Units of one SKU a return claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLine {
    pub sku: Sku,
    pub qty: i64,
}

/// A sale's answer to a claim: what was sold where, and what was paid for
/// the units claimed (core's `Claim`, one line per SKU claimed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleClaim {
    pub claim: omnistock_core::returns::Claim,
    pub location: LocationId,
    #[serde(default)]
    pub customer_id: Option<String>,
}

/// The answer: one result per sale, in the order given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SellAnswer {
    pub results: Vec<SaleResult>,
    /// The same Idempotency-Key and request again.
    #[serde(default)]
    pub replayed: bool,
}
