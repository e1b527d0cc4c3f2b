//! Reservation endpoints (carts and checkouts).
//!
//! A reservation of one SKU (after bundles are expanded and lines merged) is
//! homed in that SKU's object: one call holds and records it in one
//! transaction. An id the server issued names that object; for an id the
//! client chose, the id's `ReservationIndex` shard records, in parallel,
//! where it lives (so any isolate finds it by id). Its release, extension
//! and reads are one call to the SKU object when the id or this isolate
//! knows the home, else a lookup in the index first. A reservation across
//! SKUs is run by its `Reservation` coordinator object (core's two-phase
//! machine): hold everywhere or nowhere.
use futures_util::future::join;
use omnistock_core::bundle::expand_lines;
use omnistock_core::fulfillment::{FulfillmentError, GeoPoint, Line};
use omnistock_core::reservation::{place, FulfillmentKind, Placement, PlacementError, Split};
use omnistock_core::time::{MAX_TTL_MS, MIN_TTL_MS};
use omnistock_core::{Channel, LocationId, Sku};
use serde::Deserialize;
use serde_json::json;

use super::availability::channel_name;
use super::{facts, read_sku, sku_call, stock_changed, Facts};
use crate::cache;
use crate::extract::{check_lines, check_qty, fingerprint, Ctx};
use crate::http::{check_id, parse_json, HttpResult, Problem, Reply};
use crate::wire::reservation::{
    routed_sku, shortage_problem, CoordinatorAnswer, CreateRequest, ReservationAnswer,
    ReservationLine, ReservationRequest,
};
use crate::wire::reservation_index::{self, IndexRequest, Located};
use crate::wire::sku_stock::{HomedAnswer, Meta, ReservationOp, SkuRequest};
use crate::wire::{self, Namespace};

