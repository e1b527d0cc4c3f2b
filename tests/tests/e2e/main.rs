//! End-to-end tests against a real `wrangler dev` (workerd with local SQLite
//! Durable Objects). One binary; the harness starts and stops the servers.
mod battery;
mod catalog;
mod concurrency;
mod config;
mod exactly_once;
mod faults;
mod harness;
mod hot_path;
mod imports;
mod keys;
mod live;
mod load_faults;
mod methods;
mod openapi;
mod orders;
mod overload;
mod pages;
mod pos;
mod returns;
mod slice;
mod snapshots;
mod transfers;
