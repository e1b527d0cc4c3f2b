# The browser widget (omnistock-widget): build, browser test, screenshot.
# Included by the root Makefile (`include web-widget/widget.mk`); every path is
# relative to the repository root, where make runs.
#
#   make widget-build   release wasm -> public/widget/ (served by the Worker at /widget/)
#   make widget-size    the wasm and JS a page downloads, gzipped, against the budget
#   make bench-live     live push latency (POS sale -> widget DOM) and the push's cost
#                       on the sale path (docs/benchmarks.md); starts its own wrangler dev
#   make widget-unit    the pure logic's native tests
#   make widget-clippy  clippy on the wasm32 build too (the DOM code is wasm32-only,
#                       so a native `cargo clippy --workspace` never sees it)
#   make widget-test    needs OMNISTOCK_API (a running Worker with the dev keys of
#                       API.md): seeds its own locations and a fresh product through
#                       the API, runs the wasm-bindgen browser tests in headless
#                       Chromium, then writes target/widget-screenshot.png
#   make widget-e2e     everything the widget has: widget-unit, widget-clippy, then
#                       widget-test inside scripts/with-wrangler.sh (starts and stops
#                       wrangler dev on a free port with a temporary state; needs the
#                       Worker built first)
#
# Tools are installed when missing: wasm-bindgen-cli (pinned to the crate) with
# cargo, Chromium and chromedriver with apt-get when running as root.

WIDGET_WASM_BINDGEN_VERSION := 0.2.130
WIDGET_CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
WIDGET_ENV := env PATH="$(WIDGET_CARGO_BIN):$$PATH"
WIDGET_TARGET := wasm32-unknown-unknown
WIDGET_WASM := target/$(WIDGET_TARGET)/release/omnistock_widget.wasm
WIDGET_OUT := public/widget
WIDGET_SCREENSHOT ?= target/widget-screenshot.png
WIDGET_CHROMEDRIVER ?= $(shell command -v chromedriver 2>/dev/null || echo /usr/bin/chromedriver)
# binaryen's wasm-opt from package.json, when `npm ci` has run; the build works without it.
WIDGET_WASM_OPT ?= $(or $(WASM_OPT_BIN),node_modules/.bin/wasm-opt)
WIDGET_WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue

.PHONY: widget-tools widget-browser-tools widget-build widget-unit widget-test widget-e2e \
  widget-screenshot widget-need-api widget-clippy widget-clean widget-size

# wasm-bindgen and wasm-bindgen-test-runner, equal to the wasm-bindgen crate
# (no --locked: TOOLCHAIN.md).
widget-tools:
	@if [ "$$($(WIDGET_ENV) wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $(WIDGET_WASM_BINDGEN_VERSION)" ] \
	  && [ -x "$(WIDGET_CARGO_BIN)/wasm-bindgen-test-runner" ]; then :; else \
	  echo "widget: installing wasm-bindgen-cli $(WIDGET_WASM_BINDGEN_VERSION)"; \
	  cargo install wasm-bindgen-cli --version $(WIDGET_WASM_BINDGEN_VERSION) --force; fi
	@rustup target list --installed 2>/dev/null | grep -x $(WIDGET_TARGET) >/dev/null || rustup target add $(WIDGET_TARGET)

# Chromium and chromedriver for the browser tests and the screenshot.
widget-browser-tools:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "widget: installing chromium and chromium-driver with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
	  echo "widget-test needs Chromium and chromedriver: run 'sudo apt-get install chromium chromium-driver'" >&2; \
	  exit 1; \
	fi

widget-build: widget-tools
	cargo build -p omnistock-widget --target $(WIDGET_TARGET) --release
	rm -rf $(WIDGET_OUT)/snippets
	$(WIDGET_ENV) wasm-bindgen --target web --out-dir $(WIDGET_OUT) \
	  --out-name omnistock-widget-bindings $(WIDGET_WASM)
	@if [ -x $(WIDGET_WASM_OPT) ]; then \
	  $(WIDGET_WASM_OPT) $(WIDGET_WASM_OPT_FLAGS) $(WIDGET_OUT)/omnistock-widget-bindings_bg.wasm \
	    -o $(WIDGET_OUT)/omnistock-widget-bindings_bg.wasm; \
	else echo "widget: $(WIDGET_WASM_OPT) not found (npm ci), wasm left unoptimised"; fi
	cp web-widget/js/omnistock-widget.js $(WIDGET_OUT)/omnistock-widget.js
	@web-widget/size.sh $(WIDGET_OUT)

widget-size:
	web-widget/size.sh $(WIDGET_OUT)

widget-unit:
	cargo test -p omnistock-widget

widget-clippy:
	cargo clippy -p omnistock-widget --target $(WIDGET_TARGET) --all-targets -- -D warnings

# Seeds through the API, runs the browser test, writes the screenshot
# (web-widget/browser-test.sh). OMNISTOCK_API is baked into the test at compile time.
widget-test: widget-need-api widget-build widget-browser-tools
	$(WIDGET_ENV) CHROMEDRIVER=$(WIDGET_CHROMEDRIVER) WIDGET_SCREENSHOT=$(WIDGET_SCREENSHOT) \
	  web-widget/browser-test.sh

widget-need-api:
	@if [ -z "$${OMNISTOCK_API:-}" ]; then \
	  echo "widget-test needs OMNISTOCK_API (a running Worker): use 'make widget-e2e'" >&2; exit 1; fi

# Only the screenshot (seeds its own SKU); needs OMNISTOCK_API and widget-build.
widget-screenshot: widget-need-api widget-browser-tools
	web-widget/screenshot.sh $(WIDGET_SCREENSHOT)

widget-e2e: widget-unit widget-clippy widget-build widget-browser-tools
	scripts/with-wrangler.sh $(MAKE) --no-print-directory widget-test

widget-clean:
	rm -rf $(WIDGET_OUT)/snippets $(WIDGET_OUT)/*.js $(WIDGET_OUT)/*.wasm $(WIDGET_OUT)/*.d.ts
