//! `forewarn simulate`: a draft rule set replayed over real history before it ships.
//!
//! ```text
//!  live database (read only) ─ stored events, in intake's order ─┐
//!  or a JSON Lines file ──────────────────────────────────────────┤
//!                                                                 ▼
//!  scratch SQLite in a temporary folder ◀── intake's own batch transaction (rules, risk,
//!   (state as of each event's time;          consent, opt-outs, quiet hours, caps,
//!    due messages count as sent)              incidents, rendering) with the draft
//!                                                                 │
//!  report: per rule and channel ◀── what each counted batch decided, held back, failed
//!  comparison ◀── the live outbox's decisions for the same events
//! ```
//!
//! Nothing is sent and nothing is written where it matters: the live database is only read,
//! and the scratch one is deleted with its folder. Each event is decided as of the time intake
//! took it. Events before the window are replayed first, uncounted, so the state the window
//! starts from (customers, orders, what was sent, caps) is the one the draft would have built.

mod costs;
mod report;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use costs::CostSettings;
pub use report::{
    face_value, Comparison, Decided, Difference, Failure, Report, Sample, Tally, SAMPLES,
};

use crate::authoring::Authoring;
use crate::domain::{Accepted, CloudEvent, EventType, Money, Payload};
use crate::intake::transaction::write_batch;
use crate::policy::Policy;
use crate::store::{DatabaseSettings, EventRecord, SqliteStore, Store, StoreError, StoredEvent};

/// How many stored events are read at a time.
const PAGE: usize = 5_000;
/// The most events one replayed batch holds (intake's own default batch size).
const BATCH: usize = 2_000;

/// Where the replayed events come from.
#[derive(Debug, Clone)]
pub enum Events {
    /// The live database's events taken in `[from, to)`; every earlier one is replayed first,
    /// for the state it leaves, and not counted.
    Stored {
        /// The window's start.
        from: DateTime<Utc>,
        /// Its end.
        to: DateTime<Utc>,
    },
    /// A JSON Lines file of CloudEvents, replayed on an empty state, each as of its `time`
    /// (else now). Nothing live is compared with it.
    File(PathBuf),
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A database could not be read or the scratch one written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scratch folder or the events file could not be used.
    #[error("{0}")]
    Io(String),
}

/// A simulation of `draft` against the live database `live`.
pub struct Simulation<'a> {
    /// Read only: the events, and what the live rules decided.
    pub live: &'a dyn Store,
    /// The rules and templates to try.
    pub draft: &'a Authoring,
    /// Consent, quiet hours, caps and incidents, as configured.
    pub policy: &'a Policy,
    /// Prices for the estimates.
    pub costs: &'a CostSettings,
}

/// The replay's state between batches.
struct Replay {
    scratch: SqliteStore,
    /// Kept until the end: dropping it deletes the scratch database.
    _folder: tempfile::TempDir,
    /// Each order's total, as the events so far left it: the base of a discount's face value.
    orders: HashMap<String, Money>,
    /// Outage events whose fan-out the replay does not run: their live messages are not
    /// compared.
    fanning_out: HashSet<(String, String)>,
    report: Report,
}

