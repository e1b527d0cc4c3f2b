//! The read models over the event feed (issue 10): selects a period's
//! events from D1 (`events`, see feed.rs), hands them to core
//! (`omnistock_core::report`) which computes everything, and keeps what
//! must be kept (weekly reports, the QBO sync's log). No arithmetic here:
//! only selection, decoding and storage.
use std::collections::BTreeMap;

use omnistock_core::report::accounting::{day_book, DayBook};
use omnistock_core::report::calendar::{self, WEEK_MS};
use omnistock_core::report::weekly::{weekly, WeeklyReport};
use omnistock_core::report::{Facts, Fed, OrderBody, ReturnBody, SaleBody, StockBody};
use omnistock_core::{LocationId, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{D1Database, Env};

use crate::http::{rfc3339, Problem};

/// Most events of one kind one report reads (a bound on work per request;
/// a report that hits it says so in `truncated`).
pub const MAX_EVENTS: usize = 50_000;

pub fn db(env: &Env) -> Result<D1Database, Problem> {
    env.d1("DB")
        .map_err(|_| Problem::overloaded("the read models (D1 binding DB) are not configured"))
}

pub fn d1_error(what: &'static str) -> impl Fn(worker::Error) -> Problem {
    move |e| {
        worker::console_error!("reports: {what}: {e}");
        Problem::overloaded(format!("the read models could not {what}; retry"))
    }
}

pub fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

#[derive(Deserialize)]
struct Row {
    source: String,
    seq: f64,
    at: f64,
    body: String,
}

/// Runs a selection of feed rows and decodes each body as `T` (a row that
/// does not decode is logged and skipped: it cannot be counted).
async fn select<T: DeserializeOwned>(
    db: &D1Database,
    q: &str,
    args: &[JsValue],
    truncated: &mut bool,
) -> Result<Vec<Fed<T>>, Problem> {
    let rows: Vec<Row> = db
        .prepare(q)
        .bind(args)
        .map_err(d1_error("prepare a selection"))?
        .all()
        .await
        .map_err(d1_error("select events"))?
        .results()
        .map_err(d1_error("decode events"))?;
    if rows.len() >= MAX_EVENTS {
        *truncated = true;
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match serde_json::from_str::<T>(&r.body) {
            Ok(body) => out.push(Fed {
                source: r.source,
                seq: r.seq as u64,
                at: Timestamp::from_ms(r.at as i64),
                body,
            }),
            Err(e) => worker::console_error!("reports: {} #{}: undecodable: {e}", r.source, r.seq),
        }
    }
    Ok(out)
}

/// The facts of `[start, end)`: the period's stock events, plus per SKU
/// object and location the last event before it (the position at its
/// start), the last sale or shipment and the first event (for aging); the
/// period's POS sales; the latest snapshot of every order and return that
/// changed since `since` (an order paid in the period changed since then).
pub async fn facts(
    env: &Env,
    start: Timestamp,
    end: Timestamp,
    since: Timestamp,
) -> Result<(Facts, bool), Problem> {
    let db = db(env)?;
    let mut truncated = false;
    let t = &mut truncated;
    let (s, e, lim) = (num(start.as_ms()), num(end.as_ms()), num(MAX_EVENTS as i64));
    let mut stock: Vec<Fed<StockBody>> = select(
        &db,
        "SELECT source, seq, at, body FROM events WHERE kind = 'stock' AND at >= ?1 AND at < ?2
         ORDER BY at, source, seq LIMIT ?3",
        &[s.clone(), e.clone(), lim.clone()],
        t,
    )
    .await?;
    // SQLite: a bare column with max()/min() comes from that row.
    for q in [
        "SELECT source, max(seq) AS seq, at, body FROM events
         WHERE kind = 'stock' AND at < ?1 GROUP BY source, location LIMIT ?2",
        "SELECT source, min(seq) AS seq, at, body FROM events
         WHERE kind = 'stock' AND at < ?1 GROUP BY source, location LIMIT ?2",
    ] {
        stock.extend(select(&db, q, &[s.clone(), lim.clone()], t).await?);
    }
    stock.extend(
        select(
            &db,
            "SELECT source, max(seq) AS seq, at, body FROM events
             WHERE kind = 'stock' AND at < ?1
               AND json_extract(body, '$.event.type') IN ('sold', 'fulfilled')
             GROUP BY source, location LIMIT ?2",
            &[e.clone(), lim.clone()],
            t,
        )
        .await?,
    );
    let sales: Vec<Fed<SaleBody>> = select(
        &db,
        "SELECT source, seq, at, body FROM events WHERE kind = 'sale' AND at >= ?1 AND at < ?2
         ORDER BY at, source, seq LIMIT ?3",
        &[s.clone(), e.clone(), lim.clone()],
        t,
    )
    .await?;
    let latest = |kind: &str| {
        format!(
            "SELECT source, max(seq) AS seq, at, body FROM events
             WHERE kind = '{kind}' AND at >= ?1 GROUP BY source LIMIT ?2"
        )
    };
    let sn = num(since.as_ms());
    let orders: Vec<Fed<OrderBody>> =
        select(&db, &latest("order"), &[sn.clone(), lim.clone()], t).await?;
    let returns: Vec<Fed<ReturnBody>> = select(&db, &latest("return"), &[sn, lim], t).await?;
    Ok((Facts::new(&stock, &sales, &orders, &returns), truncated))
}

/// How current the feed is, as every read-model answer shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Freshness {
    /// Every event before this time has reached D1 (RFC 3339), or null
    /// when nothing was ever forwarded.
    pub as_of: Option<String>,
    pub sources: i64,
    /// Sources with events still waiting in their outbox.
    pub sources_behind: i64,
    /// A selection hit `MAX_EVENTS`: figures are partial.
    pub truncated: bool,
}

