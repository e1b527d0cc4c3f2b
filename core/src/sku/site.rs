//! One location's position, its flows and its movement window, and the
//! commands that change a position directly: receive, adjust, mark
//! unavailable, set safety stock.
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::rejection::check_qty;
use super::{Event, Rejection, SkuState, MAX_LOCATIONS, MAX_MOVEMENT_WINDOW, MAX_ON_HAND};
use crate::ids::{LocationId, OpId};
use crate::stock::{AdjustReason, Channel, Position, Qty, UnavailableBucket, MAX_LINE_QTY};
use crate::time::Timestamp;

/// Units that moved in or out of on_hand at one location, by cause. on_hand
/// always equals their signed sum (conservation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flows {
    pub received: Qty,
    pub adjusted: Qty,
    pub counted: Qty,
    pub sold: Qty,
    pub fulfilled: Qty,
    pub returned: Qty,
    pub transferred_out: Qty,
    pub transferred_in: Qty,
    pub shipped_to: Qty,
    pub shortfall: Qty,
}

impl Flows {
    pub fn on_hand(&self) -> Qty {
        self.received + self.adjusted + self.counted - self.sold - self.fulfilled + self.returned
            - self.transferred_out
            + self.transferred_in
    }
    pub fn incoming(&self) -> Qty {
        self.shipped_to - self.transferred_in - self.shortfall
    }
}

/// One location's position plus what the core needs to keep it right.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Site {
    pub(super) pos: Position,
    pub(super) flows: Flows,
    /// Recent on_hand movements `(when, delta)`, oldest first, at most
    /// [`MAX_MOVEMENT_WINDOW`]: what a count adds back to its figure.
    pub(super) moves: VecDeque<(Timestamp, Qty)>,
    /// Latest time of a movement dropped from `moves`: counts before it are refused.
    pub(super) horizon: Option<Timestamp>,
    pub(super) last_counted_at: Option<Timestamp>,
}

impl Site {
    pub(super) fn record_move(&mut self, when: Timestamp, delta: Qty) {
        if self.moves.len() >= MAX_MOVEMENT_WINDOW {
            if let Some((t, _)) = self.moves.pop_front() {
                self.horizon = Some(self.horizon.map_or(t, |h| h.max(t)));
            }
        }
        self.moves.push_back((when, delta));
    }
}

