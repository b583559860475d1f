-- Closing the loop: what providers say became of a message after they took it, and what
-- customers answered.
--
-- Each attempt keeps the furthest delivery state a receipt reported (`delivery_rank` orders
-- them: 1 accepted, 2 sent to the carrier, 3 delivered / undelivered / failed), so a receipt that
-- arrives late or twice never moves it backwards. `receipts` keeps every receipt once (by the
-- provider's own id for it), for `explain` and de-duplication; `replies` every inbound message.
ALTER TABLE attempts ADD COLUMN delivery TEXT;
ALTER TABLE attempts ADD COLUMN delivery_rank BIGINT;
ALTER TABLE attempts ADD COLUMN delivery_at BIGINT;
ALTER TABLE attempts ADD COLUMN delivery_error TEXT;
CREATE INDEX attempts_by_provider_id ON attempts (provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE receipts (
    provider     TEXT    NOT NULL,
    receipt_id   TEXT    NOT NULL,
    outbox_id    BIGINT  NOT NULL,
    attempt      BIGINT  NOT NULL,
    status       TEXT    NOT NULL,
    error        TEXT,
    received_at  BIGINT  NOT NULL,
    -- 0: behind what the attempt already knew, so it changed nothing.
    applied      BIGINT  NOT NULL,
    PRIMARY KEY (provider, receipt_id)
);
CREATE INDEX receipts_by_outbox ON receipts (outbox_id);

CREATE TABLE replies (
    provider     TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    -- '' when no customer has the sender's number.
    customer_id  TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    keyword      TEXT    NOT NULL CHECK (keyword IN ('stop', 'start', 'help', 'other')),
    body         TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    PRIMARY KEY (provider, message_id, customer_id)
);
CREATE INDEX replies_by_customer ON replies (customer_id, received_at);
-- The retention purge deletes them by age.
CREATE INDEX replies_by_time ON replies (received_at);

-- SendGrid's events name the outreach by its key.
CREATE INDEX outbox_by_key ON outbox (idempotency_key);

-- A reply names a phone number, not a customer.
CREATE INDEX customers_by_phone ON customers ((doc::jsonb ->> 'phone'));
