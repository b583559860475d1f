//! What schedules need of the database: the lease on a tick, the sweeps' candidates and the
//! record of what was emitted.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::Money;

/// The answer to "may I run this tick?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickClaim {
    /// Yes: the lease is this process's until it finishes or the lease runs out.
    Claimed {
        /// The last tick done before this one, if any: ticks in between were missed.
        previous: Option<DateTime<Utc>>,
        /// Where the schedule's last sweep stopped (JSON; `{}` at first).
        cursor: String,
    },
    /// This tick, or a later one, is done already.
    AlreadyDone,
    /// Another process holds the lease.
    Busy {
        /// Who.
        owner: String,
        /// Until when.
        until: DateTime<Utc>,
    },
}

/// How a tick ended, to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickOutcome {
    /// Things the job found to act on.
    pub found: u64,
    /// Events emitted, messages released, rows purged.
    pub emitted: u64,
    /// Why it failed, if it did: the tick stays not done, and the next one covers it.
    pub error: Option<String>,
    /// Where the sweep stopped, for the next run.
    pub cursor: Option<String>,
}

/// A schedule as the database remembers it, for `forewarn schedule list`.
#[derive(Debug, Clone)]
pub struct ScheduleStatus {
    /// The schedule's name.
    pub schedule: String,
    /// The last tick done.
    pub last_tick: Option<DateTime<Utc>>,
    /// When a run last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// Who holds the lease now, and until when.
    pub lease: Option<(String, DateTime<Utc>)>,
}

/// One run of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The tick (its scheduled time).
    pub tick: DateTime<Utc>,
    /// The process that ran it.
    pub owner: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running, or if its process died.
    pub finished_at: Option<DateTime<Utc>>,
    /// As in [`TickOutcome`].
    pub found: u64,
    /// As in [`TickOutcome`].
    pub emitted: u64,
    /// As in [`TickOutcome`].
    pub error: Option<String>,
}

/// A parcel past the promise it must keep now, with no delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueShipment {
    /// The parcel.
    pub shipment_id: String,
    /// Its order.
    pub order_id: String,
    /// Its customer.
    pub customer_id: String,
    /// Its carrier, if known.
    pub carrier: Option<String>,
    /// The promise missed: the latest announced ETA, else the original promise.
    pub due: DateTime<Utc>,
    /// The original promise.
    pub promised_by: Option<DateTime<Utc>>,
    /// The last carrier scan.
    pub last_scan_at: Option<DateTime<Utc>>,
    /// The tracking page.
    pub tracking_url: Option<String>,
    /// Its status now (`created`, `in_transit`, …).
    pub status: String,
}

/// An order placed with no parcel created since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledOrder {
    /// The order.
    pub order_id: String,
    /// Its customer.
    pub customer_id: String,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// The delivery promised at checkout.
    pub promised_by: Option<DateTime<Utc>>,
    /// Its total.
    pub total: Option<Money>,
}

/// A problem a customer was told about, since resolved: time to ask how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProblem {
    /// The customer.
    pub customer_id: String,
    /// The order it was about.
    pub order_id: String,
    /// The parcel whose delivery resolved it.
    pub shipment_id: String,
    /// When that was.
    pub resolved_at: DateTime<Utc>,
    /// What went wrong, as `csat.due`'s `about` says it: `exception` or `delay`.
    pub about: &'static str,
}

/// One synthetic event emitted, remembered so no sweep emits it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emission {
    /// The synthetic event type.
    pub kind: &'static str,
    /// What makes it unique within its kind.
    pub key: String,
    /// The CloudEvents id it went out with.
    pub event_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The database side of schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Takes the lease on `schedule` to run `tick`, unless that tick is done or another
    /// process holds a live lease. Records the run.
    async fn claim_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<TickClaim, StoreError>;

    /// Records how the tick ended and releases the lease. A success marks the tick done.
    async fn finish_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        outcome: &TickOutcome,
    ) -> Result<(), StoreError>;

    /// Every schedule the database has seen.
    async fn schedule_statuses(&self) -> Result<Vec<ScheduleStatus>, StoreError>;

    /// The latest runs of `schedule`, newest first.
    async fn schedule_runs(
        &self,
        schedule: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;

    /// Open parcels whose promise fell in `(due_after, due_before]`, not yet emitted for that
    /// promise, whose order is not cancelled and whose customer was not told of an exception
    /// since; oldest promise first.
    async fn overdue_shipments(
        &self,
        due_before: DateTime<Utc>,
        due_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OverdueShipment>, StoreError>;

    /// Orders still `placed`, placed in `(placed_after, placed_before]`, with no parcel and
    /// not yet emitted; oldest first.
    async fn stalled_orders(
        &self,
        placed_before: DateTime<Utc>,
        placed_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StalledOrder>, StoreError>;

    /// Parcels delivered in `(resolved_after, resolved_before]` whose customer was sent a
    /// message about a problem with their order, not yet asked; oldest first.
    async fn resolved_problems(
        &self,
        resolved_before: DateTime<Utc>,
        resolved_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ResolvedProblem>, StoreError>;

    /// Remembers emissions; one already remembered is left as it is.
    async fn record_emissions(&self, emissions: &[Emission]) -> Result<(), StoreError>;

    /// Pending messages due at `now`.
    async fn due_count(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
