//! A reference model of one SKU (TigerBeetle's auditor idea): plain vectors,
//! linear scans, every figure recomputed from scratch, no fingerprints, no
//! indexes. Random command sequences run against both; the decisions, the
//! positions and the invariants must agree after every step. The model also
//! forgets op ids, sale ids and resolved holds a day after they were last
//! touched, by the time of the latest event (long ticks cross that window).
#![cfg(not(target_arch = "wasm32"))]
use omnistock_core::sku::{Command, Event, Rejection};
use omnistock_core::*;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
enum HState {
    Held(Option<i64>),
    Committed,
    Released,
    Expired,
    Fulfilled,
}

#[derive(Clone, Debug)]
struct MHold {
    id: String,
    loc: usize,
    qty: i64,
    content: (usize, i64, bool, Option<i64>),
    state: HState,
    /// When it was released, expired or fulfilled.
    resolved_at: Option<i64>,
}

#[derive(Clone, Debug, Default)]
struct MLoc {
    on_hand: i64,
    damaged: i64,
    qc: i64,
    safety: i64,
    version: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    locs: [MLoc; 2],
    holds: Vec<MHold>,
    /// (op id, the command's content as text, when it was applied)
    ops: Vec<(String, String, i64)>,
    /// (sale id, content, when it was applied)
    sales: Vec<(String, String, i64)>,
    /// The time of the latest event: what forgetting goes by.
    clock: i64,
}

/// A command in the test's own terms.
#[derive(Clone, Debug)]
enum Op {
    Receive(usize, usize, i64),
    Adjust(usize, usize, i64, Option<u64>),
    Safety(usize, usize, i64),
    Mark(usize, usize, bool, i64),
    Hold(usize, usize, i64, bool, Option<i64>),
    Extend(usize, i64),
    Release(usize),
    Commit(usize),
    Fulfill(usize),
    Sell(usize, usize, i64),
    Tick(i64, bool),
}

const LOCS: [&str; 2] = ["a", "b"];

/// The op id of a command: few, so that retries and reused keys happen.
fn op_key(op: &Op) -> String {
    match *op {
        Op::Receive(o, ..) | Op::Adjust(o, ..) | Op::Safety(o, ..) | Op::Mark(o, ..) => {
            format!("k{o}")
        }
        _ => String::new(),
    }
}

fn loc(i: usize) -> LocationId {
    LocationId::parse(LOCS[i]).unwrap()
}

