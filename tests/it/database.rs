//! The test's own window on forewarn's database: what a test reads back after forewarn wrote
//! it, and the few faults a test injects behind its back.
//!
//! Tests ask the store's read methods first (`outbox_counts`, `incident_progress`,
//! `schedule_runs`, `discount_code`); what no user-facing read answers comes from here, as
//! typed rows. The SQL is the plainest `SELECT columns FROM table` every backend understands,
//! and tests filter and sort in Rust, so the same test reads the same rows on each backend this
//! reader knows.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::FromRow;

/// A connection to the database of one test's forewarn.
#[derive(Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One queued, sent, failed or cancelled message.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub rule_id: String,
    pub customer_id: String,
    pub entity: String,
    pub channel: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub provider_id: Option<String>,
    pub last_error: Option<String>,
}

/// One call to a gateway.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AttemptRow {
    pub outbox_id: i64,
    pub attempt: i64,
    pub gateway: String,
    pub outcome: String,
    pub error: Option<String>,
    /// How far receipts say it got.
    pub delivery: Option<String>,
}

/// One stored event.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub source: String,
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub customer_id: Option<String>,
    pub data: String,
}

/// One issued discount code.
#[derive(Debug, Clone, FromRow)]
pub struct CodeRow {
    pub code: String,
    pub idempotency_key: String,
    pub rule_id: String,
    pub customer_id: String,
    pub percent: i64,
    pub voided_at: Option<i64>,
}

/// One "why not" note for `explain`.
#[derive(Debug, Clone, FromRow)]
pub struct NoteRow {
    pub customer_id: Option<String>,
    pub rule_id: String,
    pub outcome: String,
    pub reason: String,
    pub detail: String,
}

/// A customer's stored profile.
#[derive(Debug, Clone, FromRow)]
pub struct CustomerRow {
    pub id: String,
    pub doc: String,
}

/// A customer's refusal of a channel.
#[derive(Debug, Clone, FromRow)]
pub struct OptOutRow {
    pub customer_id: String,
    pub channel: String,
    pub scope: String,
}

/// The state of a shipment, an order or an incident: `(id, status)`.
#[derive(Debug, Clone, FromRow)]
pub struct StatusRow {
    pub id: String,
    pub status: String,
}

/// The tables a test counts without reading.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Events,
    Outbox,
    Attempts,
    DiscountCodes,
    DecisionNotes,
    Customers,
    CustomerExperiences,
    OptOuts,
    RiskScores,
    Fanouts,
    /// Outreach events not yet relayed to NATS.
    OutreachEvents,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Outbox => "outbox",
            Table::Attempts => "attempts",
            Table::DiscountCodes => "discount_codes",
            Table::DecisionNotes => "decision_notes",
            Table::Customers => "customers",
            Table::CustomerExperiences => "customer_experiences",
            Table::OptOuts => "opt_outs",
            Table::RiskScores => "risk_scores",
            Table::Fanouts => "fanouts",
            Table::OutreachEvents => "outreach_events",
        }
    }
}

