//! [`IncidentStore`] on PostgreSQL, and the audience queries a fan-out page runs in its
//! transaction. Lists bind as arrays; a region is matched against each customer's ancestry
//! (`customers.regions`, a GIN-indexed TEXT[]) with `&&`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row, Transaction};

use super::lease::{self, Acquired};
use super::outbox::stored_event;
use super::PgStore;
use crate::domain::{Affected, CustomerId, EntityId, EventKey, Incident};
use crate::store::rows::{
    count, fanout_claim_from_row, fanout_status_from_row, incident_from_row, parse_customer_id,
    FANOUT_CLAIM_COLUMNS, FANOUT_STATUS_COLUMNS, INCIDENT_COLUMNS,
};
use crate::store::{
    millis, Audience, EventRecord, FanoutClaim, FanoutRequest, FanoutStep, FanoutTx,
    IncidentProgress, IncidentStore, StoreError,
};

/// `WHERE` conditions on `customers` for an incident's `affected`, or none for everyone.
fn push_affected(q: &mut QueryBuilder<Postgres>, affected: &Affected) {
    if affected.is_everyone() {
        q.push("TRUE");
        return;
    }
    q.push("(customers.regions && ")
        .push_bind(affected.regions.clone())
        .push("::text[] OR customers.segment = ANY(")
        .push_bind(affected.segments.clone())
        .push("::text[]) OR customers.id = ANY(")
        .push_bind(
            affected
                .customer_ids
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .push("::text[]))");
}

/// The column that holds an audience's customer ids.
fn customer_column(audience: &Audience) -> &'static str {
    match audience {
        Audience::Affected(_) => "id",
        Audience::Ranked { .. } | Audience::Told { .. } => "customer_id",
    }
}

/// ` FROM … WHERE …` of an audience.
fn push_audience(q: &mut QueryBuilder<Postgres>, audience: &Audience) {
    match audience {
        Audience::Affected(affected) => {
            q.push(" FROM customers WHERE ");
            push_affected(q, affected);
        }
        Audience::Ranked { fanout_id } => {
            q.push(" FROM fanout_targets WHERE fanout_id = ")
                .push_bind(*fanout_id);
        }
        Audience::Told {
            incident_id,
            except,
        } => {
            q.push(" FROM outbox WHERE incident_id = ")
                .push_bind(incident_id.as_str().to_owned())
                .push(" AND status = 'sent' AND event_id <> ")
                .push_bind(except.id.clone());
        }
    }
}

/// One page of an audience after `after`, in customer id order — but for `Ranked`, most urgent
/// first, where the cursor does not apply.
pub(super) async fn audience_page(
    conn: &mut PgConnection,
    audience: &Audience,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CustomerId>, StoreError> {
    // A customer told twice (a start and an escalation) is one recipient.
    let mut q = QueryBuilder::<Postgres>::new(if matches!(audience, Audience::Told { .. }) {
        "SELECT DISTINCT "
    } else {
        "SELECT "
    });
    let column = customer_column(audience);
    q.push(column);
    push_audience(&mut q, audience);
    if let Audience::Ranked { .. } = audience {
        q.push(" ORDER BY urgency DESC, customer_id");
    } else {
        q.push(format_args!(" AND {column} > "))
            .push_bind(after.unwrap_or("").to_owned())
            .push(format_args!(" ORDER BY {column}"));
    }
    q.push(" LIMIT ")
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *conn).await?;
    ids.into_iter().map(parse_customer_id).collect()
}

/// Records one fan-out page if the claim still holds (see `FanoutTx::advance_fanout`).
pub(super) async fn advance_fanout(
    conn: &mut PgConnection,
    claim: &FanoutClaim,
    step: &FanoutStep,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // The fence: a page commits only while this process still holds the fan-out's lease.
    let lease = lease::fanout(claim.id);
    if !lease::extend(conn, &lease, owner, lease_until).await? {
        return Ok(false);
    }
    let updated = sqlx::query(
        "UPDATE fanouts SET cursor = $1, customers = customers + $2, queued = queued + $3, \
         status = $4, updated_at = $5, finished_at = $6, detail = coalesce($7, detail), \
         phase = $8, ranked = ranked + $9, exhausted = $10 \
         WHERE id = $11 AND status = 'running' AND cursor IS NOT DISTINCT FROM $12 \
           AND phase = $13",
    )
    .bind(step.cursor.as_deref())
    .bind(i64::try_from(step.customers).unwrap_or(i64::MAX))
    .bind(i64::try_from(step.queued).unwrap_or(i64::MAX))
    .bind(step.status())
    .bind(millis(now))
    .bind(step.ends().then(|| millis(now)))
    .bind(step.stopped.as_deref())
    .bind(step.phase.as_str())
    .bind(i64::try_from(step.ranked).unwrap_or(i64::MAX))
    .bind(step.exhausted)
    .bind(claim.id)
    .bind(claim.cursor.as_deref())
    .bind(claim.phase.as_str())
    .execute(&mut *conn)
    .await?;
    let ours = updated.rows_affected() == 1;
    // A fan-out that ended leaves no ranked customers and no lease behind.
    if ours && step.ends() {
        sqlx::query("DELETE FROM fanout_targets WHERE fanout_id = $1")
            .bind(claim.id)
            .execute(&mut *conn)
            .await?;
        lease::release(conn, &lease, owner).await?;
    }
    Ok(ours)
}

