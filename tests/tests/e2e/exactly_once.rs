//! Issue 4's exactly-once tests: every write replayed with its
//! Idempotency-Key (some concurrently) changes stock once.
