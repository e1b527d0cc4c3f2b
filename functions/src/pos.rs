//! POS sales: `POST /v1/pos/sales` and `POST /v1/pos/sales/batch`.
//!
//! A sale is a physical fact: never refused for stock. Each terminal has a
//! `Terminal` object (keyed by terminal id) that applies its sales one at a
//! time in `(terminal_id, device_seq)` order and keeps every sale's answer
//! forever, so a sale id sent again (with any Idempotency-Key, at any time)
//! gets the same answer, and the same sale id with other content is 409.
//! Each SKU object also records the sale id (`Sell`), so a sale whose answer
//! was lost is applied once when retried.
use std::cell::Cell;
use std::collections::BTreeMap;

use futures_util::future::join_all;
use omnistock_core::bundle::expand_lines;
use omnistock_core::{HoldId, LocationId, SaleId, Sku, TerminalId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::api::Ctx;
use crate::auth::Role;
use crate::catalog::{core_bundle, CheckRequest, Money};
use crate::catalog_api;
use crate::db::{self, int, text};
use crate::http::{
    check_id, envelope_response, parse_json, parse_rfc3339, rfc3339, Problem, Reply, MAX_LINES,
};
use crate::idempotency;
use crate::inventory::{check_lines, check_qty, check_text, exec_sku};
use crate::rpc::{self, TERMINAL};
use crate::serial::take_turn;
use crate::sku_stock::{Meta, WireCommand};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    #[serde(default)]
    sku: Option<Sku>,
    #[serde(default)]
    barcode: Option<String>,
    qty: i64,
    unit_price: Money,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub method: String,
    pub amount: Money,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleBody {
    sale_id: SaleId,
    terminal_id: TerminalId,
    device_seq: u64,
    location: LocationId,
    occurred_at: String,
    #[serde(default)]
    customer_id: Option<String>,
    lines: Vec<LineBody>,
    #[serde(default)]
    payments: Vec<Payment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    sales: Vec<Value>,
}

/// A line with its SKU resolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleLine {
    pub sku: Sku,
    /// For a bundle: the component SKUs and units per bundle it sells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<crate::catalog::BundleComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    pub qty: i64,
    pub unit_price: Money,
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
    pub fp: String,
    pub actor: String,
}

/// One sale's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SaleResult {
    pub sale_id: String,
    pub status: u16,
    pub body: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TerminalRequest {
    Sell { sales: Vec<Sale> },
}

fn validate(b: &SaleBody) -> Result<i64, Problem> {
    check_lines(b.lines.len())?;
    let occurred_at = parse_rfc3339(&b.occurred_at)
        .ok_or_else(|| Problem::invalid("occurred_at must be an RFC 3339 time"))?;
    check_text(&b.customer_id, 64, "customer_id")?;
    if let Some(c) = &b.customer_id {
        check_id(c, "customer_id")?;
    }
    if b.payments.len() > MAX_LINES {
        return Err(Problem::invalid(format!("at most {MAX_LINES} payments")));
    }
    for (i, l) in b.lines.iter().enumerate() {
        match (&l.sku, &l.barcode) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(Problem::invalid(format!(
                    "lines[{i}] needs exactly one of sku and barcode"
                )))
            }
        }
        check_qty(l.qty, 1, &format!("lines[{i}].qty"))?;
        l.unit_price.validate(&format!("lines[{i}].unit_price"))?;
    }
    for (i, p) in b.payments.iter().enumerate() {
        if p.method.is_empty()
            || p.method.len() > 32
            || !p
                .method
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(Problem::invalid(format!(
                "payments[{i}].method must be 1 to 32 characters of A-Z a-z 0-9 _ -"
            )));
        }
        p.amount.validate(&format!("payments[{i}].amount"))?;
    }
    Ok(occurred_at)
}

