//! An intake batch's reads on PostgreSQL ([`BatchReads`]; what is read, and why, is in
//! `store::snapshot`): one statement per read, every list one array bind (`= ANY($1)`).
//!
//! Two processes may decide batches about the same customer, order, shipment or incident at
//! once; each writes back what it read and changed, so the second would overwrite the first's
//! change (a lost update). Before reading, a batch takes a transaction-scoped advisory lock on
//! every entity it names, in one sorted statement, so two batches touching the same entities
//! queue up instead and lock in the same order. Customers found only through their shipment
//! or order are locked in a second round; two batches crossing there would deadlock, which
//! PostgreSQL breaks by failing one: its batch is redelivered and decided again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};

use crate::domain::{
    day_number, CustomerDoc, CustomerId, Dimension, Experience, ExternalScore, Incident, Order,
    PastOutreach, Shipment, StockWait,
};
use crate::store::rows::{
    customer_from_row, experience_from_row, external_score_from_row, incident_from_row,
    lane_day_from_row, marketing_from_row, order_from_row, past_outreach_from_row,
    shared_count_from_row, shipment_from_row, stock_wait_from_row, stored_opt_out_from_row,
    INCIDENT_COLUMNS, ORDER_COLUMNS, RISK_SCORE_COLUMNS, SHIPMENT_COLUMNS, STOCK_WAIT_COLUMNS,
};
use crate::store::snapshot::{self, BatchReads, ExperienceReads, LaneDay, Named, StoredOptOut};
use crate::store::{millis, Refs, Snapshot, StoreError};

/// Loads the state an intake batch touches (see `IntakeTx::load`), holding its entities.
pub(super) async fn load(
    tx: &mut Transaction<'static, Postgres>,
    refs: &Refs,
) -> Result<Snapshot, StoreError> {
    let mut named: Vec<String> = Vec::new();
    named.extend(refs.customers.iter().map(|c| format!("customer:{c}")));
    named.extend(refs.orders.iter().map(|o| format!("order:{o}")));
    named.extend(refs.shipments.iter().map(|s| format!("shipment:{s}")));
    named.extend(refs.incidents.iter().map(|i| format!("incident:{i}")));
    hold(tx, &named).await?;
    let mut reads = Reads {
        tx,
        held: named.into_iter().collect(),
    };
    snapshot::load(&mut reads, refs).await
}

/// Milliseconds in a day: `customer_experience_days` numbers days since 1970-01-01 UTC.
const DAY_MS: i64 = 86_400_000;

/// `named`: the experience groups of the batch's customers about the shipments (`$2`) and
/// incidents (`$3`) it names, customers in `$1`, worked out once. A shipment's groups are
/// found through its entity (a shipment has one customer), an incident's customer by customer
/// (it may have a million).
///
/// `OFFSET 0` here and in the reads below keeps a subquery from being merged into the join
/// around it, so it runs as written: key by key through its index. Merged, on tables never
/// analyzed, the planner sorted or hashed whole tables instead (0.6–2.1 s a batch, measured
/// with auto_explain in the latency bench).
const NAMED_GROUPS: &str = "named AS MATERIALIZED ( \
    SELECT g.customer_id, g.kind, g.entity, g.last_at FROM UNNEST($2::text[]) AS s(entity) \
    CROSS JOIN LATERAL (SELECT customer_id, kind, entity, last_at \
      FROM customer_experience_groups WHERE entity = s.entity AND kind <> 'outage' \
      OFFSET 0) g \
    WHERE g.customer_id = ANY($1) \
    UNION ALL \
    SELECT g.customer_id, g.kind, g.entity, g.last_at FROM UNNEST($1::text[]) AS c(id) \
    CROSS JOIN UNNEST($3::text[]) AS i(entity) \
    CROSS JOIN LATERAL (SELECT customer_id, kind, entity, last_at \
      FROM customer_experience_groups \
      WHERE customer_id = c.id AND kind = 'outage' AND entity = i.entity OFFSET 0) g)";

/// Takes the advisory locks of `names` for the rest of the transaction, in one sorted pass.
async fn hold(tx: &mut Transaction<'static, Postgres>, names: &[String]) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock(k)) FROM \
         (SELECT DISTINCT hashtextextended(n, 0) AS k FROM unnest($1::text[]) n ORDER BY k) l",
    )
    .bind(names)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A batch transaction, reading.
struct Reads<'t> {
    tx: &'t mut Transaction<'static, Postgres>,
    /// Lock names taken so far.
    held: std::collections::HashSet<String>,
}

