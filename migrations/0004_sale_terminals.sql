-- Where a POS sale lives (issue 14): a receipt number that is a sale id
-- finds the terminal whose object keeps the sale. A read model of the
-- event feed like the others: each `sale` event a terminal forwards
-- (functions/src/feed.rs, core's `SaleBody`) indexes its sale, the first
-- terminal named winning, so a duplicate delivery changes nothing.
CREATE TABLE sale_terminals (
  sale_id TEXT PRIMARY KEY,
  terminal TEXT NOT NULL
);

CREATE TRIGGER sale_terminals_from_events AFTER INSERT ON events
WHEN NEW.kind = 'sale' AND json_valid(NEW.body)
BEGIN
  INSERT OR IGNORE INTO sale_terminals (sale_id, terminal)
  SELECT json_extract(NEW.body, '$.sale_id'), json_extract(NEW.body, '$.terminal_id')
  WHERE json_extract(NEW.body, '$.sale_id') IS NOT NULL
    AND json_extract(NEW.body, '$.terminal_id') IS NOT NULL;
END;

-- The sales fed before this migration.
INSERT OR IGNORE INTO sale_terminals (sale_id, terminal)
SELECT json_extract(body, '$.sale_id'), json_extract(body, '$.terminal_id')
FROM events
WHERE kind = 'sale' AND json_valid(body)
  AND json_extract(body, '$.sale_id') IS NOT NULL
  AND json_extract(body, '$.terminal_id') IS NOT NULL;
