//! The request keys (Idempotency-Keys) waiting on the move their request
//! started, kept with the [`OrderMachine`] they wait on.
//!
//! A transition's key is saved with the machine before the move's first
//! stock message, so when a crash cuts the request off and the alarm
//! finishes the move, the key's retry gets the move's outcome (not "cannot
//! go from paid to paid"). Every key waits on the same move (another move is
//! refused as busy while one runs); a resend renews the move's ticket, so all
//! take the new one. At most [`MAX_WAITING_KEYS`] are kept, the oldest out.
use alloc::vec::Vec;

use super::coordinator::{Done, OrderFailure, OrderMachine, Ticket};

/// Most keys waiting on one move.
pub const MAX_WAITING_KEYS: usize = 32;

/// A request key as the shell keeps it (with its fingerprint, say): told
/// apart by [`WaitKey::key`] alone.
pub trait WaitKey {
    fn key(&self) -> &str;
}

/// The keys waiting, each with the ticket of the move it waits on. Stored as
/// the list of `[key, ticket]` pairs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Waits<K> {
    waits: Vec<(K, Ticket)>,
}

impl<K> Default for Waits<K> {
    fn default() -> Self {
        Waits { waits: Vec::new() }
    }
}

impl<K: WaitKey> Waits<K> {
    /// `k` waits on the move `ticket` names (again, if it already did).
    pub fn wait(&mut self, k: K, ticket: Ticket) {
        self.forget(k.key());
        if self.waits.len() >= MAX_WAITING_KEYS {
            drop(self.waits.remove(0));
        }
        self.waits.push((k, ticket));
        for w in &mut self.waits {
            w.1 = ticket;
        }
    }

    /// The waiting key named `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&K> {
        self.waits.iter().map(|(k, _)| k).find(|k| k.key() == key)
    }

    /// `key` no longer waits (its request got the answer).
    pub fn forget(&mut self, key: &str) {
        self.waits.retain(|(k, _)| k.key() != key);
    }

    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// Once no move runs: the keys whose move has a settled outcome, with
    /// it, for the shell to keep as their answers. Every key leaves the
    /// list; one whose move ended unconfirmed, busy or superseded (or has no
    /// outcome) is dropped, free to be handled afresh when retried. While a
    /// move runs: nothing.
    pub fn settle(&mut self, m: &OrderMachine) -> Vec<(K, Result<Done, OrderFailure>)> {
        if self.waits.is_empty() || m.moving().is_some() {
            return Vec::new();
        }
        core::mem::take(&mut self.waits)
            .into_iter()
            .filter_map(|(k, t)| {
                let outcome = m.outcome(t)?;
                outcome
                    .as_ref()
                    .err()
                    .is_none_or(OrderFailure::is_final)
                    .then_some((k, outcome))
            })
            .collect()
    }
}
