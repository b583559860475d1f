//! An intake batch's reads: the customers, orders, shipments and incidents its events touch,
//! and the risk history of those it may score, from the oldest time any feature window reaches.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::{
    customer_doc, incident_from_row, opt_out_from_row, opt_time, order_from_row, parse_customer_id,
    parse_entity_id, push_pairs, select_in, select_in_where, shipment_from_row, INCIDENT_COLUMNS,
    ORDER_COLUMNS, SHIPMENT_COLUMNS,
};
use super::MAX_BINDS;
use crate::domain::{
    day_number, CustomerId, DayCount, Dimension, EntityId, Experience, ExperienceKind,
    ExternalScore, History, OptOuts, PastOrder, PastOutreach, EXPERIENCE_DAYS, LATE_SHARE_DAYS,
};
use crate::store::{from_millis, millis, Refs, Snapshot, StoreError};

/// Loads the state an intake batch touches (see `IntakeTx::load`).
pub(super) async fn load(
    tx: &mut Transaction<'static, Sqlite>,
    refs: &Refs,
) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let shipment_ids: Vec<&str> = refs.shipments.iter().map(EntityId::as_str).collect();
    for row in select_in(tx, SHIPMENT_COLUMNS, "shipments", "id", &shipment_ids).await? {
        let shipment = shipment_from_row(&row)?;
        snapshot.shipments.insert(shipment.id.clone(), shipment);
    }
    let order_ids: Vec<&str> = refs.orders.iter().map(EntityId::as_str).collect();
    for row in select_in(tx, ORDER_COLUMNS, "orders", "id", &order_ids).await? {
        let order = order_from_row(&row)?;
        snapshot.orders.insert(order.id.clone(), order);
    }
    let incident_ids: Vec<&str> = refs.incidents.iter().map(EntityId::as_str).collect();
    for row in select_in(tx, INCIDENT_COLUMNS, "incidents", "id", &incident_ids).await? {
        let incident = incident_from_row(&row)?;
        snapshot.incidents.insert(incident.id.clone(), incident);
    }
    // Every open incident too: it holds marketing back for the customers it affects
    // (`policy::incidents`). Few are open at once; the partial index finds them.
    for row in sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status = 'open'"
    )))
    .fetch_all(&mut **tx)
    .await?
    {
        let incident = incident_from_row(&row)?;
        snapshot
            .incidents
            .entry(incident.id.clone())
            .or_insert(incident);
    }

    // Shipment and order events without a customer still reach the shipment's customer.
    let mut customer_ids: Vec<&str> = refs.customers.iter().map(CustomerId::as_str).collect();
    customer_ids.extend(
        snapshot
            .shipments
            .values()
            .filter_map(|s| s.customer_id.as_ref())
            .chain(
                snapshot
                    .orders
                    .values()
                    .filter_map(|o| o.customer_id.as_ref()),
            )
            .map(CustomerId::as_str),
    );
    customer_ids.sort_unstable();
    customer_ids.dedup();
    for row in select_in(tx, "id, doc", "customers", "id", &customer_ids).await? {
        let id = parse_customer_id(row.try_get("id")?)?;
        let doc: String = row.try_get("doc")?;
        let doc = customer_doc(&doc, id.as_str())?;
        snapshot.customers.insert(id, doc);
    }
    // One read serves both the opt-outs and, with their times, the risk history.
    let mut opt_out_times: HashMap<CustomerId, Vec<DateTime<Utc>>> = HashMap::new();
    for row in select_in(
        tx,
        "customer_id, channel, scope, at",
        "opt_outs",
        "customer_id",
        &customer_ids,
    )
    .await?
    {
        let id = parse_customer_id(row.try_get("customer_id")?)?;
        let (channel, scope) = opt_out_from_row(&row)?;
        opt_out_times
            .entry(id.clone())
            .or_default()
            .push(from_millis(row.try_get("at")?)?);
        snapshot
            .opt_outs
            .entry(id)
            .or_insert_with(OptOuts::default)
            .record(channel, scope);
    }
    snapshot.history = load_history(tx, refs, &snapshot).await?;
    snapshot.history.opt_outs = opt_out_times;
    Ok(snapshot)
}

