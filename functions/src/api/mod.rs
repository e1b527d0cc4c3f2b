//! The HTTP resources, one module per resource. Handlers validate, look up
//! catalog facts in the isolate's cache, send typed messages to the objects
//! that own the data (`wire`), and shape the answer. They decide no stock:
//! every stock rule is core's, applied by the owning object.
pub mod availability;
pub mod catalog;
pub mod customers;
pub mod imports;
pub mod inventory;
pub mod live;
pub mod orders;
pub mod pos;
pub mod receipts;
pub mod reports;
pub mod reservations;
pub mod returns;
pub mod transfers;
pub mod unavailable;

use std::collections::BTreeMap;
use std::rc::Rc;

use omnistock_core::bundle::Bundle;
use omnistock_core::{LocationId, Sku};
use worker::Env;

use crate::cache;
use crate::extract::Ctx;
use crate::http::{HttpResult, Problem, Reply};
use crate::wire::catalog::{
    core_bundle, CatalogRequest, FactsAnswer, FactsRequest, Location, SkuFact, CATALOG_NAME,
};
use crate::wire::{self, Namespace};

/// `GET /v1/health`
pub async fn health(_ctx: &Ctx) -> HttpResult {
    Ok(Reply::json(
        200,
        &serde_json::json!({"status": "ok", "version": crate::routes::VERSION}),
    ))
}

/// `GET /v1/config/fulfillment`: the fulfillment rule in force and the tax table.
pub async fn fulfillment_config(ctx: &Ctx) -> HttpResult {
    Ok(Reply::json(200, &crate::config::get(&ctx.env)?.view()))
}

/// Most keys `GET /v1/dev/keys` shows.
const MAX_DEMO_KEYS: usize = 16;

/// `GET /v1/dev/keys`: the keys the demo pages (`/`, `/pos`, `/admin`) use,
/// from the `DEMO_PAGE_KEYS` var (`key:role[@location]`, comma-separated).
/// Only `make dev` sets that var (to the dev keys); wrangler.toml never
/// does, so anywhere else this is 404 and the pages ask for a key.
pub async fn demo_keys(ctx: &Ctx) -> HttpResult {
    let raw = ctx
        .env
        .var("DEMO_PAGE_KEYS")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let keys: Vec<serde_json::Value> = raw
        .split(',')
        .filter_map(|e| {
            let (key, rest) = e.trim().rsplit_once(':')?;
            let (role, location) = match rest.split_once('@') {
                Some((r, l)) => (r, Some(l)),
                None => (rest, None),
            };
            Some(serde_json::json!({"key": key, "role": role, "location": location}))
        })
        .take(MAX_DEMO_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(Problem::not_found(
            "no demo keys here: they are shown only under `make dev`",
        ));
    }
    Ok(Reply::json(200, &serde_json::json!({ "keys": keys })))
}

/// `GET /v1/openapi.json`
pub async fn openapi(_ctx: &Ctx) -> HttpResult {
    Ok(Reply::raw(
        200,
        "application/json",
        crate::openapi::DOCUMENT.to_string(),
    ))
}

/// Catalog facts a stock request needs, from the isolate's cache (one
/// `Catalog` call for whatever is missing or stale).
pub struct Facts {
    pub skus: BTreeMap<Sku, SkuFact>,
    pub barcodes: BTreeMap<String, Option<Sku>>,
    pub locations: Rc<Vec<Location>>,
}

impl Facts {
    pub fn location(&self, id: &LocationId) -> Option<&Location> {
        self.locations.iter().find(|l| &l.id == id)
    }

    /// Unknown SKUs are 404; bundles are 400 unless `bundles_ok`.
    pub fn require_skus(&self, skus: &[Sku], bundles_ok: bool) -> Result<(), Problem> {
        let missing: Vec<&Sku> = skus
            .iter()
            .filter(|s| matches!(self.skus.get(*s), None | Some(SkuFact::Missing)))
            .collect();
        if !missing.is_empty() {
            return Err(unknown("SKU", "skus", &missing));
        }
        if !bundles_ok {
            if let Some(b) = skus
                .iter()
                .find(|s| matches!(self.skus.get(*s), Some(SkuFact::Bundle { .. })))
            {
                return Err(Problem::invalid(format!(
                    "{b} is a bundle: it has no stock of its own (use its components)"
                )));
            }
        }
        Ok(())
    }

