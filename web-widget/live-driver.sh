#!/usr/bin/env bash
# Sells OMNISTOCK_WIDGET_SKU_LIVE one unit at a time at widget-downtown through
# POST /v1/pos/sales (the admin dev key), while the widget's live browser tests
# (or the latency measurement) watch the page change. Writes one line per
# sale to $LIVE_DRIVER_LOG: "<n> <posted_at_ms> <answered_at_ms> <status>".
#
#   LIVE_DRIVER_EVERY_MS=1000 LIVE_DRIVER_COUNT=150 web-widget/live-driver.sh
set -euo pipefail
: "${OMNISTOCK_API:?}" "${OMNISTOCK_WIDGET_SKU_LIVE:?}"
api="${OMNISTOCK_API%/}"
every_ms="${LIVE_DRIVER_EVERY_MS:-1000}"
count="${LIVE_DRIVER_COUNT:-150}"
log="${LIVE_DRIVER_LOG:-/dev/null}"
delay="${LIVE_DRIVER_DELAY_MS:-0}"
terminal="live-driver-$$-$(date +%s)"
sleep "$(awk "BEGIN{print $delay/1000}")"
for n in $(seq 1 "$count"); do
  t0=$(date +%s%3N)
  status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$api/v1/pos/sales" \
    -H 'Authorization: Bearer sk_dev_admin' -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $terminal-$n" \
    --data "{\"sale_id\":\"$terminal-$n\",\"terminal_id\":\"$terminal\",\"device_seq\":$n,\"location\":\"widget-downtown\",\"occurred_at\":\"2026-01-02T10:00:00Z\",\"lines\":[{\"sku\":\"$OMNISTOCK_WIDGET_SKU_LIVE\",\"qty\":1,\"unit_price\":{\"amount\":\"19.90\",\"currency\":\"EUR\"}}],\"payments\":[{\"method\":\"card\",\"amount\":{\"amount\":\"19.90\",\"currency\":\"EUR\"}}]}" || true)
  t1=$(date +%s%3N)
  echo "$n $t0 $t1 $status" >>"$log"
  left=$(( every_ms - (t1 - t0) ))
  if [ "$left" -gt 0 ]; then sleep "$(awk "BEGIN{print $left/1000}")"; fi
done
