//! Overload is a clean answer (issue 12). Two bounds, both **per isolate**
//! (Cloudflare may run several isolates of the Worker; each counts alone):
//!
//! - `MAX_IN_FLIGHT` (var, default 64; 0 = no bound): requests being served
//!   at once. One more is answered at once with 503 `overloaded` and
//!   `Retry-After: 1`, before it reaches any object, instead of queueing
//!   behind the others for seconds.
//! - `RATE_LIMIT_PER_KEY` (var, requests per second, default 500; 0 = off):
//!   a token bucket per caller (the key's principal name; burst = one
//!   second's worth). Beyond it: 429 `rate_limited` with `Retry-After`.
//!
//! Neither changes anything: the request never reached a handler, so a
//! resend with the same Idempotency-Key later is the first attempt.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::http::Problem;

pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
pub const DEFAULT_RATE_PER_KEY: i64 = 500;
/// Callers remembered per isolate; past it the buckets start over.
const MAX_BUCKETS: usize = 1024;

/// The two limits, read once per isolate from the vars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_in_flight: usize,
    pub rate_per_key: i64,
}

impl Limits {
    /// Parses the vars; absent or malformed values take the defaults.
    pub fn parse(max_in_flight: Option<&str>, rate: Option<&str>) -> Limits {
        Limits {
            max_in_flight: max_in_flight
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
                .min(1_000_000),
            rate_per_key: rate
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|r| *r >= 0)
                .unwrap_or(DEFAULT_RATE_PER_KEY)
                .min(1_000_000),
        }
    }
}

thread_local! {
    static LIMITS: Cell<Option<Limits>> = const { Cell::new(None) };
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
    static BUCKETS: RefCell<Buckets> = RefCell::new(Buckets::default());
    /// Requests shed since the last log line, and when that line was.
    static SHED: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
}

/// This isolate's limits (vars read once).
pub fn limits(env: &worker::Env) -> Limits {
    LIMITS.with(|c| {
        if let Some(l) = c.get() {
            return l;
        }
        let var = |n: &str| env.var(n).ok().map(|v| v.to_string());
        let l = Limits::parse(
            var("MAX_IN_FLIGHT").as_deref(),
            var("RATE_LIMIT_PER_KEY").as_deref(),
        );
        c.set(Some(l));
        l
    })
}

/// A request being served; dropping it frees its place.
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Admits a request or answers 503 `overloaded` at once.
pub fn admit(limits: Limits) -> Result<Slot, Problem> {
    IN_FLIGHT.with(|n| {
        if limits.max_in_flight > 0 && n.get() >= limits.max_in_flight {
            return Err(Problem::overloaded(format!(
                "more than {} requests in flight in this isolate: retry after the Retry-After seconds",
                limits.max_in_flight
            )));
        }
        n.set(n.get() + 1);
        Ok(Slot(()))
    })
}

/// The rate bucket of a caller: its role and location, except that a
/// publishable key, which is in every shopper's page, is counted per
/// shopper address (Cloudflare's `CF-Connecting-IP`, at most 64 bytes of
/// it): one busy storefront must not throttle every other shopper's reads.
pub fn caller(p: &crate::auth::Principal, ip: Option<&str>) -> String {
    match (p.role, ip) {
        (crate::auth::Role::Publishable, Some(ip)) => {
            format!("{}:{}", p.name(), crate::http::clip(ip, 64))
        }
        _ => p.name(),
    }
}

/// Counts a request answered 503 (shed by [`admit`], or by an object's
/// bounded queue) and logs the count at most once a second while they go
/// on (`shed N requests ...`): one log line per shed request would add work
/// to an isolate that already has too much.
pub fn note_shed(now_ms: i64) {
    SHED.with(|c| {
        let (n, since) = c.get();
        let (n, since) = if since == 0 { (0, now_ms) } else { (n, since) };
        if now_ms - since >= 1_000 {
            worker::console_warn!(
                "overload: shed {} requests with 503 in the last {} ms",
                n + 1,
                now_ms - since
            );
            c.set((0, now_ms));
        } else {
            c.set((n + 1, since));
        }
    });
}