/// Validates, authorises and resolves the sales of a request. A sale that
/// cannot be resolved (unknown SKU, barcode or location) gets its own problem.
async fn prepare(ctx: &Ctx, bodies: Vec<SaleBody>) -> Result<Vec<Result<Sale, Problem>>, Problem> {
    let mut occurred = Vec::new();
    for b in &bodies {
        ctx.principal
            .require_at(&[Role::Pos, Role::Admin], &b.location)?;
        occurred.push(validate(b)?);
    }
    let mut skus: Vec<Sku> = Vec::new();
    let mut codes: Vec<String> = Vec::new();
    let mut locations: Vec<LocationId> = Vec::new();
    for b in &bodies {
        for l in &b.lines {
            if let Some(s) = &l.sku {
                if !skus.contains(s) {
                    skus.push(s.clone());
                }
            }
            if let Some(c) = &l.barcode {
                if !codes.contains(c) {
                    codes.push(c.clone());
                }
            }
        }
        if !locations.contains(&b.location) {
            locations.push(b.location.clone());
        }
    }
    let check = catalog_api::check(
        &ctx.env,
        CheckRequest {
            skus,
            locations: Some(locations),
            barcodes: codes,
        },
    )
    .await?;
    let mut out = Vec::new();
    for (b, occurred_at) in bodies.into_iter().zip(occurred) {
        if check.missing_locations.contains(&b.location) {
            out.push(Err(Problem::not_found(format!(
                "unknown location: {}",
                b.location
            ))));
            continue;
        }
        let mut lines = Vec::new();
        let mut problem = None;
        for l in &b.lines {
            let sku = match (&l.sku, &l.barcode) {
                (Some(s), _) if check.missing_skus.contains(s) => {
                    problem = Some(Problem::not_found(format!("unknown SKU: {s}")));
                    break;
                }
                (Some(s), _) => s.clone(),
                (None, Some(c)) => match check.barcodes.get(c) {
                    Some(s) => s.clone(),
                    None => {
                        problem = Some(Problem::not_found(format!("unknown barcode: {c}")));
                        break;
                    }
                },
                (None, None) => {
                    problem = Some(Problem::invalid("a line needs a sku or a barcode"));
                    break;
                }
            };
            lines.push(SaleLine {
                components: check.bundles.get(&sku).cloned().unwrap_or_default(),
                sku,
                barcode: l.barcode.clone(),
                qty: l.qty,
                unit_price: l.unit_price.clone(),
            });
        }
        if let Some(p) = problem {
            out.push(Err(p));
            continue;
        }
        let canonical = serde_json::to_vec(&json!({
            "terminal": b.terminal_id, "device_seq": b.device_seq, "location": b.location,
            "occurred_at": occurred_at, "customer_id": b.customer_id, "lines": lines,
            "payments": b.payments,
        }))?;
        out.push(Ok(Sale {
            sale_id: b.sale_id,
            terminal_id: b.terminal_id,
            device_seq: b.device_seq,
            location: b.location,
            occurred_at,
            customer_id: b.customer_id,
            lines,
            payments: b.payments,
            fp: idempotency::fingerprint(&[&canonical]),
            actor: ctx.actor(),
        }));
    }
    Ok(out)
}

async fn send(
    env: &Env,
    terminal: &TerminalId,
    sales: Vec<Sale>,
) -> Result<Vec<SaleResult>, Problem> {
    rpc::call(
        env,
        TERMINAL,
        terminal.as_str(),
        "terminal",
        &TerminalRequest::Sell { sales },
    )
    .await
}

/// `POST /v1/pos/sales`
pub async fn sale(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Pos, Role::Admin])?;
    let b: SaleBody = parse_json(&ctx.body)?;
    let terminal = b.terminal_id.clone();
    let mut prepared = prepare(ctx, vec![b]).await?;
    let s = prepared
        .pop()
        .ok_or_else(|| Problem::overloaded("no sale"))??;
    let mut results = send(&ctx.env, &terminal, vec![s]).await?;
    let r = results
        .pop()
        .ok_or_else(|| Problem::overloaded("no answer"))?;
    if r.status >= 400 {
        return Ok(Reply::raw(
            r.status,
            crate::http::PROBLEM_JSON,
            r.body.to_string(),
        ));
    }
    Ok(Reply::json(r.status, &r.body))
}

/// `POST /v1/pos/sales/batch`: a terminal's offline queue, answered per sale.
pub async fn batch(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Pos, Role::Admin])?;
    let b: BatchBody = parse_json(&ctx.body)?;
    if b.sales.is_empty() || b.sales.len() > MAX_LINES {
        return Err(Problem::invalid(format!(
            "a batch has 1 to {MAX_LINES} sales"
        )));
    }
    let mut bodies = Vec::new();
    for (i, v) in b.sales.into_iter().enumerate() {
        let s: SaleBody =
            serde_json::from_value(v).map_err(|e| Problem::invalid(format!("sales[{i}]: {e}")))?;
        bodies.push(s);
    }
    let mut seen: Vec<&SaleId> = Vec::new();
    for s in &bodies {
        if seen.contains(&&s.sale_id) {
            return Err(Problem::invalid(format!(
                "sale {} appears twice",
                s.sale_id
            )));
        }
        seen.push(&s.sale_id);
    }
    let ids: Vec<String> = bodies.iter().map(|s| s.sale_id.to_string()).collect();
    let prepared = prepare(ctx, bodies).await?;
    // Per terminal, in device order; terminals in parallel.
    let mut by_terminal: BTreeMap<TerminalId, Vec<Sale>> = BTreeMap::new();
    let mut answers: BTreeMap<String, SaleResult> = BTreeMap::new();
    for (id, p) in ids.iter().zip(prepared) {
        match p {
            Ok(s) => by_terminal
                .entry(s.terminal_id.clone())
                .or_default()
                .push(s),
            Err(p) => {
                answers.insert(
                    id.clone(),
                    SaleResult {
                        sale_id: id.clone(),
                        status: p.status,
                        body: p.body(),
                    },
                );
            }
        }
    }
    let calls = join_all(by_terminal.into_iter().map(|(t, sales)| async move {
        let ids: Vec<String> = sales.iter().map(|s| s.sale_id.to_string()).collect();
        (ids, send(&ctx.env, &t, sales).await)
    }))
    .await;
    for (ids, r) in calls {
        match r {
            Ok(results) => {
                for r in results {
                    answers.insert(r.sale_id.clone(), r);
                }
            }
            Err(p) => {
                for id in ids {
                    answers.insert(
                        id.clone(),
                        SaleResult {
                            sale_id: id,
                            status: p.status,
                            body: p.body(),
                        },
                    );
                }
            }
        }
    }
    let results: Vec<&SaleResult> = ids.iter().filter_map(|id| answers.get(id)).collect();
    Ok(Reply::json(200, &json!({ "results": results })))
}

