//! What forewarn remembers for the risk features (`risk`): settled shipments per carrier and region and day,
//! the bad experiences each customer had, their orders, the messages sent to them, and external
//! scores. Loaded per intake batch for the customers it scores, and kept up to date in memory by
//! the batch's own events, so an event sees those before it in the batch.
//!
//! Every query takes the decision time and reads nothing stamped after it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::{CustomerId, EntityId, Money, Order, OrderStatus};

/// How far back the late shares look, in whole days.
pub const LATE_SHARE_DAYS: i64 = 30;
/// How far back bad experiences count, in days.
pub const EXPERIENCE_DAYS: i64 = 90;

/// What a late share is kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The carrier's name.
    Carrier,
    /// The destination region.
    Region,
}

impl Dimension {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Carrier => "carrier",
            Dimension::Region => "region",
        }
    }

    /// Reads the stored text.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "carrier" => Some(Dimension::Carrier),
            "region" => Some(Dimension::Region),
            _ => None,
        }
    }
}

/// Shipments delivered on one UTC day, and how many of them a day or more late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCount {
    /// Delivered.
    pub settled: u32,
    /// Of those, a day or more after the promise.
    pub late: u32,
}

/// A kind of bad experience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExperienceKind {
    /// A delay notice, or a parcel delivered a day or more late without one.
    Delay,
    /// A lost, damaged or held parcel (one per exception event: they are also "scans").
    Exception,
    /// A parcel past its promise with no news.
    Overdue,
    /// An outage that touched the customer.
    Outage,
}

impl ExperienceKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperienceKind::Delay => "delay",
            ExperienceKind::Exception => "exception",
            ExperienceKind::Overdue => "overdue",
            ExperienceKind::Outage => "outage",
        }
    }

    /// Reads the stored text.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "delay" => Some(ExperienceKind::Delay),
            "exception" => Some(ExperienceKind::Exception),
            "overdue" => Some(ExperienceKind::Overdue),
            "outage" => Some(ExperienceKind::Outage),
            _ => None,
        }
    }
}

/// One bad experience of one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experience {
    /// What happened.
    pub kind: ExperienceKind,
    /// The shipment or incident it was about.
    pub entity: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One of the customer's orders.
#[derive(Debug, Clone, PartialEq)]
pub struct PastOrder {
    /// Order id.
    pub id: EntityId,
    /// When it was placed (unknown for an order forewarn heard of only after the fact).
    pub placed_at: Option<DateTime<Utc>>,
    /// The delivery promise.
    pub promised_by: Option<DateTime<Utc>>,
    /// Its total.
    pub total: Option<Money>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl PastOrder {
    /// The history's view of a domain order.
    pub fn from_order(order: &Order) -> Self {
        PastOrder {
            id: order.id.clone(),
            placed_at: order.placed_at,
            promised_by: order.promised_by,
            total: order.total.clone(),
            cancelled_at: (order.status == OrderStatus::Cancelled).then_some(order.updated_at),
        }
    }
}

/// One message forewarn queued for the customer, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastOutreach {
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was given up on, if it was.
    pub failed_at: Option<DateTime<Utc>>,
    /// When its discount code was used, if it was.
    pub redeemed_at: Option<DateTime<Utc>>,
}

impl PastOutreach {
    /// Known to have failed by `at`.
    pub fn failed_by(&self, at: DateTime<Utc>) -> bool {
        self.failed_at.is_some_and(|t| t <= at)
    }

    /// Its code used by `at`.
    pub fn redeemed_by(&self, at: DateTime<Utc>) -> bool {
        self.redeemed_at.is_some_and(|t| t <= at)
    }
}

/// A score from a team's own model (`risk.scored`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalScore {
    /// The customer it is about.
    pub customer_id: Option<CustomerId>,
    /// The shipment it is about.
    pub shipment_id: Option<EntityId>,
    /// The order it is about.
    pub order_id: Option<EntityId>,
    /// Delay probability.
    pub delay: Option<f64>,
    /// Churn probability.
    pub churn: Option<f64>,
    /// The model's name.
    pub model: String,
    /// When it was scored.
    pub scored_at: DateTime<Utc>,
}

