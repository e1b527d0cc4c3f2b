//! The typed messages between the Worker and its Durable Objects, one module
//! per object, and the one way to send them ([`call`]).
//!
//! The wire is JSON text sent to the object's `rpc` method (workerd's JS
//! RPC: [`Receiver`], exported by [`rpc_receiver!`]) and answered by an
//! [`Envelope`]'s text. Every message is a serde type: kinds are enums,
//! never strings matched by hand or fields probed in a
//! `serde_json::Value`. Any transport failure, or an answer that does not
//! decode, is a 503 `overloaded` problem: retryable, because every write
//! carries its own id.
//!
//! RPC, not the stub's `fetch`: a `fetch` builds an HTTP request and
//! response on both sides, and that cost workerd about 1 ms of CPU per call
//! here, an RPC call of the same message about 0.06 ms (docs/benchmarks.md,
//! 2026-12-07 session 2). Every object still answers the same message over
//! `fetch` (`POST https://do/`, the message in [`MSG_HEADER`] or the body),
//! which is what a Worker of the version before RPC sends during a deploy,
//! and what [`call`] falls back to if an object of that version has no
//! `rpc` method yet.
//!
//! Arrows point one way: `api` -> `wire` <- `objects`. Nothing here knows
//! the HTTP routes, and objects never import `api`.
pub mod catalog;
pub mod catalog_import;
pub mod customer;
pub mod order;
pub mod receipt;
pub mod reservation;
pub mod reservation_index;
pub mod returns;
pub mod sku_stock;
pub mod terminal;
pub mod transfer;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response};

use crate::http::Problem;

/// The Durable Object namespaces (bindings in wrangler.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    SkuStock,
    Reservation,
    ReservationIndex,
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
            Namespace::ReservationIndex => "RESERVATION_INDEX",
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

/// The header a message travels in (both ways) when it is small: a fetch
/// body is a stream, and streaming it into and out of the object cost
/// workerd here more than everything else in a call (a one-SKU strong read
/// took 5.7 ms of CPU with the message in the body, 2.8 ms in a header:
/// docs/benchmarks.md, 2026-12-04 session 2). A message that does not fit
/// goes in the body, as before; the receiver reads whichever is there.
pub const MSG_HEADER: &str = "omnistock-msg";
/// The largest message sent in [`MSG_HEADER`] (bytes, after escaping):
/// far below what a Worker's subrequest may carry in its headers, and
/// above every hot-path message (a one-line hold or sale is ~0.3-1 KiB).
pub const MAX_HEADER_MSG: usize = 8 * 1024;

/// `json` as header-safe text, if it fits in [`MAX_HEADER_MSG`]: a header
/// value is a byte string (no code point above U+00FF) whose ends are
/// trimmed, so each non-ASCII character becomes its JSON escape (`\uXXXX`,
/// a surrogate pair above U+FFFF), which decodes to the same value.
/// Compact JSON has no control characters (serde_json escapes them in
/// strings) and no whitespace at its ends.
pub fn header_form(json: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    use std::fmt::Write;
    if json.len() > MAX_HEADER_MSG {
        return None;
    }
    let text = if json.is_ascii() {
        Cow::Borrowed(json)
    } else {
        let mut out = String::with_capacity(json.len() + 16);
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
        Cow::Owned(out)
    };
    let fits = text.len() <= MAX_HEADER_MSG
        && text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.starts_with(' ')
        && !text.ends_with(' ');
    fits.then_some(text)
}

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub as its RPC interface (what [`rpc_receiver!`]
    /// exports).
    type RpcStub;
    #[wasm_bindgen(method, catch, js_name = rpc)]
    async fn rpc(this: &RpcStub, msg: &str) -> Result<JsValue, JsValue>;
}

/// A Durable Object that answers the wire's messages: the text of one in,
/// its reply's text ([`reply`]) out. One method serves both transports:
/// the RPC method [`rpc_receiver!`] exports and the object's `fetch`
/// ([`serve`]).
#[allow(async_fn_in_trait)] // objects are single-threaded: no Send bound wanted
pub trait Receiver {
    async fn receive(&self, msg: &str) -> String;
}

