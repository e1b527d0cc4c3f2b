//! The rules of the reservation index: the arbiter of reservation ids the
//! client chose. Pure: the `ReservationIndex` Durable Object reads a row,
//! asks these functions what to do, and does it (a write, a call to the
//! id's home, a refusal).
//!
//! An id's row ([`Pointer`]) names the reservation's home: a one-SKU
//! reservation's SKU object (with its content fingerprint), or, without a
//! SKU, the id's own coordinator. Taking an id ([`take`]):
//! - a new id is written;
//! - the same reservation again (same SKU and content) keeps the later
//!   deadline;
//! - anything else names another reservation: its home is asked
//!   ([`Home`]), and the id is refused while that reservation is live
//!   ([`after_home`]); else the new row is written over the one checked
//!   (only if the row is still that one: the object rereads it).
//!
//! A row goes [`RESERVATION_RETENTION_MS`] after its reservation's last
//! deadline ([`prune`]): its home is asked then too, since an extension
//! moves the deadline.
use alloc::string::String;

use crate::time::RESERVATION_RETENTION_MS;
use crate::Sku;

/// An id's row: where its reservation lives, and until when it may be
/// live (epoch ms: the deadline it was made or extended with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// The SKU object of a one-SKU reservation; `None`: the id's own
    /// coordinator.
    pub sku: Option<Sku>,
    /// The content fingerprint of a one-SKU reservation (empty otherwise).
    pub fp: String,
    pub until: i64,
}

impl Pointer {
    /// Whether `other` is the same reservation (same home and content).
    pub fn same_reservation(&self, other: &Pointer) -> bool {
        self.sku == other.sku && self.fp == other.fp
    }
}

/// What to do to take an id for `want`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// Write this row (the id was free, or the same reservation gets a
    /// later deadline).
    Write(Pointer),
    /// The row already says this: write nothing.
    Unchanged,
    /// The row names another reservation: ask its home ([`after_home`]).
    AskHome,
}

/// What to do to take an id whose row is `seen` (`None`: no row) for `want`.
pub fn take(seen: Option<&Pointer>, want: Pointer) -> Take {
    match seen {
        None => Take::Write(want),
        Some(r) if r.same_reservation(&want) => {
            let merged = Pointer {
                until: want.until.max(r.until),
                ..want
            };
            if merged == *r {
                Take::Unchanged
            } else {
                Take::Write(merged)
            }
        }
        Some(_) => Take::AskHome,
    }
}

/// What an id's home says of its reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// Known there, in any status (its id is taken), with its deadline
    /// (epoch ms) while that may still move (pending or active: an
    /// extension moves it); none once it ended or became an order.
    Live(Option<i64>),
    /// Not there: failed, reclaimed after retention, or never made.
    Gone,
}

/// The id names a live reservation: it is not free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken;

/// After asking the home of the reservation an id's row names: the id is
/// free (write the new row over the one checked) unless that reservation
/// is live.
pub fn after_home(home: Home) -> Result<(), Taken> {
    match home {
        Home::Live(_) => Err(Taken),
        Home::Gone => Ok(()),
    }
}

/// What to do with a row whose deadline is past retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prune {
    /// Its reservation was extended: keep the row with this deadline.
    Keep(i64),
    /// Delete it (only the row as read: a create may have taken the id since).
    Delete,
}