impl Model {
    /// Units held at `now`: a hold past its deadline holds nothing (lazy expiry).
    fn reserved(&self, l: usize, now: i64) -> i64 {
        self.holds
            .iter()
            .filter(|h| {
                h.loc == l
                    && match h.state {
                        HState::Held(Some(t)) => t > now,
                        HState::Held(None) => true,
                        _ => false,
                    }
            })
            .map(|h| h.qty)
            .sum()
    }
    fn committed(&self, l: usize) -> i64 {
        self.holds
            .iter()
            .filter(|h| h.loc == l && h.state == HState::Committed)
            .map(|h| h.qty)
            .sum()
    }
    fn available(&self, l: usize, online: bool, now: i64) -> i64 {
        let m = &self.locs[l];
        let pos = m.on_hand - self.reserved(l, now) - self.committed(l) - m.damaged - m.qc;
        if online {
            (pos - m.safety).max(0)
        } else {
            pos
        }
    }
    /// An event is applied at `now`: ids last touched more than a day
    /// before the latest event are forgotten (core prunes before it applies).
    fn advance(&mut self, now: i64) {
        if now <= self.clock {
            return;
        }
        self.clock = now;
        let horizon = now - sku::RETENTION_MS;
        self.ops.retain(|o| o.2 >= horizon);
        self.sales.retain(|s| s.2 >= horizon);
        self.holds
            .retain(|h| h.resolved_at.is_none_or(|t| t >= horizon));
    }
    /// Holds past their deadline become expired (the driving loop's step 1).
    fn expire(&mut self, now: i64) {
        let lapsed = |h: &MHold| matches!(h.state, HState::Held(Some(t)) if t <= now);
        if self.holds.iter().any(lapsed) {
            self.advance(now);
        }
        for h in &mut self.holds {
            if lapsed(h) {
                h.state = HState::Expired;
                h.resolved_at = Some(now);
                self.locs[h.loc].version += 1;
            }
        }
    }
    fn op_seen(&self, op: &str, content: &str) -> Result<(), &'static str> {
        match self.ops.iter().find(|(o, _, _)| o == op) {
            None => Ok(()),
            Some((_, c, _)) if c == content => Err("Exists"),
            Some(_) => Err("ExistsWithDifferentBody"),
        }
    }
    /// The live view of a hold at `now`: a lapsed hold counts as expired.
    fn hold_state(&self, i: usize, now: i64) -> Option<HState> {
        let id = format!("H{i}");
        self.holds
            .iter()
            .find(|h| h.id == id)
            .map(|h| match h.state {
                HState::Held(Some(t)) if t <= now => HState::Expired,
                ref s => s.clone(),
            })
    }
    fn live(&self, i: usize, now: i64) -> Result<HState, &'static str> {
        match self.hold_state(i, now) {
            None => Err("HoldNotFound"),
            Some(HState::Released | HState::Expired | HState::Fulfilled) => Err("HoldResolved"),
            Some(s) => Ok(s),
        }
    }
    fn hold_mut(&mut self, i: usize) -> &mut MHold {
        let id = format!("H{i}");
        self.holds.iter_mut().find(|h| h.id == id).unwrap()
    }

    /// Decides and applies; returns the rejection's name or the effect's quantity.
    fn step(&mut self, now: i64, op: &Op, n: usize) -> Result<i64, &'static str> {
        let opid = op_key(op);
        match *op {
            Op::Receive(_, l, q) => {
                if !(0..=1_000_000).contains(&q) {
                    return Err("QtyOutOfRange");
                }
                let c = format!("receive {l} {q}");
                self.op_seen(&opid, &c)?;
                self.advance(now);
                self.ops.push((opid, c, now));
                self.locs[l].on_hand += q;
                self.locs[l].version += 1;
                Ok(q)
            }
            Op::Adjust(_, l, d, v) => {
                if d.abs() > 1_000_000 {
                    return Err("QtyOutOfRange");
                }
                let c = format!("adjust {l} {d} {v:?}");
                self.op_seen(&opid, &c)?;
                let m = &self.locs[l];
                if v.is_some_and(|v| v != m.version) {
                    return Err("VersionConflict");
                }
                if d < 0 && m.on_hand + d < m.damaged + m.qc {
                    return Err("OnHandBelowUnavailable");
                }
                self.advance(now);
                self.ops.push((opid, c, now));
                self.locs[l].on_hand += d;
                self.locs[l].version += 1;
                Ok(d)
            }
            Op::Safety(_, l, q) => {
                if !(0..=1_000_000).contains(&q) {
                    return Err("QtyOutOfRange");
                }
                let c = format!("safety {l} {q}");
                self.op_seen(&opid, &c)?;
                self.advance(now);
                self.ops.push((opid, c, now));
                self.locs[l].safety = q;
                self.locs[l].version += 1;
                Ok(q)
            }
            Op::Mark(_, l, damaged, d) => {
                if d.abs() > 1_000_000 {
                    return Err("QtyOutOfRange");
                }
                let c = format!("mark {l} {damaged} {d}");
                self.op_seen(&opid, &c)?;
                let m = &self.locs[l];
                let bucket = if damaged { m.damaged } else { m.qc };
                if bucket + d < 0 {
                    return Err("UnavailableBelowZero");
                }
                if m.damaged + m.qc + d > m.on_hand {
                    return Err("OnHandBelowUnavailable");
                }
                if d > 0 && d > self.available(l, false, now) {
                    return Err("InsufficientStock");
                }
                self.advance(now);
                self.ops.push((opid, c, now));
                let m = &mut self.locs[l];
                if damaged {
                    m.damaged += d
                } else {
                    m.qc += d
                }
                m.version += 1;
                Ok(d)
            }
            Op::Hold(i, l, q, online, ttl) => {
                if !(1..=1_000_000).contains(&q) {
                    return Err("QtyOutOfRange");
                }
                if ttl.is_some_and(|t| !(30_000..=3_600_000).contains(&t)) {
                    return Err("TtlOutOfRange");
                }
                let content = (l, q, online, ttl);
                let id = format!("H{i}");
                if let Some(h) = self.holds.iter().find(|h| h.id == id) {
                    return Err(if h.content == content {
                        "Exists"
                    } else {
                        "ExistsWithDifferentBody"
                    });
                }
                if q > self.available(l, online, now) {
                    return Err("InsufficientStock");
                }
                self.advance(now);
                self.holds.push(MHold {
                    id,
                    loc: l,
                    qty: q,
                    content,
                    state: HState::Held(ttl.map(|t| now + t)),
                    resolved_at: None,
                });
                self.locs[l].version += 1;
                Ok(q)
            }
            Op::Extend(i, ttl) => {
                if !(30_000..=3_600_000).contains(&ttl) {
                    return Err("TtlOutOfRange");
                }
                match self.live(i, now)? {
                    HState::Held(Some(t)) => {
                        self.advance(now);
                        let h = self.hold_mut(i);
                        let new = t.max(now + ttl);
                        h.state = HState::Held(Some(new));
                        let l = h.loc;
                        if new > t {
                            self.locs[l].version += 1;
                        }
                        Ok(new)
                    }
                    _ => Err("HoldNotActive"),
                }
            }
            Op::Release(i) => {
                self.live(i, now)?;
                self.advance(now);
                let h = self.hold_mut(i);
                h.state = HState::Released;
                h.resolved_at = Some(now);
                let (l, q) = (h.loc, h.qty);
                self.locs[l].version += 1;
                Ok(q)
            }
            Op::Commit(i) => match self.live(i, now)? {
                HState::Committed => Err("Exists"),
                _ => {
                    self.advance(now);
                    let h = self.hold_mut(i);
                    h.state = HState::Committed;
                    let (l, q) = (h.loc, h.qty);
                    self.locs[l].version += 1;
                    Ok(q)
                }
            },
            Op::Fulfill(i) => match self.live(i, now)? {
                HState::Committed => {
                    self.advance(now);
                    let h = self.hold_mut(i);
                    h.state = HState::Fulfilled;
                    h.resolved_at = Some(now);
                    let (l, q) = (h.loc, h.qty);
                    self.locs[l].on_hand -= q;
                    self.locs[l].version += 1;
                    Ok(q)
                }
                _ => Err("HoldNotActive"),
            },
            Op::Sell(s, l, q) => {
                if !(0..=1_000_000).contains(&q) {
                    return Err("QtyOutOfRange");
                }
                let id = format!("X{s}");
                let c = format!("{l} {q} {now} {n}");
                match self.sales.iter().find(|(x, _, _)| *x == id) {
                    Some((_, old, _)) if *old == c => return Err("Exists"),
                    Some(_) => return Err("ExistsWithDifferentBody"),
                    None => {}
                }
                let oversold = (q - self.available(l, false, now).max(0)).clamp(0, q);
                self.advance(now);
                self.sales.push((id, c, now));
                self.locs[l].on_hand -= q;
                self.locs[l].version += 1;
                Ok(oversold)
            }
            Op::Tick(..) => Ok(0),
        }
    }
}

