//! The benchmark's wasm twin (not a timed test: it prints ops/s and asserts
//! only that wasm computed the same final state as native). Run optimised:
//! `cargo test -p omnistock-core --profile bench --target wasm32-unknown-unknown --test wasm_bench -- --nocapture`
#![cfg(target_arch = "wasm32")]

#[path = "../benches/workload.rs"]
mod workload;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance)]
    fn now() -> f64;
}

#[wasm_bindgen_test]
fn decide_apply_ops_per_second() {
    let cmds = workload::commands(workload::OPS);
    let mut best = f64::MAX;
    let mut result = workload::Outcome::default();
    for _ in 0..5 {
        let t = now();
        result = workload::run(&cmds);
        best = best.min(now() - t);
    }
    let workload::Outcome {
        accepted,
        rejected,
        expired,
        hash,
    } = result;
    console_log!(
        "wasm: {} ops in {:.1} ms (best of 5): {:.2} M ops/s ({accepted} accepted, {rejected} rejected, {expired} expired, state hash {hash})",
        workload::OPS,
        best,
        workload::OPS as f64 / best / 1e3
    );
    assert_eq!(
        hash,
        workload::NATIVE_HASH,
        "wasm computed another state than native"
    );
}
