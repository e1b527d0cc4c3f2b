#!/usr/bin/env bash
# Builds the Worker (functions/ -> functions/build/index.js) offline.
# Usage: scripts/build-worker.sh [--release|--dev]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$CARGO_BIN/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/.bin/esbuild}"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
mode="${1:---release}"
cd "$ROOT/functions"
worker-build "$mode"
if [ "$mode" = "--release" ]; then
  # worker-build keeps the wasm name section (function names for stack
  # traces): about 300 KB that every cold isolate would download and compile.
  # Errors are logged with their own messages, so drop it. Same feature set
  # as worker-build's wasm-opt run (nothing newer than workerd accepts).
  wasm="$ROOT/functions/build/index_bg.wasm"
  "$WASM_OPT_BIN" "$wasm" -o "$wasm.tmp" --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
  mv "$wasm.tmp" "$wasm"
fi
