-- Discount codes issued with outreach ([rule.offer]). One per outreach: the unique
-- idempotency key mirrors the outbox's, so a repeat that the outbox ignores issues no code.
-- `code` is random (see DiscountCode); its primary key turns a collision into a failed
-- batch that is retried with fresh codes, never two customers sharing one.
CREATE TABLE discount_codes (
    code              TEXT    PRIMARY KEY,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    rule_id           TEXT    NOT NULL,
    customer_id       TEXT    NOT NULL,
    percent           INTEGER NOT NULL CHECK (percent BETWEEN 1 AND 100),
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    redeemed_at       INTEGER,
    redeemed_order_id TEXT
) WITHOUT ROWID;
