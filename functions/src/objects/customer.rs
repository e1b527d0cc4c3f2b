//! `Customer`: one object per customer id (binding `CUSTOMER`). A thin
//! driver over core's `Customer` (profile, purchases from every channel
//! with their returns, loyalty points), stored as one JSON row.
//!
//! - Writes from the API (`PUT`, redeem, erase) keep their answer with the
//!   Idempotency-Key (key hash, request fingerprint) in the `keys` table,
//!   in the same SQLite transaction as the effect; the same key and request
//!   again is the first answer, another request under it is 409. Keys are
//!   kept [`KEY_TTL_MS`].
//! - Facts from producers (purchases, returns) are applied once by core
//!   (by source id, and by a return's `seq`): a duplicate changes nothing.
//! - The lookup index (D1, `customer_index`) follows the profile version:
//!   a profile change claims its email/phone there first (409 if another
//!   customer holds them), an erasure is committed here first and written
//!   there after, retried by the alarm every [`INDEX_RETRY_MS`].
//!
//! Requests to one customer run one at a time (a FIFO queue).
use std::cell::Cell;

use omnistock_core::customer::{
    Applied, Customer as Core, CustomerError, LedgerEntry, Profile, Purchase, ReturnFact, Source,
};
use omnistock_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::serial::Serial;
use super::storage::{self, int, text};
use crate::customer_index::{self, ClaimError, IndexRow};
use crate::http::{rfc3339, Problem};
use crate::wire::customer::{self, CustomerAnswer, CustomerOp, CustomerRequest};
use crate::wire::{self, Idem};

/// Answers kept for Idempotency-Keys this long (API.md: at least 24 hours).
pub const KEY_TTL_MS: i64 = 48 * 3_600_000;
/// A failed index write is retried by the alarm after this long.
pub const INDEX_RETRY_MS: i64 = 5_000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS customer (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS keys (k TEXT PRIMARY KEY, fp TEXT NOT NULL, status INTEGER NOT NULL,
     body TEXT NOT NULL, at INTEGER NOT NULL)",
    // A kept answer larger than a piece: `keys.body` holds the first piece
    // (`storage::json_rows`), these rows the rest, pruned with their key.
    "CREATE TABLE IF NOT EXISTS key_pieces (k TEXT PRIMARY KEY, json TEXT NOT NULL,
     at INTEGER NOT NULL)",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    id: String,
    customer: Core,
    /// The profile version the lookup index has.
    indexed: u64,
}

#[derive(Deserialize)]
struct KeyRow {
    fp: String,
    status: i64,
    body: String,
}

#[durable_object]
pub struct Customer {
    state: State,
    env: Env,
    serial: Serial,
    schema_ok: Cell<bool>,
}

