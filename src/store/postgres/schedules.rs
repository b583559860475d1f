//! [`ScheduleStore`] on PostgreSQL: leases, sweeps and emissions. A tick is claimed with the
//! lease primitive inside a transaction that also reads the schedule's state, so of several
//! processes reaching the same tick one runs it, and the others see it taken or done.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::lease::{self, Acquired};
use super::PgStore;
use crate::store::rows::{
    overdue_from_row, resolved_from_row, run_from_row, schedule_status_from_row, stalled_from_row,
    ORDER_COLUMNS,
};
use crate::store::{
    from_millis, millis, Emission, OverdueShipment, ResolvedProblem, RunRecord, ScheduleStatus,
    ScheduleStore, StalledOrder, StoreError, TickClaim, TickOutcome,
};

/// The schedule's previous tick and cursor, or `None` when `tick` is already done.
async fn tick_state(
    conn: &mut sqlx::PgConnection,
    schedule: &str,
    tick: DateTime<Utc>,
) -> Result<Option<(Option<DateTime<Utc>>, String)>, StoreError> {
    let row = sqlx::query("SELECT last_tick, cursor FROM schedule_state WHERE schedule = $1")
        .bind(schedule)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Some((None, "{}".to_owned())));
    };
    let last_tick: i64 = row.try_get("last_tick")?;
    if last_tick >= millis(tick) {
        return Ok(None);
    }
    let previous = (last_tick > 0)
        .then(|| from_millis(last_tick))
        .transpose()?;
    Ok(Some((previous, row.try_get("cursor")?)))
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn claim_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<TickClaim, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Done already? Asked before the lease (a done tick is not contended) and again while
        // holding it (another process may have finished it in between).
        let Some((previous, cursor)) = tick_state(&mut tx, schedule, tick).await? else {
            return Ok(TickClaim::AlreadyDone);
        };
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        if let Acquired::Busy { owner, until } =
            lease::acquire(&mut tx, &lease::schedule(schedule), owner, now, until).await?
        {
            return Ok(TickClaim::Busy { owner, until });
        }
        if tick_state(&mut tx, schedule, tick).await?.is_none() {
            // The lease taken above is not kept.
            tx.rollback().await?;
            return Ok(TickClaim::AlreadyDone);
        }
        sqlx::query(
            "INSERT INTO schedule_state (schedule, last_tick, cursor) VALUES ($1, 0, '{}') \
             ON CONFLICT (schedule) DO NOTHING",
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
        .bind(millis(tick))
        .bind(owner)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TickClaim::Claimed { previous, cursor })
    }

    async fn finish_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
        owner: &str,
        now: DateTime<Utc>,
        outcome: &TickOutcome,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let ok = outcome.error.is_none();
        // Only the holder records the tick: a process whose lease was taken over leaves the
        // schedule's state to the one that took it.
        if lease::release(&mut tx, &lease::schedule(schedule), owner).await? {
            sqlx::query(
                "UPDATE schedule_state SET \
                 last_tick = CASE WHEN $1 THEN greatest(last_tick, $2) ELSE last_tick END, \
                 last_success_at = CASE WHEN $1 THEN $3 ELSE last_success_at END, \
                 last_error = $4, cursor = coalesce($5, cursor) \
                 WHERE schedule = $6",
            )
            .bind(ok)
            .bind(millis(tick))
            .bind(millis(now))
            .bind(&outcome.error)
            .bind(&outcome.cursor)
            .bind(schedule)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE schedule_runs SET finished_at = $1, found = $2, emitted = $3, error = $4 \
             WHERE schedule = $5 AND tick = $6 AND owner = $7",
        )
        .bind(millis(now))
        .bind(outcome.found as i64)
        .bind(outcome.emitted as i64)
        .bind(&outcome.error)
        .bind(schedule)
        .bind(millis(tick))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn schedule_statuses(&self) -> Result<Vec<ScheduleStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.schedule, s.last_tick, l.owner AS lease_owner, l.until AS lease_until, \
             s.last_success_at, s.last_error FROM schedule_state s \
             LEFT JOIN leases l ON l.name = $1 || s.schedule ORDER BY s.schedule",
        )
        .bind(lease::SCHEDULE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule_status_from_row).collect()
    }

    async fn schedule_runs(
        &self,
        schedule: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tick, owner, started_at, finished_at, found, emitted, error \
             FROM schedule_runs WHERE schedule = $1 ORDER BY tick DESC LIMIT $2",
        )
        .bind(schedule)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn overdue_shipments(
        &self,
        due_before: DateTime<Utc>,
        due_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OverdueShipment>, StoreError> {
        // As on SQLite (see there): the expression and status test match the partial index
        // `shipments_open_by_due`; a parcel whose customer was told of its exception is left
        // alone.
        let rows = sqlx::query(
            "SELECT s.id, s.order_id, s.customer_id, s.carrier, s.promised_by, s.last_scan_at, \
                    s.tracking_url, s.status, coalesce(s.new_eta, s.promised_by) AS due \
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
        .bind(millis(due_before))
        .bind(millis(due_after))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(overdue_from_row).collect()
    }

    async fn stalled_orders(
        &self,
        placed_before: DateTime<Utc>,
        placed_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StalledOrder>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders o \
             WHERE o.status = 'placed' AND o.placed_at <= $1 AND o.placed_at > $2 \
               AND o.customer_id IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id) \
               AND NOT EXISTS (SELECT 1 FROM schedule_emissions e \
                   WHERE e.kind = 'order.stalled' AND e.key = o.id) \
             ORDER BY o.placed_at, o.id LIMIT $3"
        )))
        .bind(millis(placed_before))
        .bind(millis(placed_after))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stalled_from_row).collect()
    }

    async fn resolved_problems(
        &self,
        resolved_before: DateTime<Utc>,
        resolved_after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ResolvedProblem>, StoreError> {
        // One row per (customer, order): its first parcel and last delivery.
        let rows = sqlx::query(
            "SELECT min(s.id) AS id, s.order_id, s.customer_id, \
                    max(s.delivered_at) AS delivered_at, \
                    max(CASE WHEN ev.type = 'shipment.exception' THEN 1 ELSE 0 END)::int8 \
                        AS had_exception \
             FROM shipments s \
             JOIN outbox m ON m.customer_id = s.customer_id AND m.order_id = s.order_id \
                           AND m.status = 'sent' \
             JOIN events ev ON ev.source = m.event_source AND ev.id = m.event_id \
             WHERE s.delivered_at IS NOT NULL \
               AND s.delivered_at <= $1 AND s.delivered_at > $2 \
               AND ev.type IN ('shipment.delayed', 'shipment.exception', 'shipment.overdue', \
                               'order.backordered', 'order.stalled') \
               AND NOT EXISTS (SELECT 1 FROM schedule_emissions e \
                   WHERE e.kind = 'csat.due' AND e.key = s.customer_id || '/' || s.order_id) \
             GROUP BY s.customer_id, s.order_id \
             ORDER BY max(s.delivered_at), min(s.id) LIMIT $3",
        )
        .bind(millis(resolved_before))
        .bind(millis(resolved_after))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(resolved_from_row).collect()
    }

    async fn record_emissions(&self, emissions: &[Emission]) -> Result<(), StoreError> {
        if emissions.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO schedule_emissions (kind, key, event_id, emitted_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(emissions.iter().map(|e| e.kind).collect::<Vec<_>>())
        .bind(emissions.iter().map(|e| e.key.clone()).collect::<Vec<_>>())
        .bind(
            emissions
                .iter()
                .map(|e| e.event_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(emissions.iter().map(|e| millis(e.at)).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn due_count(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1",
        )
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}
