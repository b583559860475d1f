//! The store's aggregates driven step by step on a real SQLite file: what one verb writes,
//! the next one reads.

use chrono::Duration;
use serde_json::json;

use crate::domain::{
    Channel, CustomerId, DiscountCode, EntityId, IdempotencyKey, Offer, Redemption, RiskScores,
    Shipment, ShipmentStatus,
};
use crate::store::test_support::{at, delayed, intake, outreach, store};
use crate::store::{
    AttemptRecord, AttemptResult, Changes, CodeStore, IncidentStore, IntakeStore, OutboxStore,
};

#[tokio::test]
async fn an_event_is_stored_with_the_parcel_and_order_it_is_about() {
    let (_dir, store) = store().await;
    let event = delayed();
    intake(
        &store,
        &event,
        Changes::default(),
        at("2026-11-23T09:00:01Z"),
    )
    .await;
    let stored = store
        .event(&event.event.key)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.about.shipment_id.as_ref().map(EntityId::as_str),
        Some("shp-1")
    );
    assert_eq!(
        stored.about.order_id.as_ref().map(EntityId::as_str),
        Some("o-1")
    );
    assert_eq!(stored.about.incident_id, None);
    // What is stored parses back into the event that was accepted.
    let again = stored.accepted().expect("parses");
    assert_eq!(again.about(), event.about());
    assert_eq!(again.event.data, event.event.data);
}

#[tokio::test]
async fn a_claimed_message_carries_its_scores_and_how_its_parcel_stands_now() {
    let (_dir, store) = store().await;
    let event = delayed();
    let now = at("2026-11-23T09:00:01Z");
    let changes = Changes {
        outreach: vec![outreach(&event, None)],
        ..Changes::default()
    };
    intake(&store, &event, changes, now).await;
    // The parcel arrives before the message is claimed.
    let delivered = Shipment {
        id: EntityId::parse("shp-1").expect("an id"),
        order_id: EntityId::parse("o-1").ok(),
        customer_id: CustomerId::parse("c-1").ok(),
        carrier: Some("CJ".into()),
        tracking_number: None,
        tracking_url: None,
        promised_by: Some(at("2026-11-25T09:00:00Z")),
        new_eta: None,
        status: ShipmentStatus::Delivered,
        region: None,
        last_scan_at: None,
        delivered_at: Some(at("2026-11-23T10:00:00Z")),
        exception_kind: None,
        updated_at: at("2026-11-23T10:00:00Z"),
    };
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(
        &Changes {
            shipments: vec![delivered],
            ..Changes::default()
        },
        now,
    )
    .await
    .expect("apply");
    tx.commit().await.expect("commit");

    let claimed = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let message = &claimed[0];
    assert_eq!(
        message.risk,
        Some(RiskScores {
            delay: 0.25,
            churn: 0.75
        })
    );
    let current = message.current.as_ref().expect("the event's state");
    assert_eq!(current.event_type, "shipment.delayed");
    assert_eq!(current.shipment_status.as_deref(), Some("delivered"));
    assert_eq!(current.order_status, None, "no order record was written");
    assert!(current.order_shipped, "a parcel of its order exists");
    // Nothing else is due, and a claim under lease is not claimed again.
    let again = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_cancelled_message_voids_its_code_and_a_live_code_is_redeemed_once() {
    let (_dir, store) = store().await;
    let now = at("2026-11-23T09:00:01Z");
    let event = delayed();
    let offer = |code: &str| Offer {
        code: DiscountCode::from_stored(code.into()),
        percent: 10,
        expires_at: now + Duration::days(30),
    };
    let mut second = outreach(&event, Some(offer("DDDDEEEEFFFF")));
    second.entity = "once:other".into();
    second.key = IdempotencyKey::derive("delay", &second.customer_id, "once:other", Channel::Sms);
    let changes = Changes {
        outreach: vec![outreach(&event, Some(offer("AAAABBBBCCCC"))), second],
        ..Changes::default()
    };
    intake(&store, &event, changes, now).await;
    let claimed = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    let cancelled = claimed
        .iter()
        .find(|m| m.offer.as_ref().map(|o| o.code.as_stored()) == Some("AAAABBBBCCCC"))
        .expect("the first message");
    let later = now + Duration::seconds(1);
    store
        .record_attempts(&[AttemptRecord {
            outbox_id: cancelled.id,
            attempt: cancelled.attempt,
            gateway: "sandbox".into(),
            started_at: later,
            finished_at: later,
            result: AttemptResult::Cancelled {
                reason: "the parcel was delivered".into(),
            },
            channel: Channel::Sms,
            effect: None,
            switch: None,
        }])
        .await
        .expect("record");

    let void = DiscountCode::from_stored("AAAABBBBCCCC".into());
    assert_eq!(
        store
            .discount_code(&void)
            .await
            .expect("read")
            .expect("issued")
            .voided_at,
        Some(later)
    );
    assert_eq!(
        store
            .redeem_code(&void, None, None, later)
            .await
            .expect("redeem"),
        Redemption::Void { at: later }
    );
    let live = DiscountCode::from_stored("DDDDEEEEFFFF".into());
    assert!(matches!(
        store
            .redeem_code(&live, Some("c-1"), Some("o-9"), later)
            .await
            .expect("redeem"),
        Redemption::Redeemed { percent: 10, .. }
    ));
    assert_eq!(
        store
            .redeem_code(&live, Some("c-1"), Some("o-10"), later)
            .await
            .expect("redeem"),
        Redemption::AlreadyRedeemed { at: later }
    );
}

#[tokio::test]
async fn rows_written_before_the_about_columns_are_filled_in_by_their_migration() {
    let (_dir, store) = store().await;
    // Rows as an older forewarn wrote them: only the JSON says what they are about.
    sqlx::query(
        "INSERT INTO events (source, id, type, time, data, received_at) VALUES \
         ('old', 'e-1', 'shipment.delayed', 0, \
          '{\"shipment_id\": \"shp-9\", \"order_id\": \"o-9\"}', 0), \
         ('old', 'e-2', 'outage.started', 0, '{\"incident_id\": \"inc-9\"}', 0)",
    )
    .execute(store.pool())
    .await
    .expect("old events");
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, category, \
         priority, fallback, event_source, event_id, locale, content, status, next_attempt_at, \
         created_at, updated_at, offer, risk) VALUES ('k', 'r', 'c', 'x', 'sms', \
         'transactional', 0, '[]', 'old', 'e-1', 'en', '{}', 'sent', 0, 0, 0, \
         '{\"code\": \"ABCD-EFGH-JKMN\"}', '{\"delay\": {\"score\": 0.5}, \"churn\": {\"score\": 0.25}}')",
    )
    .execute(store.pool())
    .await
    .expect("an old message");

    let migration =
        include_str!("../../../migrations/sqlite/20261201000011_event_about_columns.sql");
    // Its statements after the comment that introduces the backfill.
    let backfill = migration
        .split("-- Rows written before this migration")
        .nth(1)
        .and_then(|rest| rest.split_once('\n'))
        .map(|(_, statements)| statements)
        .expect("the backfill");
    sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
        .execute(store.pool())
        .await
        .expect("backfill");

    /// An event's id and the parcel, order and incident it is about.
    type About = (String, Option<String>, Option<String>, Option<String>);
    let about: Vec<About> = sqlx::query_as(
        "SELECT id, shipment_id, order_id, incident_id FROM events WHERE source = 'old' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .expect("read");
    assert_eq!(
        about,
        vec![
            ("e-1".into(), Some("shp-9".into()), Some("o-9".into()), None),
            ("e-2".into(), None, None, Some("inc-9".into())),
        ]
    );
    let carried: (Option<String>, Option<f64>, Option<f64>) =
        sqlx::query_as("SELECT discount_code, delay_score, churn_score FROM outbox")
            .fetch_one(store.pool())
            .await
            .expect("read");
    assert_eq!(
        carried,
        (Some("ABCDEFGHJKMN".into()), Some(0.5), Some(0.25))
    );
}

