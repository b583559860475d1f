//! The sandbox gateway: every message becomes one JSON line in `outbox/<channel>.jsonl`.
//!
//! It is the embedded default, so forewarn runs end to end with no credentials, and it is
//! exact about duplicates: it remembers every idempotency key it wrote (reading the file back
//! at start), so a resend after a crash is recognised and nothing is written twice. A key is
//! remembered as a 128-bit digest (about 20 bytes each), so an incident's million messages cost
//! megabytes, not the hundreds a set of strings would.

use std::collections::HashSet;
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
    /// The digest of the idempotency key of every line in the file.
    written: HashSet<u128>,
}

/// What the sandbox remembers of a key: the first 128 bits of its SHA-256.
fn digest(key: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

/// The provider id of a key's line: derived, so a reconciled message gets the same one.
fn provider_id(key: &str) -> String {
    format!("sbx-{key}")
}

impl SandboxGateway {
    /// Opens (creating) `<dir>/<channel>.jsonl` and indexes the keys already in it.
    pub fn open(dir: &Path, channel: Channel) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = sandbox_file(dir, channel);
        let mut written = HashSet::new();
        if let Ok(existing) = File::open(&path) {
            for line in BufReader::new(existing).lines() {
                // A line cut short by a crash has no key to read; it is skipped, and the
                // message is resent whole.
                let Ok(record) = serde_json::from_str::<Value>(&line?) else {
                    continue;
                };
                if let Some(key) = record.get("key").and_then(Value::as_str) {
                    written.insert(digest(key));
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
        let key = digest(message.key.as_str());
        let provider_id = provider_id(message.key.as_str());
        if state.written.contains(&key) {
            return SendOutcome::Sent(Receipt { provider_id });
        }
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
        state.written.insert(key);
        SendOutcome::Sent(Receipt { provider_id })
    }

    async fn reconcile(&self, key: &IdempotencyKey) -> Reconciliation {
        if self
            .state
            .lock()
            .await
            .written
            .contains(&digest(key.as_str()))
        {
            Reconciliation::Delivered(Receipt {
                provider_id: provider_id(key.as_str()),
            })
        } else {
            Reconciliation::NotDelivered
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
