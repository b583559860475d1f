//! An intake batch's writes, each aggregate in one multi-row statement per chunk: state upserts,
//! who waits for which item, outreach (a repeat of its unique key is a no-op), supersession and
//! discount codes; then the retraction of what the batch's events resolved (`retract`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::codes::void_code_of;
use super::rows::{INCIDENT_COLUMNS, SHIPMENT_COLUMNS};
use super::{incidents, MAX_BINDS};
use crate::domain::{region_ancestry, IdempotencyKey, Offer, Outreach};
use crate::policy::retraction::Resolution;
use crate::store::intake::ended_waits;
use crate::store::{millis, Changes, Retracted, StoreError};

/// Cancels the waiting messages about problems that ended (see `IntakeTx::retract`): each
/// resolution probes the waiting rows by parcel, order or incident (`outbox_pending_by_*`, which
/// hold nothing else) and keeps those an event of its kinds caused.
pub(super) async fn retract(
    tx: &mut Transaction<'static, Sqlite>,
    resolutions: &[Resolution],
    now: DateTime<Utc>,
) -> Result<Vec<Retracted>, StoreError> {
    let now_ms = millis(now);
    let mut retracted = Vec::new();
    for resolution in resolutions {
        let column = resolution.about.outbox_column();
        for chunk in resolution.ids.chunks(MAX_BINDS / 2) {
            // `gone CROSS JOIN outbox` keeps the ids as the outer loop, each probing the waiting
            // rows by its column; the planner would otherwise walk every pending row by status.
            let mut q = QueryBuilder::<Sqlite>::new("WITH gone(id) AS (");
            q.push_values(chunk, |mut row, id| {
                row.push_bind(id.as_str());
            });
            q.push(") UPDATE outbox SET status = 'cancelled', last_error = 'cancelled: ' || ")
                .push_bind(resolution.reason)
                .push(", claimed_until = NULL, updated_at = ")
                .push_bind(now_ms)
                .push(format!(
                    " WHERE id IN (SELECT o.id FROM gone CROSS JOIN outbox o \
                     WHERE o.{column} = gone.id AND o.status = 'pending' \
                     AND EXISTS (SELECT 1 FROM events e WHERE e.source = o.event_source \
                     AND e.id = o.event_id AND e.type IN ("
                ));
            let mut types = q.separated(", ");
            for kind in resolution.event_types {
                types.push_bind(*kind);
            }
            q.push("))) RETURNING id, rule_id, channel");
            let rows: Vec<(i64, String, String)> = q
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut **tx)
                .await?;
            for (id, rule_id, channel) in rows {
                void_code_of(tx, id, now_ms).await?;
                retracted.push(Retracted { rule_id, channel });
            }
        }
    }
    Ok(retracted)
}

