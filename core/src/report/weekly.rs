//! The weekly report: top sellers against their stockout hours, return
//! rate per SKU and reasons, adjustments by reason, sell-through by
//! channel, aging inventory. A pure function of [`Facts`].
//!
//! Definitions (the report states them too):
//! - units sold: POS sale lines by `occurred_at`, order lines when their
//!   part was paid (an order cancelled after is no sale); revenue is
//!   qty * unit_price as priced (tax excluded where prices exclude it).
//! - stockout hours: time in the week when `available` (till channel) at a
//!   location was 0 or less, from the positions the SKU events carry; the
//!   position at the week's start is the last one before it (a SKU never
//!   stocked at a location has no stockout there).
//! - sell-through of a channel: units sold / (units sold + units on hand
//!   at week end), on hand shared by the channels.
//! - aging: units on hand at week end at a (SKU, location) whose last sale
//!   (POS sale or order shipment/collection at that location) is 30, 60 or
//!   90+ days before the week's end, or never sold and first stocked that
//!   long ago; valued at the SKU's price when the caller knows it (omnistock
//!   records no cost).
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use rust_decimal::{Decimal, RoundingStrategy};

use super::{ratio, sold_lines, Facts};
use crate::ids::{LocationId, Sku};
use crate::money::Currency;
use crate::sku::Event;
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;

