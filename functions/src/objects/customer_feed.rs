//! The customer feed of the producer objects (`Terminal`, `Order`,
//! `ReturnCase`): each purchase or return of a known customer is offered
//! into a small outbox table of the producer, `customer_feed`, in the same
//! SQLite transaction as the producer's own state, then delivered to the
//! `Customer` object at least once (retried by the producer's alarm every
//! [`RETRY_MS`] until acknowledged). Each fact carries its source id (and a
//! return its rising `seq`), so the customer applies it once.
use omnistock_core::customer::{return_fact, PurchaseFact, PurchaseLine, ReturnFact, Source};
use omnistock_core::money::Money;
use omnistock_core::order::{OrderStatus, PartView};
use omnistock_core::{OrderId, Timestamp};
use serde::Deserialize;
use worker::{Env, Storage};

use super::storage::{self, int, text, Stmt};
use crate::http::Problem;
use crate::wire::customer::{deliver, CustomerOp};
use crate::wire::order::PricedOrder;
use crate::wire::terminal::Sale;

/// A fact not acknowledged is sent again after this long (by the alarm).
pub const RETRY_MS: i64 = 5_000;
/// Most facts one flush sends.
pub const MAX_FLUSH: i64 = 50;

/// The outbox table. Each producer creates it with its own schema, once per
/// instance (`ensure_schema`); the functions here expect it to exist.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS customer_feed (k TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL, op TEXT NOT NULL, seq INTEGER NOT NULL, told INTEGER NOT NULL,
  at INTEGER NOT NULL)";

/// A fact for a customer.
pub struct Offer {
    pub key: String,
    pub customer_id: String,
    pub op: CustomerOp,
    pub seq: u32,
}

/// The statement that records `o` (a newer `seq` replaces an older one and
/// is sent again; the same or an older one changes nothing).
pub fn offer_stmt(o: &Offer) -> Result<Stmt, Problem> {
    Ok((
        "INSERT INTO customer_feed (k, customer_id, op, seq, told, at) VALUES (?, ?, ?, ?, 0, ?)
         ON CONFLICT (k) DO UPDATE SET op = excluded.op, seq = excluded.seq, told = 0,
           at = excluded.at WHERE excluded.seq > customer_feed.seq",
        vec![
            text(&o.key),
            text(&o.customer_id),
            text(&serde_json::to_string(&o.op)?),
            int(i64::from(o.seq)),
            int(storage::now_ms()),
        ],
    ))
}

/// The producer's own JSON row (`storage::save_json`'s table shape).
#[derive(Clone, Copy, Debug)]
pub enum Home {
    /// The `Order` object's row `o` of table `ord`.
    Order,
    /// The `ReturnCase` object's row `r` of table `return_case`.
    Return,
}

impl Home {
    fn table_key(self) -> (&'static str, &'static str) {
        match self {
            Home::Order => ("ord", "o"),
            Home::Return => ("return_case", "r"),
        }
    }
    /// Its table's upsert and piece trim (`storage::json_row_stmts`).
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            Home::Order => (
                "INSERT OR REPLACE INTO ord (k, json) VALUES (?, ?)",
                "DELETE FROM ord WHERE k > ? AND k < ?",
            ),
            Home::Return => (
                "INSERT OR REPLACE INTO return_case (k, json) VALUES (?, ?)",
                "DELETE FROM return_case WHERE k > ? AND k < ?",
            ),
        }
    }
}

/// Stores the producer's row (in pieces of at most `max` bytes when
/// larger) and the offer, if any, in one transaction.
pub fn save_with_offer<T: serde::Serialize>(
    st: &Storage,
    home: Home,
    value: &T,
    offer: Option<Offer>,
    max: usize,
) -> Result<(), Problem> {
    let (table, key) = home.table_key();
    let Some(o) = offer else {
        return storage::save_json(st, table, key, value, max);
    };
    let (upsert, trim) = home.statements();
    let mut stmts = storage::json_row_stmts(upsert, trim, key, &serde_json::to_string(value)?, max);
    stmts.push(offer_stmt(&o)?);
    storage::atomically(st, stmts)
}

#[derive(Deserialize)]
struct Row {
    k: String,
    customer_id: String,
    op: String,
    seq: i64,
}

/// Sends what is not yet acknowledged; `Some(at)`: something is left, the
/// caller's alarm should fire at `at`. The alarm is pointed there before
/// sending, so a crash mid-way is retried too.
pub async fn flush(env: &Env, st: &Storage) -> Result<Option<i64>, Problem> {
    let sql = st.sql();
    let rows: Vec<Row> = storage::query(
        &sql,
        "SELECT k, customer_id, op, seq FROM customer_feed WHERE told = 0 ORDER BY at, k LIMIT ?",
        vec![int(MAX_FLUSH)],
    )?;
    if rows.is_empty() {
        return Ok(None);
    }
    let retry = storage::now_ms() + RETRY_MS;
    storage::alarm_by(st, retry).await?;
    let mut left = false;
    for r in rows {
        let op: CustomerOp = serde_json::from_str(&r.op)?;
        if deliver(env, &r.customer_id, op).await {
            storage::exec(
                &sql,
                "UPDATE customer_feed SET told = 1 WHERE k = ? AND seq = ?",
                vec![text(&r.k), int(r.seq)],
            )?;
        } else {
            left = true;
        }
    }
    Ok(left.then_some(retry))
}

/// A POS sale of a customer: a purchase at sale time (paid at the till).
/// Its total is the lines' prices times quantities (`Sale::purchase_fact`,
/// the fact a receipt's loyalty figures are asked with too).
pub fn sale_offer(s: &Sale) -> Option<Offer> {
    let customer_id = s.customer_id.clone()?;
    let fact = s.purchase_fact()?;
    Some(Offer {
        key: fact.source.key(),
        customer_id,
        op: CustomerOp::Purchase(fact),
        seq: 1,
    })
}

