-- The event feed (issue 10): every stock, sale, order and return event of
-- the producing objects, forwarded at least once from each object's outbox
-- (functions/src/feed.rs). (source, seq) is the object and its outbox
-- sequence: INSERT OR IGNORE makes a duplicate delivery change nothing.
-- Times are epoch milliseconds. Never edit an applied migration: add one.
CREATE TABLE events (
  source TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  location TEXT,
  sku TEXT,
  body TEXT NOT NULL,
  PRIMARY KEY (source, seq)
);
CREATE INDEX events_by_at ON events (at);
CREATE INDEX events_by_kind_at ON events (kind, at);
CREATE INDEX events_by_sku ON events (sku, location, at);

-- How far each source has been forwarded, and what it still had waiting
-- (a read model's as_of is the oldest event of a source that is behind).
CREATE TABLE feed_sources (
  source TEXT PRIMARY KEY,
  through_seq INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  pending INTEGER NOT NULL,
  oldest_pending_at INTEGER,
  forwarded_at INTEGER NOT NULL
);

-- Weekly reports built by the Monday Cron Trigger (or on first read of a
-- finished week), kept: older weeks stay readable. location '' = all.
CREATE TABLE weekly_reports (
  week TEXT NOT NULL,
  location TEXT NOT NULL,
  json TEXT NOT NULL,
  built_at INTEGER NOT NULL,
  PRIMARY KEY (week, location)
);

-- QuickBooks Online sync: one row per receipt (DocNumber), its request id
-- (QBO's requestid: a retry never books twice) and what happened.
CREATE TABLE qbo_sync (
  doc TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  date TEXT NOT NULL,
  request_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  qbo_id TEXT,
  error TEXT,
  updated_at INTEGER NOT NULL
);
CREATE INDEX qbo_sync_by_date ON qbo_sync (date, status);

-- Answers of the report and sync writes (POST), by Idempotency-Key (48 h).
CREATE TABLE report_keys (
  key TEXT PRIMARY KEY,
  fp TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  at INTEGER NOT NULL
);

-- The QBO refresh token when the token endpoint rotated it (Intuit does):
-- the next refresh uses it instead of the QBO_REFRESH_TOKEN secret.
CREATE TABLE qbo_auth (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  refresh_token TEXT NOT NULL,
  at INTEGER NOT NULL
);
