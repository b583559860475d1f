//! `forewarn simulate`: a draft rule set replayed over real history before it ships.
//!
//! ```text
//!  live database (read only) ─ stored events, in intake's order ─┐
//!  or a JSON Lines file ──────────────────────────────────────────┤
//!                                                                 ▼
//!  scratch SQLite in a temporary folder ◀── intake's own batch transaction (rules, risk,
//!   (state as of each event's time;          consent, opt-outs, quiet hours, caps,
//!    due messages count as sent)              incidents, rendering) with the draft,
//!                                             then the fan-out worker for any incident
//!                                                                 │
//!  report: per rule and channel ◀── what each counted batch decided, held back, failed
//!  comparison ◀── the live outbox's decisions for the same events
//! ```
//!
//! Nothing is sent and nothing is written where it matters: the live database is only read,
//! and the scratch one is deleted with its folder. Each event is decided as of the time intake
//! took it. Events before the window are replayed first, uncounted, so the state the window
//! starts from (customers, orders, what was sent, caps) is the one the draft would have built.

mod comparison;
mod costs;
mod fanout;
mod report;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use comparison::{Comparison, Decided, Difference, Sample, SAMPLES};
pub use costs::CostSettings;
pub use report::{face_value, money_shown, Failure, Report, Tally};

use crate::authoring::Authoring;
use crate::domain::{Accepted, Money};
use crate::incident::IncidentSettings;
use crate::intake::transaction::write_batch;
use crate::policy::Policy;
use crate::store::{
    EventRecord, FeedbackStore, LiveOptOut, SqliteStore, Store, StoreError, StoredEvent,
};

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
    pub draft: Arc<Authoring>,
    /// Consent, quiet hours, caps and incidents, as configured.
    pub policy: &'a Policy,
    /// How incidents fan out to their customers, as configured.
    pub incidents: &'a IncidentSettings,
    /// Prices for the estimates.
    pub costs: &'a CostSettings,
    /// Kept up to date as the replay goes, for whoever watches it.
    pub progress: Option<&'a Progress>,
}

/// How far a simulation has got: for a progress bar (the console's) while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events replayed so far, the uncounted ones before the window included.
    events: AtomicU64,
    /// Where the replay is, and where it ends: places in intake's order (stored events, whose
    /// places have gaps where an event was refused or purged) or lines of a file.
    at: AtomicU64,
    end: AtomicU64,
}

impl Progress {
    /// Events replayed so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// How much of the replay is done, from 0 to 1 (0 until its end is known).
    pub fn done(&self) -> f64 {
        let end = self.end.load(Ordering::Relaxed);
        if end == 0 {
            return 0.0;
        }
        (self.at.load(Ordering::Relaxed) as f64 / end as f64).min(1.0)
    }

    fn ends_at(&self, end: u64) {
        self.end.store(end, Ordering::Relaxed);
    }

    fn replayed(&self, events: usize, at: u64) {
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.at.store(at, Ordering::Relaxed);
    }
}

/// The replay's state between batches.
struct Replay {
    scratch: SqliteStore,
    /// Kept until the end: dropping it deletes the scratch database.
    _folder: tempfile::TempDir,
    /// Each order's total, as the events so far left it: the base of a discount's face value.
    orders: HashMap<String, Money>,
    /// Stored events that could not be read, by (`source`, `id`): not replayed, so their live
    /// messages are not compared.
    unreadable: HashSet<(String, String)>,
    /// Incidents' fan-outs, run after the batch that writes them.
    fanouts: fanout::ReplayedFanouts,
    /// The live opt-outs not applied yet, oldest first.
    opt_outs: VecDeque<LiveOptOut>,
    report: Report,
}

