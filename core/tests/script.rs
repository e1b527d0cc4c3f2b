//! Data-driven tests of the per-SKU rules: a small line language and
//! expect-test snapshots (update with `UPDATE_EXPECT=1 cargo test -p omnistock-core --test script`).
//!
//! ```text
//! receive S1 @store-1 10 [op=K]          adjust S1 @store-1 -2 damaged [v=3] [op=K]
//! count S1 @store-1 7 at=5s [op=K]       mark S1 @store-1 damaged 2 [op=K]
//! safety S1 @store-1 3 [op=K]            reserve R1 S1 @store-1 3 ttl=30s|ttl=none [online]
//! extend R1 S1 ttl=60s                   release R1 S1 / commit R1 S1 / fulfill R1 S1
//! sell SALE1 S1 @store-1 2 term=T1 seq=1 at=10s
//! return S1 @store-1 2 restock|damaged|return_to_vendor [sale=SALE1] [op=K]
//! ship TR1 S1 @a @b 5                    arrive TR1 S1 3 [close] [op=K]
//! cancel-transfer TR1 S1                 tick 31s (moves the clock, expires nothing)
//! alarm (expires every SKU's lapsed holds) stock S1 @store-1 (position as a reader sees it)
//! deadline S1                            repeat N <command with {i}> (quiet)
//! ```
use std::collections::BTreeMap;
use std::fmt::Write;

use expect_test::{expect, Expect};
use omnistock_core::sku::{Command, Condition, Event};
use omnistock_core::*;

struct World {
    skus: BTreeMap<Sku, SkuState>,
    now: Timestamp,
    next_op: u64,
}

fn dur_ms(s: &str) -> i64 {
    let (n, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(s.len()),
    );
    let n: i64 = n.parse().unwrap();
    match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => panic!("bad duration {s}"),
    }
}

fn fmt_event(e: &Event) -> String {
    match e {
        Event::Received { location, qty, .. } => format!("received @{location} {qty}"),
        Event::Adjusted {
            location,
            delta,
            reason,
            ..
        } => format!("adjusted @{location} {delta:+} {reason}"),
        Event::Counted {
            location,
            counted,
            on_hand,
            variance,
            damaged,
            quality_control,
            oversold,
            at_risk,
            ..
        } => format!(
            "counted @{location} counted={counted} on_hand={on_hand} variance={variance:+} damaged={damaged} qc={quality_control} oversold={oversold} at_risk={at_risk:?}"
        ),
        Event::MarkedUnavailable {
            location,
            bucket,
            delta,
            ..
        } => format!("marked @{location} {} {delta:+}", bucket.as_str()),
        Event::SafetyStockSet { location, qty, .. } => format!("safety_stock @{location} {qty}"),
        Event::Held {
            hold,
            location,
            qty,
            channel,
            expires_at,
            ..
        } => format!("held {hold} @{location} {qty} {channel:?} expires={expires_at:?}"),
        Event::Extended {
            hold, expires_at, ..
        } => format!("extended {hold} expires={expires_at:?}"),
        Event::Released {
            hold,
            location,
            qty,
            ..
        } => format!("released {hold} @{location} {qty}"),
        Event::Expired {
            hold,
            location,
            qty,
            at,
        } => format!("expired {hold} @{location} {qty} at={at:?}"),
        Event::Kept {
            hold,
            location,
            qty,
            ..
        } => format!("kept {hold} @{location} {qty}"),
        Event::Committed {
            hold,
            location,
            qty,
            ..
        } => format!("committed {hold} @{location} {qty}"),
        Event::Fulfilled {
            hold,
            location,
            qty,
            oversold,
            ..
        } => format!("fulfilled {hold} @{location} {qty} oversold={oversold}"),
        Event::Sold {
            sale,
            location,
            qty,
            oversold,
            at_risk,
            late,
            absorbed_by_count,
            occurred_at,
            ..
        } => format!(
            "sold {sale} @{location} {qty} occurred={occurred_at:?} oversold={oversold} at_risk={at_risk:?} late={late} absorbed={absorbed_by_count}"
        ),
        Event::ReturnReceived {
            location,
            qty,
            condition,
            sale,
            ..
        } => format!(
            "return_received @{location} {qty} {} sale={sale:?}",
            condition.as_str()
        ),
        Event::TransferShipped {
            transfer,
            from,
            to,
            qty,
            ..
        } => format!("transfer_shipped {transfer} @{from} -> @{to} {qty}"),
        Event::TransferReceived {
            transfer,
            location,
            qty,
            shortfall,
            ..
        } => format!("transfer_received {transfer} @{location} {qty} shortfall={shortfall}"),
        Event::TransferCancelled { transfer, .. } => format!("transfer_cancelled {transfer}"),
    }
}

fn loc(s: &str) -> LocationId {
    LocationId::parse(s.strip_prefix('@').expect("@location")).unwrap()
}

impl World {
    fn new() -> Self {
        World {
            skus: BTreeMap::new(),
            now: Timestamp::from_ms(0),
            next_op: 0,
        }
    }

