//! Catalog import (issue 11): `POST /v1/catalog/imports` (a CSV body, a dry
//! run), `GET /v1/catalog/imports/{id}` (JSON, or the problems as CSV with
//! `Accept: text/csv`), `POST /v1/catalog/imports/{id}/apply`.
//!
//! The Worker parses the file and builds the cleaning report with core
//! (`omnistock_core::catalog_import`), asking the Catalog object once who
//! owns the file's SKUs and barcodes (that call also keeps the new import's
//! id under the POST's Idempotency-Key). The `CatalogImport` object keeps
//! the import. An apply writes each product with one catalog write (all its
//! variants or none) keyed by (import, product), then receives its stock at
//! the location asked for through the SKU objects with op id `imp.<import>`,
//! so a retried or repeated apply writes nothing twice; the outcome is kept
//! once in the import's object.
use futures_util::future::join_all;
use omnistock_core::catalog_import::{
    self as ci, ImportError, NamingRule, PlanError, ProductOut, Settings,
};
use omnistock_core::fingerprint::Fnv;
use omnistock_core::{Command, LocationId, OpId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{exec_sku, facts};
use crate::cache;
use crate::extract::Ctx;
use crate::http::{check_id, parse_json, rfc3339, HttpResult, Problem, Reply};
use crate::wire::catalog::{
    CatalogRequest, ImportCheckAnswer, Money, Product, PutAnswer, Variant, CATALOG_NAME,
};
use crate::wire::catalog_import::{
    AppliedAnswer, AppliedProduct, ApplyOutcome, ImportRequest, ImportStatus, ImportView, Loaded,
};
use crate::wire::sku_stock::Meta;
use crate::wire::{self, Idem, Namespace};

/// Largest CSV accepted (checked on Content-Length before reading, and on
/// the bytes read). JSON bodies keep API.md's 64 KiB.
pub const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;

/// SKU objects called at once by an apply.
const PARALLEL_RECEIPTS: usize = 16;

async fn on_import<T: DeserializeOwned>(
    ctx: &Ctx,
    id: &str,
    req: &ImportRequest,
) -> Result<T, Problem> {
    wire::call(&ctx.env, Namespace::CatalogImport, id, req).await
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// A fresh UUIDv7: the time now and 74 random bits (getrandom, js backend).
fn new_id(now_ms: i64) -> Result<String, Problem> {
    let mut rand = [0u8; 10];
    getrandom::fill(&mut rand).map_err(|_| Problem::overloaded("no randomness; retry"))?;
    let ms = u64::try_from(now_ms).unwrap_or(0);
    Ok(uuid::Builder::from_unix_timestamp_millis(ms, &rand)
        .into_uuid()
        .hyphenated()
        .to_string())
}

fn naming_rule(ctx: &Ctx) -> NamingRule {
    let raw = ctx
        .env
        .var("IMPORT_TITLE_RULE")
        .map(|v| v.to_string())
        .unwrap_or_default();
    NamingRule::parse(&raw).unwrap_or_else(|e| {
        worker::console_error!("IMPORT_TITLE_RULE is invalid ({e}); using the default rule");
        NamingRule::default()
    })
}

fn currency(ctx: &Ctx) -> Result<String, Problem> {
    let c = match ctx.query_one("currency")? {
        Some(c) => c,
        None => ctx
            .env
            .var("IMPORT_CURRENCY")
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "EUR".to_string()),
    };
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid(
            "currency must be an ISO 4217 code like EUR",
        ));
    }
    Ok(c)
}

fn import_problem(e: ImportError) -> Problem {
    Problem::invalid(format!("the file cannot be imported: {e}"))
}

