//! Connecting to NATS and making sure the streams and the durable consumer exist.

use async_nats::jetstream::{self, consumer, stream};

use crate::intake::{IntakeSettings, NatsSettings};

/// NATS could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No connection to the server.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// Server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A stream or consumer could not be created or read.
    #[error("JetStream setup failed: {0}")]
    Setup(String),
}

/// Connects to the server in `[nats]`, with credentials when configured.
pub async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, IntakeError> {
    let connect_error = |message: String| IntakeError::Connect {
        url: settings.url.clone(),
        message,
    };
    // Set once this client starts closing on purpose (drain): the server going away after that
    // is the end of the connection, not news.
    let closing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut options = async_nats::ConnectOptions::new()
        .name("forewarn")
        .event_callback(move |event| {
            let closing = closing.clone();
            async move { log_connection_event(&event, &closing) }
        });
    if let Some(path) = &settings.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| connect_error(format!("credentials file {}: {e}", path.display())))?;
    }
    // A cluster's seed servers, comma-separated; the client learns the rest from them.
    let servers = settings
        .url
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| connect_error(format!("not a server address: {e}")))?;
    options
        .connect(servers)
        .await
        .map_err(|e| connect_error(e.to_string()))
}

/// Closes `client`'s connection on purpose: what it has buffered is flushed (acks included),
/// and this returns once the connection is closed — not merely asked to close — so whoever
/// stops the server next (the demo) is not reported as a lost server. At most `patience`.
pub async fn close(
    client: &async_nats::Client,
    patience: std::time::Duration,
) -> Result<(), async_nats::client::DrainError> {
    client.drain().await?;
    let deadline = tokio::time::Instant::now() + patience;
    while client.connection_state() == async_nats::connection::State::Connected
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Logs a change in the connection: losing the server, or the server refusing to keep up,
/// at WARN (once per change, as the client reports each), the way back at INFO. A connection
/// lost after the client began `closing` is only the end of it.
fn log_connection_event(event: &async_nats::Event, closing: &std::sync::atomic::AtomicBool) {
    use async_nats::Event;
    use std::sync::atomic::Ordering;
    match event {
        Event::Connected => tracing::info!("Connected to NATS."),
        Event::Disconnected if closing.load(Ordering::Relaxed) => {
            tracing::debug!("The NATS connection closed.");
        }
        Event::Disconnected => tracing::warn!(
            "Lost the connection to NATS; reconnecting. /readyz says not ready until it is back."
        ),
        Event::Draining | Event::Closed => {
            closing.store(true, Ordering::Relaxed);
            tracing::info!(%event, "NATS connection event.");
        }
        Event::LameDuckMode | Event::SlowConsumer(_) | Event::ServerError(_) => {
            tracing::warn!(%event, "NATS connection event.");
        }
        Event::ClientError(_) => {
            tracing::info!(%event, "NATS connection event.");
        }
    }
}

/// Ensures the events stream, the dead-letter stream and the durable pull consumer exist, and
/// returns the consumer. Existing streams are left as they are (operators may have tuned them).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    nats: &NatsSettings,
    intake: &IntakeSettings,
) -> Result<consumer::Consumer<consumer::pull::Config>, IntakeError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| IntakeError::Setup(format!("{what}: {e}"));
    let events = js
        .get_or_create_stream(stream::Config {
            name: nats.stream.clone(),
            subjects: nats.subjects.clone(),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("stream {}", nats.stream), &e))?;
    js.get_or_create_stream(stream::Config {
        name: nats.dlq_stream.clone(),
        subjects: vec![format!("{}.>", nats.dlq_subject_prefix)],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| setup(&format!("stream {}", nats.dlq_stream), &e))?;
    events
        .get_or_create_consumer(
            &nats.consumer,
            consumer::pull::Config {
                durable_name: Some(nats.consumer.clone()),
                description: Some("forewarn intake".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: intake.ack_wait,
                max_ack_pending: intake.max_ack_pending,
                // Unlimited redelivery: a message forewarn could not commit (database down) must
                // not be dropped. Poison input never loops: it is dead-lettered and acked.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| setup(&format!("consumer {}", nats.consumer), &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::demo::nats_server::{free_port, NatsServer};

    #[tokio::test]
    async fn a_cluster_is_reached_through_any_of_its_seed_servers() {
        let nats = NatsServer::start_local().expect("a nats-server");
        let silent = format!("nats://127.0.0.1:{}", free_port().expect("a port"));
        let settings = NatsSettings {
            url: format!("{silent}, {}", nats.url()),
            ..NatsSettings::default()
        };
        let client = connect(&settings)
            .await
            .expect("connected through the second seed");
        client.flush().await.expect("a round trip");

        let bad = NatsSettings {
            url: format!("{}, nats://:bad-port", nats.url()),
            ..NatsSettings::default()
        };
        let error = connect(&bad).await.expect_err("a bad address").to_string();
        assert!(error.contains("not a server address"), "{error}");
    }
}
