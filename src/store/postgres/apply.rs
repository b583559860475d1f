//! An intake batch's writes on PostgreSQL: each aggregate in one statement, its rows bound as
//! one array per column and unpacked with `UNNEST` — a bind per column, not per value, however
//! large the batch. State upserts, who waits for which item, outreach (a repeat of its unique
//! key is a no-op), supersession and discount codes, in the order `sqlite/apply.rs` writes
//! them; then the retraction of what the batch's events resolved (`retract`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::incidents;
use crate::domain::{region_ancestry, IdempotencyKey, Offer, Outreach};
use crate::policy::retraction::Resolution;
use crate::store::intake::ended_waits;
use crate::store::{millis, Changes, Retracted, StoreError};

/// One column of `rows`.
fn column<T, U>(rows: &[T], value: impl Fn(&T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

/// The last of the rows with each key, in first-seen order: an upsert may not touch one row
/// twice in a statement, and the last change of a batch is the one that stands.
fn last_per_key<T: Clone, K: Hash + Eq>(rows: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut kept: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows {
        match at.get(&key(row)) {
            Some(&i) => kept[i] = row.clone(),
            None => {
                at.insert(key(row), kept.len());
                kept.push(row.clone());
            }
        }
    }
    kept
}

/// Writes an intake batch's changes (see `IntakeTx::apply`).
pub(super) async fn apply(
    tx: &mut Transaction<'static, Postgres>,
    changes: &Changes,
    now: DateTime<Utc>,
) -> Result<HashSet<IdempotencyKey>, StoreError> {
    let now_ms = millis(now);
    incidents::insert_fanouts(tx, &changes.fanouts, now).await?;
    upsert_state(tx, changes, now_ms).await?;
    record_history(tx, changes).await?;
    write_stock_waits(tx, changes).await?;
    let queued = queue_outreach(tx, &changes.outreach, now_ms).await?;
    supersede(tx, &changes.outreach, &queued, now_ms).await?;
    issue_codes(tx, &changes.outreach, &queued, now_ms).await?;
    Ok(queued)
}

/// Cancels the waiting messages about problems that ended (see `IntakeTx::retract`) and voids
/// their unused codes, one statement per resolution: the waiting rows are probed by parcel,
/// order or incident (`outbox_pending_by_*`, which hold nothing else), and those an event of
/// the resolution's kinds caused are kept.
pub(super) async fn retract(
    tx: &mut Transaction<'static, Postgres>,
    resolutions: &[Resolution],
    now: DateTime<Utc>,
) -> Result<Vec<Retracted>, StoreError> {
    let mut retracted = Vec::new();
    for resolution in resolutions {
        let column = resolution.about.outbox_column();
        // `column` is one of three fixed names, never input.
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH gone AS ( \
                 UPDATE outbox o SET status = 'cancelled', last_error = 'cancelled: ' || $1, \
                        claimed_until = NULL, updated_at = $2 \
                   FROM events e \
                  WHERE o.status = 'pending' AND o.{column} = ANY($3) \
                    AND e.source = o.event_source AND e.id = o.event_id \
                    AND e.type = ANY($4) \
                 RETURNING o.rule_id, o.channel, o.discount_code), \
             voided AS ( \
                 UPDATE discount_codes SET voided_at = $2 \
                  WHERE code IN (SELECT discount_code FROM gone) \
                    AND redeemed_at IS NULL AND voided_at IS NULL) \
             SELECT rule_id, channel FROM gone"
        )))
        .bind(resolution.reason)
        .bind(millis(now))
        .bind(&resolution.ids)
        .bind(resolution.event_types)
        .fetch_all(&mut **tx)
        .await?;
        retracted.extend(
            rows.into_iter()
                .map(|(rule_id, channel)| Retracted { rule_id, channel }),
        );
    }
    Ok(retracted)
}

