//! [`crate::store::ReplayStore`] on SQLite (written once for both backends in
//! `store::replay`).

use super::SqliteStore;

crate::store::replay::replay_store!(SqliteStore);

impl SqliteStore {
    /// For a simulation's scratch database only: every message due by `now` counts as sent at
    /// the time it was due, as a dispatcher keeping up would have sent it — so what a later
    /// event retracts, supersedes or caps is what it would find in production.
    pub async fn settle_due_as_sent(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, crate::store::StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = next_attempt_at, \
             updated_at = next_attempt_at \
             WHERE status = 'pending' AND next_attempt_at <= ?1",
        )
        .bind(crate::store::millis(now))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }
}

/// The triggers that feed `outreach_events` to the relay: a scratch database has no relay.
const RELAY_TRIGGERS: [&str; 7] = [
    "outreach_queued",
    "outreach_settled",
    "outreach_moved",
    "outreach_delivered",
    "outreach_opted_out",
    "outreach_opt_out_widened",
    "outreach_opted_in",
];

impl SqliteStore {
    /// A disposable database at `path` for a simulation: migrated, without the relay's
    /// triggers (nobody reads `outreach_events` there), and not synced to disk at each commit
    /// (it is deleted afterwards, and a crash loses nothing but the simulation).
    pub async fn scratch(path: &std::path::Path) -> Result<Self, crate::store::StoreError> {
        let settings = crate::store::DatabaseSettings {
            url: format!("sqlite://{}", path.display()),
            ..Default::default()
        };
        let store = SqliteStore::connect(&settings).await?;
        store.migrate().await?;
        for trigger in RELAY_TRIGGERS {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TRIGGER IF EXISTS {trigger}"
            )))
            .execute(store.writer())
            .await?;
        }
        sqlx::query("PRAGMA synchronous = OFF")
            .execute(store.writer())
            .await?;
        Ok(store)
    }
}
