-- The churn feature counts a customer's distinct (kind, entity) bad experiences in the 90 days
-- before each decision. Counted from `customer_experiences` row by row, a batch's read grew
-- with every customer's history: 99 ms a batch of about 150 customers with 300 experiences
-- each. Two summaries, kept by the triggers below like an index is kept, let a batch count
-- whole days from one row per day and read rows only at the edges of its window:
--
-- * `customer_experience_groups`: each (customer, kind, entity) once, with its latest time;
-- * `customer_experience_days`: per customer and day, how many groups have their latest
--   experience on that day (days since 1970-01-01 UTC, as `shipment_outcome_days`).
--
-- The triggers take the same transaction-scoped advisory lock per customer that an intake
-- batch already holds (`customer:<id>`, `store/postgres/snapshot.rs`), in sorted order, so a
-- purge and a batch touching one customer's groups queue up rather than both reading the
-- same latest time and both moving it.

CREATE TABLE customer_experience_groups (
    customer_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    entity       TEXT    NOT NULL,
    last_at      BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, kind, entity)
);
-- A batch's edges: the groups that ended on a given stretch of a customer's days.
CREATE INDEX customer_experience_groups_by_time
    ON customer_experience_groups (customer_id, last_at);
-- The shipments a batch names, found without reading every group of its customers.
CREATE INDEX customer_experience_groups_by_entity ON customer_experience_groups (entity);

CREATE TABLE customer_experience_days (
    customer_id  TEXT    NOT NULL,
    day          BIGINT  NOT NULL,
    groups       BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, day)
);

-- A batch's edges: a customer's experiences on a stretch of time, whatever their kind.
CREATE INDEX customer_experiences_by_time ON customer_experiences (customer_id, at);

-- Every customer a statement touched, locked in one sorted pass.
CREATE FUNCTION lock_experience_customers(customers TEXT[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(k)) FROM
        (SELECT DISTINCT hashtextextended('customer:' || c, 0) AS k
         FROM unnest(customers) c ORDER BY k) l;
$$;

-- New rows: a group seen for the first time counts on its day; a group seen again later moves
-- from its old latest day to the new one. Rows older than a group's latest change nothing.
CREATE FUNCTION customer_experiences_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lock_experience_customers(ARRAY(SELECT DISTINCT customer_id FROM added));
    WITH latest AS (
        SELECT customer_id, kind, entity, max(at) AS at FROM added GROUP BY 1, 2, 3
    ), changed AS (
        -- Group by group through the key, whatever the planner guesses: this plan is made
        -- once per session, often while the table is empty, and kept (PL/pgSQL caches it).
        -- `OFFSET 0` keeps the subquery from being merged into a join that may hash the
        -- whole table: measured, 26 ms a batch at 150k groups.
        SELECT l.customer_id, l.kind, l.entity, l.at, g.last_at AS was_at
        FROM latest l LEFT JOIN LATERAL (
            SELECT last_at FROM customer_experience_groups g
            WHERE g.customer_id = l.customer_id AND g.kind = l.kind AND g.entity = l.entity
            OFFSET 0
        ) g ON true
        WHERE g.last_at IS NULL OR l.at > g.last_at
    ), written AS (
        INSERT INTO customer_experience_groups (customer_id, kind, entity, last_at)
        SELECT customer_id, kind, entity, at FROM changed ORDER BY 1, 2, 3
        ON CONFLICT (customer_id, kind, entity) DO UPDATE SET last_at = excluded.last_at
    ), moves AS (
        SELECT customer_id, at / 86400000 AS day, 1 AS groups FROM changed
        UNION ALL
        SELECT customer_id, was_at / 86400000, -1 FROM changed WHERE was_at IS NOT NULL
    )
    INSERT INTO customer_experience_days AS d (customer_id, day, groups)
    SELECT customer_id, day, sum(groups) FROM moves GROUP BY 1, 2 HAVING sum(groups) <> 0
    ORDER BY 1, 2
    ON CONFLICT (customer_id, day) DO UPDATE SET groups = d.groups + excluded.groups;
    RETURN NULL;
END $$;

-- Rows gone (the retention purge): a group with none left stops counting; a group whose
-- latest row went moves back to the day of its latest remaining one. Group by group, each
-- change one statement by key: a purge removes a few thousand rows a run, and a join planned
-- on tables never analyzed could read the whole summary instead.
CREATE FUNCTION customer_experiences_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    PERFORM lock_experience_customers(ARRAY(SELECT DISTINCT customer_id FROM removed));
    FOR g IN
        SELECT r.customer_id, r.kind, r.entity, s.last_at AS was_at,
            (SELECT max(e.at) FROM customer_experiences e
             WHERE e.customer_id = r.customer_id AND e.kind = r.kind AND e.entity = r.entity) AS at
        FROM (SELECT DISTINCT customer_id, kind, entity FROM removed) r
        CROSS JOIN LATERAL (
            SELECT last_at FROM customer_experience_groups s
            WHERE s.customer_id = r.customer_id AND s.kind = r.kind AND s.entity = r.entity
            OFFSET 0
        ) s
        ORDER BY 1, 2, 3
    LOOP
        CONTINUE WHEN g.at IS NOT DISTINCT FROM g.was_at;
        IF g.at IS NULL THEN
            DELETE FROM customer_experience_groups
            WHERE customer_id = g.customer_id AND kind = g.kind AND entity = g.entity;
        ELSE
            UPDATE customer_experience_groups SET last_at = g.at
            WHERE customer_id = g.customer_id AND kind = g.kind AND entity = g.entity;
            INSERT INTO customer_experience_days AS d (customer_id, day, groups)
            VALUES (g.customer_id, g.at / 86400000, 1)
            ON CONFLICT (customer_id, day) DO UPDATE SET groups = d.groups + 1;
        END IF;
        UPDATE customer_experience_days SET groups = groups - 1
        WHERE customer_id = g.customer_id AND day = g.was_at / 86400000;
        DELETE FROM customer_experience_days
        WHERE customer_id = g.customer_id AND day = g.was_at / 86400000 AND groups = 0;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER customer_experiences_added AFTER INSERT ON customer_experiences
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION customer_experiences_added();
CREATE TRIGGER customer_experiences_removed AFTER DELETE ON customer_experiences
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION customer_experiences_removed();

-- What is stored already.
INSERT INTO customer_experience_groups (customer_id, kind, entity, last_at)
    SELECT customer_id, kind, entity, max(at) FROM customer_experiences GROUP BY 1, 2, 3;
INSERT INTO customer_experience_days (customer_id, day, groups)
    SELECT customer_id, last_at / 86400000, count(*) FROM customer_experience_groups GROUP BY 1, 2;
