//! `ReceiptBook`: one object per receipt number (a sale, order or return
//! id). It keeps the receipts issued under that number, frozen (the first
//! issue of a kind wins; a reprint is the stored receipt marked as a copy),
//! and an outbox of emails. (Which terminal keeps a sale of that id is the
//! event feed's `sale_terminals` index in D1: feed::sale_terminal.)
//!
//! Email goes through Resend's HTTP API (`POST {EMAIL_API_URL}/emails`,
//! `Authorization: Bearer {EMAIL_API_KEY}`, from `EMAIL_FROM`), once per
//! Idempotency-Key. The outbox is core's sans-IO `receipt::outbox::Outbox`,
//! kept as one JSON row: this object stores the row before every attempt,
//! sends what `poll_transmit` gives (the message id as Resend's
//! `Idempotency-Key`, so an attempt whose answer was lost is not a second
//! email), feeds each answer to `handle_result` and sets the alarm at
//! `poll_timeout` (retries with backoff, at most `MAX_ATTEMPTS`).
use std::cell::Cell;

use omnistock_core::receipt::outbox::{Outbox, OutboxError, SendResult, MAX_MESSAGES};
use omnistock_core::receipt::{html, text, Receipt, ReceiptKind};
use omnistock_core::Timestamp;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    State,
};

use super::serial::Serial;
use super::storage::{self, int, text as t};
use crate::http::Problem;
use crate::wire::receipt::{EmailAnswer, Known, ReceiptRequest};
use crate::wire::{self, Idem};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS receipts (kind TEXT PRIMARY KEY, body TEXT NOT NULL,
     at INTEGER NOT NULL)",
    // The email outbox: core's `Outbox` as one JSON row (`k` = 'outbox').
    "CREATE TABLE IF NOT EXISTS outbox (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
];

/// Most emails one delivery round sends (the alarm runs again for the rest).
const BATCH: usize = 5;
const OUTBOX: &str = "outbox";

#[derive(Deserialize)]
struct BodyRow {
    body: String,
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

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        wire::serve(self, req).await
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

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for ReceiptBook {
    async fn receive(&self, msg: &str) -> String {
        let r = match wire::decode::<ReceiptRequest>(msg) {
            Ok(q) => self.handle(q).await,
            Err(p) => Err(p),
        };
        wire::reply(r)
    }
}

crate::rpc_receiver!(ReceiptBook);

impl ReceiptBook {
    fn ensure_schema(&self) -> Result<(), Problem> {
        storage::create_once(&self.schema_ok, &self.state.storage().sql(), SCHEMA)
    }

