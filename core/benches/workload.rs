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

/// Time between two commands to one SKU: 4 a second, a very busy SKU. Its
/// 10,000 commands span 42 minutes, so abandoned carts (one hold in six)
/// lapse after their 15 minutes and the driving loop expires them.
pub const SPACING_MS: i64 = 250;
pub const CART_TTL_MS: i64 = 900_000;

/// `n` commands, each with the time it arrives.
pub fn commands(n: usize) -> Vec<(Timestamp, Command)> {
    let mut rng = Rng(42);
    let locs: Vec<LocationId> = (0..8)
        .map(|i| LocationId::parse(&format!("store-{i}")).unwrap())
        .collect();
    let terminal = TerminalId::parse("T1").unwrap();
    // Holds the clients still act on, with the deadline they know of: a
    // client stops acting on a cart once it has expired.
    let mut live: Vec<(HoldId, i64)> = Vec::new();
    let mut committed: Vec<HoldId> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % PER_SKU == 0 {
            // A new SKU object: no holds to act on yet.
            live.clear();
            committed.clear();
        }
        let now = Timestamp::from_ms(1_700_000_000_000 + SPACING_MS * i as i64);
        live.retain(|(_, deadline)| *deadline > now.as_ms());
        let location = locs[rng.below(8) as usize].clone();
        let cmd = match rng.below(100) {
            0..=9 => Command::Receive {
                op: OpId::parse(&format!("rcv-{i}")).unwrap(),
                location,
                qty: 40,
            },
            10..=39 => {
                let hold = HoldId::parse(&format!("res-{i}")).unwrap();
                // One cart in six is abandoned: its hold expires.
                if rng.below(6) != 0 {
                    live.push((hold.clone(), now.as_ms() + CART_TTL_MS));
                }
                Command::Hold {
                    hold,
                    location,
                    qty: 1 + rng.below(3) as i64,
                    channel: Channel::Online,
                    ttl_ms: Some(CART_TTL_MS),
                }
            }
            40..=49 if !live.is_empty() => Command::Release {
                hold: live.swap_remove(rng.below(live.len() as u64) as usize).0,
            },
            50..=64 if !live.is_empty() => {
                let hold = live.swap_remove(rng.below(live.len() as u64) as usize).0;
                committed.push(hold.clone());
                Command::Commit { hold }
            }
            65..=74 if !committed.is_empty() => Command::Fulfill {
                hold: committed.swap_remove(rng.below(committed.len() as u64) as usize),
            },
            75..=79 if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                live[k].1 = live[k].1.max(now.as_ms() + CART_TTL_MS);
                Command::Extend {
                    hold: live[k].0.clone(),
                    ttl_ms: CART_TTL_MS,
                }
            }
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

/// What a run did: commands accepted and rejected, holds expired, and a hash of the final states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: u64,
    pub expired: u64,
    pub hash: u64,
}

/// Runs the commands through fresh SKU objects of [`PER_SKU`] commands each.
#[inline(never)]
pub fn run(cmds: &[(Timestamp, Command)]) -> Outcome {
    let mut out = Outcome::default();
    for chunk in cmds.chunks(PER_SKU) {
        let o = run_one(chunk);
        out.accepted += o.accepted;
        out.rejected += o.rejected;
        out.expired += o.expired;
        out.hash = out.hash.rotate_left(5) ^ o.hash;
    }
    out
}

/// Runs the commands through one SKU object.
pub fn run_one(cmds: &[(Timestamp, Command)]) -> Outcome {
    let mut state = SkuState::new();
    let mut out = Outcome::default();
    for (now, cmd) in cmds.iter() {
        // The driving loop: lazy expiry first (usually nothing to do).
        if state.next_deadline().is_some_and(|d| d <= *now) {
            for e in state.expire(*now) {
                state.apply(&e);
                out.expired += 1;
            }
        }
        match state.decide_one(*now, cmd) {
            Ok(e) => {
                state.apply(&e);
                out.accepted += 1;
            }
            Err(_) => out.rejected += 1,
        }
    }
    out.hash = state.state_hash();
    out
}

/// The hash `run(&commands(OPS))` gives natively; the wasm bench asserts it.
pub const NATIVE_HASH: u64 = 15329840251313281227;
