//! Messages to a `ReservationIndex` shard: where a reservation whose id the
//! client chose lives. One of [`SHARDS`] objects, picked by a fixed hash of
//! the id, records each such id: a one-SKU reservation's SKU object, or that
//! the id is coordinated by its own `Reservation` object (across SKUs). It
//! is the arbiter of the id: a create under an id that names another live
//! reservation is refused there.
//!
//! Before the shards, each one-SKU reservation's pointer was a brand-new
//! `Reservation` object (its own SQLite file) per hold; a shard is an
//! existing object, so the pointer costs one more row, not one more object
//! (docs/benchmarks.md, 2026-12-07 session 4). An id this index does not
//! know is asked of the reservation's own object, which still answers for
//! the pointers written there by the version before.
use omnistock_core::Sku;
use serde::{Deserialize, Serialize};
use worker::Env;

use super::reservation::routed_sku;
use super::Namespace;
use crate::http::Problem;

/// Index shards. Never change it: an id's shard must stay where it was
/// written (a new count needs a new namespace and a migration).
pub const SHARDS: u64 = 256;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IndexRequest {
    /// The one-SKU reservation `id` (content `fp`) lives in the SKU object
    /// of `sku` for `ttl_ms` from now, at least.
    Register {
        id: String,
        sku: Sku,
        fp: String,
        ttl_ms: i64,
    },
    /// The reservation `id` is coordinated by its own object (it spans SKU
    /// objects) until `until` (epoch ms), at least.
    Claim { id: String, until: i64 },
    /// Where `id` lives.
    Lookup { id: String },
}

/// A shard's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "home", rename_all = "snake_case")]
pub enum Located {
    /// In the SKU object of `sku`.
    Sku { sku: Sku },
    /// In its own `Reservation` object: coordinated there, or unknown here
    /// (that object answers 404 for an id nobody used).
    Own,
}

/// The shard that records `id`: FNV-1a of its bytes, modulo [`SHARDS`].
pub fn shard(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ri.{}", h % SHARDS)
}

/// Sends one message to the shard of `id`.
pub async fn call(env: &Env, id: &str, req: &IndexRequest) -> Result<Located, Problem> {
    super::call(env, Namespace::ReservationIndex, &shard(id), req).await
}

/// Where reservation `id` lives: the SKU object a server-issued id names,
/// else what its shard recorded.
pub async fn locate(env: &Env, id: &str) -> Result<Located, Problem> {
    if let Some(sku) = routed_sku(id) {
        return Ok(Located::Sku { sku });
    }
    call(env, id, &IndexRequest::Lookup { id: id.to_string() }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_fixed_and_spread() {
        // Fixed forever: these names are where existing ids were written.
        assert_eq!(shard("cart-42"), "ri.76");
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096 {
            let s = shard(&format!("cart-{i}"));
            let n: u64 = s.strip_prefix("ri.").unwrap().parse().unwrap();
            assert!(n < SHARDS);
            seen.insert(n);
        }
        assert!(seen.len() > 240, "{} shards used", seen.len());
    }
}
