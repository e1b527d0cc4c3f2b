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
pub fn atomically<Q: AsRef<str> + 'static>(
    storage: &Storage,
    mut stmts: Vec<(Q, Vec<SqlStorageValue>)>,
) -> Result<(), Problem> {
    if stmts.len() <= 1 {
        if let Some((q, b)) = stmts.pop() {
            storage.sql().exec(q.as_ref(), Some(b))?;
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
                    sql.exec(q.as_ref(), Some(b))
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
                sql.exec(q.as_ref(), Some(b))?;
            }
            Ok(())
        }
    }
}

/// An object's name (it was made by `id_from_name`), kept in its own
/// storage the first time an instance has it: an instance the runtime
/// wakes for its alarm has none (`ctx.id.name` is unset), and a name that
/// goes into data (an event feed's source) must not become `?`. `cache`
/// holds it for the instance; `None`: no instance with the name ran yet.
pub fn kept_name(
    id: &worker::ObjectId,
    sql: &SqlStorage,
    cache: &std::cell::RefCell<Option<String>>,
) -> Result<Option<String>, Problem> {
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    if let Some(n) = cache.borrow().as_ref() {
        return Ok(Some(n.clone()));
    }
    exec(
        sql,
        "CREATE TABLE IF NOT EXISTS object_name (id INTEGER PRIMARY KEY CHECK (id = 0),
         name TEXT NOT NULL)",
        vec![],
    )?;
    let name = match id.name() {
        Some(n) => {
            exec(
                sql,
                "INSERT OR IGNORE INTO object_name (id, name) VALUES (0, ?)",
                vec![text(&n)],
            )?;
            Some(n)
        }
        None => {
            let rows: Vec<Name> = query(sql, "SELECT name FROM object_name WHERE id = 0", vec![])?;
            rows.into_iter().next().map(|r| r.name)
        }
    };
    cache.borrow_mut().clone_from(&name);
    Ok(name)
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

#[derive(Deserialize)]
struct PieceCell {
    k: String,
    json: String,
}

/// The largest piece a stored JSON value or snapshot is cut into (bytes):
/// SQLite refuses a string over 2 MB in Cloudflare's runtime. The var
/// `STORAGE_PIECE_BYTES` (1,024 to 1,048,576) sets it: small in a test,
/// to see pieces.
pub const PIECE_BYTES: usize = 512 * 1024;

/// This deployment's [`PIECE_BYTES`].
pub fn piece_bytes(env: &worker::Env) -> usize {
    env.var("STORAGE_PIECE_BYTES")
        .ok()
        .and_then(|v| v.to_string().parse::<usize>().ok())
        .filter(|n| (1024..=1 << 20).contains(n))
        .unwrap_or(PIECE_BYTES)
}

/// `s` cut into pieces of at most `max` bytes (at least one character
/// each), at character boundaries; one empty piece for an empty `s`.
pub fn split_parts(s: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        if rest.len() <= max {
            if !rest.is_empty() || parts.is_empty() {
                parts.push(rest);
            }
            return parts;
        }
        let mut cut = max.max(1);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // A character longer than `max`: a piece of its own.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
}

/// The rows that store `json` as row `key` of a `(k, json)` table in
/// pieces of at most `max` bytes: one row `(key, json)` when it fits;
/// else `(key, "~<n>~" + first piece)` and `(key#0001, piece 2)` ...
/// (serde JSON never starts with `~`). A value that fits leaves the tail of
/// an earlier, longer one in place, unread; a longer one replaces it.
pub fn json_rows(key: &str, json: &str, max: usize) -> Vec<(String, String)> {
    let parts = split_parts(json, max);
    if parts.len() == 1 {
        return vec![(key.to_string(), json.to_string())];
    }
    let mut rows = vec![(key.to_string(), format!("~{}~{}", parts.len(), parts[0]))];
    for (n, p) in parts.iter().enumerate().skip(1) {
        rows.push((piece_key(key, n), p.to_string()));
    }
    rows
}

fn piece_key(key: &str, n: usize) -> String {
    format!("{key}#{n:04}")
}

/// The bounds of `key`'s piece rows: every `k` with `lo < k < hi`.
fn piece_range(key: &str) -> (String, String) {
    (format!("{key}#"), format!("{key}$"))
}

/// The statements that store `json` as row `key` (see [`json_rows`]) of the
/// table whose `upsert` is `INSERT OR REPLACE INTO t (k, json) VALUES (?, ?)`
/// and whose `trim` is `DELETE FROM t WHERE k > ? AND k < ?`.
pub fn json_row_stmts(
    upsert: &'static str,
    trim: &'static str,
    key: &str,
    json: &str,
    max: usize,
) -> Vec<Stmt> {
    row_stmts(upsert, trim, key, json, max)
}

/// [`json_row_stmts`] for statements of any string type.
fn row_stmts<Q: Clone>(
    upsert: Q,
    trim: Q,
    key: &str,
    json: &str,
    max: usize,
) -> Vec<(Q, Vec<SqlStorageValue>)> {
    let rows = json_rows(key, json, max);
    let mut stmts = Vec::new();
    if rows.len() > 1 {
        let (lo, hi) = piece_range(key);
        stmts.push((trim, vec![text(&lo), text(&hi)]));
    }
    for (k, j) in rows {
        stmts.push((upsert.clone(), vec![text(&k), text(&j)]));
    }
    stmts
}

