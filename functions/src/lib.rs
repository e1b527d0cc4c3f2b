//! omnistock-functions: the Cloudflare Worker.
//!
//! The only crate that knows HTTP, JSON and Durable Objects. Every stock rule
//! is `omnistock_core`'s; this crate validates, routes, authenticates, keeps
//! idempotency records and drives the objects:
//!
//! - `SkuStock` (sku_stock.rs): one per SKU, the only writer of its stock.
//! - `Reservation` (reservation.rs): one per reservation, the two-phase coordinator.
//! - `Catalog` (catalog.rs): one instance, locations, products, SKUs, barcodes, bundles.
//! - `Idempotency` (idempotency.rs): 16 shards of stored answers per Idempotency-Key.
//! - `Terminal` (pos.rs): one per POS terminal, applies its sales in device order, keeps them forever.
//!
//! No input yields a 5xx or a panic: every error is a problem+json (http.rs).
pub mod api;
pub mod auth;
pub mod catalog;
pub mod catalog_api;
pub mod db;
pub mod http;
pub mod idempotency;
pub mod inventory;
pub mod openapi;
pub mod pos;
pub mod reservation;
pub mod reservations;
pub mod rpc;
pub mod serial;
pub mod sku_stock;

use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    Ok(api::handle(req, env).await.into_response())
}
