//! QuickBooks Online sync (issue 10): posts a day's receipts (core's day
//! book, rendered by `api::reports::qbo_entity`) to the configured company,
//! each once:
//!
//! - Every receipt has a `requestid` derived from its key (`S:<sale>`,
//!   `O:<order>`, `R:<return>:<n>`), so a retry (after a crash mid-sync,
//!   a timeout, a second run) is recognised by QBO and never books twice.
//!   Its row in D1 (`qbo_sync`) is written `pending` before the post and
//!   `synced` (with QBO's Id) or `rejected` (a 4xx, with QBO's fault) after.
//! - 429 and 5xx are retried in the same run with backoff (`Retry-After`
//!   honoured up to `MAX_WAIT_MS`), at most `MAX_TRIES` times, then left
//!   `failed` for the next run. A rejected receipt is not retried.
//! - OAuth 2: an access token is obtained from `QBO_TOKEN_URL` with the
//!   refresh token (`QBO_REFRESH_TOKEN`, a secret) and the client id and
//!   secret (HTTP Basic); a refresh token the server rotates is kept in D1
//!   (`qbo_auth`) and used next time. A 401 refreshes once.
//!
//! Config (vars, secrets for the last three): QBO_BASE_URL, QBO_REALM_ID,
//! QBO_TOKEN_URL, QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{Delay, Env, Fetch, Headers, Method, Request, RequestInit};

use crate::api::reports::{qbo_entity, qbo_kind};
use crate::http::{rfc3339, Problem};
use crate::reports::{self, d1_error, num};

/// Receipts posted per run (a bound on subrequests; the rest wait for the
/// next run, which skips what synced).
pub const MAX_PER_RUN: usize = 40;
/// Tries per receipt per run on 429/5xx, and the longest wait between.
pub const MAX_TRIES: u32 = 3;
pub const BASE_WAIT_MS: u64 = 500;
pub const MAX_WAIT_MS: u64 = 5_000;
/// Longest error text kept per receipt.
pub const MAX_ERROR: usize = 500;

struct Config {
    base: String,
    realm: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    refresh: String,
}

fn get(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|v| v.to_string()))
        .ok()
        .filter(|v| !v.is_empty())
}

fn config(env: &Env) -> Option<Config> {
    Some(Config {
        base: get(env, "QBO_BASE_URL")?.trim_end_matches('/').to_string(),
        realm: get(env, "QBO_REALM_ID")?,
        token_url: get(env, "QBO_TOKEN_URL")?,
        client_id: get(env, "QBO_CLIENT_ID")?,
        client_secret: get(env, "QBO_CLIENT_SECRET")?,
        refresh: get(env, "QBO_REFRESH_TOKEN")?,
    })
}

/// A stable QBO `requestid` of a receipt key (32 hex digits).
pub fn request_id(key: &str) -> String {
    let h = |seed: u64| {
        let mut h = seed;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    format!(
        "{:016x}{:016x}",
        h(0xcbf2_9ce4_8422_2325),
        h(0x84222325cbf29ce4)
    )
}

/// One receipt's sync state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncRow {
    pub doc: String,
    pub kind: String,
    pub date: String,
    pub request_id: String,
    pub status: String,
    pub attempts: f64,
    pub qbo_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub date: String,
    pub configured: bool,
    pub receipts: usize,
    pub synced: usize,
    pub already_synced: usize,
    pub rejected: usize,
    pub failed: usize,
    /// Receipts left for the next run (beyond `MAX_PER_RUN`).
    pub deferred: usize,
    pub retries: u32,
}

async fn row(env: &Env, doc: &str) -> Result<Option<SyncRow>, Problem> {
    reports::db(env)?
        .prepare("SELECT * FROM qbo_sync WHERE doc = ?1")
        .bind(&[JsValue::from_str(doc)])
        .map_err(d1_error("prepare a sync read"))?
        .first(None)
        .await
        .map_err(d1_error("read the sync log"))
}