/// Exports a [`Receiver`]'s `rpc` method to JavaScript. workerd exposes it
/// to stubs because `functions/entry.mjs` gives each Durable Object class
/// that has one `DurableObject`'s prototype.
#[macro_export]
macro_rules! rpc_receiver {
    ($object:ident) => {
        #[::wasm_bindgen::prelude::wasm_bindgen]
        impl $object {
            /// The wire's RPC entry (`wire::call`).
            pub async fn rpc(
                &self,
                msg: String,
            ) -> ::std::result::Result<::wasm_bindgen::JsValue, ::wasm_bindgen::JsValue> {
                let text = <$object as $crate::wire::Receiver>::receive(self, &msg).await;
                Ok(::wasm_bindgen::JsValue::from_str(&text))
            }
        }
    };
}

/// Serves a message that came over `fetch` (in [`MSG_HEADER`] or the body).
pub async fn serve<R: Receiver>(object: &R, mut req: Request) -> worker::Result<Response> {
    let text = match req.headers().get(MSG_HEADER)? {
        Some(t) => t,
        None => req.text().await?,
    };
    respond(object.receive(&text).await)
}

/// Calls the object `name` of namespace `ns` with `req`.
pub async fn call<Q: Serialize, A: DeserializeOwned>(
    env: &Env,
    ns: Namespace,
    name: &str,
    req: &Q,
) -> Result<A, Problem> {
    let body = serde_json::to_string(req)?;
    let namespace = env.durable_object(ns.binding())?;
    let id = namespace.id_from_name(name)?;
    let stub: RpcStub = id.get_stub()?.into_rpc();
    let text = match stub.rpc(&body).await {
        Ok(v) => v.as_string().unwrap_or_default(),
        Err(e) if not_an_rpc_receiver(&e) => {
            note_fetch_fallback(ns);
            call_fetch(id.get_stub()?, &body).await?
        }
        Err(e) => return Err(worker::Error::from(e).into()),
    };
    match serde_json::from_str::<Envelope<A>>(&text) {
        Ok(Envelope::Ok(a)) => Ok(a),
        Ok(Envelope::Err(p)) => Err(p),
        Err(e) => {
            worker::console_error!("undecodable answer from {}: {e}", ns.binding());
            Err(Problem::overloaded("an internal call failed; retry"))
        }
    }
}

thread_local! {
    /// This isolate already logged that objects refuse RPC.
    static FELL_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Logs, once per isolate, that objects are being called over `fetch`.
fn note_fetch_fallback(ns: Namespace) {
    if !FELL_BACK.with(|f| f.replace(true)) {
        worker::console_warn!(
            "{} objects refuse RPC (a deploy in progress, or OBJECT_RPC=off): calling over fetch",
            ns.binding()
        );
    }
}

/// workerd's refusal of an RPC call to an object (of an earlier version)
/// without the method: nothing ran, so the message can go over `fetch`.
fn not_an_rpc_receiver(e: &JsValue) -> bool {
    let text = js_sys::Error::from(e.clone())
        .message()
        .as_string()
        .unwrap_or_default();
    rpc_refused(&text)
}

/// workerd's two messages (TypeError) for an object that cannot take the
/// call, as this machine's workerd words them: a class of the version before
/// RPC (not declared with `extends DurableObject`), and one without `rpc`.
fn rpc_refused(message: &str) -> bool {
    message.contains("does not support RPC") || message.contains("does not implement the method")
}

/// The message over the stub's `fetch`, for an object without `rpc`.
async fn call_fetch(stub: worker::Stub, body: &str) -> worker::Result<String> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    if let Some(msg) = header_form(body) {
        let h = worker::Headers::new();
        h.set(MSG_HEADER, &msg)?;
        init.with_headers(h);
    } else {
        init.with_body(Some(JsValue::from_str(body)));
    }
    let request = Request::new_with_init("https://do/", &init)?;
    let mut resp = stub.fetch_with_request(request).await?;
    match resp.headers().get(MSG_HEADER)? {
        Some(t) => Ok(t),
        None => resp.text().await,
    }
}

