-- Forewarn's schema on PostgreSQL: the same tables and columns as migrations/sqlite after its
-- last migration, in PostgreSQL's types. Times are Unix milliseconds (BIGINT) on both backends,
-- so the code converts them in one place; JSON documents are TEXT, written and read whole.
-- A region's ancestry is a TEXT[] with a GIN index (SQLite keeps a JSON array).

CREATE TABLE events (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    subject      TEXT,
    time         BIGINT,
    customer_id  TEXT,
    data         TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    purged_at    BIGINT,
    shipment_id  TEXT,
    order_id     TEXT,
    incident_id  TEXT,
    UNIQUE (source, id)
);

CREATE TABLE customers (
    id          TEXT    PRIMARY KEY,
    -- The retention purge walks the table in this order (SQLite's rowid).
    seq         BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
    doc         TEXT    NOT NULL,
    region      TEXT,
    regions     TEXT[],
    segment     TEXT,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX customers_by_region ON customers (region);
CREATE INDEX customers_by_regions ON customers USING GIN (regions);
CREATE INDEX customers_by_segment ON customers (segment);

CREATE TABLE opt_outs (
    customer_id  TEXT    NOT NULL,
    channel      TEXT    NOT NULL CHECK (channel IN ('sms', 'email', 'push')),
    scope        TEXT    NOT NULL CHECK (scope IN ('all', 'marketing')),
    at           BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, channel)
);

CREATE TABLE orders (
    id           TEXT    PRIMARY KEY,
    customer_id  TEXT,
    status       TEXT    NOT NULL,
    total_minor  BIGINT,
    currency     TEXT,
    promised_by  BIGINT,
    placed_at    BIGINT,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id);
CREATE INDEX orders_placed_by_time ON orders (placed_at) WHERE status = 'placed';

CREATE TABLE shipments (
    id               TEXT    PRIMARY KEY,
    order_id         TEXT,
    customer_id      TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    tracking_url     TEXT,
    promised_by      BIGINT,
    new_eta          BIGINT,
    status           TEXT    NOT NULL,
    region           TEXT,
    last_scan_at     BIGINT,
    delivered_at     BIGINT,
    exception_kind   TEXT,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX shipments_open_by_due ON shipments ((coalesce(new_eta, promised_by)))
    WHERE status <> 'delivered';
CREATE INDEX shipments_by_delivery ON shipments (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX shipments_by_order ON shipments (order_id);

CREATE TABLE incidents (
    id             TEXT    PRIMARY KEY,
    title          TEXT,
    severity       TEXT,
    peak_severity  TEXT,
    status         TEXT    NOT NULL,
    affected       TEXT    NOT NULL,
    started_at     BIGINT,
    resolved_at    BIGINT,
    updated_at     BIGINT  NOT NULL
);
CREATE INDEX incidents_open ON incidents (id) WHERE status = 'open';

CREATE TABLE risk_scores (
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    customer_id   TEXT,
    shipment_id   TEXT,
    order_id      TEXT,
    delay         DOUBLE PRECISION,
    churn         DOUBLE PRECISION,
    model         TEXT    NOT NULL,
    scored_at     BIGINT  NOT NULL,
    PRIMARY KEY (event_source, event_id)
);
CREATE INDEX risk_scores_by_customer ON risk_scores (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX risk_scores_by_shipment ON risk_scores (shipment_id) WHERE shipment_id IS NOT NULL;
CREATE INDEX risk_scores_by_order ON risk_scores (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE discount_codes (
    code               TEXT    PRIMARY KEY,
    idempotency_key    TEXT    NOT NULL,
    rule_id            TEXT    NOT NULL,
    customer_id        TEXT    NOT NULL,
    percent            BIGINT  NOT NULL CHECK (percent BETWEEN 1 AND 100),
    issued_at          BIGINT  NOT NULL,
    expires_at         BIGINT  NOT NULL,
    redeemed_at        BIGINT,
    redeemed_order_id  TEXT,
    voided_at          BIGINT
);

CREATE TABLE shipment_outcome_days (
    dimension  TEXT    NOT NULL CHECK (dimension IN ('carrier', 'region')),
    key        TEXT    NOT NULL,
    day        BIGINT  NOT NULL,   -- days since 1970-01-01 UTC
    settled    BIGINT  NOT NULL,
    late       BIGINT  NOT NULL,
    PRIMARY KEY (dimension, key, day)
);

CREATE TABLE customer_experiences (
    customer_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('delay', 'exception', 'overdue', 'outage')),
    entity       TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, kind, entity, at)
);

CREATE TABLE decision_notes (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   TEXT,
    at            BIGINT  NOT NULL,
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    rule_id       TEXT    NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('skipped', 'offer_withheld', 'deferred')),
    reason        TEXT    NOT NULL,
    detail        TEXT    NOT NULL
);
CREATE INDEX decision_notes_by_customer ON decision_notes (customer_id, at);

CREATE TABLE decision_note_days (
    day      BIGINT  NOT NULL,   -- days since 1970-01-01 UTC
    rule_id  TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    count    BIGINT  NOT NULL,
    PRIMARY KEY (day, rule_id, outcome, reason)
);

CREATE TABLE outbox (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key   TEXT    NOT NULL,
    rule_id           TEXT    NOT NULL,
    customer_id       TEXT    NOT NULL,
    entity            TEXT    NOT NULL,
    channel           TEXT    NOT NULL,
    category          TEXT    NOT NULL,
    priority          BIGINT  NOT NULL,
    fallback          TEXT    NOT NULL,
    event_source      TEXT    NOT NULL,
    event_id          TEXT    NOT NULL,
    locale            TEXT    NOT NULL,
    content           TEXT    NOT NULL,
    status            TEXT    NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    attempts          BIGINT  NOT NULL DEFAULT 0,
    ambiguous         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT  NOT NULL,
    claimed_until     BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    sent_at           BIGINT,
    provider_id       TEXT,
    last_error        TEXT,
    offer             TEXT,
    channel_attempts  BIGINT  NOT NULL DEFAULT 0,
    risk              TEXT,
    urgency           DOUBLE PRECISION NOT NULL DEFAULT 0,
    timezone          TEXT,
    region            TEXT,
    order_id          TEXT,
    purged_at         BIGINT,
    incident_id       TEXT,
    discount_code     TEXT,
    delay_score       DOUBLE PRECISION,
    churn_score       DOUBLE PRECISION,
    UNIQUE (rule_id, entity, customer_id, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_customer ON outbox (customer_id, created_at);
-- Supersession looks a batch's customers' messages up by order. Without this index the planner,
-- reading statistics from when the outbox was small, intersects the customer index with every
-- pending row (measured: 2.6 s a batch at 60k pending messages).
CREATE INDEX outbox_by_order ON outbox (customer_id, order_id);
CREATE INDEX outbox_by_incident ON outbox (incident_id, status, customer_id, event_id)
    WHERE incident_id IS NOT NULL;
CREATE INDEX outbox_ready ON outbox (priority DESC, urgency DESC, id) WHERE status = 'pending';

CREATE TABLE attempts (
    outbox_id     BIGINT  NOT NULL REFERENCES outbox (id),
    attempt       BIGINT  NOT NULL,
    gateway       TEXT    NOT NULL,
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT  NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'reconciled')),
    provider_id   TEXT,
    error         TEXT,
    PRIMARY KEY (outbox_id, attempt)
);

CREATE TABLE schedule_state (
    schedule         TEXT    PRIMARY KEY,
    last_tick        BIGINT  NOT NULL,
    last_success_at  BIGINT,
    last_error       TEXT,
    -- Where a sweep stopped, as JSON (SQLite's column says INTEGER but holds this text).
    cursor           TEXT    NOT NULL DEFAULT '{}'
);

CREATE TABLE schedule_runs (
    schedule     TEXT    NOT NULL,
    tick         BIGINT  NOT NULL,
    owner        TEXT    NOT NULL,
    started_at   BIGINT  NOT NULL,
    finished_at  BIGINT,
    found        BIGINT  NOT NULL DEFAULT 0,
    emitted      BIGINT  NOT NULL DEFAULT 0,
    error        TEXT,
    PRIMARY KEY (schedule, tick)
);

CREATE TABLE schedule_emissions (
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    emitted_at  BIGINT  NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX schedule_emissions_by_time ON schedule_emissions (emitted_at);

CREATE TABLE fanouts (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id   TEXT    NOT NULL,
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('started', 'escalated', 'resolved')),
    status        TEXT    NOT NULL CHECK (status IN ('running', 'done', 'stopped')),
    phase         TEXT    NOT NULL DEFAULT 'rank' CHECK (phase IN ('rank', 'send')),
    cursor        TEXT,
    exhausted     BOOLEAN NOT NULL DEFAULT FALSE,
    ranked        BIGINT  NOT NULL DEFAULT 0,
    customers     BIGINT  NOT NULL DEFAULT 0,
    queued        BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    detail        TEXT,
    UNIQUE (event_source, event_id)
);
CREATE INDEX fanouts_running ON fanouts (id) WHERE status = 'running';
CREATE INDEX fanouts_by_incident ON fanouts (incident_id);

CREATE TABLE fanout_targets (
    fanout_id    BIGINT  NOT NULL,
    urgency      DOUBLE PRECISION NOT NULL,
    customer_id  TEXT    NOT NULL
);
-- The send pass reads the most urgent first; a constraint cannot be DESC, a unique index can.
CREATE UNIQUE INDEX fanout_targets_by_urgency ON fanout_targets (fanout_id, urgency DESC, customer_id);

CREATE TABLE leases (
    name   TEXT    PRIMARY KEY,
    owner  TEXT    NOT NULL,
    until  BIGINT  NOT NULL
);
