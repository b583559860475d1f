//! [`IncidentStore`] on SQLite, and the audience queries a fan-out page runs in its
//! transaction.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::lease::{self, Acquired};
use super::rows::{incident_from_row, parse_customer_id, stored_event, INCIDENT_COLUMNS};
use super::SqliteStore;
use crate::domain::{CustomerId, EntityId, EventKey, Incident};
use crate::store::rows::{
    count, fanout_claim_from_row, fanout_status_from_row, FANOUT_CLAIM_COLUMNS,
    FANOUT_STATUS_COLUMNS,
};
use crate::store::{
    millis, Audience, EventRecord, FanoutClaim, FanoutRequest, FanoutStep, FanoutTx,
    IncidentProgress, IncidentStore, StoreError,
};

/// `WHERE` conditions on `customers` for an incident's `affected`, or none for everyone. Each
/// list is one JSON-array bind, so a file of a hundred thousand ids is still one statement.
fn push_affected(q: &mut QueryBuilder<Sqlite>, affected: &crate::domain::Affected) {
    if affected.is_everyone() {
        q.push("1 = 1");
        return;
    }
    // `customers.regions` holds each customer's region and the regions it lies in
    // (`domain::region_ancestry`): membership is all the database is asked.
    let json = |values: Vec<&str>| serde_json::Value::from(values).to_string();
    q.push(
        "(EXISTS (SELECT 1 FROM json_each(customers.regions) c WHERE c.value IN \
            (SELECT value FROM json_each(",
    )
    .push_bind(json(affected.regions.iter().map(String::as_str).collect()))
    .push(")))")
    .push(" OR customers.segment IN (SELECT value FROM json_each(")
    .push_bind(json(affected.segments.iter().map(String::as_str).collect()))
    .push(")) OR customers.id IN (SELECT value FROM json_each(")
    .push_bind(json(
        affected
            .customer_ids
            .iter()
            .map(CustomerId::as_str)
            .collect(),
    ))
    .push(")))");
}

/// The column that holds an audience's customer ids.
fn customer_column(audience: &Audience) -> &'static str {
    match audience {
        Audience::Affected(_) => "id",
        Audience::Ranked { .. } | Audience::Told { .. } => "customer_id",
    }
}

/// ` FROM … WHERE …` of an audience.
fn push_audience(q: &mut QueryBuilder<Sqlite>, audience: &Audience) {
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
                .push(" AND status = 'sent' AND event_id != ")
                .push_bind(except.id.clone());
        }
    }
}