fn command(op: &Op, now: i64, n: usize) -> Command {
    let key = op_key(op);
    let opid = || OpId::parse(&key).unwrap();
    let hold = |i: usize| HoldId::parse(&format!("H{i}")).unwrap();
    match *op {
        Op::Receive(_, l, qty) => Command::Receive {
            op: opid(),
            location: loc(l),
            qty,
        },
        Op::Adjust(_, l, delta, v) => Command::Adjust {
            op: opid(),
            location: loc(l),
            delta,
            reason: AdjustReason::Correction,
            expected_version: v,
        },
        Op::Safety(_, l, qty) => Command::SetSafetyStock {
            op: opid(),
            location: loc(l),
            qty,
        },
        Op::Mark(_, l, damaged, delta) => Command::MarkUnavailable {
            op: opid(),
            location: loc(l),
            bucket: if damaged {
                UnavailableBucket::Damaged
            } else {
                UnavailableBucket::QualityControl
            },
            delta,
        },
        Op::Hold(i, l, qty, online, ttl_ms) => Command::Hold {
            hold: hold(i),
            location: loc(l),
            qty,
            channel: if online {
                Channel::Online
            } else {
                Channel::Pos
            },
            ttl_ms,
        },
        Op::Extend(i, ttl_ms) => Command::Extend {
            hold: hold(i),
            ttl_ms,
        },
        Op::Release(i) => Command::Release { hold: hold(i) },
        Op::Commit(i) => Command::Commit { hold: hold(i) },
        Op::Fulfill(i) => Command::Fulfill { hold: hold(i) },
        Op::Sell(s, l, qty) => Command::Sell {
            sale: SaleId::parse(&format!("X{s}")).unwrap(),
            terminal: TerminalId::parse("T1").unwrap(),
            device_seq: n as u64,
            location: loc(l),
            qty,
            occurred_at: Timestamp::from_ms(now),
        },
        Op::Tick(..) => unreachable!(),
    }
}