#[allow(clippy::too_many_arguments)]
async fn record(
    env: &Env,
    doc: &str,
    kind: &str,
    date: &str,
    rid: &str,
    status: &str,
    qbo_id: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<(), Problem> {
    let opt = |s: Option<&str>| s.map_or(JsValue::NULL, JsValue::from_str);
    reports::db(env)?
        .prepare(
            "INSERT INTO qbo_sync (doc, kind, date, request_id, status, attempts, qbo_id, error,
               updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (doc) DO UPDATE SET status = excluded.status,
               attempts = qbo_sync.attempts + excluded.attempts,
               qbo_id = coalesce(excluded.qbo_id, qbo_sync.qbo_id),
               error = excluded.error, updated_at = excluded.updated_at",
        )
        .bind(&[
            JsValue::from_str(doc),
            JsValue::from_str(kind),
            JsValue::from_str(date),
            JsValue::from_str(rid),
            JsValue::from_str(status),
            num(i64::from(status == "pending")),
            opt(qbo_id),
            error.map_or(JsValue::NULL, |e| JsValue::from_str(&cut(e))),
            num(now),
        ])
        .map_err(d1_error("prepare a sync write"))?
        .run()
        .await
        .map_err(d1_error("record a sync"))?;
    Ok(())
}

fn cut(s: &str) -> String {
    crate::http::clip(s, MAX_ERROR).to_string()
}

async fn stored_refresh(env: &Env) -> Option<String> {
    #[derive(Deserialize)]
    struct R {
        refresh_token: String,
    }
    let db = reports::db(env).ok()?;
    let r: Option<R> = db
        .prepare("SELECT refresh_token FROM qbo_auth WHERE id = 0")
        .first(None)
        .await
        .ok()?;
    r.map(|r| r.refresh_token)
}

/// An access token from the refresh token (the rotated one kept in D1 if
/// the server issued one, else the configured secret).
async fn access_token(env: &Env, c: &Config) -> Result<String, Problem> {
    let refresh = stored_refresh(env)
        .await
        .unwrap_or_else(|| c.refresh.clone());
    let headers = Headers::new();
    let basic = base64(format!("{}:{}", c.client_id, c.client_secret).as_bytes());
    headers.set("Authorization", &format!("Basic {basic}"))?;
    headers.set("Content-Type", "application/x-www-form-urlencoded")?;
    headers.set("Accept", "application/json")?;
    let body = format!(
        "grant_type=refresh_token&refresh_token={}",
        js_sys::encode_uri_component(&refresh)
    );
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let req = Request::new_with_init(&c.token_url, &init)?;
    let mut resp = Fetch::Request(req)
        .send()
        .await
        .map_err(|e| Problem::overloaded(format!("QBO token endpoint unreachable: {e}")))?;
    let status = resp.status_code();
    let text = resp.text().await.unwrap_or_default();
    if status != 200 {
        return Err(Problem::overloaded(format!(
            "QBO token refresh answered {status}: {}",
            cut(&text)
        )));
    }
    #[derive(Deserialize)]
    struct T {
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
    }
    let t: T = serde_json::from_str(&text)
        .map_err(|_| Problem::overloaded("QBO token answer is not a token"))?;
    if let Some(r) = t.refresh_token.filter(|r| *r != refresh) {
        let db = reports::db(env)?;
        db.prepare("INSERT OR REPLACE INTO qbo_auth (id, refresh_token, at) VALUES (0, ?1, ?2)")
            .bind(&[
                JsValue::from_str(&r),
                num(crate::objects::storage::now_ms()),
            ])
            .map_err(d1_error("prepare a token write"))?
            .run()
            .await
            .map_err(d1_error("keep the rotated refresh token"))?;
    }
    Ok(t.access_token)
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

enum Posted {
    Booked(String),
    Rejected(String),
    /// 429/5xx/network: retry later; `Retry-After` in ms if given.
    Later(String, Option<u64>),
    Unauthorized,
}

async fn post(c: &Config, token: &str, kind: &str, rid: &str, entity: &Value) -> Posted {
    let url = format!(
        "{}/v3/company/{}/{}?requestid={}&minorversion=75",
        c.base,
        c.realm,
        kind.to_ascii_lowercase(),
        rid
    );
    let send = async {
        let headers = Headers::new();
        headers.set("Authorization", &format!("Bearer {token}"))?;
        headers.set("Content-Type", "application/json")?;
        headers.set("Accept", "application/json")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(&entity.to_string())));
        let req = Request::new_with_init(&url, &init)?;
        let mut resp = Fetch::Request(req).send().await?;
        let status = resp.status_code();
        let after = resp
            .headers()
            .get("Retry-After")
            .ok()
            .flatten()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, worker::Error>((status, after, text))
    };
    match send.await {
        Err(e) => Posted::Later(format!("network: {e}"), None),
        Ok((200..=299, _, text)) => {
            let id = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get(kind)?.get("Id")?.as_str().map(String::from))
                .unwrap_or_default();
            Posted::Booked(id)
        }
        Ok((401, _, _)) => Posted::Unauthorized,
        Ok((s, after, text)) if s == 429 || s >= 500 => {
            Posted::Later(format!("{s}: {}", cut(&text)), after)
        }
        Ok((s, _, text)) => Posted::Rejected(format!("{s}: {}", cut(&text))),
    }
}

