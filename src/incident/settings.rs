//! `[incidents]`: when customers hear about an incident again, and how the fan-out pages.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::incidents::UpdateNotice;

/// `[incidents]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// When an `outage.updated` reaches customers again: `"escalation"` (default: only when the
    /// severity rises) or `"never"`.
    pub updates: UpdateNotice,
    /// Off: `forewarn run` finds no customers for outage events (another process does).
    pub fanout: bool,
    /// Customers decided per page, one transaction each: what a crash may redo (nothing is
    /// sent twice; the page's decisions are simply made again).
    pub page_size: usize,
    /// Customers ranked before the most urgent of them are sent: the first messages go out
    /// after this many are ranked, and the order is exact within each window.
    pub rank_window: usize,
    /// How long a process holds a fan-out between pages before another may take it over:
    /// far longer than a page.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often an idle fan-out worker looks for new work when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Where `forewarn announce` and `POST /v1/incidents` publish: this prefix and the event
    /// type (`events.outage.started`), inside the events stream.
    pub subject_prefix: String,
    /// The CloudEvents `source` of announcements.
    pub source: String,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            updates: UpdateNotice::default(),
            fanout: true,
            page_size: 1000,
            rank_window: 50_000,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            subject_prefix: "events.".into(),
            source: "forewarn/incidents".into(),
        }
    }
}
