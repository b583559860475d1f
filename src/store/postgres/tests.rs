//! What PostgreSQL must hold with many writers, each proven with concurrent transactions on a
//! fresh database: a redelivered event decided once, no lost update of a customer's record,
//! claims that never overlap.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::PgStore;
use crate::domain::{CustomerDoc, CustomerId, DiscountCode, Offer};
use crate::store::test_support::{at, delayed, outreach, postgres, unmigrated_postgres};
use crate::store::tests::{
    assert_summaries_match, old_experiences_are_summarised_by_the_migration,
};
use crate::store::{Changes, CodeStore, EventRecord, IntakeStore, OutboxReads, OutboxStore, Refs};

/// A fresh database with the schema as the migrations up to `version` left it: what an
/// older forewarn wrote, for a later migration to carry over.
async fn migrated_to(version: i64) -> (super::ScratchDatabase, PgStore) {
    let (database, store) = unmigrated_postgres().await;
    sqlx::migrate!("./migrations/postgres")
        .run_to(version, store.pool())
        .await
        .expect("the older migrations");
    (database, store)
}

/// Waits until some session waits for a lock (the other transaction of a test is blocked).
async fn wait_until_blocked(store: &PgStore) {
    let blocked = async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the other transaction to wait for a lock");
}

/// A process paused inside its intake transaction holds the event's lock; the server ends the
/// stalled transaction, the other process takes the event, and the paused one's commit fails
/// when it wakes (its batch is redelivered and found taken).
#[tokio::test]
async fn a_transaction_stalled_by_a_paused_process_is_ended_and_its_locks_freed() {
    let (database, _) = postgres().await;
    let settings = crate::store::DatabaseSettings {
        url: database.url(),
        stalled_transaction_timeout: Duration::from_secs(1),
        ..crate::store::DatabaseSettings::default()
    };
    let (paused, other) = (
        PgStore::connect(&settings).await.expect("a process"),
        PgStore::connect(&settings).await.expect("another"),
    );
    let record = EventRecord::of(&delayed(), at("2026-11-23T09:00:01Z"));
    let mut stalled = paused.begin_intake().await.expect("begin");
    stalled
        .record_events(std::slice::from_ref(&record))
        .await
        .expect("record");

    let mut tx = other.begin_intake().await.expect("begin");
    let fresh = tx.record_events(&[record]).await.expect("record");
    tx.commit().await.expect("commit");
    assert_eq!(fresh.len(), 1, "the other process takes the event");
    assert!(
        stalled.commit().await.is_err(),
        "the paused process's transaction was ended"
    );
}

#[tokio::test]
async fn the_same_event_taken_by_two_processes_at_once_is_decided_by_one() {
    let (_db, store) = postgres().await;
    let event = delayed();
    let now = at("2026-11-23T09:00:01Z");
    let record = EventRecord::of(&event, now);
    let offer = Offer {
        code: DiscountCode::from_stored("AAAABBBBCCCC".into()),
        percent: 10,
        expires_at: at("2026-12-23T09:00:00Z"),
    };

    let mut first = store.begin_intake().await.expect("begin");
    let fresh = first
        .record_events(std::slice::from_ref(&record))
        .await
        .expect("record");
    assert_eq!(fresh.len(), 1, "the first process takes the event");
    // The second process receives the same (redelivered) event while the first decides it.
    let second = tokio::spawn({
        let (store, record) = (store.clone(), record.clone());
        async move {
            let mut tx = store.begin_intake().await.expect("begin");
            let fresh = tx.record_events(&[record]).await.expect("record");
            tx.commit().await.expect("commit");
            fresh
        }
    });
    wait_until_blocked(&store).await;
    let changes = Changes {
        outreach: vec![outreach(&event, Some(offer))],
        ..Changes::default()
    };
    first.apply(&changes, now).await.expect("apply");
    first.commit().await.expect("commit");

    assert!(
        second.await.expect("the second process").is_empty(),
        "the second process finds the event taken and decides nothing"
    );
    let counts = store.outbox_counts().await.expect("counts");
    assert_eq!(counts.pending, 1, "one outreach");
    let code = DiscountCode::from_stored("AAAABBBBCCCC".into());
    assert!(store.discount_code(&code).await.expect("read").is_some());
}

#[tokio::test]
async fn a_batch_about_a_customer_another_is_changing_reads_the_change_first() {
    let (_db, store) = postgres().await;
    let customer = CustomerId::parse("c-1").expect("an id");
    let doc = |name: &str| {
        CustomerDoc::from_object(
            json!({"id": "c-1", "name": name})
                .as_object()
                .cloned()
                .expect("an object"),
        )
    };
    let refs = Refs {
        customers: [customer.clone()].into(),
        ..Refs::default()
    };
    let now = at("2026-11-23T09:00:00Z");

    let mut first = store.begin_intake().await.expect("begin");
    first.load(&refs).await.expect("load");
    // A second batch about the same customer starts while the first is deciding.
    let second = tokio::spawn({
        let (store, refs) = (store.clone(), refs.clone());
        async move {
            let mut tx = store.begin_intake().await.expect("begin");
            let snapshot = tx.load(&refs).await.expect("load");
            tx.commit().await.expect("commit");
            snapshot
        }
    });
    wait_until_blocked(&store).await;
    let changes = Changes {
        customers: vec![(customer.clone(), doc("Jisoo"))],
        ..Changes::default()
    };
    first.apply(&changes, now).await.expect("apply");
    first.commit().await.expect("commit");

    // It read the record as the first batch left it, so what it writes back keeps that.
    let snapshot = second.await.expect("the second batch");
    let seen = snapshot.customers.get(&customer).expect("the customer");
    assert_eq!(seen.as_object()["name"], "Jisoo");
}

