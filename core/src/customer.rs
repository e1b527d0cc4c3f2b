//! Customers and loyalty: one customer's profile, purchases from every
//! channel with their returns, and loyalty points, as a pure state (the
//! `Customer` Durable Object stores it as one JSON row and feeds it facts).
//!
//! - **Profile**: a name, an email (trimmed, lowercased) and a phone
//!   (E.164: `+` and 7 to 15 digits; a number without `+` or `00` gets the
//!   configured country code, one leading trunk `0` dropped). Erasure
//!   removes the profile for good and leaves a tombstone (`erased_at`); the
//!   purchases, returns and points stay, and they hold no personal data.
//! - **Purchases** (a POS sale, or an order once fulfilled) and **returns**
//!   are facts delivered at least once, in any order: a purchase is applied
//!   once per source (`order:<id>` or `sale:<id>`), a return keeps its
//!   newest report (`seq` rises; its amounts are cumulative), so a
//!   duplicate or a stale delivery changes nothing.
//! - **Points** are earned on a purchase's total at the configured rate,
//!   rounded down to whole points. A purchase's returns reverse
//!   `floor(earned * returned / total)` of its points in total (returned =
//!   refunded plus exchange credit, capped at the total), so a full return
//!   reverses exactly what was earned and partial ones never more.
//!   Redemptions are all or nothing against the balance.
//! - **A receipt's points** (issue 14): when a purchase is recorded, its
//!   figures are kept with it once ([`Purchase::receipt`]): the points it
//!   earned, the points redeemed for it before then (redemptions whose
//!   `reference` is its sale or order id: the till redeems, then sells),
//!   and the balance right after it was recorded. They never change after,
//!   so a receipt that states them states a fact, whenever it is printed.
//! - **Never below zero**: `balance = max(0, earned - reversed - redeemed)`.
//!   A reversal of points already redeemed leaves the balance at 0 and
//!   records the `shortfall`, which later points pay off first. This makes
//!   the balance independent of the order in which facts arrive (only a
//!   redemption's refusal depends on the balance at its time).
//! - **Limits**: [`MAX_PURCHASES`] purchases and [`MAX_RETURNS`] returns per
//!   customer (more is refused as `Full`), [`MAX_LINES_KEPT`] lines shown per
//!   purchase, the last [`MAX_LEDGER`] points movements (the totals keep
//!   counting), [`MAX_REDEMPTIONS`] redemptions, [`MAX_POINTS`] points per
//!   movement.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{validate_id, OrderId, ReturnId, SaleId, Sku};
use crate::money::{Decimal, Money, RoundingStrategy};
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;
use crate::LocationId;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_LEN: usize = 254;
pub const MIN_PHONE_DIGITS: usize = 7;
pub const MAX_PHONE_DIGITS: usize = 15;
/// Longest phone input accepted before normalising.
pub const MAX_PHONE_INPUT: usize = 32;
pub const MAX_PURCHASES: usize = 500;
pub const MAX_RETURNS: usize = 500;
pub const MAX_LINES_KEPT: usize = 20;
pub const MAX_LEDGER: usize = 200;
pub const MAX_REDEMPTIONS: usize = 1_000;
/// Most points one movement (an earn, a redemption) may carry.
pub const MAX_POINTS: i64 = 1_000_000_000;
/// Highest earn rate (points per unit of currency).
pub const MAX_RATE: i64 = 1_000;

/// Why a customer write was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomerError {
    InvalidName,
    InvalidEmail,
    InvalidPhone,
    InvalidConfig(&'static str),
    InvalidAmount,
    InvalidPoints,
    /// The customer was erased: the profile cannot be set again.
    Erased,
    InsufficientPoints {
        balance: i64,
        requested: i64,
    },
    /// The redemption id was used for another amount.
    RedemptionConflict,
    Full(&'static str),
}

impl CustomerError {
    /// The API's problem code.
    pub fn code(&self) -> &'static str {
        match self {
            CustomerError::Erased => "invalid_transition",
            CustomerError::InsufficientPoints { .. } => "insufficient_points",
            CustomerError::RedemptionConflict => "idempotency_key_reused",
            CustomerError::Full(_) => "invalid_request",
            CustomerError::InvalidConfig(_) => "overloaded",
            _ => "invalid_request",
        }
    }
}

