//! Sales tax: a table of rates per location and tax code, prices either
//! inclusive or exclusive of tax, and the tax of one order or sale line.
//!
//! Rounding (the rule every total follows, stated once): tax is computed
//! per line (unit price times quantity), rounded to the currency's minor
//! unit, midpoint away from zero; totals are the exact sums of the rounded
//! lines. With inclusive prices the line's gross is its price and
//! `tax = round(gross * rate / (1 + rate))`, `net = gross - tax`; with
//! exclusive prices `net` is the price, `tax = round(net * rate)`,
//! `gross = net + tax`. So net + tax = gross on every line and in total, to
//! the cent.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::LocationId;
use crate::money::{Currency, Decimal, Money, MoneyError, RoundingStrategy};
use crate::stock::Qty;

/// Most rows in a tax table.
pub const MAX_TAX_RATES: usize = 200;
/// Most characters of a tax code.
pub const MAX_TAX_CODE_LEN: usize = 32;
/// The location of a row that applies wherever no row names the location.
pub const ANY_LOCATION: &str = "*";
/// The rounding of every line's tax (see the module documentation).
pub const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;
/// The rounding rule in words, as the API states it.
pub const ROUNDING_RULE: &str =
    "tax per line (unit price x quantity), rounded to the currency's minor unit, half away from zero; totals are sums of the rounded lines";

/// One row: the rate of `code` at `location` (or at [`ANY_LOCATION`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaxRate {
    pub location: String,
    pub code: String,
    /// A fraction: `0.2` is 20 %. `0 <= rate <= 1`.
    pub rate: Decimal,
}

/// Why a tax table or a line's tax could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaxError {
    TooManyRates {
        max: usize,
    },
    BadCode(String),
    BadLocation(String),
    RateOutOfRange {
        code: String,
        rate: Decimal,
    },
    DuplicateRate {
        location: String,
        code: String,
    },
    /// The default code has no rate for every location (no `*` row).
    NoDefaultRate(String),
    /// No row for this code, at this location or at `*`.
    NoRate {
        location: String,
        code: String,
    },
    Money(MoneyError),
}

impl fmt::Display for TaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaxError::TooManyRates { max } => write!(f, "a tax table has at most {max} rates"),
            TaxError::BadCode(c) => write!(
                f,
                "tax code {c:?} must be 1 to {MAX_TAX_CODE_LEN} of A-Z a-z 0-9 . _ -"
            ),
            TaxError::BadLocation(l) => write!(f, "tax location {l:?} is not a location id or *"),
            TaxError::RateOutOfRange { code, rate } => {
                write!(f, "tax rate {rate} of {code} is outside 0..=1")
            }
            TaxError::DuplicateRate { location, code } => {
                write!(f, "two tax rates for {code} at {location}")
            }
            TaxError::NoDefaultRate(c) => {
                write!(f, "the default tax code {c} needs a rate at location *")
            }
            TaxError::NoRate { location, code } => {
                write!(f, "no tax rate for code {code} at {location} (nor at *)")
            }
            TaxError::Money(e) => write!(f, "{e}"),
        }
    }
}

impl From<MoneyError> for TaxError {
    fn from(e: MoneyError) -> Self {
        TaxError::Money(e)
    }
}

fn valid_code(c: &str) -> bool {
    (1..=MAX_TAX_CODE_LEN).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The deployment's tax table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaxTable {
    /// Prices include tax (Europe) or exclude it (North America).
    pub inclusive: bool,
    /// The code of a SKU that names none.
    pub default_code: String,
    /// Sorted by (location, code), unique.
    rates: Vec<TaxRate>,
}

