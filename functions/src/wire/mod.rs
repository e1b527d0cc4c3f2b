//! The typed messages between the Worker and its Durable Objects, one module
//! per object, and the one way to send them ([`call`]).
//!
//! The wire is JSON over the stub's `fetch` (`POST https://do/<object>`),
//! answered by an [`Envelope`]. Every message is a serde type: kinds are
//! enums, never strings matched by hand or fields probed in a
//! `serde_json::Value`. Any transport failure, or an answer that does not
//! decode, is a 503 `overloaded` problem: retryable, because every write
//! carries its own id.
//!
//! Arrows point one way: `api` -> `wire` <- `objects`. Nothing here knows
//! the HTTP routes, and objects never import `api`.
pub mod catalog;
pub mod catalog_import;
pub mod customer;
pub mod order;
pub mod receipt;
pub mod reservation;
pub mod returns;
pub mod sku_stock;
pub mod terminal;
pub mod transfer;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response};

use crate::http::Problem;

/// The Durable Object namespaces (bindings in wrangler.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    SkuStock,
    Reservation,
    Catalog,
    Terminal,
    Order,
    Transfer,
    ReturnCase,
    CatalogImport,
    LiveHub,
    ReceiptBook,
    Customer,
}

impl Namespace {
    pub fn binding(self) -> &'static str {
        match self {
            Namespace::SkuStock => "SKU_STOCK",
            Namespace::Reservation => "RESERVATION",
            Namespace::Catalog => "CATALOG",
            Namespace::Terminal => "TERMINAL",
            Namespace::Order => "ORDER",
            Namespace::Transfer => "TRANSFER",
            Namespace::ReturnCase => "RETURN",
            Namespace::CatalogImport => "CATALOG_IMPORT",
            Namespace::LiveHub => "LIVE_HUB",
            Namespace::ReceiptBook => "RECEIPT",
            Namespace::Customer => "CUSTOMER",
        }
    }
}

/// The Idempotency-Key of a write as the owning object keeps it: `key` is a
/// hash of (principal, Idempotency-Key) (no secret, fixed length), `fp` the
/// fingerprint of the whole request (method, path, canonical body). The
/// object that owns the write stores both with its answer, in the same
/// SQLite transaction as the effect: the same key with the same `fp` is a
/// replay, with another `fp` a 409 `idempotency_key_reused`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idem {
    pub key: String,
    pub fp: String,
}

/// An Idempotency-Key waits on a coordinator's move under its key alone
/// (its fingerprint is checked apart: core's `Waits`).
impl omnistock_core::order::WaitKey for Idem {
    fn key(&self) -> &str {
        &self.key
    }
}

/// The message between the Worker and a Durable Object: `{"ok": T}` or `{"err": Problem}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope<T> {
    Ok(T),
    Err(Problem),
}

/// Calls the object `name` of namespace `ns` with `req`.
pub async fn call<Q: Serialize, A: DeserializeOwned>(
    env: &Env,
    ns: Namespace,
    name: &str,
    req: &Q,
) -> Result<A, Problem> {
    let body = serde_json::to_string(req)?;
    let stub = env
        .durable_object(ns.binding())?
        .id_from_name(name)?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init("https://do/", &init)?;
    let mut resp = stub.fetch_with_request(request).await?;
    let text = resp.text().await?;
    match serde_json::from_str::<Envelope<A>>(&text) {
        Ok(Envelope::Ok(a)) => Ok(a),
        Ok(Envelope::Err(p)) => Err(p),
        Err(e) => {
            worker::console_error!(
                "undecodable answer from {} (status {}): {e}",
                ns.binding(),
                resp.status_code()
            );
            Err(Problem::overloaded("an internal call failed; retry"))
        }
    }
}

/// Decodes the message a Durable Object was sent (one that does not decode is 400).
pub async fn read<T: DeserializeOwned>(req: &mut Request) -> Result<T, Problem> {
    let body = req.text().await?;
    serde_json::from_str(&body).map_err(|e| Problem::invalid(format!("bad internal message: {e}")))
}

/// A Durable Object's reply to a message. Never fails.
pub fn answer<T: Serialize>(r: Result<T, Problem>) -> worker::Result<Response> {
    let env = match r {
        Ok(v) => Envelope::Ok(v),
        Err(p) => Envelope::Err(p),
    };
    match serde_json::to_string(&env) {
        Ok(s) => Response::ok(s),
        Err(e) => {
            worker::console_error!("an answer did not encode: {e}");
            let p = Problem::overloaded("an internal encoding error occurred; retry");
            Response::ok(serde_json::to_string(&Envelope::<()>::Err(p)).unwrap_or_default())
        }
    }
}
