//! The sandbox gateway: every message becomes one JSON line in `outbox/<channel>.jsonl`.
//!
//! It is the embedded default, so forewarn runs end to end with no credentials, and it is
//! exact about duplicates: it knows every idempotency key in the file, so a resend after a
//! crash is recognised and nothing is written twice. A key is remembered as a 128-bit digest
//! (about 20 bytes each), so an incident's million messages cost megabytes, not the hundreds a
//! set of strings would.
//!
//! Several forewarn processes may share one outbox folder (scale-out on one machine). Each
//! write and each reconciliation takes an exclusive lock on the file (`flock`) and first reads
//! what the others appended since, so a process that takes over another's expired claims sees
//! the lines that process wrote, and no key is written twice whoever holds it. A line is
//! written whole or not at all: a write that fails part-way (a full disk) is cut back off the
//! file, and a torn tail left by a process that died mid-write is cut off by the next writer,
//! so the next line never sticks to a fragment.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
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
    /// The digest of the idempotency key of every line read so far.
    written: HashSet<u128>,
    /// Where reading stopped: just after the last whole line read.
    read_to: u64,
}

/// How much of the file is read at a time when catching up.
const READ_CHUNK: usize = 1024 * 1024;

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

impl State {
    /// Runs `f` holding the file's lock: every process's writes, and its reads of new lines,
    /// take turns.
    fn locked<T>(
        &mut self,
        f: impl FnOnce(&mut State) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        self.file.lock()?;
        let result = f(self);
        let unlocked = self.file.unlock();
        let result = result?;
        unlocked?;
        Ok(result)
    }

    /// Reads the lines appended since the last read (by this process or another), under the
    /// lock, a chunk at a time: at start that is the whole file, which after an incident holds
    /// a million lines. A fragment after the last newline can only be what a writer that died
    /// mid-line left (a live writer finishes or cuts back its line before it lets go of the
    /// lock): it is cut off, and its message is resent whole.
    fn catch_up(&mut self) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        // Read and not yet indexed: the start of a line that goes on in the next chunk.
        let mut pending: Vec<u8> = Vec::new();
        let mut offset = self.read_to;
        while offset < len {
            let take = usize::try_from(len - offset).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
            let start = pending.len();
            pending.resize(start + take, 0);
            self.file.read_exact_at(&mut pending[start..], offset)?;
            offset += take as u64;
            if let Some(last) = pending.iter().rposition(|b| *b == b'\n') {
                self.index(&pending[..=last]);
                self.read_to += last as u64 + 1;
                pending.drain(..=last);
            }
        }
        if self.read_to < len {
            tracing::warn!(bytes = len - self.read_to, "Cutting off a torn sandbox line left by a process that died mid-write; its message is resent whole.");
            self.file.set_len(self.read_to)?;
        }
        Ok(())
    }

    /// Remembers the key of every line in `lines` (whole lines, each ending in a newline).
    fn index(&mut self, lines: &[u8]) {
        for line in lines.split(|b| *b == b'\n') {
            // A line that does not parse (one torn by a crash before lines were cut back, or
            // the empty piece after the last newline) has no key to read; it is skipped.
            let Ok(record) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if let Some(key) = record.get("key").and_then(Value::as_str) {
                self.written.insert(digest(key));
            }
        }
    }

    /// Appends `line` whole, or leaves the file as it was.
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Err(e) = self.file.write_all(line) {
            self.file.set_len(self.read_to)?;
            return Err(e);
        }
        self.read_to += line.len() as u64;
        Ok(())
    }
}