#[tokio::test]
async fn an_incident_in_a_region_takes_in_the_regions_inside_it_for_old_and_new_customers() {
    let (_dir, store) = store().await;
    let customer = |id: &str, region: &str| {
        (
            CustomerId::parse(id).expect("an id"),
            crate::domain::CustomerDoc::from_object(
                json!({"id": id, "region": region})
                    .as_object()
                    .cloned()
                    .expect("an object"),
            ),
        )
    };
    let changes = Changes {
        customers: vec![
            customer("c-1", "kr"),
            customer("c-2", "kr-seoul"),
            customer("c-3", "krx"),
            customer("c-4", "us-ny"),
        ],
        ..Changes::default()
    };
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(&changes, at("2026-11-23T09:00:00Z"))
        .await
        .expect("apply");
    tx.commit().await.expect("commit");
    // One customer as an older forewarn wrote it: no ancestry yet, until the migration's
    // backfill runs.
    sqlx::query(
        "INSERT INTO customers (id, doc, region, updated_at) \
         VALUES ('c-5', '{\"id\": \"c-5\"}', 'kr-busan-haeundae', 0)",
    )
    .execute(store.pool())
    .await
    .expect("an old customer");
    let migration = include_str!("../../../migrations/sqlite/20261201000013_customer_regions.sql");
    let backfill = migration
        .split_once("ALTER TABLE customers ADD COLUMN regions TEXT;")
        .map(|(_, rest)| rest)
        .expect("the backfill");
    sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
        .execute(store.pool())
        .await
        .expect("backfill");

    let in_regions = |regions: &[&str]| {
        crate::store::Audience::Affected(crate::domain::Affected {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            ..crate::domain::Affected::default()
        })
    };
    let count = |audience| {
        let store = &store;
        async move { store.audience_count(&audience).await.expect("count") }
    };
    // `kr` takes in kr-seoul and kr-busan-haeundae, not `krx`.
    assert_eq!(count(in_regions(&["kr"])).await, 3);
    assert_eq!(count(in_regions(&["kr-busan"])).await, 1);
    assert_eq!(count(in_regions(&["kr-seoul", "us"])).await, 2);
    assert_eq!(count(in_regions(&["seoul"])).await, 0);
    assert_eq!(count(in_regions(&[])).await, 5, "nobody named: everyone");
}
