//! Deterministic simulation of receipts' email outboxes (core's
//! `receipt::outbox::Outbox`, as the `ReceiptBook` object drives it) and the
//! email provider, over a network that loses, duplicates and delays both
//! the attempts and the answers, with the provider failing (500/429) and
//! now and then refusing for good, and objects restarted from their JSON row
//! or crashing (memory since the last stored row lost). Clients retry with
//! the same key (and sometimes reuse a key for another address). After
//! every step:
//!
//! - the provider delivered at most one email per request key, ever (it
//!   dedupes by the message id, as Resend does with Idempotency-Key);
//! - an outbox says `sent` only for a message the provider delivered;
//! - no message has more than `MAX_ATTEMPTS` attempts; no outbox holds more
//!   than `MAX_MESSAGES`.
//!
//! At the end the network heals and the provider accepts: every message
//! that is not `failed` ends `sent`, delivered exactly once. `cargo test`
//! runs [`GOLDEN`] seeds and compares their final hashes; `SIM_SEED=n`
//! replays one seed.
use std::collections::{BTreeMap, BTreeSet};

use omnistock_core::fingerprint::Fnv;
use omnistock_core::receipt::outbox::{
    Outbox, OutboxError, SendResult, Status, MAX_ATTEMPTS, MAX_MESSAGES,
};
use omnistock_core::receipt::ReceiptKind;
use omnistock_core::Timestamp;

mod simulation;
use simulation::Rng;

const STEPS: usize = 1_500;
const BOOKS: usize = 4;
const T0: i64 = 1_700_000_000_000;

/// Fixed seeds and their final hashes.
const GOLDEN: [(u64, u64); 6] = [
    (1, 15453302690544561853),
    (2, 7986273865248288838),
    (3, 3137048196173573680),
    (4, 12781612369608655437),
    (5, 6026981409731017254),
    (6, 14095697128929861589),
];

/// An attempt on its way to the provider, or an answer on its way back.
enum Packet {
    Attempt {
        book: usize,
        id: String,
        attempt: u32,
    },
    Answer {
        book: usize,
        id: String,
        attempt: u32,
        result: SendResult,
    },
}

struct Book {
    /// The stored JSON row (the truth across restarts).
    row: String,
    /// The object's memory (`None`: evicted; reloaded from the row).
    mem: Option<Outbox>,
}

