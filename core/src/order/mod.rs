//! The order lifecycle of API.md as a pure state machine, and the per-SKU
//! stock commands each transition issues (the `Order` coordinator sends them
//! to the SKU objects; every one is idempotent by its hold id).
//!
//! ```text
//! new -> paid -> ready_to_pick -> packed -> shipped -> returned
//!                                   \-> ready_for_pickup -> collected -> returned
//! new | paid | ready_to_pick | packed | ready_for_pickup -> cancelled
//! ```
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::{HoldId, LocationId, OrderId, Sku};
use crate::money::{Currency, Money, MoneyError};
use crate::sku::Command;
use crate::stock::{Channel, Qty, MAX_LINE_QTY};

/// Most lines in one order.
pub const MAX_ORDER_LINES: usize = 100;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    New,
    Paid,
    ReadyToPick,
    Packed,
    Shipped,
    ReadyForPickup,
    Collected,
    Cancelled,
    Returned,
}

use OrderStatus::*;

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        New,
        Paid,
        ReadyToPick,
        Packed,
        Shipped,
        ReadyForPickup,
        Collected,
        Cancelled,
        Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            New => "new",
            Paid => "paid",
            ReadyToPick => "ready_to_pick",
            Packed => "packed",
            Shipped => "shipped",
            ReadyForPickup => "ready_for_pickup",
            Collected => "collected",
            Cancelled => "cancelled",
            Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Where an order may go from here, in lifecycle order.
    pub fn allowed(self) -> &'static [OrderStatus] {
        match self {
            New => &[Paid, Cancelled],
            Paid => &[ReadyToPick, Cancelled],
            ReadyToPick => &[Packed, Cancelled],
            Packed => &[Shipped, ReadyForPickup, Cancelled],
            ReadyForPickup => &[Collected, Cancelled],
            Shipped | Collected => &[Returned],
            Cancelled | Returned => &[],
        }
    }

    /// No transition leaves this state.
    pub fn is_final(self) -> bool {
        self.allowed().is_empty()
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a transition does to the stock of every line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockEffect {
    /// Nothing moves.
    None,
    /// reserved -> committed (paid).
    Commit,
    /// committed units leave on_hand (shipped, collected).
    Fulfill,
    /// whatever is held or committed goes back (cancelled).
    Release,
}

/// `invalid_transition` of the API: carries `from`, `to` and `allowed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub allowed: &'static [OrderStatus],
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot go from {} to {}; allowed:", self.from, self.to)?;
        if self.allowed.is_empty() {
            return f.write_str(" none");
        }
        for a in self.allowed {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// The pure transition function: is `from -> to` allowed, and what it does to stock.
pub fn transition(from: OrderStatus, to: OrderStatus) -> Result<StockEffect, InvalidTransition> {
    if !from.allowed().contains(&to) {
        return Err(InvalidTransition {
            from,
            to,
            allowed: from.allowed(),
        });
    }
    Ok(match to {
        Paid => StockEffect::Commit,
        Shipped | Collected => StockEffect::Fulfill,
        Cancelled => StockEffect::Release,
        _ => StockEffect::None,
    })
}

/// One line of an order, with the location serving it and the hold that
/// carries its units in that SKU's object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub qty: Qty,
    pub unit_price: Money,
    pub location: LocationId,
    pub hold: HoldId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderError {
    NoLines,
    TooManyLines { max: usize },
    QtyOutOfRange { line: usize, qty: Qty },
    NegativePrice { line: usize },
    Money(MoneyError),
    Transition(InvalidTransition),
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::NoLines => f.write_str("an order needs at least one line"),
            OrderError::TooManyLines { max } => write!(f, "an order has at most {max} lines"),
            OrderError::QtyOutOfRange { line, qty } => {
                write!(
                    f,
                    "line {line}: quantity {qty} is outside 1..={MAX_LINE_QTY}"
                )
            }
            OrderError::NegativePrice { line } => write!(f, "line {line}: negative unit price"),
            OrderError::Money(e) => write!(f, "{e}"),
            OrderError::Transition(e) => write!(f, "{e}"),
        }
    }
}

/// An order and its history.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub channel: Channel,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    /// Every status it was in, in order, starting with `new`.
    pub history: Vec<OrderStatus>,
    /// The lines' holds were a reservation's (already held, with its TTL).
    pub from_reservation: bool,
}

