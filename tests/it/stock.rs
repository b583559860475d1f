//! Back in stock: an item available again reaches everyone waiting for it — a backordered line
//! of an order still open, or a request to be told — once per customer and item.

use serde_json::{json, Value};

use crate::database::OutboxRow;
use crate::helpers::*;

fn customer(id: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("cust-{id}"), "source": "test/crm",
           "type": "customer.upserted",
           "data": {"id": id, "name": "김지수", "locale": "ko-KR", "timezone": "Asia/Seoul",
                    "phone": "+821012345678", "channels": ["sms"], "consent": {"sms": true}}})
}

fn backordered(order: &str, customer: &str, sku: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("bo-{order}"), "source": "test/inventory",
           "type": "order.backordered",
           "data": {"order_id": order, "customer_id": customer,
                    "items": [{"sku": sku, "name": "러닝화 270"}]}})
}

fn restocked(id: &str, sku: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test/inventory",
           "type": "inventory.restocked",
           "data": {"sku": sku, "name": "러닝화 270", "quantity": 40,
                    "stores": [{"id": "st-12", "name": "강남점", "address": "서울 강남구 테헤란로 1"}],
                    "url": "https://shop.example/p/SHOE-270"}})
}

/// The customers a back-in-stock message was queued for, in id order.
async fn told(app: &App) -> Vec<String> {
    let mut customers: Vec<String> = app
        .db
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.rule_id == "back-in-stock")
        .map(|m| m.customer_id)
        .collect();
    customers.sort();
    customers
}

#[tokio::test]
async fn an_item_back_in_stock_reaches_everyone_still_waiting_for_it_once() {
    let app = spawn_app_queueing_only().await;
    for id in ["c-1", "c-2", "c-3", "c-4", "c-5"] {
        app.publish(&customer(id)).await;
    }
    // c-1 waits through an order, twice over (two orders with the same item); c-2 asked to be
    // told; c-3's order was cancelled and c-4's has shipped: they wait no more. c-5 waits for
    // another item.
    app.publish(&backordered("o-1", "c-1", "SHOE-270")).await;
    app.publish(&backordered("o-1b", "c-1", "SHOE-270")).await;
    app.publish(
        &json!({"specversion": "1.0", "id": "watch-2", "source": "test/web",
        "type": "stock.watch_requested", "data": {"customer_id": "c-2", "sku": "SHOE-270"}}),
    )
    .await;
    app.publish(&backordered("o-3", "c-3", "SHOE-270")).await;
    app.publish(
        &json!({"specversion": "1.0", "id": "cancel-3", "source": "test/checkout",
        "type": "order.cancelled",
        "data": {"order_id": "o-3", "customer_id": "c-3", "reason": "customer_request"}}),
    )
    .await;
    app.publish(&backordered("o-4", "c-4", "SHOE-270")).await;
    app.publish(
        &json!({"specversion": "1.0", "id": "ship-4", "source": "test/fulfilment",
        "type": "shipment.created",
        "data": {"shipment_id": "s-4", "order_id": "o-4", "customer_id": "c-4",
                 "carrier": "CJ", "tracking_number": "1", "promised_by": "2026-12-09T09:00:00Z",
                 "destination": {"region": "kr-seoul", "postal_code": "06236"}}}),
    )
    .await;
    app.publish(&backordered("o-5", "c-5", "SOCK-3P")).await;
    app.wait_intake_idle().await;
    assert!(told(&app).await.is_empty(), "nothing is back yet");

    app.publish(&restocked("restock-1", "SHOE-270")).await;
    app.wait_intake_idle().await;
    assert_eq!(told(&app).await, ["c-1", "c-2"]);
    let messages: Vec<OutboxRow> = app
        .db
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.rule_id == "back-in-stock")
        .collect();
    assert_eq!(
        messages.len(),
        2,
        "once per customer and item: {messages:?}"
    );

    // Restocked again: everyone waiting has been told, and nobody waits any more.
    app.publish(&restocked("restock-2", "SHOE-270")).await;
    app.wait_intake_idle().await;
    assert_eq!(told(&app).await, ["c-1", "c-2"]);
    // The other item's customer is still waiting, and hears when it is back.
    app.publish(&restocked("restock-3", "SOCK-3P")).await;
    app.wait_intake_idle().await;
    assert_eq!(told(&app).await, ["c-1", "c-2", "c-5"]);
}
