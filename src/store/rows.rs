//! Reading stored rows back into domain types, the same on every backend: each backend's row
//! type answers [`StoredRow`]'s few column reads, and everything above them is written once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::snapshot::{LaneDay, StoredOptOut};
use super::{
    from_millis, AttemptSummary, ClaimedMessage, CurrentState, DecisionNote, DecisionOutcome,
    EventRecord, FanoutClaim, FanoutPhase, FanoutStatus, IssuedCode, MessageCounts,
    OverdueShipment, ReceiptSummary, ReplySummary, ResolvedProblem, RunRecord, ScheduleStatus,
    StalledOrder, StoreError, TimelineEvent, TimelineMessage, WaitingMessage,
};
use crate::domain::{
    About, Category, Channel, CustomerDoc, CustomerId, DayCount, Dimension, DiscountCode, EntityId,
    EventKey, EventType, Experience, ExperienceKind, ExternalScore, FanoutKind, IdempotencyKey,
    Incident, IncidentStatus, Money, OptOutScope, Order, OrderStatus, PastOutreach, RiskScores,
    Shipment, ShipmentStatus, StockWait,
};

/// A row of any backend, read column by column. Times are Unix milliseconds on every backend.
pub(crate) trait StoredRow {
    /// A text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A nullable floating-point column.
    fn opt_real(&self, column: &str) -> Result<Option<f64>, StoreError>;
    /// A true/false column (SQLite stores it as 0 or 1).
    fn flag(&self, column: &str) -> Result<bool, StoreError>;

    /// A time column.
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        from_millis(self.int(column)?)
    }

    /// A nullable time column.
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_int(column)?.map(from_millis).transpose()
    }

    /// A nullable id column.
    fn opt_entity(&self, column: &str) -> Result<Option<EntityId>, StoreError> {
        self.opt_text(column)?.map(parse_entity_id).transpose()
    }

    /// A nullable customer id column.
    fn opt_customer(&self, column: &str) -> Result<Option<CustomerId>, StoreError> {
        self.opt_text(column)?.map(parse_customer_id).transpose()
    }
}

/// The columns [`shipment_from_row`] reads, in the order apply writes them.
pub(crate) const SHIPMENT_COLUMNS: &str = "id, order_id, customer_id, carrier, tracking_number, \
    tracking_url, promised_by, new_eta, status, region, last_scan_at, delivered_at, \
    exception_kind, updated_at";
/// The columns [`order_from_row`] reads.
pub(crate) const ORDER_COLUMNS: &str =
    "id, customer_id, status, total_minor, currency, promised_by, placed_at, updated_at";
/// The columns [`incident_from_row`] reads.
pub(crate) const INCIDENT_COLUMNS: &str =
    "id, title, severity, status, affected, started_at, resolved_at, updated_at, peak_severity";

macro_rules! stored_row {
    ($row:ty) => {
        impl StoredRow for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_real(&self, column: &str) -> Result<Option<f64>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
stored_row!(SqliteRow);
stored_row!(PgRow);

/// A stored customer record (`customers.doc`).
pub(crate) fn customer_doc(raw: &str, id: &str) -> Result<CustomerDoc, StoreError> {
    serde_json::from_str(raw)
        .map(CustomerDoc::from_object)
        .map_err(|e| StoreError::Corrupt(format!("customer {id}: {e}")))
}

/// One `opt_outs` row's channel and scope.
pub(crate) fn opt_out_from_row(row: &impl StoredRow) -> Result<(Channel, OptOutScope), StoreError> {
    let channel = row.text("channel")?;
    let scope = match row.text("scope")?.as_str() {
        "all" => OptOutScope::All,
        _ => OptOutScope::Marketing,
    };
    Ok((
        Channel::from_str(&channel).map_err(StoreError::Corrupt)?,
        scope,
    ))
}

pub(crate) fn parse_customer_id(raw: String) -> Result<CustomerId, StoreError> {
    CustomerId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("customer id {raw:?}: {e}")))
}

pub(crate) fn parse_entity_id(raw: String) -> Result<EntityId, StoreError> {
    EntityId::parse(&raw).map_err(|e| StoreError::Corrupt(format!("id {raw:?}: {e}")))
}

/// The columns [`stock_wait_from_row`] reads.
pub(crate) const STOCK_WAIT_COLUMNS: &str = "sku, customer_id, order_id, since";

