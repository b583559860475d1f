-- Quiet hours: the dispatcher checks each message against the customer's own time zone and
-- region just before sending (a retry or a fallback channel can land in a quiet window too).
-- Copied from the customer record when the outreach is decided.
ALTER TABLE outbox ADD COLUMN timezone TEXT;
ALTER TABLE outbox ADD COLUMN region TEXT;
