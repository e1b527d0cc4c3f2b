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
use omnistock_core::catalog_import::{self as ci, ImportError, NamingRule, Settings};
use omnistock_core::fingerprint::Fnv;
use omnistock_core::LocationId;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::facts;
use crate::cache;
use crate::extract::Ctx;
use crate::http::{check_id, parse_json, rfc3339, HttpResult, Problem, Reply};
use crate::wire::catalog::{CatalogRequest, ImportCheckAnswer, CATALOG_NAME};
use crate::wire::catalog_import::{
    ApplyOutcome, ImportRequest, ImportStatus, ImportView, StartAnswer,
};
use crate::wire::{self, Idem, Namespace};

/// Largest CSV accepted (checked on Content-Length before reading, and on
/// the bytes read). JSON bodies keep API.md's 64 KiB.
pub const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;

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
        progress: None,
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

/// How long an apply request waits for the job before answering 202 with
/// its progress: 80 polls of the import's object, 100 ms apart.
const APPLY_POLLS: u32 = 80;
const APPLY_POLL_MS: u64 = 100;

/// `POST /v1/catalog/imports/{id}/apply` `{skip_rows_with_errors?}`: starts
/// the apply in the import's object (once; a second request joins the
/// first) and answers 200 with the outcome when it finishes within about
/// 8 s, else (or at once with `Prefer: respond-async`) 202 with its
/// progress (`GET /v1/catalog/imports/{id}` follows it).
pub async fn apply(ctx: &Ctx) -> HttpResult {
    let id = import_id(ctx)?;
    let body: ApplyBody = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        ApplyBody::default()
    } else {
        parse_json(&ctx.body)?
    };
    ctx.idem()?;
    let start: StartAnswer = on_import(
        ctx,
        &id,
        &ImportRequest::StartApply {
            skip_rows_with_errors: body.skip_rows_with_errors,
            actor: ctx.actor(),
        },
    )
    .await?;
    let mut view = start.view;
    let polls = if ctx.respond_async { 0 } else { APPLY_POLLS };
    for _ in 0..polls {
        if view.status != ImportStatus::Applying {
            break;
        }
        worker::Delay::from(std::time::Duration::from_millis(APPLY_POLL_MS)).await;
        view = on_import(ctx, &id, &ImportRequest::Get).await?;
    }
    match &view.apply {
        Some(o) => {
            cache::catalog_changed();
            let r = reply(&id, o);
            Ok(if start.finished_before {
                r.header("Idempotent-Replayed", "true")
            } else {
                r
            })
        }
        None => Ok(Reply::json(
            202,
            &json!({"id": id, "status": "applying", "progress": view.progress}),
        )
        .header("Location", &format!("/v1/catalog/imports/{id}"))),
    }
}

fn reply(id: &str, o: &ApplyOutcome) -> Reply {
    Reply::json(200, &json!({"id": id, "status": "applied", "apply": o}))
}
