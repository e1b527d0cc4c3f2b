//! POS sales: `POST /v1/pos/sales` and `POST /v1/pos/sales/batch`.
//!
//! A sale is a physical fact: never refused for stock. Each terminal's
//! `Terminal` object (objects/terminal.rs) applies its sales one at a time in
//! `(terminal_id, device_seq)` order and keeps every sale's answer forever,
//! so a sale id sent again (with any Idempotency-Key, at any time) gets the
//! same answer, and the same sale id with other content is 409. A one-SKU
//! sale is two object calls: its terminal, and the terminal to the SKU
//! (plus one Catalog call when the isolate's price facts of its SKUs are
//! older than `CATALOG_TTL_MS`: every line needs its tax code).
//!
//! Tax is computed here, once, when the sale is made: each line's
//! `TaxTable::line` of the deployment's `TAX_TABLE` at the sale's location
//! and the SKU's tax code (the catalog's price facts, cached by the isolate
//! like the prices), kept on the sale's lines. The Terminal stores it with
//! the sale and answers it; the event feed and the receipt read it; a retry
//! gets the first answer, whatever the table says by then.
use std::collections::BTreeMap;

use futures_util::future::join_all;
use omnistock_core::money::{Currency, Money as CoreMoney};
use omnistock_core::tax::{LineTax, TaxTable};
use omnistock_core::{Channel, LocationId, SaleId, Sku, TerminalId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::facts;
use crate::auth::Role;
use crate::extract::{check_lines, check_qty, check_text, fingerprint, Ctx};
use crate::http::{
    check_id, parse_json, parse_rfc3339, HttpResult, Problem, Reply, MAX_LINES, PROBLEM_JSON,
};
use crate::wire::catalog::{Money, PriceFact, SkuFact};
use crate::wire::terminal::{Payment, Sale, SaleLine, SaleResult, SellAnswer, TerminalRequest};
use crate::wire::{self, Idem, Namespace};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    #[serde(default)]
    sku: Option<Sku>,
    #[serde(default)]
    barcode: Option<String>,
    qty: i64,
    /// What the till charged; absent: the catalog's POS price in force
    /// when the sale occurred (no later than now).
    #[serde(default)]
    unit_price: Option<Money>,
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
        if let Some(p) = &l.unit_price {
            p.validate(&format!("lines[{i}].unit_price"))?;
        }
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
    let check = facts(&ctx.env, ctx.now, &skus, &codes, &locations).await?;
    let cfg = crate::config::get(&ctx.env)?;
    // Catalog price facts of every resolved SKU: the price of a line that
    // names none, and every line's tax code.
    let mut wanted: Vec<Sku> = Vec::new();
    for b in &bodies {
        for l in &b.lines {
            let sku = match (&l.sku, &l.barcode) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(c)) => check.barcodes.get(c).cloned().flatten(),
                _ => None,
            };
            if let Some(s) = sku {
                if !wanted.contains(&s) {
                    wanted.push(s);
                }
            }
        }
    }
    let priced = if wanted.is_empty() {
        Vec::new()
    } else {
        super::orders::prices(&ctx.env, ctx.now, &wanted).await?
    };
    let mut out = Vec::new();
    for (b, occurred_at) in bodies.into_iter().zip(occurred) {
        if check.location(&b.location).is_none() {
            out.push(Err(Problem::not_found(format!(
                "unknown location: {}",
                b.location
            ))));
            continue;
        }
        let mut lines = Vec::new();
        let mut canonical_lines: Vec<Value> = Vec::new();
        let mut problem = None;
        let mut currency: Option<Currency> = None;
        for (i, l) in b.lines.iter().enumerate() {
            let sku = match (&l.sku, &l.barcode) {
                (Some(s), _) if matches!(check.skus.get(s), None | Some(SkuFact::Missing)) => {
                    problem = Some(Problem::not_found(format!("unknown SKU: {s}")));
                    break;
                }
                (Some(s), _) => s.clone(),
                (None, Some(c)) => match check.barcodes.get(c).cloned().flatten() {
                    Some(s) => s,
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
            let fact = priced
                .iter()
                .find(|(s, _)| *s == sku)
                .and_then(|(_, f)| f.as_ref());
            let Some(fact) = fact else {
                problem = Some(Problem::not_found(format!("unknown SKU: {sku}")));
                break;
            };
            let unit_price = match &l.unit_price {
                Some(p) => p.clone(),
                None => {
                    match fact
                        .prices
                        .in_force(Channel::Pos, occurred_at.min(ctx.now), sku.as_str())
                    {
                        Ok(f) => Money {
                            amount: f.price.amount.to_string(),
                            currency: f.price.currency.as_str().to_string(),
                        },
                        Err(p) => {
                            problem = Some(p);
                            break;
                        }
                    }
                }
            };
            let tax = match line_tax(&cfg.tax, &b.location, fact, &unit_price, l.qty, i) {
                Ok(t) => t,
                Err(p) => {
                    problem = Some(p);
                    break;
                }
            };
            if *currency.get_or_insert(tax.gross.currency) != tax.gross.currency {
                problem = Some(Problem::invalid(format!(
                    "lines[{i}].unit_price: every line of a sale must be in one currency"
                )));
                break;
            }
            let mut line = SaleLine {
                components: match check.skus.get(&sku) {
                    Some(SkuFact::Bundle { components }) => components.clone(),
                    _ => Vec::new(),
                },
                sku,
                barcode: l.barcode.clone(),
                qty: l.qty,
                unit_price,
                tax: None,
            };
            // The sale's fingerprint is of what the till sent: a line it
            // left unpriced stays unpriced there, so a retry after a price
            // change is the same sale, not a conflicting one; the tax is
            // not in it either (a retry after a TAX_TABLE change is the
            // same sale, answered as first recorded).
            let mut c = serde_json::to_value(&line)?;
            if l.unit_price.is_none() {
                c["unit_price"] = Value::Null;
            }
            canonical_lines.push(c);
            line.tax = Some(tax);
            lines.push(line);
        }
        if let Some(p) = problem {
            out.push(Err(p));
            continue;
        }
        let canonical = serde_json::to_vec(&json!({
            "terminal": b.terminal_id, "device_seq": b.device_seq, "location": b.location,
            "occurred_at": occurred_at, "customer_id": b.customer_id, "lines": canonical_lines,
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
            fp: fingerprint(&[&canonical]),
            actor: ctx.actor(),
            tax_inclusive: Some(cfg.tax.inclusive),
        }));
    }
    Ok(out)
}

/// One line's tax at the sale's location: `qty` units at `unit_price`, at
/// the rate of the SKU's tax code (the default code when it names none).
fn line_tax(
    table: &TaxTable,
    location: &LocationId,
    fact: &PriceFact,
    unit_price: &Money,
    qty: i64,
    i: usize,
) -> Result<LineTax, Problem> {
    let price = CoreMoney::parse(&unit_price.amount, &unit_price.currency)
        .map_err(|e| Problem::invalid(format!("lines[{i}].unit_price: {e}")))?;
    table
        .line(location, fact.tax_code.as_deref(), price, qty)
        .map_err(|e| Problem::invalid(format!("lines[{i}]: tax: {e}")))
}

async fn send(
    ctx: &Ctx,
    terminal: &TerminalId,
    sales: Vec<Sale>,
    idem: Idem,
) -> Result<SellAnswer, Problem> {
    let skus: Vec<Sku> = sales
        .iter()
        .flat_map(|s| &s.lines)
        .flat_map(|l| std::iter::once(&l.sku).chain(l.components.iter().map(|c| &c.sku)))
        .cloned()
        .collect();
    // Receipts (issue 14): the Terminal tells each new sale's receipt book
    // its terminal right after answering (an outbox and its alarm), so the
    // sale's path stays two object calls.
    let req = TerminalRequest::Sell { sales, idem };
    let r = wire::call(&ctx.env, Namespace::Terminal, terminal.as_str(), &req).await;
    super::stock_changed(&skus);
    let r: SellAnswer = r?;
    Ok(r)
}

/// `POST /v1/pos/sales`
pub async fn sale(ctx: &Ctx) -> HttpResult {
    let b: SaleBody = parse_json(&ctx.body)?;
    let terminal = b.terminal_id.clone();
    let mut prepared = prepare(ctx, vec![b]).await?;
    let s = prepared
        .pop()
        .ok_or_else(|| Problem::overloaded("no sale"))??;
    let a = send(ctx, &terminal, vec![s], ctx.idem()?).await?;
    let r = a
        .results
        .into_iter()
        .next()
        .ok_or_else(|| Problem::overloaded("no answer"))?;
    let reply = if r.status >= 400 {
        Reply::raw(r.status, PROBLEM_JSON, r.body.to_string())
    } else {
        Reply::json(r.status, &r.body)
    };
    Ok(if a.replayed {
        reply.header("Idempotent-Replayed", "true")
    } else {
        reply
    })
}

/// `POST /v1/pos/sales/batch`: a terminal's offline queue, answered per sale.
pub async fn batch(ctx: &Ctx) -> HttpResult {
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
                        replayed: false,
                    },
                );
            }
        }
    }
    let idem = ctx.idem()?;
    let calls = join_all(by_terminal.into_iter().map(|(t, sales)| {
        let idem = idem.clone();
        async move {
            let ids: Vec<String> = sales.iter().map(|s| s.sale_id.to_string()).collect();
            (ids, send(ctx, &t, sales, idem).await)
        }
    }))
    .await;
    let mut replayed = true;
    for (ids, r) in calls {
        replayed &= matches!(&r, Ok(a) if a.replayed);
        match r {
            Ok(a) => {
                for r in a.results {
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
                            replayed: false,
                        },
                    );
                }
            }
        }
    }
    let results: Vec<Value> = ids
        .iter()
        .filter_map(|id| answers.get(id))
        .map(|r| json!({"sale_id": r.sale_id, "status": r.status, "body": r.body}))
        .collect();
    let reply = Reply::json(200, &json!({ "results": results }));
    Ok(if replayed && !answers.is_empty() {
        reply.header("Idempotent-Replayed", "true")
    } else {
        reply
    })
}

pub use crate::wire::sku_stock::hold_owner;
