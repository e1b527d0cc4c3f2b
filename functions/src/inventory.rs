//! Inventory endpoints: availability, receipts, adjustments, safety stock, ledger.
use std::collections::BTreeMap;

use futures_util::future::join_all;
use omnistock_core::{AdjustReason, Channel, LocationId, OpId, Position, Sku, MAX_LINE_QTY};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Env;

use crate::api::Ctx;
use crate::auth::Role;
use crate::catalog::{CheckAnswer, CheckRequest, Location};
use crate::catalog_api;
use crate::http::{parse_json, query_list, rfc3339, Problem, Reply, MAX_LINES, MAX_SKUS};
use crate::rpc::{self, SKU_STOCK};
use crate::sku_stock::{
    ExecRequest, LedgerEntry, LedgerRequest, Meta, Outcome, ReadAnswer, ReadRequest, WireCommand,
};

/// One availability row of API.md.
pub fn row(
    sku: &Sku,
    location: Option<&Location>,
    p: &Position,
    channel: Channel,
    available: i64,
) -> Value {
    let mut v = json!({
        "sku": sku,
        "on_hand": p.on_hand,
        "reserved": p.reserved,
        "committed": p.committed,
        "unavailable": {"damaged": p.damaged, "quality_control": p.quality_control},
        "safety_stock": p.safety_stock,
        "incoming": p.incoming,
        "available": available,
        "version": p.version,
        "channel": crate::reservation::channel_name(channel),
    });
    if let Some(l) = location {
        v["location"] = json!(l.id);
        v["location_name"] = json!(l.name);
    }
    v
}

fn sum(a: &mut Position, b: &Position) {
    a.on_hand += b.on_hand;
    a.reserved += b.reserved;
    a.committed += b.committed;
    a.damaged += b.damaged;
    a.quality_control += b.quality_control;
    a.safety_stock += b.safety_stock;
    a.incoming += b.incoming;
    a.version += b.version;
}

/// Reads the positions of one SKU at the given locations.
pub async fn read_sku(
    env: &Env,
    sku: &Sku,
    locations: &[LocationId],
) -> Result<ReadAnswer, Problem> {
    rpc::call(
        env,
        SKU_STOCK,
        sku.as_str(),
        "read",
        &ReadRequest {
            locations: Some(locations.to_vec()),
        },
    )
    .await
}

/// Runs commands on one SKU object.
pub async fn exec_sku(
    env: &Env,
    sku: &Sku,
    cmds: Vec<WireCommand>,
    meta: &Meta,
) -> Result<Vec<Outcome>, Problem> {
    let n = cmds.len();
    let out: Vec<Outcome> = rpc::call(
        env,
        SKU_STOCK,
        sku.as_str(),
        "exec",
        &ExecRequest {
            cmds,
            meta: meta.clone(),
        },
    )
    .await?;
    if out.len() != n {
        return Err(Problem::overloaded(
            "a SKU object answered the wrong number of results",
        ));
    }
    Ok(out)
}

fn default_channel(ctx: &Ctx) -> Channel {
    if ctx.principal.role == Role::Pos {
        Channel::Pos
    } else {
        Channel::Online
    }
}

pub fn parse_channel(ctx: &Ctx) -> Result<Channel, Problem> {
    match query_list(&ctx.query, "channel").as_slice() {
        [] => Ok(default_channel(ctx)),
        [c] if c == "online" => Ok(Channel::Online),
        [c] if c == "pos" => Ok(Channel::Pos),
        _ => Err(Problem::invalid("channel must be online or pos")),
    }
}

/// Turns catalog misses into a 404, and refuses bundles: they have no stock of their own.
pub fn require_known(a: &CheckAnswer) -> Result<(), Problem> {
    require_known_or_bundle(a)?;
    if let Some(b) = a.bundles.keys().next() {
        return Err(Problem::invalid(format!(
            "{b} is a bundle: it has no stock of its own (use its components)"
        )));
    }
    Ok(())
}