impl Simulation<'_> {
    /// Replays `events` and reports what the draft would do. What it logs is in a
    /// `simulation` span, and what it measures is marked as a replay
    /// ([`crate::metrics::replaying`]): inside `forewarn run` (the console), neither reads as
    /// the process's own work.
    pub async fn run(&self, events: &Events) -> Result<Report, SimulateError> {
        use tracing::Instrument as _;
        crate::metrics::replaying(self.replay(events))
            .instrument(tracing::info_span!("simulation"))
            .await
    }

    async fn replay(&self, events: &Events) -> Result<Report, SimulateError> {
        let folder = tempfile::tempdir().map_err(|e| SimulateError::Io(e.to_string()))?;
        let scratch = SqliteStore::scratch(&folder.path().join("simulation.db")).await?;
        let fanouts =
            fanout::ReplayedFanouts::new(&scratch, self.draft.clone(), self.policy, self.incidents);
        let mut replay = Replay {
            scratch,
            _folder: folder,
            orders: HashMap::new(),
            unreadable: HashSet::new(),
            fanouts,
            opt_outs: VecDeque::new(),
            report: Report::new(
                self.costs
                    .priced()
                    .then(|| self.costs.currency.clone().unwrap_or_default()),
            ),
        };
        match events {
            Events::Stored { from, to } => {
                // What the live rules decided for the window's events, fan-outs included: each
                // message the replay decides is matched with it as it comes.
                let live = self.live.decided_outreach(*from, *to).await?;
                replay.report.compare_with(live);
                replay.opt_outs = self.live.opt_outs().await?.into();
                self.replay_stored(&mut replay, *from, *to).await?;
                replay.report.purged = self.live.purged_events(*from, *to).await?;
                replay
                    .report
                    .finish_comparison(&replay.unreadable, &replay.orders);
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
        if let Some(progress) = self.progress {
            progress.ends_at(self.live.last_seq().await?.max(0) as u64);
        }
        let mut after = 0;
        let mut parsing: Option<tokio::task::JoinHandle<(Vec<Parsed>, i64)>> = None;
        loop {
            let mut stages = crate::metrics::Stages::start();
            let page = self.live.stored_events(after, to, PAGE).await?;
            stages.lap("simulate.read");
            let last = page.last().map(|event| event.seq);
            let next = last.map(|seq| {
                after = seq;
                tokio::task::spawn_blocking(move || {
                    (page.into_iter().map(Parsed::of).collect(), seq)
                })
            });
            if let Some(parsed) = parsing.take() {
                let (parsed, last) = parsed
                    .await
                    .map_err(|e| SimulateError::Io(format!("parsing stopped: {e}")))?;
                let events = parsed.len();
                self.replay_page(replay, parsed, from).await?;
                if let Some(progress) = self.progress {
                    progress.replayed(events, last.max(0) as u64);
                }
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
                    replay.unreadable.extend(parsed.key);
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
                    key: None,
                    accepted,
                }
            })
            .collect();
        let lines = parsed.len();
        if let Some(progress) = self.progress {
            progress.ends_at(lines as u64);
        }
        self.replay_page(replay, parsed, DateTime::<Utc>::MIN_UTC)
            .await?;
        if let Some(progress) = self.progress {
            progress.replayed(lines, lines as u64);
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
        let mut stages = crate::metrics::Stages::start();
        // What a dispatcher keeping up would have sent by now has gone, and what customers
        // said meanwhile (STOP, an unsubscribe link) holds. An opt-out intake recorded from an
        // event is as of its batch, and that batch's own replay records it.
        replay.scratch.settle_due_as_sent(at).await?;
        while let Some(opt_out) = replay.opt_outs.front().filter(|o| o.at < at) {
            replay
                .scratch
                .record_opt_out(
                    &opt_out.customer_id,
                    opt_out.channel,
                    opt_out.scope,
                    opt_out.at,
                    None,
                )
                .await?;
            replay.opt_outs.pop_front();
        }
        stages.lap("simulate.settle");
        let records: Vec<EventRecord> = accepted.iter().map(|a| EventRecord::of(a, at)).collect();
        let written = write_batch(
            &replay.scratch,
            &self.draft,
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
        if !written.plan.changes.fanouts.is_empty() {
            replay.fanouts.written();
        }
        let report = &mut replay.report;
        if counted {
            report.events += accepted.len() as u64;
            report.fanouts += written.plan.changes.fanouts.len() as u64;
            report.count(&written.plan, &written.queued, &replay.orders, self.costs);
        } else {
            report.warm_up += accepted.len() as u64;
        }
        stages.lap("simulate.count");
        // An incident's customers are found and decided before the next event is taken.
        let (orders, costs) = (&replay.orders, self.costs);
        replay
            .fanouts
            .run(at, |page| {
                if counted {
                    report.count(&page.plan, &page.queued, orders, costs);
                }
            })
            .await?;
        stages.lap("simulate.fanout");
        Ok(())
    }
}

/// A stored event, parsed.
struct Parsed {
    /// When intake took it.
    received_at: DateTime<Utc>,
    /// Its `source` and `id`, as stored (none for a line of a file).
    key: Option<(String, String)>,
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
            key: Some((stored.source, stored.id)),
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
