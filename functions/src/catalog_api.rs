//! Catalog endpoints: locations, products and variants, SKU and barcode
//! lookup, bundles. The data lives in the `Catalog` object.
use std::collections::BTreeMap;

use omnistock_core::{LocationId, Sku};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Env;

use crate::api::Ctx;
use crate::auth::Role;
use crate::catalog::{
    Bundle, BundleComponent, CatalogRequest, CheckAnswer, CheckRequest, ListProducts, Location,
    LocationKind, Money, Product, PutAnswer, Variant, CATALOG_NAME,
};
use crate::http::{check_id, parse_json, Problem, Reply, MAX_LINES};
use crate::inventory::check_text;
use crate::rpc::{self, CATALOG};

pub async fn call<T: DeserializeOwned>(env: &Env, req: &CatalogRequest) -> Result<T, Problem> {
    rpc::call(env, CATALOG, CATALOG_NAME, "catalog", req).await
}

/// Which of these SKUs and locations exist (and every location when `locations` is `None`).
pub async fn check(env: &Env, req: CheckRequest) -> Result<CheckAnswer, Problem> {
    call(env, &CatalogRequest::Check(req)).await
}

/// The id in the path (`/v1/<things>/{id}`), checked.
pub fn path_id(ctx: &Ctx, what: &str) -> Result<String, Problem> {
    let raw = ctx.path.get(2).cloned().unwrap_or_default();
    check_id(&raw, &format!("{what} id {raw:?}"))?;
    Ok(raw)
}

fn reading_roles() -> &'static [Role] {
    &[Role::Admin, Role::Storefront, Role::Pos]
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

fn check_name(s: &str, what: &str) -> Result<(), Problem> {
    if s.trim().is_empty() || s.chars().count() > 200 || s.chars().any(|c| c.is_control()) {
        return Err(Problem::invalid(format!(
            "{what} must be 1 to 200 characters, without control characters"
        )));
    }
    Ok(())
}

/// `PUT /v1/locations/{id}`
pub async fn put_location(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
    let id = LocationId::parse(&path_id(ctx, "location")?)
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
    let a: PutAnswer<Location> = call(&ctx.env, &CatalogRequest::PutLocation(loc)).await?;
    Ok(Reply::json(if a.created { 201 } else { 200 }, &a.item))
}

/// `GET /v1/locations` (publishable keys too: store names and places are public).
pub async fn list_locations(ctx: &Ctx) -> Result<Reply, Problem> {
    let all: Vec<Location> = call(&ctx.env, &CatalogRequest::ListLocations).await?;
    Ok(Reply::json(200, &json!({ "items": all })))
}

/// `GET /v1/locations/{id}`
pub async fn get_location(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let id = LocationId::parse(&path_id(ctx, "location")?)
        .map_err(|e| Problem::invalid(e.to_string()))?;
    let all: Vec<Location> = call(&ctx.env, &CatalogRequest::ListLocations).await?;
    match all.into_iter().find(|l| l.id == id) {
        Some(l) => Ok(Reply::json(200, &l)),
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
pub async fn put_product(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
    let id = path_id(ctx, "product")?;
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
    let a: PutAnswer<Product> = call(&ctx.env, &CatalogRequest::PutProduct(p)).await?;
    Ok(Reply::json(if a.created { 201 } else { 200 }, &a.item))
}

/// `GET /v1/products/{id}`
pub async fn get_product(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let id = path_id(ctx, "product")?;
    let p: Product = call(&ctx.env, &CatalogRequest::GetProduct { id }).await?;
    Ok(Reply::json(200, &p))
}

/// `GET /v1/products?query=&cursor=&limit=`
pub async fn list_products(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let one = |name: &str| -> Result<Option<String>, Problem> {
        let v: Vec<&String> = ctx
            .query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        match v.as_slice() {
            [] => Ok(None),
            [x] => Ok(Some((*x).clone())),
            _ => Err(Problem::invalid(format!("{name} given twice"))),
        }
    };
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
    let page: Value = call(
        &ctx.env,
        &CatalogRequest::ListProducts(ListProducts {
            query,
            cursor,
            limit,
        }),
    )
    .await?;
    Ok(Reply::json(200, &page))
}

/// `GET /v1/skus/{sku}`
pub async fn get_sku(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let sku = Sku::parse(&path_id(ctx, "SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let v: Value = call(&ctx.env, &CatalogRequest::GetSku { sku }).await?;
    Ok(Reply::json(200, &v))
}

/// `GET /v1/barcodes/{barcode}`
pub async fn get_barcode(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let code = ctx.path.get(2).cloned().unwrap_or_default();
    check_barcode(&code)?;
    let v: Value = call(&ctx.env, &CatalogRequest::GetBarcode { barcode: code }).await?;
    Ok(Reply::json(200, &v))
}

/// Resolves barcodes to SKUs (for POS lines).
pub async fn resolve_barcodes(
    env: &Env,
    codes: Vec<String>,
) -> Result<BTreeMap<String, Sku>, Problem> {
    let a = check(
        env,
        CheckRequest {
            skus: vec![],
            locations: Some(vec![]),
            barcodes: codes,
        },
    )
    .await?;
    crate::inventory::require_known(&a)?;
    Ok(a.barcodes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleBody {
    title: String,
    price: Money,
    components: Vec<BundleComponent>,
}

/// `PUT /v1/bundles/{sku}`
pub async fn put_bundle(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(&[Role::Admin])?;
    let sku =
        Sku::parse(&path_id(ctx, "bundle SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let b: BundleBody = parse_json(&ctx.body)?;
    check_name(&b.title, "title")?;
    b.price.validate("price")?;
    let comps = b.components;
    // Core's bundle rules; the answer keeps the components in the order given.
    let valid = crate::catalog::core_bundle(&sku, &comps)?;
    let a = check(
        &ctx.env,
        CheckRequest {
            skus: comps.iter().map(|c| c.sku.clone()).collect(),
            locations: Some(vec![]),
            barcodes: vec![],
        },
    )
    .await?;
    crate::inventory::require_known_or_bundle(&a)?;
    valid.check_not_nested(|s| a.bundles.contains_key(s))?;
    let bundle = Bundle {
        sku,
        title: b.title,
        price: b.price,
        components: comps,
    };
    let a: PutAnswer<Bundle> = call(&ctx.env, &CatalogRequest::PutBundle(bundle)).await?;
    Ok(Reply::json(if a.created { 201 } else { 200 }, &a.item))
}

/// `GET /v1/bundles/{sku}`
pub async fn get_bundle(ctx: &Ctx) -> Result<Reply, Problem> {
    ctx.principal.require(reading_roles())?;
    let sku =
        Sku::parse(&path_id(ctx, "bundle SKU")?).map_err(|e| Problem::invalid(e.to_string()))?;
    let b: Bundle = call(&ctx.env, &CatalogRequest::GetBundle { sku }).await?;
    Ok(Reply::json(200, &b))
}
