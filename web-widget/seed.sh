#!/usr/bin/env bash
# Seeds the widget's browser test and screenshot through the public API, with the
# admin dev key, and prints what it made as shell assignments:
#
#   eval "$(OMNISTOCK_API=http://127.0.0.1:PORT web-widget/seed.sh)"
#
# Three locations of its own (PUT, so re-running changes nothing):
#   widget-downtown "Downtown" (store), widget-riverside "Riverside" (store),
#   widget-warehouse "Central warehouse" (warehouse)
# and a fresh product per run with two SKUs, so the expected text never depends
# on what an earlier run left in the state:
#   OMNISTOCK_WIDGET_SKU    7 at Downtown, 2 at Riverside, none at the warehouse
#   OMNISTOCK_WIDGET_SKU_B  5 at the warehouse only
#   OMNISTOCK_WIDGET_SKU_LIVE  100000 at Downtown, sold by web-widget/live-driver.sh
# The browser test (web-widget/tests/browser.rs) asserts exactly these figures.
set -euo pipefail

: "${OMNISTOCK_API:?set OMNISTOCK_API to the running Worker, e.g. http://127.0.0.1:8787}"
api="${OMNISTOCK_API%/}"
stamp="$(date +%s)-$$"
body=$(mktemp)
trap 'rm -f "$body"' EXIT

call() { # METHOD PATH JSON
  local status
  status=$(curl -sS -o "$body" -w '%{http_code}' -X "$1" "$api$2" \
    -H 'Authorization: Bearer sk_dev_admin' -H 'Content-Type: application/json' \
    -H "Idempotency-Key: widget-seed-$stamp-$RANDOM-$RANDOM" --data "$3" || true)
  case "$status" in
    2??) ;;
    *) echo "seed.sh: $1 $2 answered ${status:-nothing}: $(cat "$body")" >&2; exit 1 ;;
  esac
}

location() { # ID NAME KIND LAT LON
  call PUT "/v1/locations/$1" \
    "{\"name\":\"$2\",\"kind\":\"$3\",\"lat\":$4,\"lon\":$5,\"ships_online\":true,\"pickup\":$([ "$3" = store ] && echo true || echo false)}"
}
location widget-downtown Downtown store 52.520 13.405
location widget-riverside Riverside store 52.500 13.450
location widget-warehouse "Central warehouse" warehouse 52.450 13.300

product="WIDGET-$stamp"
sku="$product-A"
sku_b="$product-B"
price='{"amount":"19.90","currency":"EUR"}'
call PUT "/v1/products/$product" \
  "{\"title\":\"Widget test tee\",\"variants\":[{\"sku\":\"$sku\",\"options\":{\"size\":\"M\"},\"price\":$price},{\"sku\":\"$sku_b\",\"options\":{\"size\":\"L\"},\"price\":$price}]}"

receive() { # LOCATION SKU QTY
  call POST /v1/inventory/receipts \
    "{\"location\":\"$1\",\"reference\":\"widget-seed\",\"lines\":[{\"sku\":\"$2\",\"qty\":$3}]}"
}
receive widget-downtown "$sku" 7
receive widget-riverside "$sku" 2
receive widget-warehouse "$sku_b" 5
# The live tests' SKU: web-widget/live-driver.sh sells it one by one at Downtown.
sku_live="$product-LIVE"
call PUT "/v1/products/$product-live" \
  "{\"title\":\"Widget live tee\",\"variants\":[{\"sku\":\"$sku_live\",\"options\":{},\"price\":$price}]}"
receive widget-downtown "$sku_live" 100000

echo "export OMNISTOCK_WIDGET_SKU=$sku"
echo "export OMNISTOCK_WIDGET_SKU_B=$sku_b"
echo "export OMNISTOCK_WIDGET_SKU_LIVE=$sku_live"
echo "export OMNISTOCK_WIDGET_LOCATIONS=widget-downtown,widget-riverside,widget-warehouse"
