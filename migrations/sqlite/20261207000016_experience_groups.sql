-- The churn feature counts a customer's distinct (kind, entity) bad experiences in the 90 days
-- before each decision. Counted from `customer_experiences` row by row while holding the
-- database's single writer, a batch's read grew with every customer's history: in the latency
-- bench at 3,000 events/s after 90k events (about 90 experiences per customer) it took 147 µs
-- an event against 70 µs on a fresh file, and intake fell behind.
--
-- `customer_experience_groups` holds each (customer, kind, entity) once with its latest time,
-- kept by the triggers below like an index is kept. A batch counts a customer's groups that
-- ended in its window from the groups' own key, one short stretch a customer, and reads rows
-- only at the edges of its window. PostgreSQL also keeps groups per day and indexes them by
-- time (`…_experience_groups.sql` in migrations/postgres); here each of those is one more
-- page written per event (events come for customers all over the key space, so each index
-- keyed by customer gains a page in every batch), paid for on the single writer: counting a
-- customer's few groups costs less.
--
-- One writer at a time holds the file, so the triggers need no lock of their own.

CREATE TABLE customer_experience_groups (
    customer_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    entity       TEXT    NOT NULL,
    last_at      INTEGER NOT NULL,
    PRIMARY KEY (customer_id, kind, entity)
) WITHOUT ROWID;
-- The shipments a batch names, found without reading every group of its customers.
CREATE INDEX customer_experience_groups_by_entity ON customer_experience_groups (entity);

-- A batch's edges: a customer's experiences on a stretch of time, whatever their kind.
CREATE INDEX customer_experiences_by_time ON customer_experiences (customer_id, at);

-- A new row (an `ON CONFLICT DO NOTHING` that skipped one fires nothing): its group starts,
-- or ends later; a row older than its group's latest changes nothing.
CREATE TRIGGER customer_experiences_added AFTER INSERT ON customer_experiences
BEGIN
    INSERT INTO customer_experience_groups (customer_id, kind, entity, last_at)
    VALUES (NEW.customer_id, NEW.kind, NEW.entity, NEW.at)
    ON CONFLICT (customer_id, kind, entity) DO UPDATE SET last_at = excluded.last_at
    WHERE excluded.last_at > last_at;
END;

-- A group's latest row gone (the retention purge): the group ends at its latest remaining
-- row, or is gone with its last one. Removing an earlier row changes nothing.
CREATE TRIGGER customer_experiences_removed AFTER DELETE ON customer_experiences
WHEN EXISTS (
    SELECT 1 FROM customer_experience_groups
    WHERE customer_id = OLD.customer_id AND kind = OLD.kind AND entity = OLD.entity
      AND last_at = OLD.at)
BEGIN
    DELETE FROM customer_experience_groups
    WHERE customer_id = OLD.customer_id AND kind = OLD.kind AND entity = OLD.entity
      AND NOT EXISTS (
        SELECT 1 FROM customer_experiences
        WHERE customer_id = OLD.customer_id AND kind = OLD.kind AND entity = OLD.entity);
    UPDATE customer_experience_groups SET last_at = (
        SELECT max(at) FROM customer_experiences
        WHERE customer_id = OLD.customer_id AND kind = OLD.kind AND entity = OLD.entity)
    WHERE customer_id = OLD.customer_id AND kind = OLD.kind AND entity = OLD.entity;
END;

-- What is stored already.
INSERT INTO customer_experience_groups (customer_id, kind, entity, last_at)
    SELECT customer_id, kind, entity, max(at) FROM customer_experiences GROUP BY 1, 2, 3;