/// The TTL when a request gives none.
pub const DEFAULT_TTL_MS: i64 = omnistock_core::time::DEFAULT_TTL_MS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    sku: Sku,
    qty: i64,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum FulfillmentType {
    Ship,
    Pickup,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Point {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FulfillmentBody {
    #[serde(rename = "type")]
    kind: FulfillmentType,
    #[serde(default)]
    location: Option<LocationId>,
    #[serde(default)]
    destination: Option<Point>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    lines: Vec<LineBody>,
    #[serde(default)]
    fulfillment: Option<FulfillmentBody>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// `ttl_seconds` as milliseconds, within core's TTL bounds.
fn ttl_ms(ttl_seconds: Option<i64>) -> Result<i64, Problem> {
    let t = match ttl_seconds {
        None => return Ok(DEFAULT_TTL_MS),
        Some(t) => t.saturating_mul(1000),
    };
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&t) {
        return Err(Problem::invalid(format!(
            "ttl_seconds must be {} to {}",
            MIN_TTL_MS / 1000,
            MAX_TTL_MS / 1000
        )));
    }
    Ok(t)
}

fn reply(a: ReservationAnswer) -> Reply {
    let r = Reply::json(if a.created { 201 } else { 200 }, &a.view);
    if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    }
}

/// `POST /v1/reservations`
pub async fn create(ctx: &Ctx) -> HttpResult {
    let b: CreateBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    if let Some(id) = &b.id {
        check_id(id, "id")?;
        if routed_sku(id).is_some() {
            return Err(Problem::invalid(
                "ids of the form r<16 hex digits>.<sku> are issued by the server: omit id to get one",
            ));
        }
    }
    check_lines(b.lines.len())?;
    let ttl = ttl_ms(b.ttl_seconds)?;
    let mut lines: Vec<(Sku, i64)> = Vec::new();
    let mut skus: Vec<Sku> = Vec::new();
    for (i, l) in b.lines.iter().enumerate() {
        check_qty(l.qty, 1, &format!("lines[{i}].qty"))?;
        lines.push((l.sku.clone(), l.qty));
        if !skus.contains(&l.sku) {
            skus.push(l.sku.clone());
        }
    }
    let (kind, location, destination) = match &b.fulfillment {
        Some(f) => (f.kind, f.location.clone(), f.destination),
        None => (FulfillmentType::Ship, None, None),
    };
    let destination = match destination {
        Some(d) => Some(
            GeoPoint::from_degrees(d.lat, d.lon)
                .ok_or_else(|| Problem::invalid("destination lat/lon out of range"))?,
        ),
        None => None,
    };
    if kind == FulfillmentType::Pickup && location.is_none() {
        return Err(Problem::invalid("a pickup needs fulfillment.location"));
    }
    let locs: Vec<LocationId> = location.iter().cloned().collect();
    let facts = facts(&ctx.env, ctx.now, &skus, &[], &locs).await?;
    facts.require_skus(&skus, true)?;
    facts.require_locations(&locs)?;
    // One hold per SKU (lines of the same SKU add up); bundles reserve their components.
    let merged = expand_lines(&lines, &facts.bundles()?)?;
    let channel = ctx.principal.channel();
    let placement = Placement {
        kind: match kind {
            FulfillmentType::Ship => FulfillmentKind::Ship,
            FulfillmentType::Pickup => FulfillmentKind::Pickup,
        },
        location,
        destination,
    };
    let lines = choose_locations(&ctx.env, &facts, &placement, &merged, channel).await?;
    // No id: the server issues one, derived from the Idempotency-Key (so a
    // retry is the same reservation). A one-SKU reservation's names its SKU
    // object, so it is found by id with no lookup and needs no pointer.
    let issued = match (&b.id, lines.as_slice()) {
        (Some(_), _) => None,
        (None, [line]) => routed_id(&idem.key, &line.sku),
        (None, _) => None,
    };
    let id = match (&b.id, &issued) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => format!("r-{}", idem.key.get(..24).unwrap_or(&idem.key)),
    };
    let canonical = serde_json::to_vec(&(&lines, ttl, channel_name(channel)))?;
    // Identical content gives an identical fingerprint (the same reservation again).
    let fp = fingerprint(&[&canonical]);
    let meta = Meta {
        actor: ctx.actor(),
        channel: Some(channel_name(channel).into()),
        reference: Some(format!("reservation:{id}")),
        reason: None,
    };
    if let [line] = lines.as_slice() {
        // One SKU: homed in its object; its pointer written in parallel
        // (none for an id the server issued: it names the SKU itself).
        let reserve = SkuRequest::Reserve(CreateRequest {
            id: id.clone(),
            lines: vec![line.clone()],
            ttl_ms: ttl,
            channel,
            fp: fp.clone(),
            meta,
            idem,
        });
        let content_fp = fp.clone();
        let register = IndexRequest::Register {
            id: id.clone(),
            sku: line.sku.clone(),
            fp,
            ttl_ms: ttl,
        };
        let hold = sku_call::<HomedAnswer>(&ctx.env, &line.sku, &reserve);
        let pointer = async {
            if issued.is_some() {
                return Ok(());
            }
            reservation_index::call(&ctx.env, &id, &register)
                .await
                .map(|_| ())
        };
        let (held, pointed) = join(hold, pointer).await;
        stock_changed([&line.sku]);
        let answer = match (held, pointed) {
            (Ok(HomedAnswer::Here(a)), Ok(_)) => a,
            (Ok(HomedAnswer::Here(_)), Err(p)) if p.status == 409 => {
                // The id is another reservation's: give this hold back, and
                // record the refusal so a retry of this request replays it.
                let abandon = SkuRequest::Reservation(ReservationOp::Abandon {
                    id: id.clone(),
                    fp: content_fp,
                    problem: p.clone(),
                });
                if let Err(e) = sku_call::<HomedAnswer>(&ctx.env, &line.sku, &abandon).await {
                    // The hold expires on its own at its TTL.
                    worker::console_warn!(
                        "reservation {id}: abandoning a hold failed: {}",
                        e.detail
                    );
                }
                stock_changed([&line.sku]);
                return Err(p);
            }
            (Ok(HomedAnswer::Here(a)), Err(p)) => {
                // Held, but not findable from other isolates: a retry with
                // the same key replays the hold and writes the pointer.
                if a.created && !a.replayed {
                    worker::console_error!("reservation {id}: pointer not written");
                }
                return Err(p);
            }
            (Ok(HomedAnswer::NotHere | HomedAnswer::Converted { .. }), _) => {
                return Err(Problem::overloaded(
                    "the reservation was not recorded; retry",
                ))
            }
            (Err(p), _) => return Err(p),
        };
        cache::set_home(&id, line.sku.clone());
        return Ok(reply(answer));
    }
    let a: Result<CoordinatorAnswer, Problem> = wire::call(
        &ctx.env,
        Namespace::Reservation,
        &id,
        &ReservationRequest::Create(CreateRequest {
            id: id.clone(),
            lines: lines.clone(),
            ttl_ms: ttl,
            channel,
            fp,
            meta,
            idem,
        }),
    )
    .await;
    stock_changed(lines.iter().map(|l| &l.sku));
    match a? {
        CoordinatorAnswer::Here(a) => Ok(reply(a)),
        _ => Err(Problem::overloaded(
            "unexpected answer from a reservation; retry",
        )),
    }
}

