//! Calls from the Worker (or one Durable Object) to a Durable Object.
//!
//! The wire is JSON over the stub's `fetch`: `POST https://do/<op>` with the
//! request as body, answered by an [`Envelope`]. Any transport failure or an
//! answer that does not decode is a 503 `overloaded` problem: retryable,
//! because every command carries its own id.
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit};

use crate::http::{Envelope, Problem};

pub const SKU_STOCK: &str = "SKU_STOCK";
pub const CATALOG: &str = "CATALOG";
pub const RESERVATION: &str = "RESERVATION";
pub const IDEMPOTENCY: &str = "IDEMPOTENCY";
pub const TERMINAL: &str = "TERMINAL";

/// Calls `op` on the object `name` of namespace `binding`.
pub async fn call<Q: Serialize, A: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    op: &str,
    req: &Q,
) -> Result<A, Problem> {
    let body = serde_json::to_string(req)?;
    let stub = env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(&format!("https://do/{op}"), &init)?;
    let mut resp = stub.fetch_with_request(request).await?;
    let text = resp.text().await?;
    match serde_json::from_str::<Envelope<A>>(&text) {
        Ok(Envelope::Ok(a)) => Ok(a),
        Ok(Envelope::Err(p)) => Err(p),
        Err(e) => {
            worker::console_error!(
                "undecodable answer from {binding} {op} (status {}): {e}",
                resp.status_code()
            );
            Err(Problem::overloaded("an internal call failed; retry"))
        }
    }
}

/// Decodes the request a Durable Object was sent (one that does not decode is 400).
pub async fn read_request<T: DeserializeOwned>(
    req: &mut worker::Request,
    what: &str,
) -> Result<T, Problem> {
    let body = req.text().await?;
    serde_json::from_str(&body).map_err(|e| Problem::invalid(format!("bad {what} request: {e}")))
}

/// The operation name of a Durable Object request: the URL path without its slash.
pub fn op_of(req: &Request) -> String {
    req.path().trim_start_matches('/').to_string()
}
