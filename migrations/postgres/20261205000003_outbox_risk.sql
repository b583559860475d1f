-- The risk explanation (scores, models, every feature's value and contribution: ~1.1 KB of a
-- ~1.6 KB row) moves out of the outbox into a table of its own. It is written once and read
-- only by `explain` and the risk export, while the outbox row gets a new version at every claim
-- and every recorded attempt: carrying the explanation through those versions tripled the bytes
-- the dispatcher wrote per message.
CREATE TABLE outbox_risk (
    outbox_id    BIGINT PRIMARY KEY REFERENCES outbox (id),
    explanation  TEXT   NOT NULL
);

INSERT INTO outbox_risk (outbox_id, explanation)
    SELECT id, risk FROM outbox WHERE risk IS NOT NULL;

ALTER TABLE outbox DROP COLUMN risk;
