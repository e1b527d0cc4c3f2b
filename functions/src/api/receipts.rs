//! Receipts (issue 14): `GET /v1/receipts/{id}` (JSON, HTML for 80 mm
//! paper and email, or 42-column text, by `Accept`) and
//! `POST /v1/receipts/{id}/email`.
//!
//! A receipt number is a sale, order or return id. Receipts live in a
//! `ReceiptBook` object per number (objects/receipt.rs): the first time a
//! receipt of a kind is asked for, the Worker builds it with core
//! (`omnistock_core::receipt`) from what the owner recorded (the Terminal's
//! sale as applied, the Order, the ReturnCase), the catalog's titles and the
//! deployment's tax table, and issues it there; from then on that stored
//! receipt is served, unchanged (a later return makes its own receipt). A
//! scanned number that is a sale id finds its terminal in the event feed's
//! `sale_terminals` index (D1, fed from the sales' feed events 0.25 to
//! about 1.25 s after the sale: feed::sale_terminal); `?terminal=`
//! (the till's own) finds it before that, with no lookup.
//!
//! A POS sale's receipt reads the tax the sale recorded when it was made
//! (`Sale::recorded_tax`), never the table of today, so it equals the sale's
//! answer and the accounting export to the cent. With a customer, it states
//! the points the Customer object fixed when it recorded the sale (earned,
//! redeemed for it, balance after): the builder hands the customer the
//! sale's purchase itself (`CustomerOp::ReceiptLoyalty`, applied once
//! whoever delivers it first), so no receipt waits on, or races, the
//! Terminal's outbox, and no issued receipt ever shows a stale figure.
use omnistock_core::money::{Currency, Money as CoreMoney, RoundingStrategy};
use omnistock_core::order::OrderStatus;
use omnistock_core::receipt::{
    html, text, Customer, Direction, LineInput, Loyalty, Payment, Receipt, ReceiptInput,
    ReceiptKind, MAX_RETURN_WINDOW_DAYS,
};
use omnistock_core::{Channel, LocationId, SaleId, Sku, TerminalId, Timestamp};
use serde::Deserialize;
use serde_json::json;
use worker::Env;

use super::facts;
use crate::auth::Role;
use crate::extract::Ctx;
use crate::http::{check_id, parse_json, parse_rfc3339, HttpResult, Problem, Reply};
use crate::wire::catalog::{CatalogRequest, Described, Money as WireMoney, CATALOG_NAME};
use crate::wire::customer::{self as customer_wire, CustomerOp, ReceiptLoyalty};
use crate::wire::order::{self as order_wire, OrderAnswer, OrderRequest, Scope};
use crate::wire::receipt::{EmailAnswer, Known, ReceiptRequest};
use crate::wire::returns::{ReturnAnswer, ReturnRequest};
use crate::wire::terminal::{Sale, TerminalRequest};
use crate::wire::{self, Namespace};

/// Days a sale's units may be returned, when `RETURN_WINDOW_DAYS` is unset.
pub const DEFAULT_RETURN_WINDOW_DAYS: u32 = 30;
/// The shop's name on receipts, when `SHOP_NAME` is unset.
pub const DEFAULT_SHOP_NAME: &str = "omnistock";
/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

const JSON: &str = "application/json";
const HTML: &str = "text/html";
const TEXT: &str = "text/plain";

/// The form `Accept` asks for: the highest-q range one of the three forms
/// matches (`*/*` and no header: JSON; `text/*`: HTML). None: 406.
pub fn negotiate(accept: Option<&str>) -> Result<&'static str, Problem> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(JSON);
    };
    let mut best: Option<(u32, &'static str)> = None;
    for range in accept.split(',').take(32) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|x| (0.0..=1.0).contains(x))
                    .map_or(0, |x| (x * 1000.0) as u32);
            }
        }
        let form = match media.as_str() {
            "application/json" | "application/*" | "*/*" => JSON,
            "text/html" | "text/*" => HTML,
            "text/plain" => TEXT,
            _ => continue,
        };
        if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, form));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| {
        Problem::new(
            406,
            "invalid_request",
            "a receipt is served as application/json, text/html or text/plain",
        )
        .with("acceptable", [JSON, HTML, TEXT])
    })
}

