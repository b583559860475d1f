//! ⑨ The relay: outreach events out, for the shop's CRM and support desk.
//!
//! Every change of a message's state and every opt-out is written to `outreach_events` by
//! triggers, in the transaction that makes the change (a transactional outbox): nothing that
//! happened can be missing, whichever code path did it. The relay publishes them to
//! `<subject_prefix>.<status>` in the order they were written, each with its sequence number as
//! `Nats-Msg-Id`, and forgets them once JetStream acknowledged them. A crash between the two
//! publishes them again, and JetStream stores them once (within `duplicate_window`). One
//! process relays at a time, under a lease, so the order holds across processes.
//!
//! The events carry ids, rule, channel, status, times and reasons: no phone number, address or
//! message text.

mod settings;

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

pub use settings::RelaySettings;

use crate::shutdown::Shutdown;
use crate::store::{OutreachEvent, Store, StoreError};
use crate::worker::{self, Next, Worker};

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// JetStream refused or did not acknowledge.
    #[error("publishing outreach events: {0}")]
    Publish(String),
}

/// Publishes outreach events.
pub struct Relay {
    store: Arc<dyn Store>,
    js: jetstream::Context,
    settings: RelaySettings,
    owner: String,
}

impl Relay {
    /// Makes sure the stream exists (an existing one is left as operators tuned it).
    pub async fn new(
        store: Arc<dyn Store>,
        js: jetstream::Context,
        settings: RelaySettings,
    ) -> Result<Self, RelayError> {
        js.get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.subject_prefix)],
            storage: stream::StorageType::File,
            max_age: settings.max_age,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| RelayError::Publish(format!("stream {}: {e}", settings.stream)))?;
        Ok(Relay {
            store,
            js,
            settings,
            owner: crate::schedule::owner_id(),
        })
    }

    /// Publishes until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        tracing::info!(stream = %self.settings.stream, "Relaying outreach events.");
        worker::run(self, shutdown).await;
    }

    /// One pass: publishes up to `batch_size` events in order and forgets those JetStream
    /// acknowledged; how many. None while another process holds the relay.
    pub async fn publish_once(&self) -> Result<usize, RelayError> {
        let now = Utc::now();
        let until =
            now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::MAX);
        let Some(events) = self
            .store
            .outreach_events(&self.owner, now, until, self.settings.batch_size.max(1))
            .await?
        else {
            return Ok(0);
        };
        // Sent one after another on one connection (so stored in this order), acknowledged
        // as they come; the first refusal stops the pass, and it and what follows go again.
        let mut acks = Vec::with_capacity(events.len());
        let mut failure = None;
        for event in &events {
            let message = PublishMessage::build()
                .message_id(message_id(event.seq))
                .payload(Bytes::from(self.cloud_event(event).to_string()));
            match self.js.send_publish(self.subject(event), message).await {
                Ok(ack) => acks.push((event.seq, ack)),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(acks.len());
        for (seq, ack) in acks {
            match ack.await {
                Ok(_) => published.push(seq),
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                    break;
                }
            }
        }
        self.store.forget_outreach_events(&published).await?;
        match failure {
            Some(e) if published.is_empty() => Err(RelayError::Publish(e)),
            Some(e) => {
                tracing::warn!(error = %e, published = published.len(), "Some outreach events were not acknowledged; they go again.");
                Ok(published.len())
            }
            None => Ok(published.len()),
        }
    }

    fn subject(&self, event: &OutreachEvent) -> String {
        format!("{}.{}", self.settings.subject_prefix, event.status)
    }

    /// The event as a CloudEvent: its sequence number is its id.
    fn cloud_event(&self, event: &OutreachEvent) -> Value {
        let at = event.at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut data = json!({
            "status": event.status,
            "customer_id": event.customer_id,
            "channel": event.channel,
            "at": at,
        });
        if let Some(key) = &event.key {
            data["outreach_key"] = json!(key);
            data["rule"] = json!(event.rule_id);
        }
        match (event.status.as_str(), &event.detail) {
            ("opted_out", Some(scope)) => data["scope"] = json!(scope),
            (_, Some(reason)) => data["reason"] = json!(reason),
            (_, None) => {}
        }
        json!({
            "specversion": "1.0",
            "id": message_id(event.seq),
            "source": self.settings.source,
            "type": format!("{}.{}", self.settings.subject_prefix, event.status),
            "subject": event.key.as_deref().unwrap_or(&event.customer_id),
            "time": at,
            "datacontenttype": "application/json",
            "data": data,
        })
    }
}