impl DurableObject for Customer {
    fn new(state: State, env: Env) -> Self {
        Customer {
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
        let r = async {
            let _turn = self.serial.turn().await?;
            match self.load()? {
                Some(mut s) => self.sync_index(&mut s).await,
                None => Ok(()),
            }
        };
        match r.await {
            Ok(()) => Response::ok(""),
            Err(p) => Err(worker::Error::RustError(p.detail)),
        }
    }
}

/// The wire's messages to this object ([`wire::Receiver`]), over RPC or `fetch`.
impl wire::Receiver for Customer {
    async fn receive(&self, msg: &str) -> String {
        match wire::decode::<CustomerRequest>(msg) {
            Ok(r) => wire::reply(self.handle(r).await),
            Err(p) => wire::reply::<CustomerAnswer>(Err(p)),
        }
    }
}

crate::rpc_receiver!(Customer);

/// A core refusal as the API's problem.
pub fn problem(e: &CustomerError) -> Problem {
    match e {
        CustomerError::Erased => Problem::invalid_transition("erased", "active", &[]),
        CustomerError::InsufficientPoints { balance, requested } => {
            Problem::new(409, e.code(), e.to_string())
                .with("balance", balance)
                .with("requested", requested)
        }
        CustomerError::RedemptionConflict => Problem::new(409, e.code(), e.to_string()),
        CustomerError::InvalidConfig(_) => Problem::overloaded(e.to_string()),
        _ => Problem::invalid(e.to_string()),
    }
}

fn ms(t: Timestamp) -> String {
    rfc3339(t.as_ms())
}

fn source_json(s: &Source) -> Value {
    match s {
        Source::Order(o) => json!({"type": "order", "id": o}),
        Source::Sale(x) => json!({"type": "sale", "id": x}),
    }
}

fn return_json(r: &ReturnFact) -> Value {
    json!({
        "return_id": r.return_id,
        "at": ms(r.at),
        "refunded": r.refunded,
        "credited": r.credited,
        "lines": r.lines.iter().map(|(sku, qty)| json!({"sku": sku, "qty": qty})).collect::<Vec<_>>(),
    })
}

fn purchase_json(c: &Core, key: &str, p: &Purchase) -> Value {
    json!({
        "source": source_json(&p.source),
        "channel": p.channel,
        "location": p.location,
        "at": ms(p.at),
        "total": p.total,
        "lines": p.lines.iter().map(|l| json!({"sku": l.sku, "qty": l.qty, "amount": l.amount}))
            .collect::<Vec<_>>(),
        "lines_omitted": p.lines_omitted,
        "points_earned": p.points_earned,
        "points_reversed": p.points_reversed,
        "returns": c.returns_of(key).map(return_json).collect::<Vec<_>>(),
    })
}

fn ledger_json(l: &LedgerEntry) -> Value {
    json!({
        "at": ms(l.at), "kind": l.kind, "points": l.points, "source": l.source,
        "balance_after": l.balance_after, "shortfall_after": l.shortfall_after,
    })
}

/// The customer as `GET /v1/customers/{id}` shows it.
fn view(s: &Stored, rate: &str) -> Value {
    let c = &s.customer;
    let mut purchases: Vec<(&String, &Purchase)> = c.purchases.iter().collect();
    purchases.sort_by(|a, b| (b.1.at, b.0).cmp(&(a.1.at, a.0)));
    let pending: Vec<Value> = c
        .returns
        .values()
        .filter(|r| !c.purchases.contains_key(&r.source.key()))
        .map(|r| {
            let mut v = return_json(r);
            v["source"] = source_json(&r.source);
            v
        })
        .collect();
    let mut history: Vec<Value> = c.ledger.iter().rev().map(ledger_json).collect();
    history.truncate(omnistock_core::customer::MAX_LEDGER);
    json!({
        "id": s.id,
        "profile": c.profile.as_ref().map(|p| json!({"name": p.name, "email": p.email, "phone": p.phone})),
        "erased": c.erased_at.is_some(),
        "erased_at": c.erased_at.map(ms),
        "created_at": ms(c.created_at),
        "updated_at": ms(c.updated_at),
        "version": c.profile_version,
        "loyalty": {
            "balance": c.balance(),
            "earned": c.earned,
            "reversed": c.reversed,
            "redeemed": c.redeemed,
            "shortfall": c.shortfall(),
            "points_per_unit_currency": rate,
            "rounding": "points = floor(total * rate); a return reverses floor(earned * returned / total) of its purchase",
            "history": history,
            "history_dropped": c.ledger_dropped,
        },
        "purchases": purchases.iter().map(|(k, p)| purchase_json(c, k, p)).collect::<Vec<_>>(),
        "unmatched_returns": pending,
    })
}

fn index_row(s: &Stored, now: i64) -> IndexRow {
    let p = s.customer.profile.as_ref();
    IndexRow {
        id: s.id.clone(),
        email: p.and_then(|p| p.email.clone()),
        phone: p.and_then(|p| p.phone.clone()),
        name: p.map(|p| p.name.clone()),
        erased: s.customer.erased_at.is_some(),
        updated_at_ms: now,
        version: s.customer.profile_version,
    }
}

impl Customer {
    fn ensure_schema(&self) -> Result<(), Problem> {
        storage::create_once(&self.schema_ok, &self.state.storage().sql(), SCHEMA)
    }

    fn load(&self) -> Result<Option<Stored>, Problem> {
        self.ensure_schema()?;
        storage::load_json(&self.state.storage().sql(), "customer", "c")
    }

    fn rate(&self) -> String {
        customer::config(&self.env)
            .map(|c| c.points_per_unit.to_string())
            .unwrap_or_default()
    }