impl SandboxGateway {
    /// Opens (creating) `<dir>/<channel>.jsonl` and indexes the keys already in it.
    pub fn open(dir: &Path, channel: Channel) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = sandbox_file(dir, channel);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut state = State {
            file,
            written: HashSet::new(),
            read_to: 0,
        };
        state.locked(State::catch_up)?;
        Ok(Self {
            path,
            state: Mutex::new(state),
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
        // Known to this process: written already, no need to ask the file.
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
        let written = state.locked(|state| {
            state.catch_up()?;
            if state.written.contains(&key) {
                return Ok(());
            }
            state.append(line.as_bytes())?;
            state.written.insert(key);
            Ok(())
        });
        match written {
            Ok(()) => SendOutcome::Sent(Receipt { provider_id }),
            Err(e) => SendOutcome::Retry {
                after: None,
                reason: format!("cannot write {}: {e}", self.path.display()),
            },
        }
    }

    async fn reconcile(&self, asked: &IdempotencyKey) -> Reconciliation {
        let mut state = self.state.lock().await;
        let key = digest(asked.as_str());
        let holds = state.locked(|state| {
            state.catch_up()?;
            Ok(state.written.contains(&key))
        });
        match holds {
            Ok(true) => Reconciliation::Delivered(Receipt {
                provider_id: provider_id(asked.as_str()),
            }),
            Ok(false) => Reconciliation::NotDelivered,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "Cannot read the sandbox file to reconcile.");
                Reconciliation::Unknown
            }
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
            unsubscribe: None,
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

    fn sms(key: &IdempotencyKey) -> (MessageContent, IdempotencyKey) {
        (
            MessageContent::Sms {
                to: "+821012345678".into(),
                body: "hi".into(),
            },
            key.clone(),
        )
    }

    fn key(entity: &str) -> IdempotencyKey {
        IdempotencyKey::derive("r", &CustomerId::parse("c").unwrap(), entity, Channel::Sms)
    }

    async fn send(gateway: &SandboxGateway, key: &IdempotencyKey) -> SendOutcome {
        let (content, key) = sms(key);
        gateway
            .send(&OutboundMessage {
                category: crate::domain::Category::Transactional,
                key: &key,
                rule_id: "r",
                customer_id: "c",
                content: &content,
                unsubscribe: None,
            })
            .await
    }

    #[tokio::test]
    async fn a_process_taking_over_sees_what_another_wrote_to_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        // Two processes' gateways on one outbox folder, both open before either writes.
        let first = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        let second = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        let taken_over = key("e-1");
        assert!(matches!(
            send(&first, &taken_over).await,
            SendOutcome::Sent(_)
        ));

        assert!(matches!(
            second.reconcile(&taken_over).await,
            Reconciliation::Delivered(_)
        ));
        assert!(matches!(
            send(&second, &taken_over).await,
            SendOutcome::Sent(_)
        ));
        assert!(matches!(
            send(&second, &key("e-2")).await,
            SendOutcome::Sent(_)
        ));
        assert!(matches!(
            first.reconcile(&key("e-2")).await,
            Reconciliation::Delivered(_)
        ));
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_line_torn_by_a_writer_that_died_is_cut_off_and_the_next_line_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        assert!(matches!(
            send(&gateway, &key("e-1")).await,
            SendOutcome::Sent(_)
        ));
        // Another process died half way through its line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(gateway.path())
            .unwrap();
        file.write_all(br#"{"key":"torn","provider_id":"sbx-"#)
            .unwrap();

        assert!(matches!(
            send(&gateway, &key("e-2")).await,
            SendOutcome::Sent(_)
        ));
        let text = std::fs::read_to_string(gateway.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line whole"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1]["key"], key("e-2").as_str());
    }

    #[tokio::test]
    async fn a_file_larger_than_a_read_is_indexed_whole_lines_across_reads_included() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        let keys: Vec<IdempotencyKey> = (0..12_000).map(|i| key(&format!("e-{i}"))).collect();
        for key in &keys {
            assert!(matches!(send(&gateway, key).await, SendOutcome::Sent(_)));
        }
        let size = std::fs::metadata(gateway.path()).unwrap().len();
        assert!(
            size > 2 * READ_CHUNK as u64,
            "{size} bytes: more than two reads"
        );

        let reopened = SandboxGateway::open(dir.path(), Channel::Sms).unwrap();
        for key in &keys {
            assert!(
                matches!(reopened.reconcile(key).await, Reconciliation::Delivered(_)),
                "{key}"
            );
        }
    }
}
