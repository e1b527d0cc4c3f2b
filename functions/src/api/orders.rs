//! Order endpoints: create, transition, read one, and the queue.
//!
//! The Worker prices an order (the catalog's price unless a till or an
//! admin sets its own; tax per line from the deployment's table), expands
//! bundles into the components it holds, and places every line by the
//! deployment's fulfillment rule (`reservations::choose_locations`, the
//! same placement reservations use). The order's own object (`Order`, core's
//! coordinator) holds the stock, all lines or none, and moves each part
//! through its states with its stock effect. The queue is D1 (`queue.rs`),
//! written by the Order objects.
use omnistock_core::bundle::expand_lines;
use omnistock_core::fulfillment::GeoPoint;
use omnistock_core::money::{Currency, Money};
use omnistock_core::order::OrderStatus;
use omnistock_core::reservation::{channel_for, FulfillmentKind, Placement};
use omnistock_core::tax::{LineTax, Totals, ROUNDING_RULE};
use omnistock_core::{Channel, LocationId, Qty, Sku};
use serde::Deserialize;
use serde_json::json;
use worker::Env;

use super::reservations::{choose_locations, reservation_op};
use super::{facts, stock_changed};
use crate::auth::Role;
use crate::extract::{check_lines, check_qty, fingerprint, Ctx};
use crate::http::{check_id, parse_json, HttpResult, Problem, Reply};
use crate::queue::{self, OrderFilter, DEFAULT_PAGE};
use crate::wire::catalog::{CatalogRequest, PriceFact, CATALOG_NAME};
use crate::wire::order::{
    self as wire_order, channel_str, CreateOrder, OrderAnswer, OrderLineView, OrderRequest,
    OrderView, PricedOrder, Scope, TotalsOut,
};
use crate::wire::reservation::{ReservationLine, ReservationRequest};
use crate::wire::sku_stock::Meta;
use crate::wire::sku_stock::ReservationOp;
use crate::wire::{self, Idem, Namespace};
use omnistock_core::HoldId;

/// One line of an order to place.
#[derive(Clone, Debug, PartialEq)]
pub struct DraftLine {
    pub sku: Sku,
    pub qty: Qty,
    /// The price a till (or an admin) charges; `None`: the catalog's.
    pub unit_price: Option<Money>,
}