/// A due row's fate from what its home says at `now`: kept while the
/// reservation's latest deadline is within retention; a reservation that
/// became an order is its order's from then on, and an ended one's id is
/// free.
pub fn prune(home: Home, now: i64) -> Prune {
    match home {
        Home::Live(Some(later)) if later.saturating_add(RESERVATION_RETENTION_MS) > now => {
            Prune::Keep(later)
        }
        _ => Prune::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn sku(s: &str) -> Option<Sku> {
        Some(Sku::parse(s).unwrap())
    }

    fn p(s: Option<Sku>, fp: &str, until: i64) -> Pointer {
        Pointer {
            sku: s,
            fp: fp.to_string(),
            until,
        }
    }

    #[test]
    fn a_new_id_is_written_and_the_same_reservation_keeps_the_later_deadline() {
        let want = p(sku("A"), "f1", 100);
        assert_eq!(take(None, want.clone()), Take::Write(want.clone()));
        // Again with an earlier deadline: nothing to write.
        assert_eq!(take(Some(&want), p(sku("A"), "f1", 50)), Take::Unchanged);
        assert_eq!(take(Some(&want), want.clone()), Take::Unchanged);
        // A later one moves it.
        assert_eq!(
            take(Some(&want), p(sku("A"), "f1", 200)),
            Take::Write(p(sku("A"), "f1", 200))
        );
        // A coordinated id claimed again by its own coordinator.
        let own = p(None, "", 300);
        assert_eq!(take(Some(&own), p(None, "", 250)), Take::Unchanged);
    }

    #[test]
    fn another_reservation_under_the_id_asks_its_home() {
        let seen = p(sku("A"), "f1", 100);
        for other in [
            p(sku("A"), "f2", 100),
            p(sku("B"), "f1", 100),
            p(None, "", 100),
        ] {
            assert_eq!(take(Some(&seen), other), Take::AskHome);
        }
        assert_eq!(after_home(Home::Live(Some(100))), Err(Taken));
        assert_eq!(after_home(Home::Live(None)), Err(Taken));
        assert_eq!(after_home(Home::Gone), Ok(()));
    }

    #[test]
    fn a_row_goes_after_retention_unless_extended_and_a_converted_one_goes() {
        let r = RESERVATION_RETENTION_MS;
        let now = 1_000 + r;
        assert_eq!(prune(Home::Gone, now), Prune::Delete);
        assert_eq!(prune(Home::Live(None), now), Prune::Delete);
        assert_eq!(prune(Home::Live(Some(1_000)), now), Prune::Delete);
        assert_eq!(prune(Home::Live(Some(1_001)), now), Prune::Keep(1_001));
        assert_eq!(
            prune(Home::Live(Some(i64::MAX)), now),
            Prune::Keep(i64::MAX)
        );
    }

    /// A small deterministic generator (no dependency).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Reservations made under a few ids at random times, the index driven
    /// by these rules with homes that know the truth: an id never names two
    /// live reservations, a live reservation's row is never lost, and a row
    /// is pruned only once its reservation is over.
    #[test]
    fn an_id_never_names_two_live_reservations() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            // The truth: per id, the reservations made (home, content, deadline).
            let mut made: BTreeMap<u64, Vec<Pointer>> = BTreeMap::new();
            let mut index: BTreeMap<u64, Pointer> = BTreeMap::new();
            let mut now = 0i64;
            let live = |made: &BTreeMap<u64, Vec<Pointer>>, id: u64, row: &Pointer, now: i64| {
                made.get(&id)
                    .into_iter()
                    .flatten()
                    .filter(|m| m.same_reservation(row))
                    .map(|m| m.until)
                    .max()
                    .filter(|&u| u > now)
            };
            for _ in 0..300 {
                now += rng.next(3 * RESERVATION_RETENTION_MS as u64 / 40) as i64;
                let id = rng.next(4);
                match rng.next(3) {
                    // Prune whatever is due.
                    0 => {
                        let due: Vec<u64> = index
                            .iter()
                            .filter(|(_, r)| r.until + RESERVATION_RETENTION_MS <= now)
                            .map(|(&i, _)| i)
                            .collect();
                        for i in due {
                            let row = index[&i].clone();
                            let home = match live(&made, i, &row, now) {
                                Some(u) => Home::Live(Some(u)),
                                None => {
                                    // Ended: its latest deadline, if within retention.
                                    let last = made[&i]
                                        .iter()
                                        .filter(|m| m.same_reservation(&row))
                                        .map(|m| m.until)
                                        .max()
                                        .unwrap();
                                    if last + RESERVATION_RETENTION_MS > now {
                                        Home::Live(Some(last))
                                    } else {
                                        Home::Gone
                                    }
                                }
                            };
                            match prune(home, now) {
                                Prune::Keep(u) => index.get_mut(&i).unwrap().until = u,
                                Prune::Delete => {
                                    assert!(live(&made, i, &row, now).is_none(), "seed {seed}");
                                    index.remove(&i);
                                }
                            }
                        }
                    }
                    // Take the id for a reservation (one of two contents).
                    _ => {
                        let fp = if rng.next(2) == 0 { "x" } else { "y" };
                        let want = p(sku("A"), fp, now + 1 + rng.next(10_000) as i64);
                        let ok = match take(index.get(&id), want.clone()) {
                            Take::Write(w) => {
                                index.insert(id, w);
                                true
                            }
                            Take::Unchanged => true,
                            Take::AskHome => {
                                let seen = index[&id].clone();
                                let home = match live(&made, id, &seen, now) {
                                    Some(u) => Home::Live(Some(u)),
                                    None => Home::Gone,
                                };
                                match after_home(home) {
                                    Ok(()) => {
                                        index.insert(id, want.clone());
                                        true
                                    }
                                    Err(Taken) => false,
                                }
                            }
                        };
                        if ok {
                            made.entry(id).or_default().push(want);
                        }
                    }
                }
                // Invariants: at most one live content per id, and it is
                // the one the index names, with a deadline no earlier.
                for (id, ms) in &made {
                    let lives: Vec<&Pointer> = ms.iter().filter(|m| m.until > now).collect();
                    if let Some(first) = lives.first() {
                        assert!(
                            lives.iter().all(|m| m.same_reservation(first)),
                            "seed {seed}: id {id} names two live reservations"
                        );
                        let row = index.get(id).expect("a live reservation's row");
                        assert!(row.same_reservation(first), "seed {seed}");
                        assert!(lives.iter().all(|m| m.until <= row.until), "seed {seed}");
                    }
                }
            }
        }
    }
}
