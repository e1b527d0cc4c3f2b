//! Read models over the event feed (issue 10): the weekly report and the
//! accounting export, pure functions of the events the shell selected.
//!
//! The feed delivers every event at least once; these functions count each
//! once: events by `(source, seq)`, sales by sale id, orders and returns by
//! id (the latest snapshot wins). Money is `rust_decimal` in the sale's
//! currency; amounts are exact sums of line amounts (no rounding happens
//! in a sum); ratios are rounded to 4 decimal places and hours to 2,
//! half away from zero. Nothing here reads a clock or iterates a hash.
pub mod accounting;
pub mod calendar;
pub mod weekly;

use alloc::string::String;
use alloc::vec::Vec;

use rust_decimal::Decimal;

use crate::ids::{LocationId, Sku};
use crate::money::Currency;
use crate::order::OrderStatus;
use crate::sku::Event;
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;

/// One delivered feed event: its source (the producing object), its seq in
/// that source, when it happened, and its body.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fed<T> {
    pub source: String,
    pub seq: u64,
    pub at: Timestamp,
    pub body: T,
}

/// The position at one location after a SKU event (`available` on the
/// till's channel: on_hand - reserved - committed - unavailable).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PositionAfter {
    pub location: LocationId,
    pub on_hand: Qty,
    pub available: Qty,
}

/// What a SKU object forwards for each event of its log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StockBody {
    pub sku: Sku,
    pub event: Event,
    /// The positions the event changed, after its write (a transfer's
    /// shipment changes two locations).
    pub positions: Vec<PositionAfter>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
}

/// One priced line of a sale or an order. `tax` is the line's tax
/// (already rounded by whoever priced it); `amount` = qty * unit_price.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SoldLine {
    pub sku: Sku,
    pub qty: Qty,
    pub unit_price: Decimal,
    #[serde(default)]
    pub tax: Decimal,
    pub location: LocationId,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Paid {
    pub method: String,
    pub amount: Decimal,
}

/// A POS sale as the Terminal object forwards it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaleBody {
    pub sale_id: String,
    pub terminal_id: String,
    pub location: LocationId,
    /// The device's time: reports and the books use it (API.md).
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub currency: Currency,
    pub lines: Vec<SoldLine>,
    pub payments: Vec<Paid>,
    /// Whether the prices include tax, as recorded with the sale (the
    /// deployment's tax table when it was made; `true` for a sale made
    /// before sales recorded their tax: booked as charged).
    #[serde(default)]
    pub tax_inclusive: bool,
}

/// A status change of one part of an order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartChange {
    pub part: u32,
    pub to: OrderStatus,
    pub at: Timestamp,
}

/// An order as its object forwards it after every change (a snapshot: the
/// latest one of an order id is the truth).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderBody {
    pub id: String,
    pub channel: Channel,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub currency: Currency,
    pub tax_inclusive: bool,
    /// Lines with their part (`SoldLine::location` is the part's).
    pub lines: Vec<(u32, SoldLine)>,
    pub history: Vec<PartChange>,
}

impl OrderBody {
    /// When `part` became paid, unless it was cancelled after (a cancelled
    /// order is no sale).
    pub fn paid_at(&self, part: u32) -> Option<Timestamp> {
        let mut paid = None;
        for h in self.history.iter().filter(|h| h.part == part) {
            match h.to {
                OrderStatus::Paid => paid = paid.or(Some(h.at)),
                OrderStatus::Cancelled => return None,
                _ => {}
            }
        }
        paid
    }
}

/// One line of a return: units, why, where they were sold, what was paid.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnLine {
    pub sku: Sku,
    pub qty: Qty,
    pub reason: String,
    pub sold_at: LocationId,
    /// Paid for the `qty` units, tax included.
    pub paid: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    pub amount: Decimal,
    pub at: Timestamp,
}

/// A return as its object forwards it after every change (a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnBody {
    pub id: String,
    /// The sale id or the order id it returns.
    pub against: String,
    pub channel: Channel,
    pub currency: Currency,
    pub created_at: Timestamp,
    pub lines: Vec<ReturnLine>,
    pub refunds: Vec<Refund>,
}

/// Keeps one of each key: the last given (for snapshots, the highest seq).
fn latest<T: Clone>(items: &[Fed<T>], key: impl Fn(&Fed<T>) -> String) -> Vec<T> {
    let mut by: alloc::collections::BTreeMap<String, (u64, &T)> = Default::default();
    for f in items {
        let k = key(f);
        match by.get(&k) {
            Some((seq, _)) if *seq >= f.seq => {}
            _ => {
                by.insert(k, (f.seq, &f.body));
            }
        }
    }
    by.into_values().map(|(_, t)| t.clone()).collect()
}

/// The feed's inputs of a report, deduplicated: sales by sale id, orders
/// and returns by id (latest snapshot), stock events by (source, seq).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub stock: Vec<Fed<StockBody>>,
    pub sales: Vec<SaleBody>,
    pub orders: Vec<OrderBody>,
    pub returns: Vec<ReturnBody>,
}