/// The CloudEvent id and `Nats-Msg-Id` of the event at `seq`.
fn message_id(seq: i64) -> String {
    format!("forewarn-outreach-{seq}")
}

#[async_trait::async_trait]
impl Worker for Relay {
    async fn work(&mut self) -> Next {
        match self.publish_once().await {
            Ok(n) if n >= self.settings.batch_size.max(1) => Next::Now,
            Ok(_) => Next::After(self.settings.poll_interval),
            Err(e) => {
                tracing::warn!(error = %e, "Could not relay outreach events; trying again.");
                Next::After(
                    self.settings
                        .poll_interval
                        .max(std::time::Duration::from_secs(1)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::demo::nats_server::NatsServer;
    use crate::store::test_support::{queue_delay_notice, store};
    use crate::store::RelayStore;

    #[tokio::test]
    async fn an_event_published_again_after_a_lost_forget_is_stored_once() {
        let nats = NatsServer::start_local().expect("a nats-server");
        let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connected"));
        let (_dir, sqlite) = store().await;
        queue_delay_notice(&sqlite, Utc::now()).await;
        // What was written, kept aside: as if the relay died between JetStream's ack and
        // forgetting the event.
        let written: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, status FROM outreach_events ORDER BY seq")
                .fetch_all(sqlite.writer())
                .await
                .expect("the events");
        assert_eq!(written, [(1, "queued".to_owned())]);
        let store: Arc<dyn Store> = Arc::new(sqlite.clone());
        let relay = Relay::new(store, js.clone(), RelaySettings::default())
            .await
            .expect("the stream");

        assert_eq!(relay.publish_once().await.expect("a pass"), 1);
        assert_eq!(relay.publish_once().await.expect("a pass"), 0, "forgotten");
        sqlx::query(
            "INSERT INTO outreach_events (seq, status, key, rule_id, customer_id, channel, at) \
             SELECT 1, 'queued', idempotency_key, rule_id, customer_id, channel, created_at \
             FROM outbox",
        )
        .execute(sqlite.writer())
        .await
        .expect("the lost forget");
        assert_eq!(relay.publish_once().await.expect("a pass"), 1);

        let stream = js
            .get_stream("FOREWARN_OUTREACH")
            .await
            .expect("the stream");
        let state = stream.get_info().await.expect("its state").state;
        assert_eq!(state.messages, 1, "JetStream stored it once");
        let message = stream.get_raw_message(1).await.expect("the event");
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        assert_eq!(event["id"], "forewarn-outreach-1");
        assert_eq!(event["type"], "forewarn.outreach.queued");
        assert_eq!(message.subject.as_str(), "forewarn.outreach.queued");
    }

    #[tokio::test]
    async fn one_process_relays_at_a_time() {
        let (_dir, sqlite) = store().await;
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(30);
        let first = sqlite
            .outreach_events("a", now, until, 10)
            .await
            .expect("a read");
        let second = sqlite
            .outreach_events("b", now, until, 10)
            .await
            .expect("a read");
        assert_eq!((first.is_some(), second.is_none()), (true, true));
        let later = until + chrono::Duration::seconds(1);
        let taken_over = sqlite
            .outreach_events("b", later, later + chrono::Duration::seconds(30), 10)
            .await
            .expect("a read");
        assert!(
            taken_over.is_some(),
            "after the lease, another process relays"
        );
    }
}
