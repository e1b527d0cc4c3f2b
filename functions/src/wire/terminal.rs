//! Messages to a `Terminal` object (one per POS terminal: applies its sales
//! in device order and keeps every sale's answer forever).
use omnistock_core::customer::{PurchaseFact, PurchaseLine, Source};
use omnistock_core::money::{Currency, Money as CoreMoney};
use omnistock_core::tax::LineTax;
use omnistock_core::{Channel, LocationId, SaleId, Sku, TerminalId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalog::{BundleComponent, Money};
use super::Idem;
use crate::http::Problem;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: String,
    pub amount: Money,
}

/// A line with its SKU resolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleLine {
    pub sku: Sku,
    /// For a bundle: the component SKUs and units per bundle it sells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<BundleComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    pub qty: i64,
    pub unit_price: Money,
    /// The line's tax, computed once when the sale is made (the
    /// deployment's `TAX_TABLE` at the sale's location, `TaxTable::line`)
    /// and kept with it: the sale's answer, its feed event and its receipt
    /// all read this. Absent from sales stored before it was recorded
    /// (see [`Sale::recorded_tax`]). Not part of the sale's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<LineTax>,
}

/// A validated sale, as the Terminal object applies it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sale {
    pub sale_id: SaleId,
    pub terminal_id: TerminalId,
    pub device_seq: u64,
    pub location: LocationId,
    pub occurred_at: i64,
    pub customer_id: Option<String>,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
    /// Fingerprint of the sale's content: the same sale id with other content is refused.
    pub fp: String,
    pub actor: String,
    /// Whether the prices include tax (the tax table's setting when the
    /// sale was made); `None` for a sale stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_inclusive: Option<bool>,
}

/// A sale's tax as recorded: whether its prices include tax, and each
/// line's tax in line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedTax {
    pub currency: Currency,
    pub inclusive: bool,
    pub lines: Vec<LineTax>,
}

impl Sale {
    /// The sale's tax as it was recorded when it was made. The rule for a
    /// sale stored before sales recorded their tax (`tax_inclusive` absent):
    /// every line as charged, tax included, at rate 0
    /// (`LineTax::as_charged`), which is how the accounting export booked
    /// it when it was fed. A sale of several currencies, or a recorded line
    /// tax that does not fit its line, is refused (never, for a sale this
    /// Worker recorded).
    pub fn recorded_tax(&self) -> Result<RecordedTax, Problem> {
        let bad = |what: String| Problem::overloaded(format!("sale {}: {what}", self.sale_id));
        let mut currency: Option<Currency> = None;
        let inclusive = self.tax_inclusive.unwrap_or(true);
        let mut lines = Vec::with_capacity(self.lines.len());
        for l in &self.lines {
            let unit = CoreMoney::parse(&l.unit_price.amount, &l.unit_price.currency)
                .map_err(|e| bad(format!("recorded price: {e}")))?;
            if *currency.get_or_insert(unit.currency) != unit.currency {
                return Err(bad("lines in several currencies".into()));
            }
            let amount = unit
                .checked_mul_qty(l.qty)
                .map_err(|e| bad(format!("line amount: {e}")))?;
            let t = match (self.tax_inclusive, l.tax) {
                (None, _) => LineTax::as_charged(amount),
                (Some(_), Some(t)) if t.fits(inclusive, amount) => t,
                (Some(_), _) => return Err(bad(format!("{}: recorded tax does not fit", l.sku))),
            };
            lines.push(t);
        }
        let currency = currency.ok_or_else(|| bad("no lines".into()))?;
        Ok(RecordedTax {
            currency,
            inclusive,
            lines,
        })
    }

    /// The purchase of the sale's customer (loyalty, issue 10): each line's
    /// price times its quantity, and their sum (one currency). This is the
    /// amount a return of the sale is valued against too (the Terminal's
    /// claims), so points earned and reversed stay in proportion; under an
    /// exclusive tax table both are before tax (orders use their gross).
    /// `None` without a customer, or when the sale's lines cannot be read.
    pub fn purchase_fact(&self) -> Option<PurchaseFact> {
        self.customer_id.as_ref()?;
        let tax = self.recorded_tax().ok()?;
        let mut total = CoreMoney::zero(tax.currency);
        let mut lines = Vec::with_capacity(self.lines.len());
        for l in &self.lines {
            let unit = CoreMoney::parse(&l.unit_price.amount, &l.unit_price.currency).ok()?;
            let amount = unit.checked_mul_qty(l.qty).ok()?;
            total = total.checked_add(amount).ok()?;
            lines.push(PurchaseLine {
                sku: l.sku.clone(),
                qty: l.qty,
                amount,
            });
        }
        Some(PurchaseFact {
            source: Source::Sale(self.sale_id.clone()),
            channel: Channel::Pos,
            location: Some(self.location.clone()),
            at: Timestamp::from_ms(self.occurred_at),
            total,
            lines,
        })
    }
}

