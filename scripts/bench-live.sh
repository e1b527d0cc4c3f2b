#!/usr/bin/env bash
# `make bench-live`: what live availability costs and how fast it is, locally.
#
# 1. Starts `wrangler dev --log-level warn` on a free 127.0.0.1 port with a
#    temporary state, seeds it (web-widget/seed.sh: the widget's locations and
#    a SKU with 100,000 units at Downtown).
# 2. Latency, POS sale posted -> widget DOM updated: headless Chromium runs
#    web-widget/tests/bench_live.rs (one <omnistock-availability> on that SKU,
#    live), while web-widget/live-driver.sh posts LIVE_SALES (90) POS sales, one
#    every 250 ms, logging each POST's start time. The page prints the time of
#    every change of the widget's text; sale n leaves 100,000 - n units, so
#    each DOM change is joined to the sale that caused it. Median, p90, p99, max.
# 3. The push's cost on the sale path: wrk (scripts/bench/http.lua, mode sale,
#    -t2 -c10, BENCH_SECONDS each) on one SKU with 0 live subscribers, then with
#    100 (scripts/bench/live-subscribers.mjs, node + ws, one SKU each: the SKU
#    object's own sockets, no relay), which must each get
#    one frame per sale.
# Everything started here is stopped on exit (trap).
set -euo pipefail
source "$(dirname "$0")/wrangler-common.sh"
cd "$ROOT"
SECS="${BENCH_SECONDS:-10}"
SALES="${LIVE_SALES:-90}"
SUBS="${LIVE_SUBSCRIBERS:-100}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
die() { printf '\nbench-live: FAIL: %s\n' "$*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"

TMP="$(mktemp -d)"
SUB_PID=; DRV_PID=
cleanup() {
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null || true
  [ -n "$DRV_PID" ] && kill "$DRV_PID" 2>/dev/null || true
  stop_wrangler
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
PORT="$(free_port)"
start_wrangler "$PORT" "$TMP/state" "$TMP/wrangler.log" --log-level warn --var "API_KEYS:$DEV_KEYS"
export OMNISTOCK_API="http://127.0.0.1:$PORT"
eval "$(web-widget/seed.sh)"

echo "## Live availability: \`make bench-live\` ($(date -u +%Y-%m-%d), $(nproc) cores, wrangler dev --local --log-level warn)"
echo

# ---- 2. latency
(cd web-widget && LIVE_BENCH_SALES=50 cargo test -q -p omnistock-widget \
  --target wasm32-unknown-unknown --test bench_live --no-run) >"$TMP/build.log" 2>&1 \
  || { cat "$TMP/build.log" >&2; die "the bench page did not build"; }
LIVE_DRIVER_EVERY_MS=250 LIVE_DRIVER_COUNT="$SALES" LIVE_DRIVER_DELAY_MS=4000 \
  LIVE_DRIVER_LOG="$TMP/driver.log" web-widget/live-driver.sh &
DRV_PID=$!
(cd web-widget && LIVE_BENCH_SALES=50 WASM_BINDGEN_TEST_TIMEOUT=240 cargo test -p omnistock-widget \
  --target wasm32-unknown-unknown --test bench_live -- --nocapture) >"$TMP/browser.log" 2>&1 \
  || { tail -n 40 "$TMP/browser.log" >&2; die "the bench page failed"; }
wait "$DRV_PID" || true
DRV_PID=
python3 - "$TMP/driver.log" "$TMP/browser.log" <<'PY'
import re, sys
posted = {}
answered = []
for line in open(sys.argv[1]):
    n, t0, t1, status = line.split()
    if status.startswith("2"):
        posted[int(n)] = int(t0)
        answered.append(int(t1) - int(t0))
lat = []
for m in re.finditer(r"LIVE_DOM (-?\d+) (\d+)", open(sys.argv[2]).read()):
    n = 100000 - int(m.group(1))
    if n in posted:
        lat.append(int(m.group(2)) - posted[n])
if len(lat) < 50:
    sys.exit(f"bench-live: only {len(lat)} DOM updates joined to sales (need 50)")
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
print(f"POS sale posted -> widget DOM updated, {len(lat)} sales one every 250 ms "
      f"(headless Chromium, one widget of one SKU: its socket is the SKU object's own):")
print()
print("| | median | p90 | p99 | max |")
print("|---|---|---|---|---|")
print(f"| sale POST -> widget text changed | {pct(lat,50)} ms | {pct(lat,90)} ms | {pct(lat,99)} ms | {max(lat)} ms |")
print(f"| sale POST -> its HTTP answer (curl) | {pct(answered,50)} ms | {pct(answered,90)} ms | {pct(answered,99)} ms | {max(answered)} ms |")
print()
print(f"Target p99 < 250 ms: {'met' if pct(lat,99) < 250 else 'MISSED'}.")
PY
echo

# ---- 3. the push's cost on the sale path
curl -fsS -o /dev/null -X PUT "$OMNISTOCK_API/v1/locations/store-1" -H 'Authorization: Bearer sk_dev_admin' \
  -H 'Content-Type: application/json' -H "Idempotency-Key: bl-loc-$$" \
  --data '{"name":"Bench store","kind":"store","lat":52.52,"lon":13.405,"ships_online":true,"pickup":true}'
curl -fsS -o /dev/null -X PUT "$OMNISTOCK_API/v1/products/bench-live" -H 'Authorization: Bearer sk_dev_admin' \
  -H 'Content-Type: application/json' -H "Idempotency-Key: bl-prod-$$" \
  --data '{"title":"Bench","variants":[{"sku":"HOT-SALE","options":{},"price":{"amount":"19.90","currency":"EUR"}},{"sku":"HOT-HUB","options":{"v":"hub"},"price":{"amount":"19.90","currency":"EUR"}}]}'
curl -fsS -o /dev/null -X POST "$OMNISTOCK_API/v1/inventory/receipts" -H 'Authorization: Bearer sk_dev_admin' \
  -H 'Content-Type: application/json' -H "Idempotency-Key: bl-rcv-$$" \
  --data '{"location":"store-1","lines":[{"sku":"HOT-SALE","qty":1000000}]}'
point() { # RUN -> "rps p50 p99 ok"
  wrk -t2 -c10 -d"${SECS}s" --timeout 10s -s scripts/bench/http.lua "$OMNISTOCK_API" -- sale "$1" 4 >"$TMP/wrk-$1.txt" 2>&1
  sed -n 's/^BENCH .*rps=\([0-9.]*\).*p50_ms=\([0-9.]*\).*p99_ms=\([0-9.]*\).*ok=\([0-9]*\).*/\1 \2 \3 \4/p' "$TMP/wrk-$1.txt"
}
point warm-$$ >/dev/null
read -r rps0 p50_0 p99_0 ok0 <<<"$(point zero-$$)"
node scripts/bench/live-subscribers.mjs "ws://127.0.0.1:$PORT" HOT-SALE "$SUBS" >"$TMP/subs.txt" 2>&1 &
SUB_PID=$!
for i in $(seq 1 300); do grep -q SUBS_READY "$TMP/subs.txt" && break; sleep 0.1; done
grep -q SUBS_READY "$TMP/subs.txt" || die "the $SUBS subscribers did not all connect: $(cat "$TMP/subs.txt")"
read -r rps1 p50_1 p99_1 ok1 <<<"$(point subs-$$)"
sleep 1
kill -TERM "$SUB_PID"; wait "$SUB_PID" 2>/dev/null || true; SUB_PID=
subs="$(grep '^SUBS ' "$TMP/subs.txt")"
min="$(sed -n 's/.*min=\([0-9]*\).*/\1/p' <<<"$subs")"
# The same with sockets that watch two SKUs each: held by the live hubs.
node scripts/bench/live-subscribers.mjs "ws://127.0.0.1:$PORT" HOT-SALE,HOT-HUB "$SUBS" >"$TMP/hubs.txt" 2>&1 &
SUB_PID=$!
for i in $(seq 1 300); do grep -q SUBS_READY "$TMP/hubs.txt" && break; sleep 0.1; done
grep -q SUBS_READY "$TMP/hubs.txt" || die "the $SUBS hub subscribers did not all connect: $(cat "$TMP/hubs.txt")"
read -r rps2 p50_2 p99_2 ok2 <<<"$(point hubs-$$)"
sleep 1
kill -TERM "$SUB_PID"; wait "$SUB_PID" 2>/dev/null || true; SUB_PID=
hubs="$(grep '^SUBS ' "$TMP/hubs.txt")"
min2="$(sed -n 's/.*min=\([0-9]*\).*/\1/p' <<<"$hubs")"
echo "The push's cost on the sale path: POST /v1/pos/sales on one SKU, wrk -t2 -c10, ${SECS} s per row:"
echo
echo "| live subscribers of the SKU | sales/s | p50 | p99 |"
echo "|---|---|---|---|"
echo "| 0 | $rps0 | $p50_0 ms | $p99_0 ms |"
echo "| $SUBS | $rps1 | $p50_1 ms | $p99_1 ms |"
echo "| $SUBS, each watching 2 SKUs (live hubs) | $rps2 | $p50_2 ms | $p99_2 ms |"
echo
echo "With $SUBS subscribers: $ok1 sales answered 2xx; every subscriber got at least $min change frames ($subs)."
[ "${min:-0}" -ge "$ok1" ] || die "a subscriber got fewer frames ($min) than sales answered ($ok1)"
echo "Through the hubs: $ok2 sales answered 2xx; every subscriber got at least $min2 change frames ($hubs)."
[ "${min2:-0}" -ge "$ok2" ] || die "a hub subscriber got fewer frames ($min2) than sales answered ($ok2)"
