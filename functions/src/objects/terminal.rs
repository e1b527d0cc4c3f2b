//! `Terminal`: one object per POS terminal (keyed by terminal id). It
//! applies its sales one at a time, a batch in `(device_seq, sale_id)` order,
//! and keeps every sale's answer forever: the same sale id again (with any
//! Idempotency-Key, at any time) gets the first answer, other content is
//! 409. Each sale's lines are merged per SKU (bundles become their
//! components) and sent as one `Sell` to each SKU object, which records the
//! sale id too, so a sale whose answer was lost here is applied once when
//! retried. Each sale's row (its answer and the request's Idempotency-Key)
//! is written in one statement after its SKU objects answered.
use std::cell::Cell;
use std::collections::BTreeMap;

use futures_util::future::join_all;
use omnistock_core::bundle::expand_lines;
use omnistock_core::order::parse_order_hold;
use omnistock_core::{Channel, Command, Event, HoldId, Sku, Timestamp};
use serde::Deserialize;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Request, Response, ScheduledTime, State};

use super::serial::Serial;
use super::storage::{self, int, text};
use crate::http::{rfc3339, Problem};
use crate::wire::catalog::core_bundle;
use crate::wire::order::{self as order_wire, OrderAnswer, OrderRequest};
use crate::wire::sku_stock::{self, hold_owner, Meta};
use crate::wire::terminal::{Sale, SaleResult, SellAnswer, TerminalRequest};
use crate::wire::{self, Idem};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sales (sale_id TEXT PRIMARY KEY, fp TEXT NOT NULL,
     device_seq INTEGER NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL,
     req_key TEXT, req_fp TEXT)",
    "CREATE INDEX IF NOT EXISTS sales_by_key ON sales(req_key) WHERE req_key IS NOT NULL",
    // Order holds a sale put at risk, not yet delivered to their Order
    // objects (an outbox: written with the sale, deleted once delivered).
    "CREATE TABLE IF NOT EXISTS order_risk (hold TEXT PRIMARY KEY, order_id TEXT NOT NULL,
     at INTEGER NOT NULL)",
];

/// A failed delivery of at-risk holds is retried by the alarm after this long.
const RISK_RETRY_MS: i64 = 5_000;
/// An undelivered at-risk hold is given up after this long (the order has
/// long been fulfilled or cancelled, or never existed).
const RISK_GIVE_UP_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Deserialize)]
struct RiskRow {
    hold: String,
    order_id: String,
    at: i64,
}

#[derive(Deserialize)]
struct Row {
    fp: String,
    status: i64,
    body: String,
}

#[derive(Deserialize)]
struct KeyRow {
    req_fp: String,
}

#[durable_object]
pub struct Terminal {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Terminal {
    fn new(state: State, env: Env) -> Self {
        Terminal {
            state,
            env,
            serial: Serial::default(),
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = match wire::read::<TerminalRequest>(&mut req).await {
            Ok(TerminalRequest::Sell { sales, idem }) => self.sell(sales, idem).await,
            Err(p) => Err(p),
        };
        wire::answer(r)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let _turn = self
            .serial
            .turn()
            .await
            .map_err(|p| worker::Error::RustError(p.detail))?;
        match self.deliver_risk().await {
            Ok(()) => Response::ok(""),
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

impl Terminal {
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            let sql = self.state.storage().sql();
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.schema_ok.set(true);
        }
        Ok(())
    }

    async fn sell(&self, mut sales: Vec<Sale>, idem: Idem) -> Result<SellAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        // The same Idempotency-Key with another request is refused here,
        // before anything is sold.
        let seen: Vec<KeyRow> = storage::query(
            &sql,
            "SELECT req_fp FROM sales WHERE req_key = ? LIMIT 1",
            vec![text(&idem.key)],
        )?;
        let replayed = match seen.first() {
            Some(k) if k.req_fp != idem.fp => return Err(Problem::key_reused()),
            Some(_) => true,
            None => false,
        };
        sales.sort_by(|a, b| {
            (a.device_seq, a.sale_id.as_str()).cmp(&(b.device_seq, b.sale_id.as_str()))
        });
        let mut results = Vec::with_capacity(sales.len());
        for s in sales {
            let id = s.sale_id.to_string();
            results.push(match self.apply(s, &idem).await {
                Ok(r) => r,
                Err(p) => SaleResult {
                    sale_id: id,
                    status: p.status,
                    body: p.body(),
                    replayed: false,
                },
            });
        }
        // Orders whose committed units a sale took learn it (at least once:
        // what fails here stays in the outbox for the alarm).
        if let Err(p) = self.deliver_risk().await {
            worker::console_warn!("at-risk delivery deferred: {}", p.detail);
        }
        Ok(SellAnswer { results, replayed })
    }

    /// Sends the outbox of at-risk order holds to their Order objects; what
    /// fails stays, with the alarm set to retry.
    async fn deliver_risk(&self) -> Result<(), Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let rows: Vec<RiskRow> = storage::query(
            &sql,
            "SELECT hold, order_id, at FROM order_risk ORDER BY order_id LIMIT 200",
            vec![],
        )?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut by_order: BTreeMap<String, Vec<HoldId>> = BTreeMap::new();
        let now = storage::now_ms();
        for r in &rows {
            if r.at + RISK_GIVE_UP_MS < now {
                storage::exec(
                    &sql,
                    "DELETE FROM order_risk WHERE hold = ?",
                    vec![text(&r.hold)],
                )?;
                continue;
            }
            if let Ok(h) = HoldId::parse(&r.hold) {
                by_order.entry(r.order_id.clone()).or_default().push(h);
            }
        }
        let calls = join_all(by_order.iter().map(|(order, holds)| {
            let req = OrderRequest::AtRisk {
                holds: holds.clone(),
            };
            let env = &self.env;
            async move {
                let r: Result<OrderAnswer, Problem> = order_wire::call(env, order, &req).await;
                r
            }
        }))
        .await;
        let mut left = false;
        for ((order, holds), r) in by_order.iter().zip(calls) {
            match r {
                // Delivered, or the order does not exist (never placed).
                Ok(_) | Err(Problem { status: 404, .. }) => {
                    for h in holds {
                        storage::exec(
                            &sql,
                            "DELETE FROM order_risk WHERE hold = ?",
                            vec![text(h.as_str())],
                        )?;
                    }
                }
                Err(p) => {
                    worker::console_warn!("order {order}: at-risk not delivered: {}", p.detail);
                    left = true;
                }
            }
        }
        if left {
            let date = js_sys::Date::new(&JsValue::from_f64((now + RISK_RETRY_MS) as f64));
            self.state
                .storage()
                .set_alarm(ScheduledTime::new(date))
                .await?;
        }
        Ok(())
    }