/// A stored wait for an item: `order_id` '' is a watch the customer asked for.
pub(crate) fn stock_wait_from_row(row: &impl StoredRow) -> Result<StockWait, StoreError> {
    let order = row.text("order_id")?;
    Ok(StockWait {
        sku: row.text("sku")?,
        customer_id: row
            .opt_customer("customer_id")?
            .ok_or_else(|| StoreError::Corrupt("stock wait without a customer".into()))?,
        order_id: (!order.is_empty())
            .then(|| parse_entity_id(order))
            .transpose()?,
        since: row.time("since")?,
    })
}

pub(crate) fn order_from_row(row: &impl StoredRow) -> Result<Order, StoreError> {
    let status = row.text("status")?;
    let total = match (row.opt_int("total_minor")?, row.opt_text("currency")?) {
        (Some(minor), Some(currency)) => Some(Money { minor, currency }),
        _ => None,
    };
    Ok(Order {
        id: parse_entity_id(row.text("id")?)?,
        customer_id: row.opt_customer("customer_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
        total,
        promised_by: row.opt_time("promised_by")?,
        placed_at: row.opt_time("placed_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn shipment_from_row(row: &impl StoredRow) -> Result<Shipment, StoreError> {
    let status = row.text("status")?;
    Ok(Shipment {
        id: parse_entity_id(row.text("id")?)?,
        order_id: row.opt_entity("order_id")?,
        customer_id: row.opt_customer("customer_id")?,
        carrier: row.opt_text("carrier")?,
        tracking_number: row.opt_text("tracking_number")?,
        tracking_url: row.opt_text("tracking_url")?,
        promised_by: row.opt_time("promised_by")?,
        new_eta: row.opt_time("new_eta")?,
        status: ShipmentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("shipment status {status:?}")))?,
        region: row.opt_text("region")?,
        last_scan_at: row.opt_time("last_scan_at")?,
        delivered_at: row.opt_time("delivered_at")?,
        exception_kind: row.opt_text("exception_kind")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn incident_from_row(row: &impl StoredRow) -> Result<Incident, StoreError> {
    let status = row.text("status")?;
    let affected = row.text("affected")?;
    Ok(Incident {
        id: parse_entity_id(row.text("id")?)?,
        title: row.opt_text("title")?,
        severity: row.opt_text("severity")?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("incident status {status:?}")))?,
        affected: serde_json::from_str(&affected)
            .map_err(|e| StoreError::Corrupt(format!("incident affected: {e}")))?,
        started_at: row.opt_time("started_at")?,
        resolved_at: row.opt_time("resolved_at")?,
        updated_at: row.time("updated_at")?,
        peak_severity: row.opt_text("peak_severity")?,
    })
}

/// A `discount_codes` row.
pub(crate) fn issued_code_from_row(row: &impl StoredRow) -> Result<IssuedCode, StoreError> {
    Ok(IssuedCode {
        code: DiscountCode::from_stored(row.text("code")?),
        percent: percent(row.int("percent")?)?,
        customer_id: row.text("customer_id")?,
        rule_id: row.text("rule_id")?,
        idempotency_key: row.text("idempotency_key")?,
        issued_at: row.time("issued_at")?,
        expires_at: row.time("expires_at")?,
        redeemed_at: row.opt_time("redeemed_at")?,
        redeemed_order_id: row.opt_text("redeemed_order_id")?,
        voided_at: row.opt_time("voided_at")?,
    })
}

/// A stored discount percent.
pub(crate) fn percent(stored: i64) -> Result<u8, StoreError> {
    u8::try_from(stored).map_err(|_| StoreError::Corrupt(format!("discount percent {stored}")))
}

/// A `customers` row's id and record.
pub(crate) fn customer_from_row(
    row: &impl StoredRow,
) -> Result<(CustomerId, CustomerDoc), StoreError> {
    let id = parse_customer_id(row.text("id")?)?;
    let doc = customer_doc(&row.text("doc")?, id.as_str())?;
    Ok((id, doc))
}

/// An `opt_outs` row.
pub(crate) fn stored_opt_out_from_row(row: &impl StoredRow) -> Result<StoredOptOut, StoreError> {
    let (channel, scope) = opt_out_from_row(row)?;
    Ok(StoredOptOut {
        customer: parse_customer_id(row.text("customer_id")?)?,
        channel,
        scope,
        at: row.time("at")?,
    })
}

/// A `shipment_outcome_days` row.
pub(crate) fn lane_day_from_row(row: &impl StoredRow) -> Result<LaneDay, StoreError> {
    let dimension = row.text("dimension")?;
    let dimension = Dimension::parse(&dimension)
        .ok_or_else(|| StoreError::Corrupt(format!("lane dimension {dimension:?}")))?;
    let count = |column| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.int(column)?).unwrap_or(u32::MAX))
    };
    Ok(LaneDay {
        lane: (dimension, row.text("key")?),
        day: row.int("day")?,
        count: DayCount {
            settled: count("settled")?,
            late: count("late")?,
        },
    })
}

