//! What only the SQLite store has to prove: its migrations fill in what older versions wrote,
//! and its one writer serves writes in turn. (The aggregates' behaviour is checked on every
//! backend in `store::tests`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::domain::CustomerId;
use crate::store::test_support::{at, store, unmigrated_store};
use crate::store::{Changes, IncidentStore, IntakeStore, OutboxStore, TimelineStore};

#[tokio::test]
async fn a_write_waits_its_turn_and_back_to_back_transactions_do_not_starve_it() {
    let (_dir, store) = store().await;
    let store = Arc::new(store);
    // Intake under load: one write transaction after another, with no pause between.
    let stop = Arc::new(AtomicBool::new(false));
    let (committed, mut commits) = tokio::sync::watch::channel(0_i64);
    let busy = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut tx = store.begin_write().await.expect("the writer");
                sqlx::query(
                    "INSERT INTO leases (name, owner, until) VALUES ('busy', 'intake', ?1) \
                     ON CONFLICT (name) DO UPDATE SET until = excluded.until",
                )
                .bind(n)
                .execute(&mut *tx)
                .await
                .expect("a write");
                tx.commit().await.expect("a commit");
                n += 1;
                committed.send_replace(n);
            }
        }
    });
    commits.wait_for(|n| *n >= 3).await.expect("busy writing");
    // The dispatcher's claim is a write too: it is served after the transaction in progress
    // and at most the one that started meanwhile, not whenever SQLite's retry loop (sleeps of
    // up to 100 ms) happens to find the lock free — dozens of transactions later.
    let before = *commits.borrow();
    store
        .claim_due(chrono::Utc::now(), Duration::from_secs(60), 10)
        .await
        .expect("a claim");
    let waited_for = *commits.borrow() - before;
    stop.store(true, Ordering::SeqCst);
    busy.await.expect("the writing task");
    assert!(
        waited_for <= 2,
        "the claim waited for {waited_for} other transactions"
    );
}

#[tokio::test]
async fn a_reader_may_not_write() {
    let (_dir, store) = store().await;
    let refused = sqlx::query("DELETE FROM leases")
        .execute(&store.pool)
        .await
        .expect_err("readers are query_only");
    assert!(refused.to_string().contains("readonly"), "{refused}");
}

#[tokio::test]
async fn a_commit_leaves_the_wal_to_the_checkpoint_task_which_copies_it_into_the_file() {
    let (dir, store) = store().await;
    // The writer copies the WAL itself only as a backstop, far above a batch's pages (SQLite's
    // default, 1,000 pages, made every large intake commit copy and sync the file).
    let backstop: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.writer())
        .await
        .expect("the writer's setting");
    assert_eq!(
        backstop,
        i64::from(super::checkpoint::WRITER_BACKSTOP_PAGES)
    );

    // Some 2,500 new pages in one commit: below the backstop, so only the task copies them.
    let mut tx = store.begin_write().await.expect("the writer");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO events (source, id, type, time, data, received_at) \
         SELECT 'test', 'e-' || i, 'shipment.delayed', 0, hex(randomblob(2000)), 0 FROM n",
    )
    .execute(&mut *tx)
    .await
    .expect("a large write");
    tx.commit().await.expect("a commit");

    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&store.pool)
        .await
        .expect("the page count");
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&store.pool)
        .await
        .expect("the page size");
    assert!(pages > 2_500, "{pages} pages");
    let file = dir.path().join("forewarn.db");
    let expected = u64::try_from(pages * page_size).expect("a size");
    let mut waited = 0;
    while std::fs::metadata(&file).expect("the file").len() < expected {
        assert!(
            waited < 200,
            "the WAL was not copied into the file within 10 s"
        );
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh file with the schema as the migrations up to `version` left it: what an older
/// forewarn wrote, for a later migration to carry over.
async fn migrated_to(version: i64) -> (tempfile::TempDir, super::SqliteStore) {
    let (dir, store) = unmigrated_store().await;
    sqlx::migrate!("./migrations/sqlite")
        .run_to(version, store.writer())
        .await
        .expect("the older migrations");
    (dir, store)
}

#[tokio::test]
async fn rows_written_before_later_migrations_are_carried_forward_by_them() {
    // The schema as the forewarn before the event-about columns left it.
    let (_dir, store) = migrated_to(20261123000010).await;
    // Rows as that forewarn wrote them: only the JSON says what they are about, and the risk
    // explanation sits in the message's own row.
    sqlx::query(
        "INSERT INTO events (source, id, type, time, data, received_at) VALUES \
         ('old', 'e-1', 'shipment.delayed', 0, \
          '{\"shipment_id\": \"shp-9\", \"order_id\": \"o-9\"}', 0), \
         ('old', 'e-2', 'outage.started', 0, '{\"incident_id\": \"inc-9\"}', 0)",
    )
    .execute(store.writer())
    .await
    .expect("old events");
    let explanation = r#"{"delay": {"score": 0.5}, "churn": {"score": 0.25}}"#;
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, category, \
         priority, fallback, event_source, event_id, locale, content, status, next_attempt_at, \
         created_at, updated_at, offer, risk) VALUES ('k', 'r', 'c', 'x', 'sms', \
         'transactional', 0, '[]', 'old', 'e-1', 'en', '{}', 'sent', 0, 0, 0, \
         '{\"code\": \"ABCD-EFGH-JKMN\"}', ?1)",
    )
    .bind(explanation)
    .execute(store.writer())
    .await
    .expect("an old message");

    store.migrate().await.expect("the later migrations");

    /// An event's id and the parcel, order and incident it is about.
    type About = (String, Option<String>, Option<String>, Option<String>);
    let about: Vec<About> = sqlx::query_as(
        "SELECT id, shipment_id, order_id, incident_id FROM events WHERE source = 'old' ORDER BY id",
    )
    .fetch_all(store.writer())
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
            .fetch_one(store.writer())
            .await
            .expect("read");
    assert_eq!(
        carried,
        (Some("ABCDEFGHJKMN".into()), Some(0.5), Some(0.25))
    );
    // The explanation moved beside the message, where `explain` and the risk export read it.
    let key = crate::domain::IdempotencyKey::from_stored("k".to_owned());
    assert_eq!(
        store.outreach_risk(&key).await.expect("read"),
        Some(serde_json::from_str(explanation).expect("JSON"))
    );
}

