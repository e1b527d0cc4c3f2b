#!/usr/bin/env bash
# Seeds a demo catalog into a running omnistock, only when it has no locations yet.
# Usage: scripts/seed.sh [BASE_URL] (default http://127.0.0.1:${PORT:-8787}); ADMIN_KEY overrides the key.
set -euo pipefail
API="${1:-http://127.0.0.1:${PORT:-8787}}"
KEY="${ADMIN_KEY:-sk_dev_admin}"
n=0
req() { # METHOD PATH [BODY]
  local out
  n=$((n + 1))
  out=$(curl -sS -o /dev/null -w '%{http_code}' -X "$1" "$API$2" \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: seed-$n" ${3:+--data "$3"} 2>/dev/null) || true
  case "$out" in 2*) ;; *) echo "seed: $1 $2 failed with HTTP $out" >&2; return 1 ;; esac
}
existing=$(curl -sS "$API/v1/locations" -H "Authorization: Bearer $KEY")
if ! printf '%s' "$existing" | grep -q '"items":\[\]'; then
  echo "seed: state already has locations, not seeding"
  exit 0
fi
req PUT /v1/locations/store-1 '{"name":"Downtown","kind":"store","lat":52.5200,"lon":13.4050,"ships_online":true,"pickup":true}'
req PUT /v1/locations/store-2 '{"name":"Riverside","kind":"store","lat":52.4800,"lon":13.4400,"ships_online":false,"pickup":true}'
req PUT /v1/locations/warehouse-1 '{"name":"Central warehouse","kind":"warehouse","lat":52.3900,"lon":13.0600,"ships_online":true,"pickup":false}'
req PUT /v1/products/tee '{"title":"Organic tee","variants":[
  {"sku":"TEE-BLK-M","barcode":"4006381333931","options":{"color":"black","size":"M"},"price":{"amount":"19.90","currency":"EUR"},"tax_code":"standard"},
  {"sku":"TEE-BLK-L","barcode":"4006381333948","options":{"color":"black","size":"L"},"price":{"amount":"19.90","currency":"EUR"},"tax_code":"standard"},
  {"sku":"TEE-WHT-M","barcode":"4006381333955","options":{"color":"white","size":"M"},"price":{"amount":"19.90","currency":"EUR"},"tax_code":"standard"}]}'
req PUT /v1/products/mug '{"title":"Enamel mug","variants":[
  {"sku":"MUG-RED","barcode":"4006381333962","options":{"color":"red"},"price":{"amount":"12.50","currency":"EUR"}}]}'
req POST /v1/inventory/receipts '{"location":"store-1","reference":"seed","lines":[{"sku":"TEE-BLK-M","qty":3},{"sku":"TEE-BLK-L","qty":5},{"sku":"MUG-RED","qty":12}]}'
req POST /v1/inventory/receipts '{"location":"store-2","reference":"seed","lines":[{"sku":"TEE-BLK-M","qty":8},{"sku":"TEE-WHT-M","qty":4}]}'
req POST /v1/inventory/receipts '{"location":"warehouse-1","reference":"seed","lines":[{"sku":"TEE-BLK-M","qty":40},{"sku":"TEE-BLK-L","qty":25},{"sku":"TEE-WHT-M","qty":30},{"sku":"MUG-RED","qty":60}]}'
echo "seed: demo catalog created (store-1, store-2, warehouse-1; TEE-BLK-M, TEE-BLK-L, TEE-WHT-M, MUG-RED)"