/// An order to place (the HTTP create, or an exchange's replacement lines).
#[derive(Clone, Debug)]
pub struct OrderDraft {
    pub id: String,
    pub channel: Channel,
    pub customer_id: Option<String>,
    /// Its holds become the order's (no second hold); its lines must be
    /// the order's lines (bundles expanded), its locations are the order's.
    pub reservation_id: Option<String>,
    pub lines: Vec<DraftLine>,
    pub fulfillment: Placement,
    /// May set `unit_price` (a POS or admin key).
    pub may_price: bool,
    /// Who places it (history and ledger).
    pub actor: String,
    /// The Idempotency-Key the order keeps with its first answer (an
    /// exchange passes its own; `None`: derived from the id).
    pub idem: Option<Idem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyBody {
    amount: String,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBody {
    sku: Sku,
    qty: i64,
    #[serde(default)]
    unit_price: Option<MoneyBody>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Point {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum FulfillmentType {
    Ship,
    Pickup,
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
    id: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    reservation_id: Option<String>,
    lines: Vec<LineBody>,
    #[serde(default)]
    fulfillment: Option<FulfillmentBody>,
}

fn answer_reply(a: OrderAnswer) -> Reply {
    let r = Reply::json(if a.created { 201 } else { 200 }, &a.view);
    if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    }
}

/// `POST /v1/orders`
pub async fn create(ctx: &Ctx) -> HttpResult {
    let b: CreateBody = parse_json(&ctx.body)?;
    let idem = ctx.idem()?;
    let p = &ctx.principal;
    let channel = match (b.channel.as_deref(), p.role) {
        (None, Role::Pos) | (Some("pos"), Role::Pos | Role::Admin) => Channel::Pos,
        (None, _) | (Some("online"), Role::Storefront | Role::Admin) => Channel::Online,
        (Some("online" | "pos"), _) => {
            return Err(Problem::forbidden(format!(
                "a {} key may not create {} orders",
                p.role.as_str(),
                b.channel.as_deref().unwrap_or("")
            )))
        }
        (Some(_), _) => return Err(Problem::invalid("channel is online or pos")),
    };
    let mut lines = Vec::with_capacity(b.lines.len());
    check_lines(b.lines.len())?;
    for (i, l) in b.lines.iter().enumerate() {
        check_qty(l.qty, 1, &format!("lines[{i}].qty"))?;
        let unit_price = match &l.unit_price {
            Some(m) => Some(
                Money::parse(&m.amount, &m.currency)
                    .ok()
                    .filter(|m| !m.is_negative())
                    .ok_or_else(|| {
                        Problem::invalid(format!(
                            "lines[{i}].unit_price is not a non-negative amount in its currency"
                        ))
                    })?,
            ),
            None => None,
        };
        lines.push(DraftLine {
            sku: l.sku.clone(),
            qty: l.qty,
            unit_price,
        });
    }
    let (kind, location, destination) = match &b.fulfillment {
        Some(f) => (f.kind, f.location.clone(), f.destination),
        None => (FulfillmentType::Ship, None, None),
    };
    // A till sells from its own store.
    let location = match (p.role, location) {
        (Role::Pos, None) => p.location.clone(),
        (Role::Pos, Some(l)) if Some(&l) != p.location.as_ref() => {
            return Err(Problem::forbidden(format!(
                "this POS key is bound to another location than {l}"
            )))
        }
        (_, l) => l,
    };
    let destination = match destination {
        Some(d) => Some(
            GeoPoint::from_degrees(d.lat, d.lon)
                .ok_or_else(|| Problem::invalid("destination lat/lon out of range"))?,
        ),
        None => None,
    };
    let draft = OrderDraft {
        id: b.id,
        channel,
        customer_id: b.customer_id,
        reservation_id: b.reservation_id,
        lines,
        fulfillment: Placement {
            kind: match kind {
                FulfillmentType::Ship => FulfillmentKind::Ship,
                FulfillmentType::Pickup => FulfillmentKind::Pickup,
            },
            location,
            destination,
        },
        may_price: matches!(p.role, Role::Pos | Role::Admin),
        actor: ctx.actor(),
        idem: Some(idem),
    };
    let a = place(&ctx.env, ctx.now, draft).await?;
    Ok(answer_reply(a))
}

/// Places an order (an exchange's replacement lines, for one): priced,
/// placed and held all or none by its Order object. 201 when this call
/// created it, 200 when it existed with the same content.
pub async fn place_order(env: &Env, draft: OrderDraft) -> Result<(u16, OrderView), Problem> {
    let now = crate::objects::storage::now_ms();
    let a = place(env, now, draft).await?;
    Ok((if a.created { 201 } else { 200 }, a.view))
}

/// Catalog prices are kept by the isolate this long (like the other catalog facts).
const PRICE_TTL_MS: i64 = crate::cache::CATALOG_TTL_MS;
const MAX_CACHED_PRICES: usize = 20_000;

thread_local! {
    static PRICES: std::cell::RefCell<crate::cache::Bounded<Sku, (i64, PriceFact)>> =
        std::cell::RefCell::new(crate::cache::Bounded::new(MAX_CACHED_PRICES));
}

/// The catalog price of each SKU (from the isolate's cache when fresh; one
/// Catalog call for the rest). `None`: not in the catalog.
pub(crate) async fn prices(
    env: &Env,
    now: i64,
    skus: &[Sku],
) -> Result<Vec<(Sku, Option<PriceFact>)>, Problem> {
    let mut out: Vec<(Sku, Option<PriceFact>)> = Vec::with_capacity(skus.len());
    let mut ask: Vec<Sku> = Vec::new();
    PRICES.with(|c| {
        let c = c.borrow();
        for s in skus {
            match c.get(s) {
                Some((at, p)) if now - at < PRICE_TTL_MS => out.push((s.clone(), Some(p.clone()))),
                _ => ask.push(s.clone()),
            }
        }
    });
    if ask.is_empty() {
        return Ok(out);
    }
    let got: Vec<(Sku, Option<PriceFact>)> = wire::call(
        env,
        Namespace::Catalog,
        CATALOG_NAME,
        &CatalogRequest::Prices { skus: ask },
    )
    .await?;
    PRICES.with(|c| {
        let mut c = c.borrow_mut();
        for (s, p) in &got {
            if let Some(p) = p {
                c.insert(s.clone(), (now, p.clone()));
            }
        }
    });
    out.extend(got);
    Ok(out)
}

async fn place(env: &Env, now: i64, d: OrderDraft) -> Result<OrderAnswer, Problem> {
    check_id(&d.id, "id")?;
    if let Some(c) = &d.customer_id {
        check_id(c, "customer_id")?;
    }
    check_lines(d.lines.len())?;
    if d.fulfillment.kind == FulfillmentKind::Pickup && d.fulfillment.location.is_none() {
        return Err(Problem::invalid("a pickup needs fulfillment.location"));
    }
    let mut skus: Vec<Sku> = Vec::new();
    for l in &d.lines {
        check_qty(l.qty, 1, "qty")?;
        if !skus.contains(&l.sku) {
            skus.push(l.sku.clone());
        }
    }
    let locs: Vec<LocationId> = d.fulfillment.location.iter().cloned().collect();
    let facts = facts(env, now, &skus, &[], &locs).await?;
    facts.require_skus(&skus, true)?;
    facts.require_locations(&locs)?;
    let cfg = crate::config::get(env)?;
    let priced = prices(env, now, &skus).await?;
    let price_of = |s: &Sku| {
        priced
            .iter()
            .find(|(x, _)| x == s)
            .and_then(|(_, p)| p.clone())
    };
    // Prices: the catalog's, in one currency; a till may set its own.
    let mut currency: Option<Currency> = None;
    let mut unit: Vec<(Money, Option<String>)> = Vec::with_capacity(d.lines.len());
    for (i, l) in d.lines.iter().enumerate() {
        let fact = price_of(&l.sku)
            .ok_or_else(|| Problem::not_found(format!("unknown SKU: {}", l.sku)))?;
        // The price in force for the order's channel now (scheduled
        // changes count from their time, whether or not the catalog's alarm
        // has folded them in yet).
        let catalog = fact
            .prices
            .in_force(d.channel, now, l.sku.as_str())
            .map_err(|e| Problem::invalid(format!("{}: catalog price: {}", l.sku, e.detail)))?
            .price;
        let price = match &l.unit_price {
            Some(p) if d.may_price => *p,
            Some(p) if *p == catalog => *p,
            Some(_) => {
                return Err(Problem::invalid(format!(
                    "lines[{i}].unit_price: only a till or an admin may set a price other than the catalog's"
                )))
            }
            None => catalog,
        };
        if price.currency != catalog.currency {
            return Err(Problem::invalid(format!(
                "lines[{i}].unit_price must be in {}",
                catalog.currency.as_str()
            )));
        }
        match currency {
            None => currency = Some(price.currency),
            Some(c) if c != price.currency => {
                return Err(Problem::invalid(
                    "every line of an order must be in one currency",
                ))
            }
            Some(_) => {}
        }
        unit.push((price, fact.tax_code));
    }
    let currency = currency.ok_or_else(|| Problem::invalid("at least one line is required"))?;
    // Bundles hold their components; one held line per SKU.
    let asked: Vec<(Sku, Qty)> = d.lines.iter().map(|l| (l.sku.clone(), l.qty)).collect();
    let bundles = facts.bundles()?;
    let merged = expand_lines(&asked, &bundles)?;
    let hold_channel = channel_for(d.channel == Channel::Pos);
    let (placed, holds) = match &d.reservation_id {
        Some(r) => {
            let (lines, holds) = convert_reservation(env, r, &d.id, &merged).await?;
            (lines, Some(holds))
        }
        None => (
            choose_locations(env, &facts, &d.fulfillment, &merged, hold_channel).await?,
            None,
        ),
    };
    let mut parts: Vec<LocationId> = Vec::new();
    for l in &placed {
        if !parts.contains(&l.location) {
            parts.push(l.location.clone());
        }
    }
    let part_of = |loc: &LocationId| parts.iter().position(|p| p == loc).unwrap_or(0) as u32;
    let stock: Vec<(Sku, Qty, u32)> = placed
        .iter()
        .map(|l| (l.sku.clone(), l.qty, part_of(&l.location)))
        .collect();
    let location_of = |s: &Sku| -> Option<LocationId> {
        let held = match bundles.get(s) {
            Some(b) => b.components().first().map(|c| c.sku.clone())?,
            None => s.clone(),
        };
        placed
            .iter()
            .find(|l| l.sku == held)
            .map(|l| l.location.clone())
    };
    let mut lines: Vec<OrderLineView> = Vec::with_capacity(d.lines.len());
    let mut taxes: Vec<LineTax> = Vec::with_capacity(d.lines.len());
    for (l, (price, code)) in d.lines.iter().zip(unit) {
        let location = location_of(&l.sku)
            .ok_or_else(|| Problem::overloaded("a line was not placed; retry"))?;
        let t = cfg
            .tax
            .line(&location, code.as_deref(), price, l.qty)
            .map_err(|e| Problem::invalid(format!("{}: tax: {e}", l.sku)))?;
        lines.push(OrderLineView {
            sku: l.sku.clone(),
            qty: l.qty,
            unit_price: price,
            tax: t.tax,
            net: t.net,
            gross: t.gross,
            part: part_of(&location),
            location,
        });
        taxes.push(t);
    }
    let totals =
        Totals::of(currency, &taxes).map_err(|e| Problem::invalid(format!("totals: {e}")))?;
    let totals = TotalsOut {
        net: totals.net.amount.to_string(),
        tax: totals.tax.amount.to_string(),
        gross: totals.gross.amount.to_string(),
        currency: currency.as_str().into(),
        rounding: ROUNDING_RULE.into(),
        tax_inclusive: cfg.tax.inclusive,
    };
    let canonical = serde_json::to_vec(&(
        &d.id,
        channel_str(d.channel),
        &d.customer_id,
        &lines,
        &stock,
        &parts,
        (&d.reservation_id, &holds),
    ))?;
    let fp = fingerprint(&[&canonical]);
    let idem = d.idem.clone().unwrap_or_else(|| Idem {
        key: fingerprint(&[b"order", d.id.as_bytes()]),
        fp: fp.clone(),
    });
    let order = PricedOrder {
        id: d.id.clone(),
        channel: d.channel,
        customer_id: d.customer_id.clone(),
        reservation_id: d.reservation_id.clone(),
        lines,
        stock,
        parts,
        totals,
        fp,
        holds,
    };
    let meta = Meta {
        actor: d.actor.clone(),
        channel: Some(channel_str(d.channel).into()),
        reference: Some(format!("order:{}", d.id)),
        reason: Some("placed".into()),
    };
    let r: Result<OrderAnswer, Problem> = wire_order::call(
        env,
        &d.id,
        &OrderRequest::Create(Box::new(CreateOrder {
            draft: order,
            meta,
            idem,
        })),
    )
    .await;
    stock_changed(merged.iter().map(|(s, _)| s));
    r
}

/// Turns reservation `id` into order `order`'s: its lines must be the
/// order's (after bundles are expanded, one per SKU). Answers its lines
/// (with their locations) and the hold of each. Idempotent: a reservation
/// already converted to this order answers the same.
async fn convert_reservation(
    env: &Env,
    id: &str,
    order: &str,
    merged: &[(Sku, Qty)],
) -> Result<(Vec<ReservationLine>, Vec<HoldId>), Problem> {
    check_id(id, "reservation_id")?;
    let (found, _) = reservation_op(
        env,
        id,
        ReservationOp::Get { id: id.into() },
        ReservationRequest::Get,
    )
    .await?;
    let v = &found.view;
    let mut want: Vec<(Sku, Qty)> = merged.to_vec();
    let mut have: Vec<(Sku, Qty)> = v.lines.iter().map(|l| (l.sku.clone(), l.qty)).collect();
    want.sort();
    have.sort();
    if want != have {
        return Err(Problem::invalid(format!(
            "the order's lines must be reservation {id}'s lines"
        ))
        .with("reservation_lines", &v.lines));
    }
    let (converted, hold) = reservation_op(
        env,
        id,
        ReservationOp::Convert {
            id: id.into(),
            order_id: order.into(),
        },
        ReservationRequest::Convert {
            order_id: order.into(),
        },
    )
    .await?;
    let hold = hold.ok_or_else(|| Problem::overloaded("the reservation did not convert; retry"))?;
    let lines = converted.view.lines.clone();
    let holds = vec![hold; lines.len()];
    Ok((lines, holds))
}

fn scope(ctx: &Ctx) -> Scope {
    match (ctx.principal.role, &ctx.principal.location) {
        (Role::Storefront, _) => Scope::Channel(Channel::Online),
        (Role::Pos, Some(l)) => Scope::Location(l.clone()),
        _ => Scope::Any,
    }
}

/// `GET /v1/orders/{id}`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("order")?;
    let a: OrderAnswer =
        wire_order::call(&ctx.env, &id, &OrderRequest::Get { scope: scope(ctx) }).await?;
    Ok(Reply::json(200, &a.view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: String,
    #[serde(default)]
    part: Option<u32>,
}

/// `POST /v1/orders/{id}/transitions`
pub async fn transition(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("order")?;
    let b: TransitionBody = parse_json(&ctx.body)?;
    let to = OrderStatus::parse(&b.to).ok_or_else(|| {
        Problem::invalid(format!(
            "to must be one of {}",
            OrderStatus::ALL.map(|s| s.as_str()).join(", ")
        ))
    })?;
    if to == OrderStatus::Returned {
        return Err(Problem::invalid(
            "an order becomes returned through a return (POST /v1/returns)",
        ));
    }
    if to == OrderStatus::New {
        return Err(Problem::invalid("an order cannot go back to new"));
    }
    let idem = ctx.idem()?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: Some(format!("order:{id}")),
        reason: Some(to.as_str().into()),
    };
    let r: Result<OrderAnswer, Problem> = wire_order::call(
        &ctx.env,
        &id,
        &OrderRequest::Transition {
            to,
            part: b.part,
            scope: scope(ctx),
            meta,
            idem,
        },
    )
    .await;
    let a = r?;
    stock_changed(a.view.lines.iter().map(|l| &l.sku));
    let r = Reply::json(200, &a.view);
    Ok(if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    })
}

fn parse_bool(v: Option<String>, what: &str) -> Result<Option<bool>, Problem> {
    match v.as_deref() {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Problem::invalid(format!("{what} is true or false"))),
    }
}

/// `GET /v1/orders`: the queue, newest first.
pub async fn list(ctx: &Ctx) -> HttpResult {
    let limit = match ctx.query_one("limit")? {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| Problem::invalid(format!("limit is 1 to {}", queue::MAX_PAGE)))?,
    };
    let mut f = OrderFilter {
        status: ctx.query_one("status")?,
        location: ctx.query_one("location")?,
        channel: ctx.query_one("channel")?,
        at_risk: parse_bool(ctx.query_one("at_risk")?, "at_risk")?,
        pickup_overdue: parse_bool(ctx.query_one("pickup_overdue")?, "pickup_overdue")?,
        limit,
        cursor: ctx.query_one("cursor")?,
    };
    match scope(ctx) {
        Scope::Channel(c) => {
            if f.channel.as_deref().is_some_and(|x| x != channel_str(c)) {
                return Err(Problem::forbidden(
                    "a storefront key reads online orders only",
                ));
            }
            f.channel = Some(channel_str(c).into());
        }
        Scope::Location(l) => {
            if f.location.as_deref().is_some_and(|x| x != l.as_str()) {
                return Err(Problem::forbidden(
                    "a POS key reads the orders of its own location only",
                ));
            }
            f.location = Some(l.to_string());
        }
        Scope::Any => {}
    }
    let page = queue::list(&ctx.env, &f).await?;
    Ok(Reply::json(
        200,
        &json!({"items": page.orders, "next_cursor": page.next_cursor}),
    ))
}
