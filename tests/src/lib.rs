//! omnistock-tests: simulation, model and end-to-end tests.
//! The end-to-end tests live in `tests/e2e/` (one integration binary).
