-- Discount codes issued with outreach ([rule.offer]): one per outreach actually queued
-- (a repeat the outbox's unique key ignored issues none), written in the same transaction.
-- `code` is random (see DiscountCode); its primary key turns a collision into a failed
-- batch that is retried with fresh codes, never two customers sharing one. WITHOUT ROWID:
-- the code is the only way in, so the table is its own index.
CREATE TABLE discount_codes (
    code              TEXT    PRIMARY KEY,
    idempotency_key   TEXT    NOT NULL,
    rule_id           TEXT    NOT NULL,
    customer_id       TEXT    NOT NULL,
    percent           INTEGER NOT NULL CHECK (percent BETWEEN 1 AND 100),
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    redeemed_at       INTEGER,
    redeemed_order_id TEXT
) WITHOUT ROWID;
