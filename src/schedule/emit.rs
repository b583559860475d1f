//! Synthetic events: CloudEvents forewarn writes itself, published to the events stream so they
//! take the same road as a backend's — intake, rules, risk, policy, render, outbox — and are
//! visible to anyone who reads the stream.

use async_nats::jetstream;
use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::domain::EventType;
use crate::store::{Emission, Store, StoreError};

/// Publishes at most this many events at once, waiting for their acks.
const IN_FLIGHT: usize = 256;

/// One synthetic event to emit.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// Its type.
    pub kind: EventType,
    /// What makes it unique within its type (see `schedule_emissions`); its id derives from it.
    pub key: String,
    /// CloudEvents `subject`: the parcel, order or customer it is about.
    pub subject: String,
    /// `data`.
    pub data: Value,
}

impl Synthetic {
    /// Its CloudEvents id: the same key always gives the same id, so a re-emission after a
    /// crash is a duplicate the stream and the intake drop.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.key)
    }
}

/// Publishing failed part-way: what was published is remembered, the rest is found again.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// NATS did not take (or acknowledge) some events.
    #[error("{failed} of {total} synthetic event(s) not published: {first}")]
    Publish {
        /// How many failed.
        failed: usize,
        /// Of how many.
        total: usize,
        /// The first error.
        first: String,
    },
    /// Published, but not remembered: the next run re-emits them, and they are dropped as
    /// duplicates.
    #[error("synthetic events published but not remembered: {0}")]
    Remember(#[from] StoreError),
}

/// Publishes synthetic events with JetStream acks and remembers them.
#[derive(Clone)]
pub struct Emitter {
    js: jetstream::Context,
    subject_prefix: String,
    source: String,
}

impl Emitter {
    /// Publishes to `<subject_prefix><type>` with `source` as the CloudEvents source.
    pub fn new(js: jetstream::Context, subject_prefix: &str, source: &str) -> Self {
        Emitter {
            js,
            subject_prefix: subject_prefix.to_owned(),
            source: source.to_owned(),
        }
    }

    /// The CloudEvent for `event`, stamped `now`.
    pub fn envelope(&self, event: &Synthetic, now: DateTime<Utc>) -> Value {
        json!({
            "specversion": "1.0",
            "id": event.id(),
            "source": self.source,
            "type": event.kind.as_str(),
            "time": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "subject": event.subject,
            "datacontenttype": "application/json",
            "data": event.data,
        })
    }

    /// Publishes every event and remembers those the stream acknowledged; returns how many.
    pub async fn emit(
        &self,
        store: &dyn Store,
        events: Vec<Synthetic>,
        now: DateTime<Utc>,
    ) -> Result<u64, EmitError> {
        let total = events.len();
        let results: Vec<(Synthetic, Result<(), String>)> = stream::iter(events)
            .map(|event| async move {
                let result = self.publish(&event, now).await;
                (event, result)
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut emitted = Vec::with_capacity(total);
        let mut failures = Vec::new();
        for (event, result) in results {
            match result {
                Ok(()) => emitted.push(Emission {
                    kind: event.kind.as_str(),
                    event_id: event.id(),
                    key: event.key,
                    at: now,
                }),
                Err(e) => failures.push(e),
            }
        }
        store.record_emissions(&emitted).await?;
        match failures.first() {
            None => Ok(emitted.len() as u64),
            Some(first) => Err(EmitError::Publish {
                failed: failures.len(),
                total,
                first: first.clone(),
            }),
        }
    }

    async fn publish(&self, event: &Synthetic, now: DateTime<Utc>) -> Result<(), String> {
        let body = serde_json::to_vec(&self.envelope(event, now)).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        // JetStream drops a second message with the same id within its duplicate window.
        headers.insert("Nats-Msg-Id", event.id().as_str());
        let subject = format!("{}{}", self.subject_prefix, event.kind.as_str());
        self.js
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