    /// The named locations (404 for unknown ones), in the order given.
    pub fn require_locations(&self, ids: &[LocationId]) -> Result<Vec<Location>, Problem> {
        let missing: Vec<&LocationId> = ids.iter().filter(|l| self.location(l).is_none()).collect();
        if !missing.is_empty() {
            return Err(unknown("location", "locations", &missing));
        }
        let mut out: Vec<Location> = Vec::new();
        for id in ids {
            if let Some(l) = self.location(id) {
                if !out.contains(l) {
                    out.push(l.clone());
                }
            }
        }
        Ok(out)
    }

    /// The bundles among the SKUs asked for, as core bundles.
    pub fn bundles(&self) -> Result<BTreeMap<Sku, Bundle>, Problem> {
        self.skus
            .iter()
            .filter_map(|(s, f)| match f {
                SkuFact::Bundle { components } => {
                    Some(core_bundle(s, components).map(|b| (s.clone(), b)))
                }
                _ => None,
            })
            .collect()
    }
}

/// 404 naming the unknown ids (in `detail` and as the member `field`).
fn unknown<T: std::fmt::Display + serde::Serialize>(what: &str, field: &str, ids: &[T]) -> Problem {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    Problem::not_found(format!("unknown {what}: {}", list.join(", "))).with(field, ids)
}

/// The facts for these SKUs, barcodes and locations.
pub async fn facts(
    env: &Env,
    now: i64,
    skus: &[Sku],
    barcodes: &[String],
    locations: &[LocationId],
) -> Result<Facts, Problem> {
    let mut known: BTreeMap<Sku, SkuFact> = BTreeMap::new();
    let mut codes: BTreeMap<String, Option<Sku>> = BTreeMap::new();
    let mut ask = FactsRequest::default();
    for s in skus {
        match cache::sku(now, s) {
            Some(f) => {
                known.insert(s.clone(), f);
            }
            None => {
                if !ask.skus.contains(s) {
                    ask.skus.push(s.clone())
                }
            }
        }
    }
    for c in barcodes {
        match cache::barcode(now, c) {
            Some(s) => {
                codes.insert(c.clone(), Some(s));
            }
            None => {
                if !ask.barcodes.contains(c) {
                    ask.barcodes.push(c.clone())
                }
            }
        }
    }
    let cached = cache::locations(now);
    let locations_ok = cached
        .as_ref()
        .is_some_and(|all| locations.iter().all(|l| all.iter().any(|x| &x.id == l)));
    if ask.skus.is_empty() && ask.barcodes.is_empty() && locations_ok {
        return Ok(Facts {
            skus: known,
            barcodes: codes,
            locations: cached.unwrap_or_default(),
        });
    }
    let a: FactsAnswer = wire::call(
        env,
        Namespace::Catalog,
        CATALOG_NAME,
        &CatalogRequest::Facts(ask),
    )
    .await?;
    let locations = cache::set_locations(now, a.locations);
    for (s, f) in a.skus {
        cache::set_sku(now, s.clone(), f.clone());
        known.insert(s, f);
    }
    for (c, s) in a.barcodes {
        if let Some(s) = &s {
            cache::set_barcode(now, c.clone(), s.clone());
        }
        codes.insert(c, s);
    }
    Ok(Facts {
        skus: known,
        barcodes: codes,
        locations,
    })
}

pub use crate::wire::sku_stock::{call as sku_call, read as read_sku};

/// Runs commands on one SKU object (see `wire::sku_stock::exec`); this
/// isolate's cached positions of the SKU are dropped, so its next read here
/// sees the write.
pub async fn exec_sku(
    env: &Env,
    sku: &Sku,
    cmds: Vec<omnistock_core::Command>,
    meta: &crate::wire::sku_stock::Meta,
    idem: Option<crate::wire::Idem>,
) -> Result<Vec<crate::wire::sku_stock::Outcome>, Problem> {
    let r = crate::wire::sku_stock::exec(env, sku, cmds, meta, idem).await;
    cache::stock_changed(sku);
    r
}

/// This request changed (or may have changed) the stock of these SKUs.
pub fn stock_changed<'a>(skus: impl IntoIterator<Item = &'a Sku>) {
    for s in skus {
        cache::stock_changed(s);
    }
}
