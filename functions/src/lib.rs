//! omnistock-functions: the Cloudflare Worker.
//!
//! The only crate that knows HTTP, JSON and Durable Objects. Every stock
//! rule is `omnistock_core`'s. The rooms, and the one way the arrows point:
//!
//! ```text
//! lib.rs      entry: fetch -> routes::handle; the objects' classes are exported from objects/
//! routes.rs   the one route table (path, method, roles, CORS, handler) and the router
//! extract.rs  Ctx, authentication, body limit, Idempotency-Key, shared input checks
//! cache.rs    what an isolate remembers: API keys, catalog facts, reservation homes, recent keys
//! edge_cache.rs  availability positions: bounded, at most 1 s stale, refreshed ahead, misses coalesced
//! config.rs   the deployment's vars: fulfillment rule, split, tax table, pickup overdue time
//! queue.rs    the order queue: a read model in D1, written by the Order objects
//! customer_index.rs  the customer lookup (email, phone): D1, written by the Customer objects
//! http.rs     problem+json, replies, JSON and query helpers, RFC 3339
//! auth.rs     API keys (key:role[@location][#name]) and roles
//! overload.rs per-isolate bounds: requests in flight (503), rate per key (429)
//! api/        HTTP handlers, one module per resource          (api -> wire)
//!             (api/live.rs: the WebSocket relay of /v1/availability/live)
//! wire/       typed messages to each object, and `call`        (nothing -> api)
//! objects/    one module per Durable Object class              (objects -> wire, never api)
//! ```
//!
//! Naming: an object's module is named for its class (`objects::sku_stock`
//! is `SkuStock`), its messages are `wire::<same name>::*Request`/`*Answer`,
//! and the handlers of a resource are verbs in `api::<resource>` (`create`,
//! `get`, `release`). No input yields a 5xx or a panic: every error is a
//! problem+json (http.rs).
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod customer_index;
pub mod edge_cache;
pub mod extract;
pub mod feed;
pub mod http;
pub mod objects;
pub mod openapi;
pub mod overload;
pub mod qbo;
pub mod queue;
pub mod reports;
pub mod routes;
pub mod wire;

use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    // The one WebSocket endpoint: its answer is an upgrade, not a Reply.
    if req.path() == api::live::PATH {
        return Ok(api::live::get(req, env).await);
    }
    Ok(routes::handle(req, env, Some(ctx)).await.into_response())
}

/// Cron Triggers (wrangler.toml `[triggers] crons`), by cron string.
#[event(scheduled)]
async fn scheduled(ev: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    let now = ev.schedule() as i64;
    match ev.cron().as_str() {
        // Reports and accounting (issue 10).
        reports::CRON_WEEKLY | reports::CRON_DAILY_SYNC => {
            reports::on_cron(&ev.cron(), &env, now).await
        }
        other => worker::console_warn!("scheduled: no handler for cron {other:?}"),
    }
}
