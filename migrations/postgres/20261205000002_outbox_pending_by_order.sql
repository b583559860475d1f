-- Supersession asks, for every message a batch queues about an order, which of the customer's
-- older messages about the same order are still pending. This index holds only pending rows, so
-- the probe reads the few that can be superseded rather than the customer's whole history about
-- the order (`outbox_by_order`, which the silent-delay schedule still uses for any status).
CREATE INDEX outbox_pending_by_order ON outbox (customer_id, order_id, priority)
    WHERE status = 'pending';
