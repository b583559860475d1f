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