pub async fn freshness(env: &Env, truncated: bool) -> Result<Freshness, Problem> {
    let (as_of, sources, behind) = crate::feed::as_of(env).await?;
    Ok(Freshness {
        as_of: as_of.map(rfc3339),
        sources,
        sources_behind: behind,
        truncated,
    })
}

/// A weekly report with its week and freshness.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeeklyAnswer {
    pub week: String,
    pub location: Option<LocationId>,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub freshness: Freshness,
    /// `stored`: built by the Monday run (or a build request) and kept;
    /// `live`: computed now from the feed.
    pub source: String,
    pub built_at: String,
    pub definitions: serde_json::Value,
    pub report: WeeklyReport,
}

fn definitions() -> serde_json::Value {
    serde_json::json!({
        "units_sold": "POS sale lines by occurred_at; order lines when their part was paid (an order cancelled later is no sale)",
        "revenue": "qty x unit_price as priced, per currency (tax excluded where prices exclude it); exact sums",
        "stockout_hours": "hours in the week with available (till channel) <= 0 at a location, summed over locations; 2 places, half away from zero",
        "return_rate": "units of returns initiated in the week / units sold in the week; 4 places, half away from zero",
        "adjustments": "adjustments by reason, and physical counts' variance as count_variance",
        "sell_through": "units sold / (units sold + units on hand at week end); 4 places",
        "aging": "units on hand at week end unsold for 30/60/90+ days (since the last sale or shipment there, else since first stocked)",
        "aging_value": "at the SKU's last selling price in the week's sales; omnistock records no cost; units without a price are units_unvalued",
    })
}