/// `POST /v1/catalog/imports?location=&currency=` (body: the CSV).
pub async fn create(ctx: &Ctx) -> HttpResult {
    let ct = ctx
        .content_type
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("text/csv") {
        return Err(Problem::new(
            415,
            "invalid_request",
            "the body must be a CSV file with Content-Type: text/csv",
        ));
    }
    let location = match ctx.query_one("location")? {
        Some(l) => Some(LocationId::parse(&l).map_err(|e| Problem::invalid(e.to_string()))?),
        None => None,
    };
    let currency = currency(ctx)?;
    if let Some(l) = &location {
        facts(&ctx.env, ctx.now, &[], &[], std::slice::from_ref(l))
            .await?
            .require_locations(std::slice::from_ref(l))?;
    }
    let parsed = ci::parse(&ctx.body).map_err(import_problem)?;
    let settings = Settings {
        naming: naming_rule(ctx),
        location: location.clone(),
    };
    // The key covers the query too: the same file for another location is
    // another request.
    let idem = ctx.idem()?;
    let idem = Idem {
        fp: hex(Fnv::default()
            .str(&idem.fp)
            .str(location.as_ref().map(|l| l.as_str()).unwrap_or(""))
            .str(&currency)
            .finish()),
        key: idem.key,
    };
    let mut skus = Vec::new();
    let mut barcodes = Vec::new();
    for p in &parsed.products {
        for r in &p.rows {
            if !r.sku.is_empty() {
                skus.push(r.sku.clone());
            }
            if !r.barcode.is_empty() {
                barcodes.push(r.barcode.clone());
            }
        }
    }
    let check: ImportCheckAnswer = wire::call(
        &ctx.env,
        Namespace::Catalog,
        CATALOG_NAME,
        &CatalogRequest::ImportCheck {
            idem,
            id: new_id(ctx.now)?,
            skus,
            barcodes,
        },
    )
    .await?;
    let report = ci::check(&parsed, &settings, &check.existing);
    let view = ImportView {
        id: check.id.clone(),
        status: ImportStatus::Ready,
        format: parsed.format,
        created_at: rfc3339(ctx.now),
        location: location.map(|l| l.as_str().to_string()),
        currency,
        report,
        apply: None,
    };
    let stored: ImportView = on_import(
        ctx,
        &check.id,
        &ImportRequest::Create {
            view: Box::new(view),
            parsed: Box::new(parsed),
            settings,
        },
    )
    .await?;
    Ok(if check.replayed {
        Reply::json(201, &stored).header("Idempotent-Replayed", "true")
    } else {
        Reply::json(201, &stored)
    })
}

/// The import id in the path; one that is no UUID names no import (404,
/// without waking an object for it).
fn import_id(ctx: &Ctx) -> Result<String, Problem> {
    let id = ctx.segment(3).to_string();
    check_id(&id, "import id")?;
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(Problem::not_found(format!("no import {id}")));
    }
    Ok(id)
}

/// `GET /v1/catalog/imports/{id}` (`Accept: text/csv`: the problems as CSV).
pub async fn get(ctx: &Ctx) -> HttpResult {
    let id = import_id(ctx)?;
    let view: ImportView = on_import(ctx, &id, &ImportRequest::Get).await?;
    let csv = ctx
        .accept
        .as_deref()
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv"));
    if csv {
        return Ok(Reply::raw(
            200,
            "text/csv; charset=utf-8",
            ci::problems_csv(&view.report),
        ));
    }
    Ok(Reply::json(200, &view))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    #[serde(default)]
    skip_rows_with_errors: bool,
}

fn product_of(p: &ProductOut, currency: &str) -> Product {
    Product {
        id: p.id.clone(),
        title: p.title.clone(),
        variants: p
            .variants
            .iter()
            .map(|v| {
                let mut price = v.price;
                price.set_sign_positive(true); // only a zero can be "-0" here
                Variant {
                    sku: v.sku.clone(),
                    barcode: v.barcode.clone(),
                    options: v.options.clone(),
                    price: Money {
                        amount: price.to_string(),
                        currency: currency.to_string(),
                    },
                    tax_code: (!v.taxable).then(|| "exempt".to_string()),
                    channel_prices: None,
                    compare_at_price: v.compare_at_price.map(|c| {
                        let mut c = c;
                        c.set_sign_positive(true);
                        Money {
                            amount: c.to_string(),
                            currency: currency.to_string(),
                        }
                    }),
                    scheduled_prices: Vec::new(),
                }
            })
            .collect(),
    }
}