impl fmt::Display for CustomerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CustomerError::InvalidName => write!(
                f,
                "name must be 1 to {MAX_NAME_CHARS} characters, without control characters"
            ),
            CustomerError::InvalidEmail => write!(
                f,
                "email must be local@domain.tld, at most {MAX_EMAIL_LEN} characters, no spaces"
            ),
            CustomerError::InvalidPhone => write!(
                f,
                "phone must be {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits with the country \
                 code (+, 00, or the default country), spaces, dots, dashes and parentheses allowed"
            ),
            CustomerError::InvalidConfig(w) => write!(f, "loyalty configuration: {w}"),
            CustomerError::InvalidAmount => f.write_str("amount must be zero or more"),
            CustomerError::InvalidPoints => {
                write!(f, "points must be a whole number from 1 to {MAX_POINTS}")
            }
            CustomerError::Erased => f.write_str("the customer was erased"),
            CustomerError::InsufficientPoints { balance, requested } => write!(
                f,
                "{requested} points asked, {balance} available: nothing was redeemed"
            ),
            CustomerError::RedemptionConflict => {
                f.write_str("this redemption was already made for another amount")
            }
            CustomerError::Full(what) => write!(f, "too many {what} for one customer"),
        }
    }
}

/// The deployment's loyalty and phone settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoyaltyConfig {
    /// Points per unit of currency (e.g. 1 point per 1.00 EUR), 0 to [`MAX_RATE`].
    pub points_per_unit: Decimal,
    /// Digits prepended to a phone number given without a country code.
    pub phone_country_code: String,
}

impl LoyaltyConfig {
    pub fn parse(rate: &str, country_code: &str) -> Result<Self, CustomerError> {
        let r = Decimal::from_str_exact(rate.trim())
            .map_err(|_| CustomerError::InvalidConfig("the points rate is not a decimal"))?;
        if r.is_sign_negative() || r > Decimal::from(MAX_RATE) {
            return Err(CustomerError::InvalidConfig("the points rate is 0 to 1000"));
        }
        let cc = country_code.trim().trim_start_matches('+');
        if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CustomerError::InvalidConfig(
                "the country code is 1 to 3 digits",
            ));
        }
        Ok(LoyaltyConfig {
            points_per_unit: r,
            phone_country_code: cc.to_string(),
        })
    }

    /// Points earned on `amount`: `floor(amount * rate)`, capped at [`MAX_POINTS`].
    pub fn points_for(&self, amount: Decimal) -> i64 {
        let p = amount
            .checked_mul(self.points_per_unit)
            .map(|x| x.round_dp_with_strategy(0, RoundingStrategy::ToZero))
            .unwrap_or(Decimal::from(MAX_POINTS));
        i64::try_from(p).unwrap_or(MAX_POINTS).clamp(0, MAX_POINTS)
    }
}

/// A name as kept: trimmed, 1 to [`MAX_NAME_CHARS`] characters.
pub fn normalize_name(raw: &str) -> Result<String, CustomerError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > MAX_NAME_CHARS || s.chars().any(char::is_control) {
        return Err(CustomerError::InvalidName);
    }
    Ok(s.to_string())
}

/// An email as kept and looked up: trimmed and lowercased; one `@`, a
/// non-empty local part, a domain with a dot, no spaces or controls.
pub fn normalize_email(raw: &str) -> Result<String, CustomerError> {
    let s = raw.trim().to_lowercase();
    if s.is_empty() || s.len() > MAX_EMAIL_LEN {
        return Err(CustomerError::InvalidEmail);
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CustomerError::InvalidEmail);
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err(CustomerError::InvalidEmail);
    };
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    if local.is_empty() || domain.contains('@') || !labels_ok {
        return Err(CustomerError::InvalidEmail);
    }
    Ok(s)
}

