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
    face_value, money_shown, Comparison, Decided, Difference, Failure, Report, Sample, Tally,
    SAMPLES,
};

use crate::authoring::Authoring;
use crate::domain::{Accepted, Money};
use crate::intake::transaction::write_batch;
use crate::policy::Policy;
use crate::store::{EventRecord, SqliteStore, Store, StoreError, StoredEvent};

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
    /// The counted events, by (`source`, `id`): only their live messages are compared.
    counted: HashSet<(String, String)>,
    /// Outage events whose fan-out the replay does not run: their live messages are not
    /// compared.
    fanning_out: HashSet<(String, String)>,
    report: Report,
}

impl Simulation<'_> {
    /// Replays `events` and reports what the draft would do.
    pub async fn run(&self, events: &Events) -> Result<Report, SimulateError> {
        let folder = tempfile::tempdir().map_err(|e| SimulateError::Io(e.to_string()))?;
        let scratch = SqliteStore::scratch(&folder.path().join("simulation.db")).await?;
        let mut replay = Replay {
            scratch,
            _folder: folder,
            orders: HashMap::new(),
            counted: HashSet::new(),
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
                // What intake decided for the counted events: not what a fan-out, or an event
                // taken before the window, queued meanwhile.
                let live: Vec<_> = self
                    .live
                    .decided_outreach(*from, *to)
                    .await?
                    .into_iter()
                    .filter(|l| {
                        replay.counted.contains(&l.event) && !replay.fanning_out.contains(&l.event)
                    })
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
        // Each page is parsed on another thread while the one before it is replayed: parsing
        // is a tenth of the work, and the replay waits on the scratch database.
        let mut after = 0;
        let mut parsing: Option<tokio::task::JoinHandle<Vec<Parsed>>> = None;
        loop {
            let mut stages = crate::metrics::Stages::start();
            let page = self.live.stored_events(after, to, PAGE).await?;
            stages.lap("simulate.read");
            let last = page.last().map(|event| event.seq);
            let next = last.map(|seq| {
                after = seq;
                tokio::task::spawn_blocking(move || page.into_iter().map(Parsed::of).collect())
            });
            if let Some(parsed) = parsing.take() {
                let parsed = parsed
                    .await
                    .map_err(|e| SimulateError::Io(format!("parsing stopped: {e}")))?;
                self.replay_page(replay, parsed, from).await?;
            }
            match next {
                Some(next) => parsing = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One page of parsed events, replayed batch by batch: events intake took together are
    /// decided together, as of that moment.
    async fn replay_page(
        &self,
        replay: &mut Replay,
        page: Vec<Parsed>,
        from: DateTime<Utc>,
    ) -> Result<(), SimulateError> {
        let mut batch: Vec<Accepted> = Vec::new();
        let mut batch_time = None;
        for parsed in page {
            let accepted = match parsed.accepted {
                Ok(accepted) => accepted,
                Err(why) => {
                    replay.report.unreadable.push(why);
                    continue;
                }
            };
            if batch_time != Some(parsed.received_at) || batch.len() == BATCH {
                if let Some(at) = batch_time {
                    self.replay_batch(replay, std::mem::take(&mut batch), at, at >= from)
                        .await?;
                }
                batch_time = Some(parsed.received_at);
            }
            batch.push(accepted);
        }
        if let Some(at) = batch_time {
            self.replay_batch(replay, batch, at, at >= from).await?;
        }
        Ok(())
    }

    /// A file's events, each as of its `time` (else now), all counted.
    async fn replay_file(&self, replay: &mut Replay, path: &PathBuf) -> Result<(), SimulateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimulateError::Io(format!("{}: {e}", path.display())))?;
        let now = Utc::now();
        let parsed: Vec<Parsed> = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                let accepted = Accepted::parse(line.as_bytes(), None)
                    .map_err(|e| format!("{}:{}: {}", path.display(), number + 1, e.detail));
                let received_at = accepted.as_ref().ok().and_then(|a| a.event.time);
                Parsed {
                    received_at: received_at.unwrap_or(now),
                    accepted,
                }
            })
            .collect();
        self.replay_page(replay, parsed, DateTime::<Utc>::MIN_UTC)
            .await
    }

    /// One batch, decided as of `at` on the scratch database; counted if `counted`.
    async fn replay_batch(
        &self,
        replay: &mut Replay,
        accepted: Vec<Accepted>,
        at: DateTime<Utc>,
        counted: bool,
    ) -> Result<(), SimulateError> {
        let mut stages = crate::metrics::Stages::start();
        // What a dispatcher keeping up would have sent by now has gone.
        replay.scratch.settle_due_as_sent(at).await?;
        stages.lap("simulate.settle");
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
        let mut stages = crate::metrics::Stages::start();
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
        replay.counted.extend(
            accepted
                .iter()
                .map(|a| (a.event.key.source.clone(), a.event.key.id.clone())),
        );
        for fanout in &written.plan.changes.fanouts {
            report.fanouts_not_replayed += 1;
            replay
                .fanning_out
                .insert((fanout.event.source.clone(), fanout.event.id.clone()));
        }
        report.count(&written.plan, &written.queued, &replay.orders, self.costs);
        stages.lap("simulate.count");
        Ok(())
    }
}

/// A stored event, parsed.
struct Parsed {
    /// When intake took it.
    received_at: DateTime<Utc>,
    /// The event, or `source#id: why` it could not be read.
    accepted: Result<Accepted, String>,
}

impl Parsed {
    fn of(stored: StoredEvent) -> Parsed {
        let mut stages = crate::metrics::Stages::start();
        let accepted =
            accepted_of(&stored).map_err(|why| format!("{}#{}: {why}", stored.source, stored.id));
        stages.lap("simulate.parse");
        Parsed {
            received_at: stored.received_at,
            accepted,
        }
    }
}

/// A stored event as intake parsed it. The envelope is written around the stored `data` text
/// as it is, so the data is parsed once, as intake parsed it.
fn accepted_of(stored: &StoredEvent) -> Result<Accepted, String> {
    let text = |value: &str| serde_json::Value::from(value).to_string();
    let mut envelope = format!(
        r#"{{"specversion":"1.0","id":{},"source":{},"type":{}"#,
        text(&stored.id),
        text(&stored.source),
        text(&stored.event_type)
    );
    if let Some(subject) = &stored.subject {
        envelope.push_str(&format!(r#","subject":{}"#, text(subject)));
    }
    if let Some(time) = stored.time {
        envelope.push_str(&format!(r#","time":"{}""#, time.to_rfc3339()));
    }
    envelope.push_str(&format!(r#","data":{}}}"#, stored.data));
    Accepted::parse(envelope.as_bytes(), None).map_err(|e| e.detail)
}