fn parse_kind(s: &str) -> Result<ReceiptKind, Problem> {
    serde_json::from_value(json!(s)).map_err(|_| {
        Problem::invalid(
            "kind must be sale, order_paid, order_fulfilled, return, refund or exchange",
        )
    })
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn return_window(env: &Env) -> Result<u32, Problem> {
    match var(env, "RETURN_WINDOW_DAYS") {
        None => Ok(DEFAULT_RETURN_WINDOW_DAYS),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| *d <= MAX_RETURN_WINDOW_DAYS)
            .ok_or_else(|| {
                Problem::overloaded(format!(
                    "RETURN_WINDOW_DAYS must be 0 to {MAX_RETURN_WINDOW_DAYS} (days)"
                ))
            }),
    }
}

fn core_money(m: &WireMoney, what: &str) -> Result<CoreMoney, Problem> {
    CoreMoney::parse(&m.amount, &m.currency)
        .map_err(|e| Problem::overloaded(format!("{what}: recorded amount: {e}")))
}

fn at_ms(s: &str) -> Result<i64, Problem> {
    parse_rfc3339(s).ok_or_else(|| Problem::overloaded(format!("recorded time {s:?}")))
}

async fn book<A: serde::de::DeserializeOwned>(
    env: &Env,
    id: &str,
    req: &ReceiptRequest,
) -> Result<A, Problem> {
    wire::call(env, Namespace::ReceiptBook, id, req).await
}

async fn describe(env: &Env, skus: Vec<Sku>) -> Result<Vec<(Sku, Option<Described>)>, Problem> {
    wire::call(
        env,
        Namespace::Catalog,
        CATALOG_NAME,
        &CatalogRequest::Describe { skus },
    )
    .await
}

/// The fixed parts of every receipt at `location`.
struct Base {
    shop: String,
    location: LocationId,
    location_name: String,
    window: u32,
}

async fn base(ctx: &Ctx, location: &LocationId) -> Result<Base, Problem> {
    let f = facts(&ctx.env, ctx.now, &[], &[], std::slice::from_ref(location)).await?;
    Ok(Base {
        shop: var(&ctx.env, "SHOP_NAME").unwrap_or_else(|| DEFAULT_SHOP_NAME.into()),
        location: location.clone(),
        location_name: f
            .location(location)
            .map_or_else(|| location.to_string(), |l| l.name.clone()),
        window: return_window(&ctx.env)?,
    })
}

fn input(
    b: Base,
    kind: ReceiptKind,
    number: &str,
    issued_at: i64,
    currency: Currency,
    lines: Vec<LineInput>,
) -> ReceiptInput {
    ReceiptInput {
        kind,
        number: number.into(),
        reference: None,
        shop: b.shop,
        location: b.location,
        location_name: b.location_name,
        issued_at: Timestamp::from_ms(issued_at),
        currency,
        lines,
        payments: vec![],
        refunds: vec![],
        customer: None,
        return_window_days: b.window,
        tax_inclusive: None,
    }
}

fn build(i: ReceiptInput, ctx: &Ctx) -> Result<Receipt, Problem> {
    let cfg = crate::config::get(&ctx.env)?;
    Receipt::build(i, &cfg.tax).map_err(|e| Problem::invalid(format!("no receipt: {e}")))
}

fn line(
    sku: &Sku,
    qty: i64,
    unit_price: CoreMoney,
    d: Option<&Described>,
    direction: Direction,
) -> Result<LineInput, Problem> {
    Ok(LineInput {
        sku: sku.to_string(),
        title: d.map_or_else(|| sku.to_string(), |d| d.title.clone()),
        options: d
            .map(|d| {
                d.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        qty,
        unit_price,
        catalog_price: match d {
            Some(d) => Some(core_money(&d.price, "catalog price")?),
            None => None,
        },
        tax_code: d.and_then(|d| d.tax_code.clone()),
        tax_location: None,
        direction,
        tax: None,
    })
}

fn described<'a>(all: &'a [(Sku, Option<Described>)], sku: &Sku) -> Option<&'a Described> {
    all.iter()
        .find(|(s, _)| s == sku)
        .and_then(|(_, d)| d.as_ref())
}

