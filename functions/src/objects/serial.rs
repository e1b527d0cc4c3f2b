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
        // Counted until it has its turn or goes away: a request cancelled
        // while it waits (its client left) gives its place back.
        let _place = Waiting::new(&self.waiting);
        let g = self.lock.lock().await;
        Ok(Turn(g))
    }

    /// Requests waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }
}

/// A waiter's place in the count, given back when dropped.
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn new(n: &'a Cell<usize>) -> Self {
        n.set(n.get() + 1);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    type Waiter<'a> = Pin<Box<dyn Future<Output = Result<Turn<'a>, Problem>> + 'a>>;

    fn poll<'a>(f: &mut Waiter<'a>) -> Poll<Result<Turn<'a>, Problem>> {
        f.as_mut().poll(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn past_the_bound_a_waiter_is_refused_at_once_and_turns_go_in_order() {
        let serial = Serial::default();
        let mut first: Waiter = Box::pin(serial.turn());
        let Poll::Ready(Ok(turn)) = poll(&mut first) else {
            panic!("the first request runs at once")
        };
        let mut waiters: Vec<Waiter> = (0..MAX_WAITING)
            .map(|_| Box::pin(serial.turn()) as Waiter)
            .collect();
        for w in &mut waiters {
            assert!(poll(w).is_pending());
        }
        assert_eq!(serial.waiting(), MAX_WAITING);
        let mut one_more: Waiter = Box::pin(serial.turn());
        match poll(&mut one_more) {
            Poll::Ready(Err(p)) => assert_eq!((p.status, p.code.as_str()), (503, "overloaded")),
            _ => panic!("the waiter past MAX_WAITING is refused at once"),
        }
        drop(turn);
        let Poll::Ready(Ok(next)) = poll(&mut waiters[0]) else {
            panic!("the first waiter has the next turn")
        };
        assert_eq!(serial.waiting(), MAX_WAITING - 1);
        assert!(poll(&mut waiters[1]).is_pending());
        drop(next);
    }

    #[test]
    fn a_waiter_that_goes_away_gives_its_place_back() {
        let serial = Serial::default();
        let mut first: Waiter = Box::pin(serial.turn());
        let Poll::Ready(Ok(turn)) = poll(&mut first) else {
            panic!("the first request runs at once")
        };
        for _ in 0..3 * MAX_WAITING {
            let mut w: Waiter = Box::pin(serial.turn());
            assert!(poll(&mut w).is_pending(), "a place is free");
            // The request is cancelled while it waits.
            drop(w);
        }
        assert_eq!(serial.waiting(), 0);
        drop(turn);
        let mut after: Waiter = Box::pin(serial.turn());
        assert!(matches!(poll(&mut after), Poll::Ready(Ok(_))));
    }
}
