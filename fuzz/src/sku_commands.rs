//! Fuzzing the per-SKU command path with `bolero` (issue 12).
//!
//! `cargo test -p omnistock-fuzz sku_commands` runs each target on a
//! bounded number of random inputs (bolero's test mode, plus every file under
//! `src/__fuzz__/sku_commands__<target>/crashes` as a regression case). `make fuzz` runs
//! the same targets coverage-guided with libFuzzer for as long as asked
//! (`FUZZ_SECONDS`), see docs/reliability.md.
//!
//! - `sku_command_sequences`: arbitrary command sequences (few ids, so that
//!   retries, reused ids and resolved holds meet; quantities, times and TTLs
//!   anywhere in i64, so that the bounds are tried) with the clock moving
//!   and the alarm expiring holds: after every step the invariants hold
//!   (buckets never negative without a recorded oversell, reserved equals
//!   the held sum, conservation of on_hand by its flows), `available` is
//!   the formula, a rejected command changes nothing, a decision is the same
//!   twice, and the state survives its serde row with the same hash.
//! - `sku_command_json`: arbitrary bytes read as the JSON command a SKU
//!   object receives; a command that parses is decided and applied on a
//!   stocked state with the invariants checked: never a panic.
use omnistock_core::sku::{Command, Condition};
use omnistock_core::*;

/// Inputs per target under `cargo test` (libFuzzer ignores it and runs as long
/// as asked).
const TEST_ITERATIONS: usize = 3_000;

const LOCS: [&str; 2] = ["a", "b"];

fn loc(n: u8) -> LocationId {
    LocationId::parse(LOCS[(n % 2) as usize]).expect("a valid location")
}

fn op(n: u8) -> OpId {
    OpId::parse(&format!("op{}", n % 6)).expect("a valid op id")
}

fn hold(n: u8) -> HoldId {
    HoldId::parse(&format!("h{}", n % 5)).expect("a valid hold id")
}

fn sale(n: u8) -> SaleId {
    SaleId::parse(&format!("s{}", n % 5)).expect("a valid sale id")
}

fn transfer(n: u8) -> TransferId {
    TransferId::parse(&format!("t{}", n % 3)).expect("a valid transfer id")
}

/// A quantity: mostly small, sometimes anything (the bounds must hold).
fn qty(raw: i64, wide: bool) -> i64 {
    if wide {
        raw
    } else {
        raw % 20
    }
}

/// One generated step: (kind, id, location, quantity, wide, time step).
type Step = (u8, u8, u8, i64, bool, u16);

fn command(s: &Step, now: Timestamp) -> Option<Command> {
    let &(kind, id, l, raw, wide, _) = s;
    let q = qty(raw, wide);
    let ttl = if wide {
        Some(raw)
    } else {
        Some(30_000 + (raw.rem_euclid(60)) * 1000)
    };
    Some(match kind % 17 {
        0 => Command::Receive {
            op: op(id),
            location: loc(l),
            qty: q,
        },
        1 => Command::Adjust {
            op: op(id),
            location: loc(l),
            delta: q,
            reason: [
                AdjustReason::Damaged,
                AdjustReason::Found,
                AdjustReason::Shrinkage,
            ][(id % 3) as usize],
            expected_version: (l > 200).then_some(u64::from(l % 4)),
        },
        2 => Command::Count {
            op: op(id),
            location: loc(l),
            counted: q,
            counted_at: Timestamp(now.0.saturating_sub(i64::from(l) * 1000)),
        },
        3 => Command::MarkUnavailable {
            op: op(id),
            location: loc(l),
            bucket: if id % 2 == 0 {
                UnavailableBucket::Damaged
            } else {
                UnavailableBucket::QualityControl
            },
            delta: q,
        },
        4 => Command::SetSafetyStock {
            op: op(id),
            location: loc(l),
            qty: q,
        },
        5 | 6 => Command::Hold {
            hold: hold(id),
            location: loc(l),
            qty: q,
            channel: if l % 3 == 0 {
                Channel::Pos
            } else {
                Channel::Online
            },
            ttl_ms: if kind % 17 == 6 { None } else { ttl },
        },
        7 => Command::Extend {
            hold: hold(id),
            ttl_ms: ttl.unwrap_or(0),
        },
        8 => Command::Release { hold: hold(id) },
        9 => Command::Keep { hold: hold(id) },
        10 => Command::Commit { hold: hold(id) },
        11 => Command::Fulfill { hold: hold(id) },
        12 => Command::Sell {
            sale: sale(id),
            terminal: TerminalId::parse(&format!("till{}", l % 2)).ok()?,
            device_seq: if wide { raw as u64 } else { u64::from(l) },
            location: loc(l),
            qty: q,
            occurred_at: Timestamp(if wide { raw } else { now.0 - 500 }),
        },
        13 => Command::ReturnReceive {
            op: op(id),
            location: loc(l),
            qty: q,
            condition: [
                Condition::Restock,
                Condition::Damaged,
                Condition::ReturnToVendor,
            ][(l % 3) as usize],
            sale: (l % 2 == 0).then(|| sale(id)),
        },
        14 => Command::TransferShip {
            transfer: transfer(id),
            from: loc(l),
            to: loc(l.wrapping_add(1)),
            qty: q,
        },
        15 => Command::TransferReceive {
            op: op(id),
            transfer: transfer(id),
            qty: q,
            close: l % 2 == 0,
        },
        _ => Command::TransferCancel {
            transfer: transfer(id),
        },
    })
}

