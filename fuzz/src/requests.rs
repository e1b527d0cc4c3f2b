//! Fuzzing the Worker's request decoding with `bolero` (issue 12): the pure
//! functions every request passes through before any object is called (path
//! to route, `Authorization`, `Idempotency-Key`, JSON body and its canonical
//! form, ids, RFC 3339 times, money, the `API_KEYS` configuration) and the
//! JSON requests the Durable Objects decode. Arbitrary input gives a typed
//! error or a value, never a panic (a panic traps the wasm instance).
//!
//! These functions compile natively (the crate builds natively for its unit
//! tests), so neither run needs the wasm target. `cargo test -p
//! omnistock-fuzz requests` runs each target on a bounded number of
//! random inputs; `make fuzz` runs them coverage-guided with libFuzzer for
//! `FUZZ_SECONDS` each (docs/reliability.md).
use omnistock_core::ids::validate_id;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use omnistock_functions::auth::{authenticate, parse_keys, DEV_KEYS};
use omnistock_functions::extract::{fingerprint, validate_key, MAX_KEY_LEN};
use omnistock_functions::http::{canonical_body, check_id, parse_json, parse_rfc3339, rfc3339};
use omnistock_functions::routes::{matches, table};
use omnistock_functions::wire;

/// Inputs per target under `cargo test` (libFuzzer ignores it).
const TEST_ITERATIONS: usize = 3_000;

/// A request's front door: path, Authorization, Idempotency-Key, body.
#[test]
fn request_front_door() {
    let (keys, bad) = parse_keys(DEV_KEYS);
    assert_eq!((keys.len(), bad), (4, 0));
    bolero::check!()
        .with_type::<(String, String, String, Vec<u8>)>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|(path, auth, idem, body)| {
            // Path: a route matches only with as many segments as its pattern.
            let segs: Vec<&str> = path
                .trim_start_matches('/')
                .trim_end_matches('/')
                .split('/')
                .collect();
            for r in table().iter().filter(|r| matches(r.path, &segs)) {
                assert_eq!(r.path.split('/').count(), segs.len(), "{path:?}");
            }
            for s in &segs {
                if check_id(s, "id").is_ok() {
                    assert!(validate_id(s).is_ok());
                }
            }
            // Authorization: accepted only for a configured key.
            match authenticate(Some(auth), &keys) {
                Ok(_) => {
                    let token = auth.trim().split_once(' ').map(|(_, t)| t.trim());
                    assert!(
                        DEV_KEYS
                            .split(',')
                            .any(|e| e.rsplit_once(':').map(|(k, _)| k) == token),
                        "{auth:?}"
                    );
                }
                Err(p) => assert_eq!(p.status, 401),
            }
            // Idempotency-Key: 1 to 255 visible ASCII characters.
            let ok = !idem.is_empty()
                && idem.len() <= MAX_KEY_LEN
                && idem.bytes().all(|b| (0x21..=0x7e).contains(&b));
            match validate_key(Some(idem.clone())) {
                Ok(k) => assert!(ok && k == *idem),
                Err(p) => assert!(!ok && p.status == 400),
            }
            // Body: JSON or a 400; its canonical form is stable.
            match parse_json::<Value>(body) {
                Ok(v) => assert_eq!(canonical_body(body), serde_json::to_vec(&v).unwrap()),
                Err(p) => assert_eq!(p.status, 400),
            }
            let c = canonical_body(body);
            assert_eq!(canonical_body(&c), c, "canonical form is a fixed point");
            assert_eq!(fingerprint(&[body]).len(), 32);
        });
}

/// RFC 3339 times: any text parses or not, never panics; what parses prints
/// back to the same instant, and every printed instant parses.
#[test]
fn rfc3339_times() {
    bolero::check!()
        .with_type::<(String, i64)>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|(s, ms)| {
            if let Some(t) = parse_rfc3339(s) {
                assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{s:?}");
            }
            // Years 0000 to 9999.
            let ms = ms.rem_euclid(253_402_300_800_000) - 62_167_219_200_000;
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{ms}");
        });
}

