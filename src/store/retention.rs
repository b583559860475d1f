//! The retention purge: personal data older than its time leaves the database, a bounded amount
//! per run, going on where the last run stopped.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where the retention purge stopped in each table it walks in key order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PurgeCursor {
    /// `events.seq` purged up to.
    pub events: i64,
    /// `outbox.id` purged up to.
    pub outbox: i64,
    /// `customers.rowid` examined up to; wraps around, since customers change.
    pub customers: i64,
}

/// What a purge removed. Counts of things, never the things.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Events whose `data` was removed.
    pub events: u64,
    /// Messages whose content and errors were removed.
    pub messages: u64,
    /// Decision notes deleted (their daily counts kept).
    pub notes: u64,
    /// Customer records reduced to their non-identifying fields.
    pub customers: u64,
    /// Bad-experience rows and external risk scores deleted.
    pub experiences: u64,
    /// Schedule runs and emissions deleted.
    pub schedule_rows: u64,
    /// A table had more to purge than one run may: the next run goes on.
    pub more: bool,
}

impl PurgeReport {
    /// Everything removed.
    pub fn total(&self) -> u64 {
        self.events
            + self.messages
            + self.notes
            + self.customers
            + self.experiences
            + self.schedule_rows
    }
}

/// The database side of retention.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Removes personal data older than `cutoff`, at most `limit` rows per table, from where
    /// the last run stopped.
    async fn purge(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
        cursor: PurgeCursor,
    ) -> Result<(PurgeReport, PurgeCursor), StoreError>;
}