    async fn apply(&self, s: Sale, idem: &Idem) -> Result<SaleResult, Problem> {
        let sql = self.state.storage().sql();
        let rows: Vec<Row> = storage::query(
            &sql,
            "SELECT fp, status, body FROM sales WHERE sale_id = ?",
            vec![text(s.sale_id.as_str())],
        )?;
        if let Some(r) = rows.first() {
            if r.fp != s.fp {
                return Err(Problem::new(
                    409,
                    "idempotency_key_reused",
                    format!("sale {} was already recorded with other content", s.sale_id),
                ));
            }
            return Ok(SaleResult {
                sale_id: s.sale_id.to_string(),
                status: r.status as u16,
                body: serde_json::from_str(&r.body)?,
                replayed: true,
            });
        }
        // One Sell per SKU: lines of the same SKU add up.
        let plain: Vec<(Sku, i64)> = s.lines.iter().map(|l| (l.sku.clone(), l.qty)).collect();
        let bundles = s
            .lines
            .iter()
            .filter(|l| !l.components.is_empty())
            .map(|l| Ok((l.sku.clone(), core_bundle(&l.sku, &l.components)?)))
            .collect::<Result<BTreeMap<_, _>, Problem>>()?;
        let per_sku = expand_lines(&plain, &bundles)?;
        let meta = Meta {
            actor: s.actor.clone(),
            channel: Some("pos".into()),
            reference: Some(format!("sale:{}", s.sale_id)),
            reason: Some("sale".into()),
        };
        let results = join_all(per_sku.iter().map(|(sku, qty)| {
            sku_stock::exec(
                &self.env,
                sku,
                vec![Command::Sell {
                    sale: s.sale_id.clone(),
                    terminal: s.terminal_id.clone(),
                    device_seq: s.device_seq,
                    location: s.location.clone(),
                    qty: *qty,
                    occurred_at: Timestamp::from_ms(s.occurred_at),
                }],
                &meta,
                None,
            )
        }))
        .await;
        let mut lines = Vec::new();
        let mut at_risk = Vec::new();
        let mut outbox: Vec<(HoldId, String)> = Vec::new();
        let mut any_oversold = false;
        for ((sku, qty), r) in per_sku.iter().zip(results) {
            let o = r?
                .pop()
                .ok_or_else(|| Problem::overloaded("empty answer"))?;
            if let Some(p) = o.problem() {
                return Err(p);
            }
            let (oversold, late, risk) = o
                .events()
                .iter()
                .find_map(|e| match e {
                    Event::Sold {
                        oversold,
                        late,
                        at_risk,
                        ..
                    } => Some((*oversold, *late, at_risk.clone())),
                    _ => None,
                })
                .unwrap_or_default();
            any_oversold |= oversold > 0;
            for h in &risk {
                if let Some((order, _)) = parse_order_hold(h) {
                    outbox.push((h.clone(), order.to_string()));
                }
                let mut x = hold_owner(h);
                x["sku"] = json!(sku);
                x["location"] = json!(s.location);
                at_risk.push(x);
            }
            let available = o.position.map(|p| p.available(Channel::Pos));
            lines.push(json!({
                "sku": sku, "qty": qty, "oversold": oversold, "available_after": available,
                "late": late,
            }));
        }
        let body = json!({
            "sale_id": s.sale_id,
            "terminal_id": s.terminal_id,
            "device_seq": s.device_seq,
            "location": s.location,
            "occurred_at": rfc3339(s.occurred_at),
            "customer_id": s.customer_id,
            "status": "recorded",
            "oversold": any_oversold,
            "lines": lines,
            "at_risk": at_risk,
            "payments": s.payments,
        });
        let now = storage::now_ms();
        let mut stmts: Vec<storage::Stmt> = vec![(
            "INSERT OR REPLACE INTO sales (sale_id, fp, device_seq, status, body, at, req_key, req_fp)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(s.sale_id.as_str()),
                text(&s.fp),
                int(s.device_seq as i64),
                int(201),
                text(&body.to_string()),
                int(now),
                text(&idem.key),
                text(&idem.fp),
            ],
        )];
        for (h, order) in &outbox {
            stmts.push((
                "INSERT OR REPLACE INTO order_risk (hold, order_id, at) VALUES (?, ?, ?)",
                vec![text(h.as_str()), text(order), int(now)],
            ));
        }
        // The sale's answer and its outbox together.
        storage::atomically(&self.state.storage(), stmts)?;
        Ok(SaleResult {
            sale_id: s.sale_id.to_string(),
            status: 201,
            body,
            replayed: false,
        })
    }
}