impl Facts {
    pub fn new(
        stock: &[Fed<StockBody>],
        sales: &[Fed<SaleBody>],
        orders: &[Fed<OrderBody>],
        returns: &[Fed<ReturnBody>],
    ) -> Facts {
        let mut st: alloc::collections::BTreeMap<(&str, u64), &Fed<StockBody>> = Default::default();
        for f in stock {
            st.entry((f.source.as_str(), f.seq)).or_insert(f);
        }
        // One sale per id: the first delivered (a sale id never changes content).
        let mut sl: alloc::collections::BTreeMap<&str, &SaleBody> = Default::default();
        for f in sales {
            sl.entry(f.body.sale_id.as_str()).or_insert(&f.body);
        }
        Facts {
            stock: st.into_values().cloned().collect(),
            sales: sl.into_values().cloned().collect(),
            orders: latest(orders, |f| f.body.id.clone()),
            returns: latest(returns, |f| f.body.id.clone()),
        }
    }
}

/// A sale line counted in a period: POS sales at their `occurred_at`,
/// order lines when their part was paid (and not cancelled since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted<'a> {
    pub doc: &'a str,
    /// A POS sale's line (else an order's).
    pub from_sale: bool,
    pub channel: Channel,
    pub at: Timestamp,
    pub currency: Currency,
    pub tax_inclusive: bool,
    pub line: &'a SoldLine,
}

/// Every sale line in `[start, end)`, at `location` when given, in a fixed
/// order (document id, then line order).
pub fn sold_lines<'a>(
    facts: &'a Facts,
    start: Timestamp,
    end: Timestamp,
    location: Option<&LocationId>,
) -> Vec<Counted<'a>> {
    let here = |l: &LocationId| location.is_none_or(|x| x == l);
    let mut out = Vec::new();
    for s in &facts.sales {
        if s.occurred_at < start || s.occurred_at >= end {
            continue;
        }
        for line in s.lines.iter().filter(|l| here(&l.location)) {
            out.push(Counted {
                doc: &s.sale_id,
                from_sale: true,
                channel: Channel::Pos,
                at: s.occurred_at,
                currency: s.currency,
                tax_inclusive: s.tax_inclusive,
                line,
            });
        }
    }
    for o in &facts.orders {
        for (part, line) in &o.lines {
            let Some(at) = o.paid_at(*part) else { continue };
            if at < start || at >= end || !here(&line.location) {
                continue;
            }
            out.push(Counted {
                doc: &o.id,
                from_sale: false,
                channel: o.channel,
                at,
                currency: o.currency,
                tax_inclusive: o.tax_inclusive,
                line,
            });
        }
    }
    out
}

/// `a + b`, or `a` when the sum does not fit (amounts are bounded far
/// below Decimal's range by the API's limits; this never panics).
pub fn plus(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(a)
}

/// The sum of `items`, never panicking (see [`plus`]).
pub fn total(items: impl IntoIterator<Item = Decimal>) -> Decimal {
    items.into_iter().fold(Decimal::ZERO, plus)
}

/// A ratio `num / den` rounded to 4 places (half away from zero); `None`
/// when `den` is 0.
pub fn ratio(num: i64, den: i64) -> Option<Decimal> {
    if den == 0 {
        return None;
    }
    Decimal::from(num).checked_div(Decimal::from(den)).map(|r| {
        r.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .normalize()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn order(history: &[(OrderStatus, i64)]) -> OrderBody {
        OrderBody {
            id: "o1".into(),
            channel: Channel::Online,
            customer_id: None,
            currency: Currency::parse("EUR").unwrap(),
            tax_inclusive: false,
            lines: vec![],
            history: history
                .iter()
                .map(|(to, at)| PartChange {
                    part: 0,
                    to: *to,
                    at: Timestamp::from_ms(*at),
                })
                .collect(),
        }
    }

    #[test]
    fn an_order_is_sold_when_paid_and_not_once_cancelled() {
        use OrderStatus::*;
        assert_eq!(order(&[(New, 1)]).paid_at(0), None);
        assert_eq!(
            order(&[(New, 1), (Paid, 5), (Shipped, 9)]).paid_at(0),
            Some(Timestamp::from_ms(5))
        );
        assert_eq!(
            order(&[(New, 1), (Paid, 5), (Cancelled, 9)]).paid_at(0),
            None
        );
        assert_eq!(order(&[(New, 1), (Paid, 5)]).paid_at(1), None);
    }

    #[test]
    fn the_latest_snapshot_of_each_id_wins_and_sales_count_once() {
        let fed = |seq, status: OrderStatus| Fed {
            source: "order:o1".into(),
            seq,
            at: Timestamp::from_ms(seq as i64),
            body: order(&[(status, 1)]),
        };
        let f = Facts::new(
            &[],
            &[],
            &[
                fed(3, OrderStatus::Paid),
                fed(1, OrderStatus::New),
                fed(2, OrderStatus::New),
            ],
            &[],
        );
        assert_eq!(f.orders.len(), 1);
        assert_eq!(f.orders[0].history[0].to, OrderStatus::Paid);
        assert_eq!(ratio(1, 3).unwrap().to_string(), "0.3333");
        assert_eq!(ratio(2, 4).unwrap().to_string(), "0.5");
        assert_eq!(ratio(1, 0), None);
    }
}
