//! `POST /v1/inventory/unavailable`: moves units of one SKU at one location
//! between sellable and the unavailable buckets (`damaged`,
//! `quality_control`), between the two buckets, or out of a bucket and out
//! of on_hand (a write-off). One SKU object call; its commands run all or
//! none in one transaction (`SkuRequest::ExecAll`).
use omnistock_core::{AdjustReason, Channel, Command, LocationId, Sku, UnavailableBucket};
use serde::Deserialize;
use serde_json::json;

use super::availability::row;
use super::facts;
use super::inventory::replayed_if;
use crate::auth::Role;
use crate::extract::{check_qty, check_text, op_id, Ctx};
use crate::http::{parse_json, HttpResult, Problem, Reply};
use crate::wire::sku_stock::{exec_all, Meta};

/// Why units move into, between or out of the unavailable buckets (kept in
/// the ledger as the entry's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableReason {
    /// Into `damaged` (from sellable or from quality control).
    Damaged,
    /// Into `quality_control`.
    QualityControl,
    /// Out of a bucket, sellable again after a repair.
    Repaired,
    /// Out of `quality_control`, sellable again.
    PassedInspection,
    /// Out of a bucket and out of on_hand (recorded as a `shrinkage`
    /// adjustment in the same transaction).
    WrittenOff,
    /// A correction of a bucket, either way.
    Correction,
    Other,
}

impl UnavailableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnavailableReason::Damaged => "damaged",
            UnavailableReason::QualityControl => "quality_control",
            UnavailableReason::Repaired => "repaired",
            UnavailableReason::PassedInspection => "passed_inspection",
            UnavailableReason::WrittenOff => "written_off",
            UnavailableReason::Correction => "correction",
            UnavailableReason::Other => "other",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    location: LocationId,
    sku: Sku,
    qty: i64,
    #[serde(default)]
    from: Option<UnavailableBucket>,
    #[serde(default)]
    to: Option<UnavailableBucket>,
    reason: UnavailableReason,
    #[serde(default)]
    note: Option<String>,
}

/// The commands of a move, or why it is not one (400).
fn plan(
    op: impl Fn(usize) -> Result<omnistock_core::OpId, Problem>,
    location: &LocationId,
    qty: i64,
    from: Option<UnavailableBucket>,
    to: Option<UnavailableBucket>,
    reason: UnavailableReason,
) -> Result<Vec<Command>, Problem> {
    use UnavailableReason as R;
    let mark = |i: usize, bucket: UnavailableBucket, delta: i64| -> Result<Command, Problem> {
        Ok(Command::MarkUnavailable {
            op: op(i)?,
            location: location.clone(),
            bucket,
            delta,
        })
    };
    let bad = |why: &str| Err(Problem::invalid(why.to_string()));
    match (from, to, reason) {
        (None, None, _) => bad("from and to cannot both be null (sellable to sellable)"),
        (Some(a), Some(b), _) if a == b => bad("from and to must differ"),
        (Some(a), None, R::WrittenOff) => Ok(vec![
            mark(0, a, -qty)?,
            Command::Adjust {
                op: op(1)?,
                location: location.clone(),
                delta: -qty,
                reason: AdjustReason::Shrinkage,
                expected_version: None,
            },
        ]),
        (_, _, R::WrittenOff) => bad("written_off takes units from a bucket: from set, to null"),
        (Some(a), None, R::Repaired | R::PassedInspection | R::Correction | R::Other) => {
            Ok(vec![mark(0, a, -qty)?])
        }
        (_, Some(_), R::Repaired | R::PassedInspection) => {
            bad("repaired and passed_inspection make units sellable: to must be null")
        }
        (None, Some(b), _) => Ok(vec![mark(0, b, qty)?]),
        (Some(a), Some(b), _) => Ok(vec![mark(0, a, -qty)?, mark(1, b, qty)?]),
        (Some(_), None, R::Damaged | R::QualityControl) => {
            bad("damaged and quality_control put units into a bucket: to must be set")
        }
    }
}

/// `POST /v1/inventory/unavailable`
pub async fn post(ctx: &Ctx) -> HttpResult {
    let b: Body = parse_json(&ctx.body)?;
    ctx.principal
        .require_at(&[Role::Admin, Role::Pos], &b.location)?;
    check_qty(b.qty, 1, "qty")?;
    check_text(&b.note, 500, "note")?;
    let base = ctx.op_base();
    let cmds = plan(
        |i| op_id(&base, "unav", i),
        &b.location,
        b.qty,
        b.from,
        b.to,
        b.reason,
    )?;
    let f = facts(
        &ctx.env,
        ctx.now,
        std::slice::from_ref(&b.sku),
        &[],
        std::slice::from_ref(&b.location),
    )
    .await?;
    f.require_skus(std::slice::from_ref(&b.sku), false)?;
    f.require_locations(std::slice::from_ref(&b.location))?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: b.note.clone(),
        reason: Some(b.reason.as_str().into()),
    };
    let outs = exec_all(&ctx.env, &b.sku, cmds, &meta, Some(ctx.idem()?)).await;
    crate::cache::stock_changed(&b.sku);
    let outs = outs?;
    let Some(last) = outs.last() else {
        return Err(Problem::overloaded("empty answer"));
    };
    let p = last.position.unwrap_or_default();
    let bucket = |x: Option<UnavailableBucket>| x.map(UnavailableBucket::as_str);
    let reply = Reply::json(
        200,
        &json!({
            "location": b.location,
            "sku": b.sku,
            "qty": b.qty,
            "from": bucket(b.from),
            "to": bucket(b.to),
            "reason": b.reason.as_str(),
            "note": b.note,
            "item": row(&b.sku, f.location(&b.location), &p, Channel::Pos, p.available(Channel::Pos)),
        }),
    );
    Ok(replayed_if(reply, &outs.iter().collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(
        from: Option<UnavailableBucket>,
        to: Option<UnavailableBucket>,
        reason: UnavailableReason,
    ) -> Result<Vec<Command>, Problem> {
        let loc = LocationId::parse("store-1").map_err(|_| Problem::invalid("loc"))?;
        plan(
            |i| {
                omnistock_core::OpId::parse(&format!("unav.k.{i}"))
                    .map_err(|_| Problem::invalid("op"))
            },
            &loc,
            3,
            from,
            to,
            reason,
        )
    }

    #[test]
    fn plans_follow_the_direction_and_reason() {
        use UnavailableBucket::{Damaged as D, QualityControl as Q};
        use UnavailableReason as R;
        assert_eq!(plan_of(None, Some(D), R::Damaged).map(|c| c.len()), Ok(1));
        assert_eq!(plan_of(Some(D), None, R::Repaired).map(|c| c.len()), Ok(1));
        assert_eq!(
            plan_of(Some(Q), Some(D), R::Damaged).map(|c| c.len()),
            Ok(2)
        );
        let w = plan_of(Some(D), None, R::WrittenOff).unwrap_or_default();
        assert!(matches!(
            w.as_slice(),
            [
                Command::MarkUnavailable { delta: -3, .. },
                Command::Adjust {
                    delta: -3,
                    reason: AdjustReason::Shrinkage,
                    ..
                }
            ]
        ));
        for (f, t, r) in [
            (None, None, R::Other),
            (Some(D), Some(D), R::Correction),
            (None, Some(D), R::WrittenOff),
            (Some(D), Some(Q), R::Repaired),
            (Some(D), None, R::QualityControl),
        ] {
            assert_eq!(plan_of(f, t, r).map_err(|p| p.status), Err(400));
        }
    }
}
