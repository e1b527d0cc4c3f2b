//! Returns and exchanges: initiated (no stock change), received with a
//! condition (per-SKU [`Command::ReturnReceive`]), then refunded or exchanged.
//! A return never receives more units than were sold, counting earlier returns.
//!
//! [`Return`] is the rule set in one value; [`ReturnCase`] is the return
//! coordinator the `ReturnCase` Durable Object drives (sans-IO, see `case.rs`).
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::{HoldId, IdError, LocationId, OpId, OrderId, ReturnId, SaleId, Sku};
use crate::money::Money;
use crate::sku::{Command, Condition};
use crate::stock::{Channel, Qty, MAX_LINE_QTY};

pub mod case;
#[cfg(test)]
mod case_tests;

pub use case::{
    claim_share, merge_return_lines, op_id, split_paid, CaseError, CaseLine, CaseStatus, Claim,
    ClaimedLine, Exchange, InitiateRequest, LineStatus, Outgoing, Receipt, ReceiptLine,
    ReceiptReply, ReceiveLine, ReceiveRequest, Refund, ReturnCase, ReturnLine, Tag, Ticket,
    Transmit,
};

/// Most lines in one return.
pub const MAX_RETURN_LINES: usize = 100;
/// Most receipts against one return.
pub const MAX_RECEIPTS: u32 = 100;

/// What was sold: an online/any-channel order, or a POS sale.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnSource {
    Order(OrderId),
    Sale(SaleId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    Initiated,
    Received,
    Refunded,
    Exchanged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnError {
    NoLines,
    TooManyLines {
        max: usize,
    },
    QtyOutOfRange {
        sku: Sku,
        qty: Qty,
    },
    /// The source never sold this SKU.
    NotSold {
        sku: Sku,
    },
    /// More than was sold, counting units already returned.
    ExceedsSold {
        sku: Sku,
        sold: Qty,
        returned: Qty,
        requested: Qty,
    },
    /// More than this return announced, counting units already received.
    ExceedsInitiated {
        sku: Sku,
        initiated: Qty,
        received: Qty,
        requested: Qty,
    },
    /// The return is in a state that does not allow this.
    InvalidState {
        status: ReturnStatus,
    },
    TooManyReceipts,
    /// A refund larger than the value received, or in another currency.
    RefundTooLarge {
        max: Money,
    },
    BadId(IdError),
}

impl fmt::Display for ReturnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReturnError::NoLines => f.write_str("a return needs at least one line"),
            ReturnError::TooManyLines { max } => write!(f, "a return has at most {max} lines"),
            ReturnError::QtyOutOfRange { sku, qty } => {
                write!(f, "{sku}: quantity {qty} is outside 1..={MAX_LINE_QTY}")
            }
            ReturnError::NotSold { sku } => write!(f, "{sku} was not sold"),
            ReturnError::ExceedsSold {
                sku,
                sold,
                returned,
                requested,
            } => write!(
                f,
                "{sku}: {requested} requested, {sold} sold, {returned} already returned"
            ),
            ReturnError::ExceedsInitiated {
                sku,
                initiated,
                received,
                requested,
            } => write!(
                f,
                "{sku}: {requested} received now, {initiated} in the return, {received} already received"
            ),
            ReturnError::InvalidState { status } => write!(f, "the return is {status:?}"),
            ReturnError::TooManyReceipts => f.write_str("too many receipts for one return"),
            ReturnError::RefundTooLarge { max } => write!(f, "refund above {max}"),
            ReturnError::BadId(e) => write!(f, "{e}"),
        }
    }
}

/// A return and what has been received against it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Return {
    pub id: ReturnId,
    pub source: ReturnSource,
    /// Units announced per SKU.
    pub lines: BTreeMap<Sku, Qty>,
    /// Units received per SKU, whatever their condition.
    pub received: BTreeMap<Sku, Qty>,
    pub status: ReturnStatus,
    pub receipts: u32,
    pub refunded: Option<Money>,
}

fn merge(lines: &[(Sku, Qty)]) -> Result<BTreeMap<Sku, Qty>, ReturnError> {
    if lines.is_empty() {
        return Err(ReturnError::NoLines);
    }
    if lines.len() > MAX_RETURN_LINES {
        return Err(ReturnError::TooManyLines {
            max: MAX_RETURN_LINES,
        });
    }
    let mut m = BTreeMap::new();
    for (sku, qty) in lines {
        if !(1..=MAX_LINE_QTY).contains(qty) {
            return Err(ReturnError::QtyOutOfRange {
                sku: sku.clone(),
                qty: *qty,
            });
        }
        *m.entry(sku.clone()).or_insert(0) += qty;
    }
    Ok(m)
}

