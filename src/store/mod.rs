//! The database, one narrow interface per aggregate.
//!
//! Each aggregate is a trait of a few verbs in its own file here, implemented once per database
//! in a sibling folder with the same file names (`sqlite/` today; `postgres/` plugs in beside
//! it). [`Store`] is all of them together, which is what [`connect`] hands out; a worker needs
//! only the trait of its aggregate in scope.
//!
//! - [`intake`]: an intake batch is one transaction: record the events (learning which are new),
//!   load the state they touch, write what the pipeline decided, commit — only then are they
//!   acked.
//! - [`outbox`]: the dispatcher's claims and attempts, and what a fallback channel is rendered
//!   from.
//! - [`incidents`]: fan-outs under a lease, their audiences and on-call's progress.
//! - [`schedules`]: schedule ticks under a lease and the sweeps' candidates.
//! - [`retention`]: the purge of old personal data.
//! - [`codes`]: discount codes as issued, and their redemption at checkout.
//! - [`timeline`]: one customer's story, for `forewarn explain`.
//! - [`outcomes`]: scored decisions and what became of them, for `forewarn risk export`.
//! - [`relay`]: the outreach events triggers record with every change, for the relay to publish.
//! - [`feedback`]: delivery receipts moving an attempt forward (and its outreach on), replies
//!   and the opt-outs they ask for.

pub mod codes;
pub mod console;
pub mod feedback;
pub mod incidents;
pub mod intake;
pub(crate) mod lease;
pub mod outbox;
pub mod outcomes;
mod postgres;
pub mod relay;
pub mod replay;
pub mod retention;
pub(crate) mod rows;
pub mod schedules;
mod settings;
pub(crate) mod snapshot;
mod sqlite;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
pub mod timeline;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use codes::{CodeStore, IssuedCode};
pub use console::{ConsoleStore, MessageTally, TALLY_STATES};
pub use feedback::{DeliveryTarget, FeedbackStore, OptOutRecorded, ReceiptRef};
pub use incidents::{
    Audience, FanoutClaim, FanoutPhase, FanoutRequest, FanoutStatus, FanoutStep, FanoutTx,
    IncidentProgress, IncidentStore, MessageCounts,
};
pub use intake::{
    Changes, DecisionNote, EventRecord, IntakeStore, IntakeTx, OptOutRecord, Refs, Retracted,
    RiskScoreRecord, Snapshot,
};
pub use outbox::{
    AttemptRecord, AttemptResult, ChannelSwitch, ClaimedMessage, CurrentState, FallbackInputs,
    OutboxCounts, OutboxReads, OutboxStore, WaitingMessage,
};
pub use outcomes::{DecisionOutcome, OutcomeStore};
pub use postgres::{PgStore, ScratchDatabase};
pub use relay::{OutreachEvent, RelayStore};
pub use replay::{DecidedOutreach, LiveOptOut, ReplayStore, StoredEvent};
pub use retention::{PurgeCursor, PurgeReport, RetentionStore};
pub use schedules::{
    Emission, OverdueShipment, ResolvedProblem, RunRecord, ScheduleStatus, ScheduleStore,
    StalledOrder, TickClaim, TickOutcome,
};
pub use settings::DatabaseSettings;
pub use sqlite::SqliteStore;
pub use timeline::{
    mask_name, masked, recipient_shown, AttemptSummary, CustomerTimeline, ReceiptSummary,
    ReplySummary, TimelineEvent, TimelineMessage, TimelineStore,
};

/// Database failures. Intake and dispatch retry on any of them; nothing is acked or marked sent
/// until a write succeeds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back.
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The URL names a database this build does not support.
    #[error("unsupported database URL `{0}` (expected sqlite://path or postgres://…)")]
    UnsupportedUrl(String),
}

/// Every aggregate of the database, as one handle: what [`connect`] returns and `forewarn run`
/// shares between its workers. Its own verbs are about the database as a whole.
#[async_trait]
pub trait Store:
    IntakeStore
    + OutboxStore
    + OutboxReads
    + IncidentStore
    + ScheduleStore
    + RetentionStore
    + CodeStore
    + TimelineStore
    + OutcomeStore
    + FeedbackStore
    + RelayStore
    + ConsoleStore
    + ReplayStore
    + Send
    + Sync
    + 'static
{
    /// A cheap query, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Events recorded.
    async fn event_count(&self) -> Result<u64, StoreError>;
}

/// [`Store`]'s own verbs for a backend's store type (with a `pool` field): the same SQL on both.
macro_rules! database_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn event_count(&self) -> Result<u64, $crate::store::StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}
use database_store;

/// Opens the store a URL names and applies pending migrations.
pub async fn connect(settings: &DatabaseSettings) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if settings.url.starts_with("sqlite:") {
        let store = SqliteStore::connect(settings).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    } else if settings.url.starts_with("postgres:") || settings.url.starts_with("postgresql:") {
        let store = PgStore::connect(settings).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Err(StoreError::UnsupportedUrl(settings.url.clone()))
    }
}

/// Unix milliseconds, the stored form of every time.
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`millis`].
pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}
