//! The accounting export: a day's sales and refunds as receipts shaped for
//! QuickBooks Online (`SalesReceipt`, `RefundReceipt`). Pure: the shell
//! renders them as QBO JSON or CSV and posts them.
//!
//! - A sales receipt per sale (POS) or per order paid that day (its lines
//!   of the parts paid that day), lines by SKU as sold: amount = qty *
//!   unit_price exactly, tax per line as priced: an order's when it was
//!   placed, a POS sale's when it was made (the Worker records each line's
//!   `TaxTable::line` with the sale; its receipt reads the same figures).
//!   A sale fed before sales recorded their tax carries 0 and is booked as
//!   charged, tax included (`LineTax::as_charged`).
//! - A refund receipt per refund made that day: the refunded amount (tax
//!   included, as paid) spread over the return's lines in proportion to
//!   what was paid for them, rounded to the currency's minor unit half away
//!   from zero, the last line taking the remainder so lines add up exactly.
//! - `net` of the day equals the weekly report's revenue over the same
//!   period, to the cent: both come from [`super::sold_lines`].
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use rust_decimal::{Decimal, RoundingStrategy};

use super::weekly::channel_name;
use super::{plus, sold_lines, total, Facts};
use crate::ids::{LocationId, Sku};
use crate::money::Currency;
use crate::stock::Qty;
use crate::time::Timestamp;

