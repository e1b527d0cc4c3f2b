//! `CatalogImport`: one object per import id (a UUIDv7 the Worker makes).
//! It keeps what a dry run found (the parsed products, one row each, and
//! the report's findings in chunks, so no SQLite value nears its size
//! limit) and, once, what the apply did. It decides nothing: parsing,
//! the report and the apply plan are core's; the Worker drives the writes
//! into the Catalog and the SKU objects, each idempotent by the import id.
use std::cell::Cell;

use omnistock_core::catalog_import::{Finding, Parsed, ProductIn, Settings};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::storage::{self, int, text, Stmt};
use crate::http::Problem;
use crate::wire::catalog_import::{AppliedAnswer, ImportRequest, ImportView, Loaded};
use crate::wire::{self, Idem};

/// Findings per stored chunk.
const CHUNK: usize = 500;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS products (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS findings (seq INTEGER PRIMARY KEY, json TEXT NOT NULL)",
];

/// The import's row without its bulky lists.
#[derive(Serialize, Deserialize)]
struct Meta {
    view: ImportView,
    parsed: Parsed,
    settings: Settings,
    #[serde(default)]
    apply_key: Option<Idem>,
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[durable_object]
pub struct CatalogImport {
    state: State,
    schema_ok: Cell<bool>,
}

impl DurableObject for CatalogImport {
    fn new(state: State, _env: Env) -> Self {
        CatalogImport {
            state,
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = wire::read(&mut req).await;
        wire::answer(r.and_then(|x| self.handle(x)))
    }
}

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
                    return Ok(serde_json::to_value(self.full(&sql, m)?.view)?);
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
                    apply_key: None,
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
                Ok(serde_json::to_value(self.full(&sql, m)?.view)?)
            }
            ImportRequest::Load => {
                let m = self.require(&sql)?;
                Ok(serde_json::to_value(self.full(&sql, m)?)?)
            }
            ImportRequest::Applied { outcome, idem } => {
                let mut m = self.require(&sql)?;
                if let Some(first) = m.view.apply.clone() {
                    // Applied once: every later apply gets the first outcome.
                    return Ok(serde_json::to_value(AppliedAnswer {
                        outcome: first,
                        replayed: true,
                    })?);
                }
                let outcome = *outcome;
                m.view.apply = Some(outcome.clone());
                m.view.status = crate::wire::catalog_import::ImportStatus::Applied;
                m.apply_key = Some(idem);
                storage::atomically(
                    &storage,
                    vec![(
                        "UPDATE meta SET json = ? WHERE k = 'import'",
                        vec![text(&serde_json::to_string(&m)?)],
                    )],
                )?;
                Ok(serde_json::to_value(AppliedAnswer {
                    outcome,
                    replayed: false,
                })?)
            }
        }
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
    fn full(&self, sql: &worker::SqlStorage, m: Meta) -> Result<Loaded, Problem> {
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
        Ok(Loaded {
            view,
            parsed,
            settings: m.settings,
        })
    }
}
