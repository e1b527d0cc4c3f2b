//! Messages to a `Transfer` object (one per transfer id: core's transfer
//! coordinator) and the transfer's public shape.
use omnistock_core::transfer::{NotShipped, Transfer, TransferError, TransferLine};
use omnistock_core::{LocationId, TransferId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::Env;

use super::sku_stock::Meta;
use super::{Idem, Namespace};
use crate::http::{rfc3339, Problem};

/// Everything a `Transfer` object is asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TransferRequest {
    Create {
        id: TransferId,
        from: LocationId,
        to: LocationId,
        lines: Vec<TransferLine>,
        note: Option<String>,
        /// Fingerprint of the content (from, to, lines, note).
        fp: String,
        meta: Meta,
        idem: Idem,
    },
    Ship {
        id: TransferId,
        meta: Meta,
        idem: Idem,
    },
    Receive {
        id: TransferId,
        lines: Vec<TransferLine>,
        close: bool,
        meta: Meta,
        idem: Idem,
    },
    Cancel {
        id: TransferId,
        meta: Meta,
        idem: Idem,
    },
    Get {
        id: TransferId,
    },
}

/// An answer: the HTTP status, whether it is a replay, and the transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransferAnswer {
    pub status: u16,
    #[serde(default)]
    pub replayed: bool,
    pub body: Value,
}

/// Sends one message to the object of transfer `id`.
pub async fn call(
    env: &Env,
    id: &TransferId,
    req: &TransferRequest,
) -> Result<TransferAnswer, Problem> {
    super::call(env, Namespace::Transfer, id.as_str(), req).await
}

/// The ledger reference of a transfer's SKU events.
pub fn reference(id: &TransferId) -> String {
    format!("transfer:{id}")
}

/// A core refusal as the API's problem.
pub fn problem(e: &TransferError, t: Option<&Transfer>) -> Problem {
    match e {
        TransferError::Insufficient(short) => {
            let from = t.map(|t| t.from().to_string());
            Problem::new(409, "insufficient_stock", e.to_string()).with(
                "lines",
                short
                    .iter()
                    .map(|(sku, requested, available)| {
                        json!({"sku": sku, "location": from, "requested": requested,
                               "available": (*available).max(0)})
                    })
                    .collect::<Vec<_>>(),
            )
        }
        TransferError::InvalidTransition { from, to, allowed } => {
            let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            Problem::invalid_transition(from.as_str(), to.as_str(), &allowed)
        }
        TransferError::Conflict => Problem::new(409, "idempotency_key_reused", e.to_string()),
        TransferError::Busy => Problem::overloaded(e.to_string()),
        _ => Problem::invalid(e.to_string()),
    }
}

/// The transfer as the API shows it.
pub fn view(t: &Transfer, note: Option<&str>) -> Value {
    let lines: Vec<Value> = t
        .lines()
        .into_iter()
        .map(|l| {
            let mut v = json!({
                "sku": l.sku,
                "requested": l.requested,
                "shipped": l.shipped,
                "received": l.received,
                "shortfall": l.shortfall,
                "in_transit": l.in_transit,
                "closed": l.closed,
            });
            if let Some(n) = l.not_shipped {
                v["not_shipped"] = match n {
                    NotShipped::Insufficient { available } => {
                        json!({"code": "insufficient_stock", "available": available.max(0)})
                    }
                    NotShipped::Refused { refusal } => {
                        json!({"code": refusal.code(), "detail": refusal.to_string()})
                    }
                };
            }
            v
        })
        .collect();
    let receipts: Vec<Value> = t
        .receipts()
        .iter()
        .map(|r| {
            json!({"number": r.n, "lines": r.lines, "close": r.close,
                   "at": rfc3339(r.at.as_ms()), "actor": r.actor})
        })
        .collect();
    let history: Vec<Value> = t
        .history()
        .iter()
        .map(|h| {
            json!({"at": rfc3339(h.at.as_ms()), "actor": h.actor,
                   "from": h.from.map(|s| s.as_str()), "to": h.to.as_str(), "note": h.note})
        })
        .collect();
    json!({
        "id": t.id(),
        "from": t.from(),
        "to": t.to(),
        "status": t.status().as_str(),
        "note": note,
        "lines": lines,
        "receipts": receipts,
        "history": history,
        "created_at": rfc3339(t.created_at().as_ms()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistock_core::transfer::{CreateRequest, Status};
    use omnistock_core::{Sku, Timestamp};

    fn machine() -> Result<Transfer, TransferError> {
        let id = |s: &str| TransferId::parse(s).map_err(|_| TransferError::NoLines);
        let loc = |s: &str| LocationId::parse(s).map_err(|_| TransferError::NoLines);
        let sku = Sku::parse("A").map_err(|_| TransferError::NoLines)?;
        Transfer::new(
            Timestamp::from_ms(1_000),
            "admin",
            CreateRequest {
                id: id("T1")?,
                from: loc("w")?,
                to: loc("s")?,
                lines: vec![TransferLine { sku, qty: 2 }],
                fp: 1,
            },
        )
    }

    #[test]
    fn refusals_are_the_api_problems() {
        let t = machine().ok();
        let p = problem(
            &TransferError::InvalidTransition {
                from: Status::InTransit,
                to: Status::Cancelled,
                allowed: vec![Status::PartiallyReceived, Status::Received],
            },
            t.as_ref(),
        );
        let b = p.body();
        assert_eq!(
            (p.status, b["code"].as_str()),
            (409, Some("invalid_transition"))
        );
        assert_eq!(
            (b["from"].as_str(), b["to"].as_str()),
            (Some("in_transit"), Some("cancelled"))
        );
        assert_eq!(b["allowed"], json!(["partially_received", "received"]));
        let sku = Sku::parse("A").ok();
        let short = sku.map(|s| vec![(s, 2, -1)]).unwrap_or_default();
        let p = problem(&TransferError::Insufficient(short), t.as_ref());
        let b = p.body();
        assert_eq!(
            (p.status, b["code"].as_str()),
            (409, Some("insufficient_stock"))
        );
        assert_eq!(
            b["lines"],
            json!([{"sku": "A", "location": "w", "requested": 2, "available": 0}])
        );
        assert_eq!(problem(&TransferError::SameLocation, None).status, 400);
        assert_eq!(
            problem(&TransferError::Conflict, None).code,
            "idempotency_key_reused"
        );
        assert_eq!(problem(&TransferError::Busy, None).status, 503);
    }

    #[test]
    fn the_view_shows_lines_and_history() {
        let Ok(t) = machine() else {
            panic!("a valid transfer");
        };
        let v = view(&t, Some("restock"));
        assert_eq!(v["status"], "requested");
        assert_eq!(v["note"], "restock");
        assert_eq!(
            v["lines"][0],
            json!({"sku": "A", "requested": 2, "shipped": 0, "received": 0, "shortfall": 0,
                   "in_transit": 0, "closed": false})
        );
        assert_eq!(v["history"][0]["to"], "requested");
        assert_eq!(v["history"][0]["from"], Value::Null);
        assert_eq!(v["history"][0]["actor"], "admin");
    }
}