/// Decodes a message's text (one that does not decode is 400).
pub fn decode<T: DeserializeOwned>(msg: &str) -> Result<T, Problem> {
    serde_json::from_str(msg).map_err(|e| Problem::invalid(format!("bad internal message: {e}")))
}

/// The text of a Durable Object's reply to a message. Never fails.
pub fn reply<T: Serialize>(r: Result<T, Problem>) -> String {
    let env = match r {
        Ok(v) => Envelope::Ok(v),
        Err(p) => Envelope::Err(p),
    };
    serde_json::to_string(&env).unwrap_or_else(|e| {
        worker::console_error!("an answer did not encode: {e}");
        let p = Problem::overloaded("an internal encoding error occurred; retry");
        serde_json::to_string(&Envelope::<()>::Err(p)).unwrap_or_default()
    })
}

/// A reply as the answer to a `fetch` (in [`MSG_HEADER`] when it fits).
pub fn respond(reply: String) -> worker::Result<Response> {
    match header_form(&reply) {
        Some(msg) => {
            let h = worker::Headers::new();
            h.set(MSG_HEADER, &msg)?;
            Ok(Response::empty()?.with_headers(h))
        }
        None => Response::ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_workerds_refusals_of_the_method_fall_back_to_fetch() {
        // The messages as workerd gave them here (a probe Worker, 2026-12-07).
        assert!(rpc_refused(
            "The receiving Durable Object does not support RPC, because its class was not \
             declared with `extends DurableObject`. In order to enable RPC, make sure your \
             class extends the special class `DurableObject`, which can be imported from the \
             module \"cloudflare:workers\"."
        ));
        assert!(rpc_refused(
            "The RPC receiver does not implement the method \"rpc\"."
        ));
        // A failure inside a call that may have run is not one of them.
        assert!(!rpc_refused(
            "Durable Object reset because its code was updated."
        ));
        assert!(!rpc_refused("Network connection lost."));
        assert!(!rpc_refused(""));
    }

    #[test]
    fn small_ascii_messages_travel_as_they_are() {
        let m = r#"{"exec":{"sku":"HOT","qty":1}}"#;
        assert_eq!(header_form(m).as_deref(), Some(m));
    }

    #[test]
    fn non_ascii_is_escaped_and_decodes_to_the_same_value() {
        let v = serde_json::json!({"title": "Café ☕ 𝄞", "n": 1});
        let json = serde_json::to_string(&v).unwrap();
        let h = header_form(&json).expect("fits");
        assert!(h.bytes().all(|b| (0x20..0x7f).contains(&b)), "{h}");
        assert!(h.contains("\\u00e9") && h.contains("\\ud834\\udd1e"), "{h}");
        let back: serde_json::Value = serde_json::from_str(&h).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn control_characters_are_already_escaped_by_serde_json() {
        let json = serde_json::to_string(&serde_json::json!({"note": "a\r\nb\t\u{0}"})).unwrap();
        let h = header_form(&json).expect("fits");
        let back: serde_json::Value = serde_json::from_str(&h).unwrap();
        assert_eq!(back["note"], "a\r\nb\t\u{0}");
    }

    #[test]
    fn large_messages_go_in_the_body() {
        let big = serde_json::to_string(&"x".repeat(MAX_HEADER_MSG)).unwrap();
        assert!(header_form(&big).is_none());
        // Escaping can push a message that fitted over the limit.
        let wide = serde_json::to_string(&"é".repeat(MAX_HEADER_MSG / 4)).unwrap();
        assert!(wide.len() <= MAX_HEADER_MSG);
        assert!(header_form(&wide).is_none());
        let just = serde_json::to_string(&"y".repeat(MAX_HEADER_MSG - 2)).unwrap();
        assert_eq!(just.len(), MAX_HEADER_MSG);
        assert!(header_form(&just).is_some());
    }
}
