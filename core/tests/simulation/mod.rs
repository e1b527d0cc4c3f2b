//! Deterministic simulation of many SKU objects driven by carts, orders, POS
//! terminals that go offline and upload late, transfers and returns, over a
//! network that delays, duplicates and reorders commands, with a virtual
//! clock that jumps to the next deadline and objects restarted from their
//! event log or a JSON snapshot. Shared by the native test (`sim.rs`) and the
//! wasm test (`wasm.rs`): no std-only APIs, no floats, no hash maps.
#![allow(dead_code, clippy::collapsible_match)]

use std::collections::BTreeMap;

use omnistock_core::sku::{Command, Condition, Event, Rejection, Resolution};
use omnistock_core::*;

/// Steps per seed in the tests.
pub const STEPS: usize = 3_000;

/// The final state hashes of fixed seeds after [`STEPS`] steps: the native
/// test (`sim.rs`) and the wasm test (`wasm.rs`) assert these same numbers.
pub const GOLDEN: [(u64, u64); 3] = [
    (1, 15076419570389201298),
    (2, 14617049377036980912),
    (3, 16398435943734450958),
];

/// splitmix64: small, fast, the same on every target.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

struct Node {
    state: SkuState,
    log: Vec<Event>,
    /// The shell's durable record of every sale id applied (with its
    /// fingerprint), kept forever: core remembers only a day of them.
    sales: BTreeMap<SaleId, u64>,
    /// The object's own hash key (kept in its storage).
    hash_key: u64,
}

struct Msg {
    /// When the sender sent it: a request still in flight an hour later has
    /// timed out (its sender moved on), except a sale, which the terminal
    /// keeps sending until it is answered.
    sent_at: i64,
    deliver_at: i64,
    sku: usize,
    cmd: Command,
}

struct Terminal {
    id: TerminalId,
    location: usize,
    seq: u64,
    offline_until: i64,
    queue: Vec<(usize, Command)>,
    /// Every sale it ever made, for a device restored from a backup.
    history: Vec<(usize, Command)>,
}

