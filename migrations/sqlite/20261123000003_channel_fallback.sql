-- Channel fallback: after a permanent failure (or exhausted retries) an outreach moves to the
-- rule's next usable channel, re-rendered there. The offer it carries must stay the same code,
-- and each channel gets its own retry budget.
ALTER TABLE outbox ADD COLUMN offer TEXT;
ALTER TABLE outbox ADD COLUMN channel_attempts INTEGER NOT NULL DEFAULT 0;
