-- Retraction and supersession: an outreach whose problem is gone before it is sent (the parcel
-- arrived, the incident was resolved), or that a newer, more important one about the same
-- order replaced, is 'cancelled' with the reason in last_error. SQLite cannot change a CHECK
-- constraint in place, so the outbox is rebuilt — attempts first, which refers to it — and
-- gains the order an outreach is about, which supersession matches on.
CREATE TABLE attempts_saved AS SELECT * FROM attempts;
DROP TABLE attempts;

CREATE TABLE outbox_rebuilt (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT    NOT NULL,
    rule_id          TEXT    NOT NULL,
    customer_id      TEXT    NOT NULL,
    entity           TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    category         TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    fallback         TEXT    NOT NULL,
    event_source     TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    locale           TEXT    NOT NULL,
    content          TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    ambiguous        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_until    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    provider_id      TEXT,
    last_error       TEXT,
    offer            TEXT,
    channel_attempts INTEGER NOT NULL DEFAULT 0,
    risk             TEXT,
    urgency          REAL    NOT NULL DEFAULT 0,
    timezone         TEXT,
    region           TEXT,
    order_id         TEXT,
    UNIQUE (rule_id, entity, customer_id, channel)
);
INSERT INTO outbox_rebuilt (id, idempotency_key, rule_id, customer_id, entity, channel, category,
    priority, fallback, event_source, event_id, locale, content, status, attempts, ambiguous,
    next_attempt_at, claimed_until, created_at, updated_at, sent_at, provider_id, last_error,
    offer, channel_attempts, risk, urgency, timezone, region)
SELECT id, idempotency_key, rule_id, customer_id, entity, channel, category, priority, fallback,
    event_source, event_id, locale, content, status, attempts, ambiguous, next_attempt_at,
    claimed_until, created_at, updated_at, sent_at, provider_id, last_error, offer,
    channel_attempts, risk, urgency, timezone, region
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_customer ON outbox (customer_id, created_at);

CREATE TABLE attempts (
    outbox_id     INTEGER NOT NULL REFERENCES outbox (id),
    attempt       INTEGER NOT NULL,
    gateway       TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'reconciled')),
    provider_id   TEXT,
    error         TEXT,
    PRIMARY KEY (outbox_id, attempt)
);
INSERT INTO attempts SELECT * FROM attempts_saved;
DROP TABLE attempts_saved;
