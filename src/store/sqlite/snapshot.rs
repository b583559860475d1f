//! An intake batch's reads on SQLite ([`BatchReads`]; what is read, and why, is in
//! `store::snapshot`): `IN` lists chunked below SQLite's bind limit, and a JSON array where a
//! list feeds a correlated subquery or a join. The experience reads count from the summary
//! the triggers of `…_experience_groups.sql` keep.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::{
    incident_from_row, order_from_row, select_in, select_in_where, shipment_from_row, with_keys,
    INCIDENT_COLUMNS, ORDER_COLUMNS, SHIPMENT_COLUMNS,
};
use super::MAX_BINDS;
use crate::domain::{
    CustomerDoc, CustomerId, Dimension, Experience, ExternalScore, Incident, Order, PastOutreach,
    Shipment, StockWait,
};
use crate::store::rows::{
    customer_from_row, experience_from_row, external_score_from_row, lane_day_from_row,
    marketing_from_row, past_outreach_from_row, shared_count_from_row, stock_wait_from_row,
    stored_opt_out_from_row, RISK_SCORE_COLUMNS, STOCK_WAIT_COLUMNS,
};
use crate::store::snapshot::{self, BatchReads, ExperienceReads, LaneDay, Named, StoredOptOut};
use crate::store::{millis, Refs, Snapshot, StoreError};

/// Loads the state an intake batch touches (see `IntakeTx::load`).
pub(super) async fn load(
    tx: &mut Transaction<'static, Sqlite>,
    refs: &Refs,
) -> Result<Snapshot, StoreError> {
    snapshot::load(&mut Reads(tx), refs).await
}

/// A batch transaction, reading.
struct Reads<'t>(&'t mut Transaction<'static, Sqlite>);

/// Decodes every row with `decode`.
fn all<T>(
    rows: Vec<SqliteRow>,
    decode: impl Fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(decode).collect()
}

/// The settled days of the lanes in `keys(dimension, key)` (after [`with_keys`]), from the
/// day bound after it.
pub(super) const LANE_DAYS: &str = "SELECT d.dimension, d.key, d.day, d.settled, d.late \
     FROM keys CROSS JOIN shipment_outcome_days d \
     WHERE d.dimension = keys.dimension AND d.key = keys.key AND d.day >= ";

/// The batch's customers (`?1`, a JSON array), and `named`: their experience groups about the
/// shipments (`?2`) and incidents (`?3`) it names. A shipment's groups are found through its
/// entity (a shipment has one customer), an incident's customer by customer (it may have a
/// million). `CROSS JOIN` here and below fixes SQLite's join order: the lists outside, each
/// table searched through its index inside. A macro, so that the statements built on it are
/// literals.
macro_rules! named_groups {
    () => {
        "WITH customers(id) AS (SELECT value FROM json_each(?1)), \
    named AS MATERIALIZED ( \
      SELECT g.customer_id, g.kind, g.entity, g.last_at \
      FROM json_each(?2) s CROSS JOIN customer_experience_groups g \
      WHERE g.entity = s.value AND g.kind <> 'outage' \
        AND g.customer_id IN (SELECT id FROM customers) \
      UNION ALL \
      SELECT g.customer_id, g.kind, g.entity, g.last_at \
      FROM customers c CROSS JOIN json_each(?3) i CROSS JOIN customer_experience_groups g \
      WHERE g.customer_id = c.id AND g.kind = 'outage' AND g.entity = i.value) "
    };
}

/// The experiences a batch reads one by one (`BatchReads::experiences`), customer by customer
/// through `customer_experiences_by_time`: the stretch from `?4` up to the shared span's start
/// (`?5`) and the one after its end (`?6`), less any kind and entity the span holds; then the
/// named groups whole. Reading every row since `?4` instead took 70 µs an event on a fresh
/// file and 147 µs after 90k events, holding the single writer (latency bench, 3,000/s).
pub(super) const EXPERIENCES: &str = concat!(
    named_groups!(),
    ", edges AS ( \
       SELECT e.customer_id, e.kind, e.entity, e.at \
       FROM customers c CROSS JOIN customer_experiences e \
       WHERE e.customer_id = c.id AND e.at >= ?4 AND e.at <= ?5 \
       UNION ALL \
       SELECT e.customer_id, e.kind, e.entity, e.at \
       FROM customers c CROSS JOIN customer_experiences e \
       WHERE e.customer_id = c.id AND e.at > ?6) \
     SELECT customer_id, kind, entity, at FROM edges e \
     WHERE NOT (kind <> 'outage' AND entity IN (SELECT value FROM json_each(?2)) \
         OR kind = 'outage' AND entity IN (SELECT value FROM json_each(?3))) \
       AND NOT EXISTS (SELECT 1 FROM customer_experiences s \
         WHERE s.customer_id = e.customer_id AND s.kind = e.kind AND s.entity = e.entity \
           AND s.at > ?5 AND s.at <= ?6) \
     UNION ALL \
     SELECT e.customer_id, e.kind, e.entity, e.at \
     FROM named n CROSS JOIN customer_experiences e \
     WHERE e.customer_id = n.customer_id AND e.kind = n.kind AND e.entity = n.entity \
       AND e.at >= ?4"
);

