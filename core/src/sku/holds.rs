//! Holds: reserve, extend, release, commit, fulfil; how each resolves (once),
//! lazy expiry, and the deadline table the alarm is set from.
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use super::rejection::{check_positive_qty, check_ttl, known};
use super::{Event, Rejection, SkuState, MAX_ACTIVE_HOLDS};
use crate::ids::{HoldId, IdMap, LocationId};
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;

/// How a hold was resolved. A hold resolves exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Released,
    Expired,
    Fulfilled,
}

/// The state a hold waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Reserved, until `expires_at` (or until resolved when `None`).
    Held { expires_at: Option<Timestamp> },
    /// Committed to a paid order, until fulfilled or released.
    Committed,
}

/// An active hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub location: LocationId,
    pub qty: Qty,
    pub channel: Channel,
    pub state: HoldState,
    pub fp: u64,
    /// Order of creation, for at-risk reporting (newest first) and expiry order.
    pub seq: u64,
}

impl Hold {
    pub(super) fn deadline(&self) -> Option<Timestamp> {
        match self.state {
            HoldState::Held { expires_at } => expires_at,
            HoldState::Committed => None,
        }
    }
}

/// A resolved hold, remembered for [`RETENTION_MS`](super::RETENTION_MS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub how: Resolution,
    pub fp: u64,
    pub at: Timestamp,
}

/// A deadline entry: `(deadline, seq, hold id)`.
type Deadline = (Timestamp, u64, HoldId);

/// The active holds and their alarm table. Serialised as the holds alone (a
/// list of `[id, hold]` pairs); the table is derived and rebuilt on load
/// (`snapshot`).
///
/// The alarm table: `(deadline, seq, hold id)` in (deadline, seq) order, with
/// lazy deletion. A hold that resolves, commits or is extended leaves its old
/// entry behind, stale; an entry is live while its hold is still held until
/// exactly that deadline with that seq ([`ActiveHolds::entry_hold`]). The
/// front entry is always live (stale ones are popped when they reach it), so
/// the next deadline is the front's, and the table is compacted when stale
/// entries outnumber the holds. Holds are mostly created in deadline order
/// (`now` + a TTL), so an insert is usually a push at the back.
///
/// Two values with the same holds have the same live entries, so equality
/// looks no further (the stale ones are history).
#[derive(Clone, Default)]
pub(super) struct ActiveHolds {
    pub(super) map: IdMap<HoldId, Hold>,
    pub(super) deadlines: VecDeque<Deadline>,
}

impl PartialEq for ActiveHolds {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl Eq for ActiveHolds {}

impl fmt::Debug for ActiveHolds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.map, f)
    }
}

impl ActiveHolds {
    /// The holds with a map rebuilt from scratch: the deadline table of `map`.
    pub(super) fn from_map(map: IdMap<HoldId, Hold>) -> Self {
        let mut deadlines: Vec<Deadline> = map
            .iter_unordered()
            .filter_map(|(id, h)| h.deadline().map(|t| (t, h.seq, id.clone())))
            .collect();
        deadlines.sort_unstable_by_key(|(t, seq, _)| (*t, *seq));
        ActiveHolds {
            map,
            deadlines: deadlines.into(),
        }
    }