/// A `customer_experiences` row.
pub(crate) fn experience_from_row(
    row: &impl StoredRow,
) -> Result<(CustomerId, Experience), StoreError> {
    let kind = row.text("kind")?;
    Ok((
        parse_customer_id(row.text("customer_id")?)?,
        Experience {
            kind: ExperienceKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("experience kind {kind:?}")))?,
            entity: row.text("entity")?,
            at: row.time("at")?,
        },
    ))
}

/// A customer's last message (`customer_id, created_at, status, updated_at, redeemed_at`).
pub(crate) fn past_outreach_from_row(
    row: &impl StoredRow,
) -> Result<(CustomerId, PastOutreach), StoreError> {
    let failed = row.text("status")? == "failed";
    Ok((
        parse_customer_id(row.text("customer_id")?)?,
        PastOutreach {
            created_at: row.time("created_at")?,
            failed_at: if failed {
                Some(row.time("updated_at")?)
            } else {
                None
            },
            redeemed_at: row.opt_time("redeemed_at")?,
        },
    ))
}

/// `(customer_id, shared)`: how many experiences every decision of a batch counts.
pub(crate) fn shared_count_from_row(
    row: &impl StoredRow,
) -> Result<(CustomerId, usize), StoreError> {
    let shared = row.int("shared")?;
    Ok((
        parse_customer_id(row.text("customer_id")?)?,
        usize::try_from(shared)
            .map_err(|_| StoreError::Corrupt(format!("experience count {shared}")))?,
    ))
}

/// `(customer_id, created_at)` of a marketing message.
pub(crate) fn marketing_from_row(
    row: &impl StoredRow,
) -> Result<(CustomerId, DateTime<Utc>), StoreError> {
    Ok((
        parse_customer_id(row.text("customer_id")?)?,
        row.time("created_at")?,
    ))
}

/// A `risk_scores` row.
pub(crate) fn external_score_from_row(row: &impl StoredRow) -> Result<ExternalScore, StoreError> {
    Ok(ExternalScore {
        customer_id: row.opt_customer("customer_id")?,
        shipment_id: row.opt_entity("shipment_id")?,
        order_id: row.opt_entity("order_id")?,
        delay: row.opt_real("delay")?,
        churn: row.opt_real("churn")?,
        model: row.text("model")?,
        scored_at: row.time("scored_at")?,
    })
}

/// The columns [`external_score_from_row`] reads.
pub(crate) const RISK_SCORE_COLUMNS: &str =
    "event_source, event_id, customer_id, shipment_id, order_id, delay, churn, model, scored_at";

/// An outbox row as a claim returns it (the columns of [`CLAIMED_COLUMNS`]).
pub(crate) fn claimed_from_row(row: &impl StoredRow) -> Result<ClaimedMessage, StoreError> {
    let count = |column| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.int(column)?).unwrap_or(u32::MAX))
    };
    Ok(ClaimedMessage {
        id: row.int("id")?,
        key: IdempotencyKey::from_stored(row.text("idempotency_key")?),
        rule_id: row.text("rule_id")?,
        customer_id: row.text("customer_id")?,
        channel: Channel::from_str(&row.text("channel")?).map_err(StoreError::Corrupt)?,
        content: serde_json::from_str(&row.text("content")?)
            .map_err(|e| StoreError::Corrupt(format!("outbox content: {e}")))?,
        attempt: count("attempts")?,
        ambiguous: row.int("ambiguous")? != 0,
        created_at: row.time("created_at")?,
        channel_attempt: count("channel_attempts")?,
        fallback: parse_channels(&row.text("fallback")?)?,
        category: Category::from_str(&row.text("category")?).map_err(StoreError::Corrupt)?,
        event: EventKey {
            source: row.text("event_source")?,
            id: row.text("event_id")?,
        },
        offer: row
            .opt_text("offer")?
            .map(|o| {
                serde_json::from_str(&o)
                    .map_err(|e| StoreError::Corrupt(format!("outbox offer: {e}")))
            })
            .transpose()?,
        risk: match (row.opt_real("delay_score")?, row.opt_real("churn_score")?) {
            (Some(delay), Some(churn)) => Some(RiskScores { delay, churn }),
            _ => None,
        },
        timezone: row
            .opt_text("timezone")?
            .map(|z| {
                z.parse::<chrono_tz::Tz>()
                    .map_err(|_| StoreError::Corrupt(format!("outbox timezone {z:?}")))
            })
            .transpose()?,
        region: row.opt_text("region")?,
        current: None,
    })
}