/// Top sellers listed.
pub const TOP: usize = 20;
/// Most aging rows listed (the oldest first); totals count every row.
pub const MAX_AGING_ROWS: usize = 200;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money2 {
    pub amount: Decimal,
    pub currency: Currency,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopSeller {
    pub sku: Sku,
    pub units: Qty,
    pub revenue: Vec<Money2>,
    /// Hours with nothing available, summed over the locations in scope.
    pub stockout_hours: Decimal,
    /// Locations with any stockout in the week.
    pub stockout_locations: Vec<LocationId>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnRate {
    pub sku: Sku,
    pub units_sold: Qty,
    pub units_returned: Qty,
    /// returned / sold in the week (4 places); null when none sold.
    pub return_rate: Option<Decimal>,
    /// Units returned per reason.
    pub reasons: BTreeMap<String, Qty>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adjustments {
    pub reason: String,
    pub count: u64,
    pub units_in: Qty,
    pub units_out: Qty,
    pub net: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelSales {
    pub channel: String,
    pub units_sold: Qty,
    pub revenue: Vec<Money2>,
    pub on_hand_end: Qty,
    pub sell_through: Option<Decimal>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Aging {
    pub sku: Sku,
    pub location: LocationId,
    pub on_hand: Qty,
    pub last_sold_at: Option<Timestamp>,
    pub days_unsold: i64,
    /// 30, 60 or 90 (90 or more days unsold).
    pub bucket: u32,
    pub value: Option<Money2>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgingTotal {
    pub bucket: u32,
    pub units: Qty,
    pub value: Vec<Money2>,
    /// Units whose SKU has no known price (not in `value`).
    pub units_unvalued: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeeklyReport {
    pub start: Timestamp,
    pub end: Timestamp,
    pub location: Option<LocationId>,
    pub units_sold: Qty,
    pub revenue: Vec<Money2>,
    pub top_sellers: Vec<TopSeller>,
    pub returns: Vec<ReturnRate>,
    pub adjustments: Vec<Adjustments>,
    pub channels: Vec<ChannelSales>,
    pub sell_through: Option<Decimal>,
    pub on_hand_end: Qty,
    pub aging: Vec<Aging>,
    pub aging_totals: Vec<AgingTotal>,
}

/// Adds `amount` in `currency` to a per-currency sum (kept sorted).
fn add(sums: &mut Vec<Money2>, amount: Decimal, currency: Currency) {
    match sums.iter_mut().find(|m| m.currency == currency) {
        Some(m) => m.amount = m.amount.checked_add(amount).unwrap_or(m.amount),
        None => {
            sums.push(Money2 { amount, currency });
            sums.sort_by_key(|m| m.currency);
        }
    }
}

fn hours(ms: i64) -> Decimal {
    Decimal::from(ms)
        .checked_div(Decimal::from(HOUR_MS))
        .unwrap_or_default()
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// The (sku, location) position timeline: `(at, source seq order, on_hand,
/// available)` sorted by time, then source and seq.
type Timeline = Vec<(Timestamp, String, u64, Qty, Qty)>;

fn timelines(
    facts: &Facts,
    location: Option<&LocationId>,
) -> BTreeMap<(Sku, LocationId), Timeline> {
    let mut t: BTreeMap<(Sku, LocationId), Timeline> = BTreeMap::new();
    for f in &facts.stock {
        for p in &f.body.positions {
            if location.is_some_and(|l| *l != p.location) {
                continue;
            }
            t.entry((f.body.sku.clone(), p.location.clone()))
                .or_default()
                .push((f.at, f.source.clone(), f.seq, p.on_hand, p.available));
        }
    }
    for v in t.values_mut() {
        v.sort();
    }
    t
}

/// Milliseconds in `[start, end)` with available <= 0, and on hand at `end`.
fn stockout_ms(tl: &Timeline, start: Timestamp, end: Timestamp) -> (i64, Option<Qty>) {
    let mut out = 0;
    // The state in force, and since when (within the week).
    let mut cur: Option<(Qty, Qty)> = None;
    let mut since = start.as_ms();
    for (at, _, _, on_hand, available) in tl {
        if *at >= end {
            break;
        }
        let t = at.as_ms().max(start.as_ms());
        if let Some((_, a)) = cur {
            if a <= 0 {
                out += t - since;
            }
        }
        cur = Some((*on_hand, *available));
        since = t;
    }
    if let Some((_, a)) = cur {
        if a <= 0 {
            out += end.as_ms() - since;
        }
    }
    (out.max(0), cur.map(|(o, _)| o))
}

/// Builds the report of `[start, end)` (one location, or all when `None`)
/// as known at `now` (a week not over yet counts stockouts until `now`).
/// `prices`: each SKU's price, for the aging value (else its last selling
/// price in the facts; else unvalued).
pub fn weekly(
    facts: &Facts,
    start: Timestamp,
    end: Timestamp,
    now: Timestamp,
    location: Option<&LocationId>,
    prices: &BTreeMap<Sku, Money2>,
) -> WeeklyReport {
    let until = end.min(now).max(start);
    let lines = sold_lines(facts, start, end, location);
    let mut units_sold = 0;
    let mut revenue = Vec::new();
    let mut by_sku: BTreeMap<Sku, (Qty, Vec<Money2>)> = BTreeMap::new();
    let mut by_channel: BTreeMap<Channel, (Qty, Vec<Money2>)> = BTreeMap::new();
    for c in &lines {
        let amount = c
            .line
            .unit_price
            .checked_mul(Decimal::from(c.line.qty))
            .unwrap_or_default();
        units_sold += c.line.qty;
        add(&mut revenue, amount, c.currency);
        let s = by_sku.entry(c.line.sku.clone()).or_default();
        s.0 += c.line.qty;
        add(&mut s.1, amount, c.currency);
        let ch = by_channel.entry(c.channel).or_default();
        ch.0 += c.line.qty;
        add(&mut ch.1, amount, c.currency);
    }

    // Stockouts and on hand at the end, per (sku, location).
    let tls = timelines(facts, location);
    let mut stockouts: BTreeMap<Sku, (i64, Vec<LocationId>)> = BTreeMap::new();
    let mut on_hand_end: BTreeMap<(Sku, LocationId), Qty> = BTreeMap::new();
    for ((sku, loc), tl) in &tls {
        let (ms, oh) = stockout_ms(tl, start, until);
        let e = stockouts.entry(sku.clone()).or_default();
        e.0 += ms;
        if ms > 0 {
            e.1.push(loc.clone());
        }
        if let Some(oh) = oh {
            on_hand_end.insert((sku.clone(), loc.clone()), oh);
        }
    }
    let total_on_hand: Qty = on_hand_end.values().map(|q| (*q).max(0)).sum();

    let mut top: Vec<TopSeller> = by_sku
        .iter()
        .map(|(sku, (units, rev))| {
            let (ms, locs) = stockouts.get(sku).cloned().unwrap_or_default();
            TopSeller {
                sku: sku.clone(),
                units: *units,
                revenue: rev.clone(),
                stockout_hours: hours(ms),
                stockout_locations: locs,
            }
        })
        .collect();
    top.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.sku.cmp(&b.sku)));
    top.truncate(TOP);

    // Returns initiated in the week, against units sold in the week.
    let mut rets: BTreeMap<Sku, (Qty, BTreeMap<String, Qty>)> = BTreeMap::new();
    for r in &facts.returns {
        if r.created_at < start || r.created_at >= end {
            continue;
        }
        for l in &r.lines {
            if location.is_some_and(|x| *x != l.sold_at) {
                continue;
            }
            let e = rets.entry(l.sku.clone()).or_default();
            e.0 += l.qty;
            *e.1.entry(l.reason.clone()).or_default() += l.qty;
        }
    }
    let mut skus: Vec<&Sku> = by_sku.keys().chain(rets.keys()).collect();
    skus.sort();
    skus.dedup();
    let returns = skus
        .into_iter()
        .map(|sku| {
            let sold = by_sku.get(sku).map_or(0, |s| s.0);
            let (returned, reasons) = rets.get(sku).cloned().unwrap_or_default();
            ReturnRate {
                sku: sku.clone(),
                units_sold: sold,
                units_returned: returned,
                return_rate: ratio(returned, sold),
                reasons,
            }
        })
        .collect();

    // Adjustments (and count variances) by reason.
    let mut adj: BTreeMap<String, Adjustments> = BTreeMap::new();
    for f in &facts.stock {
        if f.at < start || f.at >= end {
            continue;
        }
        let (reason, delta, loc) = match &f.body.event {
            Event::Adjusted {
                reason,
                delta,
                location,
                ..
            } => (reason_name(*reason).to_string(), *delta, location),
            Event::Counted {
                variance, location, ..
            } => ("count_variance".to_string(), *variance, location),
            _ => continue,
        };
        if location.is_some_and(|l| l != loc) {
            continue;
        }
        let a = adj.entry(reason.clone()).or_insert(Adjustments {
            reason,
            count: 0,
            units_in: 0,
            units_out: 0,
            net: 0,
        });
        a.count += 1;
        if delta >= 0 {
            a.units_in += delta;
        } else {
            a.units_out -= delta;
        }
        a.net += delta;
    }

    let channels = [Channel::Online, Channel::Pos]
        .into_iter()
        .map(|ch| {
            let (units, rev) = by_channel.get(&ch).cloned().unwrap_or_default();
            ChannelSales {
                channel: channel_name(ch).to_string(),
                units_sold: units,
                revenue: rev,
                on_hand_end: total_on_hand,
                sell_through: ratio(units, units + total_on_hand),
            }
        })
        .collect();

    // Value basis: the caller's prices, else the SKU's last selling price
    // in these facts (omnistock records no cost).
    let mut seen: BTreeMap<Sku, (Timestamp, Money2)> = BTreeMap::new();
    for c in &lines {
        let m = Money2 {
            amount: c.line.unit_price,
            currency: c.currency,
        };
        match seen.get(&c.line.sku) {
            Some((t, _)) if *t > c.at => {}
            _ => {
                seen.insert(c.line.sku.clone(), (c.at, m));
            }
        }
    }
    let mut all_prices: BTreeMap<Sku, Money2> =
        seen.into_iter().map(|(k, (_, m))| (k, m)).collect();
    for (k, m) in prices {
        all_prices.insert(k.clone(), m.clone());
    }
    let (aging, aging_totals) = aging(facts, end, location, &on_hand_end, &all_prices);
    WeeklyReport {
        start,
        end,
        location: location.cloned(),
        units_sold,
        revenue,
        top_sellers: top,
        returns,
        adjustments: adj.into_values().collect(),
        channels,
        sell_through: ratio(units_sold, units_sold + total_on_hand),
        on_hand_end: total_on_hand,
        aging,
        aging_totals,
    }
}

fn aging(
    facts: &Facts,
    end: Timestamp,
    location: Option<&LocationId>,
    on_hand_end: &BTreeMap<(Sku, LocationId), Qty>,
    prices: &BTreeMap<Sku, Money2>,
) -> (Vec<Aging>, Vec<AgingTotal>) {
    // Last sale (or shipment) and first event per (sku, location), up to end.
    let mut last_sold: BTreeMap<(Sku, LocationId), Timestamp> = BTreeMap::new();
    let mut first: BTreeMap<(Sku, LocationId), Timestamp> = BTreeMap::new();
    for f in &facts.stock {
        if f.at >= end {
            continue;
        }
        let sold_at = match &f.body.event {
            Event::Sold {
                location,
                occurred_at,
                ..
            } => Some((location, (*occurred_at).min(f.at))),
            Event::Fulfilled { location, .. } => Some((location, f.at)),
            _ => None,
        };
        if let Some((l, t)) = sold_at {
            let k = (f.body.sku.clone(), l.clone());
            let e = last_sold.entry(k).or_insert(t);
            *e = (*e).max(t);
        }
        for p in &f.body.positions {
            let k = (f.body.sku.clone(), p.location.clone());
            let e = first.entry(k).or_insert(f.at);
            *e = (*e).min(f.at);
        }
    }
    let mut rows = Vec::new();
    for ((sku, loc), oh) in on_hand_end {
        if *oh <= 0 || location.is_some_and(|l| l != loc) {
            continue;
        }
        let k = (sku.clone(), loc.clone());
        let last = last_sold.get(&k).copied();
        let Some(since) = last.or_else(|| first.get(&k).copied()) else {
            continue;
        };
        let days = (end.as_ms() - since.as_ms()).max(0) / DAY_MS;
        let bucket = match days {
            d if d >= 90 => 90,
            d if d >= 60 => 60,
            d if d >= 30 => 30,
            _ => continue,
        };
        let value = prices.get(sku).and_then(|p| {
            Some(Money2 {
                amount: p.amount.checked_mul(Decimal::from(*oh))?,
                currency: p.currency,
            })
        });
        rows.push(Aging {
            sku: sku.clone(),
            location: loc.clone(),
            on_hand: *oh,
            last_sold_at: last,
            days_unsold: days,
            bucket,
            value,
        });
    }
    let totals = [30u32, 60, 90]
        .into_iter()
        .map(|b| {
            let mut t = AgingTotal {
                bucket: b,
                units: 0,
                value: Vec::new(),
                units_unvalued: 0,
            };
            for r in rows.iter().filter(|r| r.bucket == b) {
                t.units += r.on_hand;
                match &r.value {
                    Some(v) => add(&mut t.value, v.amount, v.currency),
                    None => t.units_unvalued += r.on_hand,
                }
            }
            t
        })
        .collect();
    rows.sort_by(|a, b| {
        b.days_unsold
            .cmp(&a.days_unsold)
            .then_with(|| a.sku.cmp(&b.sku))
            .then_with(|| a.location.cmp(&b.location))
    });
    rows.truncate(MAX_AGING_ROWS);
    (rows, totals)
}

pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Online => "online",
        Channel::Pos => "pos",
    }
}

pub fn reason_name(r: crate::stock::AdjustReason) -> &'static str {
    use crate::stock::AdjustReason::*;
    match r {
        Damaged => "damaged",
        Shrinkage => "shrinkage",
        Found => "found",
        Correction => "correction",
        Promotion => "promotion",
        Other => "other",
    }
}