/// Writes a rank page's targets.
pub(super) async fn rank_targets(
    conn: &mut PgConnection,
    fanout_id: i64,
    targets: &[(CustomerId, f64)],
) -> Result<(), StoreError> {
    if targets.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO fanout_targets (fanout_id, urgency, customer_id) \
         SELECT $1, u, c FROM UNNEST($2::float8[], $3::text[]) AS t(u, c) \
         ON CONFLICT DO NOTHING",
    )
    .bind(fanout_id)
    .bind(targets.iter().map(|(_, u)| *u).collect::<Vec<_>>())
    .bind(
        targets
            .iter()
            .map(|(c, _)| c.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes a sent page's targets: the `count` most urgent, the page `Audience::Ranked` read in
/// this transaction.
pub(super) async fn take_targets(
    conn: &mut PgConnection,
    fanout_id: i64,
    count: usize,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM fanout_targets WHERE (fanout_id, urgency, customer_id) IN \
         (SELECT fanout_id, urgency, customer_id FROM fanout_targets WHERE fanout_id = $1 \
          ORDER BY urgency DESC, customer_id LIMIT $2)",
    )
    .bind(fanout_id)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the fan-outs a batch's outage events start; a redelivered event's is already there.
pub(super) async fn insert_fanouts(
    tx: &mut Transaction<'static, Postgres>,
    fanouts: &[FanoutRequest],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if fanouts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO fanouts (incident_id, event_source, event_id, kind, status, created_at, \
         updated_at) \
         SELECT i, s, e, k, 'running', $5, $5 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS f(i, s, e, k) \
         ON CONFLICT (event_source, event_id) DO NOTHING",
    )
    .bind(
        fanouts
            .iter()
            .map(|f| f.incident_id.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .bind(
        fanouts
            .iter()
            .map(|f| f.event.source.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        fanouts
            .iter()
            .map(|f| f.event.id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(fanouts.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>())
    .bind(millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl IncidentStore for PgStore {
    async fn begin_fanout(&self) -> Result<Box<dyn FanoutTx + '_>, StoreError> {
        Ok(Box::new(self.begin_batch().await?))
    }

    async fn claim_fanout(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<FanoutClaim>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin_write().await?;
        // The oldest running fan-outs whose lease is free, expired or already ours; the lease
        // statement decides between processes that chose the same one.
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT f.id FROM fanouts f LEFT JOIN leases l ON l.name = $3 || f.id \
             WHERE f.status = 'running' AND (l.owner IS NULL OR l.owner = $1 OR l.until <= $2) \
             ORDER BY f.id LIMIT 4",
        )
        .bind(owner)
        .bind(millis(now))
        .bind(lease::FANOUT)
        .fetch_all(&mut *tx)
        .await?;
        for id in candidates {
            if lease::acquire(&mut tx, &lease::fanout(id), owner, now, until).await?
                != Acquired::Held
            {
                continue;
            }
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE fanouts SET updated_at = $1 WHERE id = $2 AND status = 'running' \
                 RETURNING {FANOUT_CLAIM_COLUMNS}"
            )))
            .bind(millis(now))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let claim = fanout_claim_from_row(&row)?;
            tx.commit().await?;
            return Ok(Some(claim));
        }
        Ok(None)
    }

    async fn release_fanout(&self, claim: &FanoutClaim, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        lease::release(&mut conn, &lease::fanout(claim.id), owner).await?;
        Ok(())
    }

    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, StoreError> {
        stored_event(&self.pool, key).await
    }

    async fn incident(&self, id: &EntityId) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn audience_count(&self, audience: &Audience) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT count(DISTINCT ");
        q.push(customer_column(audience)).push(")");
        push_audience(&mut q, audience);
        let n: i64 = q.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(count(n))
    }

    async fn incident_sending(&self, incident_id: &EntityId) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE incident_id = $1 AND status = 'sending'",
        )
        .bind(incident_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn incident_progress(
        &self,
        id: &EntityId,
        now: DateTime<Utc>,
    ) -> Result<IncidentProgress, StoreError> {
        let mut progress = IncidentProgress {
            incident: self.incident(id).await?,
            ..IncidentProgress::default()
        };
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FANOUT_STATUS_COLUMNS} FROM fanouts WHERE incident_id = $1 ORDER BY id"
        )))
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?
        {
            progress.fanouts.push(fanout_status_from_row(&row)?);
        }
        let counts = sqlx::query(
            "SELECT event_id, status, count(*) AS n, \
             count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > $2) AS later \
             FROM outbox WHERE incident_id = $1 GROUP BY event_id, status",
        )
        .bind(id.as_str())
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await?;
        for row in counts {
            let event_id: String = row.try_get("event_id")?;
            let status: String = row.try_get("status")?;
            let (n, later) = (count(row.try_get("n")?), count(row.try_get("later")?));
            progress.count_messages(&event_id, &status, n, later)?;
        }
        Ok(progress)
    }
}
