-- The customer lookup index: a read model of the Customer objects (one row
-- per customer, written by its object after each profile change, guarded
-- by the profile version), read by GET /v1/customers?email=|phone=.
-- The unique indexes make one email and one phone belong to one customer:
-- the object claims them here before it commits a profile change.
-- Times are epoch milliseconds. Never edit an applied migration: add one.
CREATE TABLE customers (
  id TEXT PRIMARY KEY,
  email_norm TEXT,
  phone_norm TEXT,
  name TEXT,
  erased INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL
);
CREATE UNIQUE INDEX customers_by_email ON customers (email_norm) WHERE email_norm IS NOT NULL;
CREATE UNIQUE INDEX customers_by_phone ON customers (phone_norm) WHERE phone_norm IS NOT NULL;