impl TaxTable {
    /// Checks and sorts the rows: codes and locations well formed, rates in
    /// `0..=1`, no two rows for one (location, code), a `*` row for the
    /// default code.
    pub fn new(
        inclusive: bool,
        default_code: String,
        mut rates: Vec<TaxRate>,
    ) -> Result<TaxTable, TaxError> {
        if rates.len() > MAX_TAX_RATES {
            return Err(TaxError::TooManyRates { max: MAX_TAX_RATES });
        }
        if !valid_code(&default_code) {
            return Err(TaxError::BadCode(default_code));
        }
        for r in &rates {
            if !valid_code(&r.code) {
                return Err(TaxError::BadCode(r.code.clone()));
            }
            if r.location != ANY_LOCATION && LocationId::parse(&r.location).is_err() {
                return Err(TaxError::BadLocation(r.location.clone()));
            }
            if r.rate.is_sign_negative() || r.rate > Decimal::ONE {
                return Err(TaxError::RateOutOfRange {
                    code: r.code.clone(),
                    rate: r.rate,
                });
            }
        }
        rates.sort_by(|a, b| (&a.location, &a.code).cmp(&(&b.location, &b.code)));
        if let Some(w) = rates
            .windows(2)
            .find(|w| w[0].location == w[1].location && w[0].code == w[1].code)
        {
            return Err(TaxError::DuplicateRate {
                location: w[0].location.clone(),
                code: w[0].code.clone(),
            });
        }
        let table = TaxTable {
            inclusive,
            default_code,
            rates,
        };
        if table.find(ANY_LOCATION, &table.default_code).is_none() {
            return Err(TaxError::NoDefaultRate(table.default_code));
        }
        Ok(table)
    }

    /// No tax anywhere: prices exclusive, one `standard` rate of 0.
    pub fn zero() -> TaxTable {
        TaxTable {
            inclusive: false,
            default_code: "standard".into(),
            rates: alloc::vec![TaxRate {
                location: ANY_LOCATION.into(),
                code: "standard".into(),
                rate: Decimal::ZERO,
            }],
        }
    }

    pub fn rates(&self) -> &[TaxRate] {
        &self.rates
    }

    fn find(&self, location: &str, code: &str) -> Option<&TaxRate> {
        self.rates
            .binary_search_by(|r| (r.location.as_str(), r.code.as_str()).cmp(&(location, code)))
            .ok()
            .map(|i| &self.rates[i])
    }

    /// The rate of `code` (the default code when `None`) at `location`: the
    /// location's own row, else the `*` row.
    pub fn rate(&self, location: &LocationId, code: Option<&str>) -> Result<Decimal, TaxError> {
        let code = code.unwrap_or(&self.default_code);
        self.find(location.as_str(), code)
            .or_else(|| self.find(ANY_LOCATION, code))
            .map(|r| r.rate)
            .ok_or_else(|| TaxError::NoRate {
                location: location.as_str().into(),
                code: code.into(),
            })
    }

    /// The tax of one line: `qty` units at `unit_price` sold at `location`.
    pub fn line(
        &self,
        location: &LocationId,
        code: Option<&str>,
        unit_price: Money,
        qty: Qty,
    ) -> Result<LineTax, TaxError> {
        let rate = self.rate(location, code)?;
        let amount = unit_price.checked_mul_qty(qty)?;
        if amount.is_negative() {
            return Err(TaxError::Money(MoneyError::Negative));
        }
        LineTax::compute(self.inclusive, rate, amount)
    }
}

/// One line's amounts. `net + tax = gross`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineTax {
    pub rate: Decimal,
    pub net: Money,
    pub tax: Money,
    pub gross: Money,
}

impl LineTax {
    /// The tax of `amount` (a line's price times its quantity) at `rate`.
    pub fn compute(inclusive: bool, rate: Decimal, amount: Money) -> Result<LineTax, TaxError> {
        if inclusive {
            let divisor = Decimal::ONE.checked_add(rate).ok_or(MoneyError::Overflow)?;
            let share = rate.checked_div(divisor).ok_or(MoneyError::Overflow)?;
            let tax = amount.checked_mul_rate(share, ROUNDING)?;
            Ok(LineTax {
                rate,
                net: amount.checked_sub(tax)?,
                tax,
                gross: amount,
            })
        } else {
            let tax = amount.checked_mul_rate(rate, ROUNDING)?;
            Ok(LineTax {
                rate,
                net: amount,
                tax,
                gross: amount.checked_add(tax)?,
            })
        }
    }
}

impl LineTax {
    /// The rule for a line whose tax was never recorded (a POS sale stored
    /// before sales recorded their tax): booked as charged, the amount taken
    /// as paid tax included, at rate 0 (`net = gross = amount`, tax 0). It
    /// is how the accounting export booked those sales when they were fed,
    /// so a receipt issued for one now says what the books already say.
    pub fn as_charged(amount: Money) -> LineTax {
        LineTax {
            rate: Decimal::ZERO,
            net: amount,
            tax: Money::zero(amount.currency),
            gross: amount,
        }
    }