/// A phone as kept and looked up: `+` and digits (E.164). `+` or `00` start
/// an international number; otherwise one leading trunk `0` is dropped and
/// `country_code` prepended. Spaces, dots, dashes and parentheses are
/// separators; anything else is refused.
pub fn normalize_phone(raw: &str, country_code: &str) -> Result<String, CustomerError> {
    let s = raw.trim();
    if s.is_empty() || s.len() > MAX_PHONE_INPUT {
        return Err(CustomerError::InvalidPhone);
    }
    let (international, rest) = match s.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => return Err(CustomerError::InvalidPhone),
        }
    }
    let full = if international {
        digits
    } else if let Some(d) = digits.strip_prefix("00") {
        d.to_string()
    } else {
        let national = digits.strip_prefix('0').unwrap_or(&digits);
        if national.is_empty() {
            return Err(CustomerError::InvalidPhone);
        }
        format!("{country_code}{national}")
    };
    let ok = (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&full.len())
        && !full.starts_with('0')
        && full.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(CustomerError::InvalidPhone);
    }
    Ok(format!("+{full}"))
}

/// A customer's contact details, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl Profile {
    /// Normalises what a client sent.
    pub fn parse(
        name: &str,
        email: Option<&str>,
        phone: Option<&str>,
        cfg: &LoyaltyConfig,
    ) -> Result<Profile, CustomerError> {
        Ok(Profile {
            name: normalize_name(name)?,
            email: email.map(normalize_email).transpose()?,
            phone: phone
                .map(|p| normalize_phone(p, &cfg.phone_country_code))
                .transpose()?,
        })
    }
}

/// What a purchase or return belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Order(OrderId),
    Sale(SaleId),
}

impl Source {
    /// `order:<id>` or `sale:<id>` (ids cannot hold `:`).
    pub fn key(&self) -> String {
        match self {
            Source::Order(o) => format!("order:{o}"),
            Source::Sale(s) => format!("sale:{s}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseLine {
    pub sku: Sku,
    pub qty: Qty,
    /// What was paid for the line.
    pub amount: Money,
}

/// A completed purchase, as its producer reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseFact {
    pub source: Source,
    pub channel: Channel,
    pub location: Option<LocationId>,
    pub at: Timestamp,
    /// What the customer paid (points are earned on it).
    pub total: Money,
    pub lines: Vec<PurchaseLine>,
}

/// A return's state as its return case reports it: amounts are the
/// return's cumulative totals; `seq` rises with every report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnFact {
    pub return_id: ReturnId,
    pub source: Source,
    pub seq: u32,
    pub at: Timestamp,
    /// Refunded so far.
    pub refunded: Money,
    /// Credited to an exchange so far.
    pub credited: Money,
    /// Units received back, per SKU.
    pub lines: Vec<(Sku, Qty)>,
}

impl ReturnFact {
    /// What the return gave back (refund plus exchange credit).
    pub fn value(&self) -> Option<Decimal> {
        if self.refunded.currency != self.credited.currency {
            return None;
        }
        self.refunded.amount.checked_add(self.credited.amount)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub source: Source,
    pub channel: Channel,
    pub location: Option<LocationId>,
    pub at: Timestamp,
    pub total: Money,
    pub lines: Vec<PurchaseLine>,
    /// Lines not kept (beyond [`MAX_LINES_KEPT`]).
    pub lines_omitted: u32,
    pub points_earned: i64,
    pub points_reversed: i64,
    /// What its receipt states about points, fixed when it was recorded
    /// (`None`: recorded before these were kept; their balance then is
    /// not known).
    #[serde(default)]
    pub receipt: Option<crate::receipt::Loyalty>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Earned,
    Reversed,
    Redeemed,
}

/// One movement of points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub at: Timestamp,
    pub kind: LedgerKind,
    /// Points moved (always positive; the kind says which way).
    pub points: i64,
    /// `order:<id>`, `sale:<id>`, `return:<id>` or `redemption:<id>`.
    pub source: String,
    pub balance_after: i64,
    pub shortfall_after: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub points: i64,
    pub at: Timestamp,
    pub reference: Option<String>,
}

/// What applying a fact did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// First delivery: recorded.
    New,
    /// A newer report of a known return: recorded.
    Updated,
    /// Already known (a duplicate, or an older report): nothing changed.
    Duplicate,
}

