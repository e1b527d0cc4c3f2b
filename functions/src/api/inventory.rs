//! Stock writes at one location: receipts, adjustments, counts, safety
//! stock; and the ledger. Each SKU's commands go to its own object in one
//! call; the answer each object stores with its effect is the answer a
//! retry with the same Idempotency-Key gets.
use futures_util::future::join_all;
use omnistock_core::{
    AdjustReason, Channel, Command, Event, LocationId, Sku, Timestamp, MAX_LINE_QTY,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::availability::row;
use super::{exec_sku, facts, sku_call, Facts};
use crate::auth::Role;
use crate::extract::{check_lines, check_qty, check_text, op_id, Ctx};
use crate::http::{parse_json, rfc3339, HttpResult, Problem, Reply};
use crate::wire::catalog::Location;
use crate::wire::sku_stock::{event_qty, LedgerEntry, LedgerRequest, Meta, Outcome, SkuRequest};

/// Marks a reply as a replay when every object answered with its stored answer.
pub fn replayed_if(reply: Reply, outcomes: &[&Outcome]) -> Reply {
    if !outcomes.is_empty() && outcomes.iter().all(|o| o.replayed) {
        reply.header("Idempotent-Replayed", "true")
    } else {
        reply
    }
}

/// The catalog's answer for stock writes at one location: every SKU known
/// and not a bundle, the location known.
async fn known(ctx: &Ctx, skus: &[Sku], location: &LocationId) -> Result<Facts, Problem> {
    let f = facts(&ctx.env, ctx.now, skus, &[], std::slice::from_ref(location)).await?;
    f.require_skus(skus, false)?;
    f.require_locations(std::slice::from_ref(location))?;
    Ok(f)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptLine {
    sku: Sku,
    qty: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptBody {
    location: LocationId,
    #[serde(default)]
    reference: Option<String>,
    lines: Vec<ReceiptLine>,
}

/// `POST /v1/inventory/receipts`
pub async fn receipts(ctx: &Ctx) -> HttpResult {
    let b: ReceiptBody = parse_json(&ctx.body)?;
    check_lines(b.lines.len())?;
    check_text(&b.reference, 200, "reference")?;
    for (i, l) in b.lines.iter().enumerate() {
        check_qty(l.qty, 0, &format!("lines[{i}].qty"))?;
    }
    let mut skus: Vec<Sku> = Vec::new();
    for l in &b.lines {
        if !skus.contains(&l.sku) {
            skus.push(l.sku.clone());
        }
    }
    let facts = known(ctx, &skus, &b.location).await?;
    let idem = ctx.idem()?;
    let base = ctx.op_base();
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: b.reference.clone(),
        reason: Some("receipt".into()),
    };
    let mut per_sku: Vec<(Sku, Vec<Command>)> = Vec::new();
    for s in &skus {
        let mut cmds = Vec::new();
        for (i, l) in b.lines.iter().enumerate() {
            if &l.sku == s {
                cmds.push(Command::Receive {
                    op: op_id(&base, "rcv", i)?,
                    location: b.location.clone(),
                    qty: l.qty,
                });
            }
        }
        per_sku.push((s.clone(), cmds));
    }
    let results = join_all(
        per_sku
            .iter()
            .map(|(s, cmds)| exec_sku(&ctx.env, s, cmds.clone(), &meta, Some(idem.clone()))),
    )
    .await;
    let mut items = Vec::new();
    let mut all = Vec::new();
    for r in results {
        all.push(r?);
    }
    let outcomes: Vec<&Outcome> = all.iter().flatten().collect();
    for o in &outcomes {
        if let Some(p) = o.problem() {
            return Err(p);
        }
    }
    let loc = facts.location(&b.location);
    for ((sku, _), outs) in per_sku.iter().zip(&all) {
        if let Some(o) = outs.last() {
            let p = o.position.unwrap_or_default();
            items.push(row(
                sku,
                loc,
                &p,
                Channel::Online,
                p.available(Channel::Online),
            ));
        }
    }
    let reply = Reply::json(
        200,
        &json!({
            "location": b.location,
            "reference": b.reference,
            "lines": b.lines.iter().map(|l| json!({"sku": l.sku, "qty": l.qty})).collect::<Vec<_>>(),
            "items": items,
        }),
    );
    Ok(replayed_if(reply, &outcomes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    location: LocationId,
    sku: Sku,
    delta: i64,
    reason: AdjustReason,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    expected_version: Option<u64>,
}

/// `POST /v1/inventory/adjustments`
pub async fn adjustments(ctx: &Ctx) -> HttpResult {
    let b: AdjustBody = parse_json(&ctx.body)?;
    if b.delta.unsigned_abs() > MAX_LINE_QTY as u64 {
        return Err(Problem::invalid(format!(
            "delta must be within -{MAX_LINE_QTY}..={MAX_LINE_QTY}"
        )));
    }
    check_text(&b.note, 500, "note")?;
    let facts = known(ctx, std::slice::from_ref(&b.sku), &b.location).await?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: b.note.clone(),
        reason: Some(b.reason.as_str().into()),
    };
    let cmd = Command::Adjust {
        op: op_id(&ctx.op_base(), "adj", 0)?,
        location: b.location.clone(),
        delta: b.delta,
        reason: b.reason,
        expected_version: b.expected_version,
    };
    single(ctx, &b.sku, cmd, &meta, facts.location(&b.location)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SafetyBody {
    location: LocationId,
    sku: Sku,
    qty: i64,
}

/// `PUT /v1/inventory/safety-stock`
pub async fn safety_stock(ctx: &Ctx) -> HttpResult {
    let b: SafetyBody = parse_json(&ctx.body)?;
    check_qty(b.qty, 0, "qty")?;
    let facts = known(ctx, std::slice::from_ref(&b.sku), &b.location).await?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: None,
        reason: Some("safety_stock".into()),
    };
    let cmd = Command::SetSafetyStock {
        op: op_id(&ctx.op_base(), "ss", 0)?,
        location: b.location.clone(),
        qty: b.qty,
    };
    single(ctx, &b.sku, cmd, &meta, facts.location(&b.location)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountLine {
    sku: Sku,
    counted: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountBody {
    location: LocationId,
    counted_at: String,
    lines: Vec<CountLine>,
}

/// `POST /v1/inventory/counts`: sets on_hand from a physical count and records the variance.
pub async fn counts(ctx: &Ctx) -> HttpResult {
    let b: CountBody = parse_json(&ctx.body)?;
    ctx.principal
        .require_at(&[Role::Admin, Role::Pos], &b.location)?;
    check_lines(b.lines.len())?;
    let counted_at = crate::http::parse_rfc3339(&b.counted_at)
        .ok_or_else(|| Problem::invalid("counted_at must be an RFC 3339 time"))?;
    let mut skus: Vec<Sku> = Vec::new();
    for (i, l) in b.lines.iter().enumerate() {
        if !(0..=omnistock_core::sku::MAX_COUNTED).contains(&l.counted) {
            return Err(Problem::invalid(format!(
                "lines[{i}].counted must be a whole number from 0 to {}",
                omnistock_core::sku::MAX_COUNTED
            )));
        }
        if skus.contains(&l.sku) {
            return Err(Problem::invalid(format!(
                "lines[{i}]: SKU {} counted twice",
                l.sku
            )));
        }
        skus.push(l.sku.clone());
    }
    known(ctx, &skus, &b.location).await?;
    let idem = ctx.idem()?;
    let base = ctx.op_base();
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: None,
        reason: Some("count".into()),
    };
    let mut cmds = Vec::new();
    for (i, l) in b.lines.iter().enumerate() {
        cmds.push((
            l.sku.clone(),
            Command::Count {
                op: op_id(&base, "cnt", i)?,
                location: b.location.clone(),
                counted: l.counted,
                counted_at: Timestamp::from_ms(counted_at),
            },
        ));
    }
    let results = join_all(
        cmds.iter()
            .map(|(s, c)| exec_sku(&ctx.env, s, vec![c.clone()], &meta, Some(idem.clone()))),
    )
    .await;
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for r in results {
        let mut outs = r?;
        all.push(
            outs.pop()
                .ok_or_else(|| Problem::overloaded("empty answer"))?,
        );
    }
    for o in &all {
        if let Some(p) = o.problem() {
            return Err(p);
        }
    }
    for ((sku, _), o) in cmds.iter().zip(&all) {
        let Some(Event::Counted {
            counted,
            variance,
            on_hand,
            oversold,
            at_risk,
            ..
        }) = o
            .events()
            .iter()
            .find(|e| matches!(e, Event::Counted { .. }))
        else {
            return Err(Problem::overloaded(
                "a count was answered without its event",
            ));
        };
        let at_risk: Vec<Value> = at_risk.iter().map(super::pos::hold_owner).collect();
        lines.push(json!({
            "sku": sku,
            "counted": counted,
            "variance": variance,
            "on_hand": on_hand,
            "oversold": oversold,
            "at_risk": at_risk,
        }));
    }
    let reply = Reply::json(
        200,
        &json!({"location": b.location, "counted_at": rfc3339(counted_at), "lines": lines}),
    );
    Ok(replayed_if(reply, &all.iter().collect::<Vec<_>>()))
}

async fn single(
    ctx: &Ctx,
    sku: &Sku,
    cmd: Command,
    meta: &Meta,
    location: Option<&Location>,
) -> HttpResult {
    let mut outs = exec_sku(&ctx.env, sku, vec![cmd], meta, Some(ctx.idem()?)).await?;
    let o = outs
        .pop()
        .ok_or_else(|| Problem::overloaded("empty answer"))?;
    if let Some(p) = o.problem() {
        return Err(p);
    }
    let p = o.position.unwrap_or_default();
    let reply = Reply::json(
        200,
        &json!({"item": row(sku, location, &p, Channel::Online, p.available(Channel::Online))}),
    );
    Ok(replayed_if(reply, &[&o]))
}

/// `GET /v1/skus/{sku}/ledger?location=&after=&limit=`
pub async fn ledger(ctx: &Ctx) -> HttpResult {
    let sku = Sku::parse(ctx.segment(2)).map_err(|e| Problem::invalid(format!("sku: {e}")))?;
    let location = match ctx.query_list("location").as_slice() {
        [] => None,
        [l] => Some(LocationId::parse(l).map_err(|e| Problem::invalid(format!("location: {e}")))?),
        _ => return Err(Problem::invalid("one location at most")),
    };
    if ctx.principal.role == Role::Pos {
        match &location {
            Some(l) => ctx.principal.require_at(&[Role::Pos], l)?,
            None => {
                return Err(Problem::forbidden(
                    "a POS key reads the ledger of its own location only",
                ))
            }
        }
    }
    let number = |name: &str, default: i64, max: i64| -> Result<i64, Problem> {
        match ctx.query_list(name).as_slice() {
            [] => Ok(default),
            [v] => v
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    Problem::invalid(format!("{name} must be a whole number 0..={max}"))
                }),
            _ => Err(Problem::invalid(format!("{name} given twice"))),
        }
    };
    let after = number("after", 0, i64::MAX / 2)?;
    let limit = number("limit", 100, 1000)?.max(1);
    let locs: Vec<LocationId> = location.iter().cloned().collect();
    let f = facts(&ctx.env, ctx.now, std::slice::from_ref(&sku), &[], &locs).await?;
    f.require_skus(std::slice::from_ref(&sku), false)?;
    f.require_locations(&locs)?;
    let entries: Vec<LedgerEntry> = sku_call(
        &ctx.env,
        &sku,
        &SkuRequest::Ledger(LedgerRequest {
            location,
            after: Some(after),
            limit,
        }),
    )
    .await?;
    let next = entries.last().map(|e| e.seq);
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let event: Option<Event> = serde_json::from_str(&e.json).ok();
            let details = event
                .as_ref()
                .and_then(|ev| serde_json::to_value(ev).ok())
                .unwrap_or(Value::Null);
            json!({
                "seq": e.seq,
                "event": e.kind,
                "at": rfc3339(e.at),
                "location": e.location,
                "qty": event.as_ref().and_then(event_qty),
                "reason": e.reason,
                "actor": e.actor,
                "channel": e.channel,
                "reference": e.reference,
                "details": details,
            })
        })
        .collect();
    Ok(Reply::json(
        200,
        &json!({"sku": sku, "items": items, "next_after": next}),
    ))
}
