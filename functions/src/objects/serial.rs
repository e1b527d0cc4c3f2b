//! One write at a time inside an object whose handler awaits other objects
//! (a coordinator, a terminal): a later request waits in a FIFO queue for
//! the running one instead of racing it, woken when it finishes (no polling).
//! The queue is bounded: past [`MAX_WAITING`] waiters a request is refused
//! as 503 `overloaded` (retryable) instead of queueing without end.
use std::cell::Cell;

use futures_util::lock::{Mutex, MutexGuard};

use crate::http::Problem;

/// Most requests waiting for their turn in one object. A turn takes a few
/// milliseconds (one round of SKU calls), so 8 waiters is tens of
/// milliseconds of queue; a 9th is told to come back (503 with
/// Retry-After) at once instead of waiting behind them: overload is a quick
/// answer (issue 12), and a till or a coordinator sends one request at a
/// time anyway. (64 let a POS terminal queue for seconds at 512
/// connections in `make bench-http`.)
pub const MAX_WAITING: usize = 8;

#[derive(Default)]
pub struct Serial {
    lock: Mutex<()>,
    waiting: Cell<usize>,
}

/// The turn: the next waiter runs when it is dropped.
pub struct Turn<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Serial {
    pub async fn turn(&self) -> Result<Turn<'_>, Problem> {
        if let Some(g) = self.lock.try_lock() {
            return Ok(Turn(g));
        }
        if self.waiting.get() >= MAX_WAITING {
            return Err(Problem::overloaded("too many requests waiting; retry"));
        }
        self.waiting.set(self.waiting.get() + 1);
        let g = self.lock.lock().await;
        self.waiting.set(self.waiting.get() - 1);
        Ok(Turn(g))
    }
}