/// A redemption's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeemed {
    pub points: i64,
    pub balance: i64,
    /// The same redemption id again: nothing changed.
    pub replayed: bool,
}

/// One customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub profile: Option<Profile>,
    pub erased_at: Option<Timestamp>,
    /// Rises when the profile changes (the lookup index follows it).
    pub profile_version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub purchases: BTreeMap<String, Purchase>,
    pub returns: BTreeMap<String, ReturnFact>,
    pub redemptions: BTreeMap<String, Redemption>,
    pub earned: i64,
    pub reversed: i64,
    pub redeemed: i64,
    pub ledger: Vec<LedgerEntry>,
    /// Ledger entries dropped (oldest first) beyond [`MAX_LEDGER`].
    pub ledger_dropped: u64,
}

impl Customer {
    pub fn new(now: Timestamp) -> Customer {
        Customer {
            profile: None,
            erased_at: None,
            profile_version: 0,
            created_at: now,
            updated_at: now,
            purchases: BTreeMap::new(),
            returns: BTreeMap::new(),
            redemptions: BTreeMap::new(),
            earned: 0,
            reversed: 0,
            redeemed: 0,
            ledger: Vec::new(),
            ledger_dropped: 0,
        }
    }

    /// Points available: `max(0, earned - reversed - redeemed)`.
    pub fn balance(&self) -> i64 {
        (self.earned - self.reversed - self.redeemed).max(0)
    }

    /// Points reversed after they were redeemed, not yet paid off.
    pub fn shortfall(&self) -> i64 {
        (self.reversed + self.redeemed - self.earned).max(0)
    }

    /// Sets the profile; `Ok(false)` when it is the same.
    pub fn set_profile(&mut self, now: Timestamp, p: Profile) -> Result<bool, CustomerError> {
        if self.erased_at.is_some() {
            return Err(CustomerError::Erased);
        }
        if self.profile.as_ref() == Some(&p) {
            return Ok(false);
        }
        self.profile = Some(p);
        self.profile_version += 1;
        self.updated_at = now;
        Ok(true)
    }

    /// Removes the personal data for good; `false` if already erased.
    pub fn erase(&mut self, now: Timestamp) -> bool {
        if self.erased_at.is_some() {
            return false;
        }
        self.profile = None;
        self.erased_at = Some(now);
        self.profile_version += 1;
        self.updated_at = now;
        true
    }

    fn log(&mut self, at: Timestamp, kind: LedgerKind, points: i64, source: String) {
        if self.ledger.len() >= MAX_LEDGER {
            self.ledger.remove(0);
            self.ledger_dropped += 1;
        }
        let (balance_after, shortfall_after) = (self.balance(), self.shortfall());
        self.ledger.push(LedgerEntry {
            at,
            kind,
            points,
            source,
            balance_after,
            shortfall_after,
        });
    }

    /// Records a completed purchase once per source; earns its points.
    pub fn record_purchase(
        &mut self,
        fact: PurchaseFact,
        cfg: &LoyaltyConfig,
    ) -> Result<Applied, CustomerError> {
        let key = fact.source.key();
        if self.purchases.contains_key(&key) {
            return Ok(Applied::Duplicate);
        }
        if fact.total.is_negative() || fact.lines.iter().any(|l| l.amount.is_negative()) {
            return Err(CustomerError::InvalidAmount);
        }
        if self.purchases.len() >= MAX_PURCHASES {
            return Err(CustomerError::Full("purchases"));
        }
        let points = cfg.points_for(fact.total.amount);
        let omitted = fact.lines.len().saturating_sub(MAX_LINES_KEPT);
        let mut lines = fact.lines;
        lines.truncate(MAX_LINES_KEPT);
        self.purchases.insert(
            key.clone(),
            Purchase {
                source: fact.source,
                channel: fact.channel,
                location: fact.location,
                at: fact.at,
                total: fact.total,
                lines,
                lines_omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
                points_earned: points,
                points_reversed: 0,
                receipt: None,
            },
        );
        self.updated_at = self.updated_at.max(fact.at);
        if points > 0 {
            self.earned = self.earned.saturating_add(points);
            self.log(fact.at, LedgerKind::Earned, points, key.clone());
        }
        // Returns that arrived before their purchase count now.
        self.reconcile(&key, fact.at);
        let redeemed = self.redeemed_for(&key);
        let balance = self.balance();
        if let Some(p) = self.purchases.get_mut(&key) {
            p.receipt = Some(crate::receipt::Loyalty {
                earned: points,
                redeemed,
                balance,
            });
        }
        Ok(Applied::New)
    }

