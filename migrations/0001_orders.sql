-- The order queue: a read model of the Order objects, written by them after
-- every change (at least once, guarded by version), read by GET /v1/orders.
-- Times are epoch milliseconds. Never edit an applied migration: add one.
CREATE TABLE orders (
  id TEXT PRIMARY KEY,
  channel TEXT NOT NULL,
  customer_id TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL,
  summary TEXT NOT NULL
);
CREATE INDEX orders_newest ON orders (created_at DESC, id DESC);
CREATE INDEX orders_by_channel ON orders (channel, created_at DESC, id DESC);

-- One row per part (a split order has one part per location).
CREATE TABLE order_parts (
  order_id TEXT NOT NULL,
  part INTEGER NOT NULL,
  location TEXT NOT NULL,
  status TEXT NOT NULL,
  at_risk INTEGER NOT NULL,
  pickup_overdue INTEGER NOT NULL,
  PRIMARY KEY (order_id, part)
);
CREATE INDEX order_parts_by_location ON order_parts (location, status);
CREATE INDEX order_parts_by_status ON order_parts (status);
