//! The store on PostgreSQL, for more than one process on one database. One file per aggregate,
//! named as the trait it implements (`store::<aggregate>`), mirroring `sqlite/` file by file.
//!
//! Where SQLite leans on its single writer, this backend fences with the database itself: claims
//! take rows `FOR UPDATE SKIP LOCKED`, every lease verb and redemption is one guarded statement,
//! and a transaction that lost a race finds out from a row count, not a lock.

mod apply;
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
mod schedules;
mod scratch;
mod snapshot;
#[cfg(test)]
mod tests;
mod timeline;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;

use super::StoreError;
use crate::store::DatabaseSettings;

/// How long a pooled connection lives (and may sit idle) before it is replaced.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

pub use scratch::ScratchDatabase;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database `settings.url` names (it must exist). A statement waits at most
    /// `busy_timeout` for another transaction's lock, as on SQLite, then fails and its batch is
    /// redelivered.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let lock_timeout = format!("{}ms", settings.busy_timeout.as_millis());
        let stalled = format!("{}ms", settings.stalled_transaction_timeout.as_millis());
        let options = PgConnectOptions::from_str(&settings.url)?
            .application_name("forewarn")
            .options([
                ("lock_timeout", lock_timeout.as_str()),
                ("idle_in_transaction_session_timeout", stalled.as_str()),
                // Every statement is planned for its own parameters and the tables as they are
                // now. A prepared statement's generic plan is fixed from its sixth run on, and
                // the tables start empty: measured, `shipments WHERE id = ANY($1)` kept the seq
                // scan it was given at the start and took 12 ms a batch at 20k rows.
                ("plan_cache_mode", "force_custom_plan"),
                // Forewarn's statements are short and planned once a batch; JIT compiling one
                // whose estimate on a table never analyzed crossed `jit_above_cost` took 0.9 s
                // to run a 4 ms query. Measured in the latency bench, with auto_explain.
                ("jit", "off"),
            ])
            // sqlx's slow-statement warning prints the whole statement; slow stages are
            // reported by `metrics::Stages` instead, by name and time.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            // A connection keeps its buffers at the largest message it ever carried (a batch
            // of large events is tens of megabytes): renewed every half minute, what a burst
            // took goes back with the connection.
            .max_lifetime(CONNECTION_LIFETIME)
            .idle_timeout(CONNECTION_LIFETIME)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the migrations in `migrations/postgres` that have not run yet. Two processes
    /// starting at once are safe: sqlx holds an advisory lock while it migrates.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        // The outbox is a queue: every claim and every recorded attempt leaves a dead row
        // version, and only vacuum takes them away. Claims stay quick without it (they skip
        // dead entries), but the table and its indexes grow without bound.
        let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&self.pool)
            .await?;
        if autovacuum != "on" {
            tracing::warn!(
                autovacuum,
                "PostgreSQL's autovacuum is off: the outbox's dead rows are never removed and \
                 it grows with every message. Turn it on, or VACUUM the outbox regularly."
            );
        }
        Ok(())
    }

    /// A transaction for a write (read committed: every guard is in its statements).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// What every backend's shared SQL writes through (`store::codes`, `store::retention`),
    /// and tests write with: the one pool, as PostgreSQL has no single writer to queue for.
    pub fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, for tools and tests that read state directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

super::database_store!(PgStore);