impl Simulation<'_> {
    /// Replays `events` and reports what the draft would do.
    pub async fn run(&self, events: &Events) -> Result<Report, SimulateError> {
        let folder = tempfile::tempdir().map_err(|e| SimulateError::Io(e.to_string()))?;
        let settings = DatabaseSettings {
            url: format!("sqlite://{}", folder.path().join("simulation.db").display()),
            ..DatabaseSettings::default()
        };
        let scratch = SqliteStore::connect(&settings).await?;
        scratch.migrate().await?;
        let mut replay = Replay {
            scratch,
            _folder: folder,
            orders: HashMap::new(),
            fanning_out: HashSet::new(),
            report: Report {
                cost_currency: self
                    .costs
                    .priced()
                    .then(|| self.costs.currency.clone().unwrap_or_default()),
                ..Report::default()
            },
        };
        match events {
            Events::Stored { from, to } => {
                self.replay_stored(&mut replay, *from, *to).await?;
                replay.report.purged = self.live.purged_events(*from, *to).await?;
                let fanning_out = replay.fanning_out.clone();
                let live: Vec<_> = self
                    .live
                    .decided_outreach(*from, *to)
                    .await?
                    .into_iter()
                    .filter(|l| !fanning_out.contains(&(l.event.0.clone(), l.event.1.clone())))
                    .collect();
                replay.report.compare(&live, &replay.orders);
            }
            Events::File(path) => self.replay_file(&mut replay, path).await?,
        }
        replay.scratch.close().await;
        Ok(replay.report)
    }

    async fn replay_stored(
        &self,
        replay: &mut Replay,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(), SimulateError> {
        let mut after = 0;
        loop {
            let page = self.live.stored_events(after, to, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.seq;
            let mut batch: Vec<Accepted> = Vec::new();
            let mut batch_time = None;
            for stored in page {
                let accepted = match accepted_of(&stored) {
                    Ok(accepted) => accepted,
                    Err(why) => {
                        let event = format!("{}#{}", stored.source, stored.id);
                        replay.report.unreadable.push(format!("{event}: {why}"));
                        continue;
                    }
                };
                // Events intake took together are decided together, as of that moment.
                if batch_time != Some(stored.received_at) || batch.len() == BATCH {
                    if let Some(at) = batch_time {
                        self.replay_batch(replay, std::mem::take(&mut batch), at, at >= from)
                            .await?;
                    }
                    batch_time = Some(stored.received_at);
                }
                batch.push(accepted);
            }
            if let Some(at) = batch_time {
                self.replay_batch(replay, batch, at, at >= from).await?;
            }
        }
    }

    async fn replay_file(&self, replay: &mut Replay, path: &PathBuf) -> Result<(), SimulateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimulateError::Io(format!("{}: {e}", path.display())))?;
        let now = Utc::now();
        let mut batch: Vec<Accepted> = Vec::new();
        let mut batch_time = None;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = CloudEvent::parse(line.as_bytes(), None)
                .map_err(|e| e.to_string())
                .and_then(|event| {
                    let payload =
                        Payload::parse(event.event_type, &event.data).map_err(|e| e.to_string())?;
                    Ok(Accepted { event, payload })
                });
            let accepted = match parsed {
                Ok(accepted) => accepted,
                Err(why) => {
                    let at = format!("{}:{}", path.display(), number + 1);
                    replay.report.unreadable.push(format!("{at}: {why}"));
                    continue;
                }
            };
            let at = accepted.event.time.unwrap_or(now);
            if batch_time != Some(at) || batch.len() == BATCH {
                if let Some(time) = batch_time {
                    self.replay_batch(replay, std::mem::take(&mut batch), time, true)
                        .await?;
                }
                batch_time = Some(at);
            }
            batch.push(accepted);
        }
        if let Some(time) = batch_time {
            self.replay_batch(replay, batch, time, true).await?;
        }
        Ok(())
    }

    /// One batch, decided as of `at` on the scratch database; counted if `counted`.
    async fn replay_batch(
        &self,
        replay: &mut Replay,
        accepted: Vec<Accepted>,
        at: DateTime<Utc>,
        counted: bool,
    ) -> Result<(), SimulateError> {
        // What a dispatcher keeping up would have sent by now has gone.
        replay.scratch.settle_due_as_sent(at).await?;
        let records: Vec<EventRecord> = accepted.iter().map(|a| EventRecord::of(a, at)).collect();
        let written = write_batch(
            &replay.scratch,
            self.draft,
            self.policy,
            &accepted,
            &records,
            at,
        )
        .await?;
        for order in &written.plan.changes.orders {
            if let Some(total) = &order.total {
                replay
                    .orders
                    .insert(order.id.as_str().to_owned(), total.clone());
            }
        }
        let report = &mut replay.report;
        if !counted {
            report.warm_up += accepted.len() as u64;
            return Ok(());
        }
        report.events += accepted.len() as u64;
        for fanout in &written.plan.changes.fanouts {
            report.fanouts_not_replayed += 1;
            replay
                .fanning_out
                .insert((fanout.event.source.clone(), fanout.event.id.clone()));
        }
        report.count(&written.plan, &written.queued, &replay.orders, self.costs);
        Ok(())
    }
}

/// A stored event as intake parsed it.
fn accepted_of(stored: &StoredEvent) -> Result<Accepted, String> {
    let event_type =
        EventType::parse(&stored.event_type).ok_or_else(|| "unknown type".to_owned())?;
    let data: serde_json::Value = serde_json::from_str(&stored.data).map_err(|e| e.to_string())?;
    let envelope = serde_json::json!({
        "specversion": "1.0",
        "id": stored.id,
        "source": stored.source,
        "type": event_type.as_str(),
        "subject": stored.subject,
        "time": stored.time,
        "data": data,
    });
    let event =
        CloudEvent::parse(envelope.to_string().as_bytes(), None).map_err(|e| e.to_string())?;
    let payload = Payload::parse(event.event_type, &event.data).map_err(|e| e.to_string())?;
    Ok(Accepted { event, payload })
}
