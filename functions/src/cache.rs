//! What one Worker isolate remembers between requests, every table bounded:
//!
//! - the API keys, parsed once per isolate (a secret changes only with a new
//!   deployment, which starts new isolates);
//! - catalog facts stock requests need (a SKU exists, is a bundle of what;
//!   every location with its flags), so no request passes through the one
//!   `Catalog` object: fetched on a miss, kept [`CATALOG_TTL_MS`], dropped at
//!   once when this isolate writes the catalog. A SKU or location that is not
//!   known is asked of the catalog again (never cached as missing), so a new
//!   one is seen at once and an unknown one is still 404;
//! - where a one-SKU reservation lives (its SKU object), so its release,
//!   extension and reads are one object call;
//! - the Idempotency-Keys this isolate saw recently with their request
//!   fingerprints, so a key reused for a request that goes to another object
//!   is refused here (the owning objects refuse reuse of keys they saw);
//! - SKU positions for storefront and public availability reads: the edge
//!   cache of `edge_cache.rs` (bounded, at most 1 s stale, refreshed ahead,
//!   misses coalesced); [`stock_changed`] drops a SKU there.
//!
//! Every entry may vanish at any time (isolates are evicted): nothing here is
//! the truth, only a shortcut to it.
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::rc::Rc;

use omnistock_core::Sku;

use crate::auth::KeyEntry;
use crate::wire::catalog::{Location, SkuFact};

/// How long a catalog fact is trusted: a change made through another
/// isolate is seen by this one within this time.
pub const CATALOG_TTL_MS: i64 = 10_000;
/// Most SKUs (and barcodes) whose facts are kept.
pub const MAX_CATALOG_ENTRIES: usize = 20_000;
/// Most reservation homes kept.
pub const MAX_HOMES: usize = 20_000;
/// Most recent Idempotency-Keys kept, and for how long.
pub const MAX_RECENT_KEYS: usize = 20_000;
pub const RECENT_KEY_TTL_MS: i64 = 24 * 3_600_000;
pub use crate::edge_cache::READ_STALENESS_MS;

/// A map that forgets its oldest entries past `cap` (insertion order).
pub struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }
    pub fn insert(&mut self, k: K, v: V) {
        self.next += 1;
        self.map.insert(k.clone(), (v, self.next));
        self.order.push_back((k, self.next));
        while self.map.len() > self.cap || self.order.len() > 2 * self.cap + 16 {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(_, s)| *s == stamp) {
                self.map.remove(&old);
            }
        }
    }
    pub fn remove(&mut self, k: &K) {
        self.map.remove(k);
    }
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

struct Caches {
    keys: Option<Rc<Vec<KeyEntry>>>,
    locations: Option<(i64, Rc<Vec<Location>>)>,
    skus: Bounded<Sku, (i64, SkuFact)>,
    barcodes: Bounded<String, (i64, Sku)>,
    homes: Bounded<String, Sku>,
    recent_keys: Bounded<String, (i64, String)>,
}

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::new(Caches {
        keys: None,
        locations: None,
        skus: Bounded::new(MAX_CATALOG_ENTRIES),
        barcodes: Bounded::new(MAX_CATALOG_ENTRIES),
        homes: Bounded::new(MAX_HOMES),
        recent_keys: Bounded::new(MAX_RECENT_KEYS),
    });
}

fn with<T>(f: impl FnOnce(&mut Caches) -> T) -> T {
    CACHES.with(|c| f(&mut c.borrow_mut()))
}

/// The parsed API keys, parsing `config()` the first time only.
pub fn keys(config: impl FnOnce() -> String) -> Rc<Vec<KeyEntry>> {
    if let Some(k) = with(|c| c.keys.clone()) {
        return k;
    }
    let (keys, bad) = crate::auth::parse_keys(&config());
    if bad > 0 {
        worker::console_warn!("{bad} malformed API_KEYS entries ignored");
    }
    let keys = Rc::new(keys);
    with(|c| c.keys = Some(keys.clone()));
    keys
}

/// Every location, if known and fresh at `now`.
pub fn locations(now: i64) -> Option<Rc<Vec<Location>>> {
    with(|c| match &c.locations {
        Some((at, l)) if now - at < CATALOG_TTL_MS => Some(l.clone()),
        _ => None,
    })
}

pub fn set_locations(now: i64, l: Vec<Location>) -> Rc<Vec<Location>> {
    let l = Rc::new(l);
    with(|c| c.locations = Some((now, l.clone())));
    l
}

/// A SKU's fact, if known and fresh (never `Missing`: misses are not kept).
pub fn sku(now: i64, s: &Sku) -> Option<SkuFact> {
    with(|c| match c.skus.get(s) {
        Some((at, f)) if now - at < CATALOG_TTL_MS => Some(f.clone()),
        _ => None,
    })
}

pub fn set_sku(now: i64, s: Sku, f: SkuFact) {
    if f != SkuFact::Missing {
        with(|c| c.skus.insert(s, (now, f)));
    }
}

pub fn barcode(now: i64, code: &str) -> Option<Sku> {
    with(|c| match c.barcodes.get(&code.to_string()) {
        Some((at, s)) if now - at < CATALOG_TTL_MS => Some(s.clone()),
        _ => None,
    })
}

pub fn set_barcode(now: i64, code: String, s: Sku) {
    with(|c| c.barcodes.insert(code, (now, s)));
}

/// This isolate changed the catalog: forget every fact (they are refetched).
pub fn catalog_changed() {
    with(|c| {
        c.locations = None;
        c.skus.clear();
        c.barcodes.clear();
    });
}

/// The SKU object that holds the one-SKU reservation `id`, if known here.
pub fn home(id: &str) -> Option<Sku> {
    with(|c| c.homes.get(&id.to_string()).cloned())
}

pub fn set_home(id: &str, sku: Sku) {
    with(|c| c.homes.insert(id.to_string(), sku));
}

pub fn forget_home(id: &str) {
    with(|c| c.homes.remove(&id.to_string()));
}

/// Whether `key` was seen here within its retention with another request fingerprint.
pub fn key_reused(now: i64, key: &str, fp: &str) -> bool {
    with(|c| match c.recent_keys.get(&key.to_string()) {
        Some((at, seen)) => now - at < RECENT_KEY_TTL_MS && seen != fp,
        None => false,
    })
}

/// Remembers that `key` answered the request `fp`.
pub fn remember_key(now: i64, key: &str, fp: &str) {
    with(|c| {
        let fresh = matches!(c.recent_keys.get(&key.to_string()), Some((at, f)) if f == fp && now - at < RECENT_KEY_TTL_MS);
        if !fresh {
            c.recent_keys.insert(key.to_string(), (now, fp.to_string()));
        }
    })
}

/// This isolate changed `sku`'s stock: its cached positions are gone, and no
/// read that started before is cached (see `edge_cache`).
pub fn stock_changed(sku: &Sku) {
    crate::edge_cache::written(sku);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_forgets_the_oldest() {
        let mut b = Bounded::new(3);
        for i in 0..10 {
            b.insert(i, i * 10);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(&9), Some(&90));
        assert_eq!(b.get(&6), None);
        // Re-inserting refreshes an entry's place.
        b.insert(7, 71);
        b.insert(10, 100);
        assert_eq!(b.get(&7), Some(&71));
        assert_eq!(b.get(&8), None);
        assert!(b.order.len() <= 2 * 3 + 16);
    }
}
