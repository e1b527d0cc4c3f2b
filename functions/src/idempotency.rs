//! Idempotency-Key handling.
//!
//! The final HTTP answer of every write is kept, per (principal, key), in an
//! `Idempotency` Durable Object: one of [`SHARDS`] objects picked by a hash
//! of the pair. A replay with the same request returns the stored status and
//! body with `Idempotent-Replayed: true`; the same key with another request
//! is 409 `idempotency_key_reused`. Records live 48 hours (API.md asks for at
//! least 24).
//!
//! The store is "first answer wins": two concurrent first tries both run
//! (each stock command below carries an id derived from the key, so the
//! objects apply it once), then both store; the second store finds the first
//! answer and returns it instead, so both clients see the same answer.
use omnistock_core::fingerprint::Fnv;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::db::{self, int, text};
use crate::http::{envelope_response, Problem, Reply};
use crate::rpc::{self, IDEMPOTENCY};

pub const SHARDS: u64 = 16;
pub const KEEP_MS: i64 = 48 * 3600 * 1000;
pub const MAX_KEY_LEN: usize = 255;

/// Validates an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn validate_key(k: Option<String>) -> Result<String, Problem> {
    let Some(k) = k else {
        return Err(Problem::invalid(
            "an Idempotency-Key header is required on every POST, PUT and DELETE",
        ));
    };
    if k.is_empty() || k.len() > MAX_KEY_LEN || !k.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Problem::invalid(
            "the Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(k)
}

/// A 128-bit fingerprint as 32 hex digits.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut a = Fnv::default().u64(0x5eed_0001);
    let mut b = Fnv::default().u64(0x5eed_0002);
    for p in parts {
        a = a.u64(p.len() as u64).bytes(p);
        b = b.u64(p.len() as u64).bytes(p);
    }
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// The prefix of every stock command id derived from a request's key: the
/// same (principal, key) always gives the same ids.
pub fn op_base(principal: &str, key: &str) -> String {
    fingerprint(&[principal.as_bytes(), key.as_bytes()])
}

fn shard_of(principal: &str, key: &str) -> String {
    let h = Fnv::default().str(principal).str(key).finish();
    format!("idem-{}", h % SHARDS)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IdemRequest {
    Lookup {
        principal: String,
        key: String,
        fp: String,
    },
    Store {
        principal: String,
        key: String,
        fp: String,
        reply: Reply,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdemAnswer {
    New,
    Replay { reply: Reply },
    Mismatch,
    Stored { reply: Reply, ours: bool },
}

async fn send(
    env: &Env,
    principal: &str,
    key: &str,
    req: &IdemRequest,
) -> Result<IdemAnswer, Problem> {
    rpc::call(env, IDEMPOTENCY, &shard_of(principal, key), "idem", req).await
}

pub async fn lookup(
    env: &Env,
    principal: &str,
    key: &str,
    fp: &str,
) -> Result<IdemAnswer, Problem> {
    let req = IdemRequest::Lookup {
        principal: principal.into(),
        key: key.into(),
        fp: fp.into(),
    };
    send(env, principal, key, &req).await
}

pub async fn store(
    env: &Env,
    principal: &str,
    key: &str,
    fp: &str,
    reply: &Reply,
) -> Result<IdemAnswer, Problem> {
    let req = IdemRequest::Store {
        principal: principal.into(),
        key: key.into(),
        fp: fp.into(),
        reply: reply.clone(),
    };
    send(env, principal, key, &req).await
}

/// Whether an answer is kept for replay: successes and business refusals
/// (409), not malformed requests, auth failures or transient errors, which a
/// client fixes or retries.
pub fn storable(reply: &Reply) -> bool {
    (200..300).contains(&reply.status)
        || (reply.status == 409 && !reply.body.contains("\"idempotency_key_reused\""))
}

#[derive(Deserialize)]
struct Row {
    fp: String,
    reply: String,
}

#[durable_object]
pub struct Idempotency {
    state: State,
}

impl DurableObject for Idempotency {
    fn new(state: State, _env: Env) -> Self {
        Idempotency { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let r = rpc::read_request(&mut req, "idempotency").await;
        envelope_response(r.and_then(|x| self.handle(x)))
    }
}

impl Idempotency {
    fn handle(&self, req: IdemRequest) -> Result<IdemAnswer, Problem> {
        let sql = self.state.storage().sql();
        db::exec(
            &sql,
            "CREATE TABLE IF NOT EXISTS idem (principal TEXT NOT NULL, key TEXT NOT NULL,
             fp TEXT NOT NULL, reply TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (principal, key))",
            vec![],
        )?;
        db::exec(
            &sql,
            "CREATE INDEX IF NOT EXISTS idem_by_age ON idem(at)",
            vec![],
        )?;
        let now = db::now_ms();
        let find = |principal: &str, key: &str| -> Result<Option<Row>, Problem> {
            Ok(db::query::<Row>(
                &sql,
                "SELECT fp, reply FROM idem WHERE principal = ? AND key = ? AND at > ?",
                vec![text(principal), text(key), int(now - KEEP_MS)],
            )?
            .into_iter()
            .next())
        };
        match req {
            IdemRequest::Lookup { principal, key, fp } => match find(&principal, &key)? {
                None => Ok(IdemAnswer::New),
                Some(row) if row.fp == fp => Ok(IdemAnswer::Replay {
                    reply: serde_json::from_str(&row.reply)?,
                }),
                Some(_) => Ok(IdemAnswer::Mismatch),
            },
            IdemRequest::Store {
                principal,
                key,
                fp,
                reply,
            } => {
                // Forget what is past its time (a few rows per write).
                db::exec(
                    &sql,
                    "DELETE FROM idem WHERE rowid IN (SELECT rowid FROM idem WHERE at <= ? LIMIT 20)",
                    vec![int(now - KEEP_MS)],
                )?;
                match find(&principal, &key)? {
                    Some(row) if row.fp == fp => Ok(IdemAnswer::Stored {
                        reply: serde_json::from_str(&row.reply)?,
                        ours: false,
                    }),
                    Some(_) => Ok(IdemAnswer::Mismatch),
                    None => {
                        db::exec(
                            &sql,
                            "INSERT OR REPLACE INTO idem (principal, key, fp, reply, at) VALUES (?, ?, ?, ?, ?)",
                            vec![
                                text(&principal),
                                text(&key),
                                text(&fp),
                                text(&serde_json::to_string(&reply)?),
                                int(now),
                            ],
                        )?;
                        Ok(IdemAnswer::Stored { reply, ours: true })
                    }
                }
            }
        }
    }
}