/// `API_KEYS`: any configuration parses into entries and a count of bad
/// ones; every entry's key authenticates.
#[test]
fn api_keys_config() {
    bolero::check!()
        .with_type::<String>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|config| {
            let (keys, bad) = parse_keys(config);
            let mut entries = 0;
            for entry in config.split([',', '\n']).filter(|e| !e.trim().is_empty()) {
                entries += 1;
                let (one, one_bad) = parse_keys(entry);
                assert_eq!(one.len() + one_bad, 1, "{entry:?}");
                if let (1, Some((k, _))) = (one.len(), entry.trim().rsplit_once(':')) {
                    let header = format!("Bearer {}", k.trim());
                    assert!(authenticate(Some(&header), &one).is_ok(), "{entry:?}");
                    assert!(authenticate(Some(&header), &keys).is_ok(), "{entry:?}");
                }
            }
            assert_eq!(keys.len() + bad, entries, "{config:?}");
        });
}

/// Valid messages between the Worker and its objects, to mutate.
const SEEDS: [&str; 6] = [
    r#"{"op":"exec","cmds":[{"type":"receive","op":"r.k.0","location":"store-1","qty":5}],"meta":{"actor":"admin"},"idem":{"key":"00","fp":"11"}}"#,
    r#"{"op":"exec","cmds":[{"type":"sell","sale":"s1","terminal":"t1","device_seq":3,"location":"store-1","qty":1,"occurred_at":1700000000000}],"meta":{"actor":"pos@store-1","channel":"pos"}}"#,
    r#"{"op":"ledger","location":"store-1","after":0,"limit":100}"#,
    r#"{"op":"exec","cmds":[{"type":"hold","hold":"h1","location":"store-1","qty":2,"channel":"online","ttl_ms":60000},{"type":"commit","hold":"h1"}],"meta":{"actor":"storefront"}}"#,
    r#"{"type":"transfer_receive","op":"o","transfer":"t1","qty":3,"close":true}"#,
    r#"{"amount":"19.90","currency":"EUR"}"#,
];

/// Decodes `bytes` as `T`; what decodes re-encodes and decodes to the same.
fn roundtrip<T: DeserializeOwned + Serialize>(bytes: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let a = serde_json::to_value(&v).expect("a decoded request encodes");
        let back: T = serde_json::from_value(a.clone()).expect("an encoded request decodes");
        assert_eq!(serde_json::to_value(&back).expect("encodes"), a);
    }
}

/// The objects' requests and core commands, from mutated valid messages
/// (a byte set, inserted or removed at a position) or raw bytes.
#[test]
fn object_requests() {
    bolero::check!()
        .with_type::<(u8, Vec<(u16, u8, u8)>, Vec<u8>)>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|(seed, edits, raw)| {
            let mut b = if seed % 8 == 7 {
                raw.clone()
            } else {
                SEEDS[*seed as usize % SEEDS.len()].as_bytes().to_vec()
            };
            for &(pos, op, byte) in edits.iter().take(8) {
                let i = usize::from(pos) % (b.len() + 1);
                match op % 3 {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ if i < b.len() => {
                        b.remove(i);
                    }
                    _ => {}
                }
            }
            roundtrip::<wire::sku_stock::SkuRequest>(&b);
            roundtrip::<omnistock_core::Command>(&b);
            roundtrip::<wire::terminal::TerminalRequest>(&b);
            roundtrip::<wire::reservation::ReservationRequest>(&b);
            roundtrip::<wire::order::OrderRequest>(&b);
            roundtrip::<wire::transfer::TransferRequest>(&b);
            roundtrip::<wire::returns::ReturnRequest>(&b);
            if let Ok(m) = serde_json::from_slice::<wire::catalog::Money>(&b) {
                // What the Worker lets through, core reads (or refuses as
                // more decimal places than the currency has: a 400 too).
                if m.validate("m").is_ok() {
                    use omnistock_core::money::{Money, MoneyError};
                    match Money::parse(&m.amount, &m.currency) {
                        Ok(_) | Err(MoneyError::TooPrecise { .. }) => {}
                        Err(e) => panic!("{m:?}: {e}"),
                    }
                }
            }
        });
}