/// The location of every line, by core's placement rules. A named location
/// needs no stock read (its holds decide); otherwise each SKU is read at
/// every shipping location and the nearest that fills every line is chosen,
/// else, where the deployment allows it, each line from the nearest location
/// that can fill it.
pub(crate) async fn choose_locations(
    env: &worker::Env,
    facts: &Facts,
    placement: &Placement,
    merged: &[(Sku, i64)],
    channel: Channel,
) -> Result<Vec<ReservationLine>, Problem> {
    let cfg = crate::config::get(env)?;
    let placement = &cfg.resolve(placement)?;
    let sites: Vec<_> = facts.locations.iter().map(|l| l.site()).collect();
    let lines: Vec<Line> = merged
        .iter()
        .map(|(sku, qty)| Line {
            sku: sku.clone(),
            qty: *qty,
        })
        .collect();
    if placement.location.is_some() {
        return place(placement, Split::Never, &lines, &sites, |_, _| i64::MAX)
            .map_err(placement_problem);
    }
    let shipping: Vec<LocationId> = sites
        .iter()
        .filter(|s| s.ships_online)
        .map(|s| s.id.clone())
        .collect();
    if shipping.is_empty() {
        return Err(placement_problem(PlacementError::NoShippingLocation));
    }
    let reads =
        futures_util::future::join_all(merged.iter().map(|(s, _)| read_sku(env, s, &shipping)))
            .await;
    let mut avail: Vec<(Sku, Vec<(LocationId, i64)>)> = Vec::new();
    for ((s, _), r) in merged.iter().zip(reads) {
        let a = r?;
        avail.push((
            s.clone(),
            a.positions
                .iter()
                .map(|(l, p)| (l.clone(), p.available(channel)))
                .collect(),
        ));
    }
    place(placement, cfg.split, &lines, &sites, |sku, l| {
        avail
            .iter()
            .find(|(s, _)| s == sku)
            .and_then(|(_, v)| v.iter().find(|(x, _)| x == l))
            .map_or(0, |(_, q)| *q)
    })
    .map_err(placement_problem)
}

/// A placement refusal as the API's problem.
pub(crate) fn placement_problem(e: PlacementError) -> Problem {
    match e {
        PlacementError::Fulfillment(FulfillmentError::UnknownLocation(l)) => {
            Problem::not_found(format!("unknown location: {l}"))
        }
        PlacementError::Fulfillment(FulfillmentError::LocationNotEligible(l)) => {
            Problem::invalid(format!("{l} does not offer pickup"))
        }
        PlacementError::Fulfillment(FulfillmentError::InsufficientStock(short)) => {
            shortage_problem(
                &short,
                "no single location can fill every line; nothing was reserved",
            )
        }
        other => Problem::invalid(other.to_string()),
    }
}

/// The id the server issues for a one-SKU reservation: `r`, 16 hex digits of
/// the request's key hash, `.`, the SKU (when it fits in an id's 64 characters).
fn routed_id(key_hash: &str, sku: &Sku) -> Option<String> {
    let id = format!("r{}.{}", key_hash.get(..16)?, sku);
    check_id(&id, "id").ok().map(|_| id)
}

/// Runs `op` on reservation `id` wherever it lives: its SKU object (when
/// the id names it, or this isolate knows it: one call), else its own
/// object, which answers or names the SKU object.
async fn homed_or_coordinated(
    ctx: &Ctx,
    id: &str,
    op: ReservationOp,
    coordinated: ReservationRequest,
) -> Result<ReservationAnswer, Problem> {
    Ok(reservation_op(&ctx.env, id, op, coordinated).await?.0)
}

