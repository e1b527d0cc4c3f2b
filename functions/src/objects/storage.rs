//! Small helpers over Durable Object SQLite storage that never panic and map
//! every error to a [`Problem`].
use serde::de::DeserializeOwned;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{SqlStorage, SqlStorageValue, Storage};

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
pub fn atomically(storage: &Storage, stmts: Vec<Stmt>) -> Result<(), Problem> {
    if stmts.is_empty() {
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