/// The invariants and the available formula, at `now`, everywhere.
fn check(st: &SkuState, now: Timestamp, what: &dyn core::fmt::Debug) {
    if let Err(e) = st.check_invariants() {
        panic!("invariant broken after {what:?}: {e}\n{st:?}");
    }
    for l in LOCS {
        let l = LocationId::parse(l).expect("location");
        let p = st.position_at(now, &l);
        let pos = p.on_hand - p.reserved - p.committed - p.damaged - p.quality_control;
        assert_eq!(st.available_at(now, &l, Channel::Pos), pos, "{what:?}");
        assert_eq!(
            st.available_at(now, &l, Channel::Online),
            (pos - p.safety_stock).max(0),
            "{what:?}"
        );
    }
}

fn run_sequence(steps: &[Step]) {
    let mut st = SkuState::new();
    let mut now = Timestamp(1_700_000_000_000);
    for s in steps.iter().take(200) {
        now = Timestamp(now.0 + i64::from(s.5) * 50);
        // The alarm: lapsed holds expire (and expiring twice does nothing).
        for e in st.expire(now) {
            st.apply(&e);
        }
        assert!(st.expire(now).is_empty(), "expiry is idempotent");
        check(&st, now, &"expiry");
        let Some(cmd) = command(s, now) else {
            continue;
        };
        let before = st.state_hash();
        let decided = st.decide(now, &cmd);
        assert_eq!(decided, st.decide(now, &cmd), "decide is a function");
        assert_eq!(before, st.state_hash(), "decide changes nothing");
        if let Ok(events) = decided {
            for e in &events {
                st.apply(e);
            }
        }
        check(&st, now, &cmd);
    }
    let row = serde_json::to_string(&st).expect("the state serializes");
    let back: SkuState = serde_json::from_str(&row).expect("the row loads");
    assert_eq!(back.state_hash(), st.state_hash(), "the row is the state");
    back.check_invariants()
        .expect("a loaded state holds the invariants");
}

#[test]
fn sku_command_sequences() {
    bolero::check!()
        .with_type::<Vec<Step>>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|steps| run_sequence(steps));
}

/// A state with stock, holds, a sale and a transfer for arbitrary commands to meet.
fn stocked() -> (SkuState, Timestamp) {
    let mut st = SkuState::new();
    let now = Timestamp(1_700_000_000_000);
    let setup = [
        r#"{"type":"receive","op":"r1","location":"a","qty":50}"#,
        r#"{"type":"hold","hold":"h1","location":"a","qty":3,"channel":"online","ttl_ms":60000}"#,
        r#"{"type":"hold","hold":"h2","location":"a","qty":2,"channel":"online","ttl_ms":null}"#,
        r#"{"type":"commit","hold":"h2"}"#,
        r#"{"type":"sell","sale":"s1","terminal":"till1","device_seq":1,"location":"a","qty":2,"occurred_at":1699999999000}"#,
        r#"{"type":"transfer_ship","transfer":"t1","from":"a","to":"b","qty":4}"#,
    ];
    for json in setup {
        let cmd: Command = serde_json::from_str(json).expect("a setup command");
        let events = st.decide(now, &cmd).expect("the setup applies");
        for e in &events {
            st.apply(e);
        }
    }
    (st, now)
}

/// Command shapes with a hole `N` (a number) and a hole `S` (a string).
const TEMPLATES: [&str; 8] = [
    r#"{"type":"receive","op":"S","location":"a","qty":N}"#,
    r#"{"type":"adjust","op":"o","location":"S","delta":N,"reason":"found","expected_version":N}"#,
    r#"{"type":"count","op":"o","location":"a","counted":N,"counted_at":N}"#,
    r#"{"type":"hold","hold":"S","location":"a","qty":N,"channel":"online","ttl_ms":N}"#,
    r#"{"type":"extend","hold":"h1","ttl_ms":N}"#,
    r#"{"type":"sell","sale":"S","terminal":"till1","device_seq":N,"location":"a","qty":N,"occurred_at":N}"#,
    r#"{"type":"return_receive","op":"o","location":"a","qty":N,"condition":"restock","sale":"S"}"#,
    r#"{"type":"transfer_receive","op":"o","transfer":"t1","qty":N,"close":false}"#,
];

#[test]
fn sku_command_json() {
    let (base, now) = stocked();
    bolero::check!()
        .with_type::<(u8, i64, String, Vec<u8>)>()
        .with_iterations(TEST_ITERATIONS)
        .for_each(|(mode, n, s, raw)| {
            let text;
            let bytes: &[u8] = if mode % 4 == 0 {
                raw
            } else {
                // The string hole takes any text, escaped, or unescaped.
                let esc = serde_json::to_string(s).unwrap_or_default();
                let esc = esc.trim_matches('"');
                let hole = if mode % 4 == 1 { s.as_str() } else { esc };
                text = TEMPLATES[(*mode as usize / 4) % TEMPLATES.len()]
                    .replace('N', &n.to_string())
                    .replace('S', hole);
                text.as_bytes()
            };
            let Ok(cmd) = serde_json::from_slice::<Command>(bytes) else {
                return;
            };
            let mut st = base.clone();
            if let Ok(events) = st.decide(now, &cmd) {
                for e in &events {
                    st.apply(e);
                }
            }
            check(&st, now, &cmd);
        });
}
