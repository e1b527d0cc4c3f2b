//! The deployment's configuration: `[vars]` of wrangler.toml, parsed once
//! per isolate into core's types (a deployment's vars change only with a new
//! deployment, which starts new isolates).
//!
//! | var | meaning | default |
//! |---|---|---|
//! | `FULFILLMENT_RULE` | `nearest`, `single_location` or `pickup` | `nearest` |
//! | `FULFILLMENT_LOCATION` | the one location of `single_location` | none |
//! | `FULFILLMENT_SPLIT` | `never` or `by_line`: a shipment no single location fills | `never` |
//! | `TAX_TABLE` | JSON: `{inclusive, default_code, rates: [{location, code, rate}]}` | no tax |
//! | `PICKUP_OVERDUE_HOURS` | a part ready for pickup longer than this is flagged | 72 |
//!
//! A var that does not parse is an operator's mistake: every request that
//! needs the configuration answers 503 with the var's name and what is
//! wrong, and nothing changes (`make check-bundle` and the tests run with
//! the committed vars).
use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;

use omnistock_core::money::Decimal;
use omnistock_core::reservation::{FulfillmentKind, Placement, Split};
use omnistock_core::tax::{TaxRate, TaxTable, ROUNDING_RULE};
use omnistock_core::LocationId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::Env;

use crate::http::Problem;

/// Bounds of `PICKUP_OVERDUE_HOURS`.
pub const MIN_PICKUP_OVERDUE_HOURS: i64 = 1;
pub const MAX_PICKUP_OVERDUE_HOURS: i64 = 24 * 60;
pub const DEFAULT_PICKUP_OVERDUE_HOURS: i64 = 72;
/// Longest `TAX_TABLE` accepted, in bytes.
pub const MAX_TAX_TABLE_BYTES: usize = 32 * 1024;

/// How an order or reservation that names no location is placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FulfillmentRule {
    /// By distance from `destination`, among locations that can fill every
    /// line; else, if `split` allows, each line from the nearest that can.
    Nearest,
    /// Everything from this one location.
    SingleLocation(LocationId),
    /// Click and collect only: every order names the store (`fulfillment.location`)
    /// that must hold every line; a shipment is refused.
    Pickup,
}

impl FulfillmentRule {
    pub fn name(&self) -> &'static str {
        match self {
            FulfillmentRule::Nearest => "nearest",
            FulfillmentRule::SingleLocation(_) => "single_location",
            FulfillmentRule::Pickup => "pickup",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub rule: FulfillmentRule,
    pub split: Split,
    pub tax: TaxTable,
    pub pickup_overdue_ms: i64,
}

/// `TAX_TABLE` as written: rates are decimal strings (never floats).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxTableVar {
    inclusive: bool,
    #[serde(default = "standard")]
    default_code: String,
    rates: Vec<TaxRateVar>,
}

fn standard() -> String {
    "standard".into()
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TaxRateVar {
    location: String,
    code: String,
    rate: String,
}

fn bad(var: &str, why: impl std::fmt::Display) -> String {
    format!("the deployment's {var} var is wrong: {why}")
}

/// Parses the vars (each `None` when absent). Pure, so the unit tests and
/// the Worker agree.
pub fn parse(
    rule: Option<&str>,
    location: Option<&str>,
    split: Option<&str>,
    tax: Option<&str>,
    pickup_hours: Option<&str>,
) -> Result<Config, String> {
    let rule = match rule.map(str::trim).unwrap_or("nearest") {
        "nearest" => FulfillmentRule::Nearest,
        "pickup" => FulfillmentRule::Pickup,
        "single_location" => {
            let l = location.map(str::trim).unwrap_or("");
            let l = LocationId::parse(l).map_err(|e| bad("FULFILLMENT_LOCATION", e))?;
            FulfillmentRule::SingleLocation(l)
        }
        other => {
            return Err(bad(
                "FULFILLMENT_RULE",
                format!("{other:?} is not nearest, single_location or pickup"),
            ))
        }
    };
    let split = match split.map(str::trim).unwrap_or("never") {
        "never" => Split::Never,
        "by_line" => Split::ByLine,
        other => {
            return Err(bad(
                "FULFILLMENT_SPLIT",
                format!("{other:?} is not never or by_line"),
            ))
        }
    };
    let tax = match tax.map(str::trim).filter(|t| !t.is_empty()) {
        None => TaxTable::zero(),
        Some(t) if t.len() > MAX_TAX_TABLE_BYTES => {
            return Err(bad(
                "TAX_TABLE",
                format!("longer than {MAX_TAX_TABLE_BYTES} bytes"),
            ))
        }
        Some(t) => {
            let v: TaxTableVar = serde_json::from_str(t).map_err(|e| bad("TAX_TABLE", e))?;
            let mut rates = Vec::with_capacity(v.rates.len());
            for r in v.rates {
                let rate = Decimal::from_str(r.rate.trim())
                    .map_err(|_| bad("TAX_TABLE", format!("rate {:?} is not a decimal", r.rate)))?;
                rates.push(TaxRate {
                    location: r.location,
                    code: r.code,
                    rate,
                });
            }
            TaxTable::new(v.inclusive, v.default_code, rates).map_err(|e| bad("TAX_TABLE", e))?
        }
    };
    let hours = match pickup_hours.map(str::trim) {
        None | Some("") => DEFAULT_PICKUP_OVERDUE_HOURS,
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (MIN_PICKUP_OVERDUE_HOURS..=MAX_PICKUP_OVERDUE_HOURS).contains(h))
            .ok_or_else(|| {
                bad(
                    "PICKUP_OVERDUE_HOURS",
                    format!(
                        "{h:?} is not a whole number of hours in {MIN_PICKUP_OVERDUE_HOURS}..={MAX_PICKUP_OVERDUE_HOURS}"
                    ),
                )
            })?,
    };
    Ok(Config {
        rule,
        split,
        tax,
        pickup_overdue_ms: hours * 3_600_000,
    })
}