    /// Commits the row, and the answer under `idem` when given, together.
    fn commit(&self, s: &Stored, kept: Option<(&Idem, u16, &Value)>) -> Result<(), Problem> {
        let now = storage::now_ms();
        let mut stmts: Vec<storage::Stmt> = storage::json_row_stmts(
            "INSERT OR REPLACE INTO customer (k, json) VALUES (?, ?)",
            "DELETE FROM customer WHERE k > ? AND k < ?",
            "c",
            &serde_json::to_string(s)?,
            storage::piece_bytes(&self.env),
        );
        if let Some((idem, status, body)) = kept {
            // The answer may be the whole customer view: in pieces when larger.
            let mut rows = storage::json_rows(
                &idem.key,
                &body.to_string(),
                storage::piece_bytes(&self.env),
            )
            .into_iter();
            let first = rows.next().map(|(_, j)| j).unwrap_or_default();
            stmts.push((
                "INSERT OR REPLACE INTO keys (k, fp, status, body, at) VALUES (?, ?, ?, ?, ?)",
                vec![
                    text(&idem.key),
                    text(&idem.fp),
                    int(i64::from(status)),
                    text(&first),
                    int(now),
                ],
            ));
            for (k, j) in rows {
                stmts.push((
                    "INSERT OR REPLACE INTO key_pieces (k, json, at) VALUES (?, ?, ?)",
                    vec![text(&k), text(&j), int(now)],
                ));
            }
            stmts.push(("DELETE FROM keys WHERE at < ?", vec![int(now - KEY_TTL_MS)]));
            stmts.push((
                "DELETE FROM key_pieces WHERE at < ?",
                vec![int(now - KEY_TTL_MS)],
            ));
        }
        storage::atomically(&self.state.storage(), stmts)
    }

    /// Keeps a refusal under its key without touching the customer's row.
    fn keep_only(&self, idem: &Idem, p: &Problem) -> Result<(), Problem> {
        storage::exec(
            &self.state.storage().sql(),
            "INSERT OR REPLACE INTO keys (k, fp, status, body, at) VALUES (?, ?, ?, ?, ?)",
            vec![
                text(&idem.key),
                text(&idem.fp),
                int(i64::from(p.status)),
                text(&p.body().to_string()),
                int(storage::now_ms()),
            ],
        )
    }

