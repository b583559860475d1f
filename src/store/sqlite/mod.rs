//! The store on SQLite: WAL journal, multi-row statements, one transaction per batch. One file
//! per aggregate, named as the trait it implements (`store::<aggregate>`).
//!
//! SQLite allows one writer at a time and sqlx runs each connection on a worker thread, so the
//! cost is per statement, not per row: every write here is a multi-row statement built with
//! `QueryBuilder`, chunked below SQLite's bound-parameter limit.
//!
//! Every write goes through one connection, the writer; reads go through a pool of readers
//! that may not write (`query_only`). SQLite's own wait for a busy writer is a sleep-and-retry
//! loop that backs off to 100 ms, so writers on several connections of one process starved
//! each other: intake's back-to-back transactions kept the lock while the dispatcher slept,
//! and at 500 events/s messages waited seconds for their claim. The writer's pool queues its
//! callers first come, first served, and hands the connection over the moment it is free.
//! Other processes on the same file still meet SQLite's wait (`busy_timeout`).

mod apply;
mod checkpoint;
mod codes;
mod console;
mod feedback;
mod incidents;
mod intake;
mod lease;
mod outbox;
mod outcomes;
mod relay;
mod replay;
mod retention;
mod rows;
mod schedules;
mod snapshot;
#[cfg(test)]
mod tests;
mod timeline;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

use super::StoreError;
use crate::store::DatabaseSettings;

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` is 32766; stay clear of it.
const MAX_BINDS: usize = 30_000;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB): it holds the pages each batch
/// writes to, and is given back when writes stop for a while (`checkpoint::QUIET`).
const CACHE_KIB: u32 = 64 * 1024;
/// A reader's and the checkpoint's page cache: SQLite's default, 2 MiB.
const READER_CACHE: &str = "-2048";
/// Memory-mapped reads, in bytes.
const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers (`query_only`): what every read, and nothing else, goes through.
    pool: SqlitePool,
    /// The one connection every write goes through, in the order they asked.
    writer: SqlitePool,
    /// The connection that copies the WAL into the file (`checkpoint`).
    checkpoints: SqlitePool,
    /// Held by every clone of the store; the checkpoint task stops when the last one goes.
    _alive: Arc<()>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file in WAL mode.
    ///
    /// `synchronous = FULL` makes every commit durable before intake acks the batch; at one
    /// commit per batch its cost is small, and an acked event is never lost to a power cut.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true)
            // Keep the hot part of the outbox, events and customers in memory: a page read
            // from the OS costs a syscall on every index probe.
            .pragma("cache_size", format!("-{}", CACHE_KIB))
            .pragma("mmap_size", MMAP_BYTES.to_string())
            // sqlx's slow-statement warning prints the whole statement (a 500-row VALUES list
            // is ~20 KB a line); `forewarn_stage_seconds` reports slow stages instead.
            .disable_statement_logging();
        // Opened first: it creates the file and sets it to WAL before any reader opens it. It
        // is never closed while the store lives, so it keeps its cache and the WAL stays put.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            // A write waits its turn as long as it would wait for another process's lock.
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options.clone().pragma(
                "wal_autocheckpoint",
                checkpoint::WRITER_BACKSTOP_PAGES.to_string(),
            ))
            .await?;
        // A checkpoint copies WAL frames to the file without reading through a cache: SQLite's
        // default 2 MiB is plenty, not the 64 MiB the writer keeps.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", READER_CACHE))
            .await?;
        // Readers find the file's pages in the memory map; their caches hold pages read from
        // the WAL, which the checkpoint task keeps short. At 64 MiB each, four readers held
        // over a hundred megabytes after a burst for no measurable gain (README, Reliability).
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(
                options
                    .pragma("query_only", "ON")
                    .pragma("cache_size", READER_CACHE),
            )
            .await?;
        let alive = Arc::new(());
        checkpoint::spawn(
            checkpoints.clone(),
            writer.clone(),
            pool.clone(),
            Arc::downgrade(&alive),
        );
        Ok(Self {
            pool,
            writer,
            checkpoints,
            _alive: alive,
        })
    }

    /// A store whose reads and writes all go through `connection`, without the checkpoint
    /// task: for a database no other connection opens (a simulation's scratch one).
    pub(super) fn of_one_connection(connection: SqlitePool) -> Self {
        Self {
            pool: connection.clone(),
            writer: connection.clone(),
            checkpoints: connection,
            _alive: Arc::new(()),
        }
    }

    /// Applies the migrations in `migrations/sqlite` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    /// A transaction that takes the write lock up front (`BEGIN IMMEDIATE`): what it reads
    /// stays true until it commits, with several forewarn processes on one file too.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes every connection, the writer's last (tools that copy the file afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
        self.checkpoints.close().await;
        self.writer.close().await;
    }

    /// The writer: for what every backend's shared SQL writes (`store::codes`,
    /// `store::retention`), and for tools and tests that read or write state directly.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

super::database_store!(SqliteStore);
