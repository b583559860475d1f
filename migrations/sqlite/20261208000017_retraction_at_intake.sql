-- Retraction as soon as the problem is gone: the batch that delivers a parcel, cancels an order
-- or resolves an incident cancels the messages still waiting about it in its own transaction
-- (`policy::retraction`). The outbox says which parcel a message is about, as it already says
-- the order and the incident, and partial indexes over the waiting rows find them by parcel and
-- by order (`outbox_by_incident` already leads with the incident and the status): most of the
-- outbox is sent, and a delivery must not scan it.
ALTER TABLE outbox ADD COLUMN shipment_id TEXT;
UPDATE outbox SET shipment_id = (
    SELECT e.shipment_id FROM events e
     WHERE e.source = outbox.event_source AND e.id = outbox.event_id)
 WHERE status = 'pending';
CREATE INDEX outbox_pending_by_shipment ON outbox (shipment_id) WHERE status = 'pending';
CREATE INDEX outbox_pending_by_order_id ON outbox (order_id) WHERE status = 'pending';