    /// Records a return's newest report; reverses its purchase's points.
    pub fn record_return(&mut self, fact: ReturnFact) -> Result<Applied, CustomerError> {
        if fact.refunded.is_negative() || fact.credited.is_negative() || fact.value().is_none() {
            return Err(CustomerError::InvalidAmount);
        }
        let key = fact.return_id.to_string();
        let applied = match self.returns.get(&key) {
            Some(old) if old.seq >= fact.seq => return Ok(Applied::Duplicate),
            Some(_) => Applied::Updated,
            None if self.returns.len() >= MAX_RETURNS => {
                return Err(CustomerError::Full("returns"))
            }
            None => Applied::New,
        };
        let (source, at) = (fact.source.key(), fact.at);
        self.returns.insert(key, fact);
        self.updated_at = self.updated_at.max(at);
        self.reconcile(&source, at);
        Ok(applied)
    }

    /// Points redeemed so far for purchase `key` (`sale:<id>` or
    /// `order:<id>`): the redemptions whose reference is that id.
    pub fn redeemed_for(&self, key: &str) -> i64 {
        let Some(id) = key.split_once(':').map(|(_, id)| id) else {
            return 0;
        };
        self.redemptions
            .values()
            .filter(|r| r.reference.as_deref() == Some(id))
            .fold(0i64, |a, r| a.saturating_add(r.points))
    }

    /// The points a purchase's receipt states, as fixed when the purchase
    /// was recorded; `None` when it is not recorded, or was recorded before
    /// they were kept.
    pub fn receipt_loyalty(&self, source: &Source) -> Option<crate::receipt::Loyalty> {
        self.purchases.get(&source.key()).and_then(|p| p.receipt)
    }

    /// What the returns of purchase `key` gave back, in its currency.
    pub fn returned_value(&self, key: &str) -> Decimal {
        let Some(p) = self.purchases.get(key) else {
            return Decimal::ZERO;
        };
        self.returns
            .values()
            .filter(|r| r.source.key() == key && r.refunded.currency == p.total.currency)
            .filter_map(ReturnFact::value)
            .fold(Decimal::ZERO, |a, v| a.checked_add(v).unwrap_or(a))
    }

    /// Brings purchase `key`'s reversed points to
    /// `floor(earned * min(returned, total) / total)`.
    fn reconcile(&mut self, key: &str, at: Timestamp) {
        let returned = self.returned_value(key);
        let Some(p) = self.purchases.get_mut(key) else {
            return;
        };
        let total = p.total.amount;
        let target = if total.is_zero() || p.points_earned == 0 {
            0
        } else {
            let r = returned.min(total);
            Decimal::from(p.points_earned)
                .checked_mul(r)
                .and_then(|x| x.checked_div(total))
                .map(|x| x.round_dp_with_strategy(0, RoundingStrategy::ToZero))
                .and_then(|x| i64::try_from(x).ok())
                .unwrap_or(0)
                .clamp(0, p.points_earned)
        };
        let delta = target - p.points_reversed;
        if delta <= 0 {
            return;
        }
        p.points_reversed = target;
        self.reversed = self.reversed.saturating_add(delta);
        self.log(at, LedgerKind::Reversed, delta, format!("return-of:{key}"));
    }

