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
use std::time::{Duration, Instant};

use sqlx::SqlitePool;

/// How often the WAL is copied back. A few batches' worth of pages at most accumulate.
pub(super) const EVERY: Duration = Duration::from_millis(200);

/// The writer's own automatic checkpoint, in pages: a backstop for when this task falls
/// behind (a reader holding an old snapshot), far above what accumulates between two runs.
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 50_000;

/// How long the WAL must stay unchanged before the writer's page cache is given back.
pub(super) const QUIET: Duration = Duration::from_secs(5);

/// Runs a passive checkpoint every [`EVERY`] on `pool` until the store (`alive`) is dropped or
/// closed. Once nothing has been written for [`QUIET`], asks the `writer` to give back its page
/// cache: after a burst it holds up to its whole `cache_size` (64 MiB) of pages nobody reads,
/// and keeps it for as long as the process is idle.
pub(super) fn spawn(pool: SqlitePool, writer: SqlitePool, readers: SqlitePool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quiet = Quiet::default();
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                break;
            }
            // Busy or failing now is not an error for anyone: the next run, or the writer's
            // backstop, copies what this one could not.
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await
            {
                Ok((_, wal_frames, _)) => {
                    if quiet.observe(wal_frames, Instant::now()) {
                        release_caches(&writer, &readers).await;
                    }
                }
                Err(error) => tracing::debug!(%error, "WAL checkpoint skipped"),
            }
        }
        pool.close().await;
    });
}

/// Asks the writer and every idle reader to give back their page caches.
async fn release_caches(writer: &SqlitePool, readers: &SqlitePool) {
    let mut connections = Vec::new();
    for _ in 0..readers.num_idle() {
        match readers.try_acquire() {
            Some(connection) => connections.push(connection),
            None => break,
        }
    }
    connections.extend(writer.try_acquire());
    for mut connection in connections {
        if let Err(error) = sqlx::query("PRAGMA shrink_memory")
            .execute(&mut *connection)
            .await
        {
            tracing::debug!(%error, "Page cache not released");
        }
    }
}

/// Whether the WAL has stayed the same long enough to call the writer idle, once per spell.
#[derive(Debug, Default)]
struct Quiet {
    frames: Option<i64>,
    since: Option<Instant>,
    released: bool,
}

impl Quiet {
    /// Takes the WAL's frame count at `now`; true once per quiet spell, when it has lasted
    /// [`QUIET`].
    fn observe(&mut self, frames: i64, now: Instant) -> bool {
        if self.frames != Some(frames) {
            *self = Quiet {
                frames: Some(frames),
                since: Some(now),
                released: false,
            };
            return false;
        }
        let lasted = self.since.is_some_and(|since| now - since >= QUIET);
        if lasted && !self.released {
            self.released = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_released_once_per_quiet_spell_and_again_after_the_next_writes() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut quiet = Quiet::default();
        assert!(!quiet.observe(10, at(0)));
        assert!(!quiet.observe(10, at(4)), "not quiet long enough");
        assert!(quiet.observe(10, at(5)));
        assert!(!quiet.observe(10, at(30)), "once per spell");
        assert!(!quiet.observe(25, at(31)), "written again");
        assert!(quiet.observe(25, at(36)));
    }
}
