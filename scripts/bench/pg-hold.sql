-- pgbench script of scripts/bench-http.sh: one one-line hold of the hot SKU,
-- the usual way: the idempotency key (with the hold) and the guarded update of
-- the stock row in one transaction (synchronous_commit and fsync on). Every
-- client updates the same row, so the row lock serialises them, as the SKU's
-- Durable Object serialises holds.
BEGIN;
INSERT INTO idempotency_keys (key, reservation_id, sku, qty, expires_at)
  VALUES ('k-' || gen_random_uuid(), 'r-' || :client_id, 'HOT', 1, now() + interval '3600 seconds');
UPDATE stock SET reserved = reserved + 1
  WHERE sku = 'HOT' AND location = 'store-1' AND on_hand - reserved >= 1;
END;
