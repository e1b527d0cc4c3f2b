//! The benchmark's workload, shared by the native bench (`benches/ops.rs`)
//! and the wasm one (`tests/wasm_bench.rs`): one SKU object at 8 locations
//! under a realistic mix of carts, checkouts, fulfilment, till sales and
//! receipts, expiring lapsed holds before each command as the driving loop does. Commands are
//! built up front (the shell parses them from JSON); what is measured is
//! `next_deadline` (+ `expire`) + `decide` + `apply`, exactly the Durable Object's work.
#![allow(dead_code)]

use omnistock_core::sku::Command;
use omnistock_core::*;

pub const OPS: usize = 1_000_000;
/// Commands per SKU object: the workload is `OPS / PER_SKU` objects, one
/// after the other, each starting empty (a busy SKU's day, not one SKU with
/// a million operations of history in its tables).
pub const PER_SKU: usize = 10_000;

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` commands, each with the time it arrives (20 ms apart: a very busy SKU).
pub fn commands(n: usize) -> Vec<(Timestamp, Command)> {
    let mut rng = Rng(42);
    let locs: Vec<LocationId> = (0..8)
        .map(|i| LocationId::parse(&format!("store-{i}")).unwrap())
        .collect();
    let terminal = TerminalId::parse("T1").unwrap();
    let mut live: Vec<HoldId> = Vec::new();
    let mut committed: Vec<HoldId> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % PER_SKU == 0 {
            // A new SKU object: no holds to act on yet.
            live.clear();
            committed.clear();
        }
        let now = Timestamp::from_ms(1_700_000_000_000 + 20 * i as i64);
        let location = locs[rng.below(8) as usize].clone();
        let cmd = match rng.below(100) {
            0..=9 => Command::Receive {
                op: OpId::parse(&format!("rcv-{i}")).unwrap(),
                location,
                qty: 40,
            },
            10..=39 => {
                let hold = HoldId::parse(&format!("res-{i}")).unwrap();
                live.push(hold.clone());
                Command::Hold {
                    hold,
                    location,
                    qty: 1 + rng.below(3) as i64,
                    channel: Channel::Online,
                    ttl_ms: Some(900_000),
                }
            }
            40..=49 if !live.is_empty() => Command::Release {
                hold: live.swap_remove(rng.below(live.len() as u64) as usize),
            },
            50..=64 if !live.is_empty() => {
                let hold = live.swap_remove(rng.below(live.len() as u64) as usize);
                committed.push(hold.clone());
                Command::Commit { hold }
            }
            65..=74 if !committed.is_empty() => Command::Fulfill {
                hold: committed.swap_remove(rng.below(committed.len() as u64) as usize),
            },
            75..=79 if !live.is_empty() => Command::Extend {
                hold: live[rng.below(live.len() as u64) as usize].clone(),
                ttl_ms: 900_000,
            },
            _ => Command::Sell {
                sale: SaleId::parse(&format!("sale-{i}")).unwrap(),
                terminal: terminal.clone(),
                device_seq: i as u64,
                location,
                qty: 1,
                occurred_at: now,
            },
        };
        out.push((now, cmd));
    }
    out
}

/// Runs the commands through fresh SKU objects of [`PER_SKU`] commands each;
/// returns (accepted, rejected, hash of the final states).
#[inline(never)]
pub fn run(cmds: &[(Timestamp, Command)]) -> (u64, u64, u64) {
    let (mut ok, mut rejected, mut hash) = (0u64, 0u64, 0u64);
    for chunk in cmds.chunks(PER_SKU) {
        let (o, r, h) = run_one(chunk);
        ok += o;
        rejected += r;
        hash = hash.rotate_left(5) ^ h;
    }
    (ok, rejected, hash)
}

/// Runs the commands through one SKU object.
pub fn run_one(cmds: &[(Timestamp, Command)]) -> (u64, u64, u64) {
    let mut state = SkuState::new();
    let (mut ok, mut rejected) = (0u64, 0u64);
    for (now, cmd) in cmds.iter() {
        // The driving loop: lazy expiry first (usually nothing to do).
        if state.next_deadline().is_some_and(|d| d <= *now) {
            for e in state.expire(*now) {
                state.apply(&e);
            }
        }
        match state.decide_one(*now, cmd) {
            Ok(e) => {
                state.apply(&e);
                ok += 1;
            }
            Err(_) => rejected += 1,
        }
    }
    (ok, rejected, state.state_hash())
}

/// The hash `run(&commands(OPS))` gives natively; the wasm bench asserts it.
pub const NATIVE_HASH: u64 = 9925784091338205389;
