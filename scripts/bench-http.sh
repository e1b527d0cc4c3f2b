#!/usr/bin/env bash
# `make bench-http`: the HTTP path's throughput and latency (issue 7), against
# PostgreSQL doing the same hold, with an accounting check afterwards.
#
# 1. Builds the Worker (`make build`, a no-op when functions/build is up to
#    date; BENCH_SKIP_BUILD=1 skips it) and reports the .wasm size, raw and gzipped.
# 2. PostgreSQL baseline: initdb's a throw-away cluster in a temporary directory,
#    starts it on a free 127.0.0.1 port (fsync and synchronous_commit on), and
#    runs pgbench with scripts/bench/pg-hold.sql (idempotency key insert +
#    guarded `UPDATE stock SET reserved = reserved + 1`, one transaction) at
#    each concurrency; checks that reserved rose by the committed transactions.
# 3. Starts `wrangler dev --log-level warn` on a free 127.0.0.1 port with a
#    temporary state directory, seeds through the API (location store-1, SKUs
#    HOT, HOT-SALE, CART-1..5 with 10,000,000 units each), and drives it with
#    wrk (scripts/bench/http.lua) at each concurrency: GET /v1/health,
#    GET /v1/availability (pk_dev), a one-line hold, a one-line POS sale, a
#    5-SKU cart; the edge cache's points (issue 13): avail100 (wrk: one read
#    of 100 SKUs, warm: read for 1 s just before the point), avail100_cold
#    (scripts/bench/edge.mjs: concurrent reads of 100 SKUs never read before,
#    4 rounds) and staleness (edge.mjs: one writer while the readers read,
#    reporting the largest now - as_of and write-to-read delay). After each write point it reads the stock (admin key,
#    channel=pos, consistency=strong) and fails unless the units reserved or
#    sold equal the 2xx answers wrk counted, give or take the requests still in
#    flight when the load stopped (at most the connection count, plus one per
#    connection wrk saw break: its read and write errors); at the end it
#    pages each SKU's ledger and checks the same totals there.
# 4. Prints a markdown table: req/s, p50, p99, and req/s as a ratio to the empty
#    route and to PostgreSQL's tps at the same concurrency.
# Everything started here is stopped on exit, error or Ctrl-C (trap).
#
# Environment: BENCH_SECONDS (10) per point, BENCH_CONNECTIONS ("1 32"),
# BENCH_WARMUP seconds per route before the first point (2; 0 for none),
# BENCH_SETTLE seconds of rest after a point that made or woke hundreds of
# objects (15; 0 for none),
# PG_BIN (/usr/lib/postgresql/15/bin), BENCH_KEEP=1 keeps the temporary directory,
# BENCH_VARS more wrangler vars ("NAME:value ...", e.g. "MAX_IN_FLIGHT:16"),
# BENCH_HONOR_RETRY_AFTER=1: after a 503 or 429 with Retry-After, wrk waits
# that long before its next request (clients that follow API.md; by default
# wrk sends again at once, like a client that ignores Retry-After).
set -euo pipefail
source "$(dirname "$0")/wrangler-common.sh"
BENCH="$ROOT/scripts/bench"
SECS="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-1 32}"
# PostgreSQL serves every pgbench client (128 and 512 connections too).
PG_MAX_CONN=100
for c in $CONNS; do [ "$c" -ge "$PG_MAX_CONN" ] && PG_MAX_CONN=$((c + 10)); done
WARMUP="${BENCH_WARMUP:-2}"
SETTLE="${BENCH_SETTLE:-15}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
UNITS=10000000 # per SKU, received as 10 receipts of 1,000,000 (the per-line limit)
HOLD_SKU=HOT
ISSUED_SKU=HOT-ID
SALE_SKU=HOT-SALE
CART_SKUS="CART-1 CART-2 CART-3 CART-4 CART-5"
ORDER_SKU=ORDER
ALL_SKUS="$HOLD_SKU $ISSUED_SKU $SALE_SKU $CART_SKUS $ORDER_SKU"