/// Writes one product and receives its stock; `Err` only for a transient
/// failure (the apply is then not recorded and may be retried).
async fn apply_product(
    ctx: &Ctx,
    id: &str,
    p: &ProductOut,
    l: &Loaded,
) -> Result<AppliedProduct, Problem> {
    let product = product_of(p, &l.view.currency);
    let body = serde_json::to_string(&product)?;
    let idem = Idem {
        key: hex(Fnv::default().str("import").str(id).str(&p.id).finish()),
        fp: hex(Fnv::default().str(&body).finish()),
    };
    let put: Result<PutAnswer<Product>, Problem> = wire::call(
        &ctx.env,
        Namespace::Catalog,
        CATALOG_NAME,
        &CatalogRequest::PutProduct { product, idem },
    )
    .await;
    let mut out = AppliedProduct {
        id: p.id.clone(),
        outcome: "applied".into(),
        detail: None,
        received: 0,
    };
    match put {
        Ok(_) => {}
        Err(e) if e.status >= 500 => return Err(e),
        Err(e) => {
            out.outcome = "failed".into();
            out.detail = Some(e.detail);
            return Ok(out);
        }
    }
    let Some(loc) = &l.settings.location else {
        return Ok(out);
    };
    let op = OpId::parse(&format!("imp.{id}")).map_err(|_| Problem::overloaded("bad op id"))?;
    let meta = Meta {
        actor: ctx.actor(),
        channel: None,
        reference: Some(format!("import {id}")),
        reason: Some("receipt".into()),
    };
    let lines: Vec<_> = p.variants.iter().filter(|v| v.qty > 0).collect();
    for chunk in lines.chunks(PARALLEL_RECEIPTS) {
        let results = join_all(chunk.iter().map(|v| {
            let cmd = Command::Receive {
                op: op.clone(),
                location: loc.clone(),
                qty: v.qty,
            };
            exec_sku(&ctx.env, &v.sku, vec![cmd], &meta, None)
        }))
        .await;
        for (v, r) in chunk.iter().zip(results) {
            let outs = r?;
            match outs.first().and_then(|o| o.problem()) {
                Some(pr) if pr.status >= 500 => return Err(pr),
                Some(pr) => {
                    out.detail = Some(format!("receipt of {}: {}", v.sku, pr.detail));
                }
                None => out.received += v.qty,
            }
        }
    }
    Ok(out)
}

/// `POST /v1/catalog/imports/{id}/apply` `{skip_rows_with_errors?}`
pub async fn apply(ctx: &Ctx) -> HttpResult {
    let id = import_id(ctx)?;
    let body: ApplyBody = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        ApplyBody::default()
    } else {
        parse_json(&ctx.body)?
    };
    let loaded: Loaded = on_import(ctx, &id, &ImportRequest::Load).await?;
    if let Some(first) = &loaded.view.apply {
        return Ok(reply(&id, first).header("Idempotent-Replayed", "true"));
    }
    let plan = match ci::plan(
        &loaded.parsed,
        &loaded.view.report,
        body.skip_rows_with_errors,
    ) {
        Ok(p) => p,
        Err(PlanError::Errors(n)) => {
            return Err(Problem::new(
                409,
                "invalid_request",
                format!(
                    "the report has {n} errors: fix the file, or apply with \
                     {{\"skip_rows_with_errors\": true}} to leave those products out"
                ),
            )
            .with("errors", n))
        }
    };
    let mut products = Vec::new();
    for p in &plan.products {
        products.push(apply_product(ctx, &id, p, &loaded).await?);
    }
    cache::catalog_changed();
    for (pid, line) in &plan.skipped {
        products.push(AppliedProduct {
            id: pid.clone(),
            outcome: "skipped".into(),
            detail: Some(format!("rows with errors (from line {line})")),
            received: 0,
        });
    }
    let count = |o: &str| products.iter().filter(|p| p.outcome == o).count() as u32;
    let outcome = ApplyOutcome {
        applied_at: rfc3339(ctx.now),
        skip_rows_with_errors: body.skip_rows_with_errors,
        products_applied: count("applied"),
        products_skipped: count("skipped"),
        products_failed: count("failed"),
        variants_applied: plan
            .products
            .iter()
            .zip(&products)
            .filter(|(_, a)| a.outcome == "applied")
            .map(|(p, _)| p.variants.len() as u32)
            .sum(),
        units_received: products.iter().map(|p| p.received).sum(),
        products,
    };
    let kept: AppliedAnswer = on_import(
        ctx,
        &id,
        &ImportRequest::Applied {
            outcome: Box::new(outcome),
            idem: ctx.idem()?,
        },
    )
    .await?;
    let r = reply(&id, &kept.outcome);
    Ok(if kept.replayed {
        r.header("Idempotent-Replayed", "true")
    } else {
        r
    })
}

fn reply(id: &str, o: &ApplyOutcome) -> Reply {
    Reply::json(200, &json!({"id": id, "status": "applied", "apply": o}))
}
