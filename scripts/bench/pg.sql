-- scripts/bench-http.sh: the PostgreSQL baseline's schema (a throw-away cluster).
-- The "usual way" to take a hold: one stock row per (SKU, location) with
-- on_hand and reserved, and one row per idempotency key that also records the
-- hold (its reservation, SKU, quantity and expiry).
CREATE TABLE stock (
  sku text NOT NULL,
  location text NOT NULL,
  on_hand bigint NOT NULL,
  reserved bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (sku, location),
  CHECK (reserved >= 0 AND reserved <= on_hand)
);
CREATE TABLE idempotency_keys (
  key text PRIMARY KEY,
  reservation_id text NOT NULL,
  sku text NOT NULL,
  qty integer NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stock (sku, location, on_hand) VALUES ('HOT', 'store-1', 10000000);