impl Return {
    /// Opens a return. `sold(sku)` is what the source sold; `returned(sku)` is
    /// what earlier returns of the same source already announced.
    pub fn initiate(
        id: ReturnId,
        source: ReturnSource,
        lines: &[(Sku, Qty)],
        mut sold: impl FnMut(&Sku) -> Qty,
        mut returned: impl FnMut(&Sku) -> Qty,
    ) -> Result<Return, ReturnError> {
        let lines = merge(lines)?;
        for (sku, qty) in &lines {
            let s = sold(sku);
            if s <= 0 {
                return Err(ReturnError::NotSold { sku: sku.clone() });
            }
            let r = returned(sku);
            if r + qty > s {
                return Err(ReturnError::ExceedsSold {
                    sku: sku.clone(),
                    sold: s,
                    returned: r,
                    requested: *qty,
                });
            }
        }
        Ok(Return {
            id,
            source,
            lines,
            received: BTreeMap::new(),
            status: ReturnStatus::Initiated,
            receipts: 0,
            refunded: None,
        })
    }

    /// Units of `sku` still expected.
    pub fn outstanding(&self, sku: &Sku) -> Qty {
        self.lines.get(sku).copied().unwrap_or(0) - self.received.get(sku).copied().unwrap_or(0)
    }

    /// Receiving and exchanging are open until the return is refunded or exchanged.
    fn require_open(&self) -> Result<(), ReturnError> {
        match self.status {
            ReturnStatus::Initiated | ReturnStatus::Received => Ok(()),
            status => Err(ReturnError::InvalidState { status }),
        }
    }

    /// Receives units at `location`: returns the per-SKU commands (one
    /// `ReturnReceive` per line, op id `ret.<id>.<receipt>.<line>`).
    pub fn receive(
        &mut self,
        location: &LocationId,
        lines: &[(Sku, Qty, Condition)],
    ) -> Result<Vec<(Sku, Command)>, ReturnError> {
        self.require_open()?;
        if self.receipts >= MAX_RECEIPTS {
            return Err(ReturnError::TooManyReceipts);
        }
        let plain: Vec<(Sku, Qty)> = lines.iter().map(|(s, q, _)| (s.clone(), *q)).collect();
        for (sku, qty) in merge(&plain)? {
            let initiated = self.lines.get(&sku).copied().unwrap_or(0);
            let received = self.received.get(&sku).copied().unwrap_or(0);
            if received + qty > initiated {
                return Err(ReturnError::ExceedsInitiated {
                    sku,
                    initiated,
                    received,
                    requested: qty,
                });
            }
        }
        let receipt = self.receipts;
        let sale = match &self.source {
            ReturnSource::Sale(s) => Some(s.clone()),
            ReturnSource::Order(_) => None,
        };
        let mut out = Vec::with_capacity(lines.len());
        for (i, (sku, qty, condition)) in lines.iter().enumerate() {
            let op = OpId::parse(&format!("ret.{}.{}.{}", self.id, receipt, i))
                .map_err(ReturnError::BadId)?;
            out.push((
                sku.clone(),
                Command::ReturnReceive {
                    op,
                    location: location.clone(),
                    qty: *qty,
                    condition: *condition,
                    sale: sale.clone(),
                },
            ));
        }
        for (sku, qty, _) in lines {
            *self.received.entry(sku.clone()).or_insert(0) += qty;
        }
        self.receipts += 1;
        self.status = ReturnStatus::Received;
        Ok(out)
    }

    /// Records a refund of at most `max` (the value of what was received,
    /// computed by the caller from the source's prices).
    pub fn refund(&mut self, amount: Money, max: Money) -> Result<(), ReturnError> {
        if self.status != ReturnStatus::Received {
            return Err(ReturnError::InvalidState {
                status: self.status,
            });
        }
        let over = amount
            .checked_sub(max)
            .map_or(true, |d| !d.is_negative() && !d.amount.is_zero());
        if amount.is_negative() || over {
            return Err(ReturnError::RefundTooLarge { max });
        }
        self.refunded = Some(amount);
        self.status = ReturnStatus::Refunded;
        Ok(())
    }

    /// An exchange: the replacement is held like a new order (hold ids
    /// `exc.<id>.<line>`, no TTL), per SKU.
    pub fn exchange(
        &mut self,
        lines: &[(Sku, Qty, LocationId)],
        channel: Channel,
    ) -> Result<Vec<(Sku, Command)>, ReturnError> {
        self.require_open()?;
        let plain: Vec<(Sku, Qty)> = lines.iter().map(|(s, q, _)| (s.clone(), *q)).collect();
        merge(&plain)?;
        let mut out = Vec::with_capacity(lines.len());
        for (i, (sku, qty, location)) in lines.iter().enumerate() {
            let hold =
                HoldId::parse(&format!("exc.{}.{}", self.id, i)).map_err(ReturnError::BadId)?;
            out.push((
                sku.clone(),
                Command::Hold {
                    hold,
                    location: location.clone(),
                    qty: *qty,
                    channel,
                    ttl_ms: None,
                },
            ));
        }
        self.status = ReturnStatus::Exchanged;
        Ok(out)
    }
}
