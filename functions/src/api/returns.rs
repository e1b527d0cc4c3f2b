//! Returns: `POST /v1/returns`, `POST /v1/returns/{id}/receive`,
//! `POST /v1/returns/{id}/refund`, `GET /v1/returns/{id}`.
//!
//! Each return is its own `ReturnCase` object (core's return coordinator).
//! Initiating it claims its lines from its source once: a POS sale's
//! `Terminal` refuses a claim beyond what the sale sold minus what other
//! returns claimed. A return names only `sale_id`; the terminal is the
//! request's `terminal_id` when given, else the one the first line's SKU
//! object recorded with the sale (its `sale:` row, kept forever): no object
//! on the sale's hot path, no global index. Receiving books a
//! `ReturnReceive` per line in the SKU objects (op ids from the return id
//! and receipt number, applied once); refunds are checked against what was
//! paid for the units received.
use omnistock_core::money::Money as CoreMoney;
use omnistock_core::returns::{ReceiveLine, ReturnLine, ReturnSource};
use omnistock_core::{Condition, LocationId, OrderId, SaleId, Sku, TerminalId};
use serde::Deserialize;
use serde_json::json;

use super::{facts, stock_changed};
use crate::auth::Role;
use crate::extract::{check_lines, check_qty, fingerprint, Ctx};
use crate::http::{check_id, parse_json, HttpResult, Problem, Reply};
use crate::wire::catalog::{Money, SkuFact};
use crate::wire::order::{self as order_wire, OrderAnswer, OrderRequest, Scope};
use crate::wire::returns::{ExchangeCheck, Initiate, ReturnAnswer, ReturnRequest};
use crate::wire::sku_stock::Meta;
use crate::wire::{self, Idem, Namespace};
use omnistock_core::order::OrderStatus;
use omnistock_core::reservation::{FulfillmentKind, Placement};