/// One page of an audience after `after`, in customer id order — but for `Ranked`, most urgent
/// first, where the cursor does not apply.
pub(super) async fn audience_page(
    conn: &mut SqliteConnection,
    audience: &Audience,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CustomerId>, StoreError> {
    // A customer told twice (a start and an escalation) is one recipient.
    let mut q = QueryBuilder::<Sqlite>::new(if matches!(audience, Audience::Told { .. }) {
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
    let ids: Vec<String> = q
        .build_query_scalar()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    ids.into_iter().map(parse_customer_id).collect()
}

/// Records one fan-out page if the claim still holds (see `FanoutTx::advance_fanout`).
pub(super) async fn advance_fanout(
    conn: &mut SqliteConnection,
    claim: &FanoutClaim,
    step: &FanoutStep,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let status = step.status();
    let finished = step.ends();
    // The fence: a page commits only while this process still holds the fan-out's lease.
    let lease = lease::fanout(claim.id);
    if !lease::extend(conn, &lease, owner, lease_until).await? {
        return Ok(false);
    }
    let updated = sqlx::query(
        "UPDATE fanouts SET cursor = ?1, customers = customers + ?2, queued = queued + ?3, \
         status = ?4, updated_at = ?5, finished_at = ?6, detail = coalesce(?7, detail), \
         phase = ?8, ranked = ranked + ?9, exhausted = ?10 \
         WHERE id = ?11 AND status = 'running' AND cursor IS ?12 AND phase = ?13",
    )
    .bind(step.cursor.as_deref())
    .bind(i64::try_from(step.customers).unwrap_or(i64::MAX))
    .bind(i64::try_from(step.queued).unwrap_or(i64::MAX))
    .bind(status)
    .bind(millis(now))
    .bind(finished.then(|| millis(now)))
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
    if ours && finished {
        sqlx::query("DELETE FROM fanout_targets WHERE fanout_id = ?")
            .bind(claim.id)
            .execute(&mut *conn)
            .await?;
        lease::release(conn, &lease, owner).await?;
    }
    Ok(ours)
}

/// Rows per multi-row statement on `fanout_targets` (three binds each).
const TARGET_CHUNK: usize = 5_000;

/// Writes a rank page's targets.
pub(super) async fn rank_targets(
    conn: &mut SqliteConnection,
    fanout_id: i64,
    targets: &[(CustomerId, f64)],
) -> Result<(), StoreError> {
    for chunk in targets.chunks(TARGET_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO fanout_targets (fanout_id, urgency, customer_id) ",
        );
        q.push_values(chunk, |mut row, (customer, urgency)| {
            row.push_bind(fanout_id)
                .push_bind(*urgency)
                .push_bind(customer.as_str().to_owned());
        });
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes a sent page's targets: the `count` most urgent, the page `Audience::Ranked` read in
/// this transaction, by their full key (deleting by customer alone would scan the fan-out's
/// targets for every page).
pub(super) async fn take_targets(
    conn: &mut SqliteConnection,
    fanout_id: i64,
    count: usize,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM fanout_targets WHERE fanout_id = ?1 AND (urgency, customer_id) IN \
         (SELECT urgency, customer_id FROM fanout_targets WHERE fanout_id = ?1 \
          ORDER BY urgency DESC, customer_id LIMIT ?2)",
    )
    .bind(fanout_id)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes intake's fan-out requests; a redelivered event's request is already there.
pub(super) async fn insert_fanouts(
    conn: &mut SqliteConnection,
    fanouts: &[FanoutRequest],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for fanout in fanouts {
        sqlx::query(
            "INSERT INTO fanouts (incident_id, event_source, event_id, kind, status, \
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5) \
             ON CONFLICT (event_source, event_id) DO NOTHING",
        )
        .bind(fanout.incident_id.as_str())
        .bind(&fanout.event.source)
        .bind(&fanout.event.id)
        .bind(fanout.kind.as_str())
        .bind(millis(now))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl IncidentStore for SqliteStore {
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
        // The oldest running fan-out whose lease is free, expired or already ours.
        let candidate = || {
            sqlx::query_scalar::<_, i64>(
                "SELECT f.id FROM fanouts f LEFT JOIN leases l ON l.name = ?3 || f.id \
                 WHERE f.status = 'running' \
                   AND (l.owner IS NULL OR l.owner = ?1 OR l.until <= ?2) \
                 ORDER BY f.id LIMIT 1",
            )
            .bind(owner)
            .bind(millis(now))
            .bind(lease::FANOUT)
        };
        // Asked of a reader first: an idle worker polls every second, and most of the time
        // there is nothing to claim and no reason to queue for the writer.
        if candidate().fetch_optional(&self.pool).await?.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let Some(id) = candidate().fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        if lease::acquire(&mut tx, &lease::fanout(id), owner, now, until).await? != Acquired::Held {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE fanouts SET updated_at = ?1 WHERE id = ?2 RETURNING {FANOUT_CLAIM_COLUMNS}"
        )))
        .bind(millis(now))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        fanout_claim_from_row(&row).map(Some)
    }

    async fn release_fanout(&self, claim: &FanoutClaim, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        lease::release(&mut conn, &lease::fanout(claim.id), owner).await?;
        Ok(())
    }

    async fn event(&self, key: &EventKey) -> Result<Option<EventRecord>, StoreError> {
        stored_event(&self.pool, key).await
    }

    async fn incident(&self, id: &EntityId) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
        )))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn audience_count(&self, audience: &Audience) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT count(DISTINCT ");
        q.push(customer_column(audience)).push(")");
        push_audience(&mut q, audience);
        let n: i64 = q
            .build_query_scalar()
            .persistent(false)
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn incident_sending(&self, incident_id: &EntityId) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE incident_id = ? AND status = 'sending'",
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
            "SELECT {FANOUT_STATUS_COLUMNS} FROM fanouts WHERE incident_id = ? ORDER BY id"
        )))
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?
        {
            progress.fanouts.push(fanout_status_from_row(&row)?);
        }
        // Counted from the index alone, but for the pending rows' due times.
        let counts = sqlx::query(
            "SELECT event_id, status, count(*) AS n, \
             sum(status = 'pending' AND next_attempt_at > ?2) AS later \
             FROM outbox WHERE incident_id = ?1 GROUP BY event_id, status",
        )
        .bind(id.as_str())
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await?;
        for row in counts {
            let event_id: String = row.try_get("event_id")?;
            let status: String = row.try_get("status")?;
            let n = count(row.try_get("n")?);
            let later = count(row.try_get::<Option<i64>, _>("later")?.unwrap_or(0));
            progress.count_messages(&event_id, &status, n, later)?;
        }
        Ok(progress)
    }
}