/// The customer as a receipt names them: the id only (no name: a stored
/// receipt never changes, and an erasure must leave no personal data in it).
fn customer(id: &Option<String>) -> Option<Customer> {
    id.as_ref().map(|id| Customer {
        id: id.clone(),
        name: None,
        loyalty: None,
    })
}

/// The points a sale's receipt states, asked of the sale's Customer object
/// with the sale's own purchase (see the module documentation). A failure
/// to ask is the receipt's failure (503, retried): it is never issued
/// without figures it should have.
async fn sale_loyalty(ctx: &Ctx, sale: &Sale) -> Result<Option<Loyalty>, Problem> {
    let (Some(id), Some(fact)) = (&sale.customer_id, sale.purchase_fact()) else {
        return Ok(None);
    };
    let a = customer_wire::call(&ctx.env, id, CustomerOp::ReceiptLoyalty(fact)).await?;
    let r: ReceiptLoyalty = serde_json::from_value(a.body)
        .map_err(|e| Problem::overloaded(format!("customer answer: {e}")))?;
    Ok(r.loyalty)
}

async fn sale_receipt(ctx: &Ctx, id: &str, terminal: &TerminalId) -> Result<Receipt, Problem> {
    let sale_id = SaleId::parse(id).map_err(|e| Problem::invalid(e.to_string()))?;
    let sale: Option<Sale> = wire::call(
        &ctx.env,
        Namespace::Terminal,
        terminal.as_str(),
        &TerminalRequest::GetSale { sale_id },
    )
    .await?;
    let sale = sale.ok_or_else(|| Problem::not_found(format!("no recorded sale {id}")))?;
    let mut skus: Vec<Sku> = Vec::new();
    for l in &sale.lines {
        if !skus.contains(&l.sku) {
            skus.push(l.sku.clone());
        }
    }
    let desc = describe(&ctx.env, skus).await?;
    // The tax recorded when the sale was made (the rule for older sales:
    // as charged, tax included).
    let tax = sale.recorded_tax()?;
    let mut lines = Vec::new();
    for (l, t) in sale.lines.iter().zip(&tax.lines) {
        let price = core_money(&l.unit_price, "unit price")?;
        let mut x = line(
            &l.sku,
            l.qty,
            price,
            described(&desc, &l.sku),
            Direction::Sold,
        )?;
        x.tax = Some(*t);
        lines.push(x);
    }
    let b = base(ctx, &sale.location).await?;
    let mut i = input(
        b,
        ReceiptKind::Sale,
        id,
        sale.occurred_at,
        tax.currency,
        lines,
    );
    i.tax_inclusive = Some(tax.inclusive);
    i.payments = sale
        .payments
        .iter()
        .map(|p| {
            Ok(Payment {
                method: p.method.clone(),
                amount: core_money(&p.amount, "payment")?,
            })
        })
        .collect::<Result<_, Problem>>()?;
    i.customer = customer(&sale.customer_id);
    if let Some(c) = &mut i.customer {
        c.loyalty = sale_loyalty(ctx, &sale).await?;
    }
    build(i, ctx)
}

fn order_scope(ctx: &Ctx) -> Scope {
    match (ctx.principal.role, &ctx.principal.location) {
        (Role::Storefront, _) => Scope::Channel(Channel::Online),
        (Role::Pos, Some(l)) => Scope::Location(l.clone()),
        _ => Scope::Any,
    }
}

