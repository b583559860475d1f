//! The one loop every background worker runs: step, then wait for a wake-up, a timer or
//! shutdown, whichever comes first; at shutdown, finish the step in flight and tidy up.
//!
//! The dispatcher, the fan-out worker and the scheduler plug a [`Worker::work`] into
//! [`run`], so how a worker idles, wakes and stops is written once. Tests drive the steps
//! themselves, without the loop.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::schedule::{Clock, SystemClock};
use crate::shutdown::Shutdown;

/// What a step says about when to step again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At once: there is more work.
    Now,
    /// After this long, or at a wake-up.
    After(Duration),
    /// At this time on the worker's own clock ([`Worker::sleep_until`]), or at a wake-up.
    At(DateTime<Utc>),
    /// Never: the worker has nothing it could ever do (a scheduler with no schedules).
    Done,
}

/// A background worker, as [`run`] drives it.
#[async_trait]
pub trait Worker: Send + Sync {
    /// Does one step of work and says when to do the next. Errors are the step's to log: a
    /// worker retries, it does not stop.
    async fn work(&mut self) -> Next;

    /// Notified when there may be new work before the timer runs out (intake queued outreach,
    /// wrote a fan-out); none by default.
    fn wake(&self) -> Option<&Notify> {
        None
    }

    /// Returns at `deadline`. The wall clock by default; the scheduler's clock is injectable.
    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        SystemClock.sleep_until(deadline).await;
    }

    /// Called once when the loop ends, to hand back what the worker holds.
    async fn stopped(&mut self) {}
}

/// Steps `worker` until shutdown (or until it is [`Next::Done`]). A step in flight is
/// finished: shutdown is only heard between steps.
pub async fn run<W: Worker>(mut worker: W, mut shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        let next = worker.work().await;
        let wake = async {
            match worker.wake() {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        match next {
            Next::Now => continue,
            Next::Done => break,
            Next::After(idle) => tokio::select! {
                _ = shutdown.wait() => break,
                _ = wake => {}
                _ = tokio::time::sleep(idle) => {}
            },
            Next::At(deadline) => tokio::select! {
                _ = shutdown.wait() => break,
                _ = wake => {}
                _ = worker.sleep_until(deadline) => {}
            },
        }
    }
    worker.stopped().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::sync::watch;
    use tokio::time::Instant;

    use super::*;

    /// Publishes how many steps it took; busy for the first `busy` of them, then idle for an
    /// hour.
    struct Counting {
        steps: watch::Sender<usize>,
        busy: usize,
        wake: Arc<Notify>,
        stopped: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Worker for Counting {
        async fn work(&mut self) -> Next {
            let mut n = 0;
            self.steps.send_modify(|steps| {
                *steps += 1;
                n = *steps;
            });
            if n <= self.busy {
                Next::Now
            } else {
                Next::After(Duration::from_secs(3600))
            }
        }

        fn wake(&self) -> Option<&Notify> {
            Some(&self.wake)
        }

        async fn stopped(&mut self) {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    fn counting(busy: usize) -> (Counting, watch::Receiver<usize>) {
        let (steps, seen) = watch::channel(0);
        let worker = Counting {
            steps,
            busy,
            wake: Arc::new(Notify::new()),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        (worker, seen)
    }

    /// Waits for the `n`th step (paused time moves on to the worker's timer meanwhile).
    async fn until(seen: &mut watch::Receiver<usize>, n: usize) {
        seen.wait_for(|steps| *steps >= n).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_worker_steps_again_at_once_and_an_idle_one_waits_for_its_wake_up() {
        let (worker, mut seen) = counting(3);
        let (wake, stopped) = (worker.wake.clone(), worker.stopped.clone());
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(worker, shutdown));
        // Three busy steps and the first idle one, without any time passing.
        let started = Instant::now();
        until(&mut seen, 4).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Idle: most of its hour passes without another step.
        tokio::time::sleep(Duration::from_secs(3000)).await;
        assert_eq!(*seen.borrow(), 4);
        // A wake-up ends the idle wait long before the hour is up.
        wake.notify_one();
        until(&mut seen, 5).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3000));
        // Shutdown ends the wait, and the worker is told it stopped.
        trigger.trigger();
        task.await.unwrap();
        assert!(stopped.load(Ordering::SeqCst));
        assert_eq!(*seen.borrow(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_steps_again_when_its_time_is_up() {
        let (worker, mut seen) = counting(0);
        let (_trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(worker, shutdown));
        until(&mut seen, 1).await;
        let idle_from = Instant::now();
        until(&mut seen, 2).await;
        // Nothing woke it: the second step came when the hour was up.
        assert_eq!(idle_from.elapsed(), Duration::from_secs(3600));
        task.abort();
    }
}
