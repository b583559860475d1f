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
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://forewarn.db".into(),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}
