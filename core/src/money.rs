//! Money: a `rust_decimal::Decimal` amount and an ISO 4217 currency. Never a
//! float. Every operation is checked (an overflow is an error, not a wrap or
//! a panic) and every rounding names its strategy.
use core::fmt;
use core::str::FromStr;

pub use rust_decimal::{Decimal, RoundingStrategy};

use crate::stock::Qty;

/// An ISO 4217 code: three ASCII capital letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

/// Why money could not be made or computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoneyError {
    /// Not three capital letters.
    InvalidCurrency,
    /// Not a decimal number.
    InvalidAmount,
    /// More decimal places than the currency has.
    TooPrecise { max_places: u32 },
    /// Below zero where only zero or more makes sense.
    Negative,
    /// Two amounts in different currencies.
    CurrencyMismatch,
    /// The result does not fit.
    Overflow,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::InvalidCurrency => f.write_str("currency must be an ISO 4217 code"),
            MoneyError::InvalidAmount => f.write_str("amount must be a decimal string"),
            MoneyError::TooPrecise { max_places } => {
                write!(f, "amount has more than {max_places} decimal places")
            }
            MoneyError::Negative => f.write_str("amount must not be negative"),
            MoneyError::CurrencyMismatch => f.write_str("amounts are in different currencies"),
            MoneyError::Overflow => f.write_str("amount out of range"),
        }
    }
}

impl Currency {
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::InvalidCurrency);
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("XXX")
    }
    /// Decimal places of the currency's minor unit (ISO 4217).
    pub fn minor_units(self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <alloc::string::String as serde::Deserialize>::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency: `{"amount": "19.90", "currency": "EUR"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    /// Parses an API amount exactly: no more decimal places than the currency has.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, MoneyError> {
        let currency = Currency::parse(currency)?;
        if amount.is_empty() || amount.len() > 40 {
            return Err(MoneyError::InvalidAmount);
        }
        let amount = Decimal::from_str_exact(amount).map_err(|_| MoneyError::InvalidAmount)?;
        Money::new(amount, currency)
    }

    /// Wraps an amount, refusing more decimal places than the currency has.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        let max_places = currency.minor_units();
        if amount.normalize().scale() > max_places {
            return Err(MoneyError::TooPrecise { max_places });
        }
        Ok(Money { amount, currency })
    }

    pub fn zero(currency: Currency) -> Money {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self })
    }

    /// A unit price times a quantity (exact: no rounding needed).
    pub fn checked_mul_qty(self, qty: Qty) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(Decimal::from(qty))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self })
    }

    /// `self * rate`, rounded to the currency's minor unit with `strategy`
    /// (e.g. a tax rate of `0.2`, or a loyalty earn rate).
    pub fn checked_mul_rate(
        self,
        rate: Decimal,
        strategy: RoundingStrategy,
    ) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(rate).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount, ..self }.round(strategy))
    }

    /// Rounds to the currency's minor unit with an explicit strategy.
    pub fn round(self, strategy: RoundingStrategy) -> Money {
        Money {
            amount: self
                .amount
                .round_dp_with_strategy(self.currency.minor_units(), strategy),
            ..self
        }
    }

    /// The sum of `items`; `None` currency for an empty list uses `currency`.
    pub fn sum<I: IntoIterator<Item = Money>>(
        currency: Currency,
        items: I,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}