thread_local! {
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// The deployment's configuration (parsed once per isolate).
pub fn get(env: &Env) -> Result<Rc<Config>, Problem> {
    if let Some(c) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let parsed = parse(
        var("FULFILLMENT_RULE").as_deref(),
        var("FULFILLMENT_LOCATION").as_deref(),
        var("FULFILLMENT_SPLIT").as_deref(),
        var("TAX_TABLE").as_deref(),
        var("PICKUP_OVERDUE_HOURS").as_deref(),
    )
    .map_err(|why| Problem::new(503, "overloaded", why))?;
    let c = Rc::new(parsed);
    CONFIG.with(|slot| *slot.borrow_mut() = Some(c.clone()));
    Ok(c)
}

impl Config {
    /// The API's `fulfillment` with the deployment's rule applied: under
    /// `single_location` a shipment that names no location ships from the
    /// configured one; under `pickup` a shipment is refused.
    pub fn resolve(&self, p: &Placement) -> Result<Placement, Problem> {
        let mut p = p.clone();
        match (&self.rule, p.kind) {
            (FulfillmentRule::Pickup, FulfillmentKind::Ship) => {
                return Err(Problem::invalid(
                    "this shop offers pickup only: give fulfillment {type: pickup, location}",
                ))
            }
            (FulfillmentRule::SingleLocation(l), FulfillmentKind::Ship) if p.location.is_none() => {
                p.location = Some(l.clone());
            }
            _ => {}
        }
        Ok(p)
    }

    /// `GET /v1/config/fulfillment`: the rule in force and the tax table.
    pub fn view(&self) -> Value {
        let rates: Vec<Value> = self
            .tax
            .rates()
            .iter()
            .map(|r| json!({"location": r.location, "code": r.code, "rate": r.rate.to_string()}))
            .collect();
        json!({
            "rule": self.rule.name(),
            "location": match &self.rule {
                FulfillmentRule::SingleLocation(l) => Some(l.as_str()),
                _ => None,
            },
            "split": match self.split { Split::Never => "never", Split::ByLine => "by_line" },
            "pickup_overdue_hours": self.pickup_overdue_ms / 3_600_000,
            "tax": {
                "inclusive": self.tax.inclusive,
                "default_code": self.tax.default_code,
                "rates": rates,
                "rounding": ROUNDING_RULE,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nearest_never_no_tax_72h() {
        let c = parse(None, None, None, None, None).unwrap();
        assert_eq!(c.rule, FulfillmentRule::Nearest);
        assert_eq!(c.split, Split::Never);
        assert_eq!(c.tax, TaxTable::zero());
        assert_eq!(c.pickup_overdue_ms, 72 * 3_600_000);
    }

    #[test]
    fn a_full_configuration_parses() {
        let c = parse(
            Some("single_location"),
            Some("warehouse-1"),
            Some("by_line"),
            Some(
                r#"{"inclusive": true, "rates": [{"location": "*", "code": "standard", "rate": "0.20"},
                   {"location": "store-2", "code": "reduced", "rate": "0.055"}]}"#,
            ),
            Some("48"),
        )
        .unwrap();
        assert_eq!(
            c.rule,
            FulfillmentRule::SingleLocation(LocationId::parse("warehouse-1").unwrap())
        );
        assert!(c.tax.inclusive);
        assert_eq!(c.tax.rates().len(), 2);
        assert_eq!(c.view()["tax"]["rates"][0]["rate"], "0.20");
        assert_eq!(c.view()["rule"], "single_location");
    }

    #[test]
    fn every_bad_var_is_named() {
        let cases = [
            (
                parse(Some("closest"), None, None, None, None),
                "FULFILLMENT_RULE",
            ),
            (
                parse(Some("single_location"), None, None, None, None),
                "FULFILLMENT_LOCATION",
            ),
            (
                parse(None, None, Some("sometimes"), None, None),
                "FULFILLMENT_SPLIT",
            ),
            (parse(None, None, None, Some("{"), None), "TAX_TABLE"),
            (
                parse(
                    None,
                    None,
                    None,
                    Some(
                        r#"{"inclusive": false, "rates": [{"location": "*", "code": "standard", "rate": 0.2}]}"#,
                    ),
                    None,
                ),
                "TAX_TABLE",
            ),
            (
                parse(
                    None,
                    None,
                    None,
                    Some(
                        r#"{"inclusive": false, "rates": [{"location": "*", "code": "standard", "rate": "2"}]}"#,
                    ),
                    None,
                ),
                "TAX_TABLE",
            ),
            (
                parse(None, None, None, None, Some("0")),
                "PICKUP_OVERDUE_HOURS",
            ),
            (
                parse(None, None, None, None, Some("1e3")),
                "PICKUP_OVERDUE_HOURS",
            ),
        ];
        for (r, var) in cases {
            let e = r.unwrap_err();
            assert!(e.contains(var), "{e} should name {var}");
        }
    }
}
