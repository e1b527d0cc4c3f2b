//! Small helpers over Durable Object SQLite storage that never panic and map
//! every error to a [`Problem`].
use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{ScheduledTime, SqlStorage, SqlStorageValue, Storage};

use crate::http::Problem;

pub type Stmt = (&'static str, Vec<SqlStorageValue>);

/// Runs a query and decodes every row.
pub fn query<T: DeserializeOwned>(
    sql: &SqlStorage,
    q: &str,
    binds: Vec<SqlStorageValue>,
) -> Result<Vec<T>, Problem> {
    Ok(sql.exec(q, Some(binds))?.to_array::<T>()?)
}

/// Runs a statement.
pub fn exec(sql: &SqlStorage, q: &str, binds: Vec<SqlStorageValue>) -> Result<(), Problem> {
    sql.exec(q, Some(binds))?;
    Ok(())
}

/// Runs the statements in one SQLite transaction (`transactionSync`): all of
/// them or none. Falls back to plain execution (still one implicit batch,
/// since nothing awaits in between) if the runtime lacks `transactionSync`.
/// One statement runs as it is: SQLite applies a statement whole or not at
/// all, and `transactionSync` costs the runtime about as much again (a
/// Terminal's sale row: docs/benchmarks.md, 2026-12-07 session 3).
pub fn atomically(storage: &Storage, mut stmts: Vec<Stmt>) -> Result<(), Problem> {
    if stmts.len() <= 1 {
        if let Some((q, b)) = stmts.pop() {
            storage.sql().exec(q, Some(b))?;
        }
        return Ok(());
    }
    let sql = storage.sql();
    let raw: &JsValue = storage.as_raw().as_ref();
    let f = js_sys::Reflect::get(raw, &JsValue::from_str("transactionSync"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    match f {
        Some(f) => {
            let cb = Closure::once_into_js(move || -> Result<(), JsValue> {
                for (q, b) in stmts {
                    sql.exec(q, Some(b))
                        .map_err(|e| JsValue::from_str(&e.to_string()))?;
                }
                Ok(())
            });
            f.call1(raw, &cb)
                .map_err(|e| Problem::from(worker::Error::from(e)))?;
            Ok(())
        }
        None => {
            for (q, b) in stmts {
                sql.exec(q, Some(b))?;
            }
            Ok(())
        }
    }
}

/// Runs an object's idempotent `schema` statements once per instance
/// (`done` remembers it; a failure leaves it unset, so the next use retries).
pub fn create_once(done: &Cell<bool>, sql: &SqlStorage, schema: &[&str]) -> Result<(), Problem> {
    if !done.get() {
        for q in schema {
            exec(sql, q, vec![])?;
        }
        done.set(true);
    }
    Ok(())
}

/// Applies an object's schema once per schema, not once per instance: the
/// statements' hash (`parts`, FNV-1a) is kept in `schema_version`, and an
/// instance that finds it there skips `create` (one SELECT, where a cold
/// object's dozen idempotent statements, and the duplicate-column errors its
/// `ADD COLUMN` upgrades are expected to raise, cost about as much as the
/// read that woke it). Any change to the statements changes the hash, so
/// `create` runs again once on every existing object: it must stay
/// idempotent.
pub fn ensure_schema(
    sql: &SqlStorage,
    parts: &[&[&str]],
    create: impl FnOnce() -> Result<(), Problem>,
) -> Result<(), Problem> {
    #[derive(Deserialize)]
    struct Version {
        v: String,
    }
    let want = format!("{:016x}", schema_hash(parts));
    // Fails on a brand-new object (no table yet): then `create` runs.
    let stored = sql
        .exec("SELECT v FROM schema_version WHERE id = 0", None)
        .ok()
        .and_then(|c| c.to_array::<Version>().ok())
        .and_then(|rows| rows.into_iter().next());
    if stored.is_some_and(|r| r.v == want) {
        return Ok(());
    }
    create()?;
    exec(
        sql,
        "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 0),
         v TEXT NOT NULL)",
        vec![],
    )?;
    exec(
        sql,
        "INSERT OR REPLACE INTO schema_version (id, v) VALUES (0, ?)",
        vec![text(&want)],
    )
}

/// FNV-1a over the statements, each followed by a 0 byte.
fn schema_hash(parts: &[&[&str]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for q in parts.iter().flat_map(|p| p.iter()) {
        for b in q.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub fn text(s: &str) -> SqlStorageValue {
    SqlStorageValue::String(s.to_string())
}

pub fn opt_text(s: Option<&str>) -> SqlStorageValue {
    match s {
        Some(s) => text(s),
        None => SqlStorageValue::Null,
    }
}

pub fn int(i: i64) -> SqlStorageValue {
    SqlStorageValue::Integer(i)
}

/// The current time, epoch milliseconds (real time, also inside objects).
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

#[derive(Deserialize)]
struct JsonCell {
    json: String,
}

/// A coordinator object's state, kept as one JSON row: the `json` column of
/// row `key` in `table` (`k TEXT PRIMARY KEY, json TEXT NOT NULL`).
pub fn load_json<T: DeserializeOwned>(
    sql: &SqlStorage,
    table: &str,
    key: &str,
) -> Result<Option<T>, Problem> {
    let rows: Vec<JsonCell> = query(
        sql,
        &format!("SELECT json FROM {table} WHERE k = ?"),
        vec![text(key)],
    )?;
    match rows.first() {
        Some(r) => Ok(Some(serde_json::from_str(&r.json)?)),
        None => Ok(None),
    }
}

/// Stores `value` as row `key` of `table` (see [`load_json`]).
pub fn save_json<T: Serialize>(
    sql: &SqlStorage,
    table: &str,
    key: &str,
    value: &T,
) -> Result<(), Problem> {
    exec(
        sql,
        &format!("INSERT OR REPLACE INTO {table} (k, json) VALUES (?, ?)"),
        vec![text(key), text(&serde_json::to_string(value)?)],
    )
}

/// Points the object's alarm at `at_ms` (absolute epoch milliseconds), or
/// clears it (`set_alarm(i64)` would be an offset: TOOLCHAIN.md).
pub async fn alarm_at(storage: &Storage, at_ms: Option<i64>) -> Result<(), Problem> {
    match at_ms {
        Some(at) => {
            let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
            storage.set_alarm(ScheduledTime::new(date)).await?
        }
        None => storage.delete_alarm().await?,
    }
    Ok(())
}

/// Sets the alarm for `at` unless it is already set earlier: for objects
/// whose alarm serves several outboxes (each asks for its own retry time;
/// the earliest wins, and the alarm runs every outbox).
pub async fn alarm_by(storage: &Storage, at: i64) -> Result<(), Problem> {
    match storage.get_alarm().await? {
        Some(set) if set <= at => Ok(()),
        _ => alarm_at(storage, Some(at)).await,
    }
}

/// The first 16 hex digits of a fingerprint (`extract::fingerprint`) as the
/// number core's coordinators use as a request id or content fingerprint.
pub fn fp_u64(fp: &str) -> u64 {
    u64::from_str_radix(fp.get(..16).unwrap_or("0"), 16).unwrap_or(0)
}
