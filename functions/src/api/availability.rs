//! `GET /v1/availability`: positions and availability per SKU and location.
//! Storefront and publishable reads come from the edge cache
//! (`edge_cache.rs`: at most 1 s stale, misses coalesced, refreshed ahead in
//! `waitUntil`); admin, POS and `consistency=strong` reads call each
//! stock-bearing SKU's object (a bundle reads its components), a bounded
//! number in flight. Catalog facts come from the isolate's cache.
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use omnistock_core::{Channel, LocationId, Position, Sku};
use serde_json::{json, Value};

use super::{facts, read_sku};
use crate::auth::Role;
use crate::edge_cache;
use crate::extract::Ctx;
use crate::http::{rfc3339, HttpResult, Problem, Reply, MAX_SKUS};
use crate::wire::catalog::Location;
use crate::wire::sku_stock::ReadAnswer;

pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Online => "online",
        Channel::Pos => "pos",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

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
        "channel": channel_name(channel),
    });
    if let Some(l) = location {
        v["location"] = json!(l.id);
        v["location_name"] = json!(l.name);
        // For shopper wording (the widget): a warehouse is not a store, and
        // pickup only where a store offers it.
        v["location_kind"] = json!(l.kind);
        v["pickup"] = json!(l.pickup);
        v["ships_online"] = json!(l.ships_online);
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

/// The `channel` query parameter; the caller's own channel by default.
pub fn parse_channel(ctx: &Ctx) -> Result<Channel, Problem> {
    match ctx.query_list("channel").as_slice() {
        [] => Ok(ctx.principal.channel()),
        [c] if c == "online" => Ok(Channel::Online),
        [c] if c == "pos" => Ok(Channel::Pos),
        _ => Err(Problem::invalid("channel must be online or pos")),
    }
}

/// The availability answer written as text: the members of [`row`] (with
/// `as_of`, and `bundle`/`total` where they apply), each location's part
/// serialized once per read.
struct Rows {
    channel: Channel,
    locations: Vec<String>,
    items: String,
    n: usize,
}

impl Rows {
    fn new(channel: Channel, locations: &[Location]) -> Rows {
        let locations = locations
            .iter()
            .map(|l| {
                format!(
                    r#""location":{},"location_name":{},"location_kind":{},"pickup":{},"ships_online":{},"#,
                    text(&l.id),
                    text(&l.name),
                    text(&l.kind),
                    l.pickup,
                    l.ships_online
                )
            })
            .collect();
        Rows {
            channel,
            locations,
            items: String::with_capacity(32 * 1024),
            n: 0,
        }
    }

    /// One row: at the `loc`-th location, or the total row (`None`).
    fn push(
        &mut self,
        sku: &Sku,
        loc: Option<usize>,
        p: &Position,
        available: i64,
        as_of: &str,
        bundle: bool,
    ) {
        use std::fmt::Write;
        if self.n > 0 {
            self.items.push(',');
        }
        self.n += 1;
        let _ = write!(self.items, r#"{{"sku":{},"#, text(sku));
        match loc.and_then(|i| self.locations.get(i)) {
            Some(l) => self.items.push_str(l),
            None => self.items.push_str(r#""total":true,"#),
        }
        if bundle {
            self.items.push_str(r#""bundle":true,"#);
        }
        let _ = write!(
            self.items,
            r#""on_hand":{},"reserved":{},"committed":{},"unavailable":{{"damaged":{},"quality_control":{}}},"safety_stock":{},"incoming":{},"available":{},"version":{},"channel":"{}","as_of":"{}"}}"#,
            p.on_hand,
            p.reserved,
            p.committed,
            p.damaged,
            p.quality_control,
            p.safety_stock,
            p.incoming,
            available,
            p.version,
            channel_name(self.channel),
            as_of
        );
    }

    fn finish(self, as_of: &str) -> String {
        format!(
            r#"{{"as_of":"{as_of}","channel":"{}","items":[{}]}}"#,
            channel_name(self.channel),
            self.items
        )
    }
}

/// JSON text of a serializable value (ids, names, kinds).
fn text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Whether this read may come from the isolate's cache (at most
/// `READ_STALENESS_MS` old): storefront and publishable reads, unless they ask
/// `consistency=strong`. Admin and POS reads (the back office and the till
/// need the truth) always read the owning objects.
fn cached_reads(ctx: &Ctx) -> Result<bool, Problem> {
    let strong = match ctx.query_one("consistency")?.as_deref() {
        None => false,
        Some("strong") => true,
        Some(_) => return Err(Problem::invalid("consistency must be strong (or absent)")),
    };
    Ok(!strong && matches!(ctx.principal.role, Role::Publishable | Role::Storefront))
}

/// `LIVE_MAX_SUBSCRIBERS` (the SKU objects' bound, which the edge cache's
/// listeners count against too).
fn live_max_subscribers(env: &worker::Env) -> usize {
    use crate::objects::live::{DEFAULT_MAX_SUBSCRIBERS, MAX_SUBSCRIBERS};
    env.var("LIVE_MAX_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_SUBSCRIBERS)
        .clamp(1, MAX_SUBSCRIBERS)
}

/// `GET /v1/availability?sku=A,B&location=L1,L2&channel=online|pos&consistency=strong`
pub async fn get(ctx: &Ctx) -> HttpResult {
    let raw_skus = ctx.query_list("sku");
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
    let raw_locs = ctx.query_list("location");
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
    let facts = facts(&ctx.env, ctx.now, &skus, &[], &locs).await?;
    facts.require_skus(&skus, true)?;
    let locations: Vec<Location> = if all_locations {
        facts.locations.to_vec()
    } else {
        facts.require_locations(&locs)?
    };
    let bundles = facts.bundles()?;
    let loc_ids: Vec<LocationId> = locations.iter().map(|l| l.id.clone()).collect();
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
    let cached = cached_reads(ctx)?;
    let mut counts = None;
    let answers: Vec<Result<ReadAnswer, Problem>> = if cached {
        let env = ctx.env.clone();
        let fetch: edge_cache::Fetch = Rc::new(move |s: Sku| {
            let env = env.clone();
            Box::pin(async move { read_sku(&env, &s, &[]).await })
        });
        let sleep: edge_cache::Sleep = Rc::new(|ms| {
            Box::pin(async move { worker::Delay::from(Duration::from_millis(ms)).await })
        });
        let clock = crate::objects::storage::now_ms;
        let r = edge_cache::read(ctx.now, &reads, fetch.clone(), sleep, clock).await;
        if let Some(bg) = &ctx.background {
            if !r.refresh.is_empty() {
                bg.wait_until(edge_cache::refresh(ctx.now, r.refresh, fetch));
            }
            if !r.listen.is_empty() {
                let max = live_max_subscribers(&ctx.env);
                let now = crate::objects::storage::now_ms;
                bg.wait_until(edge_cache::listen(ctx.env.clone(), r.listen, max, now));
            }
        }
        counts = Some((r.hits, r.calls, r.followed));
        r.answers
    } else {
        // The owning objects, in parallel, a bounded number at a time.
        stream::iter(reads.iter())
            .map(|s| read_sku(&ctx.env, s, &loc_ids))
            .buffered(edge_cache::MAX_IN_FLIGHT)
            .collect()
            .await
    };
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
    // The rows are written straight into the body (a 100-SKU page is most
    // of a read's CPU when it comes from the cache): the members of `row`.
    let mut out = Rows::new(channel, &locations);
    // The oldest answer says how fresh the whole read is; each item says its own.
    let as_of = read.values().map(|a| a.now).min().unwrap_or(ctx.now);
    let read_at = |sku: &Sku| rfc3339(read.get(sku).map_or(ctx.now, |a| a.now));
    // A bundle is as fresh as its oldest component.
    let bundle_as_of = |b: &omnistock_core::bundle::Bundle| {
        let at = b
            .components()
            .iter()
            .filter_map(|c| read.get(&c.sku))
            .map(|a| a.now)
            .min();
        rfc3339(at.unwrap_or(ctx.now))
    };
    for sku in &skus {
        if let Some(b) = bundles.get(sku) {
            // A bundle: core's availability from its components', per location.
            let at = bundle_as_of(b);
            let mut total_available = 0;
            let mut total_version = 0;
            for (i, l) in locations.iter().enumerate() {
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
                out.push(sku, Some(i), &p, avail, &at, true);
            }
            if all_locations {
                let p = Position {
                    version: total_version,
                    ..Position::default()
                };
                out.push(sku, None, &p, total_available, &at, true);
            }
            continue;
        }
        let at = read_at(sku);
        let mut total = Position::default();
        let mut total_available = 0;
        for (i, l) in locations.iter().enumerate() {
            let p = position(sku, &l.id);
            let avail = p.available(channel);
            total_available += avail;
            sum(&mut total, &p);
            out.push(sku, Some(i), &p, avail, &at, false);
        }
        if all_locations {
            out.push(sku, None, &total, total_available, &at, false);
        }
    }
    let reply = Reply::raw(200, "application/json", out.finish(&rfc3339(as_of)));
    Ok(match counts {
        // How this read was answered (for benchmarks and operators).
        Some((hit, call, follow)) => reply.header(
            "Omnistock-Cache",
            &format!("hit={hit}, call={call}, followed={follow}"),
        ),
        None => reply.header("Omnistock-Cache", "strong"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::catalog::LocationKind;

    /// The written rows are `row`'s members plus `as_of`, `bundle`, `total`.
    #[test]
    fn written_rows_are_the_rows_of_the_contract() {
        let l = Location {
            id: LocationId::parse("store-1").unwrap(),
            name: "Down \"town\" \u{e9}".into(),
            kind: LocationKind::Store,
            lat: 1.0,
            lon: 2.0,
            ships_online: true,
            pickup: false,
        };
        let sku = Sku::parse("A-1").unwrap();
        let p = Position {
            on_hand: 7,
            reserved: 2,
            committed: 1,
            damaged: 1,
            quality_control: 1,
            safety_stock: 1,
            incoming: 3,
            version: 9,
            ..Position::default()
        };
        let mut rows = Rows::new(Channel::Online, std::slice::from_ref(&l));
        rows.push(&sku, Some(0), &p, 2, "2026-11-29T09:00:00.000Z", false);
        rows.push(&sku, None, &p, 2, "2026-11-29T09:00:00.000Z", true);
        let body: Value = serde_json::from_str(&rows.finish("2026-11-29T08:59:59.000Z")).unwrap();
        assert_eq!(body["as_of"], "2026-11-29T08:59:59.000Z");
        assert_eq!(body["channel"], "online");
        let mut want = row(&sku, Some(&l), &p, Channel::Online, 2);
        want["as_of"] = json!("2026-11-29T09:00:00.000Z");
        assert_eq!(body["items"][0], want);
        let mut total = row(&sku, None, &p, Channel::Online, 2);
        total["as_of"] = json!("2026-11-29T09:00:00.000Z");
        total["total"] = json!(true);
        total["bundle"] = json!(true);
        assert_eq!(body["items"][1], total);
        assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    }
}
