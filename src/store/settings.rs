//! `[database]`: which database, and how many connections to it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` (created if missing).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a statement waits for another writer's lock.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// PostgreSQL: how long a transaction may sit open with nothing running before the server
    /// ends it (`idle_in_transaction_session_timeout`). Forewarn's transactions idle for
    /// milliseconds between their statements; one idle for longer belongs to a process that
    /// was paused (SIGSTOP, a frozen VM) and holds locks every other process waits on — ended,
    /// its locks go, and its own commit fails when it wakes, so its batch is redelivered.
    #[serde(with = "humantime_serde")]
    pub stalled_transaction_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://forewarn.db".into(),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            stalled_transaction_timeout: Duration::from_secs(30),
        }
    }
}
