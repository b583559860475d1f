//! `[nats]` and `[intake]`: where events come from and how they are pulled.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[nats]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL, or a cluster's seed servers comma-separated.
    pub url: String,
    /// The events stream, created if missing.
    pub stream: String,
    /// Subjects the events stream captures.
    pub subjects: Vec<String>,
    /// Durable pull consumer shared by every forewarn process.
    pub consumer: String,
    /// Stream that keeps dead letters.
    pub dlq_stream: String,
    /// Dead letters go to `<dlq_subject_prefix>.<reason>`.
    pub dlq_subject_prefix: String,
    /// Removed from each event's `type` before lookup, e.g. `com.shop.`.
    pub type_prefix: Option<String>,
    /// File with NATS credentials (`.creds`), if the server needs them.
    pub credentials_file: Option<PathBuf>,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            stream: "FOREWARN_EVENTS".into(),
            subjects: vec!["events.>".into()],
            consumer: "forewarn".into(),
            dlq_stream: "FOREWARN_DLQ".into(),
            dlq_subject_prefix: "forewarn.dlq".into(),
            type_prefix: None,
            credentials_file: None,
        }
    }
}

/// `[intake]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Most events decided and committed in one database transaction. Larger batches amortise
    /// the commit; the batch is whatever has arrived, so a quiet stream is not delayed.
    pub batch_size: usize,
    /// How long the server waits for an ack before redelivering.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Most unacknowledged events per consumer, across all processes: bounds in-flight work.
    /// Keep it at least 6 × `batch_size` per process (two batches buffered, three in the
    /// stages): at the limit the server stops delivering and intake stalls.
    pub max_ack_pending: i64,
    /// Delay before a batch that failed (database unavailable) is redelivered.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            batch_size: 2000,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 50_000,
            retry_delay: Duration::from_secs(2),
        }
    }
}
