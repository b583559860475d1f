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

/// [`ScheduleStore`] for a backend's store type, written once in SQL both backends read alike
/// (`$n` placeholders in bind order). The backend names its connection and database types and
/// gives its store a `begin_write()` (SQLite takes the write lock up front) and a `lease`
/// module with the lease verbs.
///
/// A tick is claimed inside one transaction: done already? (asked before the lease, which a
/// done tick does not need, and again while holding it, since another process may have
/// finished it in between); the lease; the run recorded. Only the lease holder records the
/// tick as done.
macro_rules! schedule_store {
    ($store:ty, $connection:ty, $database:ty) => {
        /// The schedule's previous tick and cursor, or `None` when `tick` is already done.
        async fn tick_state(
            conn: &mut $connection,
            schedule: &str,
            tick: chrono::DateTime<chrono::Utc>,
        ) -> Result<Option<(Option<chrono::DateTime<chrono::Utc>>, String)>, $crate::store::StoreError>
        {
            use sqlx::Row;
            let row =
                sqlx::query("SELECT last_tick, cursor FROM schedule_state WHERE schedule = $1")
                    .bind(schedule)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some(row) = row else {
                return Ok(Some((None, "{}".to_owned())));
            };
            let last_tick: i64 = row.try_get("last_tick")?;
            if last_tick >= $crate::store::millis(tick) {
                return Ok(None);
            }
            let previous = (last_tick > 0)
                .then(|| $crate::store::from_millis(last_tick))
                .transpose()?;
            Ok(Some((previous, row.try_get("cursor")?)))
        }

        #[async_trait::async_trait]
        impl $crate::store::ScheduleStore for $store {
            async fn claim_tick(
                &self,
                schedule: &str,
                tick: chrono::DateTime<chrono::Utc>,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
            ) -> Result<$crate::store::TickClaim, $crate::store::StoreError> {
                use $crate::store::TickClaim;
                let mut tx = self.begin_write().await?;
                let Some((previous, cursor)) = tick_state(&mut tx, schedule, tick).await? else {
                    return Ok(TickClaim::AlreadyDone);
                };
                let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
                let name = $crate::store::lease::schedule(schedule);
                if let $crate::store::lease::Acquired::Busy { owner, until } =
                    super::lease::acquire(&mut tx, &name, owner, now, until).await?
                {
                    return Ok(TickClaim::Busy { owner, until });
                }
                if tick_state(&mut tx, schedule, tick).await?.is_none() {
                    // The lease taken above is not kept.
                    tx.rollback().await?;
                    return Ok(TickClaim::AlreadyDone);
                }
                sqlx::query(
                    "INSERT INTO schedule_state (schedule, last_tick, cursor) \
                     VALUES ($1, 0, '{}') ON CONFLICT (schedule) DO NOTHING",
                )
                .bind(schedule)
                .execute(&mut *tx)
                .await?;
                // A run left unfinished by a process that died is taken over.
                sqlx::query(
                    "INSERT INTO schedule_runs (schedule, tick, owner, started_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (schedule, tick) DO UPDATE SET owner = excluded.owner, \
                     started_at = excluded.started_at, finished_at = NULL, error = NULL",
                )
                .bind(schedule)
                .bind($crate::store::millis(tick))
                .bind(owner)
                .bind($crate::store::millis(now))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(TickClaim::Claimed { previous, cursor })
            }

            async fn finish_tick(
                &self,
                schedule: &str,
                tick: chrono::DateTime<chrono::Utc>,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                outcome: &$crate::store::TickOutcome,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let name = $crate::store::lease::schedule(schedule);
                // Only the holder records the tick: a process whose lease was taken over leaves
                // the schedule's state to the one that took it.
                if super::lease::release(&mut tx, &name, owner).await? {
                    sqlx::query(
                        "UPDATE schedule_state SET \
                         last_tick = CASE WHEN $1 AND $2 > last_tick THEN $2 ELSE last_tick END, \
                         last_success_at = CASE WHEN $1 THEN $3 ELSE last_success_at END, \
                         last_error = $4, cursor = coalesce($5, cursor) \
                         WHERE schedule = $6",
                    )
                    .bind(outcome.error.is_none())
                    .bind($crate::store::millis(tick))
                    .bind($crate::store::millis(now))
                    .bind(&outcome.error)
                    .bind(&outcome.cursor)
                    .bind(schedule)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE schedule_runs SET finished_at = $1, found = $2, emitted = $3, \
                     error = $4 WHERE schedule = $5 AND tick = $6 AND owner = $7",
                )
                .bind($crate::store::millis(now))
                .bind(outcome.found as i64)
                .bind(outcome.emitted as i64)
                .bind(&outcome.error)
                .bind(schedule)
                .bind($crate::store::millis(tick))
                .bind(owner)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn schedule_statuses(
                &self,
            ) -> Result<Vec<$crate::store::ScheduleStatus>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT s.schedule, s.last_tick, l.owner AS lease_owner, \
                     l.until AS lease_until, s.last_success_at, s.last_error \
                     FROM schedule_state s LEFT JOIN leases l ON l.name = $1 || s.schedule \
                     ORDER BY s.schedule",
                )
                .bind($crate::store::lease::SCHEDULE)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map($crate::store::rows::schedule_status_from_row)
                    .collect()
            }

            async fn schedule_runs(
                &self,
                schedule: &str,
                limit: usize,
            ) -> Result<Vec<$crate::store::RunRecord>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT tick, owner, started_at, finished_at, found, emitted, error \
                     FROM schedule_runs WHERE schedule = $1 ORDER BY tick DESC LIMIT $2",
                )
                .bind(schedule)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::rows::run_from_row).collect()
            }

            async fn overdue_shipments(
                &self,
                due_before: chrono::DateTime<chrono::Utc>,
                due_after: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<$crate::store::OverdueShipment>, $crate::store::StoreError> {
                // The expression and the status test match the partial index
                // `shipments_open_by_due`. A parcel whose latest news is an exception the
                // customer was told about is left alone: they know it is in trouble, and "we
                // are tracing it" would contradict what they were told.
                let rows = sqlx::query(
                    "SELECT s.id, s.order_id, s.customer_id, s.carrier, s.promised_by, \
                            s.last_scan_at, s.tracking_url, s.status, \
                            coalesce(s.new_eta, s.promised_by) AS due \
                     FROM shipments s \
                     WHERE s.status <> 'delivered' \
                       AND coalesce(s.new_eta, s.promised_by) <= $1 \
                       AND coalesce(s.new_eta, s.promised_by) > $2 \
                       AND s.customer_id IS NOT NULL AND s.order_id IS NOT NULL \
                       AND s.carrier IS NOT NULL \
                       AND NOT EXISTS (SELECT 1 FROM schedule_emissions e \
                           WHERE e.kind = 'shipment.overdue' \
                             AND e.key = s.id || '@' || coalesce(s.new_eta, s.promised_by)) \
                       AND NOT EXISTS (SELECT 1 FROM orders o \
                           WHERE o.id = s.order_id AND o.status = 'cancelled') \
                       AND NOT (s.status = 'exception' AND EXISTS ( \
                           SELECT 1 FROM outbox m JOIN events ev \
                             ON ev.source = m.event_source AND ev.id = m.event_id \
                           WHERE m.customer_id = s.customer_id AND m.order_id = s.order_id \
                             AND m.status IN ('pending', 'sending', 'sent') \
                             AND ev.type = 'shipment.exception')) \
                     ORDER BY due, s.id LIMIT $3",
                )
                .bind($crate::store::millis(due_before))
                .bind($crate::store::millis(due_after))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::rows::overdue_from_row).collect()
            }

            async fn stalled_orders(
                &self,
                placed_before: chrono::DateTime<chrono::Utc>,
                placed_after: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<$crate::store::StalledOrder>, $crate::store::StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM orders o \
                     WHERE o.status = 'placed' AND o.placed_at <= $1 AND o.placed_at > $2 \
                       AND o.customer_id IS NOT NULL \
                       AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id) \
                       AND NOT EXISTS (SELECT 1 FROM schedule_emissions e \
                           WHERE e.kind = 'order.stalled' AND e.key = o.id) \
                     ORDER BY o.placed_at, o.id LIMIT $3",
                    $crate::store::rows::ORDER_COLUMNS
                )))
                .bind($crate::store::millis(placed_before))
                .bind($crate::store::millis(placed_after))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::rows::stalled_from_row).collect()
            }

            async fn resolved_problems(
                &self,
                resolved_before: chrono::DateTime<chrono::Utc>,
                resolved_after: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<$crate::store::ResolvedProblem>, $crate::store::StoreError> {
                // Problems are messages sent (not merely queued) about the order, from an event
                // that reports trouble; an exception outranks a delay in what the survey asks
                // about. One row per (customer, order): its first parcel and last delivery.
                let rows = sqlx::query(
                    "SELECT min(s.id) AS id, s.order_id, s.customer_id, \
                            max(s.delivered_at) AS delivered_at, \
                            CAST(max(CASE WHEN ev.type = 'shipment.exception' THEN 1 ELSE 0 END) \
                                 AS BIGINT) AS had_exception \
                     FROM shipments s \
                     JOIN outbox m ON m.customer_id = s.customer_id AND m.order_id = s.order_id \
                                   AND m.status = 'sent' \
                     JOIN events ev ON ev.source = m.event_source AND ev.id = m.event_id \
                     WHERE s.delivered_at IS NOT NULL \
                       AND s.delivered_at <= $1 AND s.delivered_at > $2 \
                       AND ev.type IN ('shipment.delayed', 'shipment.exception', \
                                       'shipment.overdue', 'order.backordered', 'order.stalled') \
                       AND NOT EXISTS (SELECT 1 FROM schedule_emissions e \
                           WHERE e.kind = 'csat.due' \
                             AND e.key = s.customer_id || '/' || s.order_id) \
                     GROUP BY s.customer_id, s.order_id \
                     ORDER BY max(s.delivered_at), min(s.id) LIMIT $3",
                )
                .bind($crate::store::millis(resolved_before))
                .bind($crate::store::millis(resolved_after))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::rows::resolved_from_row).collect()
            }

            async fn record_emissions(
                &self,
                emissions: &[$crate::store::Emission],
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                // Four binds a row: well below either backend's limit per statement.
                for chunk in emissions.chunks(5_000) {
                    let mut q = sqlx::QueryBuilder::<$database>::new(
                        "INSERT INTO schedule_emissions (kind, key, event_id, emitted_at) ",
                    );
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(e.kind)
                            .push_bind(e.key.clone())
                            .push_bind(e.event_id.clone())
                            .push_bind($crate::store::millis(e.at));
                    });
                    q.push(" ON CONFLICT DO NOTHING");
                    q.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn due_count(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, $crate::store::StoreError> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM outbox \
                     WHERE status = 'pending' AND next_attempt_at <= $1",
                )
                .bind($crate::store::millis(now))
                .fetch_one(&self.pool)
                .await?;
                Ok(n as u64)
            }
        }
    };
}
pub(crate) use schedule_store;
