//! What every handler starts from: the [`Ctx`] of a request (who calls, the
//! body read within its limit, the query, the path, the Idempotency-Key of a
//! write) and the checks of input shared by handlers. The router
//! (`routes.rs`) builds the `Ctx`; handlers only read it.
use omnistock_core::fingerprint::Fnv;
use omnistock_core::{OpId, MAX_LINE_QTY};
use worker::{Env, Method, Request};

use crate::auth::{self, Principal};
use crate::cache;
use crate::http::{self, check_id, query_list, Problem, MAX_LINES};
use crate::wire::Idem;

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Everything a handler needs.
pub struct Ctx {
    pub env: Env,
    pub principal: Principal,
    pub body: Vec<u8>,
    pub query: Vec<(String, String)>,
    pub path: Vec<String>,
    /// The Idempotency-Key of a write, as the owning object keeps it.
    pub idem: Option<Idem>,
    /// When the Worker took the request (epoch ms).
    pub now: i64,
    /// The request's `Content-Type` and `Accept` headers, if given.
    pub content_type: Option<String>,
    pub accept: Option<String>,
    /// `Prefer: respond-async` (RFC 7240): answer a job's 202 at once.
    pub respond_async: bool,
    /// The request's `waitUntil`: work that may finish after the answer.
    pub background: Option<worker::Context>,
}

impl Ctx {
    /// The write's Idempotency-Key (every write has one).
    pub fn idem(&self) -> Result<Idem, Problem> {
        self.idem
            .clone()
            .ok_or_else(|| Problem::invalid("an Idempotency-Key header is required"))
    }
    /// The id base for stock commands of this request: stable across retries.
    pub fn op_base(&self) -> String {
        self.idem
            .as_ref()
            .map(|i| i.key.clone())
            .unwrap_or_default()
    }
    pub fn actor(&self) -> String {
        self.principal.actor()
    }
    /// The `i`-th path segment (`/v1/<things>/{id}` has the id at 2).
    pub fn segment(&self, i: usize) -> &str {
        self.path.get(i).map(String::as_str).unwrap_or("")
    }
    /// The id in the path (`/v1/<things>/{id}`), checked.
    pub fn path_id(&self, what: &str) -> Result<String, Problem> {
        let raw = self.segment(2);
        check_id(raw, &format!("{what} id {raw:?}"))?;
        Ok(raw.to_string())
    }
    /// The one value of a query parameter, if given (twice is 400).
    pub fn query_one(&self, name: &str) -> Result<Option<String>, Problem> {
        let v: Vec<&String> = self
            .query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        match v.as_slice() {
            [] => Ok(None),
            [x] => Ok(Some((*x).clone())),
            _ => Err(Problem::invalid(format!("{name} given twice"))),
        }
    }
    pub fn query_list(&self, name: &str) -> Vec<String> {
        query_list(&self.query, name)
    }
}

/// Authenticates the caller (keys parsed once per isolate).
pub fn principal(req: &Request, env: &Env) -> Result<Principal, Problem> {
    let keys = cache::keys(|| {
        env.secret("API_KEYS")
            .map(|s| s.to_string())
            .or_else(|_| env.var("API_KEYS").map(|v| v.to_string()))
            .unwrap_or_default()
    });
    let header = req.headers().get("Authorization").ok().flatten();
    auth::authenticate(header.as_deref(), &keys)
}

/// The body of a write: at most `max` bytes (64 KiB, [`http::MAX_BODY_BYTES`],
/// for JSON), by header and by the bytes read.
pub async fn body(req: &mut Request, max: usize) -> Result<Vec<u8>, Problem> {
    if let Some(len) = req.headers().get("Content-Length").ok().flatten() {
        match len.trim().parse::<u64>() {
            Ok(n) if n > max as u64 => return Err(Problem::too_large_than(max)),
            Ok(_) => {}
            Err(_) => return Err(Problem::invalid("Content-Length is not a number")),
        }
    }
    let b = req
        .bytes()
        .await
        .map_err(|_| Problem::invalid("the body could not be read"))?;
    if b.len() > max {
        return Err(Problem::too_large_than(max));
    }
    Ok(b)
}

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

/// The Idempotency-Key of a write as objects keep it: (principal, key)
/// hashed, and the request's fingerprint (method, path, canonical body).
pub fn idem(principal: &Principal, key: &str, method: &Method, path: &str, body: &[u8]) -> Idem {
    let canonical = http::canonical_body(body);
    Idem {
        key: fingerprint(&[principal.name().as_bytes(), key.as_bytes()]),
        fp: fingerprint(&[method.to_string().as_bytes(), path.as_bytes(), &canonical]),
    }
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

/// The id of the `i`-th stock command of a request: the same request (same
/// principal and key) always gives the same ids.
pub fn op_id(base: &str, tag: &str, i: usize) -> Result<OpId, Problem> {
    OpId::parse(&format!("{tag}.{base}.{i}")).map_err(|_| Problem::overloaded("bad op id"))
}

pub fn check_lines(n: usize) -> Result<(), Problem> {
    if n == 0 {
        return Err(Problem::invalid("at least one line is required"));
    }
    if n > MAX_LINES {
        return Err(Problem::invalid(format!(
            "at most {MAX_LINES} lines per request"
        )));
    }
    Ok(())
}

pub fn check_qty(qty: i64, min: i64, what: &str) -> Result<(), Problem> {
    if qty < min || qty > MAX_LINE_QTY {
        return Err(Problem::invalid(format!(
            "{what} must be a whole number from {min} to {MAX_LINE_QTY}"
        )));
    }
    Ok(())
}

pub fn check_text(s: &Option<String>, max: usize, what: &str) -> Result<(), Problem> {
    if let Some(s) = s {
        if s.chars().count() > max || s.chars().any(|c| c.is_control()) {
            return Err(Problem::invalid(format!(
                "{what} must be at most {max} characters, without control characters"
            )));
        }
    }
    Ok(())
}

pub fn check_name(s: &str, what: &str) -> Result<(), Problem> {
    if s.trim().is_empty() || s.chars().count() > 200 || s.chars().any(|c| c.is_control()) {
        return Err(Problem::invalid(format!(
            "{what} must be 1 to 200 characters, without control characters"
        )));
    }
    Ok(())
}
