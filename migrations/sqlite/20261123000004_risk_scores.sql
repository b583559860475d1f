-- Risk scores (rules/risk.toml). Features are read *as of* each decision's time, so history
-- is kept with its times, per customer where a customer's decisions read it.

-- Deliveries per carrier and per destination region per UTC day, and how many were a day or
-- more late: the 30-day late shares are 30 rows each. Counted once, when a shipment becomes
-- delivered (the intake transaction that records its event).
CREATE TABLE shipment_outcome_days (
    dimension  TEXT    NOT NULL CHECK (dimension IN ('carrier', 'region')),
    key        TEXT    NOT NULL,
    day        INTEGER NOT NULL,   -- days since 1970-01-01 UTC
    settled    INTEGER NOT NULL,
    late       INTEGER NOT NULL,
    PRIMARY KEY (dimension, key, day)
) WITHOUT ROWID;

-- Bad experiences per customer: delay notices and late deliveries, exceptions (one row per
-- exception event: they are also the shipment's exception scans), overdue parcels, outages.
CREATE TABLE customer_experiences (
    customer_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('delay', 'exception', 'overdue', 'outage')),
    entity       TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (customer_id, kind, entity, at)
) WITHOUT ROWID;

-- Lifetime orders and value, and the last outreach, per customer being scored.
CREATE INDEX orders_by_customer ON orders (customer_id);
CREATE INDEX outbox_by_customer ON outbox (customer_id, created_at);

-- External scores by subject.
CREATE INDEX risk_scores_by_customer ON risk_scores (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX risk_scores_by_shipment ON risk_scores (shipment_id) WHERE shipment_id IS NOT NULL;
CREATE INDEX risk_scores_by_order ON risk_scores (order_id) WHERE order_id IS NOT NULL;

-- The scores each outreach was decided with and their explanation (JSON), and its urgency
-- (the churn score): in a burst, the customers most likely to leave hear first.
ALTER TABLE outbox ADD COLUMN risk TEXT;
ALTER TABLE outbox ADD COLUMN urgency REAL NOT NULL DEFAULT 0;
