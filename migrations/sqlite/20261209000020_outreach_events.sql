-- Outreach events out (a transactional outbox): every change of a message's state — queued
-- (again, on a fallback channel), sent, delivered, failed, cancelled — and every opt-out (and
-- opt-in) is written here by these triggers, in the transaction that makes the change, whatever
-- code path makes it. The relay publishes them to NATS in `seq` order and deletes what
-- JetStream has acknowledged. Ids, rule, channel, status, times and reasons only.
CREATE TABLE outreach_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    status       TEXT    NOT NULL,
    outbox_id    INTEGER,
    key          TEXT,
    rule_id      TEXT,
    customer_id  TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    detail       TEXT,
    at           INTEGER NOT NULL
);

CREATE TRIGGER outreach_queued AFTER INSERT ON outbox
BEGIN
    INSERT INTO outreach_events (status, outbox_id, key, rule_id, customer_id, channel, detail, at)
    VALUES (CASE WHEN NEW.status = 'cancelled' THEN 'cancelled' ELSE 'queued' END, NEW.id,
            NEW.idempotency_key, NEW.rule_id, NEW.customer_id, NEW.channel, NEW.last_error,
            NEW.updated_at);
END;

CREATE TRIGGER outreach_settled AFTER UPDATE OF status ON outbox
WHEN NEW.status <> OLD.status AND NEW.status IN ('sent', 'failed', 'cancelled')
BEGIN
    INSERT INTO outreach_events (status, outbox_id, key, rule_id, customer_id, channel, detail, at)
    VALUES (NEW.status, NEW.id, NEW.idempotency_key, NEW.rule_id, NEW.customer_id, NEW.channel,
            NEW.last_error, NEW.updated_at);
END;

CREATE TRIGGER outreach_moved AFTER UPDATE OF channel ON outbox
WHEN NEW.channel <> OLD.channel
BEGIN
    INSERT INTO outreach_events (status, outbox_id, key, rule_id, customer_id, channel, detail, at)
    VALUES ('queued', NEW.id, NEW.idempotency_key, NEW.rule_id, NEW.customer_id, NEW.channel,
            'moved from ' || OLD.channel, NEW.updated_at);
END;

CREATE TRIGGER outreach_delivered AFTER UPDATE OF delivery ON attempts
WHEN NEW.delivery = 'delivered' AND OLD.delivery IS NOT 'delivered'
BEGIN
    INSERT INTO outreach_events (status, outbox_id, key, rule_id, customer_id, channel, detail, at)
    SELECT 'delivered', o.id, o.idempotency_key, o.rule_id, o.customer_id, o.channel, NULL,
           NEW.delivery_at
      FROM outbox o WHERE o.id = NEW.outbox_id;
END;

CREATE TRIGGER outreach_opted_out AFTER INSERT ON opt_outs
BEGIN
    INSERT INTO outreach_events (status, customer_id, channel, detail, at)
    VALUES ('opted_out', NEW.customer_id, NEW.channel, NEW.scope, NEW.at);
END;

CREATE TRIGGER outreach_opt_out_widened AFTER UPDATE OF scope ON opt_outs
WHEN NEW.scope <> OLD.scope
BEGIN
    INSERT INTO outreach_events (status, customer_id, channel, detail, at)
    VALUES ('opted_out', NEW.customer_id, NEW.channel, NEW.scope, NEW.at);
END;

CREATE TRIGGER outreach_opted_in AFTER DELETE ON opt_outs
BEGIN
    INSERT INTO outreach_events (status, customer_id, channel, detail, at)
    VALUES ('opted_in', OLD.customer_id, OLD.channel, NULL,
            CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
