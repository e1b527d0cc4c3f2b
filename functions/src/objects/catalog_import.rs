//! `CatalogImport`: one object per import id (a UUIDv7 the Worker makes).
//! It keeps what a dry run found (the parsed products, one row each, and
//! the report's findings in chunks, so no SQLite value nears its size
//! limit) and runs the apply as a job: `StartApply` stores core's plan (one
//! row per product) and sets the alarm; each alarm run applies up to
//! `PRODUCTS_PER_RUN` products (one Catalog write per product, all its
//! variants or none, keyed by (import, product); then its stock received
//! through the SKU objects with op id `imp.<import>`), records each
//! product's result with the progress in one transaction, and re-arms. So
//! a crash redoes at most the product in flight, and that is a replay.
//! A transient failure is retried with backoff (at most `MAX_RETRIES` in a
//! row; a new apply request resumes after that). The outcome is kept once.
use std::cell::Cell;

use futures_util::future::join_all;
use omnistock_core::catalog_import::{self as ci, Finding, ProductIn, ProductOut, Settings};
use omnistock_core::fingerprint::Fnv;
use omnistock_core::{Command, OpId};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::storage::{self, int, text, Stmt};
use crate::http::{rfc3339, Problem};
use crate::wire::catalog::{CatalogRequest, Money, Product, PutAnswer, Variant, CATALOG_NAME};
use crate::wire::catalog_import::{
    AppliedProduct, ApplyOutcome, ApplyProgress, ImportRequest, ImportStatus, ImportView,
    StartAnswer,
};
use crate::wire::sku_stock::Meta as StockMeta;
use crate::wire::{self, Idem, Namespace};

/// Products one alarm run applies before re-arming (each is one Catalog
/// call and its SKUs' receipts): short runs, progress visible.
const PRODUCTS_PER_RUN: i64 = 10;

/// SKU objects called at once for one product's receipts.
const PARALLEL_RECEIPTS: usize = 16;

/// Transient failures in a row before the job waits for a new apply request.
const MAX_RETRIES: u32 = 20;

/// Backoff after the n-th transient failure in a row: 0.5 s doubling, at most 60 s.
fn backoff_ms(n: u32) -> i64 {
    (500i64 << n.min(7)).min(60_000)
}