#[tokio::test]
async fn dispatchers_claiming_at_once_never_take_the_same_message() {
    let (_db, store) = postgres().await;
    let event = delayed();
    let now = at("2026-11-23T09:00:01Z");
    let messages = 120;
    let outreach: Vec<_> = (0..messages)
        .map(|i| {
            let mut o = outreach(&event, None);
            o.entity = format!("once:parcel-{i}");
            o.key = crate::domain::IdempotencyKey::derive(
                "delay",
                &o.customer_id,
                &o.entity,
                crate::domain::Channel::Sms,
            );
            o
        })
        .collect();
    crate::store::test_support::intake(
        &store,
        &event,
        Changes {
            outreach,
            ..Changes::default()
        },
        now,
    )
    .await;

    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_due(now, Duration::from_secs(60), 50)
                    .await
                    .expect("claim")
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for claimer in claimers {
        for message in claimer.await.expect("a claimer") {
            assert!(
                seen.insert(message.id),
                "message {} claimed twice",
                message.id
            );
        }
    }
    assert_eq!(seen.len(), messages, "every message claimed once");
}

#[tokio::test]
async fn a_message_written_with_its_risk_explanation_inline_keeps_it_after_the_move() {
    // The schema as the forewarn before `outbox_risk` left it, and a message it wrote.
    let (_database, store) = migrated_to(20261205000002).await;
    let explanation = r#"{"delay": {"score": 0.5}, "churn": {"score": 0.25}}"#;
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, category, \
         priority, fallback, event_source, event_id, locale, content, status, next_attempt_at, \
         created_at, updated_at, risk) VALUES ('k', 'r', 'c', 'x', 'sms', 'transactional', 0, \
         '[]', 'old', 'e-1', 'en', '{}', 'sent', 0, 0, 0, $1)",
    )
    .bind(explanation)
    .execute(store.pool())
    .await
    .expect("an old message");

    store.migrate().await.expect("the later migrations");

    let key = crate::domain::IdempotencyKey::from_stored("k".to_owned());
    assert_eq!(
        crate::store::TimelineStore::outreach_risk(&store, &key)
            .await
            .expect("read"),
        Some(serde_json::from_str(explanation).expect("JSON"))
    );
}

#[tokio::test]
async fn experiences_stored_before_the_summaries_are_summarised_by_the_migration() {
    let (_database, store) = migrated_to(20261205000003).await;
    old_experiences_are_summarised_by_the_migration(&store).await;
}

/// Inserts one experience row in a transaction left open.
async fn open_insert(
    store: &PgStore,
    entity: &str,
    when: i64,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO customer_experiences (customer_id, kind, entity, at) \
         VALUES ('c-1', 'delay', $1, $2)",
    )
    .bind(entity)
    .bind(when)
    .execute(&mut *tx)
    .await
    .expect("insert");
    tx
}

#[tokio::test]
async fn two_writers_of_one_new_group_count_it_once() {
    let (_db, store) = postgres().await;
    let first = open_insert(&store, "s-1", 1_000).await;
    // A second process sees the same delay at once, a day later.
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let tx = open_insert(&store, "s-1", 90_000_000).await;
            tx.commit().await.expect("commit");
        }
    });
    wait_until_blocked(&store).await;
    first.commit().await.expect("commit");
    second.await.expect("the second writer");
    assert_summaries_match(&store).await;
}

#[tokio::test]
async fn a_purge_and_a_new_experience_of_one_group_at_once_keep_the_group() {
    let (_db, store) = postgres().await;
    let old = open_insert(&store, "s-1", 1000).await;
    old.commit().await.expect("an old experience");
    // The purge takes the group's only row; before it commits, the same delay recurs.
    let mut purge = store.pool().begin().await.expect("begin");
    sqlx::query("DELETE FROM customer_experiences WHERE at < 2000")
        .execute(&mut *purge)
        .await
        .expect("purge");
    let recurring = tokio::spawn({
        let store = store.clone();
        async move {
            let tx = open_insert(&store, "s-1", 200_000_000).await;
            tx.commit().await.expect("commit");
        }
    });
    wait_until_blocked(&store).await;
    purge.commit().await.expect("commit");
    recurring.await.expect("the recurring delay");
    assert_summaries_match(&store).await;
}