fn rejection_name(r: &Rejection) -> String {
    let d = format!("{r:?}");
    d.split([' ', '{']).next().unwrap().to_string()
}

fn effect(e: &Event) -> i64 {
    match e {
        Event::Received { qty, .. }
        | Event::SafetyStockSet { qty, .. }
        | Event::Held { qty, .. }
        | Event::Released { qty, .. }
        | Event::Committed { qty, .. }
        | Event::Fulfilled { qty, .. } => *qty,
        Event::Adjusted { delta, .. } | Event::MarkedUnavailable { delta, .. } => *delta,
        Event::Extended { expires_at, .. } => expires_at.as_ms(),
        Event::Sold { oversold, .. } => *oversold,
        other => panic!("unexpected {other:?}"),
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let qty = prop_oneof![8 => 0i64..12, 1 => Just(-1i64), 1 => Just(1_000_001i64)];
    let delta = prop_oneof![8 => -6i64..8, 1 => Just(-1_000_001i64)];
    let ttl = prop_oneof![
        1 => Just(None),
        6 => (30i64..200).prop_map(|s| Some(s * 1000)),
        1 => Just(Some(29_999i64)),
        1 => Just(Some(3_600_001i64)),
    ];
    prop_oneof![
        4 => (0..5usize, 0..2usize, qty.clone()).prop_map(|(o, l, q)| Op::Receive(o, l, q)),
        2 => (0..5usize, 0..2usize, delta.clone(), prop::option::of(0u64..6))
            .prop_map(|(o, l, d, v)| Op::Adjust(o, l, d, v)),
        1 => (0..5usize, 0..2usize, qty.clone()).prop_map(|(o, l, q)| Op::Safety(o, l, q)),
        1 => (0..5usize, 0..2usize, any::<bool>(), delta).prop_map(|(o, l, b, d)| Op::Mark(o, l, b, d)),
        6 => (0..6usize, 0..2usize, qty.clone(), any::<bool>(), ttl)
            .prop_map(|(i, l, q, on, t)| Op::Hold(i, l, q, on, t)),
        1 => (0..6usize, prop_oneof![Just(10_000i64), (30i64..300).prop_map(|s| s * 1000)])
            .prop_map(|(i, t)| Op::Extend(i, t)),
        2 => (0..6usize).prop_map(Op::Release),
        2 => (0..6usize).prop_map(Op::Commit),
        2 => (0..6usize).prop_map(Op::Fulfill),
        3 => (0..4usize, 0..2usize, qty).prop_map(|(s, l, q)| Op::Sell(s, l, q)),
        3 => (0i64..120, any::<bool>()).prop_map(|(s, e)| Op::Tick(s * 1000, e)),
        // Hours: across the one-day window in which ids are remembered.
        1 => (4i64..26, any::<bool>()).prop_map(|(h, e)| Op::Tick(h * 3_600_000, e)),
    ]
}

fn run(ops: &[Op]) {
    let mut real = SkuState::new();
    let mut model = Model::default();
    let mut log: Vec<Event> = Vec::new();
    let mut now = 0i64;
    for (n, op) in ops.iter().enumerate() {
        if let Op::Tick(ms, eager) = *op {
            now += ms;
            if eager {
                for e in real.expire(Timestamp::from_ms(now)) {
                    real.apply(&e);
                    assert_eq!(real.check_invariants(), Ok(()));
                    log.push(e);
                }
                model.expire(now);
            }
            continue;
        }
        let cmd = command(op, now, n);
        let want = model.step(now, op, n);
        let got = real.decide(Timestamp::from_ms(now), &cmd);
        match (&got, &want) {
            (Ok(events), Ok(x)) => {
                assert_eq!(events.len(), 1);
                assert_eq!(effect(&events[0]), *x, "{op:?}: {events:?}");
                for e in events {
                    real.apply(e);
                    assert_eq!(real.check_invariants(), Ok(()), "after {e:?}");
                    log.push(e.clone());
                }
            }
            (Err(r), Err(name)) => assert_eq!(rejection_name(r), *name, "{op:?}"),
            _ => panic!("{op:?} at {now}: core {got:?}, model {want:?}"),
        }
        for (l, m) in model.locs.iter().enumerate() {
            let p = real.position_at(Timestamp::from_ms(now), &loc(l));
            let (on, res, com) = (m.on_hand, model.reserved(l, now), model.committed(l));
            assert_eq!(
                (
                    p.on_hand,
                    p.reserved,
                    p.committed,
                    p.damaged,
                    p.quality_control,
                    p.safety_stock,
                    p.version
                ),
                (on, res, com, m.damaged, m.qc, m.safety, m.version),
                "position {} after {op:?}",
                LOCS[l]
            );
            for online in [false, true] {
                let ch = if online {
                    Channel::Online
                } else {
                    Channel::Pos
                };
                assert_eq!(
                    real.available_at(Timestamp::from_ms(now), &loc(l), ch),
                    model.available(l, online, now)
                );
            }
        }
    }
    // While core has forgotten no sale id, it remembers every sale it
    // applied: the shell (SkuStock) then reads no sale row for a new id.
    if real.sales_forgotten() == 0 {
        for e in &log {
            if let Event::Sold { sale, .. } = e {
                assert!(real.remembers_sale(sale), "{sale} forgotten uncounted");
            }
        }
    }
    // Replaying the log (through its JSON form) rebuilds the same state.
    let json = serde_json::to_string(&log).unwrap();
    let replayed: Vec<Event> = serde_json::from_str(&json).unwrap();
    let mut again = SkuState::new();
    for e in &replayed {
        again.apply(e);
    }
    assert_eq!(again, real);
    // Applying the log a second time (at-least-once delivery) changes
    // nothing: every event of the last day (older ids are forgotten, and the
    // shell never delivers an event again after that).
    let before = again.state_hash();
    let horizon = log.iter().map(|e| e.at().as_ms()).max().unwrap_or(0) - sku::RETENTION_MS;
    for e in replayed.iter().filter(|e| e.at().as_ms() >= horizon) {
        again.apply(e);
    }
    assert_eq!(again.state_hash(), before);
    assert_eq!(again.check_invariants(), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn core_agrees_with_the_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        run(&ops);
    }
}