/// The hold id of an order's line: `ord.<order>.<line>` (fits [`crate::ids::MAX_HOLD_LEN`]).
/// Always `Ok` for a valid order id and a line below [`MAX_ORDER_LINES`].
pub fn order_hold_id(order: &OrderId, line: usize) -> Result<HoldId, crate::ids::IdError> {
    HoldId::parse(&format!("ord.{}.{}", order.as_str(), line))
}

impl Order {
    /// A new order. `lines` are `(sku, qty, unit_price, location, hold)`;
    /// without a reservation, pass [`order_hold_id`] holds and send
    /// [`Order::place_commands`] to hold the stock.
    pub fn new(
        id: OrderId,
        channel: Channel,
        lines: Vec<OrderLine>,
        from_reservation: bool,
    ) -> Result<Order, OrderError> {
        if lines.is_empty() {
            return Err(OrderError::NoLines);
        }
        if lines.len() > MAX_ORDER_LINES {
            return Err(OrderError::TooManyLines {
                max: MAX_ORDER_LINES,
            });
        }
        let currency = lines[0].unit_price.currency;
        for (i, l) in lines.iter().enumerate() {
            if !(1..=MAX_LINE_QTY).contains(&l.qty) {
                return Err(OrderError::QtyOutOfRange {
                    line: i,
                    qty: l.qty,
                });
            }
            if l.unit_price.is_negative() {
                return Err(OrderError::NegativePrice { line: i });
            }
            if l.unit_price.currency != currency {
                return Err(OrderError::Money(MoneyError::CurrencyMismatch));
            }
        }
        let order = Order {
            id,
            channel,
            status: New,
            lines,
            history: alloc::vec![New],
            from_reservation,
        };
        order.total()?;
        Ok(order)
    }

    pub fn currency(&self) -> Currency {
        self.lines[0].unit_price.currency
    }

    /// The sum of `unit_price * qty`, exact.
    pub fn total(&self) -> Result<Money, OrderError> {
        let currency = self.lines[0].unit_price.currency;
        self.lines
            .iter()
            .try_fold(Money::zero(currency), |acc, l| {
                acc.checked_add(l.unit_price.checked_mul_qty(l.qty)?)
            })
            .map_err(OrderError::Money)
    }

    /// The per-SKU commands that hold the stock of a new order (none when its
    /// lines reuse a reservation's holds). Order holds have no TTL.
    pub fn place_commands(&self) -> Vec<(Sku, Command)> {
        if self.from_reservation {
            return Vec::new();
        }
        self.lines
            .iter()
            .map(|l| {
                (
                    l.sku.clone(),
                    Command::Hold {
                        hold: l.hold.clone(),
                        location: l.location.clone(),
                        qty: l.qty,
                        channel: self.channel,
                        ttl_ms: None,
                    },
                )
            })
            .collect()
    }

    /// The per-SKU commands for a stock effect.
    pub fn effect_commands(&self, effect: StockEffect) -> Vec<(Sku, Command)> {
        self.lines
            .iter()
            .filter_map(|l| {
                let hold = l.hold.clone();
                let cmd = match effect {
                    StockEffect::None => return None,
                    StockEffect::Commit => Command::Commit { hold },
                    StockEffect::Fulfill => Command::Fulfill { hold },
                    StockEffect::Release => Command::Release { hold },
                };
                Some((l.sku.clone(), cmd))
            })
            .collect()
    }

    /// Moves the order to `to` and returns the per-SKU commands to issue.
    /// Nothing changes on an invalid transition.
    pub fn transition(&mut self, to: OrderStatus) -> Result<Vec<(Sku, Command)>, OrderError> {
        let effect = transition(self.status, to).map_err(OrderError::Transition)?;
        self.status = to;
        self.history.push(to);
        Ok(self.effect_commands(effect))
    }

    /// Units of `sku` this order took out of stock (shipped or collected).
    pub fn fulfilled_qty(&self, sku: &Sku) -> Qty {
        if !self
            .history
            .iter()
            .any(|s| matches!(s, Shipped | Collected))
        {
            return 0;
        }
        self.lines
            .iter()
            .filter(|l| &l.sku == sku)
            .map(|l| l.qty)
            .sum()
    }
}

mod coordinator;
mod waits;

pub use waits::{WaitKey, Waits, MAX_WAITING_KEYS};

pub use coordinator::{
    parse_order_hold, CreateOrder, Done, Handled, HistoryEntry, OrderFailure, OrderMachine,
    PartView, StockLine, Tag, Target, Ticket, Transmit, MAX_PARTS, ORDER_PLACEMENT_TTL_MS,
};
