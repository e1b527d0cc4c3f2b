//! `Catalog`: one Durable Object (named "catalog") with SQLite tables for
//! locations, products, SKUs (variants), barcodes and bundles.
//!
//! Why a Durable Object and not D1: the catalog is small, written rarely and
//! read on every stock write (to turn unknown SKUs and locations into 404s);
//! an object gives strongly consistent reads with no migration step that
//! `wrangler dev` would skip, and its SQLite is just as queryable. It never
//! decides stock.
use std::collections::BTreeMap;

use omnistock_core::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::db::{self, int, opt_text, text, Stmt};
use crate::http::{envelope_response, Problem};
use crate::rpc;

pub const CATALOG_NAME: &str = "catalog";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Store,
    Warehouse,
}

/// A location as stored and returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    pub kind: LocationKind,
    pub lat: f64,
    pub lon: f64,
    pub ships_online: bool,
    pub pickup: bool,
}

/// Money: a decimal string and an ISO 4217 currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

impl Money {
    pub fn validate(&self, what: &str) -> Result<(), Problem> {
        let ok_amount = self
            .amount
            .parse::<rust_decimal::Decimal>()
            .map(|d| !d.is_sign_negative() && d.scale() <= 4 && self.amount.len() <= 24)
            .unwrap_or(false)
            && self.amount.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !ok_amount {
            return Err(Problem::invalid(format!(
                "{what}.amount must be a non-negative decimal string like \"19.90\""
            )));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Problem::invalid(format!(
                "{what}.currency must be an ISO 4217 code like \"EUR\""
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub sku: Sku,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub variants: Vec<Variant>,
}

/// A SKU as looked up: its variant and product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkuInfo {
    pub sku: Sku,
    pub product_id: String,
    pub title: String,
    pub variant: Variant,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckRequest {
    pub skus: Vec<Sku>,
    /// `None`: answer with every location.
    pub locations: Option<Vec<LocationId>>,
    #[serde(default)]
    pub barcodes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub missing_skus: Vec<Sku>,
    pub missing_locations: Vec<LocationId>,
    /// The requested locations that exist (or all), in id order.
    pub locations: Vec<Location>,
    /// barcode -> SKU, for the barcodes that exist.
    #[serde(default)]
    pub barcodes: BTreeMap<String, Sku>,
    #[serde(default)]
    pub missing_barcodes: Vec<String>,
    /// The requested SKUs that are bundles, with their components (not missing).
    #[serde(default)]
    pub bundles: BTreeMap<Sku, Vec<BundleComponent>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListProducts {
    pub query: Option<String>,
    pub cursor: Option<String>,
    pub limit: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutAnswer<T> {
    pub created: bool,
    pub item: T,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CatalogRequest {
    PutLocation(Location),
    ListLocations,
    PutProduct(Product),
    GetProduct { id: String },
    ListProducts(ListProducts),
    GetSku { sku: Sku },
    GetBarcode { barcode: String },
    Check(CheckRequest),
    PutBundle(Bundle),
    GetBundle { sku: Sku },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponent {
    pub sku: Sku,
    pub qty: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub sku: Sku,
    pub title: String,
    pub price: Money,
    pub components: Vec<BundleComponent>,
}

impl BundleComponent {
    pub fn to_core(&self) -> omnistock_core::bundle::Component {
        omnistock_core::bundle::Component {
            sku: self.sku.clone(),
            qty: self.qty,
        }
    }
}

/// A bundle's wire components as core's validated bundle (refusals are 400).
pub fn core_bundle(
    sku: &Sku,
    components: &[BundleComponent],
) -> Result<omnistock_core::bundle::Bundle, Problem> {
    Ok(omnistock_core::bundle::Bundle::new(
        sku.clone(),
        components.iter().map(BundleComponent::to_core).collect(),
    )?)
}

impl CheckAnswer {
    /// The requested SKUs that are bundles, as core bundles.
    pub fn core_bundles(&self) -> Result<BTreeMap<Sku, omnistock_core::bundle::Bundle>, Problem> {
        self.bundles
            .iter()
            .map(|(s, c)| Ok((s.clone(), core_bundle(s, c)?)))
            .collect()
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS locations (id TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, title_lc TEXT NOT NULL, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS skus (sku TEXT PRIMARY KEY, product_id TEXT NOT NULL, json TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS skus_by_product ON skus(product_id)",
    "CREATE TABLE IF NOT EXISTS barcodes (barcode TEXT PRIMARY KEY, sku TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bundles (sku TEXT PRIMARY KEY, json TEXT NOT NULL)",
];

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

#[derive(Deserialize)]
struct SkuRow {
    sku: String,
    product_id: String,
}

#[durable_object]
pub struct Catalog {
    state: State,
}

impl DurableObject for Catalog {
    fn new(state: State, _env: Env) -> Self {
        Catalog { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = rpc::read_request(&mut req, "catalog").await;
        envelope_response(r.and_then(|x| self.handle(x)))
    }
}

impl Catalog {
    fn handle(&self, req: CatalogRequest) -> Result<serde_json::Value, Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        for q in SCHEMA {
            db::exec(&sql, q, vec![])?;
        }
        let v = match req {
            CatalogRequest::PutLocation(l) => {
                let existed = !db::query::<IdRow>(
                    &sql,
                    "SELECT id FROM locations WHERE id = ?",
                    vec![text(l.id.as_str())],
                )?
                .is_empty();
                db::exec(
                    &sql,
                    "INSERT OR REPLACE INTO locations (id, json) VALUES (?, ?)",
                    vec![text(l.id.as_str()), text(&serde_json::to_string(&l)?)],
                )?;
                serde_json::to_value(PutAnswer {
                    created: !existed,
                    item: l,
                })?
            }
            CatalogRequest::ListLocations => serde_json::to_value(self.locations(&sql)?)?,
            CatalogRequest::PutProduct(p) => {
                // A SKU belongs to one product; a barcode to one SKU.
                let mut stmts: Vec<Stmt> = Vec::new();
                for v in &p.variants {
                    let owner = db::query::<SkuRow>(
                        &sql,
                        "SELECT sku, product_id FROM skus WHERE sku = ?",
                        vec![text(v.sku.as_str())],
                    )?;
                    if let Some(o) = owner.first() {
                        if o.product_id != p.id {
                            return Err(Problem::new(
                                409,
                                "invalid_request",
                                format!(
                                    "SKU {} already belongs to product {}",
                                    o.sku, o.product_id
                                ),
                            ));
                        }
                    }
                    if let Some(b) = &v.barcode {
                        let owner = db::query::<SkuRow>(
                            &sql,
                            "SELECT b.sku AS sku, s.product_id AS product_id FROM barcodes b
                             LEFT JOIN skus s ON s.sku = b.sku WHERE b.barcode = ?",
                            vec![text(b)],
                        )?;
                        if let Some(o) = owner.first() {
                            if o.sku != v.sku.as_str() && o.product_id != p.id {
                                return Err(Problem::new(
                                    409,
                                    "invalid_request",
                                    format!("barcode {b} already belongs to SKU {}", o.sku),
                                ));
                            }
                        }
                    }
                }
                let existed = !db::query::<IdRow>(
                    &sql,
                    "SELECT id FROM products WHERE id = ?",
                    vec![text(&p.id)],
                )?
                .is_empty();
                stmts.push((
                    "DELETE FROM barcodes WHERE sku IN (SELECT sku FROM skus WHERE product_id = ?)",
                    vec![text(&p.id)],
                ));
                stmts.push(("DELETE FROM skus WHERE product_id = ?", vec![text(&p.id)]));
                stmts.push((
                    "INSERT OR REPLACE INTO products (id, title_lc, json) VALUES (?, ?, ?)",
                    vec![
                        text(&p.id),
                        text(&p.title.to_lowercase()),
                        text(&serde_json::to_string(&p)?),
                    ],
                ));
                for v in &p.variants {
                    stmts.push((
                        "INSERT OR REPLACE INTO skus (sku, product_id, json) VALUES (?, ?, ?)",
                        vec![
                            text(v.sku.as_str()),
                            text(&p.id),
                            text(&serde_json::to_string(v)?),
                        ],
                    ));
                    if let Some(b) = &v.barcode {
                        stmts.push((
                            "INSERT OR REPLACE INTO barcodes (barcode, sku) VALUES (?, ?)",
                            vec![text(b), text(v.sku.as_str())],
                        ));
                    }
                }
                db::atomically(&storage, stmts)?;
                serde_json::to_value(PutAnswer {
                    created: !existed,
                    item: p,
                })?
            }
            CatalogRequest::GetProduct { id } => {
                let rows: Vec<JsonRow> = db::query(
                    &sql,
                    "SELECT json FROM products WHERE id = ?",
                    vec![text(&id)],
                )?;
                match rows.first() {
                    Some(r) => serde_json::from_str(&r.json)?,
                    None => return Err(Problem::not_found(format!("no product {id}"))),
                }
            }
            CatalogRequest::ListProducts(l) => {
                let limit = l.limit.clamp(1, 100);
                let after = l.cursor.unwrap_or_default();
                let pattern = l
                    .query
                    .map(|q| format!("%{}%", q.to_lowercase().replace(['%', '_'], "")));
                let rows: Vec<JsonRow> = db::query(
                    &sql,
                    "SELECT json FROM products WHERE id > ? AND (? IS NULL OR title_lc LIKE ? OR id LIKE ?)
                     ORDER BY id LIMIT ?",
                    vec![
                        text(&after),
                        opt_text(pattern.as_deref()),
                        opt_text(pattern.as_deref()),
                        opt_text(pattern.as_deref()),
                        int(limit + 1),
                    ],
                )?;
                let mut items: Vec<Product> = Vec::new();
                for r in &rows {
                    items.push(serde_json::from_str(&r.json)?);
                }
                let next_cursor = if items.len() as i64 > limit {
                    items.truncate(limit as usize);
                    items.last().map(|p| p.id.clone())
                } else {
                    None
                };
                serde_json::to_value(ProductPage { items, next_cursor })?
            }
            CatalogRequest::GetSku { sku } => match self.sku_info(&sql, &sku)? {
                Some(i) => serde_json::to_value(i)?,
                None => return Err(Problem::not_found(format!("no SKU {sku}"))),
            },
            CatalogRequest::GetBarcode { barcode } => {
                let rows: Vec<SkuRow> = db::query(
                    &sql,
                    "SELECT b.sku AS sku, '' AS product_id FROM barcodes b WHERE b.barcode = ?",
                    vec![text(&barcode)],
                )?;
                let sku = rows
                    .first()
                    .and_then(|r| Sku::parse(&r.sku).ok())
                    .ok_or_else(|| Problem::not_found(format!("no barcode {barcode}")))?;
                match self.sku_info(&sql, &sku)? {
                    Some(i) => serde_json::to_value(i)?,
                    None => return Err(Problem::not_found(format!("no barcode {barcode}"))),
                }
            }
            CatalogRequest::Check(c) => serde_json::to_value(self.check(&sql, c)?)?,
            CatalogRequest::PutBundle(b) => {
                for c in &b.components {
                    if self.sku_info(&sql, &c.sku)?.is_none() {
                        return Err(Problem::not_found(format!(
                            "component {} is not a product variant (bundles do not nest)",
                            c.sku
                        )));
                    }
                }
                if self.sku_info(&sql, &b.sku)?.is_some() {
                    return Err(Problem::new(
                        409,
                        "invalid_request",
                        format!("{} is a product variant; a bundle needs its own SKU", b.sku),
                    ));
                }
                let existed = !db::query::<JsonRow>(
                    &sql,
                    "SELECT json FROM bundles WHERE sku = ?",
                    vec![text(b.sku.as_str())],
                )?
                .is_empty();
                db::exec(
                    &sql,
                    "INSERT OR REPLACE INTO bundles (sku, json) VALUES (?, ?)",
                    vec![text(b.sku.as_str()), text(&serde_json::to_string(&b)?)],
                )?;
                serde_json::to_value(PutAnswer {
                    created: !existed,
                    item: b,
                })?
            }
            CatalogRequest::GetBundle { sku } => {
                let rows: Vec<JsonRow> = db::query(
                    &sql,
                    "SELECT json FROM bundles WHERE sku = ?",
                    vec![text(sku.as_str())],
                )?;
                match rows.first() {
                    Some(r) => serde_json::from_str(&r.json)?,
                    None => return Err(Problem::not_found(format!("no bundle {sku}"))),
                }
            }
        };
        Ok(v)
    }

    fn locations(&self, sql: &worker::SqlStorage) -> Result<Vec<Location>, Problem> {
        let rows: Vec<JsonRow> = db::query(sql, "SELECT json FROM locations ORDER BY id", vec![])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(serde_json::from_str(&r.json)?);
        }
        Ok(out)
    }

    fn sku_info(&self, sql: &worker::SqlStorage, sku: &Sku) -> Result<Option<SkuInfo>, Problem> {
        let rows: Vec<SkuRow> = db::query(
            sql,
            "SELECT sku, product_id FROM skus WHERE sku = ?",
            vec![text(sku.as_str())],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let prows: Vec<JsonRow> = db::query(
            sql,
            "SELECT json FROM products WHERE id = ?",
            vec![text(&row.product_id)],
        )?;
        let Some(prow) = prows.first() else {
            return Ok(None);
        };
        let p: Product = serde_json::from_str(&prow.json)?;
        Ok(p.variants.iter().find(|v| &v.sku == sku).map(|v| SkuInfo {
            sku: sku.clone(),
            product_id: p.id.clone(),
            title: p.title.clone(),
            variant: v.clone(),
        }))
    }

    fn check(&self, sql: &worker::SqlStorage, c: CheckRequest) -> Result<CheckAnswer, Problem> {
        let mut a = CheckAnswer::default();
        for s in &c.skus {
            let found = !db::query::<IdRow>(
                sql,
                "SELECT sku AS id FROM skus WHERE sku = ?",
                vec![text(s.as_str())],
            )?
            .is_empty();
            if found {
                continue;
            }
            let bundle: Vec<JsonRow> = db::query(
                sql,
                "SELECT json FROM bundles WHERE sku = ?",
                vec![text(s.as_str())],
            )?;
            match bundle.first() {
                Some(r) => {
                    let b: Bundle = serde_json::from_str(&r.json)?;
                    a.bundles.insert(s.clone(), b.components);
                }
                None => {
                    if !a.missing_skus.contains(s) {
                        a.missing_skus.push(s.clone());
                    }
                }
            }
        }
        let all = self.locations(sql)?;
        match c.locations {
            None => a.locations = all,
            Some(want) => {
                for l in want {
                    match all.iter().find(|x| x.id == l) {
                        Some(x) => {
                            if !a.locations.contains(x) {
                                a.locations.push(x.clone())
                            }
                        }
                        None => {
                            if !a.missing_locations.contains(&l) {
                                a.missing_locations.push(l)
                            }
                        }
                    }
                }
            }
        }
        for b in c.barcodes {
            let rows: Vec<IdRow> = db::query(
                sql,
                "SELECT sku AS id FROM barcodes WHERE barcode = ?",
                vec![text(&b)],
            )?;
            match rows.first().and_then(|r| Sku::parse(&r.id).ok()) {
                Some(s) => {
                    a.barcodes.insert(b, s);
                }
                None => a.missing_barcodes.push(b),
            }
        }
        Ok(a)
    }
}
