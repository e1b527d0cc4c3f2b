//! Receipts: one model for every channel (a POS sale, an online order at
//! payment and at collection or shipping, a return, a refund, an exchange),
//! built from what the sale, order or return recorded, and three renderings
//! of it: JSON (serde), HTML for 80 mm thermal paper and email
//! ([`html::render`]), and plain text of at most [`text::COLUMNS`] columns for
//! ESC/POS printers ([`text::render`]).
//!
//! Money follows [`crate::tax`]: each line's tax is the one its source
//! recorded when it has one (a POS sale records `TaxTable::line` of each
//! line when it is made: [`LineInput::tax`]), else `TaxTable::line` now
//! (the rule the order was priced with); the totals are the sums of the
//! lines, so a receipt's totals equal the sale's and the accounting
//! export's to the cent. Returned lines count negative. A receipt is built
//! once and never changes (the Worker stores the issued form); a reprint is
//! the same receipt marked as a copy.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::LocationId;
use crate::money::{Currency, Money, MoneyError};
use crate::stock::{Qty, MAX_LINE_QTY};
use crate::tax::{LineTax, TaxError, TaxTable};
use crate::time::Timestamp;

pub mod code128;
pub mod html;
pub mod outbox;
pub mod text;

/// Most lines on one receipt (a sale has at most 100; an exchange shows the
/// returned lines and the replacement's).
pub const MAX_LINES: usize = 200;
/// Most payments (and refunds) on one receipt.
pub const MAX_PAYMENTS: usize = 100;
/// Longest return window, in days.
pub const MAX_RETURN_WINDOW_DAYS: u32 = 365;
/// Longest title, shop or location name kept (characters).
pub const MAX_NAME_CHARS: usize = 200;
/// Most options per line.
pub const MAX_OPTIONS: usize = 10;
const DAY_MS: i64 = 86_400_000;

/// What a receipt records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// A POS sale.
    Sale,
    /// An online order when it was paid.
    OrderPaid,
    /// An online order when it was collected or shipped.
    OrderFulfilled,
    /// Units taken back, nothing refunded yet.
    Return,
    /// Units taken back and money paid back.
    Refund,
    /// Units taken back against replacement units; the difference paid or refunded.
    Exchange,
}

impl ReceiptKind {
    pub fn title(self) -> &'static str {
        match self {
            ReceiptKind::Sale => "SALE",
            ReceiptKind::OrderPaid => "ORDER PAID",
            ReceiptKind::OrderFulfilled => "ORDER FULFILLED",
            ReceiptKind::Return => "RETURN",
            ReceiptKind::Refund => "REFUND",
            ReceiptKind::Exchange => "EXCHANGE",
        }
    }
}

/// Whether a line's units left with the customer or came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sold,
    Returned,
}

/// One line as the source recorded it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineInput {
    pub sku: String,
    pub title: String,
    /// `(name, value)`, in the catalog's order.
    pub options: Vec<(String, String)>,
    pub qty: Qty,
    /// The price charged per unit.
    pub unit_price: Money,
    /// The catalog's price; a charged price below it is shown as a discount.
    pub catalog_price: Option<Money>,
    pub tax_code: Option<String>,
    /// Where the line was sold or fulfilled, when not the receipt's location
    /// (a split order's part): its tax is that location's.
    pub tax_location: Option<LocationId>,
    pub direction: Direction,
    /// The line's tax as its source recorded it (a POS sale): used as it
    /// is, never recomputed, after checking it fits the line
    /// ([`LineTax::fits`]). `None`: computed with the tax table.
    #[serde(default)]
    pub tax: Option<LineTax>,
}

/// A payment (or, in `refunds`, money paid back), always a positive amount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    pub method: String,
    pub amount: Money,
}

/// Loyalty figures, from the customer's record (issue 10) when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Loyalty {
    pub earned: i64,
    pub redeemed: i64,
    pub balance: i64,
}

/// The customer, when the sale or order names one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: Option<String>,
    pub loyalty: Option<Loyalty>,
}