/// Who starts waiting for an item, and whose waits are over, as the batch left them: ended
/// waits go after the new ones, so an item restocked in the batch that backordered it ends
/// that wait too.
async fn write_stock_waits(
    tx: &mut Transaction<'static, Postgres>,
    changes: &Changes,
) -> Result<(), StoreError> {
    let waits = &changes.stock_waits;
    if !waits.is_empty() {
        sqlx::query(
            "INSERT INTO stock_waits (sku, customer_id, order_id, since) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(column(waits, |w| w.sku.clone()))
        .bind(column(waits, |w| w.customer_id.as_str().to_owned()))
        .bind(column(waits, |w| {
            w.order_id.as_ref().map_or("", |o| o.as_str()).to_owned()
        }))
        .bind(column(waits, |w| millis(w.since)))
        .execute(&mut **tx)
        .await?;
    }
    // One statement for every order whose waits are over (each parcel created names one:
    // thousands a batch), one for every item back in stock; `order_id <> ''` lets the first
    // use `stock_waits_by_order`, which holds only the waits of orders.
    let (orders, skus) = ended_waits(&changes.waits_ended);
    for (statement, ids) in [
        (
            "DELETE FROM stock_waits WHERE order_id <> '' AND order_id = ANY($1)",
            orders,
        ),
        ("DELETE FROM stock_waits WHERE sku = ANY($1)", skus),
    ] {
        if !ids.is_empty() {
            sqlx::query(statement).bind(ids).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Customers, opt-outs, orders, shipments and incidents as the batch left them.
async fn upsert_state(
    tx: &mut Transaction<'static, Postgres>,
    changes: &Changes,
    now_ms: i64,
) -> Result<(), StoreError> {
    let customers = last_per_key(&changes.customers, |(id, _)| id.clone());
    if !customers.is_empty() {
        let field = |doc: &crate::domain::CustomerDoc, name: &str| {
            doc.as_object()
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        // A region's ancestry travels as a JSON array per customer (arrays of arrays do not
        // unnest row by row) and becomes the TEXT[] the audience index reads.
        sqlx::query(
            "INSERT INTO customers (id, doc, region, regions, segment, updated_at) \
             SELECT id, doc, region, \
                    CASE WHEN ancestry IS NULL THEN NULL \
                         ELSE ARRAY(SELECT json_array_elements_text(ancestry::json)) END, \
                    segment, $6 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                  AS c(id, doc, region, ancestry, segment) \
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, region = excluded.region, \
             regions = excluded.regions, segment = excluded.segment, \
             updated_at = excluded.updated_at",
        )
        .bind(column(&customers, |(id, _)| id.as_str().to_owned()))
        .bind(column(&customers, |(_, doc)| doc.as_value().to_string()))
        .bind(column(&customers, |(_, doc)| field(doc, "region")))
        .bind(column(&customers, |(_, doc)| {
            field(doc, "region").map(|r| {
                serde_json::Value::from(region_ancestry(&r).collect::<Vec<_>>()).to_string()
            })
        }))
        .bind(column(&customers, |(_, doc)| field(doc, "segment")))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    let opt_outs = last_per_key(&changes.opt_outs, |o| (o.customer_id.clone(), o.channel));
    if !opt_outs.is_empty() {
        // The pipeline already merged scopes with what was stored.
        sqlx::query(
            "INSERT INTO opt_outs (customer_id, channel, scope, at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) \
             ON CONFLICT (customer_id, channel) DO UPDATE SET scope = excluded.scope, \
             at = excluded.at",
        )
        .bind(column(&opt_outs, |o| o.customer_id.as_str().to_owned()))
        .bind(column(&opt_outs, |o| o.channel.as_str()))
        .bind(column(&opt_outs, |o| o.scope.as_str()))
        .bind(column(&opt_outs, |o| millis(o.at)))
        .execute(&mut **tx)
        .await?;
    }
    let orders = last_per_key(&changes.orders, |o| o.id.clone());
    if !orders.is_empty() {
        sqlx::query(
            "INSERT INTO orders (id, customer_id, status, total_minor, currency, promised_by, \
             placed_at, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
                                  $6::int8[], $7::int8[], $8::int8[]) \
             ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, \
             status = excluded.status, total_minor = excluded.total_minor, \
             currency = excluded.currency, promised_by = excluded.promised_by, \
             placed_at = excluded.placed_at, updated_at = excluded.updated_at",
        )
        .bind(column(&orders, |o| o.id.as_str().to_owned()))
        .bind(column(&orders, |o| {
            o.customer_id.as_ref().map(|c| c.as_str().to_owned())
        }))
        .bind(column(&orders, |o| o.status.as_str()))
        .bind(column(&orders, |o| o.total.as_ref().map(|m| m.minor)))
        .bind(column(&orders, |o| {
            o.total.as_ref().map(|m| m.currency.clone())
        }))
        .bind(column(&orders, |o| o.promised_by.map(millis)))
        .bind(column(&orders, |o| o.placed_at.map(millis)))
        .bind(column(&orders, |o| millis(o.updated_at)))
        .execute(&mut **tx)
        .await?;
    }
    let shipments = last_per_key(&changes.shipments, |s| s.id.clone());
    if !shipments.is_empty() {
        sqlx::query(
            "INSERT INTO shipments (id, order_id, customer_id, carrier, tracking_number, \
             tracking_url, promised_by, new_eta, status, region, last_scan_at, delivered_at, \
             exception_kind, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[], \
                                  $11::int8[], $12::int8[], $13::text[], $14::int8[]) \
             ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, \
             customer_id = excluded.customer_id, carrier = excluded.carrier, \
             tracking_number = excluded.tracking_number, tracking_url = excluded.tracking_url, \
             promised_by = excluded.promised_by, new_eta = excluded.new_eta, \
             status = excluded.status, region = excluded.region, \
             last_scan_at = excluded.last_scan_at, delivered_at = excluded.delivered_at, \
             exception_kind = excluded.exception_kind, updated_at = excluded.updated_at",
        )
        .bind(column(&shipments, |s| s.id.as_str().to_owned()))
        .bind(column(&shipments, |s| {
            s.order_id.as_ref().map(|o| o.as_str().to_owned())
        }))
        .bind(column(&shipments, |s| {
            s.customer_id.as_ref().map(|c| c.as_str().to_owned())
        }))
        .bind(column(&shipments, |s| s.carrier.clone()))
        .bind(column(&shipments, |s| s.tracking_number.clone()))
        .bind(column(&shipments, |s| s.tracking_url.clone()))
        .bind(column(&shipments, |s| s.promised_by.map(millis)))
        .bind(column(&shipments, |s| s.new_eta.map(millis)))
        .bind(column(&shipments, |s| s.status.as_str()))
        .bind(column(&shipments, |s| s.region.clone()))
        .bind(column(&shipments, |s| s.last_scan_at.map(millis)))
        .bind(column(&shipments, |s| s.delivered_at.map(millis)))
        .bind(column(&shipments, |s| s.exception_kind.clone()))
        .bind(column(&shipments, |s| millis(s.updated_at)))
        .execute(&mut **tx)
        .await?;
    }
    let incidents = last_per_key(&changes.incidents, |i| i.id.clone());
    if !incidents.is_empty() {
        sqlx::query(
            "INSERT INTO incidents (id, title, severity, status, affected, started_at, \
             resolved_at, updated_at, peak_severity) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::int8[], $7::int8[], $8::int8[], $9::text[]) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
             severity = excluded.severity, status = excluded.status, \
             affected = excluded.affected, started_at = excluded.started_at, \
             resolved_at = excluded.resolved_at, updated_at = excluded.updated_at, \
             peak_severity = excluded.peak_severity",
        )
        .bind(column(&incidents, |i| i.id.as_str().to_owned()))
        .bind(column(&incidents, |i| i.title.clone()))
        .bind(column(&incidents, |i| i.severity.clone()))
        .bind(column(&incidents, |i| i.status.as_str()))
        .bind(column(&incidents, |i| i.affected.to_string()))
        .bind(column(&incidents, |i| i.started_at.map(millis)))
        .bind(column(&incidents, |i| i.resolved_at.map(millis)))
        .bind(column(&incidents, |i| millis(i.updated_at)))
        .bind(column(&incidents, |i| i.peak_severity.clone()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// What the risk features read later: experiences, settled deliveries, external scores.
async fn record_history(
    tx: &mut Transaction<'static, Postgres>,
    changes: &Changes,
) -> Result<(), StoreError> {
    let experiences = &changes.experiences;
    if !experiences.is_empty() {
        sqlx::query(
            "INSERT INTO customer_experiences (customer_id, kind, entity, at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(column(experiences, |(c, _)| c.as_str().to_owned()))
        .bind(column(experiences, |(_, e)| e.kind.as_str()))
        .bind(column(experiences, |(_, e)| e.entity.clone()))
        .bind(column(experiences, |(_, e)| millis(e.at)))
        .execute(&mut **tx)
        .await?;
    }
    // One row per (lane, day): deliveries on one day in a batch add up first.
    let mut settled: BTreeMap<(&str, &str, i64), (i64, i64)> = BTreeMap::new();
    for (dimension, key, day, late) in &changes.settled {
        let count = settled.entry((dimension.as_str(), key, *day)).or_default();
        count.0 += 1;
        count.1 += i64::from(*late);
    }
    let settled: Vec<_> = settled.into_iter().collect();
    if !settled.is_empty() {
        sqlx::query(
            "INSERT INTO shipment_outcome_days (dimension, key, day, settled, late) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) \
             ON CONFLICT (dimension, key, day) DO UPDATE SET \
             settled = shipment_outcome_days.settled + excluded.settled, \
             late = shipment_outcome_days.late + excluded.late",
        )
        .bind(column(&settled, |((d, _, _), _)| *d))
        .bind(column(&settled, |((_, k, _), _)| k.to_string()))
        .bind(column(&settled, |((_, _, day), _)| *day))
        .bind(column(&settled, |(_, (n, _))| *n))
        .bind(column(&settled, |(_, (_, late))| *late))
        .execute(&mut **tx)
        .await?;
    }
    let scores = &changes.risk_scores;
    if !scores.is_empty() {
        sqlx::query(
            "INSERT INTO risk_scores (event_source, event_id, customer_id, shipment_id, \
             order_id, delay, churn, model, scored_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::float8[], $7::float8[], $8::text[], $9::int8[]) \
             ON CONFLICT (event_source, event_id) DO NOTHING",
        )
        .bind(column(scores, |r| r.event.source.clone()))
        .bind(column(scores, |r| r.event.id.clone()))
        .bind(column(scores, |r| {
            r.score.customer_id.as_ref().map(|c| c.as_str().to_owned())
        }))
        .bind(column(scores, |r| {
            r.score.shipment_id.as_ref().map(|s| s.as_str().to_owned())
        }))
        .bind(column(scores, |r| {
            r.score.order_id.as_ref().map(|o| o.as_str().to_owned())
        }))
        .bind(column(scores, |r| r.score.delay))
        .bind(column(scores, |r| r.score.churn))
        .bind(column(scores, |r| r.score.model.clone()))
        .bind(column(scores, |r| millis(r.score.scored_at)))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Queues the batch's outreach; returns the keys actually inserted (a repeat is a no-op).
async fn queue_outreach(
    tx: &mut Transaction<'static, Postgres>,
    outreach: &[Outreach],
    now_ms: i64,
) -> Result<HashSet<IdempotencyKey>, StoreError> {
    if outreach.is_empty() {
        return Ok(HashSet::new());
    }
    let mut contents = Vec::with_capacity(outreach.len());
    for o in outreach {
        contents.push(
            serde_json::to_string(&o.content)
                .map_err(|e| StoreError::Corrupt(format!("outreach content: {e}")))?,
        );
    }
    // The risk explanation goes beside the message (`outbox_risk`), not in its hot row: the
    // rows the insert kept are joined back to the input by key, the first copy of a key being
    // the one kept.
    let inserted: Vec<String> = sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[], \
                     $12::text[], $13::int8[], $14::text[], $15::text[], $16::float8[], \
                     $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], \
                     $22::float8[], $23::float8[], $24::int8[], $26::text[]) \
              AS o(k, r, c, e, ch, cat, p, fb, es, ei, l, ct, nb, of, rk, u, tz, rg, oi, ii, \
                   dc, ds, cs, n, si)), \
         queued AS ( \
             INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, \
                    category, priority, fallback, event_source, event_id, locale, content, \
                    status, attempts, next_attempt_at, created_at, updated_at, offer, urgency, \
                    timezone, region, order_id, incident_id, discount_code, delay_score, \
                    churn_score, shipment_id) \
             SELECT k, r, c, e, ch, cat, p, fb, es, ei, l, ct, 'pending', 0, nb, $25, $25, of, \
                    u, tz, rg, oi, ii, dc, ds, cs, si \
               FROM input ORDER BY n \
             ON CONFLICT (rule_id, entity, customer_id, channel) DO NOTHING \
             RETURNING id, idempotency_key), \
         kept AS ( \
             SELECT DISTINCT ON (q.id) q.id, i.rk FROM queued q \
               JOIN input i ON i.k = q.idempotency_key ORDER BY q.id, i.n), \
         explained AS ( \
             INSERT INTO outbox_risk (outbox_id, explanation) \
             SELECT id, rk FROM kept WHERE rk IS NOT NULL) \
         SELECT idempotency_key FROM queued",
    )
    .bind(column(outreach, |o| o.key.as_str().to_owned()))
    .bind(column(outreach, |o| o.rule_id.clone()))
    .bind(column(outreach, |o| o.customer_id.as_str().to_owned()))
    .bind(column(outreach, |o| o.entity.clone()))
    .bind(column(outreach, |o| o.content.channel().as_str()))
    .bind(column(outreach, |o| o.category.as_str()))
    .bind(column(outreach, |o| i64::from(o.priority)))
    .bind(column(outreach, |o| {
        let fallback: Vec<&str> = o.fallback.iter().map(|c| c.as_str()).collect();
        serde_json::json!(fallback).to_string()
    }))
    .bind(column(outreach, |o| o.event.source.clone()))
    .bind(column(outreach, |o| o.event.id.clone()))
    .bind(column(outreach, |o| o.locale.clone()))
    .bind(contents)
    .bind(column(outreach, |o| o.not_before.map_or(now_ms, millis)))
    .bind(column(outreach, |o| {
        o.offer.as_ref().and_then(|f| serde_json::to_string(f).ok())
    }))
    .bind(column(outreach, |o| {
        o.risk.as_ref().map(|r| r.explanation.clone())
    }))
    .bind(column(outreach, |o| o.urgency))
    .bind(column(outreach, |o| o.timezone.clone()))
    .bind(column(outreach, |o| o.region.clone()))
    .bind(column(outreach, |o| o.order_id.clone()))
    .bind(column(outreach, |o| o.incident_id.clone()))
    .bind(column(outreach, |o| {
        o.offer.as_ref().map(|f| f.code.as_stored().to_owned())
    }))
    .bind(column(outreach, |o| {
        o.risk.as_ref().map(|r| r.scores.delay)
    }))
    .bind(column(outreach, |o| {
        o.risk.as_ref().map(|r| r.scores.churn)
    }))
    // Row order is queue order: ids follow the batch, as the dispatcher and supersession
    // expect.
    .bind((0..outreach.len() as i64).collect::<Vec<_>>())
    .bind(now_ms)
    .bind(column(outreach, |o| o.shipment_id.clone()))
    .fetch_all(&mut **tx)
    .await?;
    Ok(inserted
        .into_iter()
        .map(IdempotencyKey::from_stored)
        .collect())
}

/// A message just queued about an order cancels the customer's older, pending,
/// lower-priority ones about the same order — one conversation, the most important word — and
/// voids their unused codes. The batch is the outer loop (`LATERAL`), each row probing the
/// pending messages by customer and order (`outbox_pending_by_order`, which holds nothing
/// else). The updates go by primary key, and only when something was superseded.
async fn supersede(
    tx: &mut Transaction<'static, Postgres>,
    outreach: &[Outreach],
    queued: &HashSet<IdempotencyKey>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let newer: Vec<&Outreach> = outreach
        .iter()
        .filter(|o| o.order_id.is_some() && queued.contains(&o.key))
        .collect();
    if newer.is_empty() {
        return Ok(());
    }
    let older: Vec<(i64, String)> = sqlx::query_as(
        "SELECT o.id, n.rule_id \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[]) \
              AS n(customer_id, order_id, priority, rule_id, entity, channel) \
         CROSS JOIN LATERAL ( \
             SELECT o.id FROM outbox o \
             WHERE o.customer_id = n.customer_id AND o.order_id = n.order_id \
               AND o.status = 'pending' AND o.priority < n.priority \
               AND o.id < (SELECT m.id FROM outbox m WHERE m.rule_id = n.rule_id \
                   AND m.entity = n.entity AND m.customer_id = n.customer_id \
                   AND m.channel = n.channel)) o",
    )
    .bind(column(&newer, |o| o.customer_id.as_str().to_owned()))
    .bind(column(&newer, |o| o.order_id.clone()))
    .bind(column(&newer, |o| i64::from(o.priority)))
    .bind(column(&newer, |o| o.rule_id.clone()))
    .bind(column(&newer, |o| o.entity.clone()))
    .bind(column(&newer, |o| o.content.channel().as_str()))
    .fetch_all(&mut **tx)
    .await?;
    if older.is_empty() {
        return Ok(());
    }
    let codes: Vec<Option<String>> = sqlx::query_scalar(
        "UPDATE outbox SET status = 'cancelled', last_error = 'superseded by rule ' || s.rule_id, \
                claimed_until = NULL, updated_at = $3 \
         FROM UNNEST($1::int8[], $2::text[]) AS s(id, rule_id) \
         WHERE outbox.id = s.id AND outbox.status = 'pending' \
         RETURNING outbox.discount_code",
    )
    .bind(column(&older, |(id, _)| *id))
    .bind(column(&older, |(_, rule)| rule.clone()))
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    let codes: Vec<String> = codes.into_iter().flatten().collect();
    if !codes.is_empty() {
        sqlx::query(
            "UPDATE discount_codes SET voided_at = $1 \
             WHERE code = ANY($2) AND redeemed_at IS NULL AND voided_at IS NULL",
        )
        .bind(now_ms)
        .bind(codes)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Codes for the outreach actually queued (the first of a key, as the outbox kept it): a
/// repeat the outbox ignored issues no code. A clash on the random code itself fails the
/// batch, which is retried with fresh codes.
async fn issue_codes(
    tx: &mut Transaction<'static, Postgres>,
    outreach: &[Outreach],
    queued: &HashSet<IdempotencyKey>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut unclaimed: HashSet<&IdempotencyKey> = queued.iter().collect();
    let offers: Vec<(&Outreach, &Offer)> = outreach
        .iter()
        .filter_map(|o| o.offer.as_ref().map(|offer| (o, offer)))
        .filter(|(o, _)| unclaimed.remove(&o.key))
        .collect();
    if offers.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO discount_codes (code, idempotency_key, rule_id, customer_id, percent, \
         issued_at, expires_at) \
         SELECT code, k, r, c, p, $6, x \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $7::int8[]) \
              AS d(code, k, r, c, p, x)",
    )
    .bind(column(&offers, |(_, f)| f.code.as_stored().to_owned()))
    .bind(column(&offers, |(o, _)| o.key.as_str().to_owned()))
    .bind(column(&offers, |(o, _)| o.rule_id.clone()))
    .bind(column(&offers, |(o, _)| o.customer_id.as_str().to_owned()))
    .bind(column(&offers, |(_, f)| i64::from(f.percent)))
    .bind(now_ms)
    .bind(column(&offers, |(_, f)| millis(f.expires_at)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
