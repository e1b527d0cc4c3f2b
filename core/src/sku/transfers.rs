//! Transfers of this SKU between two locations: shipped (out of on_hand at
//! `from`, incoming at `to`), received in parts, closed with a shortfall, or
//! cancelled before they ship.
use super::rejection::{check_positive_qty, check_qty, known};
use super::{Event, Rejection, SkuState, MAX_LOCATIONS, MAX_OPEN_TRANSFERS};
use crate::ids::{LocationId, OpId, TransferId};
use crate::stock::{Channel, Qty};
use crate::time::Timestamp;

/// Where a transfer of this SKU stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Shipped, units in transit.
    InTransit,
    /// Every unit received or the rest recorded short.
    Closed,
    /// Cancelled before it shipped.
    Cancelled,
}

/// One transfer of this SKU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    pub fp: u64,
    pub from: Option<LocationId>,
    pub to: Option<LocationId>,
    pub shipped: Qty,
    pub received: Qty,
    pub shortfall: Qty,
    pub status: TransferStatus,
    /// Last change, for pruning once closed or cancelled.
    pub at: Timestamp,
}

impl SkuState {
    pub(super) fn decide_transfer_ship(
        &self,
        now: Timestamp,
        fp: u64,
        transfer: &TransferId,
        from: &LocationId,
        to: &LocationId,
        qty: Qty,
    ) -> Result<Event, Rejection> {
        check_positive_qty(qty)?;
        if from == to {
            return Err(Rejection::SameLocation);
        }
        if let Some(t) = self.transfers.get(transfer) {
            return Err(match t.status {
                TransferStatus::Cancelled => Rejection::TransferCancelled,
                _ => known(t.fp, fp),
            });
        }
        let new_sites =
            usize::from(!self.sites.contains_key(from)) + usize::from(!self.sites.contains_key(to));
        if self.sites.len() + new_sites > MAX_LOCATIONS {
            return Err(Rejection::TooManyLocations);
        }
        if self.open_transfers >= MAX_OPEN_TRANSFERS {
            return Err(Rejection::TooManyTransfers);
        }
        let available = self.available_at(now, from, Channel::Pos);
        if qty > available {
            return Err(Rejection::InsufficientStock {
                requested: qty,
                available: available.max(0),
            });
        }
        Ok(Event::TransferShipped {
            transfer: transfer.clone(),
            fp,
            from: from.clone(),
            to: to.clone(),
            qty,
            at: now,
        })
    }

    pub(super) fn decide_transfer_receive(
        &self,
        now: Timestamp,
        fp: u64,
        op: &OpId,
        transfer: &TransferId,
        qty: Qty,
        close: bool,
    ) -> Result<Event, Rejection> {
        check_qty(qty)?;
        self.check_op(op, fp)?;
        let Some(t) = self.transfers.get(transfer) else {
            return Err(Rejection::TransferNotFound);
        };
        let to = match (t.status, &t.to) {
            (TransferStatus::Cancelled, _) => return Err(Rejection::TransferCancelled),
            (TransferStatus::Closed, _) => return Err(Rejection::TransferClosed),
            (TransferStatus::InTransit, Some(to)) => to,
            (TransferStatus::InTransit, None) => return Err(Rejection::TransferNotFound),
        };
        let remaining = t.shipped - t.received - t.shortfall;
        if qty > remaining {
            return Err(Rejection::OverReceived { remaining });
        }
        if qty == 0 && !close {
            return Err(Rejection::QtyOutOfRange { qty: 0 });
        }
        self.check_on_hand_limit(to, qty)?;
        Ok(Event::TransferReceived {
            op: op.clone(),
            fp,
            transfer: transfer.clone(),
            location: to.clone(),
            qty,
            shortfall: if close { remaining - qty } else { 0 },
            at: now,
        })
    }

    pub(super) fn decide_transfer_cancel(
        &self,
        now: Timestamp,
        transfer: &TransferId,
    ) -> Result<Event, Rejection> {
        match self.transfers.get(transfer) {
            Some(t) => Err(match t.status {
                TransferStatus::Cancelled => Rejection::Exists,
                _ => Rejection::TransferAlreadyShipped,
            }),
            None => Ok(Event::TransferCancelled {
                transfer: transfer.clone(),
                at: now,
            }),
        }
    }

    pub(super) fn apply_transfer_shipped(&mut self, event: &Event) {
        let Event::TransferShipped {
            transfer,
            fp,
            from,
            to,
            qty,
            at,
        } = event
        else {
            return;
        };
        if self.transfers.contains_key(transfer) {
            return;
        }
        self.transfers.insert(
            transfer.clone(),
            Transfer {
                fp: *fp,
                from: Some(from.clone()),
                to: Some(to.clone()),
                shipped: *qty,
                received: 0,
                shortfall: 0,
                status: TransferStatus::InTransit,
                at: *at,
            },
        );
        self.open_transfers += 1;
        let s = self.site_mut(from);
        s.pos.on_hand -= qty;
        s.flows.transferred_out += qty;
        s.pos.version += 1;
        s.record_move(*at, -qty);
        let s = self.site_mut(to);
        s.pos.incoming += qty;
        s.flows.shipped_to += qty;
        s.pos.version += 1;
    }

    pub(super) fn apply_transfer_received(&mut self, event: &Event) {
        let Event::TransferReceived {
            op,
            fp,
            transfer,
            location,
            qty,
            shortfall,
            at,
        } = event
        else {
            return;
        };
        let Some(t) = self.transfers.get_mut(transfer) else {
            return;
        };
        if t.status != TransferStatus::InTransit || self.ops.contains_key(op) {
            return;
        }
        t.received += qty;
        t.shortfall += shortfall;
        t.at = *at;
        let closed = t.received + t.shortfall >= t.shipped;
        if closed {
            t.status = TransferStatus::Closed;
        }
        self.remember_op(op, *fp, *at);
        if closed {
            self.open_transfers -= 1;
            self.transfers_log.push_back((*at, transfer.clone()));
        }
        let s = self.site_mut(location);
        s.pos.incoming -= qty + shortfall;
        s.pos.on_hand += qty;
        s.flows.transferred_in += qty;
        s.flows.shortfall += shortfall;
        s.pos.version += 1;
        s.record_move(*at, *qty);
    }

    pub(super) fn apply_transfer_cancelled(&mut self, transfer: &TransferId, at: Timestamp) {
        if self.transfers.contains_key(transfer) {
            return;
        }
        self.transfers.insert(
            transfer.clone(),
            Transfer {
                fp: 0,
                from: None,
                to: None,
                shipped: 0,
                received: 0,
                shortfall: 0,
                status: TransferStatus::Cancelled,
                at,
            },
        );
        self.transfers_log.push_back((at, transfer.clone()));
    }
}
