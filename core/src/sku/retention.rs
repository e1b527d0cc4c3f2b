//! Op ids (the idempotency of every command that carries an [`OpId`]), and
//! what is forgotten [`RETENTION_MS`] after it was last touched: op ids, sale
//! ids, resolved holds, closed and cancelled transfers. Pruning goes by event
//! time (the latest event applied), never by a clock.
use super::rejection::known;
use super::{Rejection, SkuState, TransferStatus, RETENTION_MS};
use crate::ids::OpId;
use crate::time::Timestamp;

impl SkuState {
    pub(super) fn check_op(&self, op: &OpId, fp: u64) -> Result<(), Rejection> {
        match self.ops.get(op) {
            None => Ok(()),
            Some((old, _)) => Err(known(*old, fp)),
        }
    }

    /// Records `op` (first time only): whether it was new.
    pub(super) fn remember_op(&mut self, op: &OpId, fp: u64, at: Timestamp) -> bool {
        if !self.ops.insert_if_absent(op, || (fp, at)) {
            return false;
        }
        self.ops_log.push_back((at, op.clone()));
        true
    }

    /// Forgets op ids, sale ids, resolved holds and closed transfers older
    /// than the retention window.
    pub(super) fn prune(&mut self) {
        let horizon = Timestamp(self.clock.0.saturating_sub(RETENTION_MS));
        while self.ops_log.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((t, op)) = self.ops_log.pop_front() {
                if self.ops.get(&op).is_some_and(|o| o.1 == t) {
                    self.ops.remove(&op);
                }
            }
        }
        while self.sales_log.front().is_some_and(|(t, _)| *t < horizon) {
            self.forget_oldest_sale();
        }
        while self.resolved_log.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((t, id)) = self.resolved_log.pop_front() {
                if self.resolved.get(&id).is_some_and(|r| r.at == t) {
                    self.resolved.remove(&id);
                }
            }
        }
        while self
            .transfers_log
            .front()
            .is_some_and(|(t, _)| *t < horizon)
        {
            if let Some((_, id)) = self.transfers_log.pop_front() {
                if self
                    .transfers
                    .get(&id)
                    .is_some_and(|t| t.status != TransferStatus::InTransit)
                {
                    self.transfers.remove(&id);
                }
            }
        }
    }
}
