#!/usr/bin/env bash
# Screenshot of public/widget/demo.html against a running Worker.
#
#   OMNISTOCK_API=http://127.0.0.1:PORT web-widget/screenshot.sh [OUT.png]
#
# Renders public/widget/demo.html in headless Chromium for the SKU and locations
# web-widget/seed.sh made (OMNISTOCK_WIDGET_SKU, OMNISTOCK_WIDGET_LOCATIONS; seeds
# them itself when they are not set).
# The page is served by the Worker itself (its static assets, /widget/...) when it
# serves the built widget, else by a local static server on a free port (then the
# widget's requests are cross-origin, as on a real shop page).
# Run from the repository root after `make widget-build`.
set -euo pipefail

: "${OMNISTOCK_API:?set OMNISTOCK_API to the running Worker, e.g. http://127.0.0.1:8787}"
out="${1:-target/widget-screenshot.png}"
api="${OMNISTOCK_API%/}"
chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
[ -n "$chromium" ] || { echo "screenshot.sh: chromium not found (apt-get install chromium)" >&2; exit 1; }
[ -f public/widget/omnistock-widget-bindings_bg.wasm ] || { echo "screenshot.sh: run make widget-build first" >&2; exit 1; }

server_pid=""
tmp=$(mktemp -d)
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${OMNISTOCK_WIDGET_SKU:-}" ]; then
  eval "$(web-widget/seed.sh)"
fi

if curl -sf -o /dev/null "$api/widget/omnistock-widget-bindings_bg.wasm" && curl -sf -o /dev/null "$api/widget/demo.html"; then
  page="$api/widget/demo.html"
else
  command -v python3 >/dev/null || { echo "screenshot.sh: the Worker does not serve /widget/ and python3 is missing" >&2; exit 1; }
  python3 -c '
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="public")
handler.func.log_message = lambda *a: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()' >"$tmp/port" &
  server_pid=$!
  for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  page="http://127.0.0.1:$(cat "$tmp/port")/widget/demo.html"
fi

url="$page?sku=$OMNISTOCK_WIDGET_SKU&locations=${OMNISTOCK_WIDGET_LOCATIONS:-}&api=$api&key=pk_dev"
mkdir -p "$(dirname "$out")"
rm -f "$out"
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$tmp/profile" \
  --window-size=800,520 --virtual-time-budget=8000 --screenshot="$out" "$url" \
  >"$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { echo "screenshot.sh: no screenshot written" >&2; cat "$tmp/chromium.log" >&2; exit 1; }
echo "widget screenshot: $out ($url)"
