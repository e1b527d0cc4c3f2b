//! The invariants that hold after every event, and the state's stable hash.
use alloc::collections::BTreeMap;

use super::{
    HoldState, SkuState, TransferStatus, MAX_MOVEMENT_WINDOW, MAX_REMEMBERED_SALES, MAX_TERMINALS,
};
use crate::fingerprint::Fnv;
use crate::ids::LocationId;
use crate::stock::Qty;

impl SkuState {
    /// The invariants that hold after every event. Returns the first broken one.
    /// O(holds + locations): the tests run it after every event; the shell may
    /// run it after loading a snapshot or every N events.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut sums: BTreeMap<&LocationId, (Qty, Qty)> = BTreeMap::new();
        for h in self.holds.map.values_unordered() {
            if h.qty <= 0 {
                return Err("a hold of no units");
            }
            let e = sums.entry(&h.location).or_insert((0, 0));
            match h.state {
                HoldState::Held { .. } => e.0 += h.qty,
                HoldState::Committed => e.1 += h.qty,
            }
        }
        for (loc, s) in self.sites_sorted() {
            let p = &s.pos;
            if p.reserved < 0 || p.committed < 0 || p.damaged < 0 || p.quality_control < 0 {
                return Err("a bucket went below zero");
            }
            if p.safety_stock < 0 || p.incoming < 0 || p.oversold < 0 {
                return Err("safety stock, incoming or oversold below zero");
            }
            if p.on_hand < 0 && p.oversold == 0 {
                return Err("on_hand below zero without a recorded oversell");
            }
            if p.unavailable() > p.on_hand.max(0) && p.oversold == 0 {
                return Err("more units unavailable than on hand without a recorded oversell");
            }
            let (held, committed) = sums.get(loc).copied().unwrap_or((0, 0));
            if held != p.reserved {
                return Err("reserved differs from the sum of active holds");
            }
            if committed != p.committed {
                return Err("committed differs from the sum of commitments");
            }
            if s.flows.on_hand() != p.on_hand {
                return Err("on_hand differs from the sum of its flows (conservation)");
            }
            if s.flows.incoming() != p.incoming {
                return Err("incoming differs from shipped minus received and short");
            }
            if s.moves.len() > MAX_MOVEMENT_WINDOW {
                return Err("the movement window is over its limit");
            }
        }
        for loc in sums.keys() {
            if !self.sites.contains_key(*loc) {
                return Err("a hold at a location with no position");
            }
        }
        let dl = &self.holds.deadlines;
        let live = dl.iter().filter(|e| self.holds.live(e)).count();
        if live
            != self
                .holds
                .map
                .values_unordered()
                .filter(|h| h.deadline().is_some())
                .count()
        {
            return Err("the deadline table and the timed holds differ");
        }
        if dl.front().is_some_and(|e| !self.holds.live(e)) {
            return Err("the deadline table's front is stale");
        }
        if dl
            .iter()
            .zip(dl.iter().skip(1))
            .any(|(a, b)| (a.0, a.1) >= (b.0, b.1))
        {
            return Err("the deadline table is out of order");
        }
        for id in self.holds.map.keys_unordered() {
            if self.resolved.contains_key(id) {
                return Err("a hold is both active and resolved");
            }
        }
        if self
            .holds
            .map
            .values_unordered()
            .any(|h| h.seq > self.hold_seq)
        {
            return Err("a hold sequence from the future");
        }
        let open = self
            .transfers
            .values_unordered()
            .filter(|t| t.status == TransferStatus::InTransit)
            .count();
        if open != self.open_transfers {
            return Err("the open transfer count is wrong");
        }
        for t in self.transfers.values_unordered() {
            if t.received + t.shortfall > t.shipped {
                return Err("a transfer received more than it shipped");
            }
        }
        for r in self.sales.values_unordered() {
            if r.returned > r.qty {
                return Err("a sale returned more than it sold");
            }
        }
        if self.ops.len() != self.ops_log.len() || self.resolved.len() > self.resolved_log.len() {
            return Err("a retention log is out of step with its table");
        }
        // A snapshot from before the sale window (sales, no log) fails here:
        // the shell then replays the log instead.
        if self.sales.len() != self.sales_log.len()
            || self
                .sales_log
                .iter()
                .any(|(_, id)| !self.sales.contains_key(id))
        {
            return Err("the sale log is out of step with the sales");
        }
        if self.sales.len() > MAX_REMEMBERED_SALES || self.terminals.len() > MAX_TERMINALS {
            return Err("more sales or terminals remembered than the limit");
        }
        Ok(())
    }

    /// A stable 64-bit hash of everything observable: positions, holds,
    /// resolutions, sales, transfers. The same on every target (no `Hash`
    /// derive: those hash `usize` at the platform's width).
    pub fn state_hash(&self) -> u64 {
        let mut f = Fnv::default();
        for (loc, s) in self.sites_sorted() {
            let p = &s.pos;
            f = f
                .str(loc.as_str())
                .i64(p.on_hand)
                .i64(p.reserved)
                .i64(p.committed)
                .i64(p.damaged)
                .i64(p.quality_control)
                .i64(p.safety_stock)
                .i64(p.incoming)
                .u64(p.version)
                .i64(p.oversold);
        }
        for (id, h) in self.holds.map.iter() {
            f = f
                .str(id.as_str())
                .str(h.location.as_str())
                .i64(h.qty)
                .u64(h.seq)
                .i64(h.deadline().map_or(-1, |t| t.0))
                .u64(u64::from(h.state == HoldState::Committed));
        }
        for (id, r) in self.resolved.iter() {
            f = f.str(id.as_str()).u64(r.how as u64).i64(r.at.0);
        }
        for (id, s) in self.sales.iter() {
            f = f.str(id.as_str()).i64(s.qty).i64(s.returned);
        }
        for (id, t) in self.transfers.iter() {
            f = f
                .str(id.as_str())
                .i64(t.shipped)
                .i64(t.received)
                .i64(t.shortfall)
                .u64(t.status as u64);
        }
        f.u64(self.ops.len() as u64)
            .u64(self.hold_seq)
            .i64(self.clock.0)
            .finish()
    }
}