say() { printf '%s\n' "$*"; }
die() { printf '\nbench-http: FAIL: %s\n' "$*" >&2; exit 1; }
is_count() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
is_count "$SECS" 1 600 || die "BENCH_SECONDS must be 1..600, not '$SECS'"
is_count "$WARMUP" 0 60 || die "BENCH_WARMUP must be 0..60, not '$WARMUP'"
is_count "$SETTLE" 0 120 || die "BENCH_SETTLE must be 0..120, not '$SETTLE'"
for c in $CONNS; do is_count "$c" 1 1000 || die "BENCH_CONNECTIONS must be numbers 1..1000, not '$CONNS'"; done
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk; \`make bench-http\` installs it when root)"
command -v node >/dev/null || die "node is missing"
[ -x "$PG_BIN/pgbench" ] || die "no PostgreSQL in $PG_BIN (apt-get install postgresql; or set PG_BIN)"
if [ "$(id -u)" = 0 ]; then
  # initdb and postgres refuse to run as root: run the server as the postgres user.
  getent passwd postgres >/dev/null || die "running as root, but there is no postgres user to run the server"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

TMP="$(mktemp -d -t omnistock-bench.XXXXXX)"
chmod 755 "$TMP"
PG_DATA=
cleanup() {
  local rc=$?
  stop_wrangler
  if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$TMP/wrangler.log" ]; then
    echo "bench-http: wrangler dev log tail:" >&2; tail -n 20 "$TMP/wrangler.log" >&2
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-http: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build, machine
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  make -C "$ROOT" --no-print-directory build >&2
fi
WASM="$(find "$ROOT/functions/build" -name '*.wasm' -type f 2>/dev/null | head -n 1)"
[ -n "$WASM" ] && [ -f "$ROOT/functions/build/index.js" ] || die "functions/build has no Worker: run \`make build\`"
wasm_raw=$(wc -c <"$WASM")
wasm_gz=$(gzip -9 -c "$WASM" | wc -c)
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- functions core Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes in functions/ or core/)"
fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
wrangler_v="$(node -p 'require(process.argv[1]).version' "$ROOT/node_modules/wrangler/package.json" 2>/dev/null || echo '?')"
pg_v="$("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
fs="$(stat -f -c %T "$TMP")"

say "## make bench-http"
say ""
say "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $commit"
say "- machine: $(nproc) cores, ${cpu:-unknown CPU}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "- wrangler $wrangler_v (wrangler dev --local --log-level warn), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), PostgreSQL $pg_v (fsync on, synchronous_commit on)"
say "- $SECS s per point, connections: $CONNS (wrk -t2, -t1 for one connection; pgbench -j 2, -j 1 for one client); temporary directory on $fs"
say "- Worker: $(basename "$WASM") $wasm_raw bytes ($((wasm_raw / 1024)) KiB), gzip -9 $wasm_gz bytes ($((wasm_gz / 1024)) KiB)"
say ""

declare -A RPS P50 P99 OK BAD NOTE CPU
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# ------------------------------------------------------------------ PostgreSQL
PGPORT="$(free_port)"
PG_DATA="$TMP/pg/data"
mkdir -p "$TMP/pg/sock" "$TMP/pg/log"
[ "$(id -u)" = 0 ] && chown -R postgres "$TMP/pg"
say "PostgreSQL: initdb and start on 127.0.0.1:$PGPORT..." >&2
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U bench -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 ||
  { cat "$TMP/initdb.log" >&2; PG_DATA=; die "initdb failed"; }
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$TMP/pg/log/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -k $TMP/pg/sock -c fsync=on -c synchronous_commit=on -c max_connections=$PG_MAX_CONN" \
  start >/dev/null || { tail -n 20 "$TMP/pg/log/server.log" >&2; die "PostgreSQL did not start"; }
psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U bench -d postgres "$@"; }
psql_ -f "$BENCH/pg.sql" >/dev/null
[ "$(psql_ -Atc 'SHOW fsync') $(psql_ -Atc 'SHOW synchronous_commit')" = "on on" ] || die "PostgreSQL is not running with fsync and synchronous_commit on"
pg_reserved() { psql_ -Atc "SELECT reserved, (SELECT count(*) FROM idempotency_keys) FROM stock WHERE sku = 'HOT' AND location = 'store-1'"; }

pg_point() { # CONNECTIONS
  local c="$1" j=2 out before after n tps d keys lat count
  [ "$c" -lt 2 ] && j=1
  before="$(pg_reserved)"
  out="$TMP/pgbench-c$c.out"
  (cd "$TMP/pg/log" && "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U bench -n -M prepared \
    -c "$c" -j "$j" -T "$SECS" -f "$BENCH/pg-hold.sql" -l --log-prefix="$TMP/pg/log/c$c" postgres) >"$out" 2>&1 ||
    { cat "$out" >&2; die "pgbench -c $c failed"; }
  after="$(pg_reserved)"
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")"
  n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")"
  [ -n "$tps" ] && [ -n "$n" ] || { cat "$out" >&2; die "cannot read pgbench's output"; }
  d=$((${after%|*} - ${before%|*}))
  keys=$((${after#*|} - ${before#*|}))
  [ "$d" -eq "$keys" ] || die "PostgreSQL c=$c: reserved rose by $d but $keys idempotency keys were added"
  [ "$d" -ge "$n" ] && [ "$d" -le $((n + c)) ] ||
    die "PostgreSQL c=$c: reserved rose by $d, pgbench counted $n transactions (allowed: $n..$((n + c)))"
  lat="$TMP/pg/lat-c$c"
  cat "$TMP/pg/log/c$c".* | awk '{ print $3 }' | sort -n >"$lat"
  count=$(wc -l <"$lat")
  [ "$count" -gt 0 ] || die "pgbench -c $c wrote no transaction log"
  RPS[pg,$c]="$(awk -v t="$tps" 'BEGIN { printf "%.1f", t }')"
  P50[pg,$c]="$(awk -v k=$(((count + 1) / 2)) 'NR == k { printf "%.3f", $1 / 1000; exit }' "$lat")"
  P99[pg,$c]="$(awk -v k=$(((count * 99 + 99) / 100)) 'NR == k { printf "%.3f", $1 / 1000; exit }' "$lat")"
  OK[pg,$c]="$n"
  BAD[pg,$c]=0
  say "  pgbench -c $c: $tps tps, $n transactions, reserved +$d (p50 ${P50[pg,$c]} ms, p99 ${P99[pg,$c]} ms)" >&2
}
for c in $CONNS; do pg_point "$c"; done
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null
PG_DATA=

# ------------------------------------------------------------------ wrangler dev
PORT="$(free_port)"
API="http://127.0.0.1:$PORT"
say "wrangler dev: starting on 127.0.0.1:$PORT..." >&2
# The per-key rate limit (issue 12) is off: this measures the path, not the limiter.
# BENCH_VARS: more "NAME:value" vars, space-separated (say "MAX_IN_FLIGHT:16").
extra_vars=()
for v in ${BENCH_VARS:-}; do extra_vars+=(--var "$v"); done
start_wrangler "$PORT" "$TMP/state" "$TMP/wrangler.log" --log-level warn --var "API_KEYS:$DEV_KEYS" \
  --var "RATE_LIMIT_PER_KEY:0" "${extra_vars[@]}"

n_req=0
api() { # METHOD PATH BODY: an admin write that must succeed
  local code try
  n_req=$((n_req + 1))
  # A 503 (workerd restarted mid-request) is retried with the same key: idempotent.
  for try in 1 2 3 4 5; do
    code=$(curl -sS -o "$TMP/seed.out" -w '%{http_code}' --max-time 60 -X "$1" "$API$2" \
      -H 'Authorization: Bearer sk_dev_admin' -H 'Content-Type: application/json' \
      -H "Idempotency-Key: bench-seed-$n_req" --data "$3") || code=000
    [ "$code" = 503 ] || break
    say "  seeding: $1 $2 answered 503 ($(head -c 100 "$TMP/seed.out")); again" >&2
    sleep 1
  done
  case "$code" in 2*) ;; *) die "seeding: $1 $2 answered HTTP $code: $(head -c 300 "$TMP/seed.out")" ;; esac
}
say "seeding: store-1, product bench ($ALL_SKUS), $UNITS units each..." >&2
api PUT /v1/locations/store-1 '{"name":"Bench store","kind":"store","lat":52.52,"lon":13.405,"ships_online":true,"pickup":true}'
variants=""
for s in $ALL_SKUS; do
  variants="$variants${variants:+,}{\"sku\":\"$s\",\"options\":{\"variant\":\"$s\"},\"price\":{\"amount\":\"19.90\",\"currency\":\"EUR\"}}"
done
api PUT /v1/products/bench "{\"title\":\"Bench product\",\"variants\":[$variants]}"
lines=""
for s in $ALL_SKUS; do lines="$lines${lines:+,}{\"sku\":\"$s\",\"qty\":1000000}"; done
for i in $(seq 1 $((UNITS / 1000000))); do
  api POST /v1/inventory/receipts "{\"location\":\"store-1\",\"reference\":\"bench-$i\",\"lines\":[$lines]}"
done

state() { node "$BENCH/state.mjs" "$API" avail "$@"; }
# The stock once it stops moving (requests still in flight when wrk stopped
# finish first): two reads 0.5 s apart that agree, at most 20 tries.
settled() {
  local prev cur i
  prev="$(state "$@")" || die "cannot read availability"
  for i in $(seq 1 20); do
    sleep 0.5
    cur="$(state "$@")" || die "cannot read availability"
    [ "$cur" = "$prev" ] && break
    prev="$cur"
  done
  printf '%s\n' "$cur"
}
col() { awk -v s="$1" -v c="$2" '$1 == s { print $c }'; } # SKU COLUMN (2 on_hand, 3 reserved, 4 available)

start_state="$(settled $ALL_SKUS)"
for s in $ALL_SKUS; do
  [ "$(col "$s" 2 <<<"$start_state") $(col "$s" 3 <<<"$start_state")" = "$UNITS 0" ] ||
    die "after seeding, $s is not $UNITS on hand and 0 reserved: $(grep "^$s " <<<"$start_state")"
done

# The write points come before the edge points: a cold point wakes hundreds of
# SKU objects (and the warm one starts listeners) whose winding down took CPU
# from the writes measured right after them (a server-issued hold measured
# 0.26x the empty route there, 0.30-0.33x on its own, the same day).
MODES="${BENCH_MODES:-health availability strong hold hold_issued sale cart avail100 avail100_cold staleness}"
# The edge cache's SKUs (issue 13): EDGE-001..100, and per avail100_cold point
# COLD_ROUNDS sets of 100 never read before (COLD-<set>-001..100), 1,000 units each.
COLD_ROUNDS=4
has_mode() { [[ " $MODES " == *" $1 "* ]]; }
if has_mode avail100 || has_mode avail100_cold || has_mode staleness; then
  n_sets=0
  has_mode avail100_cold && n_sets=$((COLD_ROUNDS * $(wc -w <<<"$CONNS")))
  say "seeding: 100 edge SKUs and $n_sets cold sets of 100..." >&2
  edge_seed() { # PRODUCT PREFIX
    local v="" l="" i
    for i in $(seq -f %03g 1 100); do
      v="$v${v:+,}{\"sku\":\"$2-$i\",\"options\":{\"variant\":\"$i\"},\"price\":{\"amount\":\"1.00\",\"currency\":\"EUR\"}}"
      l="$l${l:+,}{\"sku\":\"$2-$i\",\"qty\":1000}"
    done
    api PUT "/v1/products/$1" "{\"title\":\"Edge $1\",\"variants\":[$v]}"
    api POST /v1/inventory/receipts "{\"location\":\"store-1\",\"lines\":[$l]}"
  }
  edge_seed edge EDGE
  for i in $(seq 1 "$n_sets"); do edge_seed "cold-$i" "COLD-$i"; done
fi
cold_set=1
# edge_point MODE CONNECTIONS: the edge cache's node-driven points.
edge_point() {
  local mode="$1" c="$2" out line
  out="$TMP/edge-$mode-c$c.out"
  if [ "$mode" = avail100_cold ]; then
    node "$BENCH/edge.mjs" "$API" cold "$COLD_ROUNDS" "$c" "$cold_set" >"$out" 2>&1 || { cat "$out" >&2; die "edge.mjs cold (c=$c) failed"; }
    cold_set=$((cold_set + COLD_ROUNDS))
  else
    node "$BENCH/edge.mjs" "$API" stale "$SECS" "$c" >"$out" 2>&1 || { cat "$out" >&2; die "edge.mjs stale (c=$c) failed"; }
  fi
  line="$(grep '^EDGE ' "$out" | tail -n 1)"
  [ -n "$line" ] || { cat "$out" >&2; die "edge.mjs ($mode, c=$c) printed no EDGE line"; }
  f() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  if [ "$mode" = avail100_cold ]; then
    RPS[$mode,$c]="-"; P50[$mode,$c]="$(f p50_ms)"; P99[$mode,$c]="$(f p99_ms)"
    OK[$mode,$c]="$(f ok)"; BAD[$mode,$c]="$(f bad)"
    NOTE[$mode,$c]="$(f samples) reads in $COLD_ROUNDS rounds of $c concurrent, max $(f max_ms) ms; SKU object calls per round: $(f calls_per_round) (100 = every miss coalesced)"
  else
    RPS[$mode,$c]="$(awk -v r="$(f reads)" -v s="$SECS" 'BEGIN { printf "%.1f", r / s }')"; P50[$mode,$c]="-"; P99[$mode,$c]="-"
    OK[$mode,$c]="$(f reads)"; BAD[$mode,$c]="$(f bad)"
    NOTE[$mode,$c]="$(f writes) writes while reading: largest now - as_of $(f max_age_ms) ms at the read's sending (p99 $(f p99_age_ms)), $(f max_age_arrived_ms) ms at its arrival; largest delay from a write's answer to the first read showing it $(f max_seen_ms) ms (p99 $(f p99_seen_ms)); writes never shown: $(f unseen)"
  fi
  say "  $mode c=$c: $line" >&2
}

declare -A TOTAL_OK SLACK
for m in hold hold_issued sale cart order; do TOTAL_OK[$m]=0; SLACK[$m]=0; done
point=0
# wrk_point MODE CONNECTIONS SECONDS [warmup]
# CPU time (user + system, clock ticks) of every process in wrangler dev's
# process group (wrangler and both workerd processes): what the server spent,
# whatever else the machine was running.
group_cpu_ticks() {
  local total=0 f rest
  for f in /proc/[0-9]*/stat; do
    rest="$(cat "$f" 2>/dev/null)" || continue
    rest="${rest##*) }"
    # After the command: state ppid pgrp ... utime (12th) stime (13th).
    set -- $rest
    [ "${3:-}" = "$WRANGLER_PID" ] || continue
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"

wrk_point() {
  local mode="$1" c="$2" secs="$3" warm="${4:-}" t=2 out line ok bad skus before after s d d0 on0 r0 cpu0 cpu1
  [ "$c" -lt 2 ] && t=1
  point=$((point + 1))
  case "$mode" in hold) skus="$HOLD_SKU" ;; hold_issued) skus="$ISSUED_SKU" ;; sale) skus="$SALE_SKU" ;; cart) skus="$CART_SKUS" ;; order) skus="$ORDER_SKU" ;; *) skus= ;; esac
  [ -n "$skus" ] && before="$(settled $skus)"
  out="$TMP/wrk-$point-$mode-c$c.out"
  cpu0="$(group_cpu_ticks)"
  wrk -t"$t" -c"$c" -d"${secs}s" --timeout 10s -s "$BENCH/http.lua" "$API" -- \
    "$mode" "b$$-p$point" $(((c + t - 1) / t)) >"$out" 2>&1 || { cat "$out" >&2; die "wrk ($mode, c=$c) failed"; }
  cpu1="$(group_cpu_ticks)"
  line="$(grep '^BENCH ' "$out" | tail -n 1)"
  [ -n "$line" ] || { cat "$out" >&2; die "wrk ($mode, c=$c) printed no BENCH line"; }
  f() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  ok="$(f ok)"; bad="$(f bad)"
  local cpu_ms
  cpu_ms="$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n=$((ok + bad)) 'BEGIN { if (n > 0) printf "%.2f", t * 1000 / hz / n; else printf "-" }')"
  local errs="connect $(f connect), read $(f read), write $(f write), timeout $(f timeout)"
  local note=""
  [ "$bad" -gt 0 ] && note="non-2xx: $(f statuses)"
  [ "$(f connect)$(f read)$(f write)$(f timeout)" = "0000" ] || note="${note:+$note; }socket errors: $errs"
  say "  ${warm:+(warm-up) }$mode c=$c: $(f rps) req/s, p50 $(f p50_ms) ms, p99 $(f p99_ms) ms, server CPU $cpu_ms ms/req, 2xx $ok, non-2xx $bad${note:+ ($note)}" >&2
  grep '^BENCH_FIRST_BAD ' "$out" | sed 's/^BENCH_FIRST_BAD /    first non-2xx: /' >&2 || true
  if [ -n "$skus" ]; then
    after="$(settled $skus)"
    # Every SKU of the route moved by the same count d, and d is the 2xx count
    # plus at most one request per connection still in flight at the end.
    d0=
    for s in $skus; do
      on0=$(($(col "$s" 2 <<<"$before") - $(col "$s" 2 <<<"$after")))
      r0=$(($(col "$s" 3 <<<"$after") - $(col "$s" 3 <<<"$before")))
      if [ "$mode" = order ]; then
        # Units held or committed: on_hand - available (channel pos).
        d=$(($(col "$s" 2 <<<"$after") - $(col "$s" 4 <<<"$after") - $(col "$s" 2 <<<"$before") + $(col "$s" 4 <<<"$before")))
        [ "$on0" -eq 0 ] || die "$mode c=$c: on_hand of $s moved by $((-on0)) during orders"
      elif [ "$mode" = sale ]; then d=$on0; [ "$r0" -eq 0 ] || die "$mode c=$c: reserved of $s moved by $r0 during sales"
      else d=$r0; [ "$on0" -eq 0 ] || die "$mode c=$c: on_hand of $s moved by $((-on0)) during holds"; fi
      [ "$(col "$s" 4 <<<"$after")" -ge 0 ] || die "$mode c=$c: $s oversold: $(grep "^$s " <<<"$after")"
      [ -z "$d0" ] || [ "$d" -eq "$d0" ] || die "$mode c=$c: the cart's SKUs moved by different counts ($d0 and $d): not all-or-nothing"
      d0=$d
    done
    # Unanswered requests may have been applied: one per connection in flight
    # at the end, and one per broken connection (wrk's read and write errors;
    # its timeouts are counted when the answer comes late, so they need none).
    local slack=$((c + $(f read) + $(f write)))
    # An order point's units are the orders created (its 2xx count both requests).
    local want="$ok"
    [ "$mode" = order ] && want="$(f units)"
    if [ "$d" -lt "$want" ] || [ "$d" -gt $((want + slack)) ]; then
      die "$mode c=$c: the stock moved by $d units, wrk counted $want 2xx answers (allowed: $want..$((want + slack))): lost or extra units"
    fi
    TOTAL_OK[$mode]=$((TOTAL_OK[$mode] + want))
    SLACK[$mode]=$((SLACK[$mode] + slack))
    say "    checked: stock moved by $d units for $want 2xx answers (+$((d - want)) in flight at the end)" >&2
  fi
  if [ -z "$warm" ]; then
    RPS[$mode,$c]="$(f rps)"; P50[$mode,$c]="$(f p50_ms)"; P99[$mode,$c]="$(f p99_ms)"
    OK[$mode,$c]="$ok"; BAD[$mode,$c]="$bad"; NOTE[$mode,$c]="$note"; CPU[$mode,$c]="$cpu_ms"
  fi
}

if [ "$WARMUP" -gt 0 ]; then
  for m in $MODES; do
    case "$m" in avail100_cold | staleness) ;; *) wrk_point "$m" 2 "$WARMUP" warm ;; esac
  done
fi
for c in $CONNS; do
  for m in $MODES; do
    case "$m" in
      avail100_cold | staleness) edge_point "$m" "$c" ;;
      # "Warm" means read within the last second: the points before this
      # one let the 100 SKUs' entries and listeners lapse, so read them
      # again for a second (not measured) before measuring.
      avail100) wrk_point "$m" 2 1 warm; wrk_point "$m" "$c" "$SECS" ;;
      *) wrk_point "$m" "$c" "$SECS" ;;
    esac
    # A point that made or woke hundreds of objects (a pointer object per
    # client-id hold, a coordinator per cart or order, 100 SKU objects per
    # cold round) is followed about 10 s later by workerd evicting them
    # together, a stall of 0.3 s per ~500 objects on its one thread: wait
    # that out, so it is not charged to the next point (it is not in this
    # point's figures either: docs/benchmarks.md).
    case "$m" in hold | cart | order | avail100_cold) [ "$SETTLE" -gt 0 ] && sleep "$SETTLE" ;; esac
  done
done

# ------------------------------------------------------------------ ledger
say "ledger: paging every SKU's ledger at store-1..." >&2
final="$(settled $ALL_SKUS)"
ledger_check() { # SKU MODE: the ledger's totals agree with the stock and with wrk's 2xx count
  local s="$1" m="$2" l f on res lo hi
  l="$(node "$BENCH/state.mjs" "$API" ledger "$s")" || die "cannot read the ledger of $s"
  f() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$l"; }
  on="$(col "$s" 2 <<<"$final")"; res="$(col "$s" 3 <<<"$final")"
  [ "$(f received)" -eq "$UNITS" ] || die "ledger of $s: received $(f received), expected $UNITS"
  [ "$(f other)" -eq 0 ] || die "ledger of $s: $(f other) entries that are neither received, held nor sold"
  if [ "$m" = sale ]; then
    [ "$(f sold)" -eq $((UNITS - on)) ] && [ "$(f held)" -eq 0 ] ||
      die "ledger of $s: sold $(f sold) (held $(f held)), but on_hand fell by $((UNITS - on))"
    [ "$(f sold_entries)" -eq "$(f sold)" ] || die "ledger of $s: $(f sold_entries) sales for $(f sold) units (each sells 1)"
    hi="$(f sold)"
  else
    [ "$(f held)" -eq "$res" ] && [ "$on" -eq "$UNITS" ] && [ "$(f sold)" -eq 0 ] ||
      die "ledger of $s: held $(f held), sold $(f sold), but reserved is $res and on_hand $on"
    [ "$(f held_entries)" -eq "$(f held)" ] || die "ledger of $s: $(f held_entries) holds for $(f held) units (each holds 1)"
    hi="$(f held)"
  fi
  lo="${TOTAL_OK[$m]}"
  [ "$hi" -ge "$lo" ] && [ "$hi" -le $((lo + SLACK[$m])) ] ||
    die "ledger of $s: $hi units moved, wrk counted $lo 2xx answers over the run (allowed: $lo..$((lo + SLACK[$m])))"
  say "  $s: $(f entries) entries; $hi units $([ "$m" = sale ] && echo sold || echo held) for $lo 2xx answers; on_hand $on, reserved $res" >&2
}
ledger_check "$HOLD_SKU" hold
ledger_check "$ISSUED_SKU" hold_issued
ledger_check "$SALE_SKU" sale
for s in $CART_SKUS; do ledger_check "$s" cart; done
warn_lines=$(grep -c . "$TMP/wrangler.log" || true)

# ------------------------------------------------------------------ table
label() {
  case "$1" in
    health) echo 'GET /v1/health (empty route)' ;;
    availability) echo 'GET /v1/availability, 1 SKU (pk_dev)' ;;
    strong) echo 'GET /v1/availability, 1 SKU, consistency=strong (one object call, no write)' ;;
    avail100) echo 'GET /v1/availability, 100 SKUs, warm cache (pk_dev)' ;;
    avail100_cold) echo 'GET /v1/availability, 100 SKUs, cold cache (pk_dev; edge.mjs)' ;;
    staleness) echo 'GET /v1/availability, 100 SKUs, while one writer adjusts (edge.mjs; reads/s)' ;;
    hold) echo 'POST /v1/reservations, 1 line' ;;
    hold_issued) echo 'POST /v1/reservations, 1 line, id issued by the server' ;;
    sale) echo 'POST /v1/pos/sales, 1 line' ;;
    cart) echo 'POST /v1/reservations, 5 SKUs' ;;
    order) echo 'POST /v1/orders, 1 line, then its transition to paid (each request counted)' ;;
    pg) echo 'PostgreSQL hold (pgbench, tps)' ;;
  esac
}
say "| conns | route | req/s | p50 ms | p99 ms | x empty route | x PostgreSQL | server CPU ms/req | 2xx | non-2xx |"
say "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CONNS; do
  for m in $MODES pg; do
    say "| $c | $(label "$m") | ${RPS[$m,$c]} | ${P50[$m,$c]} | ${P99[$m,$c]} | $(ratio "${RPS[$m,$c]}" "${RPS[health,$c]}") | $(ratio "${RPS[$m,$c]}" "${RPS[pg,$c]}") | ${CPU[$m,$c]:--} | ${OK[$m,$c]} | ${BAD[$m,$c]} |"
  done
done
say ""
for c in $CONNS; do for m in $MODES; do
  [ -z "${NOTE[$m,$c]}" ] || say "- $(label "$m") at $c connections: ${NOTE[$m,$c]}"
done; done
say "- PostgreSQL's 2xx column: committed transactions (pgbench cannot fail one here: the guard never refuses with $UNITS units)"
say "- checked: every hold, sale and cart line that answered 2xx is in the stock and the ledger, and nothing more than the requests in flight at the end (holds ${TOTAL_OK[hold]}, sales ${TOTAL_OK[sale]}, carts ${TOTAL_OK[cart]} x 5 SKUs, warm-ups included); nothing oversold"
if [ "${BENCH_HONOR_RETRY_AFTER:-}" = 1 ]; then
  say "- clients honored Retry-After (BENCH_HONOR_RETRY_AFTER=1): after a 503 or 429, the next request of that wrk thread waited as asked (not counted in p50/p99)"
else
  say "- clients ignored Retry-After: wrk sends again as soon as a 503 or 429 comes back"
fi
say "- wrangler dev log (--log-level warn): $warn_lines lines"