/// QuickBooks Online's longest `DocNumber`.
pub const MAX_DOC_NUMBER: usize = 21;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SalesReceipt,
    RefundReceipt,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptLine {
    pub sku: Sku,
    pub qty: Qty,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub tax: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub kind: Kind,
    /// Unique per receipt: `S:<sale>`, `O:<order>`, `R:<return>:<n>`.
    pub key: String,
    /// The sale, order or return id, shortened to QBO's 21 characters when
    /// longer (a stable hash keeps it unique; `key` has the full id).
    pub doc_number: String,
    pub txn_date: String,
    pub channel: String,
    pub location: Option<LocationId>,
    pub currency: Currency,
    pub tax_inclusive: bool,
    pub payment_method: String,
    pub lines: Vec<ReceiptLine>,
    /// Sum of the lines' amounts.
    pub net: Decimal,
    pub total_tax: Decimal,
    /// What changed hands: net + tax, or net when prices include tax.
    pub total: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayTotal {
    pub currency: Currency,
    pub sales_net: Decimal,
    pub sales_tax: Decimal,
    pub sales_total: Decimal,
    pub refunds_total: Decimal,
    pub receipts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayBook {
    pub date: String,
    pub receipts: Vec<Receipt>,
    pub totals: Vec<DayTotal>,
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An id as a QBO `DocNumber` (at most 21 characters).
pub fn doc_number(id: &str) -> String {
    if id.len() <= MAX_DOC_NUMBER {
        return id.to_string();
    }
    format!("{}~{:08x}", &id[..12], fnv(id) as u32)
}

fn round(d: Decimal, c: Currency) -> Decimal {
    d.round_dp_with_strategy(c.minor_units(), RoundingStrategy::MidpointAwayFromZero)
}

/// The day `[start, end)` (`date` is its `YYYY-MM-DD`) as receipts.
pub fn day_book(facts: &Facts, start: Timestamp, end: Timestamp, date: &str) -> DayBook {
    let mut receipts: BTreeMap<String, Receipt> = BTreeMap::new();
    for c in sold_lines(facts, start, end, None) {
        let (key, method) = if c.from_sale {
            let sale = facts.sales.iter().find(|s| s.sale_id == c.doc);
            let method = match sale.map(|s| s.payments.as_slice()) {
                Some([p]) => p.method.clone(),
                Some([]) | None => "unpaid".to_string(),
                Some(_) => "split".to_string(),
            };
            (format!("S:{}", c.doc), method)
        } else {
            (format!("O:{}", c.doc), "online".to_string())
        };
        let r = receipts.entry(key.clone()).or_insert_with(|| Receipt {
            kind: Kind::SalesReceipt,
            key,
            doc_number: doc_number(c.doc),
            txn_date: date.to_string(),
            channel: channel_name(c.channel).to_string(),
            location: Some(c.line.location.clone()),
            currency: c.currency,
            tax_inclusive: c.tax_inclusive,
            payment_method: method,
            lines: Vec::new(),
            net: Decimal::ZERO,
            total_tax: Decimal::ZERO,
            total: Decimal::ZERO,
        });
        if r.location.as_ref() != Some(&c.line.location) {
            r.location = None;
        }
        let amount = c
            .line
            .unit_price
            .checked_mul(Decimal::from(c.line.qty))
            .unwrap_or_default();
        r.lines.push(ReceiptLine {
            sku: c.line.sku.clone(),
            qty: c.line.qty,
            unit_price: c.line.unit_price,
            amount,
            tax: c.line.tax,
        });
    }
    for r in &facts.returns {
        for (n, refund) in r.refunds.iter().enumerate() {
            if refund.at < start || refund.at >= end {
                continue;
            }
            let paid = total(r.lines.iter().map(|l| l.paid));
            let mut lines = Vec::new();
            let mut left = refund.amount;
            for (i, l) in r.lines.iter().enumerate() {
                let amount = if i + 1 == r.lines.len() {
                    left
                } else if paid.is_zero() {
                    Decimal::ZERO
                } else {
                    let share = refund
                        .amount
                        .checked_mul(l.paid)
                        .and_then(|x| x.checked_div(paid))
                        .unwrap_or_default();
                    round(share, r.currency)
                };
                left = left.checked_sub(amount).unwrap_or(left);
                let unit = if l.qty > 0 {
                    round(
                        amount.checked_div(Decimal::from(l.qty)).unwrap_or(amount),
                        r.currency,
                    )
                } else {
                    amount
                };
                lines.push(ReceiptLine {
                    sku: l.sku.clone(),
                    qty: l.qty,
                    unit_price: unit,
                    amount,
                    tax: Decimal::ZERO,
                });
            }
            let id = format!("{}-{}", r.id, n + 1);
            let key = format!("R:{}:{}", r.id, n + 1);
            receipts.insert(
                key.clone(),
                Receipt {
                    kind: Kind::RefundReceipt,
                    key,
                    doc_number: doc_number(&id),
                    txn_date: date.to_string(),
                    channel: channel_name(r.channel).to_string(),
                    location: r.lines.first().map(|l| l.sold_at.clone()),
                    currency: r.currency,
                    tax_inclusive: true,
                    payment_method: "refund".to_string(),
                    lines,
                    net: Decimal::ZERO,
                    total_tax: Decimal::ZERO,
                    total: Decimal::ZERO,
                },
            );
        }
    }
    let mut out: Vec<Receipt> = receipts.into_values().collect();
    let mut totals: BTreeMap<Currency, DayTotal> = BTreeMap::new();
    for r in &mut out {
        r.net = total(r.lines.iter().map(|l| l.amount));
        r.total_tax = total(r.lines.iter().map(|l| l.tax));
        r.total = if r.tax_inclusive {
            r.net
        } else {
            plus(r.net, r.total_tax)
        };
        let t = totals.entry(r.currency).or_insert(DayTotal {
            currency: r.currency,
            sales_net: Decimal::ZERO,
            sales_tax: Decimal::ZERO,
            sales_total: Decimal::ZERO,
            refunds_total: Decimal::ZERO,
            receipts: 0,
        });
        t.receipts += 1;
        match r.kind {
            Kind::SalesReceipt => {
                t.sales_net = plus(t.sales_net, r.net);
                t.sales_tax = plus(t.sales_tax, r.total_tax);
                t.sales_total = plus(t.sales_total, r.total);
            }
            Kind::RefundReceipt => t.refunds_total = plus(t.refunds_total, r.total),
        }
    }
    DayBook {
        date: date.to_string(),
        receipts: out,
        totals: totals.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Refund, ReturnBody, ReturnLine};
    use crate::stock::Channel;
    use alloc::vec;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_refund_is_spread_over_the_lines_and_adds_up_to_the_cent() {
        let eur = Currency::parse("EUR").unwrap();
        let line = |sku: &str, qty, paid: &str| ReturnLine {
            sku: Sku::parse(sku).unwrap(),
            qty,
            reason: "x".into(),
            sold_at: LocationId::parse("store-1").unwrap(),
            paid: d(paid),
        };
        let r = ReturnBody {
            id: "r1".into(),
            against: "s1".into(),
            channel: Channel::Pos,
            currency: eur,
            created_at: Timestamp::from_ms(0),
            lines: vec![
                line("A", 3, "10.00"),
                line("B", 1, "10.00"),
                line("C", 1, "10.00"),
            ],
            refunds: vec![Refund {
                amount: d("10.00"),
                at: Timestamp::from_ms(10),
            }],
        };
        let facts = Facts {
            returns: vec![r],
            ..Facts::default()
        };
        let b = day_book(
            &facts,
            Timestamp::from_ms(0),
            Timestamp::from_ms(100),
            "1970-01-01",
        );
        let rr = &b.receipts[0];
        assert_eq!(rr.kind, Kind::RefundReceipt);
        let amounts: Vec<String> = rr.lines.iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(amounts, ["3.33", "3.33", "3.34"]);
        assert_eq!(rr.total, d("10.00"));
        assert_eq!(b.totals[0].refunds_total, d("10.00"));
        assert_eq!(b.totals[0].sales_total, Decimal::ZERO);
    }

    #[test]
    fn long_ids_become_unique_doc_numbers_within_qbos_limit() {
        let a = doc_number("order-0000000000000000000000000000001");
        let b = doc_number("order-0000000000000000000000000000002");
        assert!(a.len() <= MAX_DOC_NUMBER && b.len() <= MAX_DOC_NUMBER);
        assert_ne!(a, b);
        assert_eq!(doc_number("s-1"), "s-1");
    }
}
