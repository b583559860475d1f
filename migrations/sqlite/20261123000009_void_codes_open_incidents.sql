-- A discount code whose message was cancelled (retracted or superseded) before it was sent is
-- void: the customer never saw it, and checkout refuses it.
ALTER TABLE discount_codes ADD COLUMN voided_at INTEGER;

-- Open incidents, read by every intake batch: no marketing for the customers they affect.
CREATE INDEX incidents_open ON incidents (id) WHERE status = 'open';
