# omnistock: `make dev` runs it, `make test` checks everything.
# Both install what is missing first (pinned versions, idempotent) and keep
# every build offline (the five variables of TOOLCHAIN.md are exported here).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PORT ?= 8787
STATE_DIR ?= .wrangler/state

WORKER_BUILD_VERSION := 0.8.7
WASM_BINDGEN_VERSION := 0.2.130

CARGO_HOME ?= $(HOME)/.cargo
CARGO_BIN := $(CARGO_HOME)/bin
export PATH := $(CARGO_BIN):$(PATH)
export WASM_BINDGEN_BIN := $(CARGO_BIN)/wasm-bindgen
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
export ESBUILD_BIN := $(CURDIR)/node_modules/.bin/esbuild
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false
# The e2e tests mostly wait on wrangler dev: more threads than cores is fine.
E2E_THREADS ?= 4

WORKER_OUT := functions/build/index.js
WORKER_SRC := $(shell find functions/src core/src -name '*.rs' 2>/dev/null) \
	functions/Cargo.toml functions/openapi.json core/Cargo.toml Cargo.toml Cargo.lock

.PHONY: help dev test build tools rust-tools node-tools browser-tools \
	check-fmt clippy check-bundle test-core test-core-wasm test-functions test-fuzz test-widget test-e2e widget bench sim \
	bench-tools bench-http bench-live schemathesis schemathesis-tools faults fuzz fuzz-random fuzz-tools

help:
	@echo "make dev    run omnistock locally (wrangler dev on 127.0.0.1:\$$PORT, default 8787)"
	@echo "make test   fmt, clippy, core tests (native and wasm), widget browser test, end-to-end tests"
	@echo "make bench  decide+apply throughput, natively and in wasm (docs/benchmarks.md)"
	@echo "make schemathesis  fuzz every operation against functions/openapi.json (SCHEMATHESIS_MAX_EXAMPLES=15)"
	@echo "make sim    many more simulation seeds (SIM_SEEDS=10000)"
	@echo "make faults mixed load with SIGKILLs of wrangler dev (FAULTS_SECONDS=600 FAULTS_KILLS=10)"
	@echo "make fuzz   coverage-guided (libFuzzer via cargo-bolero) fuzzing of core and the Worker's decoding, FUZZ_SECONDS=300 per target"
	@echo "make fuzz-random  the same targets with bolero's random engine (FUZZ_SECONDS=300 per target)"
	@echo "make bench-live  live availability: POS sale -> widget DOM latency, sale req/s with 0 and 100 subscribers"
	@echo "make bench-http  HTTP req/s, p50, p99 per route in wrangler dev, against PostgreSQL (BENCH_SECONDS=10)"

# ---------------------------------------------------------------- tools
tools: rust-tools node-tools

