//! decide+apply operations per second, natively, on one core.
//! `cargo bench -p omnistock-core --bench ops`
//! (the wasm twin: `tests/wasm_bench.rs`; results in docs/benchmarks.md).
mod workload;

use std::time::Instant;

fn main() {
    let cmds = workload::commands(workload::OPS);
    let mut best = f64::MAX;
    let mut result = workload::Outcome::default();
    // BENCH_RUNS=1 for `valgrind --tool=callgrind` (instruction counts).
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for _ in 0..runs {
        let t = Instant::now();
        result = std::hint::black_box(workload::run(std::hint::black_box(&cmds)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let workload::Outcome {
        accepted,
        rejected,
        expired,
        hash,
    } = result;
    assert_eq!(
        hash,
        workload::NATIVE_HASH,
        "the workload's final state changed: update NATIVE_HASH"
    );
    println!(
        "native: {} ops in {:.1} ms (best of {runs}): {:.2} M ops/s ({accepted} accepted, {rejected} rejected, {expired} expired, state hash {hash})",
        workload::OPS,
        best * 1e3,
        workload::OPS as f64 / best / 1e6
    );
}