/// The receipt of an order: paid, or fulfilled (`kind` `None`: the latest
/// stage it reached).
async fn order_receipt(
    ctx: &Ctx,
    a: OrderAnswer,
    kind: Option<ReceiptKind>,
) -> Result<Receipt, Problem> {
    let v = a.view;
    let stage = |pred: &dyn Fn(OrderStatus) -> bool| {
        v.history
            .iter()
            .filter(|h| pred(h.to))
            .map(|h| h.at.clone())
            .max()
    };
    let paid_at = stage(&|s| s == OrderStatus::Paid);
    let done_at = stage(&|s| matches!(s, OrderStatus::Shipped | OrderStatus::Collected));
    let (kind, at) = match (kind, &paid_at, &done_at) {
        (Some(ReceiptKind::OrderFulfilled) | None, _, Some(d)) => (ReceiptKind::OrderFulfilled, d),
        (Some(ReceiptKind::OrderPaid) | None, Some(p), _) => (ReceiptKind::OrderPaid, p),
        (Some(k @ (ReceiptKind::OrderPaid | ReceiptKind::OrderFulfilled)), _, _) => {
            let allowed: &[&str] = &["paid", "shipped", "collected"];
            let to = if k == ReceiptKind::OrderPaid {
                "paid"
            } else {
                "shipped"
            };
            let mut p = Problem::invalid_transition(v.status.as_str(), to, allowed);
            p.detail = format!(
                "order {} has no {} receipt yet",
                v.id,
                k.title().to_lowercase()
            );
            return Err(p);
        }
        _ => {
            return Err(Problem::not_found(format!(
                "order {} has no such receipt",
                v.id
            )))
        }
    };
    let skus: Vec<Sku> = v.lines.iter().map(|l| l.sku.clone()).collect();
    let desc = describe(&ctx.env, skus).await?;
    let mut lines = Vec::new();
    for l in &v.lines {
        let mut x = line(
            &l.sku,
            l.qty,
            l.unit_price,
            described(&desc, &l.sku),
            Direction::Sold,
        )?;
        x.tax_location = Some(l.location.clone());
        lines.push(x);
    }
    let first = v
        .lines
        .first()
        .ok_or_else(|| Problem::not_found("the order has no lines"))?;
    let currency = first.unit_price.currency;
    let b = base(ctx, &first.location).await?;
    let mut i = input(b, kind, &v.id, at_ms(at)?, currency, lines);
    let gross = CoreMoney::parse(&v.totals.gross, &v.totals.currency)
        .map_err(|e| Problem::overloaded(format!("order total: {e}")))?;
    i.payments = vec![Payment {
        method: v.channel.clone(),
        amount: gross,
    }];
    i.customer = customer(&v.customer_id);
    build(i, ctx)
}

