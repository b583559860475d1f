//! Schedules: cron jobs that catch what no event announces — parcels past their promise,
//! orders that never shipped, problems resolved long enough ago to ask how it went — and keep
//! house (release held messages, purge old personal data).
//!
//! Each tick of each schedule runs once across every forewarn process sharing the database: a
//! process takes the schedule's lease in the database before running a tick, and a tick already
//! done is not run again. Ticks missed while forewarn was down fold into one run at start.
//!
//! - [`settings`]: `[scheduler]` and `[schedules.<name>]`, compiled and checked.
//! - [`cron`]: expressions with or without seconds, in a time zone.
//! - [`clock`]: the time, injectable.
//! - [`jobs`]: what each job does.
//! - [`emit`]: synthetic CloudEvents onto the events stream.

pub mod clock;
pub mod cron;
pub mod emit;
pub mod jobs;
pub mod settings;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::join_all;

pub use clock::{Clock, ManualClock, SystemClock};
pub use emit::{Emitter, Synthetic};
pub use jobs::{Job, JobContext, JobReport};
pub use settings::{Schedule, ScheduleSettings, SchedulerSettings};

use crate::shutdown::Shutdown;
use crate::store::{TickClaim, TickOutcome};
use crate::worker::{self, Next, Worker};

/// Runs of a schedule, by `schedule` and `outcome` (`ok`, `failed`, `busy`).
pub const RUNS_METRIC: &str = "forewarn_schedule_runs_total";
/// Things a schedule's runs found, by `schedule`.
pub const FOUND_METRIC: &str = "forewarn_schedule_found_total";
/// Events emitted (messages released, rows purged) by a schedule's runs, by `schedule`.
pub const EMITTED_METRIC: &str = "forewarn_schedule_emitted_total";
/// How long a schedule's runs take, by `schedule`.
pub const DURATION_METRIC: &str = "forewarn_schedule_run_seconds";
/// When a schedule last succeeded (Unix seconds), by `schedule`.
pub const LAST_SUCCESS_METRIC: &str = "forewarn_schedule_last_success_timestamp_seconds";

/// Counted at most this far when logging how many ticks a start folded into one.
const MISSED_COUNT_CAP: usize = 10_000;

/// What came of trying one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickResult {
    /// This process ran it.
    Ran(JobReport),
    /// It failed; the next tick covers it.
    Failed(String),
    /// It (or a later tick) was done already.
    AlreadyDone,
    /// Another process holds the schedule.
    Busy {
        /// Who.
        owner: String,
    },
}

/// In words, for people: what became of a tick that did not run.
impl std::fmt::Display for TickResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TickResult::Ran(report) => f.write_str(&report.summary),
            TickResult::Failed(e) => write!(f, "FAILED: {e}"),
            TickResult::AlreadyDone => {
                f.write_str("already done (a run at or after this time exists)")
            }
            TickResult::Busy { owner } => write!(f, "{owner} is running it now"),
        }
    }
}

/// Runs the schedules of one process.
pub struct Scheduler {
    schedules: Vec<Schedule>,
    ctx: JobContext,
    clock: Arc<dyn Clock>,
    settings: SchedulerSettings,
    owner: String,
}

impl Scheduler {
    /// A scheduler for `schedules`, identified in leases as this host and process.
    pub fn new(
        schedules: Vec<Schedule>,
        ctx: JobContext,
        clock: Arc<dyn Clock>,
        settings: SchedulerSettings,
    ) -> Self {
        Scheduler {
            schedules,
            ctx,
            clock,
            settings,
            owner: owner_id(),
        }
    }

    /// Names this process in leases (tests run several in one process).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The schedules it runs.
    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    /// The schedule named `name`, if it runs it.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// Runs each schedule's due tick as time passes, until shutdown. At start, the latest tick
    /// of each schedule runs if it was not done: missed ticks run once, not once each.
    pub async fn run(self, shutdown: Shutdown) {
        if self.schedules.is_empty() {
            return;
        }
        tracing::info!(
            schedules = %self.schedules.iter().map(|s| format!("{} ({})", s.name, s.cron.source())).collect::<Vec<_>>().join(", "),
            "Schedules running."
        );
        let tried = vec![None; self.schedules.len()];
        worker::run(
            Ticking {
                scheduler: self,
                tried,
            },
            shutdown,
        )
        .await;
    }

    /// Runs the due tick of every schedule as of `now` (for tests and `forewarn schedule run`).
    pub async fn run_due(&self, now: DateTime<Utc>) -> Vec<(String, TickResult)> {
        join_all(self.schedules.iter().filter_map(|s| {
            let tick = s.cron.latest(now)?;
            Some(async move { (s.name.clone(), self.run_tick(s, tick, now).await) })
        }))
        .await
    }

