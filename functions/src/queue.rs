//! The order queue: a read model in D1 (binding `DB`, schema in
//! `migrations/`), written by each Order object after every change and read
//! by `GET /v1/orders`. It never decides anything: the Order objects are the
//! truth, and a row here is their latest summary.
//!
//! Writes are at least once and idempotent: a row carries the order's
//! `version`, and an upsert with a version not newer than the stored one
//! changes nothing (the order row and its part rows are replaced together,
//! in one D1 batch, which D1 runs as one transaction). An Order object whose
//! upsert failed retries it from its alarm, so the queue catches up.
//!
//! Listing is newest first by `(created_at, id)` with an opaque cursor
//! (`<created_at ms>.<id>` of the last row of the previous page). A part
//! filter (status, location, at_risk, pickup_overdue) matches an order when
//! one of its parts matches all of them.
use serde::Deserialize;
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{D1Database, Env};

use crate::http::{check_id, Problem};

/// Most orders in one page, and the default.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 50;
/// Most parts of one order (one per location).
pub const MAX_PARTS: usize = 100;
/// Longest cursor accepted.
pub const MAX_CURSOR_LEN: usize = 100;
/// Order states a part may be in (core's `OrderStatus` names).
const STATUSES: [&str; 9] = [
    "new",
    "paid",
    "ready_to_pick",
    "packed",
    "shipped",
    "ready_for_pickup",
    "collected",
    "cancelled",
    "returned",
];

/// One order as the queue keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderRow {
    pub id: String,
    pub channel: String,
    pub customer_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Rises with every change of the order; an older version never
    /// overwrites a newer one.
    pub version: u64,
    pub parts: Vec<PartRow>,
    /// What `GET /v1/orders` shows for this order (the Order object's view).
    pub summary: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRow {
    pub part: u32,
    pub location: String,
    pub status: String,
    pub at_risk: bool,
    pub pickup_overdue: bool,
}

/// A query of the queue. Every `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub location: Option<String>,
    pub channel: Option<String>,
    pub at_risk: Option<bool>,
    pub pickup_overdue: Option<bool>,
    /// `1..=MAX_PAGE`.
    pub limit: usize,
    pub cursor: Option<String>,
}

/// One page, newest first, and the cursor of the next (none on the last).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderPage {
    pub orders: Vec<Value>,
    pub next_cursor: Option<String>,
}

fn db(env: &Env) -> Result<D1Database, Problem> {
    env.d1("DB")
        .map_err(|_| Problem::overloaded("the order queue (D1 binding DB) is not configured"))
}

fn d1_error(what: &str) -> impl Fn(worker::Error) -> Problem + '_ {
    move |e| {
        worker::console_error!("queue: {what}: {e}");
        Problem::overloaded(format!("the order queue could not {what}; retry"))
    }
}

fn num(n: i64) -> JsValue {
    // D1 integers bound as i32 lose range: JS numbers are exact to 2^53.
    JsValue::from_f64(n as f64)
}

fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, text)
}

fn opt_bool(b: Option<bool>) -> JsValue {
    b.map_or(JsValue::NULL, |b| num(i64::from(b)))
}

/// Writes `row` unless the queue already has this version or a newer one.
pub async fn upsert(env: &Env, row: &OrderRow) -> Result<(), Problem> {
    if row.parts.is_empty() || row.parts.len() > MAX_PARTS {
        return Err(Problem::invalid("an order has 1 to 100 parts"));
    }
    if row.version > (1 << 53) {
        return Err(Problem::invalid("order version out of range"));
    }
    let db = db(env)?;
    let version = num(row.version as i64);
    let summary = serde_json::to_string(&row.summary)
        .map_err(|_| Problem::overloaded("order summary is not JSON"))?;
    let bind = |sql: &str, args: &[JsValue]| {
        db.prepare(sql)
            .bind(args)
            .map_err(d1_error("prepare an upsert"))
    };
    let mut batch = vec![bind(
        "INSERT INTO orders (id, channel, customer_id, created_at, updated_at, version, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET channel = excluded.channel,
           customer_id = excluded.customer_id, updated_at = excluded.updated_at,
           version = excluded.version, summary = excluded.summary
         WHERE excluded.version > orders.version",
        &[
            text(&row.id),
            text(&row.channel),
            opt_text(row.customer_id.as_deref()),
            num(row.created_at_ms),
            num(row.updated_at_ms),
            version.clone(),
            text(&summary),
        ],
    )?];
    // The parts follow the order row only when it now holds this version
    // (an older, late upsert replaces nothing).
    batch.push(bind(
        "DELETE FROM order_parts WHERE order_id = ?1
           AND (SELECT version FROM orders WHERE id = ?1) = ?2",
        &[text(&row.id), version.clone()],
    )?);
    for p in &row.parts {
        batch.push(bind(
            "INSERT OR REPLACE INTO order_parts (order_id, part, location, status, at_risk, pickup_overdue)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE (SELECT version FROM orders WHERE id = ?1) = ?7",
            &[
                text(&row.id),
                num(i64::from(p.part)),
                text(&p.location),
                text(&p.status),
                num(i64::from(p.at_risk)),
                num(i64::from(p.pickup_overdue)),
                version.clone(),
            ],
        )?);
    }
    db.batch(batch)
        .await
        .map_err(d1_error("record the order"))?;
    Ok(())
}