/// The receipt of a return: an exchange, a refund, or units taken back.
async fn return_receipt(
    ctx: &Ctx,
    a: ReturnAnswer,
    kind: Option<ReceiptKind>,
) -> Result<Receipt, Problem> {
    let v = a.view;
    let natural = if v.exchange.is_some() {
        ReceiptKind::Exchange
    } else if !v.refunds.is_empty() {
        ReceiptKind::Refund
    } else {
        ReceiptKind::Return
    };
    if kind.is_some_and(|k| k != natural) {
        return Err(Problem::not_found(format!(
            "return {} has a {natural:?} receipt, not that one",
            v.id
        )));
    }
    let received: Vec<(Sku, i64, CoreMoney, i64)> = v
        .lines
        .iter()
        .map(|l| {
            let r = &l.received;
            (
                l.sku.clone(),
                r.restock + r.damaged + r.return_to_vendor,
                l.paid,
                l.qty,
            )
        })
        .filter(|(_, n, _, _)| *n > 0)
        .collect();
    let not_yet = || {
        let allowed: &[&str] = &["received", "refunded", "exchanged"];
        let mut p = Problem::invalid_transition("initiated", "received", allowed);
        p.detail = format!(
            "return {} has received nothing yet: there is no receipt",
            v.id
        );
        p
    };
    let Some(last) = v.receipts.last() else {
        return Err(not_yet());
    };
    if received.is_empty() {
        return Err(not_yet());
    }
    // The source's receipt gives the prices, titles and customer (and is
    // issued by this too: a sale's receipt never changes afterwards).
    let source_id = v
        .sale_id
        .as_ref()
        .map(|s| s.to_string())
        .or_else(|| v.order_id.clone())
        .ok_or_else(|| Problem::overloaded("a return without a source"))?;
    let source = Box::pin(resolve(ctx, &source_id, None, v.terminal_id.as_ref())).await?;
    let mut lines = Vec::new();
    for (sku, n, paid, claimed) in &received {
        let from = source.lines.iter().find(|l| l.sku == sku.as_str());
        let unit = match from {
            Some(l) => l.unit_price,
            // A bundle's component: what was paid for each unit.
            None => CoreMoney {
                amount: paid.amount / rust_decimal::Decimal::from((*claimed).max(1)),
                currency: paid.currency,
            }
            .round(RoundingStrategy::MidpointAwayFromZero),
        };
        lines.push(LineInput {
            sku: sku.to_string(),
            title: from.map_or_else(|| sku.to_string(), |l| l.title.clone()),
            options: from.map(|l| l.options.clone()).unwrap_or_default(),
            qty: *n,
            unit_price: unit,
            catalog_price: None,
            tax_code: None,
            tax_location: Some(source.location.clone()),
            direction: Direction::Returned,
            tax: None,
        });
    }
    // Tax codes as the catalog states them now (rates apply to the code).
    let desc = describe(&ctx.env, received.iter().map(|r| r.0.clone()).collect()).await?;
    for l in &mut lines {
        if let Ok(s) = Sku::parse(&l.sku) {
            l.tax_code = described(&desc, &s).and_then(|d| d.tax_code.clone());
        }
    }
    let mut times = vec![at_ms(&last.at)?];
    let mut payments = Vec::new();
    if let Some(x) = &v.exchange {
        times.push(at_ms(&x.at)?);
        let o: OrderAnswer = order_wire::call(
            &ctx.env,
            &x.order_id,
            &OrderRequest::Get { scope: Scope::Any },
        )
        .await?;
        let skus: Vec<Sku> = o.view.lines.iter().map(|l| l.sku.clone()).collect();
        let d = describe(&ctx.env, skus).await?;
        for l in &o.view.lines {
            let mut x = line(
                &l.sku,
                l.qty,
                l.unit_price,
                described(&d, &l.sku),
                Direction::Sold,
            )?;
            x.tax_location = Some(l.location.clone());
            lines.push(x);
        }
        if !x.difference.is_negative() && !x.difference.amount.is_zero() {
            payments.push(Payment {
                method: "difference".into(),
                amount: x.difference,
            });
        }
    }
    let refunds: Vec<Payment> = v
        .refunds
        .iter()
        .map(|r| Payment {
            method: "refund".into(),
            amount: r.amount,
        })
        .collect();
    for r in &v.refunds {
        times.push(at_ms(&r.at)?);
    }
    let at = times.into_iter().max().unwrap_or(ctx.now);
    let b = base(ctx, &last.location).await?;
    let mut i = input(b, natural, &v.id, at, source.currency, lines);
    i.reference = Some(source_id);
    i.payments = payments;
    i.refunds = refunds;
    // The customer of the source, without the source's points: those were
    // the sale's, and a return's reversal is the customer's to state.
    i.customer = source.customer.as_ref().map(|c| Customer {
        loyalty: None,
        ..c.clone()
    });
    build(i, ctx)
}