/// Everything a receipt is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptInput {
    pub kind: ReceiptKind,
    /// The receipt number: the sale, order or return id.
    pub number: String,
    /// For a return, refund or exchange: the sale or order it returns.
    pub reference: Option<String>,
    pub shop: String,
    pub location: LocationId,
    pub location_name: String,
    pub issued_at: Timestamp,
    pub currency: Currency,
    pub lines: Vec<LineInput>,
    pub payments: Vec<Payment>,
    pub refunds: Vec<Payment>,
    pub customer: Option<Customer>,
    /// Days after `issued_at` a sale's units may be returned (0: no window shown).
    pub return_window_days: u32,
    /// Whether the prices include tax, as the source recorded it (a POS
    /// sale); `None`: the tax table's setting.
    pub tax_inclusive: Option<bool>,
}

/// One line as printed. Amounts are positive; `direction` says the sign.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptLine {
    pub sku: String,
    pub title: String,
    pub options: Vec<(String, String)>,
    pub qty: Qty,
    pub unit_price: Money,
    /// `unit_price x qty`.
    pub amount: Money,
    /// `(catalog price - unit price) x qty` when the till sold below the catalog.
    pub discount: Option<Money>,
    pub catalog_price: Option<Money>,
    pub direction: Direction,
    pub tax: LineTax,
}

/// The tax at one rate: sums of the lines at that rate (signed: returned
/// lines count negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaxSummary {
    pub rate: crate::money::Decimal,
    pub net: Money,
    pub tax: Money,
    pub gross: Money,
}

/// The totals (signed: returned lines count negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptTotals {
    /// Sum of the line amounts as charged.
    pub subtotal: Money,
    /// Sum of the discounts (positive).
    pub discount: Money,
    pub net: Money,
    pub tax: Money,
    /// What the customer owes (negative: what the shop owes back).
    pub total: Money,
    /// Sum of the payments.
    pub paid: Money,
    /// Sum of the refunds.
    pub refunded: Money,
    /// Cash handed back: paid beyond a positive total.
    pub change: Money,
}

/// A receipt, as issued.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub kind: ReceiptKind,
    pub number: String,
    pub reference: Option<String>,
    pub shop: String,
    pub location: LocationId,
    pub location_name: String,
    pub issued_at: Timestamp,
    pub currency: Currency,
    pub tax_inclusive: bool,
    pub lines: Vec<ReceiptLine>,
    pub taxes: Vec<TaxSummary>,
    pub totals: ReceiptTotals,
    pub payments: Vec<Payment>,
    pub refunds: Vec<Payment>,
    pub customer: Option<Customer>,
    pub return_window_days: u32,
    /// The last moment the sold units may be returned.
    pub return_by: Option<Timestamp>,
    /// What the barcode encodes (Code 128 B): the receipt number.
    pub barcode: String,
}

/// Why a receipt could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptError {
    TooManyLines {
        max: usize,
    },
    TooManyPayments {
        max: usize,
    },
    NoLines,
    BadQty {
        sku: String,
    },
    BadReturnWindow {
        max: u32,
    },
    BadNumber(code128::BarcodeError),
    /// A recorded line tax that does not fit its line (another amount,
    /// currency, or parts that do not add up).
    RecordedTax {
        sku: String,
    },
    Tax(TaxError),
    Money(MoneyError),
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiptError::TooManyLines { max } => write!(f, "a receipt has at most {max} lines"),
            ReceiptError::TooManyPayments { max } => {
                write!(f, "a receipt has at most {max} payments and {max} refunds")
            }
            ReceiptError::NoLines => f.write_str("a receipt needs at least one line"),
            ReceiptError::BadQty { sku } => {
                write!(f, "{sku}: quantity must be 1 to {MAX_LINE_QTY}")
            }
            ReceiptError::BadReturnWindow { max } => {
                write!(f, "the return window is 0 to {max} days")
            }
            ReceiptError::BadNumber(e) => write!(f, "receipt number has no barcode: {e:?}"),
            ReceiptError::RecordedTax { sku } => {
                write!(f, "{sku}: the recorded tax does not fit the line")
            }
            ReceiptError::Tax(e) => write!(f, "{e}"),
            ReceiptError::Money(e) => write!(f, "{e}"),
        }
    }
}

impl From<TaxError> for ReceiptError {
    fn from(e: TaxError) -> Self {
        ReceiptError::Tax(e)
    }
}

