//! omnistock-core: every rule of stock, orders and returns.
//!
//! This crate does no IO. It never reads a clock, a random source or the
//! network: time comes in as an argument and ids come from the caller. It
//! iterates nothing in hash order, so the same inputs give the same events on
//! every target. It never panics on user input: bad input is a typed
//! [`Rejection`].
//!
//! The driving loop (the contract the Durable Object follows):
//!
//! 1. `let events = state.decide(now, &cmd)?;` (pure; a rejection changes nothing)
//! 2. persist `events` durably, then `for e in &events { state.apply(e) }`
//! 3. `state.expire(now)` gives the holds past their deadline: persist and apply them too
//! 4. point the alarm at `state.next_deadline()`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fingerprint;
pub mod ids;
pub mod sku;
pub mod stock;
pub mod time;

pub use ids::{HoldId, IdError, LocationId, OpId, SaleId, Sku, TerminalId};
pub use sku::{Command, Event, Rejection, SkuState};
pub use stock::{AdjustReason, Channel, Position, Qty, MAX_LINE_QTY};
pub use time::{Timestamp, MAX_TTL_MS, MIN_TTL_MS};
