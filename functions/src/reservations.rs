//! Reservation endpoints. The work is done by the `Reservation` coordinator
//! object of each reservation id (see reservation.rs).
use futures_util::future::join_all;
use omnistock_core::bundle::expand_lines;
use omnistock_core::{Channel, LocationId, Sku};
use serde::Deserialize;

use crate::api::Ctx;
use crate::auth::Role;
use crate::catalog::{CheckRequest, Location};
use crate::catalog_api;
use crate::http::{check_id, parse_json, Problem, Reply};
use crate::idempotency;
use crate::inventory::{check_lines, check_qty, read_sku, require_known_or_bundle};
use crate::reservation::{CreateAnswer, CreateRequest, ResLine, ResRequest, View};
use crate::rpc::{self, RESERVATION};

pub const DEFAULT_TTL_S: i64 = 900;
pub const MIN_TTL_S: i64 = 30;
pub const MAX_TTL_S: i64 = 3600;

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

fn ttl_ms(ttl_seconds: Option<i64>) -> Result<i64, Problem> {
    let t = ttl_seconds.unwrap_or(DEFAULT_TTL_S);
    if !(MIN_TTL_S..=MAX_TTL_S).contains(&t) {
        return Err(Problem::invalid(format!(
            "ttl_seconds must be {MIN_TTL_S} to {MAX_TTL_S}"
        )));
    }
    Ok(t * 1000)
}

fn reservation_id(ctx: &Ctx) -> Result<String, Problem> {
    catalog_api::path_id(ctx, "reservation")
}

async fn call<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    id: &str,
    req: &ResRequest,
) -> Result<T, Problem> {
    rpc::call(&ctx.env, RESERVATION, id, "reservation", req).await
}

fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// `POST /v1/reservations`
pub async fn create(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Storefront])?;
    let b: CreateBody = parse_json(&ctx.body)?;
    let id = match &b.id {
        Some(id) => {
            check_id(id, "id")?;
            id.clone()
        }
        // No id: one derived from the Idempotency-Key, so a retry is the same reservation.
        None => format!("r-{}", &ctx.op_base()[..24]),
    };
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
    if let Some(d) = destination {
        if !(-90.0..=90.0).contains(&d.lat) || !(-180.0..=180.0).contains(&d.lon) {
            return Err(Problem::invalid("destination lat/lon out of range"));
        }
    }
    if kind == FulfillmentType::Pickup && location.is_none() {
        return Err(Problem::invalid("a pickup needs fulfillment.location"));
    }
    let check = catalog_api::check(
        &ctx.env,
        CheckRequest {
            skus,
            locations: location.clone().map(|l| vec![l]),
            barcodes: vec![],
        },
    )
    .await?;
    require_known_or_bundle(&check)?;
    // One hold per SKU (lines of the same SKU add up); bundles reserve their components.
    let merged = expand_lines(&lines, &check.core_bundles()?)?;
    let channel = if ctx.principal.role == Role::Pos {
        Channel::Pos
    } else {
        Channel::Online
    };
    let chosen: LocationId = match location {
        Some(l) => {
            let loc = check.locations.iter().find(|x| x.id == l);
            if kind == FulfillmentType::Pickup && !loc.is_some_and(|x| x.pickup) {
                return Err(Problem::invalid(format!("{l} does not offer pickup")));
            }
            l
        }
        None => pick_location(ctx, &check.locations, &merged, destination, channel).await?,
    };
    let lines: Vec<ResLine> = merged
        .iter()
        .map(|(s, q)| ResLine {
            sku: s.clone(),
            qty: *q,
            location: chosen.clone(),
        })
        .collect();
    let canonical = serde_json::to_vec(&(&lines, ttl, crate::reservation::channel_name(channel)))?;
    let fp = idempotency::fingerprint(&[&canonical]);
    let a: CreateAnswer = call(
        ctx,
        &id,
        &ResRequest::Create(CreateRequest {
            id: id.clone(),
            lines,
            ttl_ms: ttl,
            channel,
            fp,
            actor: ctx.actor(),
        }),
    )
    .await?;
    Ok(Reply::json(
        if a.created { 201 } else { 200 },
        &a.reservation,
    ))
}

/// Without a location: the nearest shipping location (to `destination`, else
/// in id order) that has every line available now. The hold still decides.
async fn pick_location(
    ctx: &Ctx,
    all: &[Location],
    lines: &[(Sku, i64)],
    destination: Option<Point>,
    channel: Channel,
) -> Result<LocationId, Problem> {
    let mut candidates: Vec<&Location> = all.iter().filter(|l| l.ships_online).collect();
    if let Some(d) = destination {
        candidates.sort_by(|a, b| {
            distance_km((d.lat, d.lon), (a.lat, a.lon))
                .total_cmp(&distance_km((d.lat, d.lon), (b.lat, b.lon)))
        });
    }
    if candidates.is_empty() {
        return Err(Problem::invalid(
            "no location ships online; give fulfillment.location",
        ));
    }
    let ids: Vec<LocationId> = candidates.iter().map(|l| l.id.clone()).collect();
    let reads = join_all(lines.iter().map(|(s, _)| read_sku(&ctx.env, s, &ids))).await;
    let mut answers = Vec::new();
    for r in reads {
        answers.push(r?);
    }
    for l in &ids {
        let fits = lines.iter().zip(&answers).all(|((_, q), a)| {
            a.positions
                .iter()
                .find(|(x, _)| x == l)
                .map(|(_, p)| p.available(channel) >= *q)
                .unwrap_or(false)
        });
        if fits {
            return Ok(l.clone());
        }
    }
    let first = &ids[0];
    let short: Vec<serde_json::Value> = lines
        .iter()
        .zip(&answers)
        .map(|((s, q), a)| {
            let avail = a
                .positions
                .iter()
                .find(|(x, _)| x == first)
                .map(|(_, p)| p.available(channel))
                .unwrap_or(0);
            serde_json::json!({"sku": s, "location": first, "requested": q, "available": avail.max(0)})
        })
        .collect();
    Err(Problem::new(
        409,
        "insufficient_stock",
        "no single location can fill every line; nothing was reserved",
    )
    .with("lines", short))
}

/// `GET /v1/reservations/{id}`
pub async fn get(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Storefront])?;
    let id = reservation_id(ctx)?;
    let v: View = call(ctx, &id, &ResRequest::Get).await?;
    Ok(Reply::json(200, &v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// `POST /v1/reservations/{id}/extend`
pub async fn extend(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Storefront])?;
    let id = reservation_id(ctx)?;
    let b: ExtendBody = if ctx.body.is_empty() {
        ExtendBody { ttl_seconds: None }
    } else {
        parse_json(&ctx.body)?
    };
    let ttl = ttl_ms(b.ttl_seconds)?;
    let v: View = call(
        ctx,
        &id,
        &ResRequest::Extend {
            ttl_ms: ttl,
            actor: ctx.actor(),
        },
    )
    .await?;
    Ok(Reply::json(200, &v))
}

/// `DELETE /v1/reservations/{id}`
pub async fn release(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin, Role::Storefront])?;
    let id = reservation_id(ctx)?;
    if !ctx.body.is_empty() {
        // A DELETE has no body; tolerate an empty JSON object.
        let v: serde_json::Value = parse_json(&ctx.body)?;
        if v != serde_json::json!({}) {
            return Err(Problem::invalid("DELETE takes no body"));
        }
    }
    let v: View = call(ctx, &id, &ResRequest::Release { actor: ctx.actor() }).await?;
    Ok(Reply::json(200, &v))
}