/// The history of the customers, carriers and regions one batch scores.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Settled shipments by (carrier or region, name), by day number (days since 1970-01-01 UTC).
    pub late_days: HashMap<(Dimension, String), BTreeMap<i64, DayCount>>,
    /// Bad experiences by customer; with a store's history, only those some decision of the
    /// batch may count and others may not (see [`shared_experience_span`]).
    pub experiences: HashMap<CustomerId, Vec<Experience>>,
    /// Per customer, how many distinct bad experiences fall in the window of every decision
    /// the history serves: counted by the store rather than read row by row, so a batch reads
    /// a number, not a customer's whole 90 days. None of them is also in `experiences`.
    pub shared_experiences: HashMap<CustomerId, usize>,
    /// Orders by customer.
    pub orders: HashMap<CustomerId, Vec<PastOrder>>,
    /// Messages by customer.
    pub outreach: HashMap<CustomerId, Vec<PastOutreach>>,
    /// When each customer opted out of something.
    pub opt_outs: HashMap<CustomerId, Vec<DateTime<Utc>>>,
    /// External scores that may apply.
    pub external: Vec<ExternalScore>,
    /// When marketing messages (any with an offer) were queued for each customer, recently.
    pub marketing: HashMap<CustomerId, Vec<DateTime<Utc>>>,
}

/// The times of the experiences that every decision made between `earliest` and `latest`
/// counts, as an interval open at its start and closed at its end: after `latest`'s window
/// begins and no later than `earliest`. `None` when decisions lie 90 days or more apart.
pub fn shared_experience_span(
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let after = latest - Duration::days(EXPERIENCE_DAYS);
    (after < earliest).then_some((after, earliest))
}