#[tokio::test]
async fn experiences_stored_before_the_summaries_are_summarised_by_the_migration() {
    let (_dir, store) = migrated_to(20261204000015).await;
    crate::store::tests::old_experiences_are_summarised_by_the_migration(&store).await;
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
    .execute(store.writer())
    .await
    .expect("an old customer");
    let migration = include_str!("../../../migrations/sqlite/20261201000013_customer_regions.sql");
    let backfill = migration
        .split_once("ALTER TABLE customers ADD COLUMN regions TEXT;")
        .map(|(_, rest)| rest)
        .expect("the backfill");
    sqlx::raw_sql(sqlx::AssertSqlSafe(backfill))
        .execute(store.writer())
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

#[tokio::test]
async fn a_list_of_keys_is_looked_up_through_the_index_not_by_scanning_the_table() {
    let (_dir, store) = store().await;
    for (columns, select) in [
        ("source, id", super::intake::KNOWN_EVENTS.to_owned()),
        ("source, id", super::outbox::CURRENT_STATES.to_owned()),
        ("dimension, key", format!("{}0", super::snapshot::LANE_DAYS)),
    ] {
        let plan = plan_steps(
            &store,
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN WITH keys({columns}) AS (VALUES ('a', 'b'), ('c', 'd')) \
                 {select}"
            ))),
        )
        .await;
        // The keys are the outer loop and every table is searched through an index: a scan
        // of a table reads every event ever received, once per batch.
        let scans: Vec<&String> = plan
            .iter()
            .filter(|step| step.starts_with("SCAN") && !step.contains("keys"))
            .filter(|step| !step.contains("CONSTANT ROWS"))
            .collect();
        assert!(scans.is_empty(), "{select}\nscans {scans:?} in {plan:?}");
    }
}

#[tokio::test]
async fn a_batch_reads_its_customers_experiences_through_the_indexes_and_summaries() {
    let (_dir, store) = store().await;
    // The only scans: the JSON lists, and `named` (its rows found by key, then kept) where
    // it is read whole, as `n` or `g`.
    for (select, cte, index) in [
        (
            super::snapshot::EXPERIENCES,
            "SCAN n",
            "customer_experiences_by_time",
        ),
        (
            super::snapshot::SHARED_EXPERIENCES,
            "SCAN g",
            "SEARCH g USING PRIMARY KEY (customer_id=?)",
        ),
    ] {
        let mut explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {select}")));
        for json in [r#"["c-1"]"#, r#"["s-1"]"#, r#"["inc-1"]"#] {
            explain = explain.bind(json);
        }
        for n in 0..6 {
            explain = explain.bind(n);
        }
        let plan = plan_steps(&store, explain).await;
        // A scan of a table reads every customer's history, once per batch.
        let scans: Vec<&str> = plan
            .iter()
            .map(String::as_str)
            .filter(|step| step.starts_with("SCAN") && !step.contains("VIRTUAL TABLE"))
            .collect();
        assert_eq!(scans, [cte], "{select}\n{plan:#?}");
        assert!(plan.iter().any(|step| step.contains(index)), "{plan:#?}");
    }
}

/// The steps of a plan, `explain` being `EXPLAIN QUERY PLAN …` with its parameters bound.
async fn plan_steps(
    store: &super::SqliteStore,
    explain: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Vec<String> {
    use sqlx::Row;
    explain
        .fetch_all(store.writer())
        .await
        .expect("a plan")
        .iter()
        .map(|row| row.try_get("detail").expect("a step"))
        .collect()
}