/// Turns catalog misses into a 404; bundles are fine.
pub fn require_known_or_bundle(a: &CheckAnswer) -> Result<(), Problem> {
    if !a.missing_skus.is_empty() {
        return Err(Problem::not_found(format!(
            "unknown SKU: {}",
            a.missing_skus
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with("skus", &a.missing_skus));
    }
    if !a.missing_locations.is_empty() {
        return Err(Problem::not_found(format!(
            "unknown location: {}",
            a.missing_locations
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with("locations", &a.missing_locations));
    }
    if !a.missing_barcodes.is_empty() {
        return Err(Problem::not_found(format!(
            "unknown barcode: {}",
            a.missing_barcodes.join(", ")
        ))
        .with("barcodes", &a.missing_barcodes));
    }
    Ok(())
}

/// `GET /v1/availability?sku=A,B&location=L1,L2&channel=online|pos`
pub async fn availability(ctx: &Ctx) -> Result<Reply, Problem> {
    let raw_skus = query_list(&ctx.query, "sku");
    if raw_skus.is_empty() {
        return Err(Problem::invalid(
            "sku is required (comma-separated, at most 100)",
        ));
    }
    if raw_skus.len() > MAX_SKUS {
        return Err(Problem::invalid(format!(
            "at most {MAX_SKUS} SKUs per read"
        )));
    }
    let mut skus: Vec<Sku> = Vec::new();
    for s in &raw_skus {
        let sku = Sku::parse(s).map_err(|e| Problem::invalid(format!("sku {s:?}: {e}")))?;
        if !skus.contains(&sku) {
            skus.push(sku);
        }
    }
    let raw_locs = query_list(&ctx.query, "location");
    if raw_locs.len() > MAX_SKUS {
        return Err(Problem::invalid(format!(
            "at most {MAX_SKUS} locations per read"
        )));
    }
    let mut locs: Vec<LocationId> = Vec::new();
    for l in &raw_locs {
        let loc =
            LocationId::parse(l).map_err(|e| Problem::invalid(format!("location {l:?}: {e}")))?;
        if !locs.contains(&loc) {
            locs.push(loc);
        }
    }
    let channel = parse_channel(ctx)?;
    let all_locations = locs.is_empty();
    let check = catalog_api::check(
        &ctx.env,
        CheckRequest {
            skus: skus.clone(),
            locations: if all_locations { None } else { Some(locs) },
            barcodes: vec![],
        },
    )
    .await?;
    require_known_or_bundle(&check)?;
    let bundles = check.core_bundles()?;
    let loc_ids: Vec<LocationId> = check.locations.iter().map(|l| l.id.clone()).collect();
    // Stock-bearing SKUs to read: the plain ones and every bundle's components.
    let mut reads: Vec<Sku> = Vec::new();
    for s in &skus {
        match bundles.get(s) {
            Some(b) => {
                for c in b.components() {
                    if !reads.contains(&c.sku) {
                        reads.push(c.sku.clone());
                    }
                }
            }
            None => {
                if !reads.contains(s) {
                    reads.push(s.clone());
                }
            }
        }
    }
    let answers = join_all(reads.iter().map(|s| read_sku(&ctx.env, s, &loc_ids))).await;
    let mut read: BTreeMap<Sku, ReadAnswer> = BTreeMap::new();
    for (s, a) in reads.into_iter().zip(answers) {
        read.insert(s, a?);
    }
    let position = |sku: &Sku, l: &LocationId| -> Position {
        read.get(sku)
            .and_then(|a| a.positions.iter().find(|(x, _)| x == l))
            .map(|(_, p)| *p)
            .unwrap_or_default()
    };
    let mut items = Vec::new();
    let mut as_of = read.values().map(|a| a.now).max().unwrap_or(0);
    for sku in &skus {
        if let Some(b) = bundles.get(sku) {
            // A bundle: core's availability from its components', per location.
            let mut total_available = 0;
            let mut total_version = 0;
            for l in &check.locations {
                let avail = b.available(|c| position(c, &l.id).available(channel));
                let version: u64 = b
                    .components()
                    .iter()
                    .map(|c| position(&c.sku, &l.id).version)
                    .sum();
                total_available += avail;
                total_version += version;
                let p = Position {
                    version,
                    ..Position::default()
                };
                let mut r = row(sku, Some(l), &p, channel, avail);
                r["bundle"] = json!(true);
                items.push(r);
            }
            if all_locations {
                let p = Position {
                    version: total_version,
                    ..Position::default()
                };
                let mut t = row(sku, None, &p, channel, total_available);
                t["total"] = json!(true);
                t["bundle"] = json!(true);
                items.push(t);
            }
            continue;
        }
        let Some(a) = read.get(sku) else { continue };
        as_of = as_of.max(a.now);
        let by_loc: BTreeMap<&LocationId, &Position> =
            a.positions.iter().map(|(l, p)| (l, p)).collect();
        let mut total = Position::default();
        let mut total_available = 0;
        for l in &check.locations {
            let p = by_loc.get(&l.id).copied().copied().unwrap_or_default();
            let avail = p.available(channel);
            total_available += avail;
            sum(&mut total, &p);
            items.push(row(sku, Some(l), &p, channel, avail));
        }
        if all_locations {
            let mut t = row(sku, None, &total, channel, total_available);
            t["total"] = json!(true);
            items.push(t);
        }
    }
    Ok(Reply::json(
        200,
        &json!({"as_of": rfc3339(as_of), "channel": crate::reservation::channel_name(channel), "items": items}),
    ))
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

pub fn check_lines(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::invalid("at least one line is required"));
    }
    if n > MAX_LINES {
        return Err(Problem::invalid(format!(
            "at most {MAX_LINES} lines per request"
        )));
    }
    Ok(())
}

pub fn check_qty(qty: i64, min: i64, what: &str) -> Result<(), Problem> {
    if qty < min || qty > MAX_LINE_QTY {
        return Err(Problem::invalid(format!(
            "{what} must be a whole number from {min} to {MAX_LINE_QTY}"
        )));
    }
    Ok(())
}

pub fn check_text(s: &Option<String>, max: usize, what: &str) -> Result<(), Problem> {
    if let Some(s) = s {
        if s.chars().count() > max || s.chars().any(|c| c.is_control()) {
            return Err(Problem::invalid(format!(
                "{what} must be at most {max} characters, without control characters"
            )));
        }
    }
    Ok(())
}

pub fn op_id(base: &str, tag: &str, i: usize) -> Result<OpId, Problem> {
    OpId::parse(&format!("{tag}.{base}.{i}")).map_err(|_| Problem::overloaded("bad op id"))
}

/// Maps an outcome that is not ok to its problem.
pub fn outcome_problem(o: &Outcome) -> Option<Problem> {
    if o.ok {
        return None;
    }
    Some(
        o.rejection
            .as_ref()
            .map(|r| r.to_problem())
            .unwrap_or_else(|| Problem::overloaded("refused without a reason")),
    )
}

/// `POST /v1/inventory/receipts`
pub async fn receipts(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
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
    let check = known(ctx, skus.clone(), &b.location).await?;
    let base = ctx.op_base();
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: b.reference.clone(),
        reason: Some("receipt".into()),
    };
    let mut per_sku: Vec<(Sku, Vec<WireCommand>)> = Vec::new();
    for s in &skus {
        let mut cmds = Vec::new();
        for (i, l) in b.lines.iter().enumerate() {
            if &l.sku == s {
                cmds.push(WireCommand::Receive {
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
            .map(|(s, cmds)| exec_sku(&ctx.env, s, cmds.clone(), &meta)),
    )
    .await;
    let mut items = Vec::new();
    for ((sku, _), r) in per_sku.iter().zip(results) {
        let outs = r?;
        for o in &outs {
            if let Some(p) = outcome_problem(o) {
                return Err(p);
            }
        }
        if let Some(o) = outs.last() {
            let p = o.position.unwrap_or_default();
            let loc = check.locations.first();
            items.push(row(
                sku,
                loc,
                &p,
                Channel::Online,
                p.available(Channel::Online),
            ));
        }
    }
    Ok(Reply::json(
        200,
        &json!({
            "location": b.location,
            "reference": b.reference,
            "lines": b.lines.iter().map(|l| json!({"sku": l.sku, "qty": l.qty})).collect::<Vec<_>>(),
            "items": items,
        }),
    ))
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
pub async fn adjustments(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
    let b: AdjustBody = parse_json(&ctx.body)?;
    if b.delta.unsigned_abs() > MAX_LINE_QTY as u64 {
        return Err(Problem::invalid(format!(
            "delta must be within -{MAX_LINE_QTY}..={MAX_LINE_QTY}"
        )));
    }
    check_text(&b.note, 500, "note")?;
    let check = known(ctx, vec![b.sku.clone()], &b.location).await?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: b.note.clone(),
        reason: Some(b.reason.as_str().into()),
    };
    let cmd = WireCommand::Adjust {
        op: op_id(&ctx.op_base(), "adj", 0)?,
        location: b.location.clone(),
        delta: b.delta,
        reason: b.reason,
        expected_version: b.expected_version,
    };
    single(ctx, &b.sku, cmd, &meta, check.locations.first()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SafetyBody {
    location: LocationId,
    sku: Sku,
    qty: i64,
}

/// `PUT /v1/inventory/safety-stock`
pub async fn safety_stock(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
    let b: SafetyBody = parse_json(&ctx.body)?;
    check_qty(b.qty, 0, "qty")?;
    let check = known(ctx, vec![b.sku.clone()], &b.location).await?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: None,
        reason: Some("safety_stock".into()),
    };
    let cmd = WireCommand::SetSafetyStock {
        op: op_id(&ctx.op_base(), "ss", 0)?,
        location: b.location.clone(),
        qty: b.qty,
    };
    single(ctx, &b.sku, cmd, &meta, check.locations.first()).await
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
pub async fn counts(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Pos])?;
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
    known(ctx, skus, &b.location).await?;
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
            WireCommand::Count {
                op: op_id(&base, "cnt", i)?,
                location: b.location.clone(),
                counted: l.counted,
                counted_at,
            },
        ));
    }
    let results = join_all(
        cmds.iter()
            .map(|(s, c)| exec_sku(&ctx.env, s, vec![c.clone()], &meta)),
    )
    .await;
    let mut lines = Vec::new();
    for ((sku, _), r) in cmds.iter().zip(results) {
        let mut outs = r?;
        let o = outs
            .pop()
            .ok_or_else(|| Problem::overloaded("empty answer"))?;
        if let Some(p) = outcome_problem(&o) {
            return Err(p);
        }
        let ev = o
            .events
            .iter()
            .find_map(|e| {
                serde_json::to_value(e)
                    .ok()
                    .filter(|v| v["type"] == "counted")
            })
            .unwrap_or(Value::Null);
        let at_risk: Vec<Value> = ev["at_risk"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str())
                    .filter_map(|h| omnistock_core::HoldId::parse(h).ok())
                    .map(|h| crate::pos::hold_owner(&h))
                    .collect()
            })
            .unwrap_or_default();
        lines.push(json!({
            "sku": sku,
            "counted": ev["counted"],
            "variance": ev["variance"],
            "on_hand": ev["on_hand"],
            "oversold": ev["oversold"],
            "at_risk": at_risk,
        }));
    }
    Ok(Reply::json(
        200,
        &json!({"location": b.location, "counted_at": rfc3339(counted_at), "lines": lines}),
    ))
}

/// The catalog's answer for stock writes at one location: every SKU known
/// and not a bundle, the location known.
async fn known(ctx: &Ctx, skus: Vec<Sku>, location: &LocationId) -> Result<CheckAnswer, Problem> {
    let check = catalog_api::check(
        &ctx.env,
        CheckRequest {
            skus,
            locations: Some(vec![location.clone()]),
            barcodes: vec![],
        },
    )
    .await?;
    require_known(&check)?;
    Ok(check)
}

async fn single(
    ctx: &Ctx,
    sku: &Sku,
    cmd: WireCommand,
    meta: &Meta,
    location: Option<&Location>,
) -> Result<Reply, Problem> {
    let mut outs = exec_sku(&ctx.env, sku, vec![cmd], meta).await?;
    let o = outs
        .pop()
        .ok_or_else(|| Problem::overloaded("empty answer"))?;
    if let Some(p) = outcome_problem(&o) {
        return Err(p);
    }
    let p = o.position.unwrap_or_default();
    Ok(Reply::json(
        200,
        &json!({"item": row(sku, location, &p, Channel::Online, p.available(Channel::Online))}),
    ))
}

/// `GET /v1/skus/{sku}/ledger?location=&after=&limit=`
pub async fn ledger(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Pos])?;
    let raw = ctx.path.get(2).cloned().unwrap_or_default();
    let sku = Sku::parse(&raw).map_err(|e| Problem::invalid(format!("sku: {e}")))?;
    let location = match query_list(&ctx.query, "location").as_slice() {
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
        match query_list(&ctx.query, name).as_slice() {
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
    let check = catalog_api::check(
        &ctx.env,
        CheckRequest {
            skus: vec![sku.clone()],
            locations: location.clone().map(|l| vec![l]),
            barcodes: vec![],
        },
    )
    .await?;
    require_known(&check)?;
    let entries: Vec<LedgerEntry> = rpc::call(
        &ctx.env,
        SKU_STOCK,
        sku.as_str(),
        "ledger",
        &LedgerRequest {
            location,
            after: Some(after),
            limit,
        },
    )
    .await?;
    let next = entries.last().map(|e| e.seq);
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let details: Value = serde_json::from_str(&e.json).unwrap_or(Value::Null);
            json!({
                "seq": e.seq,
                "event": e.kind,
                "at": rfc3339(e.at),
                "location": e.location,
                "qty": details.get("qty").or_else(|| details.get("delta")),
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