impl Reads<'_> {
    /// Every row `sql` selects with `ids` as `$1`, decoded.
    async fn by_ids<T>(
        &mut self,
        sql: &str,
        ids: &[&str],
        decode: fn(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(ids)
            .fetch_all(&mut **self.tx)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Runs `query` with the plan made at its first run on this connection, not one made for
    /// each run's parameters (the session's `force_custom_plan`). For the experience reads,
    /// written so that any plan walks their indexes key by key, planning anew took 0.7 ms a
    /// run, four times their work: measured with every statement logged in the latency bench.
    async fn planned_once(
        &mut self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<PgRow>, StoreError> {
        sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut **self.tx)
            .await?;
        let rows = query.fetch_all(&mut **self.tx).await?;
        sqlx::query("SET LOCAL plan_cache_mode TO DEFAULT")
            .execute(&mut **self.tx)
            .await?;
        Ok(rows)
    }
}

#[async_trait]
impl BatchReads for Reads<'_> {
    async fn shipments(&mut self, ids: &[&str]) -> Result<Vec<Shipment>, StoreError> {
        let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = ANY($1)");
        self.by_ids(&sql, ids, shipment_from_row).await
    }

    async fn orders(&mut self, ids: &[&str]) -> Result<Vec<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1)");
        self.by_ids(&sql, ids, order_from_row).await
    }

    async fn incidents(&mut self, ids: &[&str]) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ANY($1) OR status = 'open'"
        )))
        .bind(ids)
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    async fn customers(
        &mut self,
        ids: &[&str],
    ) -> Result<Vec<(CustomerId, CustomerDoc)>, StoreError> {
        // Customers reached through a shipment or an order are held now, before they are read.
        let found: Vec<String> = ids
            .iter()
            .map(|id| format!("customer:{id}"))
            .filter(|name| !self.held.contains(name))
            .collect();
        hold(self.tx, &found).await?;
        self.held.extend(found);
        self.by_ids(
            "SELECT id, doc FROM customers WHERE id = ANY($1)",
            ids,
            customer_from_row,
        )
        .await
    }

    async fn opt_outs(&mut self, customers: &[&str]) -> Result<Vec<StoredOptOut>, StoreError> {
        self.by_ids(
            "SELECT customer_id, channel, scope, at FROM opt_outs WHERE customer_id = ANY($1)",
            customers,
            stored_opt_out_from_row,
        )
        .await
    }

    async fn lane_days(
        &mut self,
        first_day: i64,
        lanes: &[(Dimension, String)],
    ) -> Result<Vec<LaneDay>, StoreError> {
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT dimension, key, day, settled, late FROM shipment_outcome_days \
             WHERE day >= $1 AND (dimension, key) IN \
               (SELECT * FROM UNNEST($2::text[], $3::text[]))",
        )
        .bind(first_day)
        .bind(lanes.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>())
        .bind(lanes.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter().map(lane_day_from_row).collect()
    }

    async fn experiences(
        &mut self,
        reads: &ExperienceReads<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, Experience)>, StoreError> {
        // Customer by customer through `customer_experiences_by_time`: the stretch before the
        // shared span and the one after it, less any kind and entity the span holds; then the
        // named groups whole. With no shared span (`$5` = `$6` = the end of time) the first
        // stretch is everything since `$4`.
        let (after, until) = reads.shared.map_or((i64::MAX, i64::MAX), |(after, until)| {
            (millis(after), millis(until))
        });
        let sql = format!(
            "WITH {NAMED_GROUPS} \
             SELECT e.customer_id, e.kind, e.entity, e.at FROM UNNEST($1::text[]) AS c(id) \
             CROSS JOIN LATERAL ( \
               SELECT customer_id, kind, entity, at FROM customer_experiences \
               WHERE customer_id = c.id AND at >= $4 AND at <= $5 \
               UNION ALL \
               SELECT customer_id, kind, entity, at FROM customer_experiences \
               WHERE customer_id = c.id AND at > $6 OFFSET 0) e \
             WHERE NOT (e.kind <> 'outage' AND e.entity = ANY($2) \
               OR e.kind = 'outage' AND e.entity = ANY($3)) \
             AND NOT EXISTS (SELECT 1 FROM customer_experiences s \
               WHERE s.customer_id = e.customer_id AND s.kind = e.kind AND s.entity = e.entity \
               AND s.at > $5 AND s.at <= $6 OFFSET 0) \
             UNION ALL \
             SELECT e.customer_id, e.kind, e.entity, e.at FROM named n \
             CROSS JOIN LATERAL (SELECT customer_id, kind, entity, at FROM customer_experiences \
               WHERE customer_id = n.customer_id AND kind = n.kind AND entity = n.entity \
               AND at >= $4 OFFSET 0) e"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customers)
            .bind(reads.named.shipments)
            .bind(reads.named.incidents)
            .bind(millis(reads.since))
            .bind(after)
            .bind(until);
        let rows = self.planned_once(query).await?;
        rows.iter().map(experience_from_row).collect()
    }

    async fn shared_experiences(
        &mut self,
        (after, until): (DateTime<Utc>, DateTime<Utc>),
        named: Named<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, usize)>, StoreError> {
        // Counted from the summaries the triggers keep (`…_experience_groups.sql` in
        // migrations/postgres): the groups whose latest experience lies in the span are the
        // whole days after the span's first day up to its last, plus the first day's groups
        // after its start, less the last day's after its end; then those later still that
        // also have one in the span, less the named ones. Each a few index entries, not a
        // customer's 90 days: counting the rows themselves took 99 ms a batch of about 150
        // customers with 300 experiences each.
        let (first_day, last_day) = (day_number(after), day_number(until));
        let (after, until) = (millis(after), millis(until));
        let in_span = "EXISTS (SELECT 1 FROM customer_experiences e \
            WHERE e.customer_id = g.customer_id AND e.kind = g.kind AND e.entity = g.entity \
            AND e.at > $4 AND e.at <= $5 OFFSET 0)";
        let sql = format!(
            "WITH {NAMED_GROUPS}, named_counted AS ( \
               SELECT customer_id, count(*) AS groups FROM named g \
               WHERE g.last_at > $4 AND (g.last_at <= $5 OR {in_span}) GROUP BY customer_id), \
             counts AS ( \
               SELECT c.id AS customer_id, \
                 (SELECT coalesce(sum(d.groups), 0) FROM customer_experience_days d \
                   WHERE d.customer_id = c.id AND d.day > $6 AND d.day <= $7) \
                 + (SELECT count(*) FROM customer_experience_groups g \
                   WHERE g.customer_id = c.id AND g.last_at > $4 AND g.last_at < $8) \
                 - (SELECT count(*) FROM customer_experience_groups g \
                   WHERE g.customer_id = c.id AND g.last_at > $5 AND g.last_at < $9) \
                 + (SELECT count(*) FROM customer_experience_groups g \
                   WHERE g.customer_id = c.id AND g.last_at > $5 AND {in_span}) \
                 - coalesce(n.groups, 0) AS shared \
               FROM UNNEST($1::text[]) AS c(id) \
               LEFT JOIN named_counted n ON n.customer_id = c.id) \
             SELECT customer_id, shared::int8 AS shared FROM counts WHERE shared > 0"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customers)
            .bind(named.shipments)
            .bind(named.incidents)
            .bind(after)
            .bind(until)
            .bind(first_day)
            .bind(last_day)
            .bind((first_day + 1) * DAY_MS)
            .bind((last_day + 1) * DAY_MS);
        let rows = self.planned_once(query).await?;
        rows.iter().map(shared_count_from_row).collect()
    }

    async fn orders_of(&mut self, customers: &[&str]) -> Result<Vec<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = ANY($1)");
        self.by_ids(&sql, customers, order_from_row).await
    }

    async fn last_outreach(
        &mut self,
        before: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, PastOutreach)>, StoreError> {
        // Customer by customer, the newest first through `outbox_by_customer` (`LATERAL …
        // LIMIT 1`). One `DISTINCT ON` pass over all their messages sorted every message of
        // every customer: 75 ms for 150 customers at 115 messages each.
        let rows = sqlx::query(
            "SELECT c.id AS customer_id, o.created_at, o.status, o.updated_at, d.redeemed_at \
             FROM UNNEST($1::text[]) AS c(id) \
             CROSS JOIN LATERAL (SELECT created_at, status, updated_at, discount_code \
               FROM outbox WHERE customer_id = c.id AND created_at < $2 \
               ORDER BY created_at DESC LIMIT 1) o \
             LEFT JOIN discount_codes d ON d.code = o.discount_code",
        )
        .bind(customers)
        .bind(millis(before))
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter().map(past_outreach_from_row).collect()
    }

    async fn marketing(
        &mut self,
        since: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT customer_id, created_at FROM outbox \
             WHERE customer_id = ANY($1) AND created_at >= $2 \
               AND (category = 'marketing' OR offer IS NOT NULL) \
               AND status NOT IN ('cancelled', 'failed')",
        )
        .bind(customers)
        .bind(millis(since))
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter().map(marketing_from_row).collect()
    }

    async fn stock_waits(&mut self, skus: &[&str]) -> Result<Vec<StockWait>, StoreError> {
        let sql = format!("SELECT {STOCK_WAIT_COLUMNS} FROM stock_waits WHERE sku = ANY($1)");
        self.by_ids(&sql, skus, stock_wait_from_row).await
    }

    async fn risk_scores(
        &mut self,
        customers: &[&str],
        shipments: &[&str],
    ) -> Result<Vec<ExternalScore>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RISK_SCORE_COLUMNS} FROM risk_scores \
             WHERE customer_id = ANY($1) OR shipment_id = ANY($2)"
        )))
        .bind(customers)
        .bind(shipments)
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter().map(external_score_from_row).collect()
    }
}