    /// The first answer under this key, if any (409 for another request).
    fn replay(&self, idem: &Idem) -> Result<Option<CustomerAnswer>, Problem> {
        let rows: Vec<KeyRow> = storage::query(
            &self.state.storage().sql(),
            "SELECT fp, status, body FROM keys WHERE k = ?",
            vec![text(&idem.key)],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        if r.fp != idem.fp {
            return Err(Problem::key_reused());
        }
        let body = storage::rejoin(
            &self.state.storage().sql(),
            "key_pieces",
            &idem.key,
            r.body.clone(),
        )?;
        let body: Value = serde_json::from_str(&body)?;
        if r.status >= 400 {
            let code = body["code"]
                .as_str()
                .unwrap_or("invalid_request")
                .to_string();
            let detail = body["detail"].as_str().unwrap_or("").to_string();
            let mut p = Problem::new(r.status as u16, &code, detail);
            if let Some(o) = body.as_object() {
                for (k, v) in o {
                    if !["type", "title", "status", "detail", "code"].contains(&k.as_str()) {
                        p = p.with(k, v);
                    }
                }
            }
            p.replayed = true;
            return Err(p);
        }
        Ok(Some(CustomerAnswer {
            status: r.status as u16,
            body,
            replayed: true,
        }))
    }

    /// Writes the index row if it lags the profile; on failure the alarm retries.
    async fn sync_index(&self, s: &mut Stored) -> Result<(), Problem> {
        if s.indexed >= s.customer.profile_version {
            return Ok(());
        }
        match customer_index::upsert(&self.env, &index_row(s, storage::now_ms())).await {
            Ok(()) => {
                s.indexed = s.customer.profile_version;
                self.commit(s, None)?;
                Ok(())
            }
            Err(e) => {
                let detail = match e {
                    ClaimError::Taken { field, owner } => format!("{field} held by {owner}"),
                    ClaimError::Failed(p) => p.detail,
                };
                worker::console_warn!("customer {}: index write deferred: {detail}", s.id);
                let at = storage::now_ms() + INDEX_RETRY_MS;
                storage::alarm_at(&self.state.storage(), Some(at)).await
            }
        }
    }

    async fn handle(&self, r: CustomerRequest) -> Result<CustomerAnswer, Problem> {
        let _turn = self.serial.turn().await?;
        let stored = self.load()?;
        let now = storage::now_ms();
        let fresh = || Stored {
            id: r.id.clone(),
            customer: Core::new(Timestamp::from_ms(now)),
            indexed: 0,
        };
        let ok = |status: u16, body: Value| CustomerAnswer {
            status,
            body,
            replayed: false,
        };
        match r.op {
            CustomerOp::Get => match stored {
                Some(s) => Ok(ok(200, view(&s, &self.rate()))),
                None => Err(Problem::not_found("no such customer")),
            },
            CustomerOp::Purchase(fact) => {
                let cfg = customer::config(&self.env)?;
                let mut s = stored.unwrap_or_else(fresh);
                let applied = s
                    .customer
                    .record_purchase(fact, &cfg)
                    .map_err(|e| problem(&e))?;
                self.commit(&s, None)?;
                Ok(ok(200, json!({"applied": format!("{applied:?}")})))
            }
            CustomerOp::ReceiptLoyalty(fact) => {
                let cfg = customer::config(&self.env)?;
                let source = fact.source.clone();
                let mut s = stored.unwrap_or_else(fresh);
                match s.customer.record_purchase(fact, &cfg) {
                    Ok(Applied::Duplicate) => {}
                    Ok(_) => self.commit(&s, None)?,
                    // Not recordable (the customer's limits): no points to state.
                    Err(e) => {
                        worker::console_warn!("customer {}: receipt purchase: {e}", s.id);
                        let none = customer::ReceiptLoyalty { loyalty: None };
                        return Ok(ok(200, serde_json::to_value(none)?));
                    }
                }
                let answer = customer::ReceiptLoyalty {
                    loyalty: s.customer.receipt_loyalty(&source),
                };
                Ok(ok(200, serde_json::to_value(answer)?))
            }
            CustomerOp::Return(fact) => {
                let mut s = stored.unwrap_or_else(fresh);
                let applied = s.customer.record_return(fact).map_err(|e| problem(&e))?;
                self.commit(&s, None)?;
                Ok(ok(200, json!({"applied": format!("{applied:?}")})))
            }
            CustomerOp::Put {
                name,
                email,
                phone,
                idem,
            } => {
                if let Some(a) = self.replay(&idem)? {
                    return Ok(a);
                }
                let cfg = customer::config(&self.env)?;
                let profile = Profile::parse(&name, email.as_deref(), phone.as_deref(), &cfg)
                    .map_err(|e| problem(&e))?;
                // A customer known only from purchases gets its profile now.
                let created = stored
                    .as_ref()
                    .is_none_or(|s| s.customer.profile.is_none() && s.customer.erased_at.is_none());
                let mut s = stored.unwrap_or_else(fresh);
                let changed = match s.customer.set_profile(Timestamp::from_ms(now), profile) {
                    Ok(c) => c,
                    Err(e) => {
                        let p = problem(&e);
                        self.commit(&s, Some((&idem, p.status, &p.body())))?;
                        return Err(p);
                    }
                };
                if changed {
                    // Claim the email and phone before the change commits.
                    match customer_index::upsert(&self.env, &index_row(&s, now)).await {
                        Ok(()) => s.indexed = s.customer.profile_version,
                        Err(ClaimError::Taken { field, owner }) => {
                            let p = Problem::new(
                                409,
                                "contact_taken",
                                format!("this {field} belongs to another customer"),
                            )
                            .with("field", field)
                            .with("customer_id", owner);
                            // The refusal is this key's answer; nothing else is written.
                            self.keep_only(&idem, &p)?;
                            return Err(p);
                        }
                        Err(ClaimError::Failed(p)) => return Err(p),
                    }
                }
                let status = if created { 201 } else { 200 };
                let body = view(&s, &self.rate());
                self.commit(&s, Some((&idem, status, &body)))?;
                Ok(ok(status, body))
            }
            CustomerOp::Redeem {
                points,
                reference,
                idem,
            } => {
                if let Some(a) = self.replay(&idem)? {
                    return Ok(a);
                }
                let Some(mut s) = stored else {
                    return Err(Problem::not_found("no such customer"));
                };
                match s
                    .customer
                    .redeem(Timestamp::from_ms(now), &idem.key, points, reference)
                {
                    Ok(r) => {
                        let body = json!({
                            "customer_id": s.id, "redeemed": r.points, "balance": r.balance,
                            "at": rfc3339(now),
                        });
                        self.commit(&s, Some((&idem, 200, &body)))?;
                        Ok(ok(200, body))
                    }
                    Err(e) => {
                        let p = problem(&e);
                        if p.status == 409 {
                            self.commit(&s, Some((&idem, p.status, &p.body())))?;
                        }
                        Err(p)
                    }
                }
            }
            CustomerOp::Erase { idem } => {
                if let Some(a) = self.replay(&idem)? {
                    return Ok(a);
                }
                let Some(mut s) = stored else {
                    return Err(Problem::not_found("no such customer"));
                };
                s.customer.erase(Timestamp::from_ms(now));
                let body = view(&s, &self.rate());
                self.commit(&s, Some((&idem, 200, &body)))?;
                self.sync_index(&mut s).await?;
                Ok(ok(200, body))
            }
        }
    }
}