use super::orders::{place_order, DraftLine, OrderDraft};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    sku: Sku,
    qty: i64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitiateBody {
    id: String,
    #[serde(default)]
    sale_id: Option<SaleId>,
    #[serde(default)]
    order_id: Option<OrderId>,
    #[serde(default)]
    terminal_id: Option<TerminalId>,
    lines: Vec<LineBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveLineBody {
    sku: Sku,
    qty: i64,
    condition: Condition,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveBody {
    location: LocationId,
    lines: Vec<ReceiveLineBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeLineBody {
    sku: Sku,
    qty: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeBody {
    /// The replacement: held like a new order, picked up at `location`.
    lines: Vec<ExchangeLineBody>,
    location: LocationId,
    /// Units of the return to receive at `location` in the same operation
    /// (else the units it received before are exchanged).
    #[serde(default)]
    receive: Option<Vec<ReceiveLineBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: Money,
}

fn reply(a: ReturnAnswer) -> Reply {
    let r = Reply::json(a.status, &a.view);
    if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    }
}

async fn call(ctx: &Ctx, id: &str, req: &ReturnRequest) -> Result<ReturnAnswer, Problem> {
    wire::call(&ctx.env, Namespace::ReturnCase, id, req).await
}

fn meta(ctx: &Ctx) -> Meta {
    Meta {
        actor: ctx.actor(),
        channel: None,
        reference: None,
        reason: None,
    }
}

/// The SKUs exist and none is a bundle (a bundle is returned as its components).
async fn require_skus(ctx: &Ctx, skus: &[Sku], locations: &[LocationId]) -> Result<(), Problem> {
    let f = facts(&ctx.env, ctx.now, skus, &[], locations).await?;
    f.require_locations(locations)?;
    f.require_skus(skus, true)?;
    if let Some(b) = skus
        .iter()
        .find(|s| matches!(f.skus.get(*s), Some(SkuFact::Bundle { .. })))
    {
        return Err(Problem::invalid(format!(
            "{b} is a bundle: return its components"
        )));
    }
    Ok(())
}

/// `POST /v1/returns`
pub async fn initiate(ctx: &Ctx) -> HttpResult {
    let b: InitiateBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    check_id(&b.id, "id")?;
    let source = match (&b.sale_id, &b.order_id) {
        (Some(s), None) => ReturnSource::Sale(s.clone()),
        (None, Some(o)) => ReturnSource::Order(o.clone()),
        _ => return Err(Problem::invalid("give exactly one of sale_id and order_id")),
    };
    if b.terminal_id.is_some() && b.sale_id.is_none() {
        return Err(Problem::invalid(
            "terminal_id names the terminal of a sale_id",
        ));
    }
    if ctx.principal.role == Role::Storefront && b.sale_id.is_some() {
        return Err(Problem::forbidden(
            "a storefront key may return online orders only",
        ));
    }
    check_lines(b.lines.len())?;
    let mut skus: Vec<Sku> = Vec::new();
    let mut lines = Vec::new();
    for (i, l) in b.lines.iter().enumerate() {
        check_qty(l.qty, 1, &format!("lines[{i}].qty"))?;
        if l.reason.trim().is_empty()
            || l.reason.len() > omnistock_core::returns::case::MAX_REASON_LEN
            || l.reason.chars().any(char::is_control)
        {
            return Err(Problem::invalid(format!(
                "lines[{i}].reason must be 1 to 200 characters without control characters"
            )));
        }
        if !skus.contains(&l.sku) {
            skus.push(l.sku.clone());
        }
        lines.push(ReturnLine {
            sku: l.sku.clone(),
            qty: l.qty,
            reason: l.reason.clone(),
        });
    }
    omnistock_core::returns::merge_return_lines(&lines)
        .map_err(|e| Problem::invalid(e.to_string()))?;
    require_skus(ctx, &skus, &[]).await?;
    let canonical = serde_json::to_vec(&json!({"source": source, "lines": lines}))?;
    let req = ReturnRequest::Initiate(Initiate {
        id: b.id.clone(),
        source,
        terminal_id: b.terminal_id,
        lines,
        online_only: ctx.principal.role == Role::Storefront,
        fp: fingerprint(&[&canonical]),
        meta: meta(ctx),
        idem,
    });
    Ok(reply(call(ctx, &b.id, &req).await?))
}

/// `GET /v1/returns/{id}`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("return")?;
    let a = call(ctx, &id, &ReturnRequest::Get).await?;
    // A storefront sees returns of orders only (POS sales are not its own).
    if ctx.principal.role == Role::Storefront && a.view.sale_id.is_some() {
        return Err(Problem::not_found("no such return"));
    }
    Ok(reply(a))
}

/// Checks a request's lines (count, each quantity at least 1) and gives
/// their SKUs, each once, in order.
fn checked_lines<'a>(
    lines: impl ExactSizeIterator<Item = (&'a Sku, i64)>,
) -> Result<Vec<Sku>, Problem> {
    check_lines(lines.len())?;
    let mut skus: Vec<Sku> = Vec::new();
    for (i, (sku, qty)) in lines.enumerate() {
        check_qty(qty, 1, &format!("lines[{i}].qty"))?;
        if !skus.contains(sku) {
            skus.push(sku.clone());
        }
    }
    Ok(skus)
}

/// `POST /v1/returns/{id}/receive`
pub async fn receive(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("return")?;
    let b: ReceiveBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    ctx.principal
        .require_at(&[Role::Admin, Role::Pos], &b.location)?;
    let skus = checked_lines(b.lines.iter().map(|l| (&l.sku, l.qty)))?;
    require_skus(ctx, &skus, std::slice::from_ref(&b.location)).await?;
    let req = ReturnRequest::Receive {
        location: b.location,
        lines: b
            .lines
            .into_iter()
            .map(|l| ReceiveLine {
                sku: l.sku,
                qty: l.qty,
                condition: l.condition,
            })
            .collect(),
        meta: meta(ctx),
        idem,
    };
    let r = call(ctx, &id, &req).await;
    stock_changed(&skus);
    Ok(reply(r?))
}

/// `POST /v1/returns/{id}/refund`
pub async fn refund(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("return")?;
    let b: RefundBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    b.amount.validate("amount")?;
    let amount = CoreMoney::parse(&b.amount.amount, &b.amount.currency)
        .map_err(|e| Problem::invalid(format!("amount: {e}")))?;
    let req = ReturnRequest::Refund {
        amount,
        meta: meta(ctx),
        idem,
    };
    Ok(reply(call(ctx, &id, &req).await?))
}

/// `POST /v1/returns/{id}/exchange`: one operation that holds the
/// replacement like a new order (`place_order`, order id `x.<return id>`,
/// or `x<n>.<return id>` after n refused attempts; pickup at `location`) and books the return's receipt, all or nothing:
/// the hold comes first (refused: nothing is booked), then the receipt (refused:
/// the replacement order is cancelled, its holds released). The answer's
/// `exchange.difference` is the replacement's total minus what the customer
/// paid for the units received (minus refunds): positive, the customer pays.
pub async fn exchange(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("return")?;
    let b: ExchangeBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    ctx.principal
        .require_at(&[Role::Admin, Role::Pos], &b.location)?;
    let mut skus = checked_lines(b.lines.iter().map(|l| (&l.sku, l.qty)))?;
    let receive = match &b.receive {
        Some(ls) => {
            check_lines(ls.len())?;
            let mut lines = Vec::new();
            for (i, l) in ls.iter().enumerate() {
                check_qty(l.qty, 1, &format!("receive[{i}].qty"))?;
                if !skus.contains(&l.sku) {
                    skus.push(l.sku.clone());
                }
                lines.push(ReceiveLine {
                    sku: l.sku.clone(),
                    qty: l.qty,
                    condition: l.condition,
                });
            }
            Some((b.location.clone(), lines))
        }
        None => None,
    };
    {
        // Replacement SKUs may be bundles (held as components); returned ones not.
        let f = facts(
            &ctx.env,
            ctx.now,
            &skus,
            &[],
            std::slice::from_ref(&b.location),
        )
        .await?;
        f.require_locations(std::slice::from_ref(&b.location))?;
        f.require_skus(&skus, true)?;
    }
    let check: ExchangeCheck = wire::call(
        &ctx.env,
        Namespace::ReturnCase,
        &id,
        &ReturnRequest::ExchangeCheck {
            idem: idem.clone(),
            receive: receive.clone(),
        },
    )
    .await?;
    let (customer_id, currency, order_id) = match check {
        ExchangeCheck::Replay(a) => return Ok(reply(*a)),
        ExchangeCheck::Go {
            customer_id,
            currency,
            order_id,
        } => (customer_id, currency, order_id),
    };
    // 1. Hold the replacement (all lines or none). Refused: nothing booked.
    let draft = OrderDraft {
        id: order_id.clone(),
        channel: ctx.principal.channel(),
        customer_id,
        reservation_id: None,
        lines: b
            .lines
            .iter()
            .map(|l| DraftLine {
                sku: l.sku.clone(),
                qty: l.qty,
                unit_price: None,
            })
            .collect(),
        fulfillment: Placement {
            kind: FulfillmentKind::Pickup,
            location: Some(b.location.clone()),
            destination: None,
        },
        may_price: false,
        actor: ctx.actor(),
        idem: Some(idem.clone()),
    };
    let (_, order) = place_order(&ctx.env, draft).await?;
    stock_changed(&skus);
    let total = CoreMoney::parse(&order.totals.gross, &order.totals.currency)
        .map_err(|e| Problem::overloaded(format!("the replacement's total: {e}")));
    let total = match total {
        Ok(t) if t.currency.as_str() == currency => t,
        Ok(_) => {
            cancel(ctx, &order_id).await;
            return Err(Problem::invalid(format!(
                "the replacement is priced in {}, the return in {currency}",
                order.totals.currency
            )));
        }
        Err(p) => {
            cancel(ctx, &order_id).await;
            return Err(p);
        }
    };
    // 2. Book the receipt and record the exchange. Refused: release the hold.
    let r = call(
        ctx,
        &id,
        &ReturnRequest::Exchange {
            order_id: order_id.clone(),
            replacement_total: total,
            receive,
            meta: meta(ctx),
            idem,
        },
    )
    .await;
    match r {
        Ok(a) => Ok(reply(a)),
        // Retryable with the same key: the order is found, the receipt resumed.
        Err(p) if p.status == 503 => Err(p),
        Err(p) => {
            cancel(ctx, &order_id).await;
            Err(p)
        }
    }
}

/// Cancels an exchange's replacement order (its holds are released).
async fn cancel(ctx: &Ctx, order_id: &str) {
    let req = OrderRequest::Transition {
        to: OrderStatus::Cancelled,
        part: None,
        scope: Scope::Any,
        meta: meta(ctx),
        idem: Idem {
            key: fingerprint(&[b"exchange-cancel", order_id.as_bytes()]),
            fp: fingerprint(&[b"cancel"]),
        },
    };
    if let Err(p) = order_wire::call::<OrderAnswer>(&ctx.env, order_id, &req).await {
        worker::console_error!("exchange order {order_id} not cancelled: {}", p.detail);
    }
}