    fn parse(&mut self, words: &[&str]) -> (Sku, Command) {
        let mut kv: BTreeMap<&str, &str> = BTreeMap::new();
        let mut flags: Vec<&str> = Vec::new();
        let mut pos: Vec<&str> = Vec::new();
        for w in &words[1..] {
            match w.split_once('=') {
                Some((k, v)) => {
                    kv.insert(k, v);
                }
                None if matches!(*w, "online" | "close") => flags.push(w),
                None => pos.push(w),
            }
        }
        self.next_op += 1;
        let auto = format!("op{}", self.next_op);
        let op = OpId::parse(kv.get("op").copied().unwrap_or(&auto)).unwrap();
        let sku = |s: &str| Sku::parse(s).unwrap();
        let int = |s: &str| s.parse::<i64>().unwrap();
        match words[0] {
            "receive" => (
                sku(pos[0]),
                Command::Receive {
                    op,
                    location: loc(pos[1]),
                    qty: int(pos[2]),
                },
            ),
            "adjust" => (
                sku(pos[0]),
                Command::Adjust {
                    op,
                    location: loc(pos[1]),
                    delta: int(pos[2]),
                    reason: *AdjustReason::ALL
                        .iter()
                        .find(|r| r.as_str() == pos[3])
                        .unwrap(),
                    expected_version: kv.get("v").map(|v| v.parse().unwrap()),
                },
            ),
            "count" => (
                sku(pos[0]),
                Command::Count {
                    op,
                    location: loc(pos[1]),
                    counted: int(pos[2]),
                    counted_at: Timestamp::from_ms(dur_ms(kv["at"])),
                },
            ),
            "mark" => (
                sku(pos[0]),
                Command::MarkUnavailable {
                    op,
                    location: loc(pos[1]),
                    bucket: match pos[2] {
                        "damaged" => UnavailableBucket::Damaged,
                        _ => UnavailableBucket::QualityControl,
                    },
                    delta: int(pos[3]),
                },
            ),
            "safety" => (
                sku(pos[0]),
                Command::SetSafetyStock {
                    op,
                    location: loc(pos[1]),
                    qty: int(pos[2]),
                },
            ),
            "reserve" => (
                sku(pos[1]),
                Command::Hold {
                    hold: HoldId::parse(pos[0]).unwrap(),
                    location: loc(pos[2]),
                    qty: int(pos[3]),
                    channel: if flags.contains(&"online") {
                        Channel::Online
                    } else {
                        Channel::Pos
                    },
                    ttl_ms: match kv.get("ttl") {
                        Some(&"none") => None,
                        Some(t) => Some(dur_ms(t)),
                        None => Some(900_000),
                    },
                },
            ),
            "extend" => (
                sku(pos[1]),
                Command::Extend {
                    hold: HoldId::parse(pos[0]).unwrap(),
                    ttl_ms: dur_ms(kv["ttl"]),
                },
            ),
            "release" | "commit" | "fulfill" | "keep" => {
                let hold = HoldId::parse(pos[0]).unwrap();
                let cmd = match words[0] {
                    "release" => Command::Release { hold },
                    "commit" => Command::Commit { hold },
                    "keep" => Command::Keep { hold },
                    _ => Command::Fulfill { hold },
                };
                (sku(pos[1]), cmd)
            }
            "sell" => (
                sku(pos[1]),
                Command::Sell {
                    sale: SaleId::parse(pos[0]).unwrap(),
                    terminal: TerminalId::parse(kv.get("term").copied().unwrap_or("T1")).unwrap(),
                    device_seq: kv.get("seq").map_or(0, |s| s.parse().unwrap()),
                    location: loc(pos[2]),
                    qty: int(pos[3]),
                    occurred_at: kv
                        .get("at")
                        .map_or(self.now, |t| Timestamp::from_ms(dur_ms(t))),
                },
            ),
            "return" => (
                sku(pos[0]),
                Command::ReturnReceive {
                    op,
                    location: loc(pos[1]),
                    qty: int(pos[2]),
                    condition: match pos[3] {
                        "restock" => Condition::Restock,
                        "damaged" => Condition::Damaged,
                        _ => Condition::ReturnToVendor,
                    },
                    sale: kv.get("sale").map(|s| SaleId::parse(s).unwrap()),
                },
            ),
            "ship" => (
                sku(pos[1]),
                Command::TransferShip {
                    transfer: TransferId::parse(pos[0]).unwrap(),
                    from: loc(pos[2]),
                    to: loc(pos[3]),
                    qty: int(pos[4]),
                },
            ),
            "arrive" => (
                sku(pos[1]),
                Command::TransferReceive {
                    op,
                    transfer: TransferId::parse(pos[0]).unwrap(),
                    qty: int(pos[2]),
                    close: flags.contains(&"close"),
                },
            ),
            "cancel-transfer" => (
                sku(pos[1]),
                Command::TransferCancel {
                    transfer: TransferId::parse(pos[0]).unwrap(),
                },
            ),
            other => panic!("unknown command {other}"),
        }
    }

    /// Runs one line; returns what it printed.
    fn run(&mut self, line: &str, check: bool) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut out = String::new();
        match words[0] {
            "tick" => {
                self.now = self.now.plus_ms(dur_ms(words[1]));
                writeln!(out, "now={:?}", self.now).unwrap();
            }
            "alarm" => {
                for (sku, st) in self.skus.iter_mut() {
                    for e in st.expire(self.now) {
                        st.apply(&e);
                        writeln!(out, "{sku}: {}", fmt_event(&e)).unwrap();
                    }
                    // Expiry is idempotent: a second alarm finds nothing.
                    assert!(st.expire(self.now).is_empty());
                }
            }
            "stock" => {
                let st = self.skus.entry(Sku::parse(words[1]).unwrap()).or_default();
                let l = loc(words[2]);
                let p = st.position_at(self.now, &l);
                writeln!(
                    out,
                    "on_hand={} reserved={} committed={} damaged={} qc={} safety={} incoming={} oversold={} v={} | pos={} online={}",
                    p.on_hand,
                    p.reserved,
                    p.committed,
                    p.damaged,
                    p.quality_control,
                    p.safety_stock,
                    p.incoming,
                    p.oversold,
                    p.version,
                    st.available_at(self.now, &l, Channel::Pos),
                    st.available_at(self.now, &l, Channel::Online)
                )
                .unwrap();
            }
            "sales" => {
                // sales S1 X1 X2...: which sale ids core still remembers.
                let st = self.skus.entry(Sku::parse(words[1]).unwrap()).or_default();
                for w in &words[2..] {
                    let known = st.remembers_sale(&SaleId::parse(w).unwrap());
                    write!(
                        out,
                        "{w}={} ",
                        if known { "remembered" } else { "forgotten" }
                    )
                    .unwrap();
                }
                let kept = st.table_sizes().3;
                writeln!(out, "(kept={kept} forgotten={})", st.sales_forgotten()).unwrap();
            }
            "terminal" => {
                let st = self.skus.entry(Sku::parse(words[1]).unwrap()).or_default();
                let seq = st.terminal_seq(&TerminalId::parse(words[2]).unwrap());
                writeln!(out, "{} seq={seq:?}", words[2]).unwrap();
            }
            "deadline" => {
                let st = self.skus.entry(Sku::parse(words[1]).unwrap()).or_default();
                writeln!(out, "next_deadline={:?}", st.next_deadline()).unwrap();
            }
            "repeat" => {
                let n: usize = words[1].parse().unwrap();
                let rest = words[2..].join(" ");
                let mut ok = 0;
                let mut last = String::new();
                for i in 0..n {
                    last = self.run(&rest.replace("{i}", &i.to_string()), false);
                    ok += usize::from(!last.contains("rejected"));
                }
                for st in self.skus.values() {
                    assert_eq!(st.check_invariants(), Ok(()));
                }
                write!(out, "{ok}/{n} applied; last: {last}").unwrap();
            }
            _ => {
                let (sku, cmd) = self.parse(&words);
                let st = self.skus.entry(sku).or_default();
                let before = check.then(|| st.clone());
                match st.decide(self.now, &cmd) {
                    Ok(events) => {
                        for e in &events {
                            let v_before: Vec<u64> =
                                st.positions().map(|(_, p)| p.version).collect();
                            st.apply(e);
                            if check {
                                assert_eq!(st.check_invariants(), Ok(()), "after {e:?}");
                                // Versions only rise.
                                let v_after: Vec<u64> =
                                    st.positions().map(|(_, p)| p.version).collect();
                                assert!(v_before.iter().zip(&v_after).all(|(a, b)| a <= b));
                                // Applying the same event again changes nothing (at-least-once delivery).
                                let mut twice = st.clone();
                                twice.apply(e);
                                assert_eq!(
                                    twice.state_hash(),
                                    st.state_hash(),
                                    "{e:?} applied twice"
                                );
                                // The event survives its JSON form.
                                let json = serde_json::to_string(e).unwrap();
                                assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), e);
                            }
                            writeln!(out, "{}", fmt_event(e)).unwrap();
                        }
                    }
                    Err(r) => {
                        if let Some(before) = &before {
                            assert_eq!(st, before);
                        }
                        writeln!(out, "rejected: {r:?} ({}): {r}", r.code()).unwrap();
                    }
                }
            }
        }
        out
    }
}

