//! What the demo shows of the messages: those the sandbox gateway received, those held for a
//! customer's quiet hours, those cancelled before they went — each once, in the order they
//! happen, so that every count the demo prints is the number of lines it lists under it.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::output::{say, OutputError};
use crate::domain::{time_shown, time_shown_in, Channel, IdempotencyKey};
use crate::gateway::sandbox_file;
use crate::store::Store;

/// A message to show: its content as the gateway got (or will get) it, who it is for, and a
/// note (`held for quiet hours until …`).
pub(super) struct Shown {
    record: Value,
    note: String,
}

impl Shown {
    /// The customer it is for.
    pub(super) fn customer(&self) -> &str {
        self.record["customer_id"].as_str().unwrap_or("?")
    }

    /// The rule that decided it.
    pub(super) fn rule(&self) -> &str {
        self.record["rule_id"].as_str().unwrap_or("?")
    }
}

/// A message cancelled before it went, and why.
pub(super) struct Cancelled {
    /// The customer it was for.
    pub(super) customer: String,
    /// The rule that decided it.
    pub(super) rule: String,
    /// Its channel.
    pub(super) channel: Channel,
    /// `cancelled: the parcel was delivered`, `superseded by rule …`.
    pub(super) reason: String,
}

/// Remembers what was shown, so each step lists only what is new.
pub(super) struct Listing {
    outbox: PathBuf,
    customers: Vec<String>,
    sent: HashSet<String>,
    held: HashSet<String>,
    cancelled: HashSet<String>,
}

impl Listing {
    /// Messages in `outbox` (the sandbox gateway's folder) for `customers`.
    pub(super) fn new(outbox: PathBuf, customers: Vec<String>) -> Self {
        Listing {
            outbox,
            customers,
            sent: HashSet::new(),
            held: HashSet::new(),
            cancelled: HashSet::new(),
        }
    }

    /// The messages the sandbox received since the last call, customer by customer.
    pub(super) fn new_sent(&mut self) -> anyhow::Result<Vec<Shown>> {
        let mut by_customer: BTreeMap<String, Vec<Shown>> = BTreeMap::new();
        for channel in Channel::ALL {
            let Ok(text) = std::fs::read_to_string(sandbox_file(&self.outbox, channel)) else {
                continue;
            };
            for line in text.lines() {
                let record: Value = serde_json::from_str(line)?;
                let key = record["key"].as_str().unwrap_or_default().to_owned();
                if !self.sent.insert(key.clone()) {
                    continue;
                }
                let note = if self.held.contains(&key) {
                    " · sent when the customer's quiet hours ended".to_owned()
                } else {
                    String::new()
                };
                let shown = Shown { record, note };
                by_customer
                    .entry(shown.customer().to_owned())
                    .or_default()
                    .push(shown);
            }
        }
        Ok(by_customer.into_values().flatten().collect())
    }

    /// The messages waiting for a customer's quiet hours at `now`, not listed as held before.
    pub(super) async fn new_held(
        &mut self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Shown>> {
        let mut held = Vec::new();
        for customer in &self.customers {
            let timeline = store.timeline(customer, DateTime::<Utc>::MIN_UTC).await?;
            let zone = timeline
                .customer
                .as_ref()
                .and_then(|doc| doc.as_object().get("timezone")?.as_str().map(str::to_owned));
            for m in &timeline.messages {
                let key = m.key.as_str().to_owned();
                if m.status != "pending" || m.next_attempt_at <= now || self.held.contains(&key) {
                    continue;
                }
                self.held.insert(key.clone());
                let mut record = m.content.clone();
                record["customer_id"] = customer.clone().into();
                record["rule_id"] = m.rule_id.clone().into();
                record["key"] = key.into();
                let until = time_shown_in(m.next_attempt_at, zone.as_deref());
                held.push(Shown {
                    record,
                    note: format!(" · held for quiet hours until {until}"),
                });
            }
        }
        Ok(held)
    }

    /// The messages cancelled before they went, not listed before.
    pub(super) async fn new_cancelled(
        &mut self,
        store: &dyn Store,
    ) -> anyhow::Result<Vec<Cancelled>> {
        let mut cancelled = Vec::new();
        for customer in &self.customers {
            let timeline = store.timeline(customer, DateTime::<Utc>::MIN_UTC).await?;
            for m in timeline.messages.iter().filter(|m| m.status == "cancelled") {
                if self.cancelled.insert(m.key.as_str().to_owned()) {
                    cancelled.push(Cancelled {
                        customer: customer.clone(),
                        rule: m.rule_id.clone(),
                        channel: m.channel,
                        reason: m.last_error.clone().unwrap_or_else(|| "cancelled".into()),
                    });
                }
            }
        }
        Ok(cancelled)
    }
}

/// Prints one message with the risk scores it was decided with.
pub(super) async fn print(shown: &Shown, store: &dyn Store) -> anyhow::Result<()> {
    let m = &shown.record;
    super::super::print_message(
        m,
        &shown.note,
        &format!("customer {} · rule {}", shown.customer(), shown.rule()),
    )?;
    let key = IdempotencyKey::from_stored(m["key"].as_str().unwrap_or_default().to_owned());
    if let Some(risk) = store.outreach_risk(&key).await? {
        for target in ["delay", "churn"] {
            if let Some(why) = risk[target]["why"].as_str() {
                say!("     risk · {why}");
            }
        }
    }
    say!();
    Ok(())
}

/// Prints a cancelled message on one line.
pub(super) fn print_cancelled(c: &Cancelled) -> Result<(), OutputError> {
    say!(
        "    ✗ {} to customer {} · rule {} · {}",
        c.channel.as_str().to_uppercase(),
        c.customer,
        c.rule,
        c.reason
    );
    Ok(())
}

/// `2026-11-26 02:00 UTC: 11:00 in Asia/Seoul, 21:00 in America/New_York` — the demo's clock
/// as its customers read it.
pub(super) fn clock_shown(now: DateTime<Utc>, zones: &[&str]) -> String {
    let local: Vec<String> = zones
        .iter()
        .filter_map(|z| z.parse::<chrono_tz::Tz>().ok())
        .map(|tz| format!("{} in {tz}", now.with_timezone(&tz).format("%H:%M")))
        .collect();
    format!("{}: {}", time_shown(now), local.join(", "))
}
