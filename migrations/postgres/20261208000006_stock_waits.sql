-- Back in stock: who waits for which item. A backordered order's lines (`order.backordered`)
-- and a customer's own request (`stock.watch_requested`, order_id '') each make a wait; the
-- order's cancellation or first parcel ends its waits, and `inventory.restocked` reaches every
-- customer waiting for the SKU once, then ends them.
CREATE TABLE stock_waits (
    sku         TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    order_id    TEXT    NOT NULL DEFAULT '',
    since       BIGINT  NOT NULL,
    PRIMARY KEY (sku, customer_id, order_id)
);
CREATE INDEX stock_waits_by_order ON stock_waits (order_id) WHERE order_id <> '';
