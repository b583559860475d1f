-- What an event is about, and what an outbox row carries, as columns written at intake, so
-- that the claim, retraction and the risk export join on columns instead of reading JSON:
-- knowing which field of which event names a parcel is the catalogue's job, done once in Rust.
ALTER TABLE events ADD COLUMN shipment_id TEXT;
ALTER TABLE events ADD COLUMN order_id TEXT;
ALTER TABLE events ADD COLUMN incident_id TEXT;

-- The discount code (in its stored form, without dashes) and the scores the row was decided
-- with.
ALTER TABLE outbox ADD COLUMN discount_code TEXT;
ALTER TABLE outbox ADD COLUMN delay_score REAL;
ALTER TABLE outbox ADD COLUMN churn_score REAL;

-- Rows written before this migration: filled in once from the JSON they carry.
UPDATE events SET
    shipment_id = json_extract(data, '$.shipment_id'),
    order_id = json_extract(data, '$.order_id'),
    incident_id = json_extract(data, '$.incident_id')
 WHERE json_valid(data);
UPDATE outbox SET discount_code = replace(json_extract(offer, '$.code'), '-', '')
 WHERE offer IS NOT NULL AND json_valid(offer);
UPDATE outbox SET
    delay_score = CAST(json_extract(risk, '$.delay.score') AS REAL),
    churn_score = CAST(json_extract(risk, '$.churn.score') AS REAL)
 WHERE risk IS NOT NULL AND json_valid(risk);