/// The reservation a hold belongs to, if it is one (`res.<attempt>.<id>`).
pub fn hold_owner(h: &HoldId) -> Value {
    let s = h.as_str();
    if let Some(rest) = s.strip_prefix("res.") {
        if let Some((_, id)) = rest.split_once('.') {
            return json!({"hold": s, "reservation": id});
        }
    }
    json!({ "hold": s })
}

#[derive(Deserialize)]
struct Row {
    fp: String,
    status: i64,
    body: String,
}

#[durable_object]
pub struct Terminal {
    state: State,
    env: Env,
    busy: Cell<bool>,
}

impl DurableObject for Terminal {
    fn new(state: State, env: Env) -> Self {
        Terminal {
            state,
            env,
            busy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let TerminalRequest::Sell { mut sales } =
            match rpc::read_request(&mut req, "terminal").await {
                Ok(x) => x,
                Err(p) => return envelope_response::<()>(Err(p)),
            };
        let _turn = match take_turn(&self.busy, 10_000).await {
            Ok(t) => t,
            Err(p) => return envelope_response::<()>(Err(p)),
        };
        sales.sort_by(|a, b| {
            (a.device_seq, a.sale_id.as_str()).cmp(&(b.device_seq, b.sale_id.as_str()))
        });
        let mut out = Vec::new();
        for s in sales {
            out.push(self.apply(s).await);
        }
        envelope_response(Ok::<_, Problem>(out))
    }
}

impl Terminal {
    async fn apply(&self, s: Sale) -> SaleResult {
        let id = s.sale_id.to_string();
        match self.apply_inner(s).await {
            Ok(r) => r,
            Err(p) => SaleResult {
                sale_id: id,
                status: p.status,
                body: p.body(),
            },
        }
    }

    async fn apply_inner(&self, s: Sale) -> Result<SaleResult, Problem> {
        let sql = self.state.storage().sql();
        db::exec(
            &sql,
            "CREATE TABLE IF NOT EXISTS sales (sale_id TEXT PRIMARY KEY, fp TEXT NOT NULL,
             device_seq INTEGER NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, at INTEGER NOT NULL)",
            vec![],
        )?;
        let rows: Vec<Row> = db::query(
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
            exec_sku(
                &self.env,
                sku,
                vec![WireCommand::Sell {
                    sale: s.sale_id.clone(),
                    terminal: s.terminal_id.clone(),
                    device_seq: s.device_seq,
                    location: s.location.clone(),
                    qty: *qty,
                    occurred_at: s.occurred_at,
                }],
                &meta,
            )
        }))
        .await;
        let mut lines = Vec::new();
        let mut at_risk = Vec::new();
        let mut any_oversold = false;
        for ((sku, qty), r) in per_sku.iter().zip(results) {
            let qty = *qty;
            let mut outs = r?;
            let o = outs
                .pop()
                .ok_or_else(|| Problem::overloaded("empty answer"))?;
            if let Some(p) = crate::inventory::outcome_problem(&o) {
                return Err(p);
            }
            let sold = o
                .events
                .iter()
                .find_map(|e| serde_json::to_value(e).ok().filter(|v| v["type"] == "sold"));
            let oversold = sold
                .as_ref()
                .and_then(|v| v["oversold"].as_i64())
                .unwrap_or(0);
            any_oversold |= oversold > 0;
            if let Some(v) = &sold {
                if let Some(holds) = v["at_risk"].as_array() {
                    for h in holds
                        .iter()
                        .filter_map(|h| h.as_str())
                        .filter_map(|h| HoldId::parse(h).ok())
                    {
                        let mut x = hold_owner(&h);
                        x["sku"] = json!(sku);
                        x["location"] = json!(s.location);
                        at_risk.push(x);
                    }
                }
            }
            let available = o
                .position
                .map(|p| p.available(omnistock_core::Channel::Pos));
            lines.push(json!({
                "sku": sku, "qty": qty, "oversold": oversold, "available_after": available,
                "late": sold.as_ref().and_then(|v| v["late"].as_bool()).unwrap_or(false),
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
        db::exec(
            &sql,
            "INSERT OR REPLACE INTO sales (sale_id, fp, device_seq, status, body, at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                text(s.sale_id.as_str()),
                text(&s.fp),
                int(s.device_seq as i64),
                int(201),
                text(&body.to_string()),
                int(db::now_ms()),
            ],
        )?;
        Ok(SaleResult {
            sale_id: s.sale_id.to_string(),
            status: 201,
            body,
        })
    }
}