impl SkuState {
    pub(super) fn decide_receive(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        qty: Qty,
    ) -> Result<Event, Rejection> {
        check_qty(qty)?;
        self.check_op(op, fp)?;
        self.check_location(location)?;
        self.check_on_hand_limit(location, qty)?;
        Ok(Event::Received {
            op: op.clone(),
            fp,
            location: location.clone(),
            qty,
            at: now,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_adjust(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        delta: Qty,
        reason: AdjustReason,
        expected_version: Option<u64>,
    ) -> Result<Event, Rejection> {
        if delta.unsigned_abs() > MAX_LINE_QTY as u64 {
            return Err(Rejection::QtyOutOfRange { qty: delta });
        }
        self.check_op(op, fp)?;
        let p = self.position(location);
        if let Some(expected) = expected_version {
            if expected != p.version {
                return Err(Rejection::VersionConflict {
                    expected,
                    actual: p.version,
                });
            }
        }
        self.check_location(location)?;
        let on_hand = p.on_hand + delta;
        if delta < 0 && on_hand < p.unavailable() {
            return Err(Rejection::OnHandBelowUnavailable {
                on_hand,
                unavailable: p.unavailable(),
            });
        }
        self.check_on_hand_limit(location, delta)?;
        Ok(Event::Adjusted {
            op: op.clone(),
            fp,
            location: location.clone(),
            delta,
            reason,
            at: now,
        })
    }

    pub(super) fn decide_mark_unavailable(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        bucket: UnavailableBucket,
        delta: Qty,
    ) -> Result<Event, Rejection> {
        if delta.unsigned_abs() > MAX_LINE_QTY as u64 {
            return Err(Rejection::QtyOutOfRange { qty: delta });
        }
        self.check_op(op, fp)?;
        self.check_location(location)?;
        let p = self.position(location);
        let qty = p.bucket(bucket) + delta;
        if qty < 0 {
            return Err(Rejection::UnavailableBelowZero { bucket, qty });
        }
        if p.unavailable() + delta > p.on_hand {
            return Err(Rejection::OnHandBelowUnavailable {
                on_hand: p.on_hand,
                unavailable: p.unavailable() + delta,
            });
        }
        // Units held or committed cannot be marked: release them first.
        let available = self.available_at(now, location, Channel::Pos);
        if delta > 0 && delta > available {
            return Err(Rejection::InsufficientStock {
                requested: delta,
                available: available.max(0),
            });
        }
        Ok(Event::MarkedUnavailable {
            op: op.clone(),
            fp,
            location: location.clone(),
            bucket,
            delta,
            at: now,
        })
    }

    pub(super) fn decide_safety_stock(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        location: &LocationId,
        qty: Qty,
    ) -> Result<Event, Rejection> {
        check_qty(qty)?;
        self.check_op(op, fp)?;
        self.check_location(location)?;
        Ok(Event::SafetyStockSet {
            op: op.clone(),
            fp,
            location: location.clone(),
            qty,
            at: now,
        })
    }

    /// Applies `Received`, `Adjusted`, `MarkedUnavailable` and `SafetyStockSet`
    /// (once per op id).
    pub(super) fn apply_site_op(&mut self, event: &Event) {
        let (op, fp, location, at) = match event {
            Event::Received {
                op,
                fp,
                location,
                at,
                ..
            }
            | Event::Adjusted {
                op,
                fp,
                location,
                at,
                ..
            }
            | Event::MarkedUnavailable {
                op,
                fp,
                location,
                at,
                ..
            }
            | Event::SafetyStockSet {
                op,
                fp,
                location,
                at,
                ..
            } => (op, *fp, location, *at),
            _ => return,
        };
        if !self.remember_op(op, fp, at) {
            return;
        }
        let s = self.site_mut(location);
        match *event {
            Event::Received { qty, .. } => {
                s.pos.on_hand += qty;
                s.flows.received += qty;
                s.record_move(at, qty);
            }
            Event::Adjusted { delta, .. } => {
                s.pos.on_hand += delta;
                s.flows.adjusted += delta;
                s.record_move(at, delta);
            }
            Event::MarkedUnavailable { bucket, delta, .. } => match bucket {
                UnavailableBucket::Damaged => s.pos.damaged += delta,
                UnavailableBucket::QualityControl => s.pos.quality_control += delta,
            },
            Event::SafetyStockSet { qty, .. } => s.pos.safety_stock = qty,
            _ => {}
        }
        s.pos.version += 1;
    }

    /// A new location is refused once the SKU has [`MAX_LOCATIONS`].
    pub(super) fn check_location(&self, location: &LocationId) -> Result<(), Rejection> {
        if self.sites.len() >= MAX_LOCATIONS && !self.sites.contains_key(location) {
            Err(Rejection::TooManyLocations)
        } else {
            Ok(())
        }
    }

    pub(super) fn check_on_hand_limit(
        &self,
        location: &LocationId,
        delta: Qty,
    ) -> Result<(), Rejection> {
        if self.position(location).on_hand + delta > MAX_ON_HAND {
            Err(Rejection::OnHandLimit)
        } else {
            Ok(())
        }
    }

    /// The sites in location id order.
    pub(super) fn sites_sorted(&self) -> Vec<(&LocationId, &Site)> {
        let mut all: Vec<(&LocationId, &Site)> = self.sites.iter_unordered().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub(super) fn site_mut(&mut self, location: &LocationId) -> &mut Site {
        // A new location clones the id (a reference count, not a copy).
        self.sites.get_or_insert_with(location, Site::default)
    }
}