/// [`homed_or_coordinated`] with the hold id of a conversion.
pub(crate) async fn reservation_op(
    env: &worker::Env,
    id: &str,
    op: ReservationOp,
    coordinated: ReservationRequest,
) -> Result<(ReservationAnswer, Option<omnistock_core::HoldId>), Problem> {
    let routed = routed_sku(id);
    let cached = cache::home(id);
    if let Some(sku) = routed.clone().or_else(|| cached.clone()) {
        match sku_call::<HomedAnswer>(env, &sku, &SkuRequest::Reservation(op.clone())).await? {
            HomedAnswer::Here(a) => return Ok((a, None)),
            HomedAnswer::Converted { answer, hold } => return Ok((answer, Some(hold))),
            HomedAnswer::NotHere => cache::forget_home(id),
        }
    }
    // An id the client chose: its index shard knows a one-SKU home.
    if routed.is_none() {
        let lookup = IndexRequest::Lookup { id: id.to_string() };
        if let Located::Sku { sku } = reservation_index::call(env, id, &lookup).await? {
            if cached.as_ref() == Some(&sku) {
                // Asked already: not there.
                return Err(Problem::not_found("no such reservation"));
            }
            return homed(env, id, sku, op).await;
        }
    }
    let a: CoordinatorAnswer = wire::call(env, Namespace::Reservation, id, &coordinated).await?;
    match a {
        CoordinatorAnswer::Here(a) => {
            stock_changed(a.view.lines.iter().map(|l| &l.sku));
            Ok((a, None))
        }
        CoordinatorAnswer::Converted { answer, hold } => Ok((answer, Some(hold))),
        // A pointer the version before wrote in the id's own object.
        CoordinatorAnswer::Sku { sku } => homed(env, id, sku, op).await,
        CoordinatorAnswer::Registered => Err(Problem::not_found("no such reservation")),
    }
}

/// Runs `op` on the one-SKU reservation `id` in the SKU object of `sku`,
/// and remembers that home in this isolate.
async fn homed(
    env: &worker::Env,
    id: &str,
    sku: Sku,
    op: ReservationOp,
) -> Result<(ReservationAnswer, Option<omnistock_core::HoldId>), Problem> {
    let r = sku_call::<HomedAnswer>(env, &sku, &SkuRequest::Reservation(op)).await;
    stock_changed([&sku]);
    match r? {
        HomedAnswer::Here(a) => {
            cache::set_home(id, sku);
            Ok((a, None))
        }
        HomedAnswer::Converted { answer, hold } => {
            cache::set_home(id, sku);
            Ok((answer, Some(hold)))
        }
        HomedAnswer::NotHere => Err(Problem::not_found("no such reservation")),
    }
}

/// `GET /v1/reservations/{id}`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("reservation")?;
    let a = homed_or_coordinated(
        ctx,
        &id,
        ReservationOp::Get { id: id.clone() },
        ReservationRequest::Get,
    )
    .await?;
    Ok(Reply::json(200, &a.view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

fn change_reply(a: ReservationAnswer) -> Reply {
    let r = Reply::json(200, &a.view);
    if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    }
}

/// `POST /v1/reservations/{id}/extend`
pub async fn extend(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("reservation")?;
    let b: ExtendBody = if ctx.body.is_empty() {
        ExtendBody { ttl_seconds: None }
    } else {
        parse_json(&ctx.body)?
    };
    let ttl = ttl_ms(b.ttl_seconds)?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: Some(format!("reservation:{id}")),
        reason: Some("extended".into()),
    };
    let idem = ctx.idem()?;
    let a = homed_or_coordinated(
        ctx,
        &id,
        ReservationOp::Extend {
            id: id.clone(),
            ttl_ms: ttl,
            meta: meta.clone(),
            idem: idem.clone(),
        },
        ReservationRequest::Extend {
            ttl_ms: ttl,
            meta,
            idem,
        },
    )
    .await?;
    Ok(change_reply(a))
}

/// `DELETE /v1/reservations/{id}`
pub async fn release(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("reservation")?;
    if !ctx.body.is_empty() {
        // A DELETE has no body; tolerate an empty JSON object.
        let v: serde_json::Value = parse_json(&ctx.body)?;
        if v != json!({}) {
            return Err(Problem::invalid("DELETE takes no body"));
        }
    }
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: Some(format!("reservation:{id}")),
        reason: Some("released".into()),
    };
    let idem = ctx.idem()?;
    let a = homed_or_coordinated(
        ctx,
        &id,
        ReservationOp::Release {
            id: id.clone(),
            meta: meta.clone(),
            idem: idem.clone(),
        },
        ReservationRequest::Release { meta, idem },
    )
    .await?;
    Ok(change_reply(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_issued_ids_name_their_sku() {
        let sku = Sku::parse("TEE-BLK-M").unwrap();
        let id = routed_id("0123456789abcdef0123456789abcdef", &sku).unwrap();
        assert_eq!(id, "r0123456789abcdef.TEE-BLK-M");
        assert_eq!(routed_sku(&id), Some(sku));
        // Too long for an id: no routed id (the pointer is written instead).
        let long = Sku::parse(&"S".repeat(60)).unwrap();
        assert_eq!(routed_id("0123456789abcdef", &long), None);
        for other in [
            "cart-42",
            "r-0123456789abcdef01234567",
            "r0123456789ABCDEF.X",
            "r0123.X",
        ] {
            assert_eq!(routed_sku(other), None, "{other}");
        }
    }
}
