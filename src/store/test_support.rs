//! What tests of the store and of its users build on: a fresh database on a real file, a delay
//! notice, and the outreach it leads to.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Changes, DatabaseSettings, EventRecord, IntakeStore, SqliteStore};
use crate::domain::{
    Accepted, Category, Channel, CloudEvent, CustomerId, IdempotencyKey, MessageContent, Offer,
    Outreach, Payload, RiskRecord, RiskScores,
};

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

/// A fresh, migrated database in its own folder.
pub(crate) async fn store() -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = unmigrated_store().await;
    store.migrate().await.expect("migrate");
    (dir, store)
}

/// A fresh database in its own folder with no schema yet, for a migration's test.
pub(crate) async fn unmigrated_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let settings = DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("forewarn.db").display()),
        ..DatabaseSettings::default()
    };
    let store = SqliteStore::connect(&settings).await.expect("connect");
    (dir, store)
}

/// A delay notice for parcel `shp-1` of order `o-1`.
pub(crate) fn delayed() -> Accepted {
    let body = json!({"specversion": "1.0", "id": "e-1", "source": "test",
        "type": "shipment.delayed", "time": "2026-11-23T09:00:00Z",
        "data": {"shipment_id": "shp-1", "order_id": "o-1", "customer_id": "c-1",
                 "carrier": "CJ", "promised_by": "2026-11-25T09:00:00Z",
                 "new_eta": "2026-11-27T09:00:00Z"}});
    let event = CloudEvent::parse(body.to_string().as_bytes(), None).expect("an envelope");
    let payload = Payload::parse(event.event_type, &event.data).expect("a payload");
    Accepted { event, payload }
}

/// An SMS about `event` to `c-1`, scored, with `offer`.
pub(crate) fn outreach(event: &Accepted, offer: Option<Offer>) -> Outreach {
    let customer = CustomerId::parse("c-1").expect("an id");
    let entity = "once:shp-1".to_owned();
    Outreach {
        key: IdempotencyKey::derive("delay", &customer, &entity, Channel::Sms),
        rule_id: "delay".into(),
        customer_id: customer,
        entity,
        category: Category::Transactional,
        priority: 10,
        fallback: Vec::new(),
        event: event.event.key.clone(),
        locale: "en".into(),
        content: MessageContent::Sms {
            to: "+15005550006".into(),
            body: "Your parcel is late.".into(),
        },
        offer,
        risk: Some(RiskRecord {
            scores: RiskScores {
                delay: 0.25,
                churn: 0.75,
            },
            external: [false, false],
            explanation: "{}".into(),
        }),
        not_before: None,
        timezone: None,
        region: None,
        order_id: Some("o-1".into()),
        incident_id: None,
        shipment_id: Some("shp-1".into()),
        urgency: 0.75,
    }
}

/// Records `event` and writes `changes` in one intake transaction.
pub(crate) async fn intake(
    store: &impl IntakeStore,
    event: &Accepted,
    changes: Changes,
    now: DateTime<Utc>,
) {
    let mut tx = store.begin_intake().await.expect("begin");
    tx.record_events(&[EventRecord::of(event, now)])
        .await
        .expect("record");
    tx.apply(&changes, now).await.expect("apply");
    tx.commit().await.expect("commit");
}

/// Takes in [`delayed`] with its one outreach at `now`, as intake would, and returns the event.
pub(crate) async fn queue_delay_notice(store: &impl IntakeStore, now: DateTime<Utc>) -> Accepted {
    let event = delayed();
    let changes = Changes {
        outreach: vec![outreach(&event, None)],
        ..Changes::default()
    };
    intake(store, &event, changes, now).await;
    event
}

/// A fresh, migrated PostgreSQL database of its own (see `ScratchDatabase`), dropped with the
/// guard. A test that cannot have one fails and says why: PostgreSQL is never skipped.
pub(crate) async fn postgres() -> (super::ScratchDatabase, super::PgStore) {
    let (database, store) = unmigrated_postgres().await;
    store.migrate().await.expect("migrate");
    (database, store)
}

/// A fresh PostgreSQL database of its own with no schema yet, for a migration's test.
pub(crate) async fn unmigrated_postgres() -> (super::ScratchDatabase, super::PgStore) {
    let database = super::ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let settings = DatabaseSettings {
        url: database.url(),
        ..DatabaseSettings::default()
    };
    let store = super::PgStore::connect(&settings).await.expect("connect");
    (database, store)
}

/// Plain SQL on either backend, for tests that check what the database keeps beside the rows
/// forewarn writes (the experience summaries its triggers keep).
#[async_trait::async_trait]
pub(crate) trait RawSql: super::Store {
    /// Whether the backend also counts experience groups per day
    /// (`customer_experience_days`).
    const KEEPS_DAYS: bool;
    /// Runs `sql`, which takes no parameters.
    async fn execute(&self, sql: &str);
    /// The rows `sql` selects: three texts and a number each.
    async fn groups(&self, sql: &str) -> Vec<(String, String, String, i64)>;
    /// The rows `sql` selects: a text and two numbers each.
    async fn days(&self, sql: &str) -> Vec<(String, i64, i64)>;
    /// Applies the migrations that have not run yet.
    async fn migrate_rest(&self);
}

/// Implements [`RawSql`] for a store whose pool `$pool()` returns.
macro_rules! raw_sql {
    ($store:ty, $pool:ident, $keeps_days:literal) => {
        #[async_trait::async_trait]
        impl RawSql for $store {
            const KEEPS_DAYS: bool = $keeps_days;

            async fn execute(&self, sql: &str) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(self.$pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }

            async fn groups(&self, sql: &str) -> Vec<(String, String, String, i64)> {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(self.$pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }

            async fn days(&self, sql: &str) -> Vec<(String, i64, i64)> {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(self.$pool())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }

            async fn migrate_rest(&self) {
                self.migrate().await.expect("the later migrations");
            }
        }
    };
}

raw_sql!(SqliteStore, writer, false);
raw_sql!(super::PgStore, pool, true);