    async fn handle(&self, q: ReceiptRequest) -> Result<serde_json::Value, Problem> {
        let _turn = self.serial.turn().await?;
        self.ensure_schema()?;
        let sql = self.state.storage().sql();
        match q {
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
        Ok(Known { receipts })
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

    fn outbox(&self) -> Result<Outbox, Problem> {
        let sql = self.state.storage().sql();
        Ok(storage::load_json(&sql, OUTBOX, OUTBOX)?.unwrap_or_default())
    }

    fn save(&self, o: &Outbox) -> Result<(), Problem> {
        storage::save_json(
            &self.state.storage(),
            OUTBOX,
            OUTBOX,
            o,
            storage::piece_bytes(&self.env),
        )
    }

    async fn email(
        &self,
        kind: ReceiptKind,
        to: String,
        id: String,
        idem: Idem,
    ) -> Result<EmailAnswer, Problem> {
        let receipt = self
            .issued(&kind_str(kind)?)?
            .ok_or_else(|| Problem::not_found("no such receipt"))?;
        let mut o = self.outbox()?;
        let now = Timestamp::from_ms(storage::now_ms());
        let (m, replayed) = match o.handle_email(now, &idem.key, &idem.fp, &to, kind, &id) {
            Ok((m, replayed)) => (m.clone(), replayed),
            Err(OutboxError::KeyReused) => return Err(Problem::key_reused()),
            Err(OutboxError::Full) => {
                return Err(Problem::new(
                    429,
                    "rate_limited",
                    format!("a receipt is emailed at most {MAX_MESSAGES} times"),
                ))
            }
        };
        let answer = EmailAnswer {
            id: m.id.clone(),
            receipt: receipt.number.clone(),
            kind: m.kind,
            to: m.to.clone(),
            // The answer is the request's, the same on every replay: queued.
            status: "queued".into(),
            replayed,
        };
        if !replayed {
            self.save(&o)?;
            // The first attempt now; what fails is the alarm's.
            if let Err(p) = self.deliver().await {
                worker::console_warn!("email {}: delivery deferred: {}", m.id, p.detail);
                let retry = now.as_ms() + omnistock_core::receipt::outbox::FIRST_BACKOFF_MS;
                storage::alarm_at(&self.state.storage(), Some(retry)).await?;
            }
        }
        Ok(answer)
    }

    /// Sends the due attempts (at most `BATCH`), each stored before it is
    /// sent and its answer fed back, then points the alarm at the next.
    async fn deliver(&self) -> Result<(), Problem> {
        self.ensure_schema()?;
        let mut o = self.outbox()?;
        for _ in 0..BATCH {
            let now = Timestamp::from_ms(storage::now_ms());
            let Some(x) = o.poll_transmit(now) else {
                break;
            };
            self.save(&o)?;
            let result = match self.issued(&kind_str(x.kind)?)? {
                Some(r) => self.send(&x.id, &x.to, &r).await,
                None => SendResult::Refused {
                    error: "the receipt is gone".into(),
                },
            };
            if let SendResult::Retry { error } | SendResult::Refused { error } = &result {
                worker::console_warn!("email {}: attempt {} failed: {error}", x.id, x.attempt);
            }
            let now = Timestamp::from_ms(storage::now_ms());
            o.handle_result(now, &x.id, x.attempt, result);
            self.save(&o)?;
        }
        let at = o.poll_timeout().map(|t| t.as_ms());
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

    /// One attempt: accepted (2xx), retryable (network, 429, 5xx, or no
    /// configuration yet) or refused for good (any other status).
    async fn send(&self, id: &str, to: &str, r: &Receipt) -> SendResult {
        let retry = |error: String| SendResult::Retry { error };
        let (Some(base), Some(key), Some(from)) = (
            self.setting("EMAIL_API_URL"),
            self.setting("EMAIL_API_KEY"),
            self.setting("EMAIL_FROM"),
        ) else {
            return retry("EMAIL_API_URL, EMAIL_API_KEY or EMAIL_FROM is not set".into());
        };
        let body = serde_json::json!({
            "from": from,
            "to": [to],
            "subject": format!("Your receipt {} from {}", r.number, r.shop),
            "html": html::render(r, false),
            "text": text::render(r, false),
        });
        let headers = Headers::new();
        for (k, v) in [
            ("Authorization", format!("Bearer {key}")),
            ("Content-Type", "application/json".into()),
            ("Idempotency-Key", id.into()),
        ] {
            if let Err(e) = headers.set(k, &v) {
                return retry(e.to_string());
            }
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(&body.to_string())));
        let url = format!("{}/emails", base.trim_end_matches('/'));
        let req = match Request::new_with_init(&url, &init) {
            Ok(r) => r,
            Err(e) => return retry(format!("EMAIL_API_URL: {e}")),
        };
        let mut resp = match Fetch::Request(req).send().await {
            Ok(r) => r,
            Err(e) => return retry(e.to_string()),
        };
        let status = resp.status_code();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => SendResult::Accepted {
                provider_id: serde_json::from_str::<ProviderAnswer>(&text)
                    .ok()
                    .and_then(|a| a.id),
            },
            429 | 500..=599 => retry(format!("{status}: {text}")),
            _ => SendResult::Refused {
                error: format!("{status}: {text}"),
            },
        }
    }
}
