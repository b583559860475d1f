-- Incident fan-out: an outage event names no customer; forewarn finds the affected ones in the
-- directory and writes their outreach page by page, outside intake's per-batch transaction.
--
-- One row per outage event that needs customers found (started, a severity escalation,
-- resolved). `cursor` is the last customer id done: each page is one transaction that writes
-- its outreach and moves the cursor, so a restart continues after the last committed page, and
-- the outbox's unique key is the second guard against a duplicate. A process holds a fan-out
-- under a lease (`owner`, `lease_until`) so two processes never page the same one.
--
-- Two phases in turn, a window of the audience at a time, so the customers most likely to
-- leave and most costly to lose hear first and the dispatcher still reads the outbox in order:
-- `rank` pages through the audience by id (`cursor`) and writes each customer's urgency (churn
-- risk × value) to `fanout_targets`, up to `[incidents] rank_window` customers; `send` takes the
-- most urgent targets a page at a time, decides them, writes their outreach (in urgency order,
-- so claim order is insertion order) and deletes them; then the next window, until the audience
-- is `exhausted` and no target is left.
CREATE TABLE fanouts (
    id            INTEGER PRIMARY KEY,
    incident_id   TEXT    NOT NULL,
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('started', 'escalated', 'resolved')),
    status        TEXT    NOT NULL CHECK (status IN ('running', 'done', 'stopped')),
    phase         TEXT    NOT NULL DEFAULT 'rank' CHECK (phase IN ('rank', 'send')),
    cursor        TEXT,
    exhausted     INTEGER NOT NULL DEFAULT 0,
    ranked        INTEGER NOT NULL DEFAULT 0,
    customers     INTEGER NOT NULL DEFAULT 0,
    queued        INTEGER NOT NULL DEFAULT 0,
    owner         TEXT,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    detail        TEXT,
    UNIQUE (event_source, event_id)
);
CREATE INDEX fanouts_running ON fanouts (id) WHERE status = 'running';

-- The customers a fan-out ranked and has not sent to yet, most urgent first.
CREATE TABLE fanout_targets (
    fanout_id    INTEGER NOT NULL,
    urgency      REAL    NOT NULL,
    customer_id  TEXT    NOT NULL,
    PRIMARY KEY (fanout_id, urgency DESC, customer_id)
) WITHOUT ROWID;
CREATE INDEX fanouts_by_incident ON fanouts (incident_id);

-- The incident an outreach is about: who was told (the resolution goes to them only: the `sent`
-- range of this index, in customer order), and each announcement's progress (counts by event
-- and status, read from the index alone).
ALTER TABLE outbox ADD COLUMN incident_id TEXT;
CREATE INDEX outbox_by_incident ON outbox (incident_id, status, customer_id, event_id)
    WHERE incident_id IS NOT NULL;

-- The dispatcher's claim order, readable in order: a fan-out queues hundreds of thousands of
-- rows at once, and sorting all of them for every claim of a few hundred would stall dispatch.
CREATE INDEX outbox_ready ON outbox (priority DESC, urgency DESC, id) WHERE status = 'pending';

-- The highest severity an incident has had: an update is news for customers only above it.
ALTER TABLE incidents ADD COLUMN peak_severity TEXT;
