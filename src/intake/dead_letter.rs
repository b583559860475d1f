//! Dead letters: the original bytes, republished to `forewarn.dlq.<reason>` with headers that
//! say why, kept by the `FOREWARN_DLQ` stream.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::domain::Rejection;

/// Header: what is wrong, for people, naming the field.
pub const HEADER_ERROR: &str = "Forewarn-Error";
/// Header: the subject the event was published on.
pub const HEADER_ORIGINAL_SUBJECT: &str = "Forewarn-Original-Subject";
/// Header: the machine-readable reason, as in the subject.
pub const HEADER_REASON: &str = "Forewarn-Reason";

/// Publishes dead letters with JetStream acks.
#[derive(Debug, Clone)]
pub struct DeadLetterPublisher {
    js: jetstream::Context,
    prefix: String,
}

impl DeadLetterPublisher {
    /// Publishes under `<prefix>.<reason>`.
    pub fn new(js: jetstream::Context, prefix: impl Into<String>) -> Self {
        Self {
            js,
            prefix: prefix.into(),
        }
    }

    /// Publishes one dead letter and waits for the stream's ack. `dedup_id` (the original's
    /// stream sequence) lets JetStream drop a second copy if forewarn crashes before acking
    /// the original and dead-letters it again.
    pub async fn publish(
        &self,
        rejection: &Rejection,
        original_subject: &str,
        dedup_id: &str,
        body: Bytes,
    ) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ERROR, header_value(&rejection.detail).as_str());
        headers.insert(
            HEADER_ORIGINAL_SUBJECT,
            header_value(original_subject).as_str(),
        );
        headers.insert(HEADER_REASON, rejection.reason.as_str());
        headers.insert("Nats-Msg-Id", format!("forewarn-dlq-{dedup_id}").as_str());
        let subject = format!("{}.{}", self.prefix, rejection.reason.as_str());
        self.js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Header values are one line of printable text; anything else is replaced.
fn header_value(text: &str) -> String {
    const MAX: usize = 1024;
    let mut value: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if value.len() > MAX {
        let mut cut = MAX;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    value
}
