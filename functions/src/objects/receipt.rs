//! `ReceiptBook`: one object per receipt number (a sale, order or return
//! id). It keeps the receipts issued under that number, frozen (the first
//! issue of a kind wins; a reprint is the stored receipt marked as a copy),
//! the terminal a POS sale of that id was sent to (so `GET /v1/receipts/{id}`
//! finds the sale without knowing its terminal), and an outbox of emails.
//!
//! Email goes through Resend's HTTP API (`POST {EMAIL_API_URL}/emails`,
//! `Authorization: Bearer {EMAIL_API_KEY}`, from `EMAIL_FROM`), once per
//! Idempotency-Key: the row is written before the first attempt, each attempt
//! carries the message id as Resend's `Idempotency-Key` (so an attempt whose
//! answer was lost is not delivered twice), and a failed attempt (network,
//! 429, 5xx) is retried by the alarm with exponential backoff, at most
//! `MAX_ATTEMPTS` times. Any other 4xx is final (`failed`).
use std::cell::Cell;

use omnistock_core::receipt::{html, text, Receipt, ReceiptKind};
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    State,
};

use super::serial::Serial;
use super::storage::{self, int, opt_text, text as t};
use crate::http::Problem;
use crate::wire::receipt::{EmailAnswer, Known, ReceiptRequest};
use crate::wire::{self, Idem};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS receipts (kind TEXT PRIMARY KEY, body TEXT NOT NULL,
     at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sale (k INTEGER PRIMARY KEY, terminal TEXT NOT NULL,
     at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS emails (id TEXT PRIMARY KEY, req_key TEXT NOT NULL UNIQUE,
     req_fp TEXT NOT NULL, kind TEXT NOT NULL, to_addr TEXT NOT NULL, status TEXT NOT NULL,
     attempts INTEGER NOT NULL, next_at INTEGER, last_error TEXT, provider_id TEXT,
     answer TEXT NOT NULL, created_at INTEGER NOT NULL)",
];

/// Most emails of one receipt (one more is 429 `rate_limited`).
pub const MAX_EMAILS_PER_RECEIPT: i64 = 20;
/// Most attempts to deliver one email.
pub const MAX_ATTEMPTS: i64 = 8;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 300_000;
/// Most emails one delivery round sends.
const BATCH: i64 = 5;
/// Longest provider error kept (characters).
const MAX_ERROR_CHARS: usize = 300;

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff_ms(attempts: i64) -> i64 {
    let shift = attempts.clamp(1, 20) - 1;
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

#[derive(Deserialize)]
struct SaleRow {
    terminal: String,
}

#[derive(Deserialize)]
struct KeyRow {
    req_fp: String,
    answer: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

#[derive(Deserialize)]
struct OutRow {
    id: String,
    kind: String,
    to_addr: String,
    attempts: i64,
}

#[derive(Deserialize)]
struct NextRow {
    next_at: Option<i64>,
}

#[derive(Deserialize)]
struct ProviderAnswer {
    #[serde(default)]
    id: Option<String>,
}

fn kind_str(k: ReceiptKind) -> Result<String, Problem> {
    match serde_json::to_value(k)? {
        serde_json::Value::String(s) => Ok(s),
        _ => Err(Problem::overloaded("a receipt kind did not encode")),
    }
}

#[durable_object]
pub struct ReceiptBook {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for ReceiptBook {
    fn new(state: State, env: Env) -> Self {
        ReceiptBook {
            state,
            env,
            serial: Serial::default(),
            schema_ok: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = match wire::read::<ReceiptRequest>(&mut req).await {
            Ok(q) => self.handle(q).await,
            Err(p) => Err(p),
        };
        wire::answer(r)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let _turn = self
            .serial
            .turn()
            .await
            .map_err(|p| worker::Error::RustError(p.detail))?;
        match self.deliver().await {
            Ok(()) => Response::ok(""),
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

impl ReceiptBook {
    fn ensure_schema(&self) -> Result<(), Problem> {
        if !self.schema_ok.get() {
            let sql = self.state.storage().sql();
            for q in SCHEMA {
                storage::exec(&sql, q, vec![])?;
            }
            self.schema_ok.set(true);
        }
        Ok(())
    }

    async fn handle(&self, q: ReceiptRequest) -> Result<serde_json::Value, Problem> {
        let _turn = self.serial.turn().await?;
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        match q {
            ReceiptRequest::RegisterSale { terminal } => {
                storage::exec(
                    &sql,
                    "INSERT OR IGNORE INTO sale (k, terminal, at) VALUES (1, ?, ?)",
                    vec![t(terminal.as_str()), int(storage::now_ms())],
                )?;
                Ok(serde_json::Value::Null)
            }
            ReceiptRequest::Get => Ok(serde_json::to_value(self.known()?)?),
            ReceiptRequest::Issue { receipt } => {
                let kind = kind_str(receipt.kind)?;
                storage::exec(
                    &sql,
                    "INSERT OR IGNORE INTO receipts (kind, body, at) VALUES (?, ?, ?)",
                    vec![
                        t(&kind),
                        t(&serde_json::to_string(&receipt)?),
                        int(storage::now_ms()),
                    ],
                )?;
                let issued = self
                    .issued(&kind)?
                    .ok_or_else(|| Problem::overloaded("the receipt was not stored; retry"))?;
                Ok(serde_json::to_value(issued)?)
            }
            ReceiptRequest::Email { kind, to, id, idem } => {
                let a = self.email(kind, to, id, idem).await?;
                Ok(serde_json::to_value(a)?)
            }
        }
    }

    fn known(&self) -> Result<Known, Problem> {
        let sql = self.state.storage().sql();
        let rows: Vec<BodyRow> = storage::query(
            &sql,
            "SELECT body FROM receipts ORDER BY at, kind LIMIT 16",
            vec![],
        )?;
        let receipts = rows
            .iter()
            .map(|r| serde_json::from_str(&r.body))
            .collect::<Result<Vec<Receipt>, _>>()?;
        let sale: Vec<SaleRow> =
            storage::query(&sql, "SELECT terminal FROM sale WHERE k = 1", vec![])?;
        let sale_terminal = match sale.first() {
            Some(r) => Some(
                omnistock_core::TerminalId::parse(&r.terminal)
                    .map_err(|e| Problem::overloaded(format!("stored terminal: {e}")))?,
            ),
            None => None,
        };
        Ok(Known {
            receipts,
            sale_terminal,
        })
    }

    fn issued(&self, kind: &str) -> Result<Option<Receipt>, Problem> {
        let sql = self.state.storage().sql();
        let rows: Vec<BodyRow> = storage::query(
            &sql,
            "SELECT body FROM receipts WHERE kind = ?",
            vec![t(kind)],
        )?;
        match rows.first() {
            Some(r) => Ok(Some(serde_json::from_str(&r.body)?)),
            None => Ok(None),
        }
    }

    async fn email(
        &self,
        kind: ReceiptKind,
        to: String,
        id: String,
        idem: Idem,
    ) -> Result<EmailAnswer, Problem> {
        let sql = self.state.storage().sql();
        let seen: Vec<KeyRow> = storage::query(
            &sql,
            "SELECT req_fp, answer FROM emails WHERE req_key = ?",
            vec![t(&idem.key)],
        )?;
        if let Some(k) = seen.first() {
            if k.req_fp != idem.fp {
                return Err(Problem::key_reused());
            }
            let mut a: EmailAnswer = serde_json::from_str(&k.answer)?;
            a.replayed = true;
            return Ok(a);
        }
        let kind_s = kind_str(kind)?;
        let receipt = self
            .issued(&kind_s)?
            .ok_or_else(|| Problem::not_found("no such receipt"))?;
        let n: Vec<CountRow> = storage::query(&sql, "SELECT COUNT(*) AS n FROM emails", vec![])?;
        if n.first().map_or(0, |r| r.n) >= MAX_EMAILS_PER_RECEIPT {
            return Err(Problem::new(
                429,
                "rate_limited",
                format!("a receipt is emailed at most {MAX_EMAILS_PER_RECEIPT} times"),
            ));
        }
        let answer = EmailAnswer {
            id: id.clone(),
            receipt: receipt.number.clone(),
            kind,
            to: to.clone(),
            status: "queued".into(),
            replayed: false,
        };
        let now = storage::now_ms();
        storage::exec(
            &sql,
            "INSERT INTO emails (id, req_key, req_fp, kind, to_addr, status, attempts, next_at,
             answer, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
            vec![
                t(&id),
                t(&idem.key),
                t(&idem.fp),
                t(&kind_s),
                t(&to),
                int(now),
                t(&serde_json::to_string(&answer)?),
                int(now),
            ],
        )?;
        // The first attempt now; what fails is the alarm's.
        if let Err(p) = self.deliver().await {
            worker::console_warn!("email {id}: delivery deferred: {}", p.detail);
            storage::alarm_at(&self.state.storage(), Some(now + FIRST_BACKOFF_MS)).await?;
        }
        Ok(answer)
    }

    /// Sends the due emails (at most `BATCH`), records each outcome, and
    /// points the alarm at the next due one.
    async fn deliver(&self) -> Result<(), Problem> {
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        let now = storage::now_ms();
        let due: Vec<OutRow> = storage::query(
            &sql,
            "SELECT id, kind, to_addr, attempts FROM emails
             WHERE status = 'queued' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
            vec![int(now), int(BATCH)],
        )?;
        for row in due {
            let outcome = match self.issued(&row.kind)? {
                Some(r) => self.send(&row.id, &row.to_addr, &r).await,
                None => Err((false, "the receipt is gone".to_string())),
            };
            let attempts = row.attempts + 1;
            match outcome {
                Ok(provider_id) => storage::exec(
                    &sql,
                    "UPDATE emails SET status = 'sent', attempts = ?, next_at = NULL,
                     provider_id = ?, last_error = NULL WHERE id = ?",
                    vec![int(attempts), opt_text(provider_id.as_deref()), t(&row.id)],
                )?,
                Err((retry, e)) => {
                    let e: String = e.chars().take(MAX_ERROR_CHARS).collect();
                    worker::console_warn!("email {}: attempt {attempts} failed: {e}", row.id);
                    let (status, next) = if retry && attempts < MAX_ATTEMPTS {
                        ("queued", Some(storage::now_ms() + backoff_ms(attempts)))
                    } else {
                        ("failed", None)
                    };
                    storage::exec(
                        &sql,
                        "UPDATE emails SET status = ?, attempts = ?, next_at = ?, last_error = ?
                         WHERE id = ?",
                        vec![
                            t(status),
                            int(attempts),
                            next.map_or(worker::SqlStorageValue::Null, int),
                            t(&e),
                            t(&row.id),
                        ],
                    )?;
                }
            }
        }
        let next: Vec<NextRow> = storage::query(
            &sql,
            "SELECT MIN(next_at) AS next_at FROM emails WHERE status = 'queued'",
            vec![],
        )?;
        let at = next.first().and_then(|r| r.next_at);
        storage::alarm_at(&self.state.storage(), at).await
    }

    fn setting(&self, name: &str) -> Option<String> {
        self.env
            .secret(name)
            .map(|v| v.to_string())
            .or_else(|_| self.env.var(name).map(|v| v.to_string()))
            .ok()
            .filter(|s| !s.trim().is_empty())
    }

    /// One attempt. `Err((retry, why))`: `retry` for a network failure, a
    /// 429 or a 5xx; anything else the provider refused is final.
    async fn send(
        &self,
        id: &str,
        to: &str,
        r: &Receipt,
    ) -> Result<Option<String>, (bool, String)> {
        let (Some(base), Some(key), Some(from)) = (
            self.setting("EMAIL_API_URL"),
            self.setting("EMAIL_API_KEY"),
            self.setting("EMAIL_FROM"),
        ) else {
            return Err((
                true,
                "EMAIL_API_URL, EMAIL_API_KEY or EMAIL_FROM is not set".into(),
            ));
        };
        let body = serde_json::json!({
            "from": from,
            "to": [to],
            "subject": format!("Your receipt {} from {}", r.number, r.shop),
            "html": html::render(r, false),
            "text": text::render(r, false),
        });
        let fail = |e: worker::Error| (true, e.to_string());
        let headers = Headers::new();
        headers
            .set("Authorization", &format!("Bearer {key}"))
            .map_err(fail)?;
        headers
            .set("Content-Type", "application/json")
            .map_err(fail)?;
        headers.set("Idempotency-Key", id).map_err(fail)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(&body.to_string())));
        let url = format!("{}/emails", base.trim_end_matches('/'));
        let req = Request::new_with_init(&url, &init).map_err(|e| (false, e.to_string()))?;
        let mut resp = Fetch::Request(req).send().await.map_err(fail)?;
        let status = resp.status_code();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(serde_json::from_str::<ProviderAnswer>(&text)
                .ok()
                .and_then(|a| a.id)),
            429 | 500..=599 => Err((true, format!("{status}: {text}"))),
            _ => Err((false, format!("{status}: {text}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(7), 64_000);
        assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0), 1_000);
    }
}