pub struct Sim {
    rng: Rng,
    now: i64,
    skus: Vec<Sku>,
    locations: Vec<LocationId>,
    nodes: Vec<Node>,
    net: Vec<Msg>,
    terminals: Vec<Terminal>,
    /// Holds created: (sku, hold id, committed?) still worth acting on.
    carts: Vec<(usize, HoldId)>,
    next_id: u64,
    /// Sale ids sent, for the exactly-once check.
    sales_sent: BTreeMap<SaleId, usize>,
    pub stats: Stats,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub commands: u64,
    pub events: u64,
    pub rejections: u64,
    pub duplicates: u64,
    pub restarts: u64,
    pub expiries: u64,
    pub oversells: u64,
    /// Sales repeated after core forgot them, answered from the durable record.
    pub forgotten_sales: u64,
    /// Requests that timed out in flight (an hour).
    pub timed_out: u64,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let n_skus = rng.range(3, 8) as usize;
        let n_locs = rng.range(2, 5) as usize;
        let skus: Vec<Sku> = (0..n_skus)
            .map(|i| Sku::parse(&format!("SKU-{i}")).unwrap())
            .collect();
        let locations: Vec<LocationId> = (0..n_locs)
            .map(|i| LocationId::parse(&format!("loc-{i}")).unwrap())
            .collect();
        let terminals = (0..rng.range(1, 4))
            .map(|i| Terminal {
                id: TerminalId::parse(&format!("T{i}")).unwrap(),
                location: rng.below(n_locs as u64) as usize,
                seq: 0,
                offline_until: 0,
                queue: Vec::new(),
                history: Vec::new(),
            })
            .collect();
        Sim {
            rng,
            now: 1_700_000_000_000,
            nodes: (0..n_skus)
                .map(|i| {
                    let hash_key = Rng::new(i as u64 ^ 0x5eed).next();
                    Node {
                        state: SkuState::with_hash_key(hash_key),
                        log: Vec::new(),
                        sales: BTreeMap::new(),
                        hash_key,
                    }
                })
                .collect(),
            skus,
            locations,
            net: Vec::new(),
            terminals,
            carts: Vec::new(),
            next_id: 0,
            sales_sent: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn send(&mut self, sku: usize, cmd: Command) {
        let delay = self.rng.range(0, 2_000);
        self.net.push(Msg {
            sent_at: self.now,
            deliver_at: self.now + delay,
            sku,
            cmd,
        });
    }

    fn loc(&mut self) -> (usize, LocationId) {
        let i = self.rng.below(self.locations.len() as u64) as usize;
        (i, self.locations[i].clone())
    }

    /// One client action: a command into the network.
    fn act(&mut self) {
        let sku = self.rng.below(self.skus.len() as u64) as usize;
        let (_, location) = self.loc();
        match self.rng.below(100) {
            0..=9 => {
                let op = OpId::parse(&self.id("rcv.")).unwrap();
                let qty = self.rng.range(1, 30);
                self.send(sku, Command::Receive { op, location, qty });
            }
            10..=13 => {
                let op = OpId::parse(&self.id("adj.")).unwrap();
                let delta = self.rng.range(-3, 3);
                let expected_version = if self.rng.chance(300) {
                    Some(self.nodes[sku].state.position(&location).version)
                } else {
                    None
                };
                let reason = AdjustReason::ALL[self.rng.below(6) as usize];
                self.send(
                    sku,
                    Command::Adjust {
                        op,
                        location,
                        delta,
                        reason,
                        expected_version,
                    },
                );
            }
            14..=15 => {
                let op = OpId::parse(&self.id("ss.")).unwrap();
                let qty = self.rng.range(0, 4);
                self.send(sku, Command::SetSafetyStock { op, location, qty });
            }
            16..=17 => {
                let op = OpId::parse(&self.id("mk.")).unwrap();
                let bucket = if self.rng.chance(500) {
                    UnavailableBucket::Damaged
                } else {
                    UnavailableBucket::QualityControl
                };
                let delta = self.rng.range(-2, 2);
                self.send(
                    sku,
                    Command::MarkUnavailable {
                        op,
                        location,
                        bucket,
                        delta,
                    },
                );
            }
            18..=19 => {
                // A count taken a little while ago, by the device's clock.
                let op = OpId::parse(&self.id("cnt.")).unwrap();
                let p = self.nodes[sku].state.position(&location);
                let counted = (p.on_hand + self.rng.range(-2, 2)).max(0);
                let counted_at = Timestamp::from_ms(self.now - self.rng.range(0, 60_000));
                self.send(
                    sku,
                    Command::Count {
                        op,
                        location,
                        counted,
                        counted_at,
                    },
                );
            }
            20..=49 => {
                // A cart or an order's allocation.
                let hold = HoldId::parse(&self.id("res.")).unwrap();
                let ttl_ms = if self.rng.chance(800) {
                    Some(self.rng.range(30, 600) * 1000)
                } else {
                    None
                };
                let channel = if self.rng.chance(700) {
                    Channel::Online
                } else {
                    Channel::Pos
                };
                let qty = self.rng.range(1, 4);
                self.carts.push((sku, hold.clone()));
                self.send(
                    sku,
                    Command::Hold {
                        hold,
                        location,
                        qty,
                        channel,
                        ttl_ms,
                    },
                );
            }
            50..=69 if !self.carts.is_empty() => {
                let i = self.rng.below(self.carts.len() as u64) as usize;
                let (sku, hold) = self.carts[i].clone();
                let cmd = match self.rng.below(5) {
                    0 => Command::Extend {
                        hold,
                        ttl_ms: self.rng.range(30, 900) * 1000,
                    },
                    1 => Command::Release { hold },
                    2 | 3 => Command::Commit { hold },
                    _ => Command::Fulfill { hold },
                };
                if matches!(cmd, Command::Release { .. } | Command::Fulfill { .. })
                    && self.rng.chance(700)
                {
                    self.carts.swap_remove(i);
                }
                self.send(sku, cmd);
            }
            70..=84 => {
                // A till sale, queued on the terminal (offline or not).
                let t = self.rng.below(self.terminals.len() as u64) as usize;
                let sale = SaleId::parse(&self.id("sale.")).unwrap();
                let qty = self.rng.range(1, 3);
                let term = &mut self.terminals[t];
                term.seq += 1;
                let cmd = Command::Sell {
                    sale: sale.clone(),
                    terminal: term.id.clone(),
                    device_seq: term.seq,
                    location: self.locations[term.location].clone(),
                    qty,
                    occurred_at: Timestamp::from_ms(self.now),
                };
                term.queue.push((sku, cmd.clone()));
                term.history.push((sku, cmd));
                self.sales_sent.insert(sale, sku);
            }
            85..=87 => {
                // A return against an earlier sale, maybe more than it sold.
                if let Some((sale, sku)) = self.sales_sent.iter().next_back() {
                    let (sale, sku) = (sale.clone(), *sku);
                    let op = OpId::parse(&self.id("ret.")).unwrap();
                    let condition = [
                        Condition::Restock,
                        Condition::Damaged,
                        Condition::ReturnToVendor,
                    ][self.rng.below(3) as usize];
                    let qty = self.rng.range(1, 3);
                    self.send(
                        sku,
                        Command::ReturnReceive {
                            op,
                            location,
                            qty,
                            condition,
                            sale: Some(sale),
                        },
                    );
                }
            }
            88..=93 => {
                let transfer = TransferId::parse(&format!("tr.{}", self.rng.below(40))).unwrap();
                let (_, to) = self.loc();
                let cmd = match self.rng.below(3) {
                    0 => Command::TransferShip {
                        transfer,
                        from: location,
                        to,
                        qty: self.rng.range(1, 5),
                    },
                    1 => Command::TransferReceive {
                        op: OpId::parse(&self.id("tri.")).unwrap(),
                        transfer,
                        qty: self.rng.range(0, 3),
                        close: self.rng.chance(300),
                    },
                    _ => Command::TransferCancel { transfer },
                };
                self.send(sku, cmd);
            }
            _ => {
                let t = self.rng.below(self.terminals.len() as u64) as usize;
                if self.rng.chance(150) {
                    // Restored from a backup, the terminal uploads every sale
                    // it ever made again, maybe days later: the object
                    // recognises each one (core within its day, the durable
                    // record after it).
                    let again = self.terminals[t].history.clone();
                    self.terminals[t].queue.extend(again);
                } else {
                    // A terminal goes offline for a while.
                    self.terminals[t].offline_until = self.now + self.rng.range(60_000, 3_600_000);
                }
            }
        }
    }

    /// Terminals back online upload their queue, in (terminal, device_seq) order.
    fn upload(&mut self) {
        for t in 0..self.terminals.len() {
            if self.terminals[t].offline_until > self.now || self.terminals[t].queue.is_empty() {
                continue;
            }
            let mut q = core::mem::take(&mut self.terminals[t].queue);
            q.sort_by_key(|(_, c)| match c {
                Command::Sell { device_seq, .. } => *device_seq,
                _ => 0,
            });
            for (sku, cmd) in q {
                self.send(sku, cmd);
            }
        }
    }

    fn apply(&mut self, sku: usize, e: Event) -> Result<(), String> {
        let node = &mut self.nodes[sku];
        node.state.apply(&e);
        node.state
            .check_invariants()
            .map_err(|m| format!("{}: {m} after {e:?}", self.skus[sku]))?;
        if let Event::Sold {
            sale, fp, oversold, ..
        } = &e
        {
            if *oversold > 0 {
                self.stats.oversells += 1;
            }
            node.sales.insert(sale.clone(), *fp);
        }
        node.log.push(e);
        self.stats.events += 1;
        Ok(())
    }

    /// Delivers one message (any ready one: the network reorders).
    fn deliver(&mut self) -> Result<(), String> {
        let ready: Vec<usize> = (0..self.net.len())
            .filter(|&i| self.net[i].deliver_at <= self.now)
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        let i = ready[self.rng.below(ready.len() as u64) as usize];
        let msg = self.net.swap_remove(i);
        if !matches!(msg.cmd, Command::Sell { .. }) && self.now - msg.sent_at > 3_600_000 {
            self.stats.timed_out += 1;
            return Ok(());
        }
        // The network duplicates some messages.
        if self.rng.chance(80) {
            self.stats.duplicates += 1;
            self.net.push(Msg {
                sent_at: msg.sent_at,
                deliver_at: self.now + self.rng.range(0, 5_000),
                sku: msg.sku,
                cmd: msg.cmd.clone(),
            });
        }
        let now = Timestamp::from_ms(self.now);
        // The driving loop: expire, decide, apply.
        for e in self.nodes[msg.sku].state.expire(now) {
            self.stats.expiries += 1;
            self.apply(msg.sku, e)?;
        }
        self.stats.commands += 1;
        if let Command::Sell { sale, .. } = &msg.cmd {
            // The shell's check before deciding a sale: one core has
            // forgotten is answered from the durable record.
            let node = &self.nodes[msg.sku];
            if !node.state.remembers_sale(sale) {
                if let Some(fp) = node.sales.get(sale) {
                    if *fp != sku::fingerprint(&msg.cmd) {
                        return Err(format!("sale {sale} sent again with other content"));
                    }
                    self.stats.rejections += 1;
                    self.stats.forgotten_sales += 1;
                    return Ok(());
                }
            }
        }
        let before = self.nodes[msg.sku].state.state_hash();
        match self.nodes[msg.sku].state.decide(now, &msg.cmd) {
            Ok(events) => {
                for e in events {
                    self.apply(msg.sku, e)?;
                }
            }
            Err(r) => {
                self.stats.rejections += 1;
                if self.nodes[msg.sku].state.state_hash() != before {
                    return Err("a rejection changed the state".into());
                }
                if let Command::Sell { .. } = msg.cmd {
                    // A sale is never refused, only recognised again.
                    if !matches!(r, Rejection::Exists) {
                        return Err(format!("sale refused: {r:?} {:?}", msg.cmd));
                    }
                }
            }
        }
        Ok(())
    }

    /// Rebuilds one object from its event log (sometimes through JSON), or
    /// from a JSON snapshot, and checks it is the same object.
    fn restart(&mut self) -> Result<(), String> {
        let sku = self.rng.below(self.skus.len() as u64) as usize;
        self.stats.restarts += 1;
        let node = &self.nodes[sku];
        let rebuilt = match self.rng.below(3) {
            0 => {
                let mut s = SkuState::with_hash_key(node.hash_key);
                for e in &node.log {
                    s.apply(e);
                }
                s
            }
            1 => {
                let json = serde_json::to_string(&node.log).map_err(|e| e.to_string())?;
                let log: Vec<Event> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
                let mut s = SkuState::with_hash_key(node.hash_key);
                for e in &log {
                    s.apply(e);
                }
                s
            }
            _ => {
                let json = serde_json::to_string(&node.state).map_err(|e| e.to_string())?;
                let mut s: SkuState = serde_json::from_str(&json).map_err(|e| e.to_string())?;
                if s.check_invariants().is_err() {
                    return Err(format!(
                        "{}: a snapshot broke the invariants",
                        self.skus[sku]
                    ));
                }
                s.set_hash_key(node.hash_key);
                s
            }
        };
        if rebuilt != node.state {
            return Err(format!("{}: restart gave another state", self.skus[sku]));
        }
        self.nodes[sku].state = rebuilt;
        Ok(())
    }

    /// Runs `steps` steps; returns the final hash.
    pub fn run(&mut self, steps: usize) -> Result<u64, String> {
        for _ in 0..steps {
            match self.rng.below(100) {
                0..=44 => self.act(),
                45..=84 => self.deliver()?,
                85..=86 => self.restart()?,
                87..=94 => {
                    self.now += if self.rng.chance(10) {
                        // A quiet night: past the day in which ids are remembered.
                        self.rng.range(20 * 3_600_000, 30 * 3_600_000)
                    } else {
                        self.rng.range(1, 3_000)
                    }
                }
                _ => {
                    // The alarm: jump to the earliest deadline of any object.
                    if let Some(t) = self
                        .nodes
                        .iter()
                        .filter_map(|n| n.state.next_deadline())
                        .min()
                    {
                        self.now = self.now.max(t.as_ms());
                        for sku in 0..self.nodes.len() {
                            for e in self.nodes[sku].state.expire(Timestamp::from_ms(self.now)) {
                                self.stats.expiries += 1;
                                self.apply(sku, e)?;
                            }
                            if self.nodes[sku]
                                .state
                                .next_deadline()
                                .is_some_and(|d| d.as_ms() <= self.now)
                            {
                                return Err("a deadline survived its alarm".into());
                            }
                        }
                    }
                }
            }
            self.upload();
        }
        // Drain: everyone comes online, every message arrives.
        for t in &mut self.terminals {
            t.offline_until = 0;
        }
        self.upload();
        while !self.net.is_empty() {
            self.now += 500;
            self.deliver()?;
        }
        self.audit()?;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for n in &self.nodes {
            h = (h ^ n.state.state_hash()).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Ok(h)
    }

    /// The auditor: facts recomputed from the event logs alone.
    fn audit(&self) -> Result<(), String> {
        let mut sold_once: BTreeMap<&SaleId, u32> = BTreeMap::new();
        for (sku, node) in self.nodes.iter().enumerate() {
            let mut on_hand: BTreeMap<&LocationId, i64> = BTreeMap::new();
            let mut resolved: BTreeMap<&HoldId, Resolution> = BTreeMap::new();
            let mut held: BTreeMap<&HoldId, u32> = BTreeMap::new();
            for e in &node.log {
                match e {
                    Event::Received { location, qty, .. } => {
                        *on_hand.entry(location).or_default() += qty
                    }
                    Event::Adjusted {
                        location, delta, ..
                    } => *on_hand.entry(location).or_default() += delta,
                    Event::Counted {
                        location,
                        on_hand: set,
                        ..
                    } => {
                        on_hand.insert(location, *set);
                    }
                    Event::Sold {
                        sale,
                        location,
                        qty,
                        absorbed_by_count,
                        ..
                    } => {
                        *sold_once.entry(sale).or_default() += 1;
                        if !absorbed_by_count {
                            *on_hand.entry(location).or_default() -= qty;
                        }
                    }
                    Event::Fulfilled {
                        hold,
                        location,
                        qty,
                        ..
                    } => {
                        *on_hand.entry(location).or_default() -= qty;
                        if resolved.insert(hold, Resolution::Fulfilled).is_some() {
                            return Err(format!("{hold} resolved twice"));
                        }
                    }
                    Event::ReturnReceived {
                        location,
                        qty,
                        condition,
                        ..
                    } => {
                        if *condition != Condition::ReturnToVendor {
                            *on_hand.entry(location).or_default() += qty
                        }
                    }
                    Event::TransferShipped { from, qty, .. } => {
                        *on_hand.entry(from).or_default() -= qty
                    }
                    Event::TransferReceived { location, qty, .. } => {
                        *on_hand.entry(location).or_default() += qty
                    }
                    Event::Held { hold, .. } => *held.entry(hold).or_default() += 1,
                    Event::Released { hold, .. } | Event::Expired { hold, .. } => {
                        if resolved.insert(hold, Resolution::Released).is_some() {
                            return Err(format!("{hold} resolved twice"));
                        }
                    }
                    _ => {}
                }
            }
            for (hold, n) in held {
                if n > 1 {
                    return Err(format!("{hold} held {n} times"));
                }
            }
            for (loc, p) in node.state.positions() {
                if on_hand.get(loc).copied().unwrap_or(0) != p.on_hand {
                    return Err(format!(
                        "{} @{loc}: the log says on_hand {:?}, the state {}",
                        self.skus[sku],
                        on_hand.get(loc),
                        p.on_hand
                    ));
                }
            }
        }
        for (sale, sku) in &self.sales_sent {
            if sold_once.get(sale).copied() != Some(1) {
                return Err(format!(
                    "sale {sale} of {} not applied exactly once",
                    self.skus[*sku]
                ));
            }
        }
        Ok(())
    }
}

/// Runs one seed; the error names the seed.
pub fn run_seed(seed: u64, steps: usize) -> Result<u64, String> {
    Sim::new(seed)
        .run(steps)
        .map_err(|e| format!("seed {seed} failed: {e}\nreplay: SIM_SEED={seed} cargo test -p omnistock-core --test sim"))
}
