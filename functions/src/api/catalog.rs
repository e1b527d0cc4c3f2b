//! Catalog endpoints: locations, products and variants, SKU and barcode
//! lookup, bundles. The data lives in the one `Catalog` object, which keeps
//! each write's answer with its Idempotency-Key; stock requests never call it
//! on the hot path (they use the isolate's cache, which a write here clears).
use omnistock_core::{LocationId, Sku};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::facts;
use crate::cache;
use crate::extract::{check_name, check_text, Ctx};
use crate::http::{check_id, parse_json, HttpResult, Problem, Reply, MAX_LINES};
use crate::wire::catalog::{
    core_bundle, Bundle, BundleComponent, CatalogRequest, ListProducts, Location, LocationKind,
    Money, Product, PutAnswer, Variant, CATALOG_NAME,
};
use crate::wire::{self, Namespace};

async fn call<T: DeserializeOwned>(ctx: &Ctx, req: &CatalogRequest) -> Result<T, Problem> {
    wire::call(&ctx.env, Namespace::Catalog, CATALOG_NAME, req).await
}

/// A catalog write's answer: 201 created, 200 replaced; a replay says so.
fn put_reply<T: serde::Serialize>(a: &PutAnswer<T>) -> Reply {
    // Stock requests see the change at once in this isolate, within
    // CATALOG_TTL_MS in the others.
    cache::catalog_changed();
    let r = Reply::json(if a.created { 201 } else { 200 }, &a.item);
    if a.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationBody {
    name: String,
    kind: LocationKind,
    lat: f64,
    lon: f64,
    #[serde(default)]
    ships_online: bool,
    #[serde(default)]
    pickup: bool,
}

/// `PUT /v1/locations/{id}`
pub async fn put_location(ctx: &Ctx) -> HttpResult {
    let id = LocationId::parse(&ctx.path_id("location")?)
        .map_err(|e| Problem::invalid(e.to_string()))?;
    let b: LocationBody = parse_json(&ctx.body)?;
    check_name(&b.name, "name")?;
    if !(-90.0..=90.0).contains(&b.lat) || !(-180.0..=180.0).contains(&b.lon) {
        return Err(Problem::invalid(
            "lat must be within -90..=90 and lon within -180..=180",
        ));
    }
    let loc = Location {
        id,
        name: b.name,
        kind: b.kind,
        lat: b.lat,
        lon: b.lon,
        ships_online: b.ships_online,
        pickup: b.pickup,
    };
    let a: PutAnswer<Location> = call(
        ctx,
        &CatalogRequest::PutLocation {
            location: loc,
            idem: ctx.idem()?,
        },
    )
    .await?;
    Ok(put_reply(&a))
}

/// `GET /v1/locations` (publishable keys too: store names and places are public).
pub async fn list_locations(ctx: &Ctx) -> HttpResult {
    let all = facts(&ctx.env, ctx.now, &[], &[], &[]).await?.locations;
    Ok(Reply::json(200, &json!({ "items": *all })))
}

/// `GET /v1/locations/{id}`
pub async fn get_location(ctx: &Ctx) -> HttpResult {
    let id = LocationId::parse(&ctx.path_id("location")?)
        .map_err(|e| Problem::invalid(e.to_string()))?;
    let f = facts(&ctx.env, ctx.now, &[], &[], std::slice::from_ref(&id)).await?;
    match f.location(&id) {
        Some(l) => Ok(Reply::json(200, l)),
        None => Err(Problem::not_found(format!("no location {id}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    title: String,
    variants: Vec<Variant>,
}

fn check_barcode(b: &str) -> Result<(), Problem> {
    if b.is_empty() || b.len() > 64 || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return Err(Problem::invalid(
            "a barcode is 1 to 64 characters of A-Z a-z 0-9 -",
        ));
    }
    Ok(())
}

/// `PUT /v1/products/{id}`
pub async fn put_product(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("product")?;
    let b: ProductBody = parse_json(&ctx.body)?;
    check_name(&b.title, "title")?;
    if b.variants.is_empty() || b.variants.len() > MAX_LINES {
        return Err(Problem::invalid(format!(
            "a product has 1 to {MAX_LINES} variants"
        )));
    }
    let mut seen_skus: Vec<&Sku> = Vec::new();
    let mut seen_codes: Vec<&str> = Vec::new();
    for (i, v) in b.variants.iter().enumerate() {
        if seen_skus.contains(&&v.sku) {
            return Err(Problem::invalid(format!(
                "variants[{i}]: SKU {} appears twice",
                v.sku
            )));
        }
        seen_skus.push(&v.sku);
        if let Some(code) = &v.barcode {
            check_barcode(code)?;
            if seen_codes.contains(&code.as_str()) {
                return Err(Problem::invalid(format!(
                    "variants[{i}]: barcode {code} appears twice"
                )));
            }
            seen_codes.push(code);
        }
        v.price.validate(&format!("variants[{i}].price"))?;
        v.prices().book(&format!("variants[{i}]"))?;
        check_text(&v.tax_code, 32, "tax_code")?;
        if v.options.len() > 10 {
            return Err(Problem::invalid(format!(
                "variants[{i}]: at most 10 options"
            )));
        }
        for (k, val) in &v.options {
            check_name(k, "an option name")?;
            check_name(val, "an option value")?;
        }
    }
    let p = Product {
        id,
        title: b.title,
        variants: b.variants,
    };
    let a: PutAnswer<Product> = call(
        ctx,
        &CatalogRequest::PutProduct {
            product: p,
            idem: ctx.idem()?,
        },
    )
    .await?;
    Ok(put_reply(&a))
}

/// `GET /v1/products/{id}`
pub async fn get_product(ctx: &Ctx) -> HttpResult {
    let id = ctx.path_id("product")?;
    let p: Product = call(ctx, &CatalogRequest::GetProduct { id }).await?;
    Ok(Reply::json(200, &p))
}

/// `GET /v1/products?query=&cursor=&limit=`
pub async fn list_products(ctx: &Ctx) -> HttpResult {
    let one = |name: &str| ctx.query_one(name);
    let query = one("query")?.filter(|q| !q.is_empty());
    check_text(&query, 100, "query")?;
    let cursor = one("cursor")?;
    if let Some(c) = &cursor {
        check_id(c, "cursor")?;
    }
    let limit = match one("limit")? {
        None => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Problem::invalid("limit must be 1..=100"))?,
    };
    // The catalog's page as it sent it (stored JSON, not re-encoded).
    let page: Box<serde_json::value::RawValue> = call(
        ctx,
        &CatalogRequest::ListProducts(ListProducts {
            query,
            cursor,
            limit,
        }),
    )
    .await?;
    Ok(Reply::raw(200, "application/json", page.get().to_string()))
}

/// `GET /v1/skus/{sku}`
pub async fn get_sku(ctx: &Ctx) -> HttpResult {
    let sku = Sku::parse(&ctx.path_id("SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let v: Value = call(ctx, &CatalogRequest::GetSku { sku }).await?;
    Ok(Reply::json(200, &v))
}

/// `GET /v1/barcodes/{barcode}`
pub async fn get_barcode(ctx: &Ctx) -> HttpResult {
    let code = ctx.segment(2).to_string();
    check_barcode(&code)?;
    let v: Value = call(ctx, &CatalogRequest::GetBarcode { barcode: code }).await?;
    Ok(Reply::json(200, &v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleBody {
    title: String,
    price: Money,
    components: Vec<BundleComponent>,
}

/// `PUT /v1/bundles/{sku}`
pub async fn put_bundle(ctx: &Ctx) -> HttpResult {
    let sku =
        Sku::parse(&ctx.path_id("bundle SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let b: BundleBody = parse_json(&ctx.body)?;
    check_name(&b.title, "title")?;
    b.price.validate("price")?;
    let comps = b.components;
    // Core's bundle rules; the answer keeps the components in the order given.
    let valid = core_bundle(&sku, &comps)?;
    let parts: Vec<Sku> = comps.iter().map(|c| c.sku.clone()).collect();
    let f = facts(&ctx.env, ctx.now, &parts, &[], &[]).await?;
    f.require_skus(&parts, true)?;
    let bundles = f.bundles()?;
    valid.check_not_nested(|s| bundles.contains_key(s))?;
    let bundle = Bundle {
        sku,
        title: b.title,
        price: b.price,
        components: comps,
    };
    let a: PutAnswer<Bundle> = call(
        ctx,
        &CatalogRequest::PutBundle {
            bundle,
            idem: ctx.idem()?,
        },
    )
    .await?;
    Ok(put_reply(&a))
}

/// `GET /v1/bundles/{sku}`
pub async fn get_bundle(ctx: &Ctx) -> HttpResult {
    let sku =
        Sku::parse(&ctx.path_id("bundle SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let b: Bundle = call(ctx, &CatalogRequest::GetBundle { sku }).await?;
    Ok(Reply::json(200, &b))
}