/// Computes the report of `week` (`YYYY-Www`) from the feed.
pub async fn build_weekly(
    env: &Env,
    week: &str,
    location: Option<&LocationId>,
    now: i64,
) -> Result<WeeklyAnswer, Problem> {
    let (start, end) = calendar::parse_week(week)
        .ok_or_else(|| Problem::invalid("week is an ISO week like 2026-W48"))?;
    let (facts, truncated) = facts(env, start, end, start).await?;
    let report = weekly(
        &facts,
        start,
        end,
        Timestamp::from_ms(now),
        location,
        &BTreeMap::new(),
    );
    Ok(WeeklyAnswer {
        week: week.to_string(),
        location: location.cloned(),
        from: rfc3339(start.as_ms()),
        to: rfc3339(end.as_ms()),
        freshness: freshness(env, truncated).await?,
        source: "live".into(),
        built_at: rfc3339(now),
        definitions: definitions(),
        report,
    })
}

/// A stored weekly report, if the Monday run (or a build) kept one.
pub async fn stored_weekly(
    env: &Env,
    week: &str,
    location: Option<&LocationId>,
) -> Result<Option<WeeklyAnswer>, Problem> {
    #[derive(Deserialize)]
    struct J {
        json: String,
    }
    let db = db(env)?;
    let row: Option<J> = db
        .prepare("SELECT json FROM weekly_reports WHERE week = ?1 AND location = ?2")
        .bind(&[
            JsValue::from_str(week),
            JsValue::from_str(location.map_or("", |l| l.as_str())),
        ])
        .map_err(d1_error("prepare a report read"))?
        .first(None)
        .await
        .map_err(d1_error("read a stored report"))?;
    Ok(row.and_then(|r| serde_json::from_str(&r.json).ok()))
}

/// Builds and stores the report of `week` (replacing an earlier build).
pub async fn store_weekly(
    env: &Env,
    week: &str,
    location: Option<&LocationId>,
    now: i64,
) -> Result<WeeklyAnswer, Problem> {
    let mut a = build_weekly(env, week, location, now).await?;
    a.source = "stored".into();
    let db = db(env)?;
    db.prepare(
        "INSERT OR REPLACE INTO weekly_reports (week, location, json, built_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(&[
        JsValue::from_str(week),
        JsValue::from_str(location.map_or("", |l| l.as_str())),
        JsValue::from_str(&serde_json::to_string(&a)?),
        num(now),
    ])
    .map_err(d1_error("prepare a report write"))?
    .run()
    .await
    .map_err(d1_error("store a report"))?;
    Ok(a)
}

/// The ISO week before the one containing `now`.
pub fn last_week(now: i64) -> String {
    calendar::week_of(Timestamp::from_ms(now - WEEK_MS))
}

/// The accounting day book of `date` (`YYYY-MM-DD`).
pub async fn day(env: &Env, date: &str) -> Result<(DayBook, Freshness), Problem> {
    let (start, end) = calendar::parse_date(date)
        .ok_or_else(|| Problem::invalid("date is a day like 2026-11-24"))?;
    let (facts, truncated) = facts(env, start, end, start).await?;
    Ok((
        day_book(&facts, start, end, date),
        freshness(env, truncated).await?,
    ))
}

/// Mondays 03:00 UTC: last week's report, stored.
pub const CRON_WEEKLY: &str = "0 3 * * 1";
/// Daily 02:30 UTC: yesterday's receipts to QuickBooks Online.
pub const CRON_DAILY_SYNC: &str = "30 2 * * *";

/// The Cron Triggers of reports and accounting.
pub async fn on_cron(cron: &str, env: &Env, now: i64) {
    let r = if cron == CRON_WEEKLY {
        store_weekly(env, &last_week(now), None, now)
            .await
            .map(|_| ())
    } else {
        let yesterday = calendar::date_of(Timestamp::from_ms(now - calendar::DAY_MS));
        crate::qbo::sync(env, &yesterday, now).await.map(|s| {
            worker::console_log!(
                "qbo sync {}: {} synced, {} failed, {} rejected",
                s.date,
                s.synced,
                s.failed,
                s.rejected
            )
        })
    };
    if let Err(p) = r {
        worker::console_error!("cron {cron}: {}", p.detail);
    }
}
