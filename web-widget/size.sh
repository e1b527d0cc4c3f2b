#!/usr/bin/env bash
# The widget's download size, as a page pays it: the wasm and the JavaScript
# (loader, wasm-bindgen bindings, inline snippets), raw and gzip -9, against
# the budget (60 KB gzipped wasm, 10 KB gzipped JS). Run after `make widget-build`.
set -euo pipefail
dir="${1:-public/widget}"
wasm="$dir/omnistock-widget-bindings_bg.wasm"
js=("$dir/omnistock-widget.js" "$dir/omnistock-widget-bindings.js" "$dir"/snippets/*/*.js)
wasm_raw=$(wc -c <"$wasm")
wasm_gz=$(gzip -9c "$wasm" | wc -c)
js_raw=$(cat "${js[@]}" | wc -c)
js_gz=0
for f in "${js[@]}"; do js_gz=$((js_gz + $(gzip -9c "$f" | wc -c))); done
kb() { awk "BEGIN{printf \"%.1f\", $1/1024}"; }
echo "widget wasm: $wasm_raw bytes, gzip -9 $wasm_gz bytes ($(kb "$wasm_gz") KiB; budget 60 KiB)"
echo "widget js:   $js_raw bytes in ${#js[@]} files, gzip -9 $js_gz bytes ($(kb "$js_gz") KiB; budget 10 KiB)"
if [ "$wasm_gz" -gt $((60 * 1024)) ] || [ "$js_gz" -gt $((10 * 1024)) ]; then
  echo "widget: over budget" >&2
  exit 1
fi