/// Checks a filter's values (the handler turns query parameters into one).
pub fn check_filter(f: &OrderFilter) -> Result<(), Problem> {
    if let Some(s) = &f.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(Problem::invalid(format!(
                "status {s:?} is not one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    if let Some(l) = &f.location {
        check_id(l, &format!("location {l:?}"))?;
    }
    if let Some(c) = &f.channel {
        if c != "online" && c != "pos" {
            return Err(Problem::invalid("channel is online or pos"));
        }
    }
    if !(1..=MAX_PAGE).contains(&f.limit) {
        return Err(Problem::invalid(format!("limit is 1 to {MAX_PAGE}")));
    }
    if let Some(c) = &f.cursor {
        parse_cursor(c)?;
    }
    Ok(())
}

fn parse_cursor(c: &str) -> Result<(i64, &str), Problem> {
    let bad = || Problem::invalid("cursor is not one this API gave");
    if c.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().ok().filter(|t| *t >= 0).ok_or_else(bad)?;
    check_id(id, "cursor").map_err(|_| bad())?;
    Ok((at, id))
}

#[derive(Deserialize)]
struct ListRow {
    id: String,
    created_at: f64,
    summary: String,
}

/// One page of the queue.
pub async fn list(env: &Env, f: &OrderFilter) -> Result<OrderPage, Problem> {
    check_filter(f)?;
    let (after_at, after_id) = match &f.cursor {
        Some(c) => {
            let (at, id) = parse_cursor(c)?;
            (num(at), text(id))
        }
        None => (JsValue::NULL, JsValue::NULL),
    };
    let parts_filtered = f.status.is_some()
        || f.location.is_some()
        || f.at_risk.is_some()
        || f.pickup_overdue.is_some();
    let sql = format!(
        "SELECT o.id AS id, o.created_at AS created_at, o.summary AS summary FROM orders o
         WHERE (?1 IS NULL OR o.channel = ?1)
           AND (?2 IS NULL OR o.created_at < ?2 OR (o.created_at = ?2 AND o.id < ?3))
           {}
         ORDER BY o.created_at DESC, o.id DESC LIMIT ?8",
        if parts_filtered {
            "AND EXISTS (SELECT 1 FROM order_parts p WHERE p.order_id = o.id
               AND (?4 IS NULL OR p.status = ?4) AND (?5 IS NULL OR p.location = ?5)
               AND (?6 IS NULL OR p.at_risk = ?6) AND (?7 IS NULL OR p.pickup_overdue = ?7))"
        } else {
            "AND (?4 IS NULL AND ?5 IS NULL AND ?6 IS NULL AND ?7 IS NULL)"
        }
    );
    let stmt = db(env)?
        .prepare(sql)
        .bind(&[
            opt_text(f.channel.as_deref()),
            after_at,
            after_id,
            opt_text(f.status.as_deref()),
            opt_text(f.location.as_deref()),
            opt_bool(f.at_risk),
            opt_bool(f.pickup_overdue),
            num(f.limit as i64 + 1),
        ])
        .map_err(d1_error("prepare the listing"))?;
    let rows: Vec<ListRow> = stmt
        .all()
        .await
        .map_err(d1_error("list orders"))?
        .results()
        .map_err(d1_error("read the listing"))?;
    let more = rows.len() > f.limit;
    let rows = &rows[..rows.len().min(f.limit)];
    let next_cursor = if more {
        rows.last()
            .map(|r| format!("{}.{}", r.created_at as i64, r.id))
    } else {
        None
    };
    let orders = rows
        .iter()
        .map(|r| serde_json::from_str(&r.summary).unwrap_or(Value::Null))
        .collect();
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> OrderFilter {
        OrderFilter {
            limit: 10,
            ..Default::default()
        }
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_filter(&filter()).is_ok());
        let bad = [
            OrderFilter {
                status: Some("lost".into()),
                ..filter()
            },
            OrderFilter {
                channel: Some("phone".into()),
                ..filter()
            },
            OrderFilter {
                location: Some("a b".into()),
                ..filter()
            },
            OrderFilter {
                limit: 0,
                ..filter()
            },
            OrderFilter {
                limit: 101,
                ..filter()
            },
            OrderFilter {
                cursor: Some("x".into()),
                ..filter()
            },
            OrderFilter {
                cursor: Some("-1.ord-1".into()),
                ..filter()
            },
        ];
        for f in bad {
            assert!(check_filter(&f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn a_cursor_is_time_dot_id() {
        assert_eq!(
            parse_cursor("1764400000000.ord.1").unwrap(),
            (1764400000000, "ord.1")
        );
    }
}
