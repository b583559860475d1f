//! Whether the parts that move work along are getting it committed, for `/readyz`.
//!
//! NATS answering and the database answering a ping do not make a process ready: with the
//! database's write lock held elsewhere every intake commit failed while `/readyz` said ready,
//! and a load balancer or an orchestrator kept sending it work. Intake and the dispatcher say
//! here whether their last commit went through; a part failing for longer than [`GRACE`] makes
//! the process not ready, and each change of state is logged once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a part may fail before the process is reported not ready: one batch that waited
/// out a lock (`database.busy_timeout`, 5 s by default) and failed is not yet a stall.
pub const GRACE: Duration = Duration::from_secs(10);

/// Shared by the parts that report and the handler that reads.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    failing: Arc<Mutex<BTreeMap<&'static str, Failing>>>,
}

/// A part whose commits have been failing.
#[derive(Debug, Clone)]
struct Failing {
    since: Instant,
    error: String,
}

/// A part failing for longer than the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// `intake`, `dispatcher.claims` or `dispatcher.records`.
    pub part: &'static str,
    /// Its latest error.
    pub error: String,
    /// How long it has been failing, in whole seconds.
    pub seconds: u64,
}

impl Readiness {
    /// `part` committed its work.
    pub fn ok(&self, part: &'static str) {
        if let Some(was) = self.lock().remove(part) {
            tracing::info!(
                part,
                seconds = was.since.elapsed().as_secs(),
                "Committing again after failing."
            );
        }
    }

    /// `part` could not commit its work: failing since the first failure in a row.
    pub fn failed(&self, part: &'static str, error: &str) {
        let mut failing = self.lock();
        match failing.get_mut(part) {
            Some(was) => was.error = error.to_owned(),
            None => {
                tracing::warn!(
                    part,
                    error,
                    "Failing to commit; reported not ready if it goes on."
                );
                failing.insert(
                    part,
                    Failing {
                        since: Instant::now(),
                        error: error.to_owned(),
                    },
                );
            }
        }
    }

    /// The parts failing for longer than `grace`.
    pub fn stalled(&self, grace: Duration) -> Vec<Stalled> {
        self.lock()
            .iter()
            .filter(|(_, f)| f.since.elapsed() > grace)
            .map(|(part, f)| Stalled {
                part,
                error: f.error.clone(),
                seconds: f.since.elapsed().as_secs(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Failing>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_stalled_once_it_has_failed_for_longer_than_the_grace_and_well_after_one_commit() {
        let readiness = Readiness::default();
        readiness.failed("intake", "database is locked");
        assert_eq!(readiness.stalled(Duration::from_secs(60)), vec![]);
        let stalled = readiness.stalled(Duration::ZERO);
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].part, "intake");
        assert_eq!(stalled[0].error, "database is locked");
        readiness.ok("intake");
        assert_eq!(readiness.stalled(Duration::ZERO), vec![]);
    }
}