/// Days since 1970-01-01 UTC.
pub fn day_number(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

impl History {
    /// The late share of the `days` whole days before `at`'s day; `None` without deliveries.
    pub fn late_share(
        &self,
        dimension: Dimension,
        key: &str,
        at: DateTime<Utc>,
        days: i64,
    ) -> Option<f64> {
        let today = day_number(at);
        let counts = self.late_days.get(&(dimension, key.to_owned()))?;
        let (settled, late) = counts
            .range(today - days..today)
            .fold((0u64, 0u64), |(s, l), (_, c)| {
                (s + u64::from(c.settled), l + u64::from(c.late))
            });
        (settled > 0).then(|| late as f64 / settled as f64)
    }

    /// Counts a delivery.
    pub fn record_settled(&mut self, dimension: Dimension, key: &str, day: i64, late: bool) {
        let count = self
            .late_days
            .entry((dimension, key.to_owned()))
            .or_default()
            .entry(day)
            .or_default();
        count.settled += 1;
        count.late += u32::from(late);
    }

    /// Records an experience, once per (kind, entity, time).
    pub fn record_experience(&mut self, customer: &CustomerId, experience: Experience) {
        let list = self.experiences.entry(customer.clone()).or_default();
        if !list.contains(&experience) {
            list.push(experience);
        }
    }

    /// Records an order as it now stands.
    pub fn record_order(&mut self, customer: &CustomerId, order: PastOrder) {
        let list = self.orders.entry(customer.clone()).or_default();
        match list.iter_mut().find(|o| o.id == order.id) {
            Some(existing) => *existing = order,
            None => list.push(order),
        }
    }

    /// The customer's order `id`.
    pub fn order(&self, customer: &CustomerId, id: &EntityId) -> Option<&PastOrder> {
        self.orders.get(customer)?.iter().find(|o| &o.id == id)
    }

    /// Orders placed at or before `at` and not cancelled by then.
    pub fn orders_before(&self, customer: &CustomerId, at: DateTime<Utc>) -> Vec<&PastOrder> {
        self.orders.get(customer).map_or_else(Vec::new, |orders| {
            orders
                .iter()
                .filter(|o| o.placed_at.is_some_and(|p| p <= at))
                .filter(|o| o.cancelled_at.is_none_or(|c| c > at))
                .collect()
        })
    }

    /// Exception events for `shipment` at or before `at`.
    pub fn exception_scans(
        &self,
        customer: &CustomerId,
        shipment: &str,
        at: DateTime<Utc>,
    ) -> usize {
        self.experiences.get(customer).map_or(0, |list| {
            list.iter()
                .filter(|e| {
                    e.kind == ExperienceKind::Exception && e.entity == shipment && e.at <= at
                })
                .count()
        })
    }

    /// Distinct (kind, entity) experiences in the 90 days up to and including `at`: those the
    /// store counted for every decision, and those listed that fall in `at`'s window.
    pub fn bad_experiences(&self, customer: &CustomerId, at: DateTime<Utc>) -> usize {
        let since = at - Duration::days(EXPERIENCE_DAYS);
        let listed = self.experiences.get(customer).map_or(0, |list| {
            list.iter()
                .filter(|e| e.at > since && e.at <= at)
                .map(|e| (e.kind, e.entity.as_str()))
                .collect::<HashSet<_>>()
                .len()
        });
        listed + self.shared_experiences.get(customer).copied().unwrap_or(0)
    }

    /// The last message queued before `at`.
    pub fn last_outreach(&self, customer: &CustomerId, at: DateTime<Utc>) -> Option<&PastOutreach> {
        self.outreach
            .get(customer)?
            .iter()
            .filter(|o| o.created_at < at)
            .max_by_key(|o| o.created_at)
    }

    /// Marketing messages queued for the customer in the `window` up to `at`.
    pub fn marketing_within(
        &self,
        customer: &CustomerId,
        at: DateTime<Utc>,
        window: Duration,
    ) -> usize {
        self.marketing.get(customer).map_or(0, |times| {
            times
                .iter()
                .filter(|t| **t > at - window && **t <= at)
                .count()
        })
    }

    /// An opt-out after `from` and at or before `to`.
    pub fn opted_out_between(
        &self,
        customer: &CustomerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> bool {
        self.opt_outs
            .get(customer)
            .is_some_and(|times| times.iter().any(|t| *t > from && *t <= to))
    }

    /// The newest external delay and churn scores valid at `at` for this subject: scored at or
    /// before `at` and less than `valid_for` earlier. A delay score must name the shipment, or
    /// its order, or only the customer; a churn score must name the customer.
    pub fn external_at(
        &self,
        customer: &CustomerId,
        shipment: Option<&EntityId>,
        order: Option<&EntityId>,
        at: DateTime<Utc>,
        valid_for: Duration,
    ) -> (Option<&ExternalScore>, Option<&ExternalScore>) {
        let live = |s: &&ExternalScore| s.scored_at <= at && at - s.scored_at < valid_for;
        let delay = self
            .external
            .iter()
            .filter(live)
            .filter(|s| s.delay.is_some())
            .filter(|s| match (&s.shipment_id, &s.order_id) {
                (Some(id), _) => Some(id) == shipment,
                (None, Some(id)) => Some(id) == order,
                (None, None) => s.customer_id.as_ref() == Some(customer),
            })
            .max_by_key(|s| s.scored_at);
        let churn = self
            .external
            .iter()
            .filter(live)
            .filter(|s| s.churn.is_some() && s.customer_id.as_ref() == Some(customer))
            .max_by_key(|s| s.scored_at);
        (delay, churn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn customer() -> CustomerId {
        CustomerId::parse("c-1").unwrap()
    }

    #[test]
    fn the_late_share_counts_the_thirty_whole_days_before_the_decision_day() {
        let mut h = History::default();
        let at = t("2026-11-20T15:00:00Z");
        let today = day_number(at);
        // 31 days ago: outside. 30 days ago and yesterday: inside. Today: not yet whole.
        h.record_settled(Dimension::Carrier, "CJ", today - 31, true);
        h.record_settled(Dimension::Carrier, "CJ", today - 30, true);
        h.record_settled(Dimension::Carrier, "CJ", today - 1, false);
        h.record_settled(Dimension::Carrier, "CJ", today - 1, false);
        h.record_settled(Dimension::Carrier, "CJ", today, true);
        h.record_settled(Dimension::Carrier, "CJ", today + 3, true);
        let share = h.late_share(Dimension::Carrier, "CJ", at, 30).unwrap();
        assert!((share - 1.0 / 3.0).abs() < 1e-12, "{share}");
        assert_eq!(h.late_share(Dimension::Region, "CJ", at, 30), None);
        assert_eq!(h.late_share(Dimension::Carrier, "UPS", at, 30), None);
    }

    #[test]
    fn bad_experiences_count_distinct_things_in_the_ninety_days_up_to_the_decision() {
        let mut h = History::default();
        let c = customer();
        let at = t("2026-11-20T12:00:00Z");
        let add = |h: &mut History, kind, entity: &str, when: &str| {
            h.record_experience(
                &c,
                Experience {
                    kind,
                    entity: entity.into(),
                    at: t(when),
                },
            )
        };
        add(&mut h, ExperienceKind::Delay, "s1", "2026-08-22T11:00:00Z"); // 90 days + 1 h ago: out
        add(&mut h, ExperienceKind::Delay, "s2", "2026-08-22T13:00:00Z"); // inside
        add(&mut h, ExperienceKind::Delay, "s2", "2026-08-25T13:00:00Z"); // same delay again
        add(
            &mut h,
            ExperienceKind::Exception,
            "s2",
            "2026-09-01T00:00:00Z",
        ); // other kind
        add(
            &mut h,
            ExperienceKind::Outage,
            "inc-1",
            "2026-11-20T12:00:00Z",
        ); // at the decision
        add(&mut h, ExperienceKind::Delay, "s9", "2026-11-20T12:00:01Z"); // after: out
        assert_eq!(h.bad_experiences(&c, at), 3);
        h.shared_experiences.insert(c.clone(), 2);
        assert_eq!(h.bad_experiences(&c, at), 5, "and those the store counted");
        assert_eq!(h.exception_scans(&c, "s2", at), 1);
        assert_eq!(h.exception_scans(&c, "s2", t("2026-08-30T00:00:00Z")), 0);
    }

    #[test]
    fn every_decision_of_a_batch_counts_what_lies_between_the_last_ones_window_and_the_first() {
        let earliest = t("2026-11-20T12:00:00Z");
        let latest = t("2026-11-20T14:00:00Z");
        let (after, until) = shared_experience_span(earliest, latest).expect("a span");
        assert_eq!(after, t("2026-08-22T14:00:00Z"));
        assert_eq!(until, earliest);
        // Decisions 90 days or more apart share nothing.
        assert_eq!(
            shared_experience_span(earliest, earliest + Duration::days(90)),
            None
        );
    }

    #[test]
    fn external_scores_apply_to_their_subject_until_they_expire() {
        let mut h = History::default();
        let c = customer();
        let s1 = EntityId::parse("s1").unwrap();
        let s2 = EntityId::parse("s2").unwrap();
        let score =
            |shipment: Option<&EntityId>, delay, churn, model: &str, at: &str| ExternalScore {
                customer_id: Some(c.clone()),
                shipment_id: shipment.cloned(),
                order_id: None,
                delay,
                churn,
                model: model.into(),
                scored_at: t(at),
            };
        h.external.push(score(
            Some(&s1),
            Some(0.9),
            None,
            "eta-v2",
            "2026-11-20T00:00:00Z",
        ));
        h.external.push(score(
            None,
            None,
            Some(0.2),
            "ltv-v1",
            "2026-11-19T12:00:00Z",
        ));
        h.external.push(score(
            None,
            None,
            Some(0.8),
            "ltv-v1",
            "2026-11-20T06:00:00Z",
        ));
        let day = Duration::hours(24);
        let (delay, churn) = h.external_at(&c, Some(&s1), None, t("2026-11-20T12:00:00Z"), day);
        assert_eq!(delay.unwrap().delay, Some(0.9));
        assert_eq!(churn.unwrap().churn, Some(0.8), "the newest wins");
        // Another shipment of the same customer keeps the built-in delay score.
        let (delay, _) = h.external_at(&c, Some(&s2), None, t("2026-11-20T12:00:00Z"), day);
        assert!(delay.is_none());
        // Before the newer churn score existed, the older one applies.
        let (_, churn) = h.external_at(&c, None, None, t("2026-11-20T05:00:00Z"), day);
        assert_eq!(churn.unwrap().churn, Some(0.2));
        // A day later both have expired.
        let (delay, churn) = h.external_at(&c, Some(&s1), None, t("2026-11-21T06:00:00Z"), day);
        assert!(delay.is_none() && churn.is_none());
    }
}