impl From<MoneyError> for ReceiptError {
    fn from(e: MoneyError) -> Self {
        ReceiptError::Money(e)
    }
}

/// At most `max` characters of `s`, control characters dropped.
fn clip(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn signed(m: Money, d: Direction) -> Result<Money, MoneyError> {
    match d {
        Direction::Sold => Ok(m),
        Direction::Returned => Money::zero(m.currency).checked_sub(m),
    }
}

impl Receipt {
    /// Builds the receipt: each line's recorded tax, or its tax with `tax`
    /// at the receipt's location, per-rate sums, totals, change. Refuses what it cannot
    /// print honestly (no lines, a currency mix, more than the limits).
    pub fn build(input: ReceiptInput, tax: &TaxTable) -> Result<Receipt, ReceiptError> {
        if input.lines.is_empty() {
            return Err(ReceiptError::NoLines);
        }
        if input.lines.len() > MAX_LINES {
            return Err(ReceiptError::TooManyLines { max: MAX_LINES });
        }
        if input.payments.len() > MAX_PAYMENTS || input.refunds.len() > MAX_PAYMENTS {
            return Err(ReceiptError::TooManyPayments { max: MAX_PAYMENTS });
        }
        if input.return_window_days > MAX_RETURN_WINDOW_DAYS {
            return Err(ReceiptError::BadReturnWindow {
                max: MAX_RETURN_WINDOW_DAYS,
            });
        }
        code128::symbols(&input.number).map_err(ReceiptError::BadNumber)?;
        let cur = input.currency;
        let zero = Money::zero(cur);
        let inclusive = input.tax_inclusive.unwrap_or(tax.inclusive);
        let mut lines = Vec::with_capacity(input.lines.len());
        let mut taxes: Vec<TaxSummary> = Vec::new();
        let (mut subtotal, mut discount, mut net, mut tax_sum, mut total) =
            (zero, zero, zero, zero, zero);
        for l in input.lines {
            if !(1..=MAX_LINE_QTY).contains(&l.qty) {
                return Err(ReceiptError::BadQty { sku: l.sku });
            }
            if l.unit_price.currency != cur || l.unit_price.is_negative() {
                return Err(if l.unit_price.currency != cur {
                    MoneyError::CurrencyMismatch
                } else {
                    MoneyError::Negative
                }
                .into());
            }
            let amount = l.unit_price.checked_mul_qty(l.qty)?;
            let lt = match l.tax {
                Some(t) if t.fits(inclusive, amount) => t,
                Some(_) => return Err(ReceiptError::RecordedTax { sku: l.sku }),
                None => {
                    let at = l.tax_location.as_ref().unwrap_or(&input.location);
                    let t = tax.line(at, l.tax_code.as_deref(), l.unit_price, l.qty)?;
                    if tax.inclusive != inclusive {
                        // A table of the other convention cannot price a
                        // line of this receipt honestly.
                        return Err(ReceiptError::RecordedTax { sku: l.sku });
                    }
                    t
                }
            };
            let line_discount = match l.catalog_price {
                Some(c)
                    if l.direction == Direction::Sold
                        && c.currency == cur
                        && c.amount > l.unit_price.amount =>
                {
                    Some(c.checked_sub(l.unit_price)?.checked_mul_qty(l.qty)?)
                }
                _ => None,
            };
            let d = l.direction;
            subtotal = subtotal.checked_add(signed(amount, d)?)?;
            if let Some(x) = line_discount {
                discount = discount.checked_add(x)?;
            }
            net = net.checked_add(signed(lt.net, d)?)?;
            tax_sum = tax_sum.checked_add(signed(lt.tax, d)?)?;
            total = total.checked_add(signed(lt.gross, d)?)?;
            let pos = taxes.iter().position(|t| t.rate == lt.rate);
            let slot = match pos {
                Some(i) => &mut taxes[i],
                None => {
                    taxes.push(TaxSummary {
                        rate: lt.rate,
                        net: zero,
                        tax: zero,
                        gross: zero,
                    });
                    let last = taxes.len() - 1;
                    &mut taxes[last]
                }
            };
            slot.net = slot.net.checked_add(signed(lt.net, d)?)?;
            slot.tax = slot.tax.checked_add(signed(lt.tax, d)?)?;
            slot.gross = slot.gross.checked_add(signed(lt.gross, d)?)?;
            lines.push(ReceiptLine {
                sku: clip(&l.sku, 64),
                title: clip(&l.title, MAX_NAME_CHARS),
                options: l
                    .options
                    .iter()
                    .take(MAX_OPTIONS)
                    .map(|(k, v)| (clip(k, 64), clip(v, 64)))
                    .collect(),
                qty: l.qty,
                unit_price: l.unit_price,
                amount,
                discount: line_discount,
                catalog_price: l.catalog_price,
                direction: d,
                tax: lt,
            });
        }
        taxes.sort_by_key(|a| a.rate);
        let check = |ps: &[Payment]| -> Result<Money, MoneyError> {
            ps.iter().try_fold(zero, |acc, p| {
                if p.amount.is_negative() {
                    return Err(MoneyError::Negative);
                }
                acc.checked_add(p.amount)
            })
        };
        let paid = check(&input.payments)?;
        let refunded = check(&input.refunds)?;
        let change = if paid.amount > total.amount && !total.is_negative() {
            paid.checked_sub(total)?
        } else {
            zero
        };
        let sells = matches!(
            input.kind,
            ReceiptKind::Sale
                | ReceiptKind::OrderPaid
                | ReceiptKind::OrderFulfilled
                | ReceiptKind::Exchange
        );
        let return_by = (sells && input.return_window_days > 0).then(|| {
            input
                .issued_at
                .plus_ms(i64::from(input.return_window_days) * DAY_MS)
        });
        Ok(Receipt {
            kind: input.kind,
            barcode: input.number.clone(),
            number: input.number,
            reference: input.reference.map(|r| clip(&r, 64)),
            shop: clip(&input.shop, MAX_NAME_CHARS),
            location: input.location,
            location_name: clip(&input.location_name, MAX_NAME_CHARS),
            issued_at: input.issued_at,
            currency: cur,
            tax_inclusive: inclusive,
            lines,
            taxes,
            totals: ReceiptTotals {
                subtotal,
                discount,
                net,
                tax: tax_sum,
                total,
                paid,
                refunded,
                change,
            },
            payments: input
                .payments
                .into_iter()
                .map(|p| Payment {
                    method: clip(&p.method, 32),
                    amount: p.amount,
                })
                .collect(),
            refunds: input
                .refunds
                .into_iter()
                .map(|p| Payment {
                    method: clip(&p.method, 32),
                    amount: p.amount,
                })
                .collect(),
            customer: input.customer.map(|c| Customer {
                id: clip(&c.id, 64),
                name: c.name.map(|n| clip(&n, MAX_NAME_CHARS)),
                loyalty: c.loyalty,
            }),
            return_window_days: input.return_window_days,
            return_by,
        })
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a timestamp.
pub fn format_time(t: Timestamp) -> String {
    let ms = t.as_ms();
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS) / 1000;
    let (y, m, d) = civil_from_days(days);
    alloc::format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        in_day / 3600,
        (in_day % 3600) / 60
    )
}

/// `YYYY-MM-DD` (UTC) of a timestamp.
pub fn format_date(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.as_ms().div_euclid(DAY_MS));
    alloc::format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A tax rate as a percentage: `0.08` is `8%`, `0.055` is `5.5%`.
pub fn percent(rate: crate::money::Decimal) -> String {
    let p = rate * crate::money::Decimal::from(100);
    alloc::format!("{}%", p.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(format_time(Timestamp(0)), "1970-01-01 00:00");
        // 2026-11-29T09:12:00Z
        assert_eq!(
            format_time(Timestamp(1_795_943_520_000)),
            "2026-11-29 09:12"
        );
        assert_eq!(format_date(Timestamp(951_782_400_000)), "2000-02-29");
        assert_eq!(format_date(Timestamp(-86_400_000)), "1969-12-31");
    }

    #[test]
    fn percent_is_normalised() {
        assert_eq!(percent("0.08".parse().unwrap()), "8%");
        assert_eq!(percent("0.055".parse().unwrap()), "5.5%");
        assert_eq!(percent("0".parse().unwrap()), "0%");
    }
}