/// What a claim returns of each row it takes.
pub(crate) const CLAIMED_COLUMNS: &str = "id, idempotency_key, rule_id, customer_id, channel, \
    content, attempts, ambiguous, created_at, channel_attempts, fallback, event_source, \
    event_id, offer, category, priority, urgency, delay_score, churn_score, timezone, region";

/// `["email","push"]` as stored in `outbox.fallback`.
pub(crate) fn parse_channels(raw: &str) -> Result<Vec<Channel>, StoreError> {
    let names: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("outbox fallback: {e}")))?;
    names
        .iter()
        .map(|n| Channel::from_str(n).map_err(StoreError::Corrupt))
        .collect()
}

/// A pending outbox row, for `schedule list` and the demo.
pub(crate) fn waiting_from_row(row: &impl StoredRow) -> Result<WaitingMessage, StoreError> {
    Ok(WaitingMessage {
        key: IdempotencyKey::from_stored(row.text("idempotency_key")?),
        rule_id: row.text("rule_id")?,
        customer_id: row.text("customer_id")?,
        content: serde_json::from_str(&row.text("content")?)
            .map_err(|e| StoreError::Corrupt(format!("outbox content: {e}")))?,
        due: row.time("next_attempt_at")?,
    })
}

/// How a claimed message's event stands now: `source, id, type, shipment_status,
/// incident_status, order_status, order_shipped`.
pub(crate) fn current_state_from_row(
    row: &impl StoredRow,
) -> Result<(EventKey, CurrentState), StoreError> {
    Ok((
        EventKey {
            source: row.text("source")?,
            id: row.text("id")?,
        },
        CurrentState {
            event_type: row.text("type")?,
            shipment_status: row.opt_text("shipment_status")?,
            incident_status: row.opt_text("incident_status")?,
            order_status: row.opt_text("order_status")?,
            order_shipped: row.flag("order_shipped")?,
        },
    ))
}

/// What [`event_record_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "type, subject, time, customer_id, data, received_at, shipment_id, order_id, incident_id";

/// The stored event `key` (the columns of [`EVENT_COLUMNS`]).
pub(crate) fn event_record_from_row(
    row: &impl StoredRow,
    key: &EventKey,
) -> Result<EventRecord, StoreError> {
    let raw_type = row.text("type")?;
    Ok(EventRecord {
        key: key.clone(),
        event_type: EventType::parse(&raw_type)
            .ok_or_else(|| StoreError::Corrupt(format!("event type {raw_type}")))?,
        subject: row.opt_text("subject")?,
        time: row.opt_time("time")?,
        customer_id: row.opt_customer("customer_id")?,
        data: row.text("data")?,
        received_at: row.time("received_at")?,
        about: About {
            shipment_id: row.opt_entity("shipment_id")?,
            order_id: row.opt_entity("order_id")?,
            incident_id: row.opt_entity("incident_id")?,
        },
    })
}

/// A stored count.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn fanout_kind(raw: &str) -> Result<FanoutKind, StoreError> {
    FanoutKind::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("fan-out kind {raw:?}")))
}

fn fanout_phase(raw: &str) -> Result<FanoutPhase, StoreError> {
    FanoutPhase::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("fan-out phase {raw:?}")))
}

/// What a fan-out claim returns of its row.
pub(crate) const FANOUT_CLAIM_COLUMNS: &str =
    "id, incident_id, event_source, event_id, kind, phase, cursor, exhausted, \
     ranked - customers AS outstanding";

