//! Messages to a `CatalogImport` object (one per import id) and the
//! import's answers. The Worker parses the file and builds the report with
//! core (`omnistock_core::catalog_import`); the object stores them and the
//! apply's outcome.
use omnistock_core::catalog_import::{Format, Parsed, Report, Settings};
use serde::{Deserialize, Serialize};

/// Where an import stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Parsed and reported (a dry run): nothing written yet.
    Ready,
    /// The apply runs in the import's object (its alarm), a chunk of
    /// products at a time: `progress` says how far.
    Applying,
    /// Applied once; its outcome is kept.
    Applied,
}

/// How far a running apply has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyProgress {
    pub skip_rows_with_errors: bool,
    pub started_at: String,
    pub products_total: u32,
    pub products_done: u32,
    /// Transient failures in a row (a busy object): retried with backoff.
    #[serde(default)]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One product's fate in an apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedProduct {
    pub id: String,
    /// `applied`, `skipped` (rows with errors) or `failed` (the catalog refused it).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Units received at the import's location.
    pub received: i64,
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub applied_at: String,
    pub skip_rows_with_errors: bool,
    pub products_applied: u32,
    pub products_skipped: u32,
    pub products_failed: u32,
    pub variants_applied: u32,
    pub units_received: i64,
    pub products: Vec<AppliedProduct>,
}

/// The import as `GET /v1/catalog/imports/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportView {
    pub id: String,
    pub status: ImportStatus,
    pub format: Format,
    pub created_at: String,
    #[serde(default)]
    pub location: Option<String>,
    pub currency: String,
    pub report: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ApplyProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyOutcome>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ImportRequest {
    /// Stores a new import (a second `Create` of the same id answers the
    /// stored view: the POST's retry after a crash).
    Create {
        view: Box<ImportView>,
        parsed: Box<Parsed>,
        settings: Settings,
    },
    Get,
    /// Starts the apply (once: a started or finished apply is answered as
    /// it stands). Refused (409) while the report has errors, unless
    /// skipping those products. `actor` is recorded in the ledger.
    StartApply {
        skip_rows_with_errors: bool,
        actor: String,
    },
}

/// The answer to `StartApply`: the import, and whether its apply had
/// already finished before this call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartAnswer {
    pub view: ImportView,
    pub finished_before: bool,
}
