//! Physical counts: a figure taken at the device's `counted_at`, brought up to
//! date with the movements applied after it (the site's movement window).
use alloc::vec::Vec;

use super::rejection::check_device_time;
use super::{Event, Rejection, SkuState, MAX_COUNTED};
use crate::ids::{LocationId, OpId};
use crate::stock::Qty;
use crate::time::Timestamp;

impl SkuState {
    pub(super) fn decide_count(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        counted: Qty,
        counted_at: Timestamp,
    ) -> Result<Event, Rejection> {
        if !(0..=MAX_COUNTED).contains(&counted) {
            return Err(Rejection::QtyOutOfRange { qty: counted });
        }
        check_device_time(now, counted_at)?;
        self.check_op(op, fp)?;
        self.check_location(location)?;
        let site = self.sites.get(location);
        if let Some(last) = site.and_then(|s| s.last_counted_at) {
            if counted_at < last {
                return Err(Rejection::CountOutOfOrder {
                    last_counted_at: last,
                });
            }
        }
        if let Some(h) = site.and_then(|s| s.horizon) {
            if counted_at < h {
                return Err(Rejection::CountOutsideWindow { horizon: h });
            }
        }
        let after: Qty = site.map_or(0, |s| {
            s.moves
                .iter()
                .filter(|(t, _)| *t > counted_at)
                .map(|(_, d)| d)
                .sum()
        });
        let p = self.position(location);
        let on_hand = counted + after;
        let oversold = (-on_hand).max(0);
        // Fewer units than were marked unavailable: the unavailable
        // buckets cannot hold more than there is.
        let room = on_hand.max(0);
        let damaged = p.damaged.min(room);
        let quality_control = p.quality_control.min(room - damaged);
        let available = on_hand - p.reserved - p.committed - damaged - quality_control
            + self.lapsed_at(now, location);
        let at_risk = if available < 0 {
            self.at_risk(now, location, -available)
        } else {
            Vec::new()
        };
        Ok(Event::Counted {
            op: op.clone(),
            fp,
            location: location.clone(),
            counted,
            counted_at,
            on_hand,
            variance: on_hand - p.on_hand,
            damaged,
            quality_control,
            oversold,
            at_risk,
            at: now,
        })
    }

    pub(super) fn apply_counted(&mut self, event: &Event) {
        let Event::Counted {
            op,
            fp,
            location,
            counted_at,
            on_hand,
            damaged,
            quality_control,
            oversold,
            at,
            ..
        } = event
        else {
            return;
        };
        if self.remember_op(op, *fp, *at) {
            let s = self.site_mut(location);
            s.flows.counted += on_hand - s.pos.on_hand;
            s.pos.on_hand = *on_hand;
            s.pos.damaged = *damaged;
            s.pos.quality_control = *quality_control;
            s.pos.oversold += oversold;
            s.pos.version += 1;
            s.last_counted_at = Some(*counted_at);
        }
    }
}