    /// The hold a deadline entry stands for, if it is still held until
    /// exactly then (seqs are unique, so at most one hold matches).
    #[inline]
    pub(super) fn entry_hold<'a>(
        map: &'a IdMap<HoldId, Hold>,
        (t, seq, id): &'a Deadline,
    ) -> Option<(&'a HoldId, &'a Hold)> {
        map.get(id)
            .filter(|h| h.seq == *seq && h.deadline() == Some(*t))
            .map(|h| (id, h))
    }

    /// Whether a deadline entry still stands for its hold.
    #[inline]
    pub(super) fn live(&self, e: &Deadline) -> bool {
        Self::entry_hold(&self.map, e).is_some()
    }

    /// The earliest deadline of an active hold.
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.front().map(|(t, _, _)| *t)
    }

    /// Adds a hold's deadline to the alarm table (usually at the back).
    fn push_deadline(&mut self, t: Timestamp, seq: u64, id: &HoldId) {
        let dl = &mut self.deadlines;
        if dl.back().is_none_or(|(bt, bs, _)| (*bt, *bs) <= (t, seq)) {
            dl.push_back((t, seq, id.clone()));
        } else {
            let i = dl.partition_point(|(bt, bs, _)| (*bt, *bs) < (t, seq));
            dl.insert(i, (t, seq, id.clone()));
        }
        // Compaction: stale entries never outnumber the holds by much.
        if dl.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            dl.retain(|e| Self::entry_hold(map, e).is_some());
        }
    }

    /// The entry `(t, seq)` just went stale (its hold resolved, committed or
    /// moved its deadline): if it was the front, pops stale entries until the
    /// front is live again.
    fn drop_deadline(&mut self, t: Timestamp, seq: u64) {
        let dl = &mut self.deadlines;
        if dl.front().is_some_and(|(ft, fs, _)| (*ft, *fs) == (t, seq)) {
            dl.pop_front();
            while let Some(e) = dl.front() {
                if Self::entry_hold(&self.map, e).is_some() {
                    break;
                }
                dl.pop_front();
            }
        }
    }
}

