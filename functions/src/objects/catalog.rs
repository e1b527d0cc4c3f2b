//! `Catalog`: one Durable Object (named "catalog") with SQLite tables for
//! locations, products, SKUs (variants), barcodes and bundles.
//!
//! Why a Durable Object and not D1: the catalog is small and written rarely;
//! an object gives strongly consistent reads with no migration step that
//! `wrangler dev` would skip, and its SQLite is just as queryable. It is not
//! on the hot path: stock requests read its facts from the isolate's cache
//! (cache.rs), refetched on a miss or after `CATALOG_TTL_MS`. Each write
//! keeps its answer under the request's Idempotency-Key in the same
//! transaction (`idem` table, 48 h). It never decides stock.
use std::cell::Cell;

use omnistock_core::Sku;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::storage::{self, int, text, Stmt};
use crate::http::Problem;
use crate::wire::catalog::{
    Bundle, CatalogRequest, FactsAnswer, FactsRequest, ImportCheckAnswer, ListProducts, Location,
    PriceFact, PriceFields, Product, PutAnswer, SkuFact, SkuInfo,
};
use crate::wire::{self, Idem};

/// How long a catalog write's answer is kept for its Idempotency-Key.
pub const IDEM_KEEP_MS: i64 = 48 * 3_600_000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS locations (id TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, title_lc TEXT NOT NULL, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS skus (sku TEXT PRIMARY KEY, product_id TEXT NOT NULL, json TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS skus_by_product ON skus(product_id)",
    "CREATE TABLE IF NOT EXISTS barcodes (barcode TEXT PRIMARY KEY, sku TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bundles (sku TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS idem (key TEXT PRIMARY KEY, fp TEXT NOT NULL, answer TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS idem_by_age ON idem(at)",
    // Staff search (issue 11): normalised terms (SKU, barcode, title and its
    // words, option values), prefix-matched through the index.
    "CREATE TABLE IF NOT EXISTS search (term TEXT NOT NULL, product_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_by_term ON search(term, product_id)",
    "CREATE INDEX IF NOT EXISTS search_by_product ON search(product_id)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
    // Scheduled price changes (issue 11): each product's next one; the
    // object's alarm is the earliest and folds due changes into the product.
    "CREATE TABLE IF NOT EXISTS price_schedule (product_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS price_schedule_by_at ON price_schedule(at)",
];

/// Products whose due price changes one alarm run folds in (the next run
/// follows at once when more are due).
const PRICE_CHANGES_PER_ALARM: i64 = 200;

/// Most terms one product adds to the search index.
const MAX_TERMS: usize = 2_000;

/// The search terms of a product: its title (whole and each word), and
/// each variant's SKU, barcode and option values, normalised (lower case,
/// spaces collapsed), without repeats.
fn search_terms(p: &Product) -> Vec<String> {
    use omnistock_core::catalog_import::normalize;
    let mut terms: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let title = normalize(&p.title);
    for w in title.split(' ') {
        terms.insert(w.to_string());
    }
    terms.insert(title);
    for v in &p.variants {
        terms.insert(normalize(v.sku.as_str()));
        if let Some(b) = &v.barcode {
            terms.insert(normalize(b));
        }
        for val in v.options.values() {
            let val = normalize(val);
            for w in val.split(' ') {
                terms.insert(w.to_string());
            }
            terms.insert(val);
        }
    }
    terms
        .into_iter()
        .filter(|t| !t.is_empty())
        .take(MAX_TERMS)
        .collect()
}

/// The statements that replace a product's search terms.
fn index_stmts(p: &Product) -> Vec<Stmt> {
    let mut stmts: Vec<Stmt> = vec![("DELETE FROM search WHERE product_id = ?", vec![text(&p.id)])];
    for t in search_terms(p) {
        stmts.push((
            "INSERT INTO search (term, product_id) VALUES (?, ?)",
            vec![text(&t), text(&p.id)],
        ));
    }
    stmts
}

#[derive(Deserialize)]
struct IdemRow {
    fp: String,
    answer: String,
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[derive(Deserialize)]
struct IdJsonRow {
    id: String,
    json: String,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

#[derive(Deserialize)]
struct AtRow {
    at: i64,
}

#[derive(Deserialize)]
struct SkuRow {
    sku: String,
    product_id: String,
}

#[durable_object]
pub struct Catalog {
    state: State,
    schema_ok: Cell<bool>,
    /// A write left a scheduled price change: set the alarm after it.
    arm_prices: Cell<bool>,
}

impl DurableObject for Catalog {
    fn new(state: State, _env: Env) -> Self {
        Catalog {
            state,
            schema_ok: Cell::new(false),
            arm_prices: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
    }

    /// Folds the scheduled price changes now due into their products.
    async fn alarm(&self) -> worker::Result<Response> {
        match self.settle_due_prices() {
            Ok(()) => {}
            Err(p) => worker::console_error!("catalog: scheduled prices: {}", p.detail),
        }
        if let Err(p) = self.arm_price_alarm().await {
            worker::console_error!("catalog: price alarm not set: {}", p.detail);
        }
        Response::ok("")
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for Catalog {
    async fn receive(&self, msg: &str) -> String {
        let r = wire::decode(msg);
        if let Ok(CatalogRequest::ListProducts(l)) = &r {
            // The page is the stored products' JSON as it is: no parsing
            // and re-encoding of up to 100 products of 100 variants.
            return match self.list_products(l) {
                Ok(page) => format!("{{\"ok\":{page}}}"),
                Err(p) => wire::reply::<()>(Err(p)),
            };
        }
        let answer = r.and_then(|x| self.handle(x));
        if self.arm_prices.replace(false) {
            if let Err(p) = self.arm_price_alarm().await {
                worker::console_error!("catalog: price alarm not set: {}", p.detail);
            }
        }
        wire::reply(answer)
    }
}

crate::rpc_receiver!(Catalog);

/// Settles every variant's prices at `now`; the product's next change.
fn settle_prices(p: &mut Product, now: i64) -> Result<Option<i64>, Problem> {
    let mut next: Option<i64> = None;
    for v in &mut p.variants {
        if let Some(t) = v.settle(now)? {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}

/// The statement that records (or forgets) a product's next price change.
fn schedule_stmt(product_id: &str, next: Option<i64>) -> Stmt {
    match next {
        Some(at) => (
            "INSERT OR REPLACE INTO price_schedule (product_id, at) VALUES (?, ?)",
            vec![text(product_id), int(at)],
        ),
        None => (
            "DELETE FROM price_schedule WHERE product_id = ?",
            vec![text(product_id)],
        ),
    }
}

/// A write's answer, replayed when its Idempotency-Key comes again with the
/// same request; `None` when the key is new.
fn replay(sql: &worker::SqlStorage, idem: &Idem, now: i64) -> Result<Option<Value>, Problem> {
    let rows: Vec<IdemRow> = storage::query(
        sql,
        "SELECT fp, answer FROM idem WHERE key = ? AND at > ?",
        vec![text(&idem.key), int(now - IDEM_KEEP_MS)],
    )?;
    match rows.first() {
        None => Ok(None),
        Some(r) if r.fp != idem.fp => Err(Problem::key_reused()),
        Some(r) => {
            let mut v: Value = serde_json::from_str(&r.answer)?;
            v["replayed"] = Value::Bool(true);
            Ok(Some(v))
        }
    }
}

/// The statements that keep a write's answer (and forget a few old ones).
fn keep<T: Serialize>(idem: &Idem, answer: &T, now: i64) -> Result<Vec<Stmt>, Problem> {
    Ok(vec![
        (
            "DELETE FROM idem WHERE key IN (SELECT key FROM idem WHERE at <= ? ORDER BY at LIMIT 20)",
            vec![int(now - IDEM_KEEP_MS)],
        ),
        (
            "INSERT OR REPLACE INTO idem (key, fp, answer, at) VALUES (?, ?, ?, ?)",
            vec![
                text(&idem.key),
                text(&idem.fp),
                text(&serde_json::to_string(answer)?),
                int(now),
            ],
        ),
    ])
}

impl Catalog {
    fn handle(&self, req: CatalogRequest) -> Result<Value, Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        if !self.schema_ok.get() {
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.index_existing(&storage)?;
            self.schema_ok.set(true);
        }
        let now = storage::now_ms();
        match &req {
            CatalogRequest::PutLocation { idem, .. }
            | CatalogRequest::PutProduct { idem, .. }
            | CatalogRequest::PutBundle { idem, .. } => {
                if let Some(v) = replay(&sql, idem, now)? {
                    return Ok(v);
                }
            }
            _ => {}
        }
        let v = match req {
            CatalogRequest::PutLocation { location: l, idem } => {
                let existed = !storage::query::<IdRow>(
                    &sql,
                    "SELECT id FROM locations WHERE id = ?",
                    vec![text(l.id.as_str())],
                )?
                .is_empty();
                let answer = PutAnswer {
                    created: !existed,
                    replayed: false,
                    item: l,
                };
                let mut stmts: Vec<Stmt> = vec![(
                    "INSERT OR REPLACE INTO locations (id, json) VALUES (?, ?)",
                    vec![
                        text(answer.item.id.as_str()),
                        text(&serde_json::to_string(&answer.item)?),
                    ],
                )];
                stmts.extend(keep(&idem, &answer, now)?);
                storage::atomically(&storage, stmts)?;
                serde_json::to_value(answer)?
            }
            CatalogRequest::ListLocations => serde_json::to_value(self.locations(&sql)?)?,
            CatalogRequest::PutProduct {
                product: mut p,
                idem,
            } => {
                // A SKU belongs to one product; a barcode to one SKU.
                let mut stmts: Vec<Stmt> = Vec::new();
                // Changes already due are prices now.
                let next_change = settle_prices(&mut p, now)?;
                for v in &p.variants {
                    let owner = storage::query::<SkuRow>(
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
                        let owner = storage::query::<SkuRow>(
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
                let existed = !storage::query::<IdRow>(
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
                stmts.extend(index_stmts(&p));
                stmts.push(schedule_stmt(&p.id, next_change));
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
                let answer = PutAnswer {
                    created: !existed,
                    replayed: false,
                    item: p,
                };
                stmts.extend(keep(&idem, &answer, now)?);
                storage::atomically(&storage, stmts)?;
                if next_change.is_some() {
                    self.arm_prices.set(true);
                }
                serde_json::to_value(answer)?
            }
            CatalogRequest::GetProduct { id } => {
                let rows: Vec<JsonRow> = storage::query(
                    &sql,
                    "SELECT json FROM products WHERE id = ?",
                    vec![text(&id)],
                )?;
                match rows.first() {
                    Some(r) => serde_json::from_str(&r.json)?,
                    None => return Err(Problem::not_found(format!("no product {id}"))),
                }
            }
            CatalogRequest::ListProducts(_) => {
                // Answered by `list_products` (raw JSON), never here.
                return Err(Problem::invalid("ListProducts is answered as raw JSON"));
            }
            CatalogRequest::GetSku { sku } => match self.sku_info(&sql, &sku)? {
                Some(i) => serde_json::to_value(i)?,
                None => return Err(Problem::not_found(format!("no SKU {sku}"))),
            },
            CatalogRequest::GetBarcode { barcode } => {
                let rows: Vec<SkuRow> = storage::query(
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
            CatalogRequest::Facts(f) => serde_json::to_value(self.facts(&sql, f)?)?,
            CatalogRequest::Describe { skus } => serde_json::to_value(self.describe(&sql, skus)?)?,
            CatalogRequest::Prices { skus } => {
                let mut out: Vec<(Sku, Option<PriceFact>)> = Vec::new();
                for s in skus.into_iter().take(crate::http::MAX_LINES * 2) {
                    let fact = match self.sku_info(&sql, &s)? {
                        Some(i) => Some(PriceFact {
                            prices: i.variant.prices(),
                            tax_code: i.variant.tax_code,
                        }),
                        None => {
                            let rows: Vec<JsonRow> = storage::query(
                                &sql,
                                "SELECT json FROM bundles WHERE sku = ?",
                                vec![text(s.as_str())],
                            )?;
                            match rows.first() {
                                Some(r) => {
                                    let b: Bundle = serde_json::from_str(&r.json)?;
                                    Some(PriceFact {
                                        prices: PriceFields {
                                            price: b.price,
                                            channel_prices: None,
                                            compare_at_price: None,
                                            scheduled_prices: Vec::new(),
                                        },
                                        tax_code: None,
                                    })
                                }
                                None => None,
                            }
                        }
                    };
                    out.push((s, fact));
                }
                serde_json::to_value(out)?
            }
            CatalogRequest::PutBundle { bundle: b, idem } => {
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
                let existed = !storage::query::<JsonRow>(
                    &sql,
                    "SELECT json FROM bundles WHERE sku = ?",
                    vec![text(b.sku.as_str())],
                )?
                .is_empty();
                let mut stmts: Vec<Stmt> = vec![(
                    "INSERT OR REPLACE INTO bundles (sku, json) VALUES (?, ?)",
                    vec![text(b.sku.as_str()), text(&serde_json::to_string(&b)?)],
                )];
                let answer = PutAnswer {
                    created: !existed,
                    replayed: false,
                    item: b,
                };
                stmts.extend(keep(&idem, &answer, now)?);
                storage::atomically(&storage, stmts)?;
                serde_json::to_value(answer)?
            }
            CatalogRequest::ImportCheck {
                idem,
                id,
                skus,
                barcodes,
            } => {
                let mut existing = omnistock_core::catalog_import::Existing::default();
                let cap = omnistock_core::catalog_import::MAX_ROWS;
                for s in skus.iter().take(cap) {
                    let rows: Vec<SkuRow> = storage::query(
                        &sql,
                        "SELECT sku, product_id FROM skus WHERE sku = ?",
                        vec![text(s)],
                    )?;
                    if let Some(r) = rows.first() {
                        existing.skus.insert(r.sku.clone(), r.product_id.clone());
                    }
                }
                for b in barcodes.iter().take(cap) {
                    let rows: Vec<IdRow> = storage::query(
                        &sql,
                        "SELECT sku AS id FROM barcodes WHERE barcode = ?",
                        vec![text(b)],
                    )?;
                    if let Some(r) = rows.first() {
                        existing.barcodes.insert(b.clone(), r.id.clone());
                    }
                }
                let (id, replayed) = match replay(&sql, &idem, now)? {
                    Some(v) => (
                        v.get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| Problem::overloaded("a kept import id is unreadable"))?,
                        true,
                    ),
                    None => {
                        let stmts = keep(&idem, &serde_json::json!({ "id": id }), now)?;
                        storage::atomically(&storage, stmts)?;
                        (id, false)
                    }
                };
                serde_json::to_value(ImportCheckAnswer {
                    id,
                    replayed,
                    existing,
                })?
            }
            CatalogRequest::GetBundle { sku } => {
                let rows: Vec<JsonRow> = storage::query(
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

    /// The alarm at the earliest scheduled price change (none left: no alarm
    /// for prices; the catalog has no other alarm).
    async fn arm_price_alarm(&self) -> Result<(), Problem> {
        let storage = self.state.storage();
        let rows: Vec<AtRow> = storage::query(
            &storage.sql(),
            "SELECT at FROM price_schedule ORDER BY at LIMIT 1",
            vec![],
        )?;
        storage::alarm_at(&storage, rows.first().map(|r| r.at)).await
    }

    /// Rewrites the products whose scheduled price changes are due, each in
    /// its own transaction (product, SKU rows and schedule together).
    fn settle_due_prices(&self) -> Result<(), Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        if !self.schema_ok.get() {
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.schema_ok.set(true);
        }
        let now = storage::now_ms();
        let due: Vec<IdRow> = storage::query(
            &sql,
            "SELECT product_id AS id FROM price_schedule WHERE at <= ? ORDER BY at LIMIT ?",
            vec![int(now), int(PRICE_CHANGES_PER_ALARM)],
        )?;
        for d in due {
            let rows: Vec<JsonRow> = storage::query(
                &sql,
                "SELECT json FROM products WHERE id = ?",
                vec![text(&d.id)],
            )?;
            let Some(r) = rows.first() else {
                storage::exec(
                    &sql,
                    "DELETE FROM price_schedule WHERE product_id = ?",
                    vec![text(&d.id)],
                )?;
                continue;
            };
            let settled = serde_json::from_str::<Product>(&r.json)
                .map_err(Problem::from)
                .and_then(|mut p| settle_prices(&mut p, now).map(|next| (p, next)));
            let (p, next) = match settled {
                Ok(x) => x,
                Err(e) => {
                    // Never a hot loop on one bad row: it waits an hour, logged.
                    worker::console_error!("catalog: prices of {} not settled: {}", d.id, e.detail);
                    storage::exec(
                        &sql,
                        "UPDATE price_schedule SET at = ? WHERE product_id = ?",
                        vec![int(now + 3_600_000), text(&d.id)],
                    )?;
                    continue;
                }
            };
            let mut stmts: Vec<Stmt> = vec![(
                "UPDATE products SET json = ? WHERE id = ?",
                vec![text(&serde_json::to_string(&p)?), text(&p.id)],
            )];
            for v in &p.variants {
                stmts.push((
                    "UPDATE skus SET json = ? WHERE sku = ?",
                    vec![text(&serde_json::to_string(v)?), text(v.sku.as_str())],
                ));
            }
            stmts.push(schedule_stmt(&p.id, next));
            storage::atomically(&storage, stmts)?;
        }
        Ok(())
    }

    /// A page of products as JSON text: `{items, next_cursor}`; with a query,
    /// those with a search term that starts with it (normalised).
    fn list_products(&self, l: &ListProducts) -> Result<String, Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        if !self.schema_ok.get() {
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.index_existing(&storage)?;
            self.schema_ok.set(true);
        }
        let limit = l.limit.clamp(1, 100);
        let after = l.cursor.clone().unwrap_or_default();
        let q: Option<String> = l
            .query
            .as_deref()
            .map(omnistock_core::catalog_import::normalize)
            .filter(|q| !q.is_empty());
        let rows: Vec<IdJsonRow> = match q {
            // Prefix, case-insensitive: a range of the term index.
            Some(q) => storage::query(
                &sql,
                "SELECT p.id AS id, p.json AS json FROM products p WHERE p.id IN (
                   SELECT DISTINCT product_id FROM search
                   WHERE term >= ? AND term < ? AND product_id > ?
                   ORDER BY product_id LIMIT ?)
                 ORDER BY p.id",
                vec![
                    text(&q),
                    text(&format!("{q}\u{10FFFF}")),
                    text(&after),
                    int(limit + 1),
                ],
            )?,
            None => storage::query(
                &sql,
                "SELECT id, json FROM products WHERE id > ? ORDER BY id LIMIT ?",
                vec![text(&after), int(limit + 1)],
            )?,
        };
        let more = rows.len() as i64 > limit;
        let shown = &rows[..rows.len().min(limit as usize)];
        let mut out = String::from("{\"items\":[");
        for (i, r) in shown.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&r.json);
        }
        out.push_str("],\"next_cursor\":");
        match shown.last().filter(|_| more) {
            Some(r) => out.push_str(&serde_json::to_string(&r.id)?),
            None => out.push_str("null"),
        }
        out.push('}');
        Ok(out)
    }

    /// Indexes the products stored before the search index existed (once).
    fn index_existing(&self, storage: &worker::Storage) -> Result<(), Problem> {
        let sql = storage.sql();
        let done = !storage::query::<IdRow>(
            &sql,
            "SELECT k AS id FROM meta WHERE k = 'search_v1'",
            vec![],
        )?
        .is_empty();
        if done {
            return Ok(());
        }
        let rows: Vec<JsonRow> = storage::query(&sql, "SELECT json FROM products", vec![])?;
        let mut stmts: Vec<Stmt> = Vec::new();
        for r in &rows {
            let p: Product = serde_json::from_str(&r.json)?;
            stmts.extend(index_stmts(&p));
        }
        stmts.push((
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('search_v1', 'done')",
            vec![],
        ));
        storage::atomically(storage, stmts)
    }

    fn locations(&self, sql: &worker::SqlStorage) -> Result<Vec<Location>, Problem> {
        let rows: Vec<JsonRow> =
            storage::query(sql, "SELECT json FROM locations ORDER BY id", vec![])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(serde_json::from_str(&r.json)?);
        }
        Ok(out)
    }

    /// Receipts (issue 14): what a receipt prints of each SKU.
    fn describe(
        &self,
        sql: &worker::SqlStorage,
        skus: Vec<Sku>,
    ) -> Result<Vec<(Sku, Option<crate::wire::catalog::Described>)>, Problem> {
        use crate::wire::catalog::Described;
        let mut out = Vec::new();
        for s in skus.into_iter().take(crate::http::MAX_LINES * 2) {
            let d = match self.sku_info(sql, &s)? {
                Some(i) => Some(Described {
                    title: i.title,
                    options: i.variant.options,
                    price: i.variant.price,
                    tax_code: i.variant.tax_code,
                }),
                None => {
                    let rows: Vec<JsonRow> = storage::query(
                        sql,
                        "SELECT json FROM bundles WHERE sku = ?",
                        vec![text(s.as_str())],
                    )?;
                    match rows.first() {
                        Some(r) => {
                            let b: Bundle = serde_json::from_str(&r.json)?;
                            Some(Described {
                                title: b.title,
                                options: Default::default(),
                                price: b.price,
                                tax_code: None,
                            })
                        }
                        None => None,
                    }
                }
            };
            out.push((s, d));
        }
        Ok(out)
    }

    fn sku_info(&self, sql: &worker::SqlStorage, sku: &Sku) -> Result<Option<SkuInfo>, Problem> {
        let rows: Vec<SkuRow> = storage::query(
            sql,
            "SELECT sku, product_id FROM skus WHERE sku = ?",
            vec![text(sku.as_str())],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let prows: Vec<JsonRow> = storage::query(
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

    fn facts(&self, sql: &worker::SqlStorage, f: FactsRequest) -> Result<FactsAnswer, Problem> {
        let mut a = FactsAnswer::default();
        for s in f.skus.iter().take(crate::http::MAX_SKUS * 2) {
            let found = !storage::query::<IdRow>(
                sql,
                "SELECT sku AS id FROM skus WHERE sku = ?",
                vec![text(s.as_str())],
            )?
            .is_empty();
            let fact = if found {
                SkuFact::Item
            } else {
                let bundle: Vec<JsonRow> = storage::query(
                    sql,
                    "SELECT json FROM bundles WHERE sku = ?",
                    vec![text(s.as_str())],
                )?;
                match bundle.first() {
                    Some(r) => {
                        let b: Bundle = serde_json::from_str(&r.json)?;
                        SkuFact::Bundle {
                            components: b.components,
                        }
                    }
                    None => SkuFact::Missing,
                }
            };
            a.skus.push((s.clone(), fact));
        }
        for b in f.barcodes.into_iter().take(crate::http::MAX_LINES * 2) {
            let rows: Vec<IdRow> = storage::query(
                sql,
                "SELECT sku AS id FROM barcodes WHERE barcode = ?",
                vec![text(&b)],
            )?;
            let sku = rows.first().and_then(|r| Sku::parse(&r.id).ok());
            a.barcodes.push((b, sku));
        }
        a.locations = self.locations(sql)?;
        Ok(a)
    }
}