    /// Whether this recorded tax belongs to a line of `amount` priced
    /// `inclusive`ly (or not): one currency, a rate in `0..=1`, no negative
    /// part, `net + tax = gross`, and the amount is the gross (inclusive) or
    /// the net (exclusive).
    pub fn fits(&self, inclusive: bool, amount: Money) -> bool {
        let c = amount.currency;
        let one_currency =
            self.net.currency == c && self.tax.currency == c && self.gross.currency == c;
        let adds_up = self.net.checked_add(self.tax).ok() == Some(self.gross);
        let priced = if inclusive {
            self.gross == amount
        } else {
            self.net == amount
        };
        one_currency
            && adds_up
            && priced
            && !self.rate.is_sign_negative()
            && self.rate <= Decimal::ONE
            && !self.tax.is_negative()
            && !self.net.is_negative()
    }
}

/// Sums of lines, in total and per rate (for a receipt or an export).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub net: Money,
    pub tax: Money,
    pub gross: Money,
    /// `(rate, net, tax)` per distinct rate, ascending.
    pub by_rate: Vec<(Decimal, Money, Money)>,
}

impl Totals {
    /// The exact sums of `lines` (all in `currency`).
    pub fn of(currency: Currency, lines: &[LineTax]) -> Result<Totals, MoneyError> {
        let mut t = Totals {
            net: Money::zero(currency),
            tax: Money::zero(currency),
            gross: Money::zero(currency),
            by_rate: Vec::new(),
        };
        for l in lines {
            t.net = t.net.checked_add(l.net)?;
            t.tax = t.tax.checked_add(l.tax)?;
            t.gross = t.gross.checked_add(l.gross)?;
            match t.by_rate.binary_search_by(|(r, _, _)| r.cmp(&l.rate)) {
                Ok(i) => {
                    let (_, n, x) = &mut t.by_rate[i];
                    *n = n.checked_add(l.net)?;
                    *x = x.checked_add(l.tax)?;
                }
                Err(i) => t.by_rate.insert(i, (l.rate, l.net, l.tax)),
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn eur(s: &str) -> Money {
        Money::parse(s, "EUR").unwrap()
    }
    fn loc(s: &str) -> LocationId {
        LocationId::parse(s).unwrap()
    }
    fn row(location: &str, code: &str, rate: &str) -> TaxRate {
        TaxRate {
            location: location.into(),
            code: code.into(),
            rate: dec(rate),
        }
    }
    fn table(inclusive: bool) -> TaxTable {
        TaxTable::new(
            inclusive,
            "standard".into(),
            alloc::vec![
                row("*", "standard", "0.20"),
                row("*", "reduced", "0.055"),
                row("store-2", "standard", "0.1"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn exclusive_adds_tax_rounded_per_line() {
        let t = table(false);
        let l = t.line(&loc("store-1"), None, eur("19.99"), 3).unwrap();
        // 59.97 * 0.2 = 11.994 -> 11.99
        assert_eq!(
            (l.net, l.tax, l.gross),
            (eur("59.97"), eur("11.99"), eur("71.96"))
        );
        // 0.10 * 0.055 = 0.0055 -> 0.01 (half away from zero)
        let l = t
            .line(&loc("store-1"), Some("reduced"), eur("0.10"), 1)
            .unwrap();
        assert_eq!(l.tax, eur("0.01"));
    }

    #[test]
    fn inclusive_takes_tax_out_of_the_price() {
        let t = table(true);
        let l = t.line(&loc("store-1"), None, eur("12.00"), 1).unwrap();
        assert_eq!(
            (l.net, l.tax, l.gross),
            (eur("10.00"), eur("2.00"), eur("12.00"))
        );
        // 9.99 * 0.2 / 1.2 = 1.665 -> 1.67
        let l = t.line(&loc("store-1"), None, eur("9.99"), 1).unwrap();
        assert_eq!((l.net, l.tax), (eur("8.32"), eur("1.67")));
    }

    #[test]
    fn a_location_row_wins_over_star() {
        let t = table(false);
        assert_eq!(t.rate(&loc("store-2"), None).unwrap(), dec("0.1"));
        assert_eq!(
            t.rate(&loc("store-2"), Some("reduced")).unwrap(),
            dec("0.055")
        );
        assert_eq!(
            t.rate(&loc("store-1"), Some("luxury")),
            Err(TaxError::NoRate {
                location: "store-1".into(),
                code: "luxury".into()
            })
        );
    }

    #[test]
    fn bad_tables_are_refused() {
        let bad = |rates, default: &str| TaxTable::new(false, default.into(), rates).unwrap_err();
        assert!(matches!(
            bad(alloc::vec![row("*", "standard", "1.5")], "standard"),
            TaxError::RateOutOfRange { .. }
        ));
        assert!(matches!(
            bad(alloc::vec![row("*", "standard", "-0.1")], "standard"),
            TaxError::RateOutOfRange { .. }
        ));
        assert!(matches!(
            bad(
                alloc::vec![row("*", "standard", "0.1"), row("*", "standard", "0.2")],
                "standard"
            ),
            TaxError::DuplicateRate { .. }
        ));
        assert!(matches!(
            bad(alloc::vec![row("store-1", "standard", "0.1")], "standard"),
            TaxError::NoDefaultRate(_)
        ));
        assert!(matches!(
            bad(alloc::vec![row("bad loc", "standard", "0.1")], "standard"),
            TaxError::BadLocation(_)
        ));
        assert!(matches!(
            bad(alloc::vec![row("*", "", "0.1")], "standard"),
            TaxError::BadCode(_)
        ));
    }

    #[test]
    fn totals_add_up_exactly_per_rate() {
        let t = table(false);
        let lines = [
            t.line(&loc("store-1"), None, eur("19.99"), 3).unwrap(),
            t.line(&loc("store-1"), Some("reduced"), eur("4.50"), 2)
                .unwrap(),
            t.line(&loc("store-1"), None, eur("0.05"), 1).unwrap(),
        ];
        let tot = Totals::of(lines[0].net.currency, &lines).unwrap();
        assert_eq!(tot.net.checked_add(tot.tax).unwrap(), tot.gross);
        assert_eq!(tot.by_rate.len(), 2);
        assert_eq!(tot.by_rate[0].0, dec("0.055"));
        let tax_sum = tot.by_rate.iter().map(|r| r.2);
        assert_eq!(Money::sum(tot.tax.currency, tax_sum).unwrap(), tot.tax);
    }

    #[test]
    fn a_recorded_line_fits_its_amount_and_an_unrecorded_one_is_as_charged() {
        let t = table(false);
        let l = t.line(&loc("store-1"), None, eur("19.99"), 3).unwrap();
        assert!(l.fits(false, eur("59.97")));
        assert!(
            !l.fits(true, eur("59.97")),
            "exclusive tax read as inclusive"
        );
        assert!(!l.fits(false, eur("59.98")), "another amount");
        let bent = LineTax {
            tax: eur("12.00"),
            ..l
        };
        assert!(!bent.fits(false, eur("59.97")), "net + tax != gross");
        let usd = Money::parse("59.97", "USD").unwrap();
        assert!(!l.fits(false, usd), "another currency");
        let inc = table(true)
            .line(&loc("store-1"), None, eur("12.00"), 1)
            .unwrap();
        assert!(inc.fits(true, eur("12.00")));
        let old = LineTax::as_charged(eur("12.00"));
        assert_eq!(
            (old.net, old.tax, old.gross),
            (eur("12.00"), eur("0"), eur("12.00"))
        );
        assert!(old.fits(true, eur("12.00")));
        assert_eq!(old.rate, Decimal::ZERO);
    }

    #[test]
    fn net_plus_tax_is_gross_for_many_prices() {
        for inclusive in [false, true] {
            let t = table(inclusive);
            for cents in (0..5000).step_by(7) {
                let price =
                    Money::new(Decimal::new(cents, 2), Currency::parse("EUR").unwrap()).unwrap();
                for qty in [1, 2, 3, 7] {
                    for code in [None, Some("reduced")] {
                        let l = t.line(&loc("store-1"), code, price, qty).unwrap();
                        assert_eq!(l.net.checked_add(l.tax).unwrap(), l.gross);
                        assert!(!l.tax.is_negative());
                    }
                }
            }
        }
    }
}