/// The receipt under `id` (of `kind`, or the one the number names first: a
/// sale, else an order's latest stage, else a return's), issued now if it
/// never was.
async fn resolve(
    ctx: &Ctx,
    id: &str,
    kind: Option<ReceiptKind>,
    terminal: Option<&TerminalId>,
) -> Result<Receipt, Problem> {
    let known: Known = book(&ctx.env, id, &ReceiptRequest::Get).await?;
    let issued = |k: ReceiptKind| known.receipts.iter().find(|r| r.kind == k).cloned();
    let sale_ok = || ctx.principal.require(&[Role::Admin, Role::Pos]);
    let is_sale = kind.is_none_or(|k| k == ReceiptKind::Sale);
    if is_sale {
        if let Some(r) = issued(ReceiptKind::Sale) {
            sale_ok()?;
            return Ok(r);
        }
        if let Some(t) = terminal {
            sale_ok()?;
            match sale_receipt(ctx, id, t).await {
                Ok(r) => return issue(ctx, id, r).await,
                // `?terminal=` was a guess (the till's own) and missed: the
                // number may be an order's, a return's or another till's.
                Err(p) if p.status == 404 => {}
                Err(p) => return Err(p),
            }
        }
        let indexed = match SaleId::parse(id) {
            Ok(_) => crate::feed::sale_terminal(&ctx.env, id).await?,
            Err(_) => None,
        };
        if let Some(t) = indexed.filter(|t| Some(t) != terminal) {
            sale_ok()?;
            return issue(ctx, id, sale_receipt(ctx, id, &t).await?).await;
        }
        if kind.is_some() {
            return Err(Problem::not_found(format!("no sale receipt {id}")));
        }
    }
    let order_kind = matches!(
        kind,
        None | Some(ReceiptKind::OrderPaid | ReceiptKind::OrderFulfilled)
    );
    if order_kind {
        let o: Result<OrderAnswer, Problem> = order_wire::call(
            &ctx.env,
            id,
            &OrderRequest::Get {
                scope: order_scope(ctx),
            },
        )
        .await;
        match o {
            Ok(a) => {
                let done = a
                    .view
                    .history
                    .iter()
                    .any(|h| matches!(h.to, OrderStatus::Shipped | OrderStatus::Collected));
                let want = kind.unwrap_or(if done {
                    ReceiptKind::OrderFulfilled
                } else {
                    ReceiptKind::OrderPaid
                });
                if let Some(r) = issued(want) {
                    return Ok(r);
                }
                return issue(ctx, id, order_receipt(ctx, a, Some(want)).await?).await;
            }
            Err(p) if p.status == 404 && kind.is_none() => {}
            Err(p) => return Err(p),
        }
    }
    let r: ReturnAnswer =
        match wire::call(&ctx.env, Namespace::ReturnCase, id, &ReturnRequest::Get).await {
            Ok(r) => r,
            Err(p) if p.status == 404 => {
                return Err(Problem::not_found(format!("no sale, order or return {id}")))
            }
            Err(p) => return Err(p),
        };
    if ctx.principal.role == Role::Storefront && r.view.sale_id.is_some() {
        return Err(Problem::not_found(format!("no receipt {id}")));
    }
    for k in [
        ReceiptKind::Exchange,
        ReceiptKind::Refund,
        ReceiptKind::Return,
    ] {
        if kind.is_none_or(|x| x == k) {
            if let Some(x) = issued(k) {
                // A later stage of the return (a refund after the receipt of
                // the units) makes its own receipt; the earlier one stays.
                let later = (k == ReceiptKind::Return && !r.view.refunds.is_empty())
                    || (k != ReceiptKind::Exchange && r.view.exchange.is_some());
                if kind.is_some() || !later {
                    return Ok(x);
                }
            }
        }
    }
    let built = return_receipt(ctx, r, kind).await?;
    issue(ctx, id, built).await
}

async fn issue(ctx: &Ctx, id: &str, r: Receipt) -> Result<Receipt, Problem> {
    book(
        &ctx.env,
        id,
        &ReceiptRequest::Issue {
            receipt: Box::new(r),
        },
    )
    .await
}

fn params(ctx: &Ctx) -> Result<(Option<ReceiptKind>, bool, Option<TerminalId>), Problem> {
    let kind = ctx.query_one("kind")?.map(|k| parse_kind(&k)).transpose()?;
    let copy = match ctx.query_one("copy")?.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::invalid("copy must be true or false")),
    };
    let terminal = ctx
        .query_one("terminal")?
        .map(|t| TerminalId::parse(&t).map_err(|e| Problem::invalid(format!("terminal: {e}"))))
        .transpose()?;
    Ok((kind, copy, terminal))
}