/// A claimed fan-out (the columns of [`FANOUT_CLAIM_COLUMNS`]).
pub(crate) fn fanout_claim_from_row(row: &impl StoredRow) -> Result<FanoutClaim, StoreError> {
    Ok(FanoutClaim {
        id: row.int("id")?,
        incident_id: parse_entity_id(row.text("incident_id")?)?,
        event: EventKey {
            source: row.text("event_source")?,
            id: row.text("event_id")?,
        },
        kind: fanout_kind(&row.text("kind")?)?,
        phase: fanout_phase(&row.text("phase")?)?,
        cursor: row.opt_text("cursor")?,
        exhausted: row.flag("exhausted")?,
        outstanding: count(row.int("outstanding")?),
    })
}

/// What [`fanout_status_from_row`] reads.
pub(crate) const FANOUT_STATUS_COLUMNS: &str = "event_source, event_id, kind, status, phase, \
    ranked, customers, queued, created_at, finished_at, detail";

/// A fan-out as `announce --follow` shows it (its messages counted apart).
pub(crate) fn fanout_status_from_row(row: &impl StoredRow) -> Result<FanoutStatus, StoreError> {
    Ok(FanoutStatus {
        event: EventKey {
            source: row.text("event_source")?,
            id: row.text("event_id")?,
        },
        kind: fanout_kind(&row.text("kind")?)?,
        status: row.text("status")?,
        phase: fanout_phase(&row.text("phase")?)?,
        ranked: count(row.int("ranked")?),
        customers: count(row.int("customers")?),
        queued: count(row.int("queued")?),
        created_at: row.time("created_at")?,
        finished_at: row.opt_time("finished_at")?,
        detail: row.opt_text("detail")?,
        messages: MessageCounts::default(),
    })
}

/// A `schedule_state` row with its lease (`lease_owner`, `lease_until`).
pub(crate) fn schedule_status_from_row(row: &impl StoredRow) -> Result<ScheduleStatus, StoreError> {
    let last_tick = row.int("last_tick")?;
    Ok(ScheduleStatus {
        schedule: row.text("schedule")?,
        last_tick: (last_tick > 0)
            .then(|| from_millis(last_tick))
            .transpose()?,
        last_success_at: row.opt_time("last_success_at")?,
        last_error: row.opt_text("last_error")?,
        lease: match (row.opt_text("lease_owner")?, row.opt_time("lease_until")?) {
            (Some(owner), Some(until)) => Some((owner, until)),
            _ => None,
        },
    })
}

/// A `schedule_runs` row.
pub(crate) fn run_from_row(row: &impl StoredRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        tick: row.time("tick")?,
        owner: row.text("owner")?,
        started_at: row.time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        found: count(row.int("found")?),
        emitted: count(row.int("emitted")?),
        error: row.opt_text("error")?,
    })
}

/// A parcel past its promise, as the overdue sweep reads it.
pub(crate) fn overdue_from_row(row: &impl StoredRow) -> Result<OverdueShipment, StoreError> {
    Ok(OverdueShipment {
        shipment_id: row.text("id")?,
        order_id: row.text("order_id")?,
        customer_id: row.text("customer_id")?,
        carrier: row.opt_text("carrier")?,
        due: row.time("due")?,
        promised_by: row.opt_time("promised_by")?,
        last_scan_at: row.opt_time("last_scan_at")?,
        tracking_url: row.opt_text("tracking_url")?,
        status: row.text("status")?,
    })
}

/// An order with no parcel after the wait, read as any order is (`order_from_row`).
pub(crate) fn stalled_from_row(row: &impl StoredRow) -> Result<StalledOrder, StoreError> {
    let order = order_from_row(row)?;
    let missing =
        |what: &str| StoreError::Corrupt(format!("stalled order {} has no {what}", order.id));
    Ok(StalledOrder {
        customer_id: order
            .customer_id
            .as_ref()
            .ok_or_else(|| missing("customer"))?
            .as_str()
            .to_owned(),
        placed_at: order.placed_at.ok_or_else(|| missing("placement time"))?,
        promised_by: order.promised_by,
        total: order.total.clone(),
        order_id: order.id.as_str().to_owned(),
    })
}

/// A delivered order the customer was told about trouble with (`had_exception`: 0 or 1).
pub(crate) fn resolved_from_row(row: &impl StoredRow) -> Result<ResolvedProblem, StoreError> {
    Ok(ResolvedProblem {
        customer_id: row.text("customer_id")?,
        order_id: row.text("order_id")?,
        shipment_id: row.text("id")?,
        resolved_at: row.time("delivered_at")?,
        about: if row.int("had_exception")? == 1 {
            "exception"
        } else {
            "delay"
        },
    })
}

