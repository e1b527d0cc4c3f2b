//! Issue 4's concurrency tests: reservations and POS sales racing on one SKU,
//! and multi-line carts racing for overlapping SKUs.
