//! omnistock-core: every rule of stock, orders and returns.
//!
//! This crate does no IO. It never reads a clock, a random source or the
//! network: time comes in as an argument and ids come from the caller. It
//! iterates nothing in hash order (`BTreeMap`s, vectors, and [`ids::IdMap`],
//! a hash table on ids that is only iterated sorted, or for order-free sums
//! and checks), so the same inputs give the same events on every target. It never panics on user
//! input: bad input is a typed [`Rejection`] (or a module's own error type).
//!
//! The driving loop (the contract the Durable Object follows):
//!
//! 1. `let expired = state.expire(now);` persist and apply them (lazy expiry);
//! 2. `let events = state.decide(now, &cmd)?;` (pure; a rejection changes nothing)
//! 3. persist `events` durably, then `for e in &events { state.apply(e) }`
//! 4. point the alarm at `state.next_deadline()`.
//!
//! Map of the crate:
//! - [`sku`]: one SKU's stock at every location (the Durable Object's state).
//! - [`order`]: the order lifecycle as a pure state machine, and the per-SKU commands each step issues.
//! - [`returns`]: returns and exchanges, never more than was sold.
//! - [`bundle`]: bundles as a pure expansion into components.
//! - [`customer`]: customers and loyalty points, fed purchase and return facts at least once.
//! - [`catalog_import`]: CSV catalog import (Shopify or omnistock columns) and its cleaning report.
//! - [`fulfillment`]: which location serves which line (single, nearest, pickup).
//! - [`reservation`]: the reservation coordinator, a sans-IO machine over the SKU objects.
//! - [`receipt`]: one receipt model for sales, orders, returns, refunds and exchanges; JSON, HTML and 42-column text.
//! - [`tax`]: tax rates per location and code, inclusive or exclusive, the per-line rounding rule.
//! - [`transfer`]: the transfer coordinator (ship, receive in parts, cancel), sans-IO.
//! - [`money`]: `rust_decimal` money with checked arithmetic and explicit rounding.
//! - [`ids`], [`time`], [`stock`], [`fingerprint`]: the vocabulary.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bundle;
pub mod catalog_import;
pub mod customer;
pub mod fingerprint;
pub mod fulfillment;
pub mod ids;
pub mod money;
pub mod order;
pub mod pricing;
pub mod receipt;
pub mod report;
pub mod reservation;
pub mod returns;
pub mod sku;
pub mod stock;
pub mod tax;
pub mod time;
pub mod transfer;

pub use ids::{
    HoldId, IdError, LocationId, OpId, OrderId, ReturnId, SaleId, Sku, TerminalId, TransferId,
};
pub use sku::{Command, Condition, Event, Rejection, SkuState};
pub use stock::{AdjustReason, Channel, Position, Qty, UnavailableBucket, MAX_LINE_QTY};
pub use time::{Timestamp, DEFAULT_TTL_MS, MAX_TTL_MS, MIN_TTL_MS, RESERVATION_RETENTION_MS};
