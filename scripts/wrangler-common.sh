# Sourced by dev.sh and with-wrangler.sh: start/stop `wrangler dev` in its own process group.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
DEV_KEYS="sk_dev_admin:admin,sk_dev_storefront:storefront,sk_dev_pos_store-1:pos@store-1,pk_dev:publishable"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# apply_d1_migrations STATE_DIR: wrangler dev does not apply migrations/ to
# its local D1; this does (only the ones not yet applied), asking nothing.
apply_d1_migrations() {
  ( cd "$ROOT" && CI=true "$ROOT/node_modules/.bin/wrangler" d1 migrations apply DB --local --persist-to "$1" )
}

# start_wrangler PORT STATE_DIR LOG [extra wrangler args...]; sets WRANGLER_PID (= its process group)
start_wrangler() {
  local port="$1" state="$2" log="$3"; shift 3
  mkdir -p "$ROOT/public" "$state"
  if [ ! -f "$ROOT/functions/build/index.js" ]; then
    echo "functions/build/index.js is missing: run \`make build\` first" >&2
    return 1
  fi
  apply_d1_migrations "$state" >>"$log" 2>&1 || { echo "D1 migrations failed; see $log" >&2; return 1; }
  local inspector
  inspector="$(free_port)"
  ( cd "$ROOT" && exec setsid "$ROOT/node_modules/.bin/wrangler" dev --local --ip 127.0.0.1 --port "$port" \
      --inspector-port "$inspector" \
      --persist-to "$state" --show-interactive-dev-session=false "$@" ) >"$log" 2>&1 </dev/null &
  WRANGLER_PID=$!
  local i
  for i in $(seq 1 600); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$WRANGLER_PID" 2>/dev/null; then
      echo "wrangler dev exited; its log:" >&2; tail -n 40 "$log" >&2; return 1
    fi
    sleep 0.2
  done
  echo "wrangler dev did not become ready in 120 s; its log:" >&2; tail -n 40 "$log" >&2
  return 1
}

stop_wrangler() {
  if [ -n "${WRANGLER_PID:-}" ]; then
    kill -TERM -- "-$WRANGLER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 -- "-$WRANGLER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$WRANGLER_PID" 2>/dev/null || true
    WRANGLER_PID=
  fi
}