rust-tools:
	@command -v rustup >/dev/null || { echo "rustup is required (https://rustup.rs)"; exit 1; }
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$($(CARGO_BIN)/worker-build --version 2>/dev/null)" != "$(WORKER_BUILD_VERSION)" ]; then \
		echo "installing worker-build $(WORKER_BUILD_VERSION)"; \
		cargo install worker-build --version $(WORKER_BUILD_VERSION) --locked --force; fi
	@if [ "$$($(CARGO_BIN)/wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force; fi

node-tools: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ and npm are required"; exit 1; }
	npm ci --no-audit --no-fund
	@touch $@

browser-tools:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v sqlite3 >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium, chromium-driver and sqlite3 with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver sqlite3; \
	else \
		echo "The widget's browser test needs Chromium and chromedriver, the storage tests the sqlite3 CLI:"; \
		echo "  sudo apt-get install -y chromium chromium-driver sqlite3"; exit 1; fi

# ---------------------------------------------------------------- build
build: tools $(WORKER_OUT)

$(WORKER_OUT): $(WORKER_SRC)
	scripts/build-worker.sh --release
	@touch $@

# web-widget/widget.mk (the widget's own targets): widget-build writes
# public/widget/, widget-e2e runs its browser test against a fresh wrangler dev.
-include web-widget/widget.mk

widget:
	@if [ -f web-widget/widget.mk ]; then $(MAKE) --no-print-directory widget-build; \
	else echo "web-widget/widget.mk not there yet: no widget build"; fi

public:
	@mkdir -p public

# ---------------------------------------------------------------- dev
dev: build widget public
	PORT=$(PORT) STATE_DIR=$(STATE_DIR) scripts/dev.sh

# ---------------------------------------------------------------- test
test: tools
	$(MAKE) check-fmt
	$(MAKE) clippy
	$(MAKE) test-core
	$(MAKE) test-core-wasm
	$(MAKE) test-functions
	$(MAKE) test-fuzz
	$(MAKE) $(WORKER_OUT) public
	$(MAKE) check-bundle
	$(MAKE) test-widget
	$(MAKE) test-e2e
	$(MAKE) schemathesis

check-fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p omnistock-functions --target wasm32-unknown-unknown -- -D warnings

test-core:
	cargo test -p omnistock-core

test-core-wasm:
	cargo build -p omnistock-core --target wasm32-unknown-unknown
	# The same simulation seeds give the same state hashes in wasm (node) as natively.
	# (The wasm benchmark is not a test: `make bench` runs it, in the bench profile.)
	cargo test -p omnistock-core --target wasm32-unknown-unknown --test wasm

# Benchmarks are not tests: numbers and their analysis are in docs/benchmarks.md.
bench: rust-tools
	cargo bench -p omnistock-core --bench ops
	cargo test -p omnistock-core --profile bench --target wasm32-unknown-unknown --test wasm_bench -- --nocapture

# The HTTP path in wrangler dev against PostgreSQL, with an accounting check
# (scripts/bench-http.sh, docs/benchmarks.md). Not part of `make test`.
BENCH_SECONDS ?= 10
bench-http: bench-tools build
	BENCH_SECONDS=$(BENCH_SECONDS) BENCH_SKIP_BUILD=1 scripts/bench-http.sh

bench-tools:
	@if command -v wrk >/dev/null && [ -x /usr/lib/postgresql/15/bin/pgbench ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing wrk and postgresql with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postgresql; \
	else \
		echo "make bench-http needs wrk and PostgreSQL 15 (pgbench):"; \
		echo "  sudo apt-get install -y wrk postgresql"; exit 1; fi

# More simulation seeds than `make test` runs (SIM_SEEDS=n, default 10000).
SIM_SEEDS ?= 10000
sim:
	SIM_SEEDS=$(SIM_SEEDS) cargo test -p omnistock-core --release --test sim many_seeds
	SIM_SEEDS=$(SIM_SEEDS) cargo test -p omnistock-core --release --test transfer_sim many_seeds
	SIM_SEEDS=$(SIM_SEEDS) cargo test -p omnistock-core --release --test order_sim more_seeds
	SIM_SEEDS=$(SIM_SEEDS) cargo test -p omnistock-core --release --test return_sim many_seeds
	SIM_SEEDS=$(SIM_SEEDS) cargo test -p omnistock-core --release --test customer_sim many_seeds

test-functions:
	cargo test -p omnistock-functions --lib

# The bundle that would ship: `wrangler deploy --dry-run` (no network, no
# upload) validates wrangler.toml, the migrations and the built Worker.
check-bundle: node-tools $(WORKER_OUT)
	@rm -rf target/dry-run
	npx wrangler deploy --dry-run --outdir target/dry-run
	@ls -l target/dry-run | sed -n '2,$$p'

test-widget: browser-tools
	@if [ -f web-widget/widget.mk ]; then $(MAKE) --no-print-directory widget-e2e; \
	else echo "web-widget/widget.mk not there yet: no widget browser test"; fi

test-e2e: browser-tools $(WORKER_OUT) public
	RUST_TEST_THREADS=$(E2E_THREADS) cargo test -p omnistock-tests

# Live availability (docs/benchmarks.md): push latency to a widget in headless
# Chromium, and sale throughput with 0 and 100 live subscribers.
bench-live: build widget-build widget-browser-tools
	scripts/bench-live.sh

# ---------------------------------------------------------------- schemathesis
# The OpenAPI document is the contract, checked by a tool nobody here wrote
# (issue 12): schemathesis, pinned, in a virtualenv under target/, runs every
# operation with `--checks all` against a fresh seeded wrangler dev
# (scripts/schemathesis.sh). Bounded for `make test`: SCHEMATHESIS_MAX_EXAMPLES
# cases per operation, SCHEMATHESIS_MAX_TIME seconds in all. A longer run:
#   make schemathesis SCHEMATHESIS_MAX_EXAMPLES=500 SCHEMATHESIS_MAX_TIME=1800
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_VENV := target/venv
SCHEMATHESIS_MAX_EXAMPLES ?= 15
SCHEMATHESIS_MAX_TIME ?= 150
SCHEMATHESIS_SEED ?= 12

schemathesis-tools: $(SCHEMATHESIS_VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)

$(SCHEMATHESIS_VENV)/.schemathesis-$(SCHEMATHESIS_VERSION):
	@command -v python3 >/dev/null || { echo "python3 (3.9+) with venv is required"; exit 1; }
	python3 -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
	@touch $@

schemathesis: node-tools schemathesis-tools $(WORKER_OUT) public
	SCHEMATHESIS_BIN=$(SCHEMATHESIS_VENV)/bin/schemathesis \
	SCHEMATHESIS_MAX_EXAMPLES=$(SCHEMATHESIS_MAX_EXAMPLES) SCHEMATHESIS_MAX_TIME=$(SCHEMATHESIS_MAX_TIME) \
	SCHEMATHESIS_SEED=$(SCHEMATHESIS_SEED) scripts/schemathesis.sh

# ---------------------------------------------------------------- reliability (issue 12)
# Faults under load: a mixed load while wrangler dev is SIGKILLed and restarted
# on the same state (tests/tests/e2e/load_faults.rs; make test runs it with the
# defaults, 60 s and 3 kills). Figures in docs/reliability.md.
FAULTS_SECONDS ?= 600
FAULTS_KILLS ?= 10
FAULTS_THREADS ?= 4
faults: node-tools $(WORKER_OUT) public
	FAULTS_SECONDS=$(FAULTS_SECONDS) FAULTS_KILLS=$(FAULTS_KILLS) FAULTS_THREADS=$(FAULTS_THREADS) \
	cargo test -p omnistock-tests -- load_faults --nocapture

# Fuzzing (issue 12): the bolero targets of fuzz/ (package omnistock-fuzz).
# `make fuzz` runs every target coverage-guided with libFuzzer for
# FUZZ_SECONDS each (stable toolchain, no sanitizer: -Zsanitizer needs
# nightly). The instrumented build is in target/fuzz/build, each target's
# corpus in target/fuzz/corpus/<module>__<target>, and a crash is written to
# fuzz/src/__fuzz__/<module>__<target>/crashes/, which `cargo test -p
# omnistock-fuzz` replays (commit it with its fix, and a plain #[test]). Every target is run; a crash in one fails
# make fuzz at the end. `make fuzz-random`: the same targets with bolero's
# random engine for FUZZ_SECONDS each (release, no instrumentation).
# `make test-fuzz` (in make test): 3,000 random inputs per target.
CARGO_BOLERO_VERSION := 0.13.5
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= sku_commands::sku_command_sequences sku_commands::sku_command_json \
	requests::request_front_door requests::object_requests requests::api_keys_config \
	requests::rfc3339_times
FUZZ_DIR := target/fuzz

fuzz-tools:
	@if [ "$$($(CARGO_BIN)/cargo-bolero --version 2>/dev/null)" != "cargo-bolero $(CARGO_BOLERO_VERSION)" ]; then \
		echo "installing cargo-bolero $(CARGO_BOLERO_VERSION)"; \
		cargo install cargo-bolero --version $(CARGO_BOLERO_VERSION) --locked --force \
			--no-default-features --features libfuzzer; fi

test-fuzz:
	cargo test -p omnistock-fuzz

fuzz: fuzz-tools
	@failed=""; for t in $(FUZZ_TARGETS); do \
		echo "== $$t: libFuzzer for $(FUZZ_SECONDS) s"; \
		cargo bolero test -p omnistock-fuzz "$$t" --engine libfuzzer --sanitizer NONE \
			--target-dir $(FUZZ_DIR)/build --corpus-dir "$(FUZZ_DIR)/corpus/$${t//::/__}" \
			-T $(FUZZ_SECONDS)s || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: crashes in$$failed (fuzz/src/__fuzz__/<module>__<target>/crashes/)"; exit 1; fi

fuzz-random:
	BOLERO_RANDOM_ITERATIONS=18446744073709551615 BOLERO_RANDOM_TEST_TIME_MS=$$(( $(FUZZ_SECONDS) * 1000 )) \
	cargo test --release -p omnistock-fuzz -- --test-threads=1 --nocapture