/// Whether group `g` has an experience in the shared span (after `?4`, up to `?5`).
macro_rules! in_span {
    () => {
        "EXISTS (SELECT 1 FROM customer_experiences e \
         WHERE e.customer_id = g.customer_id AND e.kind = g.kind AND e.entity = g.entity \
           AND e.at > ?4 AND e.at <= ?5)"
    };
}

/// Per customer, the groups with an experience in the shared span (`BatchReads::
/// shared_experiences`), counted from the summary the triggers keep
/// (`…_experience_groups.sql` in migrations/sqlite): those whose latest experience lies in it
/// (after `?4`, up to `?5`), then those later still that also have one in the span, less the
/// named ones; each from the customer's stretch of the groups' key, one entry a group, not a
/// customer's 90 days of rows.
pub(super) const SHARED_EXPERIENCES: &str = concat!(
    named_groups!(),
    ", named_counted AS ( \
       SELECT customer_id, count(*) AS groups FROM named g \
       WHERE g.last_at > ?4 AND (g.last_at <= ?5 OR ",
    in_span!(),
    ") GROUP BY customer_id), \
     counts AS ( \
       SELECT c.id AS customer_id, \
         (SELECT count(*) FROM customer_experience_groups g \
           WHERE g.customer_id = c.id AND g.last_at > ?4 AND g.last_at <= ?5) \
         + (SELECT count(*) FROM customer_experience_groups g \
           WHERE g.customer_id = c.id AND g.last_at > ?5 AND ",
    in_span!(),
    ") \
         - coalesce((SELECT groups FROM named_counted n WHERE n.customer_id = c.id), 0) \
           AS shared \
       FROM customers c) \
     SELECT customer_id, shared FROM counts WHERE shared > 0"
);

