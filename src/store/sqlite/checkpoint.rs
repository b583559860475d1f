//! Copies the write-ahead log back into the database file on a connection of its own, so the
//! writer never does it inside a commit.
//!
//! SQLite checkpoints automatically on the connection that commits once the WAL passes 1,000
//! pages. A batch of a thousand events dirties several thousand pages (a page per event in
//! every index keyed by customer), so every intake commit also copied the whole WAL into the
//! file and synced it while holding the only write lock; measured at 3,000 events/s, that
//! copy was most of the commit. A `PASSIVE` checkpoint takes no write lock: writers keep
//! appending while it copies, and the WAL starts over at the next write once it is all copied.

use std::sync::Weak;
use std::time::Duration;

use sqlx::SqlitePool;

/// How often the WAL is copied back. A few batches' worth of pages at most accumulate.
pub(super) const EVERY: Duration = Duration::from_millis(200);

/// The writer's own automatic checkpoint, in pages: a backstop for when this task falls
/// behind (a reader holding an old snapshot), far above what accumulates between two runs.
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 50_000;

/// Runs a passive checkpoint every [`EVERY`] on `pool` until the store (`alive`) is dropped or
/// closed.
pub(super) fn spawn(pool: SqlitePool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                break;
            }
            // Busy or failing now is not an error for anyone: the next run, or the writer's
            // backstop, copies what this one could not.
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(%error, "WAL checkpoint skipped");
            }
        }
        pool.close().await;
    });
}