struct Sim {
    rng: Rng,
    now: i64,
    books: Vec<Book>,
    net: Vec<(i64, Packet)>,
    /// Message ids the provider accepted (delivered), and per id how often.
    delivered: BTreeMap<String, u32>,
    /// Each client request ever made: (book, key) -> (fp, to).
    requests: BTreeMap<(usize, String), (String, String)>,
    next_id: u64,
    lossy: bool,
    refusals: u64,
    replays: u64,
    reused: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let empty = serde_json::to_string(&Outbox::default()).unwrap();
        Sim {
            rng: Rng::new(seed),
            now: T0,
            books: (0..BOOKS)
                .map(|_| Book {
                    row: empty.clone(),
                    mem: None,
                })
                .collect(),
            net: Vec::new(),
            delivered: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_id: 0,
            lossy: true,
            refusals: 0,
            replays: 0,
            reused: 0,
        }
    }

    fn ts(&self) -> Timestamp {
        Timestamp(self.now)
    }

    fn outbox(&mut self, b: usize) -> &mut Outbox {
        let book = &mut self.books[b];
        if book.mem.is_none() {
            book.mem = Some(serde_json::from_str(&book.row).expect("the row decodes"));
        }
        book.mem.as_mut().unwrap()
    }

    fn store(&mut self, b: usize) {
        let row = serde_json::to_string(self.outbox(b)).unwrap();
        self.books[b].row = row;
    }

    fn send(&mut self, p: Packet) {
        let delay = self.rng.range(0, 3_000);
        if self.lossy && self.rng.chance(150) {
            return; // lost
        }
        if self.lossy && self.rng.chance(80) {
            let copy = match &p {
                Packet::Attempt { book, id, attempt } => Packet::Attempt {
                    book: *book,
                    id: id.clone(),
                    attempt: *attempt,
                },
                Packet::Answer {
                    book,
                    id,
                    attempt,
                    result,
                } => Packet::Answer {
                    book: *book,
                    id: id.clone(),
                    attempt: *attempt,
                    result: result.clone(),
                },
            };
            let d2 = self.rng.range(0, 5_000);
            self.net.push((self.now + d2, copy));
        }
        self.net.push((self.now + delay, p));
    }

    /// The shell's drive: every due attempt, stored before it is sent.
    fn drive(&mut self, b: usize) {
        for _ in 0..MAX_MESSAGES {
            let now = self.ts();
            let Some(x) = self.outbox(b).poll_transmit(now) else {
                break;
            };
            self.store(b);
            self.send(Packet::Attempt {
                book: b,
                id: x.id,
                attempt: x.attempt,
            });
        }
        self.store(b);
    }

    fn provider(&mut self, book: usize, id: String, attempt: u32) {
        let result = if self.delivered.contains_key(&id) {
            // Resend answers a key it accepted again, without a second email.
            SendResult::Accepted {
                provider_id: Some(format!("p-{id}")),
            }
        } else if self.lossy && self.rng.chance(350) {
            SendResult::Retry {
                error: if self.rng.chance(500) { "500" } else { "429" }.into(),
            }
        } else if self.lossy && self.rng.chance(15) {
            self.refusals += 1;
            SendResult::Refused {
                error: "422 invalid".into(),
            }
        } else {
            *self.delivered.entry(id.clone()).or_default() += 1;
            SendResult::Accepted {
                provider_id: Some(format!("p-{id}")),
            }
        };
        self.send(Packet::Answer {
            book,
            id,
            attempt,
            result,
        });
    }

    fn deliver_due(&mut self) {
        self.net.sort_by_key(|(at, _)| *at);
        let due = self
            .net
            .iter()
            .take_while(|(at, _)| *at <= self.now)
            .count();
        let mut ready: Vec<(i64, Packet)> = self.net.drain(..due).collect();
        // Reordered: due packets arrive in any order.
        for i in (1..ready.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            ready.swap(i, j);
        }
        for (_, p) in ready {
            match p {
                Packet::Attempt { book, id, attempt } => self.provider(book, id, attempt),
                Packet::Answer {
                    book,
                    id,
                    attempt,
                    result,
                } => {
                    let now = self.ts();
                    self.outbox(book).handle_result(now, &id, attempt, result);
                    self.store(book);
                }
            }
        }
    }

    fn alarms(&mut self) {
        for b in 0..BOOKS {
            let due = self
                .outbox(b)
                .poll_timeout()
                .is_some_and(|t| t.0 <= self.now);
            if due {
                self.drive(b);
            }
        }
    }

    fn client(&mut self) {
        let b = self.rng.below(BOOKS as u64) as usize;
        match self.rng.below(10) {
            // A new request, or a retry of an earlier one (same key and
            // body), or an earlier key with another address.
            0..=5 => {
                let known: Vec<(usize, String)> = self
                    .requests
                    .keys()
                    .filter(|(x, _)| *x == b)
                    .cloned()
                    .collect();
                let (key, fp, to) = if !known.is_empty() && self.rng.chance(500) {
                    let k = known[self.rng.below(known.len() as u64) as usize].clone();
                    let (fp, to) = self.requests[&k].clone();
                    if self.rng.chance(100) {
                        (k.1, format!("{fp}x"), format!("x{to}"))
                    } else {
                        (k.1, fp, to)
                    }
                } else {
                    let n = self.rng.below(1_000_000);
                    (
                        format!("key-{n}"),
                        format!("fp-{n}"),
                        format!("c{n}@example.com"),
                    )
                };
                self.next_id += 1;
                let id = format!("m{}", self.next_id);
                let now = self.ts();
                let r = self
                    .outbox(b)
                    .handle_email(now, &key, &fp, &to, ReceiptKind::Sale, &id)
                    .map(|(m, replay)| (m.id.clone(), replay));
                match r {
                    Ok((_, replay)) => {
                        if replay {
                            self.replays += 1;
                        }
                        self.requests.entry((b, key)).or_insert((fp, to));
                        // Stored before the answer, then the first attempt.
                        self.store(b);
                        self.drive(b);
                    }
                    Err(OutboxError::KeyReused) => self.reused += 1,
                    Err(OutboxError::Full) => {}
                }
            }
            // Evicted: memory dropped, reloaded from the row next time.
            6 => self.books[b].mem = None,
            // A crash mid-drive: an attempt started in memory, the object
            // dies before storing the row (so before sending): it is lost.
            7 => {
                let now = self.ts();
                let _ = self.outbox(b).poll_transmit(now);
                self.books[b].mem = None;
            }
            _ => {}
        }
    }

    fn check(&mut self) -> Result<(), String> {
        for (id, n) in &self.delivered {
            if *n > 1 {
                return Err(format!("message {id} delivered {n} times"));
            }
        }
        for b in 0..BOOKS {
            let o = self.outbox(b).clone();
            if o.messages().len() > MAX_MESSAGES {
                return Err(format!("book {b}: {} messages", o.messages().len()));
            }
            let mut keys = BTreeSet::new();
            for m in o.messages() {
                if !keys.insert(m.key.clone()) {
                    return Err(format!("book {b}: key {} twice", m.key));
                }
                if m.attempts > MAX_ATTEMPTS {
                    return Err(format!("{}: {} attempts", m.id, m.attempts));
                }
                if m.status == Status::Sent && !self.delivered.contains_key(&m.id) {
                    return Err(format!("{} says sent, never delivered", m.id));
                }
            }
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<(), String> {
        self.lossy = false;
        for _ in 0..200 {
            self.now += 60_000;
            self.deliver_due();
            self.alarms();
            self.check()?;
        }
        for b in 0..BOOKS {
            let o = self.outbox(b).clone();
            for m in o.messages() {
                match m.status {
                    Status::Sent => {}
                    Status::Failed => {}
                    Status::Queued => return Err(format!("{} still queued", m.id)),
                }
                let n = self.delivered.get(&m.id).copied().unwrap_or(0);
                if m.status == Status::Sent && n != 1 {
                    return Err(format!("{} sent but delivered {n} times", m.id));
                }
            }
        }
        Ok(())
    }

    fn hash(&mut self) -> u64 {
        let mut f = Fnv::default();
        for b in 0..BOOKS {
            let o = self.outbox(b).clone();
            for m in o.messages() {
                f = f
                    .str(&m.id)
                    .str(m.status.as_str())
                    .u64(u64::from(m.attempts));
            }
        }
        for (id, n) in &self.delivered {
            f = f.str(id).u64(u64::from(*n));
        }
        f.finish()
    }

    fn run_all(&mut self) -> Result<u64, String> {
        for step in 0..STEPS {
            self.now += self.rng.range(0, 1_500);
            self.deliver_due();
            self.alarms();
            self.client();
            self.check().map_err(|e| format!("step {step}: {e}"))?;
        }
        self.settle()?;
        Ok(self.hash())
    }
}

fn run_seed(seed: u64) -> Result<u64, String> {
    Sim::new(seed).run_all()
}

#[test]
fn receipt_outbox_simulation_golden_seeds() {
    if let Ok(s) = std::env::var("SIM_SEED") {
        let seed: u64 = s.parse().expect("SIM_SEED is a number");
        let h = run_seed(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        println!("seed {seed}: {h}");
        return;
    }
    let mut got = Vec::new();
    for (seed, _) in GOLDEN {
        let h =
            run_seed(seed).unwrap_or_else(|e| panic!("seed {seed} failed (SIM_SEED={seed}): {e}"));
        got.push((seed, h));
    }
    assert_eq!(got, GOLDEN.to_vec(), "final hashes per seed");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    assert_eq!(run_seed(42), run_seed(42));
}

/// 12 more seeds from 100 (`SIM_SEEDS=n SIM_START=s` for others).
#[test]
fn many_seeds() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let start = env("SIM_START").unwrap_or(100);
    let mut stats: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in start..start + env("SIM_SEEDS").unwrap_or(12) {
        let mut sim = Sim::new(seed);
        sim.run_all().unwrap_or_else(|e| {
            panic!("seed {seed} failed: {e}\nreplay: SIM_SEED={seed} cargo test -p omnistock-core --test receipt_sim")
        });
        *stats.entry("delivered").or_default() += sim.delivered.len() as u64;
        *stats.entry("replays").or_default() += sim.replays;
        *stats.entry("reused").or_default() += sim.reused;
        *stats.entry("refusals").or_default() += sim.refusals;
        let retried: u64 = (0..BOOKS)
            .map(|b| {
                sim.outbox(b)
                    .messages()
                    .iter()
                    .filter(|m| m.attempts > 1)
                    .count() as u64
            })
            .sum();
        *stats.entry("retried").or_default() += retried;
    }
    println!("{stats:?}");
    // The runs did real work.
    assert!(stats["delivered"] > 200, "{stats:?}");
    assert!(stats["replays"] > 50, "{stats:?}");
    assert!(stats["reused"] > 0, "{stats:?}");
    assert!(stats["refusals"] > 5, "{stats:?}");
    assert!(stats["retried"] > 50, "{stats:?}");
}
