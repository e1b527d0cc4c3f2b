//! Transfers between locations: `POST /v1/transfers` (requested),
//! `.../{id}/ship`, `.../{id}/receive`, `.../{id}/cancel`, `GET .../{id}`.
//! Each request is one call to the transfer's own object (core's transfer
//! coordinator), which calls the SKU objects. Admin keys only.
use omnistock_core::transfer::{CreateRequest, Transfer, TransferLine};
use omnistock_core::{LocationId, Sku, Timestamp, TransferId};
use serde::Deserialize;

use super::facts;
use crate::extract::{check_lines, check_text, fingerprint, Ctx};
use crate::http::{canonical_body, parse_json, HttpResult, Problem, Reply};
use crate::wire::sku_stock::Meta;
use crate::wire::transfer::{call, problem, TransferAnswer, TransferRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    sku: Sku,
    qty: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: TransferId,
    from: LocationId,
    to: LocationId,
    lines: Vec<Line>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveBody {
    lines: Vec<Line>,
    #[serde(default)]
    close: bool,
}

/// An empty body or `{}` (ship, cancel).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn lines(ls: Vec<Line>) -> Vec<TransferLine> {
    ls.into_iter()
        .map(|l| TransferLine {
            sku: l.sku,
            qty: l.qty,
        })
        .collect()
}

fn meta(ctx: &Ctx) -> Meta {
    Meta {
        actor: ctx.actor(),
        channel: None,
        reference: None,
        reason: None,
    }
}

fn path_id(ctx: &Ctx) -> Result<TransferId, Problem> {
    let raw = ctx.path_id("transfer")?;
    TransferId::parse(&raw).map_err(|e| Problem::invalid(format!("transfer id: {e}")))
}

/// A ship or receipt moved stock: this isolate's cached positions of the
/// transfer's SKUs are dropped, so its next read here sees the move.
fn moved(a: &TransferAnswer) {
    let lines = a.body["lines"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for l in lines {
        if let Some(sku) = l["sku"].as_str().and_then(|s| Sku::parse(s).ok()) {
            crate::cache::stock_changed(&sku);
        }
    }
}

fn reply(a: TransferAnswer) -> HttpResult {
    let r = Reply::json(a.status, &a.body);
    Ok(if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    })
}

/// `POST /v1/transfers`
pub async fn create(ctx: &Ctx) -> HttpResult {
    let b: CreateBody = parse_json(&ctx.body)?;
    check_lines(b.lines.len())?;
    check_text(&b.note, 500, "note")?;
    let fp = fingerprint(&[&canonical_body(&ctx.body)]);
    let core = CreateRequest {
        id: b.id.clone(),
        from: b.from.clone(),
        to: b.to.clone(),
        lines: lines(b.lines),
        fp: 0,
    };
    // Core's checks first (lines, quantities, one line per SKU, from != to):
    // bad input is 400 before anything is looked up or written.
    Transfer::new(Timestamp::from_ms(ctx.now), "", core.clone()).map_err(|e| problem(&e, None))?;
    let skus: Vec<Sku> = core.lines.iter().map(|l| l.sku.clone()).collect();
    let locs = [core.from.clone(), core.to.clone()];
    let f = facts(&ctx.env, ctx.now, &skus, &[], &locs).await?;
    f.require_skus(&skus, false)?;
    f.require_locations(&locs)?;
    let req = TransferRequest::Create {
        id: core.id.clone(),
        from: core.from,
        to: core.to,
        lines: core.lines,
        note: b.note,
        fp,
        meta: meta(ctx),
        idem: ctx.idem()?,
    };
    reply(call(&ctx.env, &core.id, &req).await?)
}

/// `POST /v1/transfers/{id}/ship`
pub async fn ship(ctx: &Ctx) -> HttpResult {
    let id = path_id(ctx)?;
    if !ctx.body.is_empty() {
        let _: Empty = parse_json(&ctx.body)?;
    }
    let req = TransferRequest::Ship {
        id: id.clone(),
        meta: meta(ctx),
        idem: ctx.idem()?,
    };
    let a = call(&ctx.env, &id, &req).await?;
    moved(&a);
    reply(a)
}

/// `POST /v1/transfers/{id}/receive`
pub async fn receive(ctx: &Ctx) -> HttpResult {
    let id = path_id(ctx)?;
    let b: ReceiveBody = parse_json(&ctx.body)?;
    if !(b.close && b.lines.is_empty()) {
        check_lines(b.lines.len())?;
    }
    let req = TransferRequest::Receive {
        id: id.clone(),
        lines: lines(b.lines),
        close: b.close,
        meta: meta(ctx),
        idem: ctx.idem()?,
    };
    let a = call(&ctx.env, &id, &req).await?;
    moved(&a);
    reply(a)
}

/// `POST /v1/transfers/{id}/cancel`
pub async fn cancel(ctx: &Ctx) -> HttpResult {
    let id = path_id(ctx)?;
    if !ctx.body.is_empty() {
        let _: Empty = parse_json(&ctx.body)?;
    }
    let req = TransferRequest::Cancel {
        id: id.clone(),
        meta: meta(ctx),
        idem: ctx.idem()?,
    };
    reply(call(&ctx.env, &id, &req).await?)
}

/// `GET /v1/transfers/{id}`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = path_id(ctx)?;
    reply(call(&ctx.env, &id, &TransferRequest::Get { id: id.clone() }).await?)
}