fn check(script: &str, expect: Expect) {
    let mut w = World::new();
    let mut out = String::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        writeln!(out, "> {line}").unwrap();
        out.push_str(&w.run(line, true));
    }
    // A snapshot round trip and a replay of nothing new give the same state.
    for st in w.skus.values() {
        let json = serde_json::to_string(st).unwrap();
        let back: SkuState = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, st);
        assert_eq!(back.check_invariants(), Ok(()));
    }
    expect.assert_eq(&out);
}

#[test]
fn receipts_adjustments_and_versions() {
    check(
        "
        receive S1 @store-1 10
        stock S1 @store-1
        receive S1 @store-1 5 op=r-1
        receive S1 @store-1 5 op=r-1
        receive S1 @store-1 6 op=r-1
        receive S1 @store-1 -1
        receive S1 @store-1 1000001
        adjust S1 @store-1 -3 shrinkage v=2
        adjust S1 @store-1 -3 shrinkage v=2
        adjust S1 @store-1 -13 correction
        adjust S1 @store-1 2 found
        adjust S1 @store-1 2000000 found
        stock S1 @store-1
        ",
        expect![[r#"
            > receive S1 @store-1 10
            received @store-1 10
            > stock S1 @store-1
            on_hand=10 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=1 | pos=10 online=10
            > receive S1 @store-1 5 op=r-1
            received @store-1 5
            > receive S1 @store-1 5 op=r-1
            rejected: Exists (exists): already applied
            > receive S1 @store-1 6 op=r-1
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > receive S1 @store-1 -1
            rejected: QtyOutOfRange { qty: -1 } (invalid_request): quantity -1 is out of range (lines take 0..=1000000)
            > receive S1 @store-1 1000001
            rejected: QtyOutOfRange { qty: 1000001 } (invalid_request): quantity 1000001 is out of range (lines take 0..=1000000)
            > adjust S1 @store-1 -3 shrinkage v=2
            adjusted @store-1 -3 shrinkage
            > adjust S1 @store-1 -3 shrinkage v=2
            rejected: VersionConflict { expected: 2, actual: 3 } (version_conflict): expected version 2, the position is at 3
            > adjust S1 @store-1 -13 correction
            rejected: OnHandBelowUnavailable { on_hand: -1, unavailable: 0 } (invalid_request): on_hand would be -1, below the 0 unavailable units
            > adjust S1 @store-1 2 found
            adjusted @store-1 +2 found
            > adjust S1 @store-1 2000000 found
            rejected: QtyOutOfRange { qty: 2000000 } (invalid_request): quantity 2000000 is out of range (lines take 0..=1000000)
            > stock S1 @store-1
            on_hand=14 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=4 | pos=14 online=14
        "#]],
    );
}

#[test]
fn holds_expire_lazily_and_resolve_once() {
    check(
        "
        receive S1 @store-1 10
        reserve R1 S1 @store-1 3 ttl=30s
        reserve R1 S1 @store-1 3 ttl=30s
        reserve R1 S1 @store-1 4 ttl=30s
        reserve R2 S1 @store-1 8
        reserve R2 S1 @store-1 0
        reserve R2 S1 @store-1 1 ttl=29s
        reserve R2 S1 @store-1 1 ttl=3601s
        reserve R2 S1 @store-1 2 ttl=60s
        deadline S1
        stock S1 @store-1
        tick 29999ms
        stock S1 @store-1
        tick 1ms
        # At the deadline: available again before any alarm ran (lazy expiry).
        stock S1 @store-1
        deadline S1
        commit R1 S1
        extend R1 S1 ttl=60s
        release R1 S1
        alarm
        alarm
        deadline S1
        release R1 S1
        extend R2 S1 ttl=30s
        extend R2 S1 ttl=120s
        extend R2 S1 ttl=10s
        release R2 S1
        release R2 S1
        commit R2 S1
        release R9 S1
        reserve R2 S1 @store-1 2 ttl=60s
        stock S1 @store-1
        ",
        expect![[r#"
            > receive S1 @store-1 10
            received @store-1 10
            > reserve R1 S1 @store-1 3 ttl=30s
            held R1 @store-1 3 Pos expires=Some(t30000ms)
            > reserve R1 S1 @store-1 3 ttl=30s
            rejected: Exists (exists): already applied
            > reserve R1 S1 @store-1 4 ttl=30s
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > reserve R2 S1 @store-1 8
            rejected: InsufficientStock { requested: 8, available: 7 } (insufficient_stock): requested 8, available 7
            > reserve R2 S1 @store-1 0
            rejected: QtyOutOfRange { qty: 0 } (invalid_request): quantity 0 is out of range (lines take 0..=1000000)
            > reserve R2 S1 @store-1 1 ttl=29s
            rejected: TtlOutOfRange { ttl_ms: 29000 } (invalid_request): ttl of 29 s is outside 30..=3600 s
            > reserve R2 S1 @store-1 1 ttl=3601s
            rejected: TtlOutOfRange { ttl_ms: 3601000 } (invalid_request): ttl of 3601 s is outside 30..=3600 s
            > reserve R2 S1 @store-1 2 ttl=60s
            held R2 @store-1 2 Pos expires=Some(t60000ms)
            > deadline S1
            next_deadline=Some(t30000ms)
            > stock S1 @store-1
            on_hand=10 reserved=5 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=3 | pos=5 online=5
            > tick 29999ms
            now=t29999ms
            > stock S1 @store-1
            on_hand=10 reserved=5 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=3 | pos=5 online=5
            > tick 1ms
            now=t30000ms
            > stock S1 @store-1
            on_hand=10 reserved=2 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=3 | pos=8 online=8
            > deadline S1
            next_deadline=Some(t30000ms)
            > commit R1 S1
            rejected: HoldResolved { how: Expired } (invalid_transition): the hold was already Expired
            > extend R1 S1 ttl=60s
            rejected: HoldResolved { how: Expired } (invalid_transition): the hold was already Expired
            > release R1 S1
            rejected: HoldResolved { how: Expired } (invalid_transition): the hold was already Expired
            > alarm
            S1: expired R1 @store-1 3 at=t30000ms
            > alarm
            > deadline S1
            next_deadline=Some(t60000ms)
            > release R1 S1
            rejected: HoldResolved { how: Expired } (invalid_transition): the hold was already Expired
            > extend R2 S1 ttl=30s
            extended R2 expires=t60000ms
            > extend R2 S1 ttl=120s
            extended R2 expires=t150000ms
            > extend R2 S1 ttl=10s
            rejected: TtlOutOfRange { ttl_ms: 10000 } (invalid_request): ttl of 10 s is outside 30..=3600 s
            > release R2 S1
            released R2 @store-1 2
            > release R2 S1
            rejected: HoldResolved { how: Released } (invalid_transition): the hold was already Released
            > commit R2 S1
            rejected: HoldResolved { how: Released } (invalid_transition): the hold was already Released
            > release R9 S1
            rejected: HoldNotFound (not_found): no such hold
            > reserve R2 S1 @store-1 2 ttl=60s
            rejected: Exists (exists): already applied
            > stock S1 @store-1
            on_hand=10 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=6 | pos=10 online=10
        "#]],
    );
}

#[test]
fn keep_makes_a_hold_permanent_once() {
    check(
        "
        receive S1 @store-1 10
        keep O1 S1
        reserve O1 S1 @store-1 3 ttl=60s
        reserve O2 S1 @store-1 2 ttl=60s
        keep O1 S1
        keep O1 S1
        deadline S1
        tick 61s
        stock S1 @store-1
        alarm
        commit O1 S1
        keep O1 S1
        keep O2 S1
        ",
        expect![[r#"
            > receive S1 @store-1 10
            received @store-1 10
            > keep O1 S1
            rejected: HoldNotFound (not_found): no such hold
            > reserve O1 S1 @store-1 3 ttl=60s
            held O1 @store-1 3 Pos expires=Some(t60000ms)
            > reserve O2 S1 @store-1 2 ttl=60s
            held O2 @store-1 2 Pos expires=Some(t60000ms)
            > keep O1 S1
            kept O1 @store-1 3
            > keep O1 S1
            rejected: Exists (exists): already applied
            > deadline S1
            next_deadline=Some(t60000ms)
            > tick 61s
            now=t61000ms
            > stock S1 @store-1
            on_hand=10 reserved=3 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=4 | pos=7 online=7
            > alarm
            S1: expired O2 @store-1 2 at=t61000ms
            > commit O1 S1
            committed O1 @store-1 3
            > keep O1 S1
            rejected: Exists (exists): already applied
            > keep O2 S1
            rejected: HoldResolved { how: Expired } (invalid_transition): the hold was already Expired
        "#]],
    );
}

#[test]
fn commit_fulfill_release_and_channels() {
    check(
        "
        receive S1 @web 10
        safety S1 @web 4
        reserve A S1 @web 7 online
        reserve A S1 @web 6 online
        stock S1 @web
        reserve B S1 @web 4
        fulfill A S1
        commit A S1
        commit A S1
        extend A S1 ttl=60s
        stock S1 @web
        tick 1h
        alarm
        fulfill A S1
        fulfill A S1
        release A S1
        reserve O1 S1 @web 1 ttl=none
        tick 2h
        alarm
        commit O1 S1
        release O1 S1
        stock S1 @web
        ",
        expect![[r#"
            > receive S1 @web 10
            received @web 10
            > safety S1 @web 4
            safety_stock @web 4
            > reserve A S1 @web 7 online
            rejected: InsufficientStock { requested: 7, available: 6 } (insufficient_stock): requested 7, available 6
            > reserve A S1 @web 6 online
            held A @web 6 Online expires=Some(t900000ms)
            > stock S1 @web
            on_hand=10 reserved=6 committed=0 damaged=0 qc=0 safety=4 incoming=0 oversold=0 v=3 | pos=4 online=0
            > reserve B S1 @web 4
            held B @web 4 Pos expires=Some(t900000ms)
            > fulfill A S1
            rejected: HoldNotActive (invalid_transition): the hold is not in a state that allows this
            > commit A S1
            committed A @web 6
            > commit A S1
            rejected: Exists (exists): already applied
            > extend A S1 ttl=60s
            rejected: HoldNotActive (invalid_transition): the hold is not in a state that allows this
            > stock S1 @web
            on_hand=10 reserved=4 committed=6 damaged=0 qc=0 safety=4 incoming=0 oversold=0 v=5 | pos=0 online=0
            > tick 1h
            now=t3600000ms
            > alarm
            S1: expired B @web 4 at=t3600000ms
            > fulfill A S1
            fulfilled A @web 6 oversold=0
            > fulfill A S1
            rejected: HoldResolved { how: Fulfilled } (invalid_transition): the hold was already Fulfilled
            > release A S1
            rejected: HoldResolved { how: Fulfilled } (invalid_transition): the hold was already Fulfilled
            > reserve O1 S1 @web 1 ttl=none
            held O1 @web 1 Pos expires=None
            > tick 2h
            now=t10800000ms
            > alarm
            > commit O1 S1
            committed O1 @web 1
            > release O1 S1
            released O1 @web 1
            > stock S1 @web
            on_hand=4 reserved=0 committed=0 damaged=0 qc=0 safety=4 incoming=0 oversold=0 v=10 | pos=4 online=0
        "#]],
    );
}

#[test]
fn pos_sales_never_refused_oversell_and_at_risk() {
    check(
        "
        receive S1 @store-1 5
        reserve R1 S1 @store-1 2 ttl=60s
        reserve R2 S1 @store-1 2 ttl=60s
        commit R1 S1
        sell X1 S1 @store-1 1 term=T1 seq=1
        sell X2 S1 @store-1 3 term=T1 seq=2
        stock S1 @store-1
        sell X2 S1 @store-1 3 term=T1 seq=2
        sell X2 S1 @store-1 4 term=T1 seq=2
        # Uploaded late, from offline: old occurred_at, lower device_seq.
        tick 10m
        sell X0 S1 @store-1 1 term=T1 seq=0 at=5s
        # A hold past its deadline is not reported at risk and is not reopened.
        deadline S1
        sell X3 S1 @store-1 0 term=T2 seq=1
        sell X4 S1 @store-1 1 term=T2 seq=2 at=20m
        sell X5 S1 @store-1 1000001
        stock S1 @store-1
        fulfill R1 S1
        stock S1 @store-1
        ",
        expect![[r#"
            > receive S1 @store-1 5
            received @store-1 5
            > reserve R1 S1 @store-1 2 ttl=60s
            held R1 @store-1 2 Pos expires=Some(t60000ms)
            > reserve R2 S1 @store-1 2 ttl=60s
            held R2 @store-1 2 Pos expires=Some(t60000ms)
            > commit R1 S1
            committed R1 @store-1 2
            > sell X1 S1 @store-1 1 term=T1 seq=1
            sold X1 @store-1 1 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
            > sell X2 S1 @store-1 3 term=T1 seq=2
            sold X2 @store-1 3 occurred=t0ms oversold=3 at_risk=["R2", "R1"] late=false absorbed=false
            > stock S1 @store-1
            on_hand=1 reserved=2 committed=2 damaged=0 qc=0 safety=0 incoming=0 oversold=3 v=6 | pos=-3 online=0
            > sell X2 S1 @store-1 3 term=T1 seq=2
            rejected: Exists (exists): already applied
            > sell X2 S1 @store-1 4 term=T1 seq=2
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > tick 10m
            now=t600000ms
            > sell X0 S1 @store-1 1 term=T1 seq=0 at=5s
            sold X0 @store-1 1 occurred=t5000ms oversold=1 at_risk=["R1"] late=true absorbed=false
            > deadline S1
            next_deadline=Some(t60000ms)
            > sell X3 S1 @store-1 0 term=T2 seq=1
            sold X3 @store-1 0 occurred=t600000ms oversold=0 at_risk=["R1"] late=false absorbed=false
            > sell X4 S1 @store-1 1 term=T2 seq=2 at=20m
            rejected: TimeInFuture { at: t1200000ms } (invalid_request): time t1200000ms is in the future
            > sell X5 S1 @store-1 1000001
            rejected: QtyOutOfRange { qty: 1000001 } (invalid_request): quantity 1000001 is out of range (lines take 0..=1000000)
            > stock S1 @store-1
            on_hand=0 reserved=0 committed=2 damaged=0 qc=0 safety=0 incoming=0 oversold=4 v=8 | pos=-2 online=0
            > fulfill R1 S1
            fulfilled R1 @store-1 2 oversold=2
            > stock S1 @store-1
            on_hand=-2 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=6 v=9 | pos=-2 online=0
        "#]],
    );
}

#[test]
fn counts_add_back_sales_made_while_counting() {
    check(
        "
        receive S1 @store-1 20
        tick 10m
        # Counting starts at 10m; two sales during the count reach the server first.
        sell X1 S1 @store-1 2 at=11m
        sell X2 S1 @store-1 1 at=9m
        tick 5m
        count S1 @store-1 17 at=10m op=c1
        stock S1 @store-1
        count S1 @store-1 17 at=10m op=c1
        count S1 @store-1 16 at=10m op=c1
        # A sale before the count, uploaded after it: the count already saw it.
        sell X3 S1 @store-1 4 at=8m
        sell X4 S1 @store-1 1 at=14m
        stock S1 @store-1
        count S1 @store-1 3 at=9m
        count S1 @store-1 -1 at=15m
        count S1 @store-1 100000001 at=15m
        count S1 @store-1 3 at=30m
        mark S1 @store-1 damaged 2
        mark S1 @store-1 quality_control 1
        mark S1 @store-1 damaged 5
        mark S1 @store-1 quality_control -2
        reserve R1 S1 @store-1 2 ttl=none
        stock S1 @store-1
        # Fewer units found than were held or damaged.
        count S1 @store-1 1 at=15m
        stock S1 @store-1
        adjust S1 @store-1 -1 damaged
        mark S1 @store-1 damaged -1
        stock S1 @store-1
        ",
        expect![[r#"
            > receive S1 @store-1 20
            received @store-1 20
            > tick 10m
            now=t600000ms
            > sell X1 S1 @store-1 2 at=11m
            sold X1 @store-1 2 occurred=t660000ms oversold=0 at_risk=[] late=false absorbed=false
            > sell X2 S1 @store-1 1 at=9m
            sold X2 @store-1 1 occurred=t540000ms oversold=0 at_risk=[] late=false absorbed=false
            > tick 5m
            now=t900000ms
            > count S1 @store-1 17 at=10m op=c1
            counted @store-1 counted=17 on_hand=15 variance=-2 damaged=0 qc=0 oversold=0 at_risk=[]
            > stock S1 @store-1
            on_hand=15 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=4 | pos=15 online=15
            > count S1 @store-1 17 at=10m op=c1
            rejected: Exists (exists): already applied
            > count S1 @store-1 16 at=10m op=c1
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > sell X3 S1 @store-1 4 at=8m
            sold X3 @store-1 4 occurred=t480000ms oversold=0 at_risk=[] late=false absorbed=true
            > sell X4 S1 @store-1 1 at=14m
            sold X4 @store-1 1 occurred=t840000ms oversold=0 at_risk=[] late=false absorbed=false
            > stock S1 @store-1
            on_hand=14 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=6 | pos=14 online=14
            > count S1 @store-1 3 at=9m
            rejected: CountOutOfOrder { last_counted_at: t600000ms } (invalid_request): a later count (t600000ms) was already recorded
            > count S1 @store-1 -1 at=15m
            rejected: QtyOutOfRange { qty: -1 } (invalid_request): quantity -1 is out of range (lines take 0..=1000000)
            > count S1 @store-1 100000001 at=15m
            rejected: QtyOutOfRange { qty: 100000001 } (invalid_request): quantity 100000001 is out of range (lines take 0..=1000000)
            > count S1 @store-1 3 at=30m
            rejected: TimeInFuture { at: t1800000ms } (invalid_request): time t1800000ms is in the future
            > mark S1 @store-1 damaged 2
            marked @store-1 damaged +2
            > mark S1 @store-1 quality_control 1
            marked @store-1 quality_control +1
            > mark S1 @store-1 damaged 5
            marked @store-1 damaged +5
            > mark S1 @store-1 quality_control -2
            rejected: UnavailableBelowZero { bucket: QualityControl, qty: -1 } (invalid_request): quality_control would be -1
            > reserve R1 S1 @store-1 2 ttl=none
            held R1 @store-1 2 Pos expires=None
            > stock S1 @store-1
            on_hand=14 reserved=2 committed=0 damaged=7 qc=1 safety=0 incoming=0 oversold=0 v=10 | pos=4 online=4
            > count S1 @store-1 1 at=15m
            counted @store-1 counted=1 on_hand=1 variance=-13 damaged=1 qc=0 oversold=0 at_risk=["R1"]
            > stock S1 @store-1
            on_hand=1 reserved=2 committed=0 damaged=1 qc=0 safety=0 incoming=0 oversold=0 v=11 | pos=-2 online=0
            > adjust S1 @store-1 -1 damaged
            rejected: OnHandBelowUnavailable { on_hand: 0, unavailable: 1 } (invalid_request): on_hand would be 0, below the 1 unavailable units
            > mark S1 @store-1 damaged -1
            marked @store-1 damaged -1
            > stock S1 @store-1
            on_hand=1 reserved=2 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=12 | pos=-1 online=0
        "#]],
    );
}

#[test]
fn count_window_is_bounded() {
    check(
        "
        receive S1 @a 1000 at=0
        tick 1s
        repeat 300 sell X{i} S1 @a 1 seq={i}
        tick 1s
        count S1 @a 5 at=0
        count S1 @a 5 at=1s
        stock S1 @a
        ",
        expect![[r#"
            > receive S1 @a 1000 at=0
            received @a 1000
            > tick 1s
            now=t1000ms
            > repeat 300 sell X{i} S1 @a 1 seq={i}
            300/300 applied; last: sold X299 @a 1 occurred=t1000ms oversold=0 at_risk=[] late=false absorbed=false
            > tick 1s
            now=t2000ms
            > count S1 @a 5 at=0
            rejected: CountOutsideWindow { horizon: t1000ms } (invalid_request): the count is older than the remembered movements (from t1000ms)
            > count S1 @a 5 at=1s
            counted @a counted=5 on_hand=5 variance=-695 damaged=0 qc=0 oversold=0 at_risk=[]
            > stock S1 @a
            on_hand=5 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=302 | pos=5 online=5
        "#]],
    );
}

#[test]
fn returns_never_exceed_the_sale() {
    check(
        "
        receive S1 @store-1 5
        sell X1 S1 @store-1 3
        return S1 @store-1 1 restock sale=X1
        return S1 @store-1 1 damaged sale=X1 op=ret-2
        return S1 @store-1 1 damaged sale=X1 op=ret-2
        return S1 @store-1 2 return_to_vendor sale=X1
        return S1 @store-1 1 return_to_vendor sale=X1
        return S1 @store-1 1 restock sale=NOPE
        return S1 @store-1 0 restock
        return S1 @web 4 restock
        stock S1 @store-1
        stock S1 @web
        ",
        expect![[r#"
            > receive S1 @store-1 5
            received @store-1 5
            > sell X1 S1 @store-1 3
            sold X1 @store-1 3 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
            > return S1 @store-1 1 restock sale=X1
            return_received @store-1 1 restock sale=Some("X1")
            > return S1 @store-1 1 damaged sale=X1 op=ret-2
            return_received @store-1 1 damaged sale=Some("X1")
            > return S1 @store-1 1 damaged sale=X1 op=ret-2
            rejected: Exists (exists): already applied
            > return S1 @store-1 2 return_to_vendor sale=X1
            rejected: ReturnExceedsSold { sold: 3, returned: 2 } (invalid_request): the sale sold 3 units and 2 were already returned
            > return S1 @store-1 1 return_to_vendor sale=X1
            return_received @store-1 1 return_to_vendor sale=Some("X1")
            > return S1 @store-1 1 restock sale=NOPE
            rejected: SaleNotFound (not_found): no such sale of this SKU
            > return S1 @store-1 0 restock
            rejected: QtyOutOfRange { qty: 0 } (invalid_request): quantity 0 is out of range (lines take 0..=1000000)
            > return S1 @web 4 restock
            return_received @web 4 restock sale=None
            > stock S1 @store-1
            on_hand=4 reserved=0 committed=0 damaged=1 qc=0 safety=0 incoming=0 oversold=0 v=5 | pos=3 online=3
            > stock S1 @web
            on_hand=4 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=1 | pos=4 online=4
        "#]],
    );
}

#[test]
fn transfers_ship_receive_short_and_cancel() {
    check(
        "
        receive S1 @wh 10
        ship T1 S1 @wh @store-1 6
        ship T1 S1 @wh @store-1 6
        ship T1 S1 @wh @store-1 5
        ship T2 S1 @wh @wh 1
        ship T2 S1 @wh @store-1 5
        stock S1 @wh
        stock S1 @store-1
        arrive T1 S1 2
        arrive T1 S1 5
        arrive T1 S1 0
        arrive T1 S1 3 close
        arrive T1 S1 1
        stock S1 @store-1
        arrive T9 S1 1
        cancel-transfer T1 S1
        cancel-transfer T3 S1
        cancel-transfer T3 S1
        ship T3 S1 @wh @store-1 1
        arrive T3 S1 1
        ship T4 S1 @wh @store-1 2
        arrive T4 S1 2
        stock S1 @store-1
        stock S1 @wh
        ",
        expect![[r#"
            > receive S1 @wh 10
            received @wh 10
            > ship T1 S1 @wh @store-1 6
            transfer_shipped T1 @wh -> @store-1 6
            > ship T1 S1 @wh @store-1 6
            rejected: Exists (exists): already applied
            > ship T1 S1 @wh @store-1 5
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > ship T2 S1 @wh @wh 1
            rejected: SameLocation (invalid_request): a transfer needs two different locations
            > ship T2 S1 @wh @store-1 5
            rejected: InsufficientStock { requested: 5, available: 4 } (insufficient_stock): requested 5, available 4
            > stock S1 @wh
            on_hand=4 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=2 | pos=4 online=4
            > stock S1 @store-1
            on_hand=0 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=6 oversold=0 v=1 | pos=0 online=0
            > arrive T1 S1 2
            transfer_received T1 @store-1 2 shortfall=0
            > arrive T1 S1 5
            rejected: OverReceived { remaining: 4 } (invalid_request): only 4 units are still in transit
            > arrive T1 S1 0
            rejected: QtyOutOfRange { qty: 0 } (invalid_request): quantity 0 is out of range (lines take 0..=1000000)
            > arrive T1 S1 3 close
            transfer_received T1 @store-1 3 shortfall=1
            > arrive T1 S1 1
            rejected: TransferClosed (invalid_transition): the transfer is closed
            > stock S1 @store-1
            on_hand=5 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=3 | pos=5 online=5
            > arrive T9 S1 1
            rejected: TransferNotFound (not_found): no such transfer
            > cancel-transfer T1 S1
            rejected: TransferAlreadyShipped (invalid_transition): the transfer already shipped
            > cancel-transfer T3 S1
            transfer_cancelled T3
            > cancel-transfer T3 S1
            rejected: Exists (exists): already applied
            > ship T3 S1 @wh @store-1 1
            rejected: TransferCancelled (invalid_transition): the transfer was cancelled
            > arrive T3 S1 1
            rejected: TransferCancelled (invalid_transition): the transfer was cancelled
            > ship T4 S1 @wh @store-1 2
            transfer_shipped T4 @wh -> @store-1 2
            > arrive T4 S1 2
            transfer_received T4 @store-1 2 shortfall=0
            > stock S1 @store-1
            on_hand=7 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=5 | pos=7 online=7
            > stock S1 @wh
            on_hand=2 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=3 | pos=2 online=2
        "#]],
    );
}

#[test]
fn retention_forgets_op_sale_and_hold_ids_after_a_day() {
    check(
        "
        receive S1 @a 5 op=k1
        sell X1 S1 @a 1
        reserve R1 S1 @a 1 ttl=30s
        release R1 S1
        sell X1 S1 @a 1
        tick 24h
        receive S1 @a 1 op=k2
        receive S1 @a 5 op=k1
        release R1 S1
        sell X1 S1 @a 1 at=0ms
        sales S1 X1
        tick 1ms
        receive S1 @a 1 op=k3
        receive S1 @a 5 op=k1
        release R1 S1
        sales S1 X1
        sell X1 S1 @a 1 at=0ms
        ",
        expect![[r#"
            > receive S1 @a 5 op=k1
            received @a 5
            > sell X1 S1 @a 1
            sold X1 @a 1 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
            > reserve R1 S1 @a 1 ttl=30s
            held R1 @a 1 Pos expires=Some(t30000ms)
            > release R1 S1
            released R1 @a 1
            > sell X1 S1 @a 1
            rejected: Exists (exists): already applied
            > tick 24h
            now=t86400000ms
            > receive S1 @a 1 op=k2
            received @a 1
            > receive S1 @a 5 op=k1
            rejected: Exists (exists): already applied
            > release R1 S1
            rejected: HoldResolved { how: Released } (invalid_transition): the hold was already Released
            > sell X1 S1 @a 1 at=0ms
            rejected: Exists (exists): already applied
            > sales S1 X1
            X1=remembered (kept=1 forgotten=0)
            > tick 1ms
            now=t86400001ms
            > receive S1 @a 1 op=k3
            received @a 1
            > receive S1 @a 5 op=k1
            received @a 5
            > release R1 S1
            rejected: HoldNotFound (not_found): no such hold
            > sales S1 X1
            X1=forgotten (kept=0 forgotten=1)
            > sell X1 S1 @a 1 at=0ms
            sold X1 @a 1 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
        "#]],
    );
}

/// The sale window: within it a repeated sale is recognised; past it core
/// no longer knows the id (the shell's durable record does), a return
/// against it is taken on the caller's word, and so is a return naming a
/// sale core never saw once it has forgotten any.
#[test]
fn sale_window_and_returns_against_forgotten_sales() {
    check(
        "
        receive S1 @a 10 op=r1
        return S1 @a 1 restock sale=X9
        sell X1 S1 @a 3
        tick 23h
        sell X1 S1 @a 3 at=0ms
        sell X1 S1 @a 2 at=0ms
        return S1 @a 4 restock sale=X1
        return S1 @a 1 restock sale=X1
        sales S1 X1
        tick 1h
        tick 1ms
        receive S1 @a 1 op=r2
        sales S1 X1
        return S1 @a 4 restock sale=X1
        return S1 @a 1 restock sale=X9
        stock S1 @a
        ",
        expect![[r#"
            > receive S1 @a 10 op=r1
            received @a 10
            > return S1 @a 1 restock sale=X9
            rejected: SaleNotFound (not_found): no such sale of this SKU
            > sell X1 S1 @a 3
            sold X1 @a 3 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
            > tick 23h
            now=t82800000ms
            > sell X1 S1 @a 3 at=0ms
            rejected: Exists (exists): already applied
            > sell X1 S1 @a 2 at=0ms
            rejected: ExistsWithDifferentBody (idempotency_key_reused): this id was already used with different content
            > return S1 @a 4 restock sale=X1
            rejected: ReturnExceedsSold { sold: 3, returned: 0 } (invalid_request): the sale sold 3 units and 0 were already returned
            > return S1 @a 1 restock sale=X1
            return_received @a 1 restock sale=Some("X1")
            > sales S1 X1
            X1=remembered (kept=1 forgotten=0)
            > tick 1h
            now=t86400000ms
            > tick 1ms
            now=t86400001ms
            > receive S1 @a 1 op=r2
            received @a 1
            > sales S1 X1
            X1=forgotten (kept=0 forgotten=1)
            > return S1 @a 4 restock sale=X1
            return_received @a 4 restock sale=Some("X1")
            > return S1 @a 1 restock sale=X9
            return_received @a 1 restock sale=Some("X9")
            > stock S1 @a
            on_hand=14 reserved=0 committed=0 damaged=0 qc=0 safety=0 incoming=0 oversold=0 v=6 | pos=14 online=14
        "#]],
    );
}

/// At most MAX_REMEMBERED_SALES sale ids, the oldest forgotten first; at
/// most MAX_TERMINALS terminals, the one seen longest ago forgotten first.
#[test]
fn sale_and_terminal_caps() {
    check(
        "
        receive S1 @a 1000000 op=r1
        repeat 100001 sell X{i} S1 @a 1 seq={i}
        sales S1 X0 X1 X100000
        sell X0 S1 @a 1 seq=7
        sales S1 X0 X1 X2
        repeat 4096 sell Y{i} S2 @a 1 term=T{i} seq=5
        tick 1s
        sell Y-again S2 @a 1 term=T0 seq=6
        tick 1s
        sell Y-new S2 @a 1 term=T-new seq=1
        terminal S2 T0
        terminal S2 T1
        terminal S2 T-new
        ",
        expect![[r#"
            > receive S1 @a 1000000 op=r1
            received @a 1000000
            > repeat 100001 sell X{i} S1 @a 1 seq={i}
            100001/100001 applied; last: sold X100000 @a 1 occurred=t0ms oversold=0 at_risk=[] late=false absorbed=false
            > sales S1 X0 X1 X100000
            X0=forgotten X1=remembered X100000=remembered (kept=100000 forgotten=1)
            > sell X0 S1 @a 1 seq=7
            sold X0 @a 1 occurred=t0ms oversold=0 at_risk=[] late=true absorbed=false
            > sales S1 X0 X1 X2
            X0=remembered X1=forgotten X2=remembered (kept=100000 forgotten=2)
            > repeat 4096 sell Y{i} S2 @a 1 term=T{i} seq=5
            4096/4096 applied; last: sold Y4095 @a 1 occurred=t0ms oversold=1 at_risk=[] late=false absorbed=false
            > tick 1s
            now=t1000ms
            > sell Y-again S2 @a 1 term=T0 seq=6
            sold Y-again @a 1 occurred=t1000ms oversold=1 at_risk=[] late=false absorbed=false
            > tick 1s
            now=t2000ms
            > sell Y-new S2 @a 1 term=T-new seq=1
            sold Y-new @a 1 occurred=t2000ms oversold=1 at_risk=[] late=false absorbed=false
            > terminal S2 T0
            T0 seq=Some(6)
            > terminal S2 T1
            T1 seq=None
            > terminal S2 T-new
            T-new seq=Some(1)
        "#]],
    );
}

#[test]
fn limits_on_everything() {
    check(
        "
        repeat 1024 receive S1 @L{i} 1
        receive S1 @one-too-many 1
        repeat 1000 receive S2 @a 1000000
        receive S2 @a 1
        repeat 10000 ship T{i} S2 @a @b 1
        ship T-last S2 @a @b 1
        sell X1 S1 @L0 1 at=10m
        count S1 @L0 1 at=10m
        ",
        expect![[r#"
            > repeat 1024 receive S1 @L{i} 1
            1024/1024 applied; last: received @L1023 1
            > receive S1 @one-too-many 1
            rejected: TooManyLocations (overloaded): too many locations for this SKU
            > repeat 1000 receive S2 @a 1000000
            1000/1000 applied; last: received @a 1000000
            > receive S2 @a 1
            rejected: OnHandLimit (invalid_request): on_hand would pass 1000000000
            > repeat 10000 ship T{i} S2 @a @b 1
            10000/10000 applied; last: transfer_shipped T9999 @a -> @b 1
            > ship T-last S2 @a @b 1
            rejected: TooManyTransfers (overloaded): too many transfers in flight
            > sell X1 S1 @L0 1 at=10m
            rejected: TimeInFuture { at: t600000ms } (invalid_request): time t600000ms is in the future
            > count S1 @L0 1 at=10m
            rejected: TimeInFuture { at: t600000ms } (invalid_request): time t600000ms is in the future
        "#]],
    );
}

#[test]
fn too_many_holds() {
    check(
        "
        receive S1 @a 1000000
        repeat 100000 reserve R{i} S1 @a 1 ttl=none
        reserve R-last S1 @a 1 ttl=none
        release R0 S1
        reserve R-last S1 @a 1 ttl=none
        ",
        expect![[r#"
            > receive S1 @a 1000000
            received @a 1000000
            > repeat 100000 reserve R{i} S1 @a 1 ttl=none
            100000/100000 applied; last: held R99999 @a 1 Pos expires=None
            > reserve R-last S1 @a 1 ttl=none
            rejected: TooManyHolds (overloaded): too many active holds on this SKU
            > release R0 S1
            released R0 @a 1
            > reserve R-last S1 @a 1 ttl=none
            held R-last @a 1 Pos expires=None
        "#]],
    );
}
