//! [`IntakeStore`] on SQLite: the batch transaction, its de-duplication and its notes; the reads
//! and writes it delegates to `snapshot` and `apply`. A fan-out page runs in the same kind of
//! transaction ([`FanoutTx`]).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::with_event_keys;
use super::{apply, incidents, snapshot, SqliteStore, MAX_BINDS};
use crate::domain::{CustomerId, EntityId, EventKey, IdempotencyKey};
use crate::policy::retraction::Resolution;
use crate::store::{
    millis, Audience, Changes, DecisionNote, EventRecord, FanoutClaim, FanoutStep, FanoutTx,
    IntakeStore, IntakeTx, Refs, Retracted, Snapshot, StoreError,
};

/// Which of `keys` are already recorded (after [`with_event_keys`]).
pub(super) const KNOWN_EVENTS: &str = "SELECT e.source, e.id FROM keys CROSS JOIN events e \
     WHERE e.source = keys.source AND e.id = keys.id";

/// An intake batch's (or a fan-out page's) transaction on SQLite.
pub(super) struct SqliteIntakeTx {
    tx: Transaction<'static, Sqlite>,
}

impl SqliteStore {
    /// Starts a batch transaction.
    pub(super) async fn begin_batch(&self) -> Result<SqliteIntakeTx, StoreError> {
        Ok(SqliteIntakeTx {
            tx: self.begin_write().await?,
        })
    }
}

#[async_trait]
impl IntakeStore for SqliteStore {
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx + '_>, StoreError> {
        Ok(Box::new(self.begin_batch().await?))
    }
}

#[async_trait]
impl IntakeTx for SqliteIntakeTx {
    async fn record_events(
        &mut self,
        events: &[EventRecord],
    ) -> Result<HashSet<EventKey>, StoreError> {
        // Duplicates are rare, so ask only for them (usually no rows come back) instead of
        // returning every inserted key, then insert the rest.
        let mut known: HashSet<EventKey> = HashSet::new();
        for chunk in events.chunks(MAX_BINDS / 2) {
            let mut q = with_event_keys(chunk.iter().map(|e| &e.key));
            q.push(KNOWN_EVENTS);
            for row in q.build().persistent(false).fetch_all(&mut *self.tx).await? {
                known.insert(EventKey {
                    source: row.try_get("source")?,
                    id: row.try_get("id")?,
                });
            }
        }
        let mut fresh = HashSet::with_capacity(events.len());
        let new: Vec<&EventRecord> = events
            .iter()
            .filter(|e| !known.contains(&e.key) && fresh.insert(e.key.clone()))
            .collect();
        for chunk in new.chunks(MAX_BINDS / 11) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (source, id, type, subject, time, customer_id, data, \
                 received_at, shipment_id, order_id, incident_id) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.key.source.clone())
                    .push_bind(e.key.id.clone())
                    .push_bind(e.event_type.as_str())
                    .push_bind(e.subject.clone())
                    .push_bind(e.time.map(millis))
                    .push_bind(e.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(e.data.clone())
                    .push_bind(millis(e.received_at))
                    .push_bind(entity(&e.about.shipment_id))
                    .push_bind(entity(&e.about.order_id))
                    .push_bind(entity(&e.about.incident_id));
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        Ok(fresh)
    }

    async fn forget_events(&mut self, keys: &[EventKey]) -> Result<(), StoreError> {
        for key in keys {
            sqlx::query("DELETE FROM events WHERE source = ?1 AND id = ?2")
                .bind(&key.source)
                .bind(&key.id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn load(&mut self, refs: &Refs) -> Result<Snapshot, StoreError> {
        snapshot::load(&mut self.tx, refs).await
    }

    async fn apply(
        &mut self,
        changes: &Changes,
        now: DateTime<Utc>,
    ) -> Result<HashSet<IdempotencyKey>, StoreError> {
        apply::apply(&mut self.tx, changes, now).await
    }

    async fn retract(
        &mut self,
        resolutions: &[Resolution],
        now: DateTime<Utc>,
    ) -> Result<Vec<Retracted>, StoreError> {
        apply::retract(&mut self.tx, resolutions, now).await
    }

    async fn record_notes(&mut self, notes: &[DecisionNote]) -> Result<(), StoreError> {
        for chunk in notes.chunks(MAX_BINDS / 8) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO decision_notes (customer_id, at, event_source, event_id, rule_id, \
                 outcome, reason, detail) ",
            );
            q.push_values(chunk, |mut row, n| {
                row.push_bind(n.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(millis(n.at))
                    .push_bind(n.event.source.clone())
                    .push_bind(n.event.id.clone())
                    .push_bind(n.rule_id.clone())
                    .push_bind(n.outcome)
                    .push_bind(n.reason.clone())
                    .push_bind(n.detail.clone());
            });
            q.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl FanoutTx for SqliteIntakeTx {
    async fn audience_page(
        &mut self,
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustomerId>, StoreError> {
        incidents::audience_page(&mut self.tx, audience, after, limit).await
    }

    async fn rank_targets(
        &mut self,
        fanout_id: i64,
        targets: &[(CustomerId, f64)],
    ) -> Result<(), StoreError> {
        incidents::rank_targets(&mut self.tx, fanout_id, targets).await
    }

    async fn take_targets(&mut self, fanout_id: i64, count: usize) -> Result<(), StoreError> {
        incidents::take_targets(&mut self.tx, fanout_id, count).await
    }

    async fn advance_fanout(
        &mut self,
        claim: &FanoutClaim,
        step: &FanoutStep,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        incidents::advance_fanout(&mut self.tx, claim, step, owner, now, lease_until).await
    }
}

/// An optional id as bound.
fn entity(id: &Option<EntityId>) -> Option<String> {
    id.as_ref().map(|id| id.as_str().to_owned())
}