/// Row `key`'s whole text from its `first` text and, when that says it
/// is in pieces, the piece rows of `key` in `pieces_table` (`k`, `json`).
/// Pieces that do not add up are an error (503), never a guess.
pub fn rejoin(
    sql: &SqlStorage,
    pieces_table: &str,
    key: &str,
    first: String,
) -> Result<String, Problem> {
    let pieces: Vec<(String, String)> = if first.starts_with('~') {
        let (lo, hi) = piece_range(key);
        query::<PieceCell>(
            sql,
            &format!("SELECT k, json FROM {pieces_table} WHERE k > ? AND k < ? ORDER BY k"),
            vec![text(&lo), text(&hi)],
        )?
        .into_iter()
        .map(|c| (c.k, c.json))
        .collect()
    } else {
        Vec::new()
    };
    join_pieces(key, first, &pieces).map_err(|why| {
        worker::console_error!(
            "{pieces_table} row {key} is stored in pieces that do not add up: {why}"
        );
        Problem::overloaded("stored state could not be read")
    })
}

/// The whole value from row `key`'s `first` text and its piece rows
/// (`(k, json)`, in key order), or why they do not make one.
pub fn join_pieces(
    key: &str,
    first: String,
    pieces: &[(String, String)],
) -> Result<String, String> {
    let Some(rest) = first.strip_prefix('~') else {
        return Ok(first);
    };
    let (n, head) = rest
        .split_once('~')
        .and_then(|(n, head)| Some((n.parse::<usize>().ok()?, head)))
        .filter(|(n, _)| *n >= 2)
        .ok_or("a malformed piece count")?;
    if pieces.len() < n - 1 {
        return Err(format!("{} of its {n} pieces", pieces.len() + 1));
    }
    let mut json = head.to_string();
    for (i, (k, j)) in pieces.iter().take(n - 1).enumerate() {
        if *k != piece_key(key, i + 1) {
            return Err(format!("piece {} is missing", i + 1));
        }
        json.push_str(j);
    }
    Ok(json)
}

/// A coordinator object's state, kept as one JSON row: the `json` column of
/// row `key` in `table` (`k TEXT PRIMARY KEY, json TEXT NOT NULL`), in
/// pieces when it is large ([`json_rows`]). Pieces that do not add up are an
/// error (503), never a guess.
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
    let Some(first) = rows.into_iter().next() else {
        return Ok(None);
    };
    let json = rejoin(sql, table, key, first.json)?;
    Ok(Some(serde_json::from_str(&json)?))
}

/// Stores `value` as row `key` of `table`, in pieces of at most `max`
/// bytes when it is larger (see [`load_json`]), in one transaction.
pub fn save_json<T: Serialize>(
    storage: &Storage,
    table: &str,
    key: &str,
    value: &T,
    max: usize,
) -> Result<(), Problem> {
    let json = serde_json::to_string(value)?;
    let stmts = row_stmts(
        format!("INSERT OR REPLACE INTO {table} (k, json) VALUES (?, ?)"),
        format!("DELETE FROM {table} WHERE k > ? AND k < ?"),
        key,
        &json,
        max,
    );
    atomically(storage, stmts)
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

#[cfg(test)]
mod tests {
    use super::{join_pieces, json_rows, split_parts};

    #[test]
    fn pieces_rejoin_and_stay_within_their_bound() {
        assert_eq!(split_parts("", 4), vec![""]);
        assert_eq!(split_parts("abcd", 4), vec!["abcd"]);
        assert_eq!(split_parts("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        // Never inside a character: "é" is 2 bytes, "€" 3.
        let s = "aé€b€€é";
        for max in 1..=s.len() + 1 {
            let parts = split_parts(s, max);
            assert_eq!(parts.concat(), s, "max {max}");
            for p in &parts {
                assert!(!p.is_empty());
                assert!(p.len() <= max || p.chars().count() == 1, "{p:?} over {max}");
            }
        }
    }

    /// `json_rows` as `load_json` reads them back: the first row, and the
    /// piece rows in key order.
    fn reread(key: &str, rows: Vec<(String, String)>) -> Result<String, String> {
        let mut rows = rows.into_iter();
        let (k, first) = rows.next().unwrap();
        assert_eq!(k, key);
        let mut pieces: Vec<(String, String)> = rows.collect();
        pieces.sort();
        join_pieces(key, first, &pieces)
    }

    #[test]
    fn a_json_row_is_stored_whole_or_in_pieces_and_read_back() {
        let small = r#"{"a":1}"#;
        assert_eq!(
            json_rows("o", small, 1024),
            vec![("o".into(), small.into())]
        );
        assert_eq!(reread("o", json_rows("o", small, 1024)).unwrap(), small);
        let big = format!(r#"{{"lines":"{}é"}}"#, "x".repeat(5000));
        let rows = json_rows("o", &big, 1024);
        assert_eq!(rows.len(), 5);
        assert!(rows[0].1.starts_with("~5~{"));
        assert_eq!(rows[1].0, "o#0001");
        assert!(rows
            .iter()
            .all(|(k, _)| k == "o" || (k.as_str() > "o#" && k.as_str() < "o$")));
        assert_eq!(reread("o", rows.clone()).unwrap(), big);
        // A stale, longer tail after the pieces is not read.
        let mut stale = rows.clone();
        stale.push(("o#0009".into(), "garbage".into()));
        assert_eq!(reread("o", stale).unwrap(), big);
        // A piece missing, or a malformed count: an error, never a guess.
        let mut lost = rows.clone();
        lost.remove(2);
        assert!(reread("o", lost).is_err());
        let mut gap = rows.clone();
        gap[2].0 = "o#0007".into();
        assert!(reread("o", gap).is_err());
        for bad in ["~~{}", "~x~{}", "~0~{}", "~1~{}"] {
            assert!(join_pieces("o", bad.into(), &[]).is_err(), "{bad}");
        }
    }
}