    /// Redeems `points` all or nothing; the same `id` again is answered
    /// without a second effect (another amount under it is refused).
    pub fn redeem(
        &mut self,
        now: Timestamp,
        id: &str,
        points: i64,
        reference: Option<String>,
    ) -> Result<Redeemed, CustomerError> {
        if let Some(r) = self.redemptions.get(id) {
            if r.points != points {
                return Err(CustomerError::RedemptionConflict);
            }
            return Ok(Redeemed {
                points,
                balance: self.balance(),
                replayed: true,
            });
        }
        if !(1..=MAX_POINTS).contains(&points) {
            return Err(CustomerError::InvalidPoints);
        }
        if let Some(r) = &reference {
            validate_id(r).map_err(|_| CustomerError::InvalidAmount)?;
        }
        let balance = self.balance();
        if points > balance {
            return Err(CustomerError::InsufficientPoints {
                balance,
                requested: points,
            });
        }
        if self.redemptions.len() >= MAX_REDEMPTIONS {
            return Err(CustomerError::Full("redemptions"));
        }
        self.redemptions.insert(
            id.to_string(),
            Redemption {
                points,
                at: now,
                reference,
            },
        );
        self.redeemed = self.redeemed.saturating_add(points);
        self.updated_at = self.updated_at.max(now);
        self.log(
            now,
            LedgerKind::Redeemed,
            points,
            format!("redemption:{id}"),
        );
        Ok(Redeemed {
            points,
            balance: self.balance(),
            replayed: false,
        })
    }

    /// The returns of purchase `key`, by return id.
    pub fn returns_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ReturnFact> + 'a {
        self.returns.values().filter(move |r| r.source.key() == key)
    }

    /// The state's own checks (used by the tests and the simulation).
    pub fn check(&self) -> Result<(), String> {
        let earned: i64 = self.purchases.values().map(|p| p.points_earned).sum();
        let reversed: i64 = self.purchases.values().map(|p| p.points_reversed).sum();
        let redeemed: i64 = self.redemptions.values().map(|r| r.points).sum();
        if (earned, reversed, redeemed) != (self.earned, self.reversed, self.redeemed) {
            return Err(format!(
                "totals {:?} differ from the records {:?}",
                (self.earned, self.reversed, self.redeemed),
                (earned, reversed, redeemed)
            ));
        }
        if self
            .purchases
            .values()
            .any(|p| p.points_reversed > p.points_earned)
        {
            return Err("a purchase reversed more than it earned".into());
        }
        if self.balance() < 0 || self.balance() - self.shortfall() != earned - reversed - redeemed {
            return Err("balance and shortfall do not add up".into());
        }
        if self.erased_at.is_some() && self.profile.is_some() {
            return Err("an erased customer has a profile".into());
        }
        Ok(())
    }
}

/// The customer's report of a return case: what came back and what was
/// given for it so far. `seq` (units received + refunds + the exchange)
/// rises with every change, so the newest report wins.
pub fn return_fact(case: &crate::returns::ReturnCase, at: Timestamp) -> Option<ReturnFact> {
    let source = match case.source() {
        crate::returns::ReturnSource::Order(o) => Source::Order(o.clone()),
        crate::returns::ReturnSource::Sale(s) => Source::Sale(s.clone()),
    };
    let received: i64 = case.lines().iter().map(|l| l.received()).sum();
    let exchanged = u32::from(case.exchange().is_some());
    let seq = u32::try_from(received)
        .ok()?
        .checked_add(u32::try_from(case.refunds().len()).ok()?)?
        .checked_add(exchanged)?;
    let zero = Money::zero(case.currency());
    Some(ReturnFact {
        return_id: case.id().clone(),
        source,
        seq,
        at,
        refunded: case.refunded().ok()?,
        credited: case.exchange().map_or(zero, |x| x.credit),
        lines: case
            .lines()
            .iter()
            .filter(|l| l.received() > 0)
            .map(|l| (l.sku.clone(), l.received()))
            .collect(),
    })
}

#[cfg(test)]
mod tests;
