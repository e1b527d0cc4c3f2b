//! omnistock-fuzz: the bolero fuzz targets (issue 12).
//!
//! - `sku_commands`: core's command path (`sku_command_sequences`,
//!   `sku_command_json`).
//! - `requests`: the Worker's request decoding, its pure functions compiled
//!   natively (`request_front_door`, `rfc3339_times`, `api_keys_config`,
//!   `object_requests`).
//!
//! `cargo test -p omnistock-fuzz` runs each on a bounded number of random
//! inputs (bolero's test mode; `make test`); `make fuzz` runs each
//! coverage-guided with libFuzzer (`cargo bolero test --engine libfuzzer`,
//! stable toolchain, no sanitizer) for `FUZZ_SECONDS`. See
//! docs/reliability.md.
//!
//! The targets are this library's unit tests, and it has no other test
//! binary: `cargo bolero test` builds every test binary of the package with
//! coverage instrumentation, and one that does not use bolero (an
//! integration test, or a library test without targets) lacks the libFuzzer
//! runtime and does not link (undefined `__sanitizer_cov_*`).
#[cfg(test)]
mod requests;
#[cfg(test)]
mod sku_commands;
