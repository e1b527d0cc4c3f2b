#!/usr/bin/env bash
# The widget's browser test and screenshot against a running Worker.
#
#   OMNISTOCK_API=http://127.0.0.1:PORT web-widget/browser-test.sh
#
# Seeds through the API (web-widget/seed.sh), compiles the wasm-bindgen test with
# the API and the seeded SKUs baked in, runs it in headless Chromium through
# chromedriver, then writes the screenshot (web-widget/screenshot.sh).
# Run from the repository root after `make widget-build`; `make widget-test` does
# exactly this.
set -euo pipefail

: "${OMNISTOCK_API:?set OMNISTOCK_API to the running Worker, e.g. http://127.0.0.1:8787}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"

# The one-tag embed from another site: the Worker serves the loader, the bindings,
# the inline-JS snippet and the wasm, all readable cross-origin (public/_headers).
api="${OMNISTOCK_API%/}"
snippet=$(cd public/widget && ls snippets/*/*.js | head -n 1)
for asset in omnistock-widget.js omnistock-widget-bindings.js "$snippet" omnistock-widget-bindings_bg.wasm; do
  headers=$(curl -sS -D - -o /dev/null -H 'Origin: https://shop.example' "$api/widget/$asset")
  if ! grep -qi '^HTTP/[0-9.]* 200' <<<"$headers" || ! grep -qi '^access-control-allow-origin: \*' <<<"$headers"; then
    echo "widget: $api/widget/$asset is not served readable cross-origin:" >&2
    echo "$headers" >&2
    exit 1
  fi
done
grep -qi '^content-type: application/wasm' <<<"$headers" \
  || { echo "widget: the wasm is not served as application/wasm" >&2; exit 1; }

eval "$(web-widget/seed.sh)"
echo "widget: seeded $OMNISTOCK_WIDGET_SKU and $OMNISTOCK_WIDGET_SKU_B at $OMNISTOCK_API"

# The live tests watch a SKU that this driver sells one unit per second meanwhile.
LIVE_DRIVER_COUNT=240 web-widget/live-driver.sh &
driver=$!
trap 'kill "$driver" 2>/dev/null || true' EXIT

# webdriver.json (Chromium binary and offline flags) is read from the current directory.
(cd web-widget && cargo test -p omnistock-widget --target wasm32-unknown-unknown --test browser)
kill "$driver" 2>/dev/null || true

web-widget/screenshot.sh "${WIDGET_SCREENSHOT:-target/widget-screenshot.png}"