/// Token buckets per caller, in thousandths of a request.
#[derive(Default)]
pub struct Buckets {
    map: BTreeMap<String, (i64, i64)>,
}

impl Buckets {
    /// Takes one request from `caller`'s bucket at `now_ms`, or says how
    /// many whole seconds until one is there.
    pub fn take(&mut self, caller: &str, rate: i64, now_ms: i64) -> Result<(), i64> {
        if rate <= 0 {
            return Ok(());
        }
        let full = rate.saturating_mul(1000);
        if self.map.len() >= MAX_BUCKETS && !self.map.contains_key(caller) {
            self.map.clear();
        }
        let (tokens, last) = self.map.entry(caller.to_string()).or_insert((full, now_ms));
        // `rate` thousandths per millisecond is `rate` per second.
        let elapsed = now_ms.saturating_sub(*last).clamp(0, 1_000_000);
        *tokens = tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full);
        *last = now_ms.max(*last);
        if *tokens >= 1000 {
            *tokens -= 1000;
            Ok(())
        } else {
            let wait_ms = (1000 - *tokens + rate - 1) / rate;
            Err((wait_ms + 999) / 1000)
        }
    }
}

/// Charges one request to `caller`, or answers 429 `rate_limited`.
pub fn rate(limits: Limits, caller: &str, now_ms: i64) -> Result<(), Problem> {
    BUCKETS.with(|b| {
        b.borrow_mut()
            .take(caller, limits.rate_per_key, now_ms)
            .map_err(|secs| {
                Problem::new(
                    429,
                    "rate_limited",
                    format!(
                        "more than {} requests per second for this key in this isolate",
                        limits.rate_per_key
                    ),
                )
                .with("retry_after", secs.max(1))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_defaults() {
        let d = Limits::parse(None, None);
        assert_eq!(d.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(d.rate_per_key, DEFAULT_RATE_PER_KEY);
        assert_eq!(Limits::parse(Some(" 4 "), Some("0")).max_in_flight, 4);
        assert_eq!(Limits::parse(Some("x"), Some("-3")), d);
    }

    #[test]
    fn a_publishable_key_is_counted_per_shopper_address_and_other_keys_per_role() {
        use crate::auth::{Principal, Role};
        let who = |role| Principal {
            role,
            location: None,
            key_name: None,
        };
        let (a, b) = (Some("203.0.113.7"), Some("198.51.100.2"));
        let shop = who(Role::Publishable);
        assert_ne!(caller(&shop, a), caller(&shop, b));
        assert_eq!(caller(&shop, None), "publishable");
        let admin = who(Role::Admin);
        assert_eq!(caller(&admin, a), caller(&admin, b));
        let long = "x".repeat(500);
        assert!(caller(&shop, Some(&long)).len() < 100);
    }

    #[test]
    fn a_bucket_allows_its_rate_and_refills() {
        let mut b = Buckets::default();
        for _ in 0..5 {
            assert_eq!(b.take("k", 5, 1000), Ok(()));
        }
        assert_eq!(b.take("k", 5, 1000), Err(1));
        // Another key has its own bucket.
        assert_eq!(b.take("other", 5, 1000), Ok(()));
        // 200 ms later one more (5 per second).
        assert_eq!(b.take("k", 5, 1200), Ok(()));
        assert!(b.take("k", 5, 1200).is_err());
        // Off.
        assert_eq!(b.take("k", 0, 1200), Ok(()));
    }

    #[test]
    fn the_in_flight_bound_answers_503_and_frees_on_drop() {
        let l = Limits {
            max_in_flight: 2,
            rate_per_key: 0,
        };
        let a = admit(l).expect("first");
        let b = admit(l).expect("second");
        let p = admit(l).err().expect("third refused");
        assert_eq!((p.status, p.code.as_str()), (503, "overloaded"));
        drop(a);
        let c = admit(l).expect("a place again");
        drop((b, c));
        assert_eq!(IN_FLIGHT.with(Cell::get), 0);
    }
}