    /// Runs one tick of `schedule` as of `now`, if no process has and none holds it.
    pub async fn run_tick(
        &self,
        schedule: &Schedule,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> TickResult {
        let store = &self.ctx.store;
        let claim = store
            .claim_tick(&schedule.name, tick, &self.owner, now, self.settings.lease)
            .await;
        let cursor = match claim {
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = %e, "Could not take the schedule's lease; the next tick retries.");
                return TickResult::Failed(e.to_string());
            }
            Ok(TickClaim::AlreadyDone) => return TickResult::AlreadyDone,
            Ok(TickClaim::Busy { owner, until }) => {
                tracing::debug!(schedule = %schedule.name, %owner, %until, "Another process runs this schedule.");
                metrics::counter!(RUNS_METRIC, "schedule" => schedule.name.clone(), "outcome" => "busy").increment(1);
                return TickResult::Busy { owner };
            }
            Ok(TickClaim::Claimed { previous, cursor }) => {
                if let Some(previous) = previous {
                    let missed = schedule
                        .cron
                        .count_between(previous, tick, MISSED_COUNT_CAP);
                    if missed > 0 {
                        tracing::info!(schedule = %schedule.name, missed, since = %previous, "Ticks were missed while forewarn was down; running once for all of them.");
                    }
                }
                cursor
            }
        };
        let started = Instant::now();
        let result = jobs::run(&schedule.job, &self.ctx, now, schedule.batch, &cursor).await;
        let elapsed = started.elapsed();
        let labels = [("schedule", schedule.name.clone())];
        metrics::histogram!(DURATION_METRIC, &labels).record(elapsed.as_secs_f64());
        let (outcome, tick_result) = match result {
            Ok(report) => {
                tracing::info!(
                    schedule = %schedule.name,
                    job = schedule.job.name(),
                    tick = %tick,
                    found = report.found,
                    emitted = report.emitted,
                    duration_ms = elapsed.as_millis() as u64,
                    "{}", report.summary
                );
                metrics::counter!(RUNS_METRIC, "schedule" => schedule.name.clone(), "outcome" => "ok").increment(1);
                metrics::counter!(FOUND_METRIC, &labels).increment(report.found);
                metrics::counter!(EMITTED_METRIC, &labels).increment(report.emitted);
                metrics::gauge!(LAST_SUCCESS_METRIC, &labels).set(now.timestamp() as f64);
                (
                    TickOutcome {
                        found: report.found,
                        emitted: report.emitted,
                        error: None,
                        cursor: report.cursor.clone(),
                    },
                    TickResult::Ran(report),
                )
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(schedule = %schedule.name, job = schedule.job.name(), tick = %tick, error = %error, "Schedule run failed; the next tick covers it.");
                metrics::counter!(RUNS_METRIC, "schedule" => schedule.name.clone(), "outcome" => "failed").increment(1);
                (
                    TickOutcome {
                        error: Some(error.clone()),
                        ..TickOutcome::default()
                    },
                    TickResult::Failed(error),
                )
            }
        };
        if let Err(e) = store
            .finish_tick(
                &schedule.name,
                tick,
                &self.owner,
                self.clock.now(),
                &outcome,
            )
            .await
        {
            tracing::warn!(schedule = %schedule.name, error = %e, "Could not record the run; its lease expires on its own.");
        }
        tick_result
    }
}

/// This process in leases: host, process id and a random tag (a restarted process with a
/// reused pid is a different owner).
pub(crate) fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "forewarn".into());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

/// Describes the schedule metrics for `/metrics`.
pub(crate) fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RUNS_METRIC,
        "Schedule runs by schedule and outcome (ok, failed, busy: another process ran it)."
    );
    describe_counter!(
        FOUND_METRIC,
        "Things schedule runs found to act on, by schedule."
    );
    describe_counter!(
        EMITTED_METRIC,
        "Synthetic events emitted, messages released or rows purged, by schedule."
    );
    describe_histogram!(DURATION_METRIC, Unit::Seconds, "Schedule run duration.");
    describe_gauge!(
        LAST_SUCCESS_METRIC,
        "When each schedule last succeeded, in Unix seconds."
    );
}

/// The scheduler as a worker: each step runs the ticks due now, then waits for the next one.
struct Ticking {
    scheduler: Scheduler,
    /// The last tick this process tried, per schedule: each is tried once here; the lease
    /// decides which process runs it.
    tried: Vec<Option<DateTime<Utc>>>,
}

#[async_trait::async_trait]
impl Worker for Ticking {
    async fn work(&mut self) -> Next {
        let scheduler = &self.scheduler;
        let now = scheduler.clock.now();
        let due: Vec<(usize, DateTime<Utc>)> = scheduler
            .schedules
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.cron.latest(now).map(|tick| (i, tick)))
            .filter(|(i, tick)| self.tried[*i] != Some(*tick))
            .collect();
        for (i, tick) in &due {
            self.tried[*i] = Some(*tick);
        }
        join_all(
            due.iter()
                .map(|(i, tick)| scheduler.run_tick(&scheduler.schedules[*i], *tick, now)),
        )
        .await;
        let now = scheduler.clock.now();
        match scheduler
            .schedules
            .iter()
            .filter_map(|s| s.cron.next_after(now))
            .min()
        {
            Some(next) => Next::At(next),
            None => Next::Done,
        }
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        self.scheduler.clock.sleep_until(deadline).await;
    }
}