/// Posts the receipts of `date` not yet synced or rejected.
pub async fn sync(env: &Env, date: &str, now: i64) -> Result<RunSummary, Problem> {
    let (book, _) = reports::day(env, date).await?;
    let mut sum = RunSummary {
        date: date.to_string(),
        receipts: book.receipts.len(),
        ..Default::default()
    };
    let Some(c) = config(env) else {
        return Ok(sum);
    };
    sum.configured = true;
    let mut token: Option<String> = None;
    let mut posted = 0;
    for r in &book.receipts {
        let prior = row(env, &r.key).await?;
        match prior.as_ref().map(|p| p.status.as_str()) {
            Some("synced") => {
                sum.already_synced += 1;
                continue;
            }
            Some("rejected") => {
                sum.rejected += 1;
                continue;
            }
            _ => {}
        }
        if posted >= MAX_PER_RUN {
            sum.deferred += 1;
            continue;
        }
        posted += 1;
        let kind = qbo_kind(r.kind);
        let rid = prior
            .map(|p| p.request_id)
            .unwrap_or_else(|| request_id(&r.key));
        let entity = qbo_entity(r)?;
        record(env, &r.key, kind, date, &rid, "pending", None, None, now).await?;
        let mut tries = 0;
        let mut refreshed = false;
        let outcome = loop {
            let t = match &token {
                Some(t) => t.clone(),
                None => {
                    let t = access_token(env, &c).await?;
                    token = Some(t.clone());
                    t
                }
            };
            tries += 1;
            match post(&c, &t, kind, &rid, &entity).await {
                Posted::Unauthorized if !refreshed => {
                    refreshed = true;
                    token = None;
                }
                Posted::Unauthorized => break Posted::Rejected("401: unauthorized".into()),
                Posted::Later(why, after) if tries < MAX_TRIES => {
                    sum.retries += 1;
                    let backoff = BASE_WAIT_MS << (tries - 1);
                    let wait = after.unwrap_or(backoff).clamp(backoff, MAX_WAIT_MS);
                    worker::console_warn!("qbo {}: {why}; retry in {wait} ms", r.key);
                    Delay::from(Duration::from_millis(wait)).await;
                }
                other => break other,
            }
        };
        let at = crate::objects::storage::now_ms();
        match outcome {
            Posted::Booked(id) => {
                sum.synced += 1;
                record(env, &r.key, kind, date, &rid, "synced", Some(&id), None, at).await?;
            }
            Posted::Rejected(why) => {
                sum.rejected += 1;
                record(
                    env,
                    &r.key,
                    kind,
                    date,
                    &rid,
                    "rejected",
                    None,
                    Some(&why),
                    at,
                )
                .await?;
            }
            Posted::Later(why, _) => {
                sum.failed += 1;
                record(
                    env,
                    &r.key,
                    kind,
                    date,
                    &rid,
                    "failed",
                    None,
                    Some(&why),
                    at,
                )
                .await?;
            }
            Posted::Unauthorized => {
                sum.failed += 1;
                let why = "401: unauthorized";
                record(env, &r.key, kind, date, &rid, "failed", None, Some(why), at).await?;
            }
        }
    }
    Ok(sum)
}

/// The sync log of `date` (or the latest rows), and counts per status.
pub async fn status(env: &Env, date: Option<&str>) -> Result<Value, Problem> {
    let db = reports::db(env)?;
    let rows: Vec<SyncRow> = match date {
        Some(d) => db
            .prepare("SELECT * FROM qbo_sync WHERE date = ?1 ORDER BY doc LIMIT 500")
            .bind(&[JsValue::from_str(d)])
            .map_err(d1_error("prepare the sync log"))?,
        None => db.prepare("SELECT * FROM qbo_sync ORDER BY updated_at DESC, doc LIMIT 500"),
    }
    .all()
    .await
    .map_err(d1_error("read the sync log"))?
    .results()
    .map_err(d1_error("decode the sync log"))?;
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "doc": r.doc, "kind": r.kind, "date": r.date, "request_id": r.request_id,
                "status": r.status, "attempts": r.attempts as i64, "qbo_id": r.qbo_id,
                "error": r.error, "updated_at": rfc3339(r.updated_at as i64),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "configured": config(env).is_some(),
        "date": date,
        "counts": {
            "synced": count("synced"), "pending": count("pending"),
            "failed": count("failed"), "rejected": count("rejected"),
        },
        "receipts": out,
    }))
}