/// The risk history of the customers, carriers and regions the batch may score, from the
/// oldest time any feature window of the batch reaches.
async fn load_history(
    tx: &mut Transaction<'static, Sqlite>,
    refs: &Refs,
    snapshot: &Snapshot,
) -> Result<History, StoreError> {
    let mut history = History::default();
    let (Some(earliest), Some(latest)) = (refs.earliest, refs.latest) else {
        return Ok(history);
    };
    let scored_shipments = refs
        .scored_shipments
        .iter()
        .filter_map(|id| snapshot.shipments.get(id));
    let mut customers: Vec<&str> = refs
        .scored_customers
        .iter()
        .map(CustomerId::as_str)
        .collect();
    let mut lanes: Vec<(Dimension, String)> = refs.lanes.iter().cloned().collect();
    for shipment in scored_shipments {
        customers.extend(shipment.customer_id.as_ref().map(CustomerId::as_str));
        lanes.extend(shipment.carrier.clone().map(|c| (Dimension::Carrier, c)));
        lanes.extend(shipment.region.clone().map(|r| (Dimension::Region, r)));
    }
    customers.sort_unstable();
    customers.dedup();
    lanes.sort();
    lanes.dedup();
    if customers.is_empty() {
        return Ok(history);
    }

    let first_day = day_number(earliest) - LATE_SHARE_DAYS;
    for chunk in lanes.chunks(MAX_BINDS / 3) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT dimension, key, day, settled, late FROM shipment_outcome_days \
             WHERE day >= ",
        );
        q.push_bind(first_day)
            .push(" AND (dimension, key) IN (VALUES ");
        push_pairs(
            &mut q,
            chunk
                .iter()
                .map(|(dimension, key)| (dimension.as_str().to_owned(), key.clone())),
        );
        for row in q.build().persistent(false).fetch_all(&mut **tx).await? {
            let dimension: String = row.try_get("dimension")?;
            let dimension = Dimension::parse(&dimension)
                .ok_or_else(|| StoreError::Corrupt(format!("lane dimension {dimension:?}")))?;
            history
                .late_days
                .entry((dimension, row.try_get("key")?))
                .or_default()
                .insert(
                    row.try_get("day")?,
                    DayCount {
                        settled: u32::try_from(row.try_get::<i64, _>("settled")?)
                            .unwrap_or(u32::MAX),
                        late: u32::try_from(row.try_get::<i64, _>("late")?).unwrap_or(u32::MAX),
                    },
                );
        }
    }

    // Nothing older than the longest window (90 days) before the batch's earliest decision.
    let since = millis(earliest - chrono::Duration::days(EXPERIENCE_DAYS));
    for row in select_in_where(
        tx,
        "customer_id, kind, entity, at",
        "customer_experiences",
        &format!("at >= {since} AND"),
        "customer_id",
        &customers,
    )
    .await?
    {
        let kind: String = row.try_get("kind")?;
        history.record_experience(
            &parse_customer_id(row.try_get("customer_id")?)?,
            Experience {
                kind: ExperienceKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("experience kind {kind:?}")))?,
                entity: row.try_get("entity")?,
                at: from_millis(row.try_get("at")?)?,
            },
        );
    }
    for row in select_in(tx, ORDER_COLUMNS, "orders", "customer_id", &customers).await? {
        let order = order_from_row(&row)?;
        if let Some(customer) = order.customer_id.clone() {
            history.record_order(&customer, PastOrder::from_order(&order));
        }
    }
    // The last message before the batch's latest decision, per customer: a customer's
    // outbox grows with every outreach, and only the newest one is a feature.
    for chunk in customers.chunks(MAX_BINDS - 1) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT o.customer_id, o.created_at, o.status, o.updated_at, d.redeemed_at \
             FROM outbox o LEFT JOIN discount_codes d \
               ON d.code = o.discount_code \
             WHERE o.id IN (SELECT (SELECT id FROM outbox i WHERE i.customer_id = c.value \
               AND i.created_at < ",
        );
        q.push_bind(millis(latest))
            .push(" ORDER BY i.created_at DESC LIMIT 1) FROM json_each(")
            .push_bind(serde_json::json!(chunk).to_string())
            .push(") c)");
        for row in q.build().persistent(false).fetch_all(&mut **tx).await? {
            let customer = parse_customer_id(row.try_get("customer_id")?)?;
            let failed = row.try_get::<String, _>("status")? == "failed";
            history
                .outreach
                .entry(customer)
                .or_default()
                .push(PastOutreach {
                    created_at: from_millis(row.try_get("created_at")?)?,
                    failed_at: if failed {
                        Some(from_millis(row.try_get("updated_at")?)?)
                    } else {
                        None
                    },
                    redeemed_at: opt_time(&row, "redeemed_at")?,
                });
        }
    }

    if let Some(since) = refs.marketing_since {
        for row in select_in_where(
            tx,
            "customer_id, created_at",
            "outbox",
            &format!(
                "created_at >= {} AND (category = 'marketing' OR offer IS NOT NULL) \
                 AND status NOT IN ('cancelled', 'failed') AND",
                millis(since)
            ),
            "customer_id",
            &customers,
        )
        .await?
        {
            let customer = parse_customer_id(row.try_get("customer_id")?)?;
            history
                .marketing
                .entry(customer)
                .or_default()
                .push(from_millis(row.try_get("created_at")?)?);
        }
    }
    let shipments: Vec<&str> = refs.scored_shipments.iter().map(EntityId::as_str).collect();
    let mut seen = HashSet::new();
    for (column, ids) in [("customer_id", &customers), ("shipment_id", &shipments)] {
        for row in select_in(
            tx,
            "event_source, event_id, customer_id, shipment_id, order_id, delay, churn, model, scored_at",
            "risk_scores",
            column,
            ids,
        )
        .await?
        {
            let key: (String, String) = (row.try_get("event_source")?, row.try_get("event_id")?);
            if !seen.insert(key) {
                continue;
            }
            history.external.push(ExternalScore {
                customer_id: row
                    .try_get::<Option<String>, _>("customer_id")?
                    .map(parse_customer_id)
                    .transpose()?,
                shipment_id: row
                    .try_get::<Option<String>, _>("shipment_id")?
                    .map(parse_entity_id)
                    .transpose()?,
                order_id: row
                    .try_get::<Option<String>, _>("order_id")?
                    .map(parse_entity_id)
                    .transpose()?,
                delay: row.try_get("delay")?,
                churn: row.try_get("churn")?,
                model: row.try_get("model")?,
                scored_at: from_millis(row.try_get("scored_at")?)?,
            });
        }
    }
    Ok(history)
}
