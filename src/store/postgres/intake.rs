//! [`IntakeStore`] on PostgreSQL: the batch transaction, its de-duplication and its notes; the
//! reads and writes it delegates to `snapshot` and `apply`. A fan-out page runs in the same kind
//! of transaction ([`crate::store::FanoutTx`]).
//!
//! De-duplication holds across processes without a table lock: events are inserted first,
//! `ON CONFLICT DO NOTHING RETURNING` names the keys that were new, and a second process
//! inserting the same key waits on the unique index until the first commits, then finds it
//! taken. Only the process that inserted a key decides its event.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};

use super::{apply, incidents, snapshot, PgStore};
use crate::domain::{CustomerId, EntityId, EventKey, IdempotencyKey};
use crate::policy::retraction::Resolution;
use crate::store::{
    millis, Audience, Changes, DecisionNote, EventRecord, FanoutClaim, FanoutStep, FanoutTx,
    IntakeStore, IntakeTx, Refs, Retracted, Snapshot, StoreError,
};

/// An intake batch's (or a fan-out page's) transaction on PostgreSQL.
pub(super) struct PgIntakeTx {
    pub(super) tx: Transaction<'static, Postgres>,
}

impl PgStore {
    /// Starts a batch transaction (read committed: every guard is in its statements).
    pub(super) async fn begin_batch(&self) -> Result<PgIntakeTx, StoreError> {
        Ok(PgIntakeTx {
            tx: self.begin_write().await?,
        })
    }
}

#[async_trait]
impl IntakeStore for PgStore {
    async fn begin_intake(&self) -> Result<Box<dyn IntakeTx + '_>, StoreError> {
        Ok(Box::new(self.begin_batch().await?))
    }
}

#[async_trait]
impl IntakeTx for PgIntakeTx {
    async fn record_events(
        &mut self,
        events: &[EventRecord],
    ) -> Result<HashSet<EventKey>, StoreError> {
        // A key twice in one batch would make the insert touch its row twice: send each once.
        let mut seen = HashSet::with_capacity(events.len());
        let events: Vec<&EventRecord> = events.iter().filter(|e| seen.insert(&e.key)).collect();
        let column = |f: fn(&EventRecord) -> Option<String>| -> Vec<Option<String>> {
            events.iter().map(|e| f(e)).collect()
        };
        let rows = sqlx::query(
            "INSERT INTO events (source, id, type, subject, time, customer_id, data, \
             received_at, shipment_id, order_id, incident_id) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                                  $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], \
                                  $11::text[]) \
             ON CONFLICT (source, id) DO NOTHING RETURNING source, id",
        )
        .bind(column(|e| Some(e.key.source.clone())))
        .bind(column(|e| Some(e.key.id.clone())))
        .bind(column(|e| Some(e.event_type.as_str().to_owned())))
        .bind(column(|e| e.subject.clone()))
        .bind(
            events
                .iter()
                .map(|e| e.time.map(millis))
                .collect::<Vec<_>>(),
        )
        .bind(column(|e| {
            e.customer_id.as_ref().map(|c| c.as_str().to_owned())
        }))
        .bind(column(|e| Some(e.data.clone())))
        .bind(
            events
                .iter()
                .map(|e| millis(e.received_at))
                .collect::<Vec<_>>(),
        )
        .bind(column(|e| entity(&e.about.shipment_id)))
        .bind(column(|e| entity(&e.about.order_id)))
        .bind(column(|e| entity(&e.about.incident_id)))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventKey {
                    source: row.try_get("source")?,
                    id: row.try_get("id")?,
                })
            })
            .collect()
    }

    async fn forget_events(&mut self, keys: &[EventKey]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "DELETE FROM events WHERE (source, id) IN \
             (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(keys.iter().map(|k| k.source.clone()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
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
        if notes.is_empty() {
            return Ok(());
        }
        let text = |f: fn(&DecisionNote) -> String| notes.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO decision_notes (customer_id, at, event_source, event_id, rule_id, \
             outcome, reason, detail) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[])",
        )
        .bind(
            notes
                .iter()
                .map(|n| n.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .bind(notes.iter().map(|n| millis(n.at)).collect::<Vec<_>>())
        .bind(text(|n| n.event.source.clone()))
        .bind(text(|n| n.event.id.clone()))
        .bind(text(|n| n.rule_id.clone()))
        .bind(text(|n| n.outcome.to_owned()))
        .bind(text(|n| n.reason.clone()))
        .bind(text(|n| n.detail.clone()))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// An optional id as bound.
fn entity(id: &Option<EntityId>) -> Option<String> {
    id.as_ref().map(|id| id.as_str().to_owned())
}

#[async_trait]
impl FanoutTx for PgIntakeTx {
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