/// An order of a customer, once complete: every part shipped, collected,
/// returned or cancelled, and at least one not cancelled. The purchase is
/// what the fulfilled parts' lines cost (gross, tax included).
pub fn order_offer(o: &PricedOrder, parts: &[PartView], at: i64) -> Option<Offer> {
    let customer_id = o.customer_id.clone()?;
    let done = |s: OrderStatus| {
        matches!(
            s,
            OrderStatus::Shipped
                | OrderStatus::Collected
                | OrderStatus::Returned
                | OrderStatus::Cancelled
        )
    };
    if parts.is_empty() || parts.iter().any(|p| !done(p.status)) {
        return None;
    }
    let fulfilled: Vec<u32> = parts
        .iter()
        .filter(|p| p.status != OrderStatus::Cancelled)
        .map(|p| p.part)
        .collect();
    if fulfilled.is_empty() {
        return None;
    }
    let id = OrderId::parse(&o.id).ok()?;
    let mut total: Option<Money> = None;
    let mut lines = Vec::new();
    for l in o.lines.iter().filter(|l| fulfilled.contains(&l.part)) {
        total = Some(match total {
            None => l.gross,
            Some(t) => t.checked_add(l.gross).ok()?,
        });
        lines.push(PurchaseLine {
            sku: l.sku.clone(),
            qty: l.qty,
            amount: l.gross,
        });
    }
    let locations: Vec<_> = parts
        .iter()
        .filter(|p| fulfilled.contains(&p.part))
        .map(|p| p.location.clone())
        .collect();
    let fact = PurchaseFact {
        source: Source::Order(id),
        channel: o.channel,
        location: (locations.len() == 1).then(|| locations[0].clone()),
        at: Timestamp::from_ms(at),
        total: total?,
        lines,
    };
    Some(Offer {
        key: fact.source.key(),
        customer_id,
        op: CustomerOp::Purchase(fact),
        seq: 1,
    })
}

/// A return of a customer's purchase, once anything came back or was
/// given: its newest report (core's `return_fact`).
pub fn return_offer(
    case: &omnistock_core::returns::ReturnCase,
    customer_id: Option<&str>,
    at: i64,
) -> Option<Offer> {
    let customer_id = customer_id?.to_string();
    let fact: ReturnFact = return_fact(case, Timestamp::from_ms(at))?;
    if fact.seq == 0 {
        return None;
    }
    Some(Offer {
        key: format!("return:{}", fact.return_id),
        customer_id,
        seq: fact.seq,
        op: CustomerOp::Return(fact),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::order::{OrderLineView, TotalsOut};
    use omnistock_core::{Channel, LocationId, Sku};

    fn eur(a: &str) -> Money {
        Money::parse(a, "EUR").unwrap()
    }

    fn line(sku: &str, part: u32, gross: &str) -> OrderLineView {
        OrderLineView {
            sku: Sku::parse(sku).unwrap(),
            qty: 1,
            unit_price: eur(gross),
            tax: eur("0"),
            net: eur(gross),
            gross: eur(gross),
            location: LocationId::parse(&format!("l{part}")).unwrap(),
            part,
        }
    }

    fn part(n: u32, status: OrderStatus) -> PartView {
        PartView {
            part: n,
            location: LocationId::parse(&format!("l{n}")).unwrap(),
            status,
            at_risk: false,
            ready_at: None,
        }
    }

    #[test]
    fn an_order_is_a_purchase_once_every_part_is_done_and_only_its_fulfilled_parts_count() {
        let order = PricedOrder {
            id: "o1".into(),
            channel: Channel::Online,
            customer_id: Some("c1".into()),
            reservation_id: None,
            lines: vec![
                line("A", 0, "10.00"),
                line("B", 1, "5.50"),
                line("C", 1, "1.00"),
            ],
            stock: vec![],
            parts: vec![],
            totals: TotalsOut {
                net: "16.50".into(),
                tax: "0".into(),
                gross: "16.50".into(),
                currency: "EUR".into(),
                rounding: String::new(),
                tax_inclusive: false,
            },
            fp: String::new(),
            holds: None,
        };
        let shipped = part(0, OrderStatus::Shipped);
        assert!(order_offer(&order, &[shipped.clone(), part(1, OrderStatus::Packed)], 1).is_none());
        let o = order_offer(
            &order,
            &[shipped.clone(), part(1, OrderStatus::Cancelled)],
            1,
        )
        .unwrap();
        let CustomerOp::Purchase(f) = o.op else {
            panic!("not a purchase")
        };
        assert_eq!((o.key.as_str(), f.total), ("order:o1", eur("10.00")));
        assert_eq!(f.location, Some(LocationId::parse("l0").unwrap()));
        let both = order_offer(&order, &[shipped, part(1, OrderStatus::Collected)], 1).unwrap();
        let CustomerOp::Purchase(f) = both.op else {
            panic!("not a purchase")
        };
        assert_eq!((f.total, f.location), (eur("16.50"), None));
        // Nothing for an order without a customer, or cancelled as a whole.
        let cancelled = [
            part(0, OrderStatus::Cancelled),
            part(1, OrderStatus::Cancelled),
        ];
        assert!(order_offer(&order, &cancelled, 1).is_none());
        let anonymous = PricedOrder {
            customer_id: None,
            ..order
        };
        assert!(order_offer(&anonymous, &[part(0, OrderStatus::Shipped)], 1).is_none());
    }
}
