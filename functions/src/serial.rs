//! One write at a time inside an object whose handler awaits other objects:
//! a concurrent request waits for the running one instead of racing it.
use std::cell::Cell;
use std::time::Duration;

use worker::Delay;

use crate::http::Problem;

/// Clears the busy flag however the handler ends.
pub struct Turn<'a>(&'a Cell<bool>);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Waits (polling, at most `max_ms`) until `busy` is free, then takes it.
pub async fn take_turn(busy: &Cell<bool>, max_ms: u64) -> Result<Turn<'_>, Problem> {
    let mut waited = 0;
    while busy.get() {
        if waited > max_ms {
            return Err(Problem::overloaded("busy with an earlier request; retry"));
        }
        Delay::from(Duration::from_millis(5)).await;
        waited += 5;
    }
    busy.set(true);
    Ok(Turn(busy))
}
