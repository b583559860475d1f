-- Schedules (`[schedules.<name>]`): cron jobs that notice what no event announces, and the
-- maintenance that keeps the database lawful.

-- One row per schedule: the last tick done, and the lease that lets one process at a time run
-- it. A process takes the lease only when it is free or expired, so a tick runs once however
-- many forewarn processes share the database, and a process that died mid-run is replaced
-- after the lease. `cursor` is where a sweep that walks a table in key order stopped.
CREATE TABLE schedule_state (
    schedule         TEXT    PRIMARY KEY,
    last_tick        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_success_at  INTEGER,
    last_error       TEXT,
    cursor           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Every tick run, once: the primary key is the proof that no tick ran twice.
CREATE TABLE schedule_runs (
    schedule     TEXT    NOT NULL,
    tick         INTEGER NOT NULL,
    owner        TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    found        INTEGER NOT NULL DEFAULT 0,
    emitted      INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    PRIMARY KEY (schedule, tick)
) WITHOUT ROWID;

-- What the jobs emitted, keyed by what makes an emission unique (a shipment and its promise,
-- an order, a customer's resolved problem): a job never emits the same thing twice, and a
-- sweep skips what is here. `kind` is the synthetic event type, not the schedule's name, so
-- two schedules running one job share it.
CREATE TABLE schedule_emissions (
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    emitted_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX schedule_emissions_by_time ON schedule_emissions (emitted_at);

-- The overdue sweep: open parcels by the promise they must keep now (a delay notice's new ETA
-- replaces the original promise). Replaces the (status, promised_by) index no query used.
DROP INDEX shipments_open_by_promise;
CREATE INDEX shipments_open_by_due ON shipments (coalesce(new_eta, promised_by))
    WHERE status <> 'delivered';
-- The CSAT sweep: parcels by delivery time.
CREATE INDEX shipments_by_delivery ON shipments (delivered_at) WHERE delivered_at IS NOT NULL;
-- The stalled sweep: placed orders by when they were placed, and whether a parcel left.
CREATE INDEX orders_placed_by_time ON orders (placed_at) WHERE status = 'placed';
CREATE INDEX shipments_by_order ON shipments (order_id);

-- Retention: a purged event or message keeps its row (type, rule, channel, status, times: the
-- counts) and loses its personal data.
ALTER TABLE events ADD COLUMN purged_at INTEGER;
ALTER TABLE outbox ADD COLUMN purged_at INTEGER;

-- Decision notes are deleted at retention; these daily counts stay.
CREATE TABLE decision_note_days (
    day      INTEGER NOT NULL,   -- days since 1970-01-01 UTC
    rule_id  TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (day, rule_id, outcome, reason)
) WITHOUT ROWID;
