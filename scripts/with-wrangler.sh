#!/usr/bin/env bash
# Runs CMD... against a fresh, seeded omnistock in wrangler dev (free port,
# temporary state), then stops it. Exports to CMD:
#   OMNISTOCK_API=http://127.0.0.1:PORT  OMNISTOCK_PORT=PORT
#   OMNISTOCK_ADMIN_KEY, OMNISTOCK_STOREFRONT_KEY, OMNISTOCK_POS_KEY, OMNISTOCK_PUBLISHABLE_KEY
# Exits with CMD's status.
set -euo pipefail
source "$(dirname "$0")/wrangler-common.sh"
if [ "$#" -eq 0 ]; then echo "usage: $0 CMD [ARGS...]" >&2; exit 2; fi
TMP="$(mktemp -d -t omnistock-ww.XXXXXX)"
cleanup() { stop_wrangler; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT="$(free_port)"
start_wrangler "$PORT" "$TMP/state" "$TMP/wrangler.log" --log-level warn --var "API_KEYS:$DEV_KEYS"
"$ROOT/scripts/seed.sh" "http://127.0.0.1:$PORT" >/dev/null
export OMNISTOCK_API="http://127.0.0.1:$PORT" OMNISTOCK_PORT="$PORT"
export OMNISTOCK_ADMIN_KEY=sk_dev_admin OMNISTOCK_STOREFRONT_KEY=sk_dev_storefront
export OMNISTOCK_POS_KEY=sk_dev_pos_store-1 OMNISTOCK_PUBLISHABLE_KEY=pk_dev
set +e
"$@"
status=$?
set -e
if [ "$status" -ne 0 ]; then echo "with-wrangler: command failed ($status); wrangler log tail:" >&2; tail -n 30 "$TMP/wrangler.log" >&2; fi
exit "$status"