/// `GET /v1/receipts/{id}?kind=&copy=&terminal=`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let form = negotiate(ctx.accept.as_deref())?;
    let id = ctx.path_id("receipt")?;
    check_id(&id, "receipt id")?;
    let (kind, copy, terminal) = params(ctx)?;
    let r = resolve(ctx, &id, kind, terminal.as_ref()).await?;
    let reply = match form {
        HTML => Reply::raw(200, "text/html; charset=utf-8", html::render(&r, copy)),
        TEXT => Reply::raw(200, "text/plain; charset=utf-8", text::render(&r, copy)),
        _ => {
            let mut v = serde_json::to_value(&r)?;
            v["copy"] = json!(copy);
            v["issued_at"] = json!(crate::http::rfc3339(r.issued_at.as_ms()));
            v["return_by"] = json!(r.return_by.map(|t| crate::http::rfc3339(t.as_ms())));
            Reply::json(200, &v)
        }
    };
    Ok(reply.header("Vary", "Accept"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    to: String,
    #[serde(default)]
    kind: Option<String>,
    /// The sale's terminal (the till's own), as `?terminal=` on GET.
    #[serde(default)]
    terminal: Option<String>,
}

/// One mailbox, as the OpenAPI document's pattern says: a local part of
/// `A-Z a-z 0-9 . ! # $ % & ' * + / = ? ^ _ ` { | } ~ -`, `@`, and two or
/// more dot-separated labels of `A-Z a-z 0-9 -`; at most 254 characters.
pub fn check_email(to: &str) -> Result<(), Problem> {
    let bad = || {
        Problem::invalid(format!(
            "to must be one email address (local@domain.tld, at most {MAX_EMAIL_CHARS} characters)"
        ))
    };
    if to.len() > MAX_EMAIL_CHARS {
        return Err(bad());
    }
    let (local, domain) = to.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._!#$%&'*+/=?^`{|}~-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A fresh UUIDv7: the time now and 74 random bits (getrandom, js backend).
fn new_id(now_ms: i64) -> Result<String, Problem> {
    let mut rand = [0u8; 10];
    getrandom::fill(&mut rand).map_err(|_| Problem::overloaded("no randomness; retry"))?;
    let ms = u64::try_from(now_ms).unwrap_or(0);
    Ok(uuid::Builder::from_unix_timestamp_millis(ms, &rand)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// `POST /v1/receipts/{id}/email` `{to, kind?}`: 202, queued in the
/// receipt's outbox (the first attempt before the answer; retries by alarm).
pub async fn email(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("receipt")?;
    check_id(&id, "receipt id")?;
    let b: EmailBody = parse_json(&ctx.body)?;
    check_email(&b.to)?;
    let kind = b.kind.as_deref().map(parse_kind).transpose()?;
    let idem = ctx.idem()?;
    // Without EMAIL_API_URL / EMAIL_FROM / EMAIL_API_KEY the email is still
    // queued: its attempts fail (retryable) until the deployment has them,
    // or it ends `failed` after the last attempt. No input is a 5xx.
    let terminal = b
        .terminal
        .as_deref()
        .map(|t| TerminalId::parse(t).map_err(|e| Problem::invalid(format!("terminal: {e}"))))
        .transpose()?;
    let r = resolve(ctx, &id, kind, terminal.as_ref()).await?;
    let a: EmailAnswer = book(
        &ctx.env,
        &id,
        &ReceiptRequest::Email {
            kind: r.kind,
            to: b.to,
            id: new_id(ctx.now)?,
            idem,
        },
    )
    .await?;
    let replayed = a.replayed;
    let mut v = serde_json::to_value(&a)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("replayed");
    }
    let reply = Reply::json(202, &v);
    Ok(if replayed {
        reply.header("Idempotent-Replayed", "true")
    } else {
        reply
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_a_form_or_406() {
        assert_eq!(negotiate(None).unwrap(), JSON);
        assert_eq!(negotiate(Some("*/*")).unwrap(), JSON);
        assert_eq!(negotiate(Some("text/html")).unwrap(), HTML);
        assert_eq!(negotiate(Some("text/plain")).unwrap(), TEXT);
        assert_eq!(
            negotiate(Some("text/plain;q=0.5, text/html;q=0.9")).unwrap(),
            HTML
        );
        assert_eq!(negotiate(Some("image/png, text/*")).unwrap(), HTML);
        assert_eq!(negotiate(Some("image/png")).unwrap_err().status, 406);
        assert_eq!(negotiate(Some("text/plain;q=0")).unwrap_err().status, 406);
    }

    #[test]
    fn one_mailbox_only() {
        assert!(check_email("ada@example.com").is_ok());
        for bad in [
            "",
            "a@b",
            "ada",
            "a@b.c,d@e.f",
            "a b@c.d",
            "@c.d",
            "a@.c",
            "a@c.",
            "a@@c.d",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