impl SkuState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_hold(
        &self,
        now: Timestamp,
        fp: u64,
        hold: &HoldId,
        location: &LocationId,
        qty: Qty,
        channel: Channel,
        ttl_ms: Option<i64>,
    ) -> Result<Event, Rejection> {
        check_positive_qty(qty)?;
        if let Some(ttl) = ttl_ms {
            check_ttl(ttl)?;
        }
        if let Some(h) = self.holds.map.get(hold) {
            return Err(known(h.fp, fp));
        }
        if let Some(r) = self.resolved.get(hold) {
            return Err(known(r.fp, fp));
        }
        self.check_location(location)?;
        if self.holds.map.len() >= MAX_ACTIVE_HOLDS {
            return Err(Rejection::TooManyHolds);
        }
        let available = self.available_at(now, location, channel);
        if qty > available {
            return Err(Rejection::InsufficientStock {
                requested: qty,
                available: available.max(0),
            });
        }
        Ok(Event::Held {
            hold: hold.clone(),
            fp,
            location: location.clone(),
            qty,
            channel,
            expires_at: ttl_ms.map(|t| now.plus_ms(t)),
            at: now,
        })
    }

    pub(super) fn decide_extend(
        &self,
        now: Timestamp,
        hold: &HoldId,
        ttl_ms: i64,
    ) -> Result<Event, Rejection> {
        check_ttl(ttl_ms)?;
        let h = self.live_hold(now, hold)?;
        match h.state {
            HoldState::Held {
                expires_at: Some(old),
            } => Ok(Event::Extended {
                hold: hold.clone(),
                expires_at: old.max(now.plus_ms(ttl_ms)),
                at: now,
            }),
            _ => Err(Rejection::HoldNotActive),
        }
    }

    pub(super) fn decide_release(&self, now: Timestamp, hold: &HoldId) -> Result<Event, Rejection> {
        let h = self.live_hold(now, hold)?;
        Ok(Event::Released {
            hold: hold.clone(),
            location: h.location.clone(),
            qty: h.qty,
            at: now,
        })
    }

    pub(super) fn decide_commit(&self, now: Timestamp, hold: &HoldId) -> Result<Event, Rejection> {
        let h = self.live_hold(now, hold)?;
        match h.state {
            HoldState::Held { .. } => Ok(Event::Committed {
                hold: hold.clone(),
                location: h.location.clone(),
                qty: h.qty,
                at: now,
            }),
            HoldState::Committed => Err(Rejection::Exists),
        }
    }

    pub(super) fn decide_keep(&self, now: Timestamp, hold: &HoldId) -> Result<Event, Rejection> {
        let h = self.live_hold(now, hold)?;
        match h.state {
            HoldState::Held {
                expires_at: Some(_),
            } => Ok(Event::Kept {
                hold: hold.clone(),
                location: h.location.clone(),
                qty: h.qty,
                at: now,
            }),
            HoldState::Held { expires_at: None } | HoldState::Committed => Err(Rejection::Exists),
        }
    }

    pub(super) fn decide_fulfill(&self, now: Timestamp, hold: &HoldId) -> Result<Event, Rejection> {
        let h = self.live_hold(now, hold)?;
        match h.state {
            HoldState::Committed => {
                let p = self.position(&h.location);
                let there = (p.on_hand - p.unavailable()).max(0);
                Ok(Event::Fulfilled {
                    hold: hold.clone(),
                    location: h.location.clone(),
                    qty: h.qty,
                    oversold: (h.qty - there).clamp(0, h.qty),
                    at: now,
                })
            }
            HoldState::Held { .. } => Err(Rejection::HoldNotActive),
        }
    }

    /// The hold, if it is active at `now` (a hold past its deadline counts as expired).
    fn live_hold(&self, now: Timestamp, hold: &HoldId) -> Result<&Hold, Rejection> {
        if let Some(h) = self.holds.map.get(hold) {
            if let HoldState::Held {
                expires_at: Some(t),
            } = h.state
            {
                if t <= now {
                    return Err(Rejection::HoldResolved {
                        how: Resolution::Expired,
                    });
                }
            }
            return Ok(h);
        }
        match self.resolved.get(hold) {
            Some(r) => Err(Rejection::HoldResolved { how: r.how }),
            None => Err(Rejection::HoldNotFound),
        }
    }

    /// Holds past their deadline at `now` (not yet expired in the log), in expiry order.
    fn lapsed(&self, now: Timestamp) -> impl Iterator<Item = (&HoldId, &Hold)> {
        let map = &self.holds.map;
        self.holds
            .deadlines
            .iter()
            .take_while(move |(t, _, _)| *t <= now)
            .filter_map(move |e| ActiveHolds::entry_hold(map, e))
    }

    /// Units held at `location` by holds that are past their deadline at `now`
    /// but not yet expired in the log: they count as available.
    pub(super) fn lapsed_at(&self, now: Timestamp, location: &LocationId) -> Qty {
        // Fast path: nothing has lapsed (the driving loop expires first).
        if self.next_deadline().is_none_or(|d| d > now) {
            return 0;
        }
        self.lapsed(now)
            .filter(|(_, h)| &h.location == location)
            .map(|(_, h)| h.qty)
            .sum()
    }

    /// Holds at `location` that `deficit` units of oversell leave unmet, newest first.
    pub(super) fn at_risk(
        &self,
        now: Timestamp,
        location: &LocationId,
        deficit: Qty,
    ) -> Vec<HoldId> {
        let mut live: Vec<(&HoldId, &Hold)> = self
            .holds
            .map
            .iter_unordered()
            .filter(|(_, h)| &h.location == location)
            .filter(|(_, h)| h.deadline().is_none_or(|t| t > now))
            .collect();
        live.sort_by_key(|(_, h)| core::cmp::Reverse(h.seq));
        let mut out = Vec::new();
        let mut left = deficit;
        for (id, h) in live {
            if left <= 0 {
                break;
            }
            out.push(id.clone());
            left -= h.qty;
        }
        out
    }

    /// The holds whose deadline is at or before `now`, as `Expired` events, in
    /// deadline order. Idempotent: applying them twice changes nothing more.
    pub fn expire(&self, now: Timestamp) -> Vec<Event> {
        self.lapsed(now)
            .map(|(id, h)| Event::Expired {
                hold: id.clone(),
                location: h.location.clone(),
                qty: h.qty,
                at: now,
            })
            .collect()
    }

    /// The earliest deadline of an active hold: what the alarm is set to.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.holds.next_deadline()
    }

    pub(super) fn apply_held(&mut self, event: &Event) {
        let Event::Held {
            hold,
            fp,
            location,
            qty,
            channel,
            expires_at,
            ..
        } = event
        else {
            return;
        };
        if self.resolved.contains_key(hold) {
            return;
        }
        let seq = self.hold_seq + 1;
        let new = self.holds.map.insert_if_absent(hold, || Hold {
            location: location.clone(),
            qty: *qty,
            channel: *channel,
            state: HoldState::Held {
                expires_at: *expires_at,
            },
            fp: *fp,
            seq,
        });
        if !new {
            return;
        }
        self.hold_seq = seq;
        if let Some(t) = expires_at {
            self.holds.push_deadline(*t, seq, hold);
        }
        let s = self.site_mut(location);
        s.pos.reserved += qty;
        s.pos.version += 1;
    }

    pub(super) fn apply_extended(&mut self, hold: &HoldId, expires_at: Timestamp) {
        let Some(h) = self.holds.map.get_mut(hold) else {
            return;
        };
        let HoldState::Held {
            expires_at: Some(old),
        } = h.state
        else {
            return;
        };
        // Never shortens: a duplicate or reordered extension changes nothing.
        if expires_at <= old {
            return;
        }
        h.state = HoldState::Held {
            expires_at: Some(expires_at),
        };
        let seq = h.seq;
        self.sites
            .get_or_insert_with(&h.location, super::Site::default)
            .pos
            .version += 1;
        self.holds.push_deadline(expires_at, seq, hold);
        self.holds.drop_deadline(old, seq);
    }

    pub(super) fn apply_kept(&mut self, hold: &HoldId) {
        let Some(h) = self.holds.map.get_mut(hold) else {
            return;
        };
        if let HoldState::Held {
            expires_at: Some(t),
        } = h.state
        {
            h.state = HoldState::Held { expires_at: None };
            let seq = h.seq;
            self.sites
                .get_or_insert_with(&h.location, super::Site::default)
                .pos
                .version += 1;
            self.holds.drop_deadline(t, seq);
        }
    }

    pub(super) fn apply_committed(&mut self, hold: &HoldId) {
        let Some(h) = self.holds.map.get_mut(hold) else {
            return;
        };
        if let HoldState::Held { expires_at } = h.state {
            h.state = HoldState::Committed;
            let (qty, seq) = (h.qty, h.seq);
            let s = self
                .sites
                .get_or_insert_with(&h.location, super::Site::default);
            s.pos.reserved -= qty;
            s.pos.committed += qty;
            s.pos.version += 1;
            if let Some(t) = expires_at {
                self.holds.drop_deadline(t, seq);
            }
        }
    }

    /// Resolves an active hold (`oversold`: units a fulfilment shipped beyond what was there).
    pub(super) fn resolve(&mut self, hold: &HoldId, how: Resolution, at: Timestamp, oversold: Qty) {
        let Some((id, h)) = self.holds.map.remove_entry(hold) else {
            return;
        };
        if let Some(t) = h.deadline() {
            self.holds.drop_deadline(t, h.seq);
        }
        let site = self.site_mut(&h.location);
        site.pos.oversold += oversold;
        let p = &mut site.pos;
        match h.state {
            HoldState::Held { .. } => p.reserved -= h.qty,
            HoldState::Committed => {
                p.committed -= h.qty;
                if how == Resolution::Fulfilled {
                    p.on_hand -= h.qty;
                    site.flows.fulfilled += h.qty;
                    site.record_move(at, -h.qty);
                }
            }
        }
        site.pos.version += 1;
        self.resolved_log.push_back((at, id.clone()));
        self.resolved.insert(id, Resolved { how, fp: h.fp, at });
    }
}