/// An outbox row on a customer's timeline (its attempts read apart).
pub(crate) fn timeline_message_from_row(
    row: &impl StoredRow,
) -> Result<TimelineMessage, StoreError> {
    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        row.opt_text(column)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("outbox: {e}")))
            })
            .transpose()
    };
    Ok(TimelineMessage {
        key: IdempotencyKey::from_stored(row.text("idempotency_key")?),
        rule_id: row.text("rule_id")?,
        channel: Channel::from_str(&row.text("channel")?).map_err(StoreError::Corrupt)?,
        status: row.text("status")?,
        event: EventKey {
            source: row.text("event_source")?,
            id: row.text("event_id")?,
        },
        created_at: row.time("created_at")?,
        next_attempt_at: row.time("next_attempt_at")?,
        sent_at: row.opt_time("sent_at")?,
        content: json("content")?.unwrap_or_default(),
        offer: json("offer")?,
        risk: json("risk")?,
        last_error: row.opt_text("last_error")?,
        attempts: Vec::new(),
        receipts: Vec::new(),
    })
}

/// An `attempts` row as the timeline shows it.
pub(crate) fn attempt_summary_from_row(row: &impl StoredRow) -> Result<AttemptSummary, StoreError> {
    Ok(AttemptSummary {
        attempt: u32::try_from(row.int("attempt")?).unwrap_or(u32::MAX),
        gateway: row.text("gateway")?,
        at: row.time("started_at")?,
        outcome: row.text("outcome")?,
        error: row.opt_text("error")?,
        delivery: row.opt_text("delivery")?,
        delivery_at: row.opt_time("delivery_at")?,
        delivery_error: row.opt_text("delivery_error")?,
    })
}

/// A `receipts` row.
pub(crate) fn receipt_summary_from_row(row: &impl StoredRow) -> Result<ReceiptSummary, StoreError> {
    Ok(ReceiptSummary {
        attempt: u32::try_from(row.int("attempt")?).unwrap_or(u32::MAX),
        status: row.text("status")?,
        error: row.opt_text("error")?,
        at: row.time("received_at")?,
        applied: row.int("applied")? != 0,
    })
}

/// A `replies` row.
pub(crate) fn reply_summary_from_row(row: &impl StoredRow) -> Result<ReplySummary, StoreError> {
    Ok(ReplySummary {
        channel: Channel::from_str(&row.text("channel")?).map_err(StoreError::Corrupt)?,
        keyword: row.text("keyword")?,
        body: row.text("body")?,
        at: row.time("received_at")?,
    })
}

/// A `decision_notes` row.
pub(crate) fn note_from_row(row: &impl StoredRow) -> Result<DecisionNote, StoreError> {
    let outcome = match row.text("outcome")?.as_str() {
        "skipped" => "skipped",
        "offer_withheld" => "offer_withheld",
        _ => "deferred",
    };
    Ok(DecisionNote {
        customer_id: row.opt_customer("customer_id")?,
        at: row.time("at")?,
        event: EventKey {
            source: row.text("event_source")?,
            id: row.text("event_id")?,
        },
        rule_id: row.text("rule_id")?,
        outcome,
        reason: row.text("reason")?,
        detail: row.text("detail")?,
    })
}

/// An event on a customer's timeline.
pub(crate) fn timeline_event_from_row(row: &impl StoredRow) -> Result<TimelineEvent, StoreError> {
    Ok(TimelineEvent {
        key: EventKey {
            source: row.text("source")?,
            id: row.text("id")?,
        },
        event_type: row.text("type")?,
        time: row.opt_time("time")?,
        received_at: row.time("received_at")?,
        data: serde_json::from_str(&row.text("data")?)
            .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?,
    })
}

/// A scored decision and what became of it.
pub(crate) fn decision_outcome_from_row(
    row: &impl StoredRow,
) -> Result<DecisionOutcome, StoreError> {
    Ok(DecisionOutcome {
        key: IdempotencyKey::from_stored(row.text("idempotency_key")?),
        rule_id: row.text("rule_id")?,
        customer_id: row.text("customer_id")?,
        decided_at: row.time("decided_at")?,
        explanation: serde_json::from_str(&row.text("risk")?)
            .map_err(|e| StoreError::Corrupt(format!("outbox risk: {e}")))?,
        promised_by: row.opt_time("promised_by")?,
        delivered_at: row.opt_time("delivered_at")?,
        orders_after: u32::try_from(row.int("orders_after")?).unwrap_or(u32::MAX),
    })
}
