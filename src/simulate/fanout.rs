//! An incident's fan-out, replayed: the live fan-out worker itself, on the scratch database,
//! as of the moment intake took the outage event. Each send page's decisions are counted the
//! way intake's are, so a draft's messages to an incident's customers show up in the report
//! and in the comparison like any other.
//!
//! A live fan-out runs beside intake, a page at a time, and a million customers take about a
//! minute; the replay runs it to its end before the next batch, which is what every later
//! event would find in production but for the few taken during that minute.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, Notify};

use super::SimulateError;
use crate::authoring::Authoring;
use crate::incident::{DecidedPage, FanoutError, FanoutWorker, IncidentSettings, PageReport};
use crate::policy::Policy;
use crate::schedule::ManualClock;
use crate::store::SqliteStore;

/// The fan-out worker on the scratch database, and what its pages decide.
pub(super) struct ReplayedFanouts {
    worker: FanoutWorker,
    clock: Arc<ManualClock>,
    decided: mpsc::UnboundedReceiver<DecidedPage>,
    /// A fan-out is written and not yet run to its end.
    waiting: bool,
}

impl From<FanoutError> for SimulateError {
    fn from(error: FanoutError) -> Self {
        match error {
            FanoutError::Store(error) => SimulateError::Store(error),
        }
    }
}

impl ReplayedFanouts {
    /// A worker for the fan-outs intake writes on `scratch`, deciding with `draft`.
    pub(super) fn new(
        scratch: &SqliteStore,
        draft: Arc<Authoring>,
        policy: &Policy,
        settings: &IncidentSettings,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::MIN_UTC));
        let (report, decided) = mpsc::unbounded_channel();
        // The sender may go: a receiver keeps the last value it was given.
        let (_, authoring) = watch::channel(draft);
        let worker = FanoutWorker::new(
            Arc::new(scratch.clone()),
            authoring,
            policy.clone(),
            settings.clone(),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        )
        .with_clock(clock.clone())
        .reporting_to(report);
        ReplayedFanouts {
            worker,
            clock,
            decided,
            waiting: false,
        }
    }

    /// Intake wrote a fan-out: the next [`ReplayedFanouts::run`] has work.
    pub(super) fn written(&mut self) {
        self.waiting = true;
    }

    /// Runs every fan-out waiting on the scratch database to its end as of `at`, handing each
    /// send page's decisions to `count` as the page commits. A resolution whose incident still
    /// has messages at a gateway cannot happen here (every due message counts as sent), but if
    /// one waits it is run again after the next batch.
    pub(super) async fn run(
        &mut self,
        at: DateTime<Utc>,
        mut count: impl FnMut(DecidedPage),
    ) -> Result<(), SimulateError> {
        if !self.waiting {
            return Ok(());
        }
        self.clock.set(at);
        loop {
            let step = self.worker.step().await?;
            while let Ok(page) = self.decided.try_recv() {
                count(page);
            }
            match step {
                PageReport::Idle => {
                    self.waiting = false;
                    return Ok(());
                }
                PageReport::Waiting => return Ok(()),
                PageReport::Page { .. } | PageReport::Stopped(_) | PageReport::Lost => {}
            }
        }
    }
}
