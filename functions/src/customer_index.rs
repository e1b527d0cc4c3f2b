//! The customer lookup index: a read model in D1 (binding `DB`, table
//! `customers`, `migrations/0002_customers.sql`), one row per customer
//! written by its `Customer` object, read by `GET /v1/customers?email=`
//! and `?phone=` (exact match on the normalised value).
//!
//! One email and one phone belong to one customer: D1's unique indexes
//! decide. The object claims a new email or phone here *before* it commits
//! the profile change, so of two customers racing for one email exactly one
//! insert succeeds; the other gets a unique-constraint error and answers
//! 409 `contact_taken`, changing nothing. Rows are version-guarded (the
//! profile version; one object writes its row, one write at a time, so
//! `>=` lets a retry of the same version through). An erasure is committed
//! in the object first and then written here (contacts and name removed),
//! retried by the object's alarm until it lands.
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, Env};

use crate::http::Problem;

/// Most customers one lookup returns (an exact email or phone has one).
pub const MAX_LOOKUP: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub erased: bool,
    pub updated_at_ms: i64,
    pub version: u64,
}

/// Why a claim failed.
pub enum ClaimError {
    /// The email or phone belongs to another customer (its field and id).
    Taken {
        field: &'static str,
        owner: String,
    },
    Failed(Problem),
}

#[derive(Deserialize)]
pub struct Found {
    pub id: String,
    pub name: Option<String>,
    pub email_norm: Option<String>,
    pub phone_norm: Option<String>,
    pub updated_at: f64,
    pub version: f64,
}

fn db(env: &Env) -> Result<D1Database, Problem> {
    env.d1("DB")
        .map_err(|_| Problem::overloaded("the customer index (D1 binding DB) is not configured"))
}

fn d1_error(what: &str) -> impl Fn(worker::Error) -> Problem + '_ {
    move |e| {
        worker::console_error!("customer index: {what}: {e}");
        Problem::overloaded(format!("the customer index could not {what}; retry"))
    }
}

fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, JsValue::from_str)
}

/// Writes the row (unless a newer version is there). A unique-constraint
/// failure names who holds the email or phone.
pub async fn upsert(env: &Env, row: &IndexRow) -> Result<(), ClaimError> {
    if row.version > (1 << 53) {
        return Err(ClaimError::Failed(Problem::invalid("version out of range")));
    }
    let db = db(env).map_err(ClaimError::Failed)?;
    let stmt = db
        .prepare(
            "INSERT INTO customers (id, email_norm, phone_norm, name, erased, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET email_norm = excluded.email_norm,
               phone_norm = excluded.phone_norm, name = excluded.name, erased = excluded.erased,
               updated_at = excluded.updated_at, version = excluded.version
             WHERE excluded.version >= customers.version",
        )
        .bind(&[
            JsValue::from_str(&row.id),
            opt_text(row.email.as_deref()),
            opt_text(row.phone.as_deref()),
            opt_text(row.name.as_deref()),
            num(i64::from(row.erased)),
            num(row.updated_at_ms),
            num(row.version as i64),
        ])
        .map_err(|e| ClaimError::Failed(d1_error("prepare a write")(e)))?;
    match stmt.run().await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("UNIQUE") => {
            for (field, value) in [("email", &row.email), ("phone", &row.phone)] {
                let Some(v) = value else { continue };
                let found = find(env, field, v).await.map_err(ClaimError::Failed)?;
                if let Some(f) = found.into_iter().find(|f| f.id != row.id) {
                    return Err(ClaimError::Taken { field, owner: f.id });
                }
            }
            // The holder let go in between: the caller may retry.
            Err(ClaimError::Failed(Problem::overloaded(
                "the email or phone was being changed by another customer; retry",
            )))
        }
        Err(e) => Err(ClaimError::Failed(d1_error("record the customer")(e))),
    }
}

/// The customers with this normalised `email` or `phone` (`field`).
pub async fn find(env: &Env, field: &str, value: &str) -> Result<Vec<Found>, Problem> {
    let column = match field {
        "email" => "email_norm",
        "phone" => "phone_norm",
        _ => return Err(Problem::invalid("look up by email or phone")),
    };
    let stmt = db(env)?
        .prepare(format!(
            "SELECT id, name, email_norm, phone_norm, updated_at, version FROM customers
             WHERE {column} = ?1 AND erased = 0 ORDER BY id LIMIT ?2"
        ))
        .bind(&[JsValue::from_str(value), num(MAX_LOOKUP as i64)])
        .map_err(d1_error("prepare a lookup"))?;
    stmt.all()
        .await
        .map_err(d1_error("look customers up"))?
        .results()
        .map_err(d1_error("read the lookup"))
}
