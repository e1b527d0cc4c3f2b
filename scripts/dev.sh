#!/usr/bin/env bash
# `make dev`: runs the Worker in wrangler dev on 127.0.0.1:$PORT with state in
# $STATE_DIR, seeds the demo catalog when the state is empty, prints URLs and keys.
set -euo pipefail
source "$(dirname "$0")/wrangler-common.sh"
PORT="${PORT:-8787}"
STATE_DIR="${STATE_DIR:-.wrangler/state}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$ROOT/$STATE_DIR" ;; esac
if [ ! -f "$ROOT/.dev.vars" ]; then
  printf 'API_KEYS="%s"\n' "$DEV_KEYS" >"$ROOT/.dev.vars"
  echo "wrote .dev.vars with the dev keys"
fi
LOG="$(mktemp -t omnistock-dev.XXXXXX.log)"
trap 'stop_wrangler' EXIT
trap 'exit 130' INT TERM
echo "starting wrangler dev on 127.0.0.1:$PORT (state: $STATE_DIR)..."
start_wrangler "$PORT" "$STATE_DIR" "$LOG" --var "DEMO_PAGE_KEYS:$DEV_KEYS"
"$ROOT/scripts/seed.sh" "http://127.0.0.1:$PORT"
cat <<MSG

omnistock is running.
  API        http://127.0.0.1:$PORT/v1/health
  OpenAPI    http://127.0.0.1:$PORT/v1/openapi.json
  Widget     http://127.0.0.1:$PORT/widget/omnistock-widget.js
  Shop        http://127.0.0.1:$PORT/        storefront: live availability, cart (a reservation), checkout
  Till        http://127.0.0.1:$PORT/pos     POS at store-1: scan, sell, return, receipts, customers, offline queue
  Back office http://127.0.0.1:$PORT/admin   order queue, receiving, counts, adjustments, transfers, ledger
  Customers   http://127.0.0.1:$PORT/customers  find by email or phone: purchases, returns, points
  Reports     http://127.0.0.1:$PORT/reports    weekly report (charts), accounting export, QuickBooks sync
  (the pages use the dev keys below, shown to them by GET /v1/dev/keys under make dev only)
  State      $STATE_DIR
  Log        $LOG

Keys (from .dev.vars):
  sk_dev_admin         admin
  sk_dev_storefront    storefront
  sk_dev_pos_store-1   pos at store-1
  pk_dev               publishable

Try:
  curl -s 'http://127.0.0.1:$PORT/v1/availability?sku=TEE-BLK-M' -H 'Authorization: Bearer pk_dev'

Ctrl-C stops it.
MSG
tail -n +1 -f "$LOG" &
TAIL=$!
while kill -0 "$WRANGLER_PID" 2>/dev/null; do sleep 1; done
kill "$TAIL" 2>/dev/null || true
