//! Messages to a `ReturnCase` object (one per return id: the coordinator of
//! a return, core's `returns::ReturnCase`) and the return's public shape.
use omnistock_core::money::Money as CoreMoney;
use omnistock_core::returns::{
    CaseStatus, LineStatus, ReceiveLine, ReturnCase, ReturnLine, ReturnSource,
};
use omnistock_core::{LocationId, SaleId, Sku, TerminalId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sku_stock::Meta;
use super::Idem;
use crate::http::rfc3339;

/// Everything a `ReturnCase` object is asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReturnRequest {
    Initiate(Initiate),
    Receive {
        location: LocationId,
        lines: Vec<ReceiveLine>,
        meta: Meta,
        idem: Idem,
    },
    Refund {
        amount: CoreMoney,
        meta: Meta,
        idem: Idem,
    },
    Get,
    /// May an exchange start (state, and the same key's first answer)?
    /// Answered before the replacement is held.
    ExchangeCheck {
        idem: Idem,
        #[serde(default)]
        receive: Option<(LocationId, Vec<ReceiveLine>)>,
    },
    /// The replacement order `order_id` is held: book the receipt (when
    /// given), then record the exchange with its price difference.
    Exchange {
        order_id: String,
        replacement_total: CoreMoney,
        #[serde(default)]
        receive: Option<(LocationId, Vec<ReceiveLine>)>,
        meta: Meta,
        idem: Idem,
    },
}

/// The answer of `ExchangeCheck`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum ExchangeCheck {
    /// Go on: hold the replacement for this customer.
    Go {
        customer_id: Option<String>,
        currency: String,
        /// The replacement order's id: `x.<return id>` for the first
        /// attempt, `x<n>.<return id>` after `n` refused ones (the same key
        /// again gets the same id).
        order_id: String,
    },
    /// This key's first answer: give it again.
    Replay(Box<ReturnAnswer>),
}

/// `POST /v1/returns`, validated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Initiate {
    pub id: String,
    pub source: ReturnSource,
    /// The terminal that sold a sale, when the client says so (else found
    /// through the first line's SKU object).
    #[serde(default)]
    pub terminal_id: Option<TerminalId>,
    pub lines: Vec<ReturnLine>,
    /// A storefront's return: of an online order only.
    #[serde(default)]
    pub online_only: bool,
    /// Fingerprint of the content (source and lines).
    pub fp: String,
    pub meta: Meta,
    pub idem: Idem,
}

/// An answer of a `ReturnCase` object: the HTTP status and the return.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReturnAnswer {
    pub status: u16,
    #[serde(default)]
    pub replayed: bool,
    pub view: ReturnView,
}

/// Units received of a line, per condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub restock: i64,
    pub damaged: i64,
    pub return_to_vendor: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineView {
    pub sku: Sku,
    /// Units initiated.
    pub qty: i64,
    pub reason: String,
    pub sold_at: LocationId,
    /// What was paid for the `qty` units, tax included.
    pub paid: CoreMoney,
    pub received: Received,
    /// Units on their way into the SKU objects (a receipt being booked).
    pub pending: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptLineView {
    pub sku: Sku,
    pub qty: i64,
    pub condition: omnistock_core::Condition,
    /// `booked`, `pending` or `refused`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptView {
    pub n: u32,
    pub location: LocationId,
    pub at: String,
    /// `pending` while a line is not booked yet, else `booked`.
    pub status: String,
    pub lines: Vec<ReceiptLineView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundView {
    pub amount: CoreMoney,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeView {
    pub order_id: String,
    pub replacement_total: CoreMoney,
    pub credit: CoreMoney,
    /// Replacement total minus credit: positive, the customer pays.
    pub difference: CoreMoney,
    pub at: String,
}

/// One line of a return's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    /// `initiated`, `receipt`, `refund`, `exchange`.
    pub event: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<CoreMoney>,
}

/// What the API returns for a return.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReturnView {
    pub id: String,
    pub status: CaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_id: Option<SaleId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<TerminalId>,
    pub currency: String,
    pub lines: Vec<LineView>,
    pub receipts: Vec<ReceiptView>,
    pub refunds: Vec<RefundView>,
    pub refunded: CoreMoney,
    /// What may still be refunded: paid for the units received, minus refunds.
    pub refundable: CoreMoney,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ExchangeView>,
    pub created_at: String,
    pub history: Vec<HistoryEntry>,
}

impl ReturnView {
    pub fn from_core(
        m: &ReturnCase,
        terminal: Option<&TerminalId>,
        history: &[HistoryEntry],
    ) -> ReturnView {
        let zero = CoreMoney::zero(m.currency());
        let (sale_id, order_id) = match m.source() {
            ReturnSource::Sale(s) => (Some(s.clone()), None),
            ReturnSource::Order(o) => (None, Some(o.to_string())),
        };
        let lines = m
            .lines()
            .iter()
            .map(|l| LineView {
                sku: l.sku.clone(),
                qty: l.qty,
                reason: l.reason.clone(),
                sold_at: l.sold_at.clone(),
                paid: l.paid,
                received: Received {
                    restock: l.restock,
                    damaged: l.damaged,
                    return_to_vendor: l.return_to_vendor,
                },
                pending: m.booked_or_pending(&l.sku) - l.received(),
            })
            .collect();
        let receipts = m
            .receipts()
            .iter()
            .map(|r| ReceiptView {
                n: r.n,
                location: r.location.clone(),
                at: rfc3339(r.at.as_ms()),
                status: if r.settled() { "booked" } else { "pending" }.into(),
                lines: r
                    .lines
                    .iter()
                    .map(|l| {
                        let (status, refusal) = match &l.status {
                            LineStatus::Pending { .. } => ("pending", None),
                            LineStatus::Applied => ("booked", None),
                            LineStatus::Refused { code, detail } => (
                                "refused",
                                Some(serde_json::json!({"code": code, "detail": detail})),
                            ),
                        };
                        ReceiptLineView {
                            sku: l.sku.clone(),
                            qty: l.qty,
                            condition: l.condition,
                            status: status.into(),
                            refusal,
                        }
                    })
                    .collect(),
            })
            .collect();
        ReturnView {
            id: m.id().to_string(),
            status: m.status(),
            sale_id,
            order_id,
            terminal_id: terminal.cloned(),
            currency: m.currency().to_string(),
            lines,
            receipts,
            refunds: m
                .refunds()
                .iter()
                .map(|r| RefundView {
                    amount: r.amount,
                    at: rfc3339(r.at.as_ms()),
                })
                .collect(),
            refunded: m.refunded().unwrap_or(zero),
            refundable: m.refundable().unwrap_or(zero),
            exchange: m.exchange().map(|x| ExchangeView {
                order_id: x.order_id.clone(),
                replacement_total: x.replacement_total,
                credit: x.credit,
                difference: x.difference,
                at: rfc3339(x.at.as_ms()),
            }),
            created_at: rfc3339(m.created_at().as_ms()),
            history: history.to_vec(),
        }
    }
}
