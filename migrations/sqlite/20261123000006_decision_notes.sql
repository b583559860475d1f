-- Why a customer did not get (all of) a message: a matching rule that sent nothing, an offer
-- withheld, a message held for quiet hours. `forewarn explain` reads these beside the outbox.
-- Written only when something was held back, so most events write none.
CREATE TABLE decision_notes (
    id            INTEGER PRIMARY KEY,
    customer_id   TEXT,
    at            INTEGER NOT NULL,
    event_source  TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    rule_id       TEXT    NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('skipped', 'offer_withheld', 'deferred')),
    reason        TEXT    NOT NULL,
    detail        TEXT    NOT NULL
);
CREATE INDEX decision_notes_by_customer ON decision_notes (customer_id, at);
