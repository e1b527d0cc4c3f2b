//! The Durable Objects, one module per class. Each owns its SQLite storage,
//! creates its tables once per instance, and talks to other objects only
//! through `wire`. No object imports `api`.
//!
//! - `SkuStock` (sku_stock.rs): one per SKU, the only writer of its stock;
//!   also the home of one-SKU reservations.
//! - `live.rs` (not a class): the live-availability subscribers of a
//!   `SkuStock` (hibernatable WebSockets), its snapshot and push, and the
//!   hubs it pushes to.
//! - `LiveHub` (live_hub.rs): one of `LIVE_HUBS` shards: the hibernatable
//!   sockets that watch several SKUs, fed by the SKU objects' pushes.
//! - `Reservation` (reservation.rs): one per reservation id: the two-phase
//!   coordinator of a reservation across SKU objects (or, written by the
//!   version before, the pointer to a one-SKU reservation's SKU object).
//! - `ReservationIndex` (reservation_index.rs): one of 256 shards by id
//!   hash: where each reservation whose id the client chose lives (its SKU
//!   object, or its own `Reservation` object), and the arbiter of the id.
//! - `Catalog` (catalog.rs): the one catalog (locations, products, SKUs,
//!   barcodes, bundles); read by stock requests through the isolate cache.
//! - `CatalogImport` (catalog_import.rs): one per catalog import id: the
//!   parsed file, its cleaning report and the apply's outcome.
//! - `Terminal` (terminal.rs): one per POS terminal, applies its sales in
//!   device order and keeps every sale's answer forever.
//! - `Order` (order.rs): one per order id: core's order coordinator, the
//!   order's priced lines, its queue version and return claims.
//! - `Transfer` (transfer.rs): one per transfer id: core's transfer
//!   coordinator (ship, receive in parts, cancel) over the SKU objects.
//! - `ReturnCase` (returns.rs): one per return id, drives core's return
//!   coordinator (receipts into the SKU objects, refunds); claims from
//!   the sale's `Terminal` or the `Order`.
//! - `ReceiptBook` (receipt.rs): one per receipt number: the issued
//!   receipts (frozen), a sale id's terminal, the email outbox (issue 14).
//! - `Customer` (customer.rs): one per customer id: core's customer state
//!   (profile, purchases and returns from every channel, loyalty points).
pub mod catalog;
pub mod catalog_import;
pub mod customer;
pub mod customer_feed;
pub mod live;
pub mod live_hub;
pub mod order;
pub mod receipt;
pub mod reservation;
pub mod reservation_index;
pub mod returns;
pub mod serial;
pub mod sku_stock;
pub mod storage;
pub mod terminal;
pub mod transfer;
