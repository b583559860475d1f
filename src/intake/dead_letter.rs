//! Dead letters: the original bytes, republished to `forewarn.dlq.<reason>` with headers that
//! say why, kept by the `FOREWARN_DLQ` stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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
/// Header, only on a dead letter whose body was cut to fit the server's payload limit: the
/// original body's length in bytes.
pub const HEADER_TRUNCATED: &str = "Forewarn-Truncated";

/// Room kept for the headers when a body is cut to fit: each header value is at most
/// [`header_value`]'s 1 KiB, and there are five.
const HEADER_ROOM: usize = 8 * 1024;

/// Dead letters this process remembers having had acked, to count each once.
const REMEMBERED: usize = 4096;

/// How a dead letter's publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The stream has it, and this is the first ack this process had for it: count it. (An
    /// earlier publish whose ack was lost may have landed; the stream kept one copy.)
    First,
    /// This process had it acked before: the original came back because its own ack was
    /// lost. Counted already.
    Again,
}

/// Publishes dead letters with JetStream acks.
#[derive(Debug, Clone)]
pub struct DeadLetterPublisher {
    js: jetstream::Context,
    prefix: String,
    /// The de-duplication ids of the latest dead letters acked, oldest first.
    acked: Arc<Mutex<VecDeque<String>>>,
}

impl DeadLetterPublisher {
    /// Publishes under `<prefix>.<reason>`.
    pub fn new(js: jetstream::Context, prefix: impl Into<String>) -> Self {
        Self {
            js,
            prefix: prefix.into(),
            acked: Arc::default(),
        }
    }

    /// The server's limit on one message, in bytes (`max_payload`).
    pub fn max_payload(&self) -> usize {
        self.js.client().server_info().max_payload
    }

    /// Publishes one dead letter and waits for the stream's ack. `dedup_id` (the original's
    /// stream sequence) lets JetStream drop a second copy if forewarn crashes before acking
    /// the original and dead-letters it again.
    ///
    /// A body that fitted the server's payload limit can overflow it once the headers are
    /// added; it is cut to fit, and the cut said in [`HEADER_TRUNCATED`], rather than fail
    /// the publish on every redelivery.
    pub async fn publish(
        &self,
        rejection: &Rejection,
        original_subject: &str,
        dedup_id: &str,
        mut body: Bytes,
    ) -> Result<Published, String> {
        let mut headers = HeaderMap::new();
        let limit = self.max_payload();
        let room = limit.saturating_sub(HEADER_ROOM);
        if limit > 0 && body.len() > room {
            headers.insert(HEADER_TRUNCATED, body.len().to_string().as_str());
            body.truncate(room);
        }
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
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        if acked.iter().any(|id| id == dedup_id) {
            return Ok(Published::Again);
        }
        if acked.len() == REMEMBERED {
            acked.pop_front();
        }
        acked.push_back(dedup_id.to_owned());
        Ok(Published::First)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::demo::nats_server::NatsServer;
    use crate::domain::RejectReason;

    #[tokio::test]
    async fn a_dead_letter_is_counted_once_whichever_delivery_got_its_ack() {
        let nats = NatsServer::start_local().expect("a nats-server");
        let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connected"));
        js.create_stream(jetstream::stream::Config {
            name: "DLQ".into(),
            subjects: vec!["dlq.>".into()],
            ..Default::default()
        })
        .await
        .expect("the stream");
        let rejection = Rejection {
            reason: RejectReason::NotJson,
            detail: "body is not JSON".into(),
        };
        let publisher = DeadLetterPublisher::new(js.clone(), "dlq");
        let publish = |id: &'static str| {
            let (publisher, rejection) = (publisher.clone(), rejection.clone());
            async move {
                publisher
                    .publish(&rejection, "events.x", id, Bytes::from_static(b"{"))
                    .await
                    .expect("published")
            }
        };
        // Acked, then the original redelivered because its own ack was lost: counted once.
        assert_eq!(publish("EVENTS-1").await, Published::First);
        assert_eq!(publish("EVENTS-1").await, Published::Again);
        // An earlier publish that landed but whose ack never came back (another process's,
        // or this one's before a timeout): the first ack here is the one to count.
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", "forewarn-dlq-EVENTS-2");
        js.publish_with_headers("dlq.not_json", headers, Bytes::from_static(b"{"))
            .await
            .expect("sent")
            .await
            .expect("stored");
        assert_eq!(publish("EVENTS-2").await, Published::First);
        let stream = js.get_stream("DLQ").await.expect("the stream");
        assert_eq!(stream.get_info().await.expect("info").state.messages, 2);
    }
}
