#!/usr/bin/env bash
# Schemathesis (a property-based API fuzzer nobody here wrote) against the
# OpenAPI document the Worker serves at /v1/openapi.json, every operation,
# `--checks all`, on a fresh seeded wrangler dev (scripts/with-wrangler.sh
# starts it on a free loopback port and stops it). Bounded: at most
# SCHEMATHESIS_MAX_EXAMPLES cases per operation and SCHEMATHESIS_MAX_TIME
# seconds in all. Expects the venv of `make schemathesis` (SCHEMATHESIS_BIN).
# A longer run: make schemathesis SCHEMATHESIS_MAX_EXAMPLES=500 SCHEMATHESIS_MAX_TIME=1800
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SCHEMATHESIS_BIN:-$ROOT/target/venv/bin/schemathesis}"
if [ -z "${OMNISTOCK_API:-}" ]; then
  exec "$ROOT/scripts/with-wrangler.sh" "$0" "$@"
fi
# Excluded (issue 12, still open): positive_data_acceptance. The Worker
# rightly refuses schema-valid bodies the document cannot express: cross-field
# rules (exactly one of sku/barcode, from != to, sale_id xor order_id, no
# duplicate SKUs, order transitions), opaque cursors it did not give, and
# integral floats such as 530.0 for integer fields (serde reads i64 only).
# SCHEMATHESIS_EXCLUDE_CHECKS= (empty) runs every check.
# SCHEMATHESIS_EXCLUDE_PATHS=<regex> leaves operations out (none by default:
# GET /v1/products, once a 503 on long queries built into a LIKE pattern, is
# now a range scan over the search index).
EXCLUDE=()
X="${SCHEMATHESIS_EXCLUDE_CHECKS-positive_data_acceptance}"
if [ -n "$X" ]; then EXCLUDE=(--exclude-checks "$X"); fi
P="${SCHEMATHESIS_EXCLUDE_PATHS-}"
if [ -n "$P" ]; then EXCLUDE+=(--exclude-path-regex "$P"); fi
REPORT_DIR="${SCHEMATHESIS_REPORT_DIR:-$ROOT/target/schemathesis}"
mkdir -p "$REPORT_DIR"
exec "$BIN" --config-file "$ROOT/tests/schemathesis/schemathesis.toml" \
  run "$OMNISTOCK_API/v1/openapi.json" \
  --url "$OMNISTOCK_API" \
  --checks all \
  "${EXCLUDE[@]}" \
  --header "Authorization: Bearer ${OMNISTOCK_ADMIN_KEY:-sk_dev_admin}" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-15}" \
  --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
  --seed "${SCHEMATHESIS_SEED:-12}" \
  --workers "${SCHEMATHESIS_WORKERS:-1}" \
  --request-timeout 20 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$REPORT_DIR" \
  "$@"