/// Who starts waiting for an item, and whose waits are over, as the batch left them: ended
/// waits go after the new ones, so an item restocked in the batch that backordered it ends
/// that wait too.
async fn write_stock_waits(
    tx: &mut Transaction<'static, Sqlite>,
    changes: &Changes,
) -> Result<(), StoreError> {
    for chunk in changes.stock_waits.chunks(MAX_BINDS / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO stock_waits (sku, customer_id, order_id, since) ",
        );
        q.push_values(chunk, |mut row, wait| {
            row.push_bind(wait.sku.clone())
                .push_bind(wait.customer_id.as_str().to_owned())
                .push_bind(wait.order_id.as_ref().map_or("", |o| o.as_str()).to_owned())
                .push_bind(millis(wait.since));
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    // One statement per chunk for the orders whose waits are over (each parcel created names
    // one: thousands a batch), and for the items back in stock; `order_id <> ''` lets the first
    // use `stock_waits_by_order`, which holds only the waits of orders.
    let (orders, skus) = ended_waits(&changes.waits_ended);
    for (delete, ids) in [
        (
            "DELETE FROM stock_waits WHERE order_id <> '' AND order_id IN (",
            orders,
        ),
        ("DELETE FROM stock_waits WHERE sku IN (", skus),
    ] {
        for chunk in ids.chunks(MAX_BINDS) {
            let mut q = QueryBuilder::<Sqlite>::new(delete);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.clone());
            }
            q.push(")");
            q.build().persistent(false).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Writes an intake batch's changes (see `IntakeTx::apply`).
pub(super) async fn apply(
    tx: &mut Transaction<'static, Sqlite>,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<HashSet<IdempotencyKey>, StoreError> {
    // The outbox id of each message queued (a repeat of a stored key is not), for its risk
    // explanation.
    let mut ids: std::collections::HashMap<IdempotencyKey, i64> =
        std::collections::HashMap::with_capacity(changes.outreach.len());
    let now_ms = millis(now);
    incidents::insert_fanouts(tx, &changes.fanouts, now).await?;
    for chunk in changes.customers.chunks(MAX_BINDS / 6) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO customers (id, doc, region, regions, segment, updated_at) ",
        );
        q.push_values(chunk, |mut row, (id, doc)| {
            let object = doc.as_object();
            let field = |name: &str| object.get(name).and_then(|v| v.as_str());
            let region = field("region");
            row.push_bind(id.as_str().to_owned())
                .push_bind(doc.as_value().to_string())
                .push_bind(region.map(str::to_owned))
                .push_bind(region.map(|r| {
                    serde_json::Value::from(region_ancestry(r).collect::<Vec<_>>()).to_string()
                }))
                .push_bind(field("segment").map(str::to_owned))
                .push_bind(now_ms);
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, region = excluded.region, \
             regions = excluded.regions, segment = excluded.segment, \
             updated_at = excluded.updated_at",
        );
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.opt_outs.chunks(MAX_BINDS / 4) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO opt_outs (customer_id, channel, scope, at) ");
        q.push_values(chunk, |mut row, o| {
            row.push_bind(o.customer_id.as_str().to_owned())
                .push_bind(o.channel.as_str())
                .push_bind(o.scope.as_str())
                .push_bind(millis(o.at));
        });
        // The pipeline already merged scopes with what was stored.
        q.push(
            " ON CONFLICT (customer_id, channel) DO UPDATE SET scope = excluded.scope, \
             at = excluded.at",
        );
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.orders.chunks(MAX_BINDS / 8) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT OR REPLACE INTO orders (id, customer_id, status, total_minor, currency, \
             promised_by, placed_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, o| {
            row.push_bind(o.id.as_str().to_owned())
                .push_bind(o.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                .push_bind(o.status.as_str())
                .push_bind(o.total.as_ref().map(|m| m.minor))
                .push_bind(o.total.as_ref().map(|m| m.currency.clone()))
                .push_bind(o.promised_by.map(millis))
                .push_bind(o.placed_at.map(millis))
                .push_bind(millis(o.updated_at));
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.shipments.chunks(MAX_BINDS / 14) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT OR REPLACE INTO shipments ({SHIPMENT_COLUMNS}) "
        ));
        q.push_values(chunk, |mut row, s| {
            row.push_bind(s.id.as_str().to_owned())
                .push_bind(s.order_id.as_ref().map(|o| o.as_str().to_owned()))
                .push_bind(s.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                .push_bind(s.carrier.clone())
                .push_bind(s.tracking_number.clone())
                .push_bind(s.tracking_url.clone())
                .push_bind(s.promised_by.map(millis))
                .push_bind(s.new_eta.map(millis))
                .push_bind(s.status.as_str())
                .push_bind(s.region.clone())
                .push_bind(s.last_scan_at.map(millis))
                .push_bind(s.delivered_at.map(millis))
                .push_bind(s.exception_kind.clone())
                .push_bind(millis(s.updated_at));
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.incidents.chunks(MAX_BINDS / 9) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT OR REPLACE INTO incidents ({INCIDENT_COLUMNS}) "
        ));
        q.push_values(chunk, |mut row, i| {
            row.push_bind(i.id.as_str().to_owned())
                .push_bind(i.title.clone())
                .push_bind(i.severity.clone())
                .push_bind(i.status.as_str())
                .push_bind(i.affected.to_string())
                .push_bind(i.started_at.map(millis))
                .push_bind(i.resolved_at.map(millis))
                .push_bind(millis(i.updated_at))
                .push_bind(i.peak_severity.clone());
        });
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.experiences.chunks(MAX_BINDS / 4) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO customer_experiences (customer_id, kind, entity, at) ",
        );
        q.push_values(chunk, |mut row, (customer, e)| {
            row.push_bind(customer.as_str().to_owned())
                .push_bind(e.kind.as_str())
                .push_bind(e.entity.clone())
                .push_bind(millis(e.at));
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    write_stock_waits(tx, changes).await?;
    // One row per (lane, day): several deliveries on one day in a batch add up first, as
    // an upsert may not touch one row twice in a statement.
    let mut settled: std::collections::BTreeMap<(&str, &str, i64), (i64, i64)> =
        std::collections::BTreeMap::new();
    for (dimension, key, day, late) in &changes.settled {
        let count = settled.entry((dimension.as_str(), key, *day)).or_default();
        count.0 += 1;
        count.1 += i64::from(*late);
    }
    let settled: Vec<_> = settled.into_iter().collect();
    for chunk in settled.chunks(MAX_BINDS / 5) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO shipment_outcome_days (dimension, key, day, settled, late) ",
        );
        q.push_values(chunk, |mut row, ((dimension, key, day), (n, late))| {
            row.push_bind(*dimension)
                .push_bind(key.to_string())
                .push_bind(*day)
                .push_bind(*n)
                .push_bind(*late);
        });
        q.push(
            " ON CONFLICT (dimension, key, day) DO UPDATE SET \
             settled = settled + excluded.settled, late = late + excluded.late",
        );
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.risk_scores.chunks(MAX_BINDS / 9) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO risk_scores (event_source, event_id, customer_id, shipment_id, \
             order_id, delay, churn, model, scored_at) ",
        );
        q.push_values(chunk, |mut row, r| {
            row.push_bind(r.event.source.clone())
                .push_bind(r.event.id.clone())
                .push_bind(r.score.customer_id.as_ref().map(|c| c.as_str().to_owned()))
                .push_bind(r.score.shipment_id.as_ref().map(|s| s.as_str().to_owned()))
                .push_bind(r.score.order_id.as_ref().map(|o| o.as_str().to_owned()))
                .push_bind(r.score.delay)
                .push_bind(r.score.churn)
                .push_bind(r.score.model.clone())
                .push_bind(millis(r.score.scored_at));
        });
        q.push(" ON CONFLICT (event_source, event_id) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    for chunk in changes.outreach.chunks(MAX_BINDS / 27) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, \
             category, priority, fallback, event_source, event_id, locale, content, status, \
             attempts, next_attempt_at, created_at, updated_at, offer, urgency, timezone, \
             region, order_id, incident_id, discount_code, delay_score, churn_score, \
             shipment_id) ",
        );
        let mut encode_error = None;
        q.push_values(chunk, |mut row, o| {
            let content = serde_json::to_string(&o.content).unwrap_or_else(|e| {
                encode_error = Some(e.to_string());
                String::new()
            });
            let fallback: Vec<&str> = o.fallback.iter().map(|c| c.as_str()).collect();
            row.push_bind(o.key.as_str().to_owned())
                .push_bind(o.rule_id.clone())
                .push_bind(o.customer_id.as_str().to_owned())
                .push_bind(o.entity.clone())
                .push_bind(o.content.channel().as_str())
                .push_bind(o.category.as_str())
                .push_bind(o.priority)
                .push_bind(serde_json::json!(fallback).to_string())
                .push_bind(o.event.source.clone())
                .push_bind(o.event.id.clone())
                .push_bind(o.locale.clone())
                .push_bind(content)
                .push_bind("pending")
                .push_bind(0_i64)
                .push_bind(o.not_before.map_or(now_ms, millis))
                .push_bind(now_ms)
                .push_bind(now_ms)
                .push_bind(o.offer.as_ref().and_then(|f| serde_json::to_string(f).ok()))
                .push_bind(o.urgency)
                .push_bind(o.timezone.clone())
                .push_bind(o.region.clone())
                .push_bind(o.order_id.clone())
                .push_bind(o.incident_id.clone())
                .push_bind(o.offer.as_ref().map(|f| f.code.as_stored().to_owned()))
                .push_bind(o.risk.as_ref().map(|r| r.scores.delay))
                .push_bind(o.risk.as_ref().map(|r| r.scores.churn))
                .push_bind(o.shipment_id.clone());
        });
        if let Some(error) = encode_error {
            return Err(StoreError::Corrupt(format!("outreach content: {error}")));
        }
        q.push(
            " ON CONFLICT (rule_id, entity, customer_id, channel) DO NOTHING \
             RETURNING id, idempotency_key",
        );
        let inserted: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
        ids.extend(
            inserted
                .into_iter()
                .map(|(id, key)| (IdempotencyKey::from_stored(key), id)),
        );
    }
    // Each queued message's risk explanation, beside it rather than in its hot row: the
    // explanation of the first copy of a key, the one the outbox kept.
    let mut unexplained: std::collections::HashMap<&IdempotencyKey, i64> =
        ids.iter().map(|(key, id)| (key, *id)).collect();
    let explained: Vec<(i64, &str)> = changes
        .outreach
        .iter()
        .filter_map(|o| Some((unexplained.remove(&o.key)?, o)))
        .filter_map(|(id, o)| Some((id, o.risk.as_ref()?.explanation.as_str())))
        .collect();
    let queued: HashSet<IdempotencyKey> = ids.into_keys().collect();
    for chunk in explained.chunks(MAX_BINDS / 2) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO outbox_risk (outbox_id, explanation) ");
        q.push_values(chunk, |mut row, (id, explanation)| {
            row.push_bind(*id).push_bind(*explanation);
        });
        q.build().execute(&mut **tx).await?;
    }
    // Supersession: a message just queued about an order cancels the customer's older,
    // pending, lower-priority ones about the same order — one conversation, the most
    // important word. "Older" by row order, which is event order, even within a batch.
    let newer: Vec<&Outreach> = changes
        .outreach
        .iter()
        .filter(|o| o.order_id.is_some() && queued.contains(&o.key))
        .collect();
    for chunk in newer.chunks(MAX_BINDS / 6) {
        // `newer CROSS JOIN outbox` keeps the batch as the outer loop, each probing the
        // outbox by customer; the other order would scan the whole outbox per batch.
        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH newer(customer_id, order_id, priority, rule_id, entity, channel) AS (",
        );
        q.push_values(chunk, |mut row, o| {
            row.push_bind(o.customer_id.as_str().to_owned())
                .push_bind(o.order_id.clone())
                .push_bind(o.priority)
                .push_bind(o.rule_id.clone())
                .push_bind(o.entity.clone())
                .push_bind(o.content.channel().as_str());
        });
        q.push(
            ") SELECT o.id, newer.rule_id FROM newer CROSS JOIN outbox o \
             WHERE o.customer_id = newer.customer_id AND o.order_id = newer.order_id \
             AND o.status = 'pending' AND o.priority < newer.priority \
             AND o.id < (SELECT n.id FROM outbox n WHERE n.rule_id = newer.rule_id \
                 AND n.entity = newer.entity AND n.customer_id = newer.customer_id \
                 AND n.channel = newer.channel)",
        );
        let superseded: Vec<(i64, String)> = q
            .build_query_as()
            .persistent(false)
            .fetch_all(&mut **tx)
            .await?;
        for (id, rule_id) in superseded {
            sqlx::query(
                "UPDATE outbox SET status = 'cancelled', last_error = ?1, \
                 claimed_until = NULL, updated_at = ?2 WHERE id = ?3 AND status = 'pending'",
            )
            .bind(format!("superseded by rule {rule_id}"))
            .bind(now_ms)
            .bind(id)
            .execute(&mut **tx)
            .await?;
            void_code_of(tx, id, now_ms).await?;
        }
    }
    // Codes for the outreach actually queued (the first of a key, as the outbox kept it):
    // a repeat the outbox ignored issues no code. A clash on the random code itself fails
    // the batch, which is retried with fresh codes.
    let mut unclaimed: HashSet<&IdempotencyKey> = queued.iter().collect();
    let offers: Vec<(&Outreach, &Offer)> = changes
        .outreach
        .iter()
        .filter_map(|o| o.offer.as_ref().map(|offer| (o, offer)))
        .filter(|(o, _)| unclaimed.remove(&o.key))
        .collect();
    for chunk in offers.chunks(MAX_BINDS / 7) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO discount_codes (code, idempotency_key, rule_id, customer_id, \
             percent, issued_at, expires_at) ",
        );
        q.push_values(chunk, |mut row, (o, offer)| {
            row.push_bind(offer.code.as_stored().to_owned())
                .push_bind(o.key.as_str().to_owned())
                .push_bind(o.rule_id.clone())
                .push_bind(o.customer_id.as_str().to_owned())
                .push_bind(i64::from(offer.percent))
                .push_bind(now_ms)
                .push_bind(millis(offer.expires_at));
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(queued)
}
