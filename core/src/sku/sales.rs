//! POS sales (never refused for stock: an oversell is recorded) and returns,
//! against a sale or not; the window of sale ids core remembers, and the
//! terminals' last device sequences.
use alloc::vec::Vec;

use super::rejection::{check_device_time, check_positive_qty, check_qty, known};
use super::{Condition, Event, Rejection, SkuState, MAX_REMEMBERED_SALES, MAX_TERMINALS};
use crate::ids::{LocationId, OpId, SaleId, TerminalId};
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;

/// A POS sale, remembered for [`RETENTION_MS`](super::RETENTION_MS), at
/// most [`MAX_REMEMBERED_SALES`] of them (the shell remembers every sale id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaleRecord {
    pub fp: u64,
    pub qty: Qty,
    pub returned: Qty,
}

/// What a SKU remembers of a terminal: the highest device sequence applied
/// (a lower one is flagged `late`) and when it last sold (the terminal seen
/// longest ago is forgotten first, past [`MAX_TERMINALS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSeen {
    pub device_seq: u64,
    pub seen_at: Timestamp,
}

impl SkuState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_sell(
        &self,
        now: Timestamp,
        fp: u64,
        sale: &SaleId,
        terminal: &TerminalId,
        device_seq: u64,
        location: &LocationId,
        qty: Qty,
        occurred_at: Timestamp,
    ) -> Result<Event, Rejection> {
        check_qty(qty)?;
        check_device_time(now, occurred_at)?;
        if let Some(old) = self.sales.get(sale) {
            return Err(known(old.fp, fp));
        }
        self.check_location(location)?;
        let site = self.sites.get(location);
        let absorbed_by_count = site
            .and_then(|s| s.last_counted_at)
            .is_some_and(|c| occurred_at <= c);
        let late = self
            .terminals
            .get(terminal)
            .is_some_and(|seen| device_seq < seen.device_seq);
        let (oversold, at_risk) = if absorbed_by_count {
            (0, Vec::new())
        } else {
            // `site` is the position's site: no second lookup.
            let mut p = site.map(|s| s.pos).unwrap_or_default();
            p.reserved -= self.lapsed_at(now, location);
            let available = p.available(Channel::Pos);
            let after = available - qty;
            if after < 0 {
                ((-after).min(qty), self.at_risk(now, location, -after))
            } else {
                (0, Vec::new())
            }
        };
        Ok(Event::Sold {
            sale: sale.clone(),
            fp,
            terminal: terminal.clone(),
            device_seq,
            location: location.clone(),
            qty,
            occurred_at,
            oversold,
            at_risk,
            late,
            absorbed_by_count,
            at: now,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_return(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        qty: Qty,
        condition: Condition,
        sale: Option<&SaleId>,
    ) -> Result<Event, Rejection> {
        check_positive_qty(qty)?;
        self.check_op(op, fp)?;
        if let Some(sale) = sale {
            match self.sales.get(sale) {
                Some(s) if s.returned + qty > s.qty => {
                    return Err(Rejection::ReturnExceedsSold {
                        sold: s.qty,
                        returned: s.returned,
                    });
                }
                Some(_) => {}
                None if self.sales_forgotten == 0 => return Err(Rejection::SaleNotFound),
                // Maybe a sale core forgot: the caller's durable record vouches for it.
                None => {}
            }
        }
        self.check_location(location)?;
        if condition != Condition::ReturnToVendor {
            self.check_on_hand_limit(location, qty)?;
        }
        Ok(Event::ReturnReceived {
            op: op.clone(),
            fp,
            location: location.clone(),
            qty,
            condition,
            sale: sale.cloned(),
            at: now,
        })
    }

    pub(super) fn apply_sold(&mut self, event: &Event) {
        let Event::Sold {
            sale,
            fp,
            terminal,
            device_seq,
            location,
            qty,
            occurred_at,
            oversold,
            absorbed_by_count,
            at,
            ..
        } = event
        else {
            return;
        };
        let new = self.sales.insert_if_absent(sale, || SaleRecord {
            fp: *fp,
            qty: *qty,
            returned: 0,
        });
        if !new {
            return;
        }
        self.sales_log.push_back((*at, sale.clone()));
        while self.sales.len() > MAX_REMEMBERED_SALES {
            self.forget_oldest_sale();
        }
        self.see_terminal(terminal, *device_seq, *at);
        let s = self.site_mut(location);
        if !absorbed_by_count {
            s.pos.on_hand -= qty;
            s.flows.sold += qty;
            s.record_move(*occurred_at, -qty);
        }
        s.pos.oversold += oversold;
        s.pos.version += 1;
    }

    pub(super) fn apply_return_received(&mut self, event: &Event) {
        let Event::ReturnReceived {
            op,
            fp,
            location,
            qty,
            condition,
            sale,
            at,
        } = event
        else {
            return;
        };
        if !self.remember_op(op, *fp, *at) {
            return;
        }
        if let Some(r) = sale.as_ref().and_then(|s| self.sales.get_mut(s)) {
            r.returned += qty;
        }
        let s = self.site_mut(location);
        match condition {
            Condition::Restock => {
                s.pos.on_hand += qty;
                s.flows.returned += qty;
                s.record_move(*at, *qty);
            }
            Condition::Damaged => {
                s.pos.on_hand += qty;
                s.pos.damaged += qty;
                s.flows.returned += qty;
                s.record_move(*at, *qty);
            }
            Condition::ReturnToVendor => {}
        }
        s.pos.version += 1;
    }

    /// Forgets the oldest sale id remembered.
    pub(super) fn forget_oldest_sale(&mut self) {
        if let Some((_, sale)) = self.sales_log.pop_front() {
            self.sales.remove(&sale);
            self.sales_forgotten += 1;
        }
    }

    /// Records a sale by `terminal`: its highest device sequence and when it
    /// last sold. A new terminal past [`MAX_TERMINALS`] replaces the one seen
    /// longest ago (ties: the smallest id).
    fn see_terminal(&mut self, terminal: &TerminalId, device_seq: u64, at: Timestamp) {
        if let Some(seen) = self.terminals.get_mut(terminal) {
            seen.device_seq = seen.device_seq.max(device_seq);
            seen.seen_at = seen.seen_at.max(at);
            return;
        }
        if self.terminals.len() >= MAX_TERMINALS {
            let oldest = self
                .terminals
                .iter_unordered()
                .min_by(|a, b| (a.1.seen_at, a.0).cmp(&(b.1.seen_at, b.0)))
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.terminals.remove(&id);
            }
        }
        self.terminals.insert(
            terminal.clone(),
            TerminalSeen {
                device_seq,
                seen_at: at,
            },
        );
    }
}