#[async_trait]
impl BatchReads for Reads<'_> {
    async fn shipments(&mut self, ids: &[&str]) -> Result<Vec<Shipment>, StoreError> {
        let rows = select_in(self.0, SHIPMENT_COLUMNS, "shipments", "id", ids).await?;
        all(rows, shipment_from_row)
    }

    async fn orders(&mut self, ids: &[&str]) -> Result<Vec<Order>, StoreError> {
        let rows = select_in(self.0, ORDER_COLUMNS, "orders", "id", ids).await?;
        all(rows, order_from_row)
    }

    async fn incidents(&mut self, ids: &[&str]) -> Result<Vec<Incident>, StoreError> {
        let mut rows = select_in(self.0, INCIDENT_COLUMNS, "incidents", "id", ids).await?;
        // Few are open at once; the partial index finds them.
        rows.extend(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status = 'open'"
            )))
            .fetch_all(&mut **self.0)
            .await?,
        );
        let mut seen = HashSet::new();
        let mut incidents = all(rows, incident_from_row)?;
        incidents.retain(|i| seen.insert(i.id.clone()));
        Ok(incidents)
    }

    async fn customers(
        &mut self,
        ids: &[&str],
    ) -> Result<Vec<(CustomerId, CustomerDoc)>, StoreError> {
        let rows = select_in(self.0, "id, doc", "customers", "id", ids).await?;
        all(rows, customer_from_row)
    }

    async fn opt_outs(&mut self, customers: &[&str]) -> Result<Vec<StoredOptOut>, StoreError> {
        let columns = "customer_id, channel, scope, at";
        let rows = select_in(self.0, columns, "opt_outs", "customer_id", customers).await?;
        all(rows, stored_opt_out_from_row)
    }

    async fn lane_days(
        &mut self,
        first_day: i64,
        lanes: &[(Dimension, String)],
    ) -> Result<Vec<LaneDay>, StoreError> {
        let mut days = Vec::new();
        for chunk in lanes.chunks(MAX_BINDS / 3) {
            let mut q = with_keys(
                "dimension, key",
                chunk
                    .iter()
                    .map(|(dimension, key)| (dimension.as_str().to_owned(), key.clone())),
            );
            q.push(LANE_DAYS).push_bind(first_day);
            let rows = q.build().persistent(false).fetch_all(&mut **self.0).await?;
            days.extend(all(rows, lane_day_from_row)?);
        }
        Ok(days)
    }

    async fn experiences(
        &mut self,
        reads: &ExperienceReads<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, Experience)>, StoreError> {
        // With no shared span, the first stretch is everything since `?4` (`?5` = `?6` = the
        // end of time).
        let (after, until) = reads.shared.map_or((i64::MAX, i64::MAX), |(after, until)| {
            (millis(after), millis(until))
        });
        let rows = sqlx::query(EXPERIENCES)
            .bind(serde_json::json!(customers).to_string())
            .bind(serde_json::json!(reads.named.shipments).to_string())
            .bind(serde_json::json!(reads.named.incidents).to_string())
            .bind(millis(reads.since))
            .bind(after)
            .bind(until)
            .fetch_all(&mut **self.0)
            .await?;
        all(rows, experience_from_row)
    }

    async fn shared_experiences(
        &mut self,
        (after, until): (DateTime<Utc>, DateTime<Utc>),
        named: Named<'_>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, usize)>, StoreError> {
        let rows = sqlx::query(SHARED_EXPERIENCES)
            .bind(serde_json::json!(customers).to_string())
            .bind(serde_json::json!(named.shipments).to_string())
            .bind(serde_json::json!(named.incidents).to_string())
            .bind(millis(after))
            .bind(millis(until))
            .fetch_all(&mut **self.0)
            .await?;
        all(rows, shared_count_from_row)
    }

    async fn orders_of(&mut self, customers: &[&str]) -> Result<Vec<Order>, StoreError> {
        let rows = select_in(self.0, ORDER_COLUMNS, "orders", "customer_id", customers).await?;
        all(rows, order_from_row)
    }

    async fn last_outreach(
        &mut self,
        before: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, PastOutreach)>, StoreError> {
        let mut outreach = Vec::new();
        for chunk in customers.chunks(MAX_BINDS - 1) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT o.customer_id, o.created_at, o.status, o.updated_at, d.redeemed_at \
                 FROM outbox o LEFT JOIN discount_codes d \
                   ON d.code = o.discount_code \
                 WHERE o.id IN (SELECT (SELECT id FROM outbox i WHERE i.customer_id = c.value \
                   AND i.created_at < ",
            );
            q.push_bind(millis(before))
                .push(" ORDER BY i.created_at DESC LIMIT 1) FROM json_each(")
                .push_bind(serde_json::json!(chunk).to_string())
                .push(") c)");
            let rows = q.build().persistent(false).fetch_all(&mut **self.0).await?;
            outreach.extend(all(rows, past_outreach_from_row)?);
        }
        Ok(outreach)
    }

    async fn marketing(
        &mut self,
        since: DateTime<Utc>,
        customers: &[&str],
    ) -> Result<Vec<(CustomerId, DateTime<Utc>)>, StoreError> {
        let rows = select_in_where(
            self.0,
            "customer_id, created_at",
            "outbox",
            &format!(
                "created_at >= {} AND (category = 'marketing' OR offer IS NOT NULL) \
                 AND status NOT IN ('cancelled', 'failed') AND",
                millis(since)
            ),
            "customer_id",
            customers,
        )
        .await?;
        all(rows, marketing_from_row)
    }

    async fn stock_waits(&mut self, skus: &[&str]) -> Result<Vec<StockWait>, StoreError> {
        let rows = select_in(self.0, STOCK_WAIT_COLUMNS, "stock_waits", "sku", skus).await?;
        all(rows, stock_wait_from_row)
    }

    async fn risk_scores(
        &mut self,
        customers: &[&str],
        shipments: &[&str],
    ) -> Result<Vec<ExternalScore>, StoreError> {
        let mut seen = HashSet::new();
        let mut scores = Vec::new();
        for (column, ids) in [("customer_id", customers), ("shipment_id", shipments)] {
            for row in select_in(self.0, RISK_SCORE_COLUMNS, "risk_scores", column, ids).await? {
                let key: (String, String) =
                    (row.try_get("event_source")?, row.try_get("event_id")?);
                if seen.insert(key) {
                    scores.push(external_score_from_row(&row)?);
                }
            }
        }
        Ok(scores)
    }
}
