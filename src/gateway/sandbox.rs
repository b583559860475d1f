//! The sandbox gateway: every message becomes one JSON line in `outbox/<channel>.jsonl`.
//!
//! It is the embedded default, so forewarn runs end to end with no credentials, and it is
//! exact about duplicates: it remembers every idempotency key it wrote (reading the file back
//! at start), so a resend after a crash is recognised and nothing is written twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{sandbox_file, Gateway, OutboundMessage, Receipt, Reconciliation, SendOutcome};
use crate::domain::{Channel, IdempotencyKey};

/// Appends messages to a JSON Lines file.
#[derive(Debug)]
pub struct SandboxGateway {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Idempotency key → provider id of every line in the file.
    written: HashMap<String, String>,
}

impl SandboxGateway {
    /// Opens (creating) `<dir>/<channel>.jsonl` and indexes the keys already in it.
    pub fn open(dir: &Path, channel: Channel) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = sandbox_file(dir, channel);
        let mut written = HashMap::new();
        if let Ok(existing) = File::open(&path) {
            for line in BufReader::new(existing).lines() {
                // A line cut short by a crash has no key to read; it is skipped, and the
                // message is resent whole.
                let Ok(record) = serde_json::from_str::<Value>(&line?) else {
                    continue;
                };
                if let (Some(key), Some(id)) = (
                    record.get("key").and_then(Value::as_str),
                    record.get("provider_id").and_then(Value::as_str),
                ) {
                    written.insert(key.to_owned(), id.to_owned());
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            state: Mutex::new(State { file, written }),
        })
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Gateway for SandboxGateway {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let mut state = self.state.lock().await;
        if let Some(id) = state.written.get(message.key.as_str()) {
            return SendOutcome::Sent(Receipt {
                provider_id: id.clone(),
            });
        }
        let provider_id = format!("sbx-{}", message.key);
        let mut record = json!({
            "key": message.key,
            "provider_id": provider_id,
            "rule_id": message.rule_id,
            "customer_id": message.customer_id,
            "sent_at": Utc::now().to_rfc3339(),
        });
        if let (Value::Object(record), Ok(Value::Object(content))) =
            (&mut record, serde_json::to_value(message.content))
        {
            record.extend(content);
        }
        let mut line = record.to_string();
        line.push('\n');
        // One write call per line: a crash leaves at most one torn line, which `open` skips.
        if let Err(e) = state.file.write_all(line.as_bytes()) {
            return SendOutcome::Retry {
                after: None,
                reason: format!("cannot write {}: {e}", self.path.display()),
            };
        }
        state
            .written
            .insert(message.key.as_str().to_owned(), provider_id.clone());
        SendOutcome::Sent(Receipt { provider_id })
    }

    async fn reconcile(&self, key: &IdempotencyKey) -> Reconciliation {
        match self.state.lock().await.written.get(key.as_str()) {
            Some(id) => Reconciliation::Delivered(Receipt {
                provider_id: id.clone(),
            }),
            None => Reconciliation::NotDelivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, MessageContent};

    #[tokio::test]
    async fn a_key_is_written_once_even_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = IdempotencyKey::derive("r", &CustomerId::parse("c").unwrap(), "e", Channel::Sms);
        let content = MessageContent::Sms {
            to: "+821012345678".into(),
            body: "hi".into(),
        };
        let message = OutboundMessage {
            category: crate::domain::Category::Transactional,
            key: &key,
            rule_id: "r",
            customer_id: "c",
            content: &content,
        };
        let gateway = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        assert!(matches!(gateway.send(&message).await, SendOutcome::Sent(_)));
        drop(gateway);
        let reopened = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        assert!(matches!(
            reopened.reconcile(&key).await,
            Reconciliation::Delivered(_)
        ));
        assert!(matches!(
            reopened.send(&message).await,
            SendOutcome::Sent(_)
        ));
        let text = std::fs::read_to_string(reopened.path()).unwrap();
        assert_eq!(text.lines().count(), 1);
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["channel"], "sms");
        assert_eq!(line["body"], "hi");
    }
}
