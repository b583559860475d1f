-- One lease primitive for everything only one process may do at a time: a schedule's tick
-- (`schedule:<name>`), a fan-out's pages (`fanout:<id>`), and whatever comes next. A process
-- takes a lease only when it is free, expired or already its own; it extends it as it works,
-- commits only while it still holds it, and deletes it when done or handing it back.
CREATE TABLE leases (
    name   TEXT    PRIMARY KEY,
    owner  TEXT    NOT NULL,
    until  INTEGER NOT NULL
);

INSERT INTO leases (name, owner, until)
SELECT 'schedule:' || schedule, lease_owner, lease_until FROM schedule_state
 WHERE lease_owner IS NOT NULL AND lease_until IS NOT NULL;
INSERT INTO leases (name, owner, until)
SELECT 'fanout:' || id, owner, lease_until FROM fanouts
 WHERE owner IS NOT NULL AND lease_until IS NOT NULL;

ALTER TABLE schedule_state DROP COLUMN lease_owner;
ALTER TABLE schedule_state DROP COLUMN lease_until;
ALTER TABLE fanouts DROP COLUMN owner;
ALTER TABLE fanouts DROP COLUMN lease_until;
