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
use omnistock_core::{Channel, Command, Event, Sku, Timestamp};
use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage::{self, int, text};
use crate::http::{rfc3339, Problem};
use crate::wire::catalog::core_bundle;
use crate::wire::sku_stock::{self, hold_owner, Meta};
use crate::wire::terminal::{Sale, SaleResult, SellAnswer, TerminalRequest};
use crate::wire::{self, Idem};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sales (sale_id TEXT PRIMARY KEY, fp TEXT NOT NULL,
     device_seq INTEGER NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL,
     req_key TEXT, req_fp TEXT)",
    "CREATE INDEX IF NOT EXISTS sales_by_key ON sales(req_key) WHERE req_key IS NOT NULL",
];

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
        Ok(SellAnswer { results, replayed })
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
        storage::exec(
            &sql,
            "INSERT OR REPLACE INTO sales (sale_id, fp, device_seq, status, body, at, req_key, req_fp)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(s.sale_id.as_str()),
                text(&s.fp),
                int(s.device_seq as i64),
                int(201),
                text(&body.to_string()),
                int(storage::now_ms()),
                text(&idem.key),
                text(&idem.fp),
            ],
        )?;
        Ok(SaleResult {
            sale_id: s.sale_id.to_string(),
            status: 201,
            body,
            replayed: false,
        })
    }
}