impl Database {
    /// Connects to the database at `url` (forewarn has created and migrated it).
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            Database::Sqlite(SqlitePool::connect(url).await.unwrap())
        } else {
            Database::Postgres(PgPool::connect(url).await.unwrap())
        }
    }

    async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        match self {
            Database::Postgres(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(pool)
                    .await
                    .unwrap();
                rows.iter().map(|row| T::from_row(row).unwrap()).collect()
            }
            Database::Sqlite(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(pool)
                    .await
                    .unwrap();
                rows.iter().map(|row| T::from_row(row).unwrap()).collect()
            }
        }
    }

    async fn execute(&self, sql: &str, binds: &[&str]) {
        match self {
            Database::Postgres(pool) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for value in binds {
                    query = query.bind(*value);
                }
                query.execute(pool).await.unwrap();
            }
            Database::Sqlite(pool) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for value in binds {
                    query = query.bind(*value);
                }
                query.execute(pool).await.unwrap();
            }
        }
    }

    /// How many rows `table` holds.
    pub async fn count(&self, table: Table) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        let (n,): (i64,) = self.rows(&sql).await.remove(0);
        n
    }

    /// Every message, in queue order.
    pub async fn outbox(&self) -> Vec<OutboxRow> {
        self.rows(
            "SELECT id, idempotency_key, rule_id, customer_id, entity, channel, event_id, status, \
             attempts, next_attempt_at, provider_id, last_error FROM outbox ORDER BY id",
        )
        .await
    }

    /// The one message `which` picks; fails the test if there is none or more.
    async fn one_message(&self, which: impl Fn(&OutboxRow) -> bool) -> OutboxRow {
        let mut rows = self.outbox().await;
        rows.retain(|m| which(m));
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.remove(0)
    }

    /// The one message to `customer`.
    pub async fn outbox_of(&self, customer: &str) -> OutboxRow {
        self.one_message(|m| m.customer_id == customer).await
    }

    /// The one message `event_id` caused.
    pub async fn outbox_for_event(&self, event_id: &str) -> OutboxRow {
        self.one_message(|m| m.event_id == event_id).await
    }

    /// The one message of a test that sends one.
    pub async fn only_message(&self) -> OutboxRow {
        self.one_message(|_| true).await
    }

    /// Every rendered message body, by rule, in queue order (retention empties them).
    pub async fn contents(&self) -> Vec<(String, String)> {
        self.rows("SELECT rule_id, content FROM outbox ORDER BY id")
            .await
    }

    /// The rendered bodies of `rule`'s messages, in queue order.
    pub async fn contents_of_rule(&self, rule: &str) -> Vec<String> {
        let contents = self.contents().await;
        contents
            .into_iter()
            .filter(|(r, _)| r == rule)
            .map(|(_, c)| c)
            .collect()
    }

    /// Every gateway call, message by message, in the order made.
    pub async fn attempts(&self) -> Vec<AttemptRow> {
        self.rows(
            "SELECT outbox_id, attempt, gateway, outcome, error, delivery FROM attempts \
             ORDER BY outbox_id, attempt",
        )
        .await
    }

    /// Every stored event, in arrival order.
    pub async fn events(&self) -> Vec<EventRow> {
        self.rows("SELECT source, id, type, customer_id, data FROM events ORDER BY seq")
            .await
    }

    /// Stored events of one type.
    pub async fn events_of_type(&self, kind: &str) -> Vec<EventRow> {
        let mut events = self.events().await;
        events.retain(|e| e.kind == kind);
        events
    }

    /// Every issued discount code, by code.
    pub async fn codes(&self) -> Vec<CodeRow> {
        self.rows(
            "SELECT code, idempotency_key, rule_id, customer_id, percent, voided_at \
             FROM discount_codes ORDER BY code",
        )
        .await
    }

    /// The code issued with the message `event_id` caused.
    pub async fn code_for_event(&self, event_id: &str) -> CodeRow {
        let key = self.outbox_for_event(event_id).await.idempotency_key;
        let mut codes = self.codes().await;
        codes.retain(|c| c.idempotency_key == key);
        assert_eq!(codes.len(), 1, "codes for {event_id}: {codes:?}");
        codes.remove(0)
    }

    /// Every decision note, oldest first.
    pub async fn notes(&self) -> Vec<NoteRow> {
        self.rows(
            "SELECT customer_id, rule_id, outcome, reason, detail FROM decision_notes ORDER BY id",
        )
        .await
    }

    /// Every customer profile, by id.
    pub async fn customers(&self) -> Vec<CustomerRow> {
        self.rows("SELECT id, doc FROM customers ORDER BY id").await
    }

    /// The stored profile of `id`.
    pub async fn customer(&self, id: &str) -> serde_json::Value {
        let customers = self.customers().await;
        let customer = customers
            .iter()
            .find(|c| c.id == id)
            .expect("a stored customer");
        serde_json::from_str(&customer.doc).unwrap()
    }

    /// Every opt-out.
    pub async fn opt_outs(&self) -> Vec<OptOutRow> {
        self.rows("SELECT customer_id, channel, scope FROM opt_outs ORDER BY customer_id")
            .await
    }

    /// Whether `customer` refused `channel` for `scope` (`all` or `marketing`).
    pub async fn opted_out(&self, customer: &str, channel: &str, scope: &str) -> bool {
        let opt_outs = self.opt_outs().await;
        opt_outs
            .iter()
            .any(|o| o.customer_id == customer && o.channel == channel && o.scope == scope)
    }

    /// Customers with a stored risk score.
    pub async fn scored_customers(&self) -> Vec<Option<String>> {
        let rows: Vec<(Option<String>,)> = self.rows("SELECT customer_id FROM risk_scores").await;
        rows.into_iter().map(|(c,)| c).collect()
    }

    /// The status of `id` in `table` (`shipments`, `orders` or `incidents`).
    pub async fn status(&self, table: StatusTable, id: &str) -> Option<String> {
        let sql = format!("SELECT id, status FROM {}", table.name());
        let rows: Vec<StatusRow> = self.rows(&sql).await;
        rows.into_iter().find(|r| r.id == id).map(|r| r.status)
    }

    /// `(status, new_eta)` of a shipment.
    pub async fn shipment_eta(&self, id: &str) -> Option<(String, Option<i64>)> {
        let rows: Vec<(String, String, Option<i64>)> =
            self.rows("SELECT id, status, new_eta FROM shipments").await;
        rows.into_iter()
            .find(|(s, _, _)| s == id)
            .map(|(_, status, eta)| (status, eta))
    }

    /// How many intake batches recorded the events: a batch stamps its events with the time
    /// it was received.
    pub async fn event_batches(&self) -> i64 {
        let (n,): (i64,) = self
            .rows("SELECT COUNT(DISTINCT received_at) FROM events")
            .await
            .remove(0);
        n
    }

    /// Names of the leases someone holds now or held and did not hand back.
    pub async fn leases(&self) -> Vec<String> {
        let rows: Vec<(String,)> = self.rows("SELECT name FROM leases ORDER BY name").await;
        rows.into_iter().map(|(n,)| n).collect()
    }

    /// Decision notes counted per day, all days together (what retention keeps).
    pub async fn noted_per_day(&self) -> i64 {
        let rows: Vec<(i64,)> = self.rows("SELECT count FROM decision_note_days").await;
        rows.into_iter().map(|(n,)| n).sum()
    }

    /// Fault: another writer holds the database until [`WriteLock::release`]; forewarn's
    /// transactions wait their `busy_timeout` and fail.
    pub async fn hold_writes(&self) -> WriteLock {
        match self {
            Database::Sqlite(pool) => {
                let mut connection = pool.acquire().await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *connection)
                    .await
                    .unwrap();
                WriteLock::Sqlite(connection)
            }
            Database::Postgres(pool) => {
                let mut transaction = pool.begin().await.unwrap();
                // Reads go on; every write to `events` waits (intake's first statement).
                sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                    .execute(&mut *transaction)
                    .await
                    .unwrap();
                WriteLock::Postgres(transaction)
            }
        }
    }

    /// Fault: `code`'s validity ended (as if its `valid_days` had passed).
    pub async fn expire_code(&self, code: &str) {
        self.execute(
            "UPDATE discount_codes SET expires_at = 0 WHERE code = $1",
            &[code],
        )
        .await;
    }

    /// Fault: the message to `customer` can no longer be read (a bug, a bad migration).
    pub async fn damage_content(&self, customer: &str) {
        self.execute(
            "UPDATE outbox SET content = 'not json' WHERE customer_id = $1",
            &[customer],
        )
        .await;
    }

    /// Fault: the scheduler's memory of what it emitted is lost (as if it died between
    /// publishing and remembering).
    pub async fn forget_emissions(&self) {
        self.execute("DELETE FROM schedule_emissions", &[]).await;
    }
}

/// A write lock a test holds (see [`Database::hold_writes`]).
pub enum WriteLock {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl WriteLock {
    /// Lets writers in again.
    pub async fn release(self) {
        match self {
            WriteLock::Sqlite(mut connection) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut *connection)
                    .await
                    .unwrap();
            }
            WriteLock::Postgres(transaction) => transaction.rollback().await.unwrap(),
        }
    }
}

/// Tables whose rows have an id and a status.
#[derive(Debug, Clone, Copy)]
pub enum StatusTable {
    Shipments,
    Orders,
    Incidents,
}

impl StatusTable {
    fn name(self) -> &'static str {
        match self {
            StatusTable::Shipments => "shipments",
            StatusTable::Orders => "orders",
            StatusTable::Incidents => "incidents",
        }
    }
}
