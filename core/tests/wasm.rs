//! The simulation in wasm: the same seeds must give the same final state
//! hashes as natively. Run with
//! `cargo test -p omnistock-core --target wasm32-unknown-unknown --test wasm`
//! (runner: wasm-bindgen-test-runner, in node).
#![cfg(target_arch = "wasm32")]

mod simulation;

use simulation::{run_seed, GOLDEN, STEPS};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn fixed_seeds_give_the_native_hashes() {
    for (seed, hash) in GOLDEN {
        let got = run_seed(seed, STEPS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got, hash,
            "seed {seed}: wasm hash {got} differs from native"
        );
    }
}
