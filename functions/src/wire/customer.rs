//! Messages to a `Customer` object (one per customer id: the profile,
//! purchases from every channel with their returns, loyalty points).
//!
//! The producers' contract lives here too: a `Terminal` (a POS sale with a
//! `customer_id`), an `Order` (once fulfilled) and a `ReturnCase` (each
//! change of a return of a customer's purchase) send core's facts with
//! [`deliver`], at least once; the customer applies each once.
use omnistock_core::customer::{LoyaltyConfig, PurchaseFact, ReturnFact};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::Env;

use super::{Idem, Namespace};
use crate::http::Problem;

/// The var with the points earned per unit of currency (default 1).
pub const RATE_VAR: &str = "LOYALTY_POINTS_PER_UNIT_CURRENCY";
/// The var with the country code of phone numbers given without one (default 1).
pub const COUNTRY_VAR: &str = "CUSTOMER_PHONE_COUNTRY_CODE";

/// The deployment's loyalty settings (a bad var is 503: a deployment fault).
pub fn config(env: &Env) -> Result<LoyaltyConfig, Problem> {
    let var = |name: &str, default: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| default.to_string())
    };
    LoyaltyConfig::parse(&var(RATE_VAR, "1"), &var(COUNTRY_VAR, "1"))
        .map_err(|e| Problem::overloaded(e.to_string()))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CustomerOp {
    /// Sets the profile (normalised by the object with its config).
    Put {
        name: String,
        email: Option<String>,
        phone: Option<String>,
        idem: Idem,
    },
    Get,
    Redeem {
        points: i64,
        reference: Option<String>,
        idem: Idem,
    },
    Erase {
        idem: Idem,
    },
    Purchase(PurchaseFact),
    Return(ReturnFact),
    /// Receipts (issue 14): the points a sale's receipt states. The
    /// receipt's builder delivers the sale's purchase itself (the same fact
    /// the Terminal's outbox delivers, applied once whoever comes first), so
    /// the answer never depends on whether the outbox got there yet:
    /// answered with a [`ReceiptLoyalty`] in the body.
    ReceiptLoyalty(PurchaseFact),
}

/// The points a purchase's receipt states: fixed by the customer when it
/// recorded the purchase (core's `Purchase::receipt`). `None`: the customer
/// could not record it (its limits), or recorded it before these were kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiptLoyalty {
    pub loyalty: Option<omnistock_core::receipt::Loyalty>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomerRequest {
    pub id: String,
    pub op: CustomerOp,
}

/// An HTTP answer (status and body), replayed for the same key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomerAnswer {
    pub status: u16,
    pub body: Value,
    #[serde(default)]
    pub replayed: bool,
}

pub async fn call(env: &Env, id: &str, op: CustomerOp) -> Result<CustomerAnswer, Problem> {
    let req = CustomerRequest {
        id: id.to_string(),
        op,
    };
    super::call(env, Namespace::Customer, id, &req).await
}

/// Delivers a fact to its customer. `Ok(true)`: applied or already known,
/// or refused for good (a 4xx: asking again will not change it, logged);
/// `Ok(false)`: not delivered, try again later.
pub async fn deliver(env: &Env, customer_id: &str, op: CustomerOp) -> bool {
    match call(env, customer_id, op).await {
        Ok(_) => true,
        Err(p) if p.status < 500 => {
            worker::console_error!("customer {customer_id} refused a fact: {}", p.detail);
            true
        }
        Err(p) => {
            worker::console_warn!("customer {customer_id}: fact not delivered: {}", p.detail);
            false
        }
    }
}