/// One sale's answer (its HTTP status and body).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleResult {
    pub sale_id: String,
    pub status: u16,
    pub body: Value,
    /// The sale was already recorded: this is the first answer.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TerminalRequest {
    /// Sales of this terminal, applied in `(device_seq, sale_id)` order.
    Sell { sales: Vec<Sale>, idem: Idem },
    /// A return claims units of one of this terminal's sales, once per
    /// return id: refused beyond what the sale sold minus what other
    /// returns claimed. Answered with a [`SaleClaim`].
    ClaimReturn {
        return_id: String,
        sale_id: SaleId,
        lines: Vec<ClaimLine>,
    },
    /// Receipts (issue 14): the sale as applied (`None`: not recorded here).
    GetSale { sale_id: SaleId },
}

/// Units of one SKU a return claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLine {
    pub sku: Sku,
    pub qty: i64,
}

/// A sale's answer to a claim: what was sold where, and what was paid for
/// the units claimed (core's `Claim`, one line per SKU claimed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleClaim {
    pub claim: omnistock_core::returns::Claim,
    pub location: LocationId,
    #[serde(default)]
    pub customer_id: Option<String>,
}

/// The answer: one result per sale, in the order given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SellAnswer {
    pub results: Vec<SaleResult>,
    /// The same Idempotency-Key and request again.
    #[serde(default)]
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistock_core::tax::{TaxRate, TaxTable};

    fn eur(a: &str) -> CoreMoney {
        CoreMoney::parse(a, "EUR").unwrap()
    }

    /// A sale as stored before sales recorded their tax (no `tax`, no
    /// `tax_inclusive`): exactly the JSON the Terminal's `sale` column holds.
    const OLD: &str = r#"{"sale_id":"s1","terminal_id":"t1","device_seq":1,"location":"store-1",
        "occurred_at":0,"customer_id":"c1","lines":[{"sku":"A","qty":2,
        "unit_price":{"amount":"10.00","currency":"EUR"}}],"payments":[],"fp":"x","actor":"pos"}"#;

    #[test]
    fn an_older_sale_is_read_as_charged_tax_included() {
        let s: Sale = serde_json::from_str(OLD).unwrap();
        let t = s.recorded_tax().unwrap();
        assert!(t.inclusive);
        assert_eq!(t.lines, vec![LineTax::as_charged(eur("20.00"))]);
        let f = s.purchase_fact().unwrap();
        assert_eq!(f.total, eur("20.00"));
    }

    #[test]
    fn a_recorded_sale_answers_its_own_tax_and_its_purchase_is_its_prices() {
        let table = TaxTable::new(
            false,
            "standard".into(),
            vec![TaxRate {
                location: "*".into(),
                code: "standard".into(),
                rate: "0.08".parse().unwrap(),
            }],
        )
        .unwrap();
        let mut s: Sale = serde_json::from_str(OLD).unwrap();
        let lt = table.line(&s.location, None, eur("10.00"), 2).unwrap();
        s.lines[0].tax = Some(lt);
        s.tax_inclusive = Some(false);
        // Stored and read back: the same figures.
        let s: Sale = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        let t = s.recorded_tax().unwrap();
        assert!(!t.inclusive);
        assert_eq!(t.lines[0].tax, eur("1.60"));
        assert_eq!(s.purchase_fact().unwrap().total, eur("20.00"));
        // A recorded tax that does not fit its line is refused, not guessed.
        let mut bent = s.clone();
        bent.lines[0].qty = 3;
        assert!(bent.recorded_tax().is_err());
        let mut lost = s.clone();
        lost.lines[0].tax = None;
        assert!(lost.recorded_tax().is_err());
        // Without a customer there is no purchase.
        let mut anonymous = s;
        anonymous.customer_id = None;
        assert!(anonymous.purchase_fact().is_none());
    }
}
