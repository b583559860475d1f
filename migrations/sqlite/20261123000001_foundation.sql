-- Forewarn's state on SQLite. Times are Unix milliseconds (UTC): compact, fast to compare, and
-- free of text-format ambiguity. JSON documents are stored as TEXT.
--
-- Indexes are only those a query uses today. Each index whose keys arrive in random order (a
-- customer id, a hash) dirties a random page per row and costs intake about a fifth of its
-- throughput (measured with `cargo bench --bench intake`); add per-customer paths together with
-- the query that needs them, and measure.

-- Every event processed, keyed by its CloudEvents identity: a redelivery hits the unique key
-- and is skipped. Dead-lettered events are not here; the DLQ stream keeps them. A rowid table
-- (not WITHOUT ROWID): rows carry the event's data, too large to keep inside the key's B-tree.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    subject      TEXT,
    time         INTEGER,
    customer_id  TEXT,
    data         TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (source, id)
);

-- The merged customer record (JSON Merge Patch of every inline object and customer.upserted).
CREATE TABLE customers (
    id          TEXT    PRIMARY KEY,
    doc         TEXT    NOT NULL,
    region      TEXT,
    segment     TEXT,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX customers_by_region ON customers (region);
CREATE INDEX customers_by_segment ON customers (segment);

-- customer.opted_out, widest scope per channel. Kept even for customers not yet known.
CREATE TABLE opt_outs (
    customer_id  TEXT    NOT NULL,
    channel      TEXT    NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    scope        TEXT    NOT NULL CHECK (scope IN ('all', 'marketing')),
    at           INTEGER NOT NULL,
    PRIMARY KEY (customer_id, channel)
) WITHOUT ROWID;

CREATE TABLE orders (
    id           TEXT    PRIMARY KEY,
    customer_id  TEXT,
    status       TEXT    NOT NULL,
    total_minor  INTEGER,
    currency     TEXT,
    promised_by  INTEGER,
    placed_at    INTEGER,
    updated_at   INTEGER NOT NULL
);

-- promised_by is the original promise; new_eta the latest announced arrival.
CREATE TABLE shipments (
    id               TEXT    PRIMARY KEY,
    order_id         TEXT,
    customer_id      TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    tracking_url     TEXT,
    promised_by      INTEGER,
    new_eta          INTEGER,
    status           TEXT    NOT NULL,
    region           TEXT,
    last_scan_at     INTEGER,
    delivered_at     INTEGER,
    exception_kind   TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX shipments_open_by_promise ON shipments (status, promised_by);

CREATE TABLE incidents (
    id           TEXT    PRIMARY KEY,
    title        TEXT,
    severity     TEXT,
    status       TEXT    NOT NULL,
    affected     TEXT    NOT NULL,
    started_at   INTEGER,
    resolved_at  INTEGER,
    updated_at   INTEGER NOT NULL
);

-- risk.scored events from external models, newest wins per subject at read time.
CREATE TABLE risk_scores (
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    customer_id   TEXT,
    shipment_id   TEXT,
    order_id      TEXT,
    delay         REAL,
    churn         REAL,
    model         TEXT    NOT NULL,
    scored_at     INTEGER NOT NULL,
    PRIMARY KEY (event_source, event_id)
);

-- One row per message: (rule, entity, customer, channel) is unique, so a replay can never
-- queue a second one. `idempotency_key` is the hash of those four, carried to providers; the
-- constraint is on the columns themselves because their order follows the entity (event ids,
-- shipment ids), so a batch's inserts land on a few index pages instead of a random page each.
-- Status: pending → sending → sent | failed; a row left in `sending` past its lease is an
-- ambiguous attempt, reconciled before any resend.
CREATE TABLE outbox (
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
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    ambiguous        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_until    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    provider_id      TEXT,
    last_error       TEXT,
    UNIQUE (rule_id, entity, customer_id, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Every attempt at a gateway, for metrics and the customer timeline.
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