/// Findings per stored chunk.
const CHUNK: usize = 500;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS products (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS findings (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    // The apply job: core's plan, one product per row, and each one's result.
    "CREATE TABLE IF NOT EXISTS plan (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS results (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
];

/// The import's row without its bulky lists.
#[derive(Serialize, Deserialize)]
struct Meta {
    view: ImportView,
    parsed: ci::Parsed,
    settings: Settings,
    #[serde(default)]
    job: Option<Job>,
}

/// A running apply's fixed facts (its progress is in the view).
#[derive(Clone, Serialize, Deserialize)]
struct Job {
    actor: String,
    /// Products left out for their errors: (id, first line).
    skipped: Vec<(String, u32)>,
}

#[derive(Deserialize)]
struct SeqJsonRow {
    seq: i64,
    json: String,
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[durable_object]
pub struct CatalogImport {
    state: State,
    env: Env,
    schema_ok: Cell<bool>,
    /// A request started (or resumed) the apply: run the alarm now.
    arm: Cell<bool>,
}

impl DurableObject for CatalogImport {
    fn new(state: State, env: Env) -> Self {
        CatalogImport {
            state,
            env,
            schema_ok: Cell::new(false),
            arm: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let next = match self.run().await {
            Ok(next) => next,
            Err(p) => {
                // Storage itself failed: try again soon.
                worker::console_error!("catalog import: {}", p.detail);
                Some(storage::now_ms() + backoff_ms(3))
            }
        };
        if let Some(at) = next {
            if let Err(p) = storage::alarm_at(&self.state.storage(), Some(at)).await {
                worker::console_error!("catalog import: alarm not set: {}", p.detail);
            }
        }
        Response::ok("")
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for CatalogImport {
    async fn receive(&self, msg: &str) -> String {
        let answer = wire::decode(msg).and_then(|x| self.handle(x));
        if self.arm.replace(false) {
            if let Err(p) = storage::alarm_at(&self.state.storage(), Some(storage::now_ms())).await
            {
                return wire::reply::<()>(Err(p));
            }
        }
        wire::reply(answer)
    }
}

crate::rpc_receiver!(CatalogImport);

impl CatalogImport {
    fn handle(&self, req: ImportRequest) -> Result<serde_json::Value, Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        if !self.schema_ok.get() {
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.schema_ok.set(true);
        }
        match req {
            ImportRequest::Create {
                view,
                parsed,
                settings,
            } => {
                if let Some(m) = self.meta(&sql)? {
                    return Ok(serde_json::to_value(self.full(&sql, m)?.0)?);
                }
                let mut stmts: Vec<Stmt> = Vec::new();
                for (i, p) in parsed.products.iter().enumerate() {
                    stmts.push((
                        "INSERT INTO products (seq, json) VALUES (?, ?)",
                        vec![int(i as i64), text(&serde_json::to_string(p)?)],
                    ));
                }
                for (i, c) in view.report.rows.chunks(CHUNK).enumerate() {
                    stmts.push((
                        "INSERT INTO findings (seq, json) VALUES (?, ?)",
                        vec![int(i as i64), text(&serde_json::to_string(c)?)],
                    ));
                }
                let mut slim = Meta {
                    view: (*view).clone(),
                    parsed: *parsed,
                    settings,
                    job: None,
                };
                slim.view.report.rows = Vec::new();
                slim.parsed.products = Vec::new();
                stmts.push((
                    "INSERT INTO meta (k, json) VALUES ('import', ?)",
                    vec![text(&serde_json::to_string(&slim)?)],
                ));
                storage::atomically(&storage, stmts)?;
                Ok(serde_json::to_value(view)?)
            }
            ImportRequest::Get => {
                let m = self.require(&sql)?;
                Ok(serde_json::to_value(self.full(&sql, m)?.0)?)
            }
            ImportRequest::StartApply {
                skip_rows_with_errors,
                actor,
            } => {
                let mut m = self.require(&sql)?;
                if m.view.apply.is_some() {
                    let view = self.full(&sql, m)?.0;
                    return Ok(serde_json::to_value(StartAnswer {
                        view,
                        finished_before: true,
                    })?);
                }
                if m.view.status == ImportStatus::Applying {
                    // Running (or stopped after MAX_RETRIES): run it now.
                    if let Some(pr) = &mut m.view.progress {
                        pr.retries = 0;
                    }
                    self.save(&storage, &m, vec![])?;
                    self.arm.set(true);
                    return Ok(serde_json::to_value(StartAnswer {
                        view: m.view,
                        finished_before: false,
                    })?);
                }
                let (view, parsed) = self.full(&sql, self.require(&sql)?)?;
                let plan = match ci::plan(&parsed, &view.report, skip_rows_with_errors) {
                    Ok(p) => p,
                    Err(ci::PlanError::Errors(n)) => {
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
                let mut stmts: Vec<Stmt> = Vec::with_capacity(plan.products.len());
                for (i, p) in plan.products.iter().enumerate() {
                    stmts.push((
                        "INSERT OR REPLACE INTO plan (seq, json) VALUES (?, ?)",
                        vec![int(i as i64), text(&serde_json::to_string(p)?)],
                    ));
                }
                m.view.status = ImportStatus::Applying;
                m.view.progress = Some(ApplyProgress {
                    skip_rows_with_errors,
                    started_at: rfc3339(storage::now_ms()),
                    products_total: plan.products.len() as u32,
                    products_done: 0,
                    retries: 0,
                    last_error: None,
                });
                m.job = Some(Job {
                    actor,
                    skipped: plan.skipped,
                });
                self.save(&storage, &m, stmts)?;
                self.arm.set(true);
                Ok(serde_json::to_value(StartAnswer {
                    view: m.view,
                    finished_before: false,
                })?)
            }
        }
    }

    /// Writes the import's row (and `stmts`) in one transaction.
    fn save(
        &self,
        storage: &worker::Storage,
        m: &Meta,
        mut stmts: Vec<Stmt>,
    ) -> Result<(), Problem> {
        stmts.push((
            "UPDATE meta SET json = ? WHERE k = 'import'",
            vec![text(&serde_json::to_string(m)?)],
        ));
        storage::atomically(storage, stmts)
    }

    /// One alarm run of the apply; when to run again (`None`: finished, or
    /// waiting for a new apply request after too many failures).
    async fn run(&self) -> Result<Option<i64>, Problem> {
        let storage = self.state.storage();
        let sql = storage.sql();
        let Some(mut m) = self.meta(&sql)? else {
            return Ok(None);
        };
        let (Some(job), Some(mut progress)) = (m.job.clone(), m.view.progress.clone()) else {
            return Ok(None);
        };
        if m.view.status != ImportStatus::Applying || progress.retries >= MAX_RETRIES {
            return Ok(None);
        }
        let rows: Vec<SeqJsonRow> = storage::query(
            &sql,
            "SELECT seq, json FROM plan WHERE seq >= ? ORDER BY seq LIMIT ?",
            vec![
                int(i64::from(progress.products_done)),
                int(PRODUCTS_PER_RUN),
            ],
        )?;
        for r in rows {
            let p: ProductOut = serde_json::from_str(&r.json)?;
            match self.apply_product(&m, &job.actor, &p).await {
                Ok(a) => {
                    progress.products_done = (r.seq + 1) as u32;
                    progress.retries = 0;
                    progress.last_error = None;
                    m.view.progress = Some(progress.clone());
                    self.save(
                        &storage,
                        &m,
                        vec![(
                            "INSERT OR REPLACE INTO results (seq, json) VALUES (?, ?)",
                            vec![int(r.seq), text(&serde_json::to_string(&a)?)],
                        )],
                    )?;
                }
                Err(e) => {
                    progress.retries += 1;
                    progress.last_error = Some(e.detail);
                    let retries = progress.retries;
                    m.view.progress = Some(progress);
                    self.save(&storage, &m, vec![])?;
                    return Ok(
                        (retries < MAX_RETRIES).then(|| storage::now_ms() + backoff_ms(retries))
                    );
                }
            }
        }
        if progress.products_done < progress.products_total {
            return Ok(Some(storage::now_ms()));
        }
        self.finish(&storage, m, job, progress)?;
        Ok(None)
    }

    /// Keeps the outcome (once) and drops the job's rows.
    fn finish(
        &self,
        storage: &worker::Storage,
        mut m: Meta,
        job: Job,
        progress: ApplyProgress,
    ) -> Result<(), Problem> {
        let sql = storage.sql();
        let plan: Vec<SeqJsonRow> =
            storage::query(&sql, "SELECT seq, json FROM plan ORDER BY seq", vec![])?;
        let results: Vec<SeqJsonRow> =
            storage::query(&sql, "SELECT seq, json FROM results ORDER BY seq", vec![])?;
        let mut products: Vec<AppliedProduct> =
            Vec::with_capacity(results.len() + job.skipped.len());
        let mut variants_applied = 0u32;
        for (p, r) in plan.iter().zip(&results) {
            let a: AppliedProduct = serde_json::from_str(&r.json)?;
            if a.outcome == "applied" {
                let p: ProductOut = serde_json::from_str(&p.json)?;
                variants_applied += p.variants.len() as u32;
            }
            products.push(a);
        }
        for (pid, line) in &job.skipped {
            products.push(AppliedProduct {
                id: pid.clone(),
                outcome: "skipped".into(),
                detail: Some(format!("rows with errors (from line {line})")),
                received: 0,
            });
        }
        let count = |o: &str| products.iter().filter(|p| p.outcome == o).count() as u32;
        let outcome = ApplyOutcome {
            applied_at: rfc3339(storage::now_ms()),
            skip_rows_with_errors: progress.skip_rows_with_errors,
            products_applied: count("applied"),
            products_skipped: count("skipped"),
            products_failed: count("failed"),
            variants_applied,
            units_received: products.iter().map(|p| p.received).sum(),
            products,
        };
        m.view.apply = Some(outcome);
        m.view.status = ImportStatus::Applied;
        m.view.progress = Some(progress);
        m.job = None;
        self.save(
            storage,
            &m,
            vec![
                ("DELETE FROM plan", vec![]),
                ("DELETE FROM results", vec![]),
            ],
        )
    }

    /// Writes one product and receives its stock; `Err` only for a transient
    /// failure (retried; every step is a replay where it was done).
    async fn apply_product(
        &self,
        m: &Meta,
        actor: &str,
        p: &ProductOut,
    ) -> Result<AppliedProduct, Problem> {
        let id = &m.view.id;
        let product = product_of(p, &m.view.currency);
        let body = serde_json::to_string(&product)?;
        let idem = Idem {
            key: hex(Fnv::default().str("import").str(id).str(&p.id).finish()),
            fp: hex(Fnv::default().str(&body).finish()),
        };
        let put: Result<PutAnswer<Product>, Problem> = wire::call(
            &self.env,
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
        let Some(loc) = &m.settings.location else {
            return Ok(out);
        };
        let op = OpId::parse(&format!("imp.{id}")).map_err(|_| Problem::overloaded("bad op id"))?;
        let meta = StockMeta {
            actor: actor.to_string(),
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
                wire::sku_stock::exec(&self.env, &v.sku, vec![cmd], &meta, None)
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

    fn meta(&self, sql: &worker::SqlStorage) -> Result<Option<Meta>, Problem> {
        let rows: Vec<JsonRow> =
            storage::query(sql, "SELECT json FROM meta WHERE k = 'import'", vec![])?;
        match rows.first() {
            Some(r) => Ok(Some(serde_json::from_str(&r.json)?)),
            None => Ok(None),
        }
    }

    fn require(&self, sql: &worker::SqlStorage) -> Result<Meta, Problem> {
        self.meta(sql)?
            .ok_or_else(|| Problem::not_found("no such import"))
    }

    /// The import with its products and findings put back.
    fn full(&self, sql: &worker::SqlStorage, m: Meta) -> Result<(ImportView, ci::Parsed), Problem> {
        let mut view = m.view;
        let mut parsed = m.parsed;
        let rows: Vec<JsonRow> =
            storage::query(sql, "SELECT json FROM findings ORDER BY seq", vec![])?;
        for r in rows {
            let chunk: Vec<Finding> = serde_json::from_str(&r.json)?;
            view.report.rows.extend(chunk);
        }
        let rows: Vec<JsonRow> =
            storage::query(sql, "SELECT json FROM products ORDER BY seq", vec![])?;
        for r in rows {
            let p: ProductIn = serde_json::from_str(&r.json)?;
            parsed.products.push(p);
        }
        Ok((view, parsed))
    }
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// The catalog product an import's product becomes.
fn product_of(p: &ProductOut, currency: &str) -> Product {
    let money = |d: rust_decimal::Decimal| {
        let mut d = d;
        d.set_sign_positive(true); // only a zero can be "-0" here
        Money {
            amount: d.to_string(),
            currency: currency.to_string(),
        }
    };
    Product {
        id: p.id.clone(),
        title: p.title.clone(),
        variants: p
            .variants
            .iter()
            .map(|v| Variant {
                sku: v.sku.clone(),
                barcode: v.barcode.clone(),
                options: v.options.clone(),
                price: money(v.price),
                tax_code: (!v.taxable).then(|| "exempt".to_string()),
                channel_prices: None,
                compare_at_price: v.compare_at_price.map(money),
                scheduled_prices: Vec::new(),
            })
            .collect(),
    }
}
