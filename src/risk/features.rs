//! The features the built-in models read, each computed *as of* the decision time from the
//! event, the state forewarn keeps and its [`History`].
//!
//! "As of" is strict: a feature reads only what happened at or before the decision time `at`
//! (the event's own time). A delivery, exception or order stamped later — an event that arrived
//! early, a replay, a backfill — is invisible to it, so a score is the same whenever it is
//! recomputed, and `risk fit` learns from features the live service could have had.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{CustomerId, EntityId, Money, Shipment};
use crate::domain::{Dimension, Experience, ExperienceKind, History, LATE_SHARE_DAYS};

/// Which score a feature feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `risk.delay`: this shipment misses its promise by at least a day.
    Delay,
    /// `risk.churn`: this customer is lost after this experience.
    Churn,
}

impl Target {
    /// Both, in file order.
    pub const ALL: [Target; 2] = [Target::Delay, Target::Churn];

    /// `delay` or `churn`: the table in `risk.toml` and the key in `risk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Delay => "delay",
            Target::Churn => "churn",
        }
    }

    /// The CSV column holding the observed outcome (0 or 1) for `risk fit` and `risk eval`.
    pub fn outcome_column(self) -> &'static str {
        match self {
            Target::Delay => "late",
            Target::Churn => "churned",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defines [`Feature`] with its name, target and meaning in one place, so the model file,
/// `check`, the CSV columns and the README can never disagree.
macro_rules! features {
    ($($variant:ident => $name:literal, $target:ident, $doc:literal;)+) => {
        /// One input of a built-in model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Feature { $(#[doc = $doc] $variant),+ }

        impl Feature {
            /// Every feature, delay's first.
            pub const ALL: &'static [Feature] = &[$(Feature::$variant),+];

            /// The name used in `risk.toml`, CSV headers and explanations.
            pub fn name(self) -> &'static str {
                match self { $(Feature::$variant => $name),+ }
            }

            /// The score it feeds.
            pub fn target(self) -> Target {
                match self { $(Feature::$variant => Target::$target),+ }
            }

            /// What it measures, for the model file and the README.
            pub fn meaning(self) -> &'static str {
                match self { $(Feature::$variant => $doc),+ }
            }
        }
    };
}

features! {
    CarrierLateShare30d => "carrier_late_share_30d", Delay,
        "Share of this carrier's shipments delivered in the 30 whole UTC days before the decision's day that arrived a day or more after their promise (0..1).";
    RegionLateShare30d => "region_late_share_30d", Delay,
        "The same share for the destination region (0..1).";
    HoursPastPromise => "hours_past_promise", Delay,
        "Hours from the promised delivery time to the decision; negative while the promise is still ahead.";
    AnnouncedDelayHours => "announced_delay_hours", Delay,
        "Hours from the promise to the latest arrival the carrier announced (shipment.delayed); 0 when none was announced.";
    ExceptionScans => "exception_scans", Delay,
        "Exception events (lost, damaged, held, ...) for this shipment so far.";
    HoursSinceLastScan => "hours_since_last_scan", Delay,
        "Hours since the carrier last scanned the parcel.";
    BadExperiences90d => "bad_experiences_90d", Churn,
        "Distinct delays, exceptions, overdue parcels and outages that touched the customer in the last 90 days, this one included.";
    DaysLate => "days_late", Churn,
        "Days this order is late now: announced new ETA (or the decision time, once past the promise) minus the promise; 0 if on time.";
    LogOrderValue => "log_order_value", Churn,
        "ln(1 + this order's total in the model's currency unit).";
    LogLifetimeValue => "log_lifetime_value", Churn,
        "ln(1 + the total of the customer's orders placed before the decision, cancelled ones left out).";
    LifetimeOrders => "lifetime_orders", Churn,
        "Orders the customer placed before the decision, cancelled ones left out.";
    FirstOrder => "first_order", Churn,
        "1 if this is the customer's first order, else 0.";
    LastOutreachFailed => "last_outreach_failed", Churn,
        "1 if the last message forewarn sent the customer before this could not be delivered.";
    LastOutreachOptedOut => "last_outreach_opted_out", Churn,
        "1 if the customer opted out after the last message forewarn sent them.";
    LastOutreachRedeemed => "last_outreach_redeemed", Churn,
        "1 if the customer used the discount code of the last message forewarn sent them.";
}

impl Feature {
    /// The feature named `name`.
    pub fn by_name(name: &str) -> Option<Feature> {
        Feature::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The features of one model, in order.
    pub fn of(target: Target) -> impl Iterator<Item = Feature> {
        Feature::ALL
            .iter()
            .copied()
            .filter(move |f| f.target() == target)
    }

    /// Its place in [`Feature::ALL`]: the macro declares the variants and `ALL` from one list,
    /// in one order, so the discriminant is the position.
    fn index(self) -> usize {
        self as usize
    }

    /// A value as a person reads it in an explanation: "3 bad experience(s) in 90 days";
    /// `unit` is the model's currency unit.
    pub fn describe(self, value: f64, unit: &str) -> String {
        let count = value.round();
        match self {
            Feature::CarrierLateShare30d => {
                format!("carrier late {:.0}% of the time", value * 100.0)
            }
            Feature::RegionLateShare30d => format!("region late {:.0}% of the time", value * 100.0),
            Feature::HoursPastPromise if value >= 0.0 => format!("{value:.0} h past the promise"),
            Feature::HoursPastPromise => format!("{:.0} h before the promise", -value),
            Feature::AnnouncedDelayHours => format!("announced {value:.0} h late"),
            Feature::ExceptionScans => format!("{count} exception scan(s)"),
            Feature::HoursSinceLastScan => format!("no scan for {value:.0} h"),
            Feature::BadExperiences90d => format!("{count} bad experience(s) in 90 days"),
            Feature::DaysLate => format!("{value:.1} days late"),
            Feature::LogOrderValue => format!("order worth {:.0} {unit}", value.exp_m1()),
            Feature::LogLifetimeValue => format!("lifetime value {:.0} {unit}", value.exp_m1()),
            Feature::LifetimeOrders => format!("{count} order(s) so far"),
            Feature::FirstOrder if value >= 0.5 => "first order".into(),
            Feature::FirstOrder => "returning customer".into(),
            Feature::LastOutreachFailed if value >= 0.5 => "last message undelivered".into(),
            Feature::LastOutreachOptedOut if value >= 0.5 => "opted out after last message".into(),
            Feature::LastOutreachRedeemed if value >= 0.5 => "used last discount".into(),
            Feature::LastOutreachFailed
            | Feature::LastOutreachOptedOut
            | Feature::LastOutreachRedeemed => format!("{} = 0", self.name()),
        }
    }

    /// What an explanation says when the feature could not be computed.
    pub fn describe_unknown(self) -> &'static str {
        match self {
            Feature::CarrierLateShare30d => "no recent deliveries by this carrier",
            Feature::RegionLateShare30d => "no recent deliveries to this region",
            Feature::HoursPastPromise | Feature::DaysLate => "no promise known",
            Feature::AnnouncedDelayHours | Feature::ExceptionScans => "no shipment known",
            Feature::HoursSinceLastScan => "no scan yet",
            Feature::BadExperiences90d => "no history",
            Feature::LogOrderValue => "order value unknown",
            Feature::LogLifetimeValue => "lifetime value unknown",
            Feature::LifetimeOrders => "order count unknown",
            Feature::FirstOrder => "order unknown",
            Feature::LastOutreachFailed
            | Feature::LastOutreachOptedOut
            | Feature::LastOutreachRedeemed => "no message before",
        }
    }
}

/// Every feature's value for one decision; `None` where the event and history cannot tell
/// (no carrier history, no promise, no order), which the model fills with its `when_unknown`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureValues {
    values: [Option<f64>; FEATURE_COUNT],
}

/// How many features there are.
pub const FEATURE_COUNT: usize = 15;

impl FeatureValues {
    /// The value of `feature`, if known.
    pub fn get(&self, feature: Feature) -> Option<f64> {
        self.values[feature.index()]
    }

    /// Sets `feature`; a non-finite value counts as unknown.
    pub fn set(&mut self, feature: Feature, value: Option<f64>) {
        self.values[feature.index()] = value.filter(|v| v.is_finite());
    }
}

/// What one decision is about, with the state as it stands at the event.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The decision time: the event's time. Nothing after it is read.
    pub at: DateTime<Utc>,
    /// The customer the decision is for.
    pub customer: &'a CustomerId,
    /// The shipment the event is about, if any.
    pub shipment: Option<&'a Shipment>,
    /// The order the event is about, if any (its own, or its shipment's).
    pub order: Option<&'a EntityId>,
    /// A promise the event states itself (`shipment.overdue`), when there is no shipment.
    pub promised_by: Option<DateTime<Utc>>,
}

impl Subject<'_> {
    /// The order the decision is about: the event's own, else its shipment's.
    pub fn order_id(&self) -> Option<&EntityId> {
        self.order
            .or_else(|| self.shipment.and_then(|s| s.order_id.as_ref()))
    }
}

/// Converts order totals into the model's one currency unit, so a ₩129,000 and a $99 order
/// are comparable. A currency without a rate leaves value features unknown.
pub trait ValueUnit {
    /// `money` in the model's unit, if its currency has a rate.
    fn value_of(&self, money: &Money) -> Option<f64>;
}

/// Computes every feature for `subject` from `history`.
pub fn compute(subject: &Subject<'_>, history: &History, unit: &dyn ValueUnit) -> FeatureValues {
    let mut v = FeatureValues::default();
    let at = subject.at;
    let hours = |d: Duration| d.num_seconds() as f64 / 3600.0;
    let shipment = subject.shipment;

    // Delay.
    let carrier = shipment.and_then(|s| s.carrier.as_deref());
    let region = shipment.and_then(|s| s.region.as_deref());
    v.set(
        Feature::CarrierLateShare30d,
        carrier.and_then(|c| history.late_share(Dimension::Carrier, c, at, LATE_SHARE_DAYS)),
    );
    v.set(
        Feature::RegionLateShare30d,
        region.and_then(|r| history.late_share(Dimension::Region, r, at, LATE_SHARE_DAYS)),
    );
    let order = subject
        .order_id()
        .and_then(|id| history.order(subject.customer, id));
    let promised_by = shipment
        .and_then(|s| s.promised_by)
        .or(subject.promised_by)
        .or_else(|| order.and_then(|o| o.promised_by));
    v.set(
        Feature::HoursPastPromise,
        promised_by.map(|p| hours(at - p)),
    );
    if let Some(s) = shipment {
        v.set(
            Feature::AnnouncedDelayHours,
            Some(match (s.promised_by, s.new_eta) {
                (Some(promised), Some(eta)) => hours(eta - promised).max(0.0),
                _ => 0.0,
            }),
        );
        v.set(
            Feature::ExceptionScans,
            Some(history.exception_scans(subject.customer, s.id.as_str(), at) as f64),
        );
        v.set(
            Feature::HoursSinceLastScan,
            s.last_scan_at.filter(|t| *t <= at).map(|t| hours(at - t)),
        );
    }

    // Churn.
    v.set(
        Feature::BadExperiences90d,
        Some(history.bad_experiences(subject.customer, at) as f64),
    );
    v.set(
        Feature::DaysLate,
        promised_by.map(|p| days_late(shipment, p, at)),
    );
    v.set(
        Feature::LogOrderValue,
        order
            .and_then(|o| o.total.as_ref())
            .and_then(|m| unit.value_of(m))
            .map(f64::ln_1p),
    );
    let past = history.orders_before(subject.customer, at);
    let lifetime_value: Option<f64> = past
        .iter()
        .filter_map(|o| o.total.as_ref())
        .map(|m| unit.value_of(m))
        .sum();
    v.set(
        Feature::LogLifetimeValue,
        lifetime_value.map(|x| x.max(0.0).ln_1p()),
    );
    v.set(Feature::LifetimeOrders, Some(past.len() as f64));
    v.set(
        Feature::FirstOrder,
        order.map(|o| {
            let earlier = past
                .iter()
                .filter(|p| p.id != o.id && p.placed_at < Some(o.placed_at.unwrap_or(at)))
                .count();
            f64::from(u8::from(earlier == 0))
        }),
    );
    let last = history.last_outreach(subject.customer, at);
    v.set(
        Feature::LastOutreachFailed,
        Some(flag(last.is_some_and(|o| o.failed_by(at)))),
    );
    v.set(
        Feature::LastOutreachOptedOut,
        Some(flag(last.is_some_and(|o| {
            history.opted_out_between(subject.customer, o.created_at, at)
        }))),
    );
    v.set(
        Feature::LastOutreachRedeemed,
        Some(flag(last.is_some_and(|o| o.redeemed_by(at)))),
    );
    v
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Days past `promised_by`: at delivery if delivered by `at`, else the later of the announced
/// ETA and `at` itself; never negative.
fn days_late(shipment: Option<&Shipment>, promised_by: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    let arrival = match shipment {
        Some(s) => match s.delivered_at.filter(|d| *d <= at) {
            Some(delivered) => delivered,
            None => s.new_eta.map_or(at, |eta| eta.max(at)),
        },
        None => at,
    };
    ((arrival - promised_by).num_seconds() as f64 / 86_400.0).max(0.0)
}

/// The bad experience an event is for the customer it touched, dated `at`.
pub fn experience_of(payload: &crate::domain::Payload, at: DateTime<Utc>) -> Option<Experience> {
    use crate::domain::Payload;
    let (kind, entity) = match payload {
        Payload::ShipmentDelayed { shipment_id, .. } => (ExperienceKind::Delay, shipment_id),
        Payload::ShipmentException { shipment_id, .. } => (ExperienceKind::Exception, shipment_id),
        Payload::ShipmentOverdue { shipment_id, .. } => (ExperienceKind::Overdue, shipment_id),
        Payload::OutageStarted { incident_id, .. } => (ExperienceKind::Outage, incident_id),
        _ => return None,
    };
    Some(Experience {
        kind,
        entity: entity.as_str().to_owned(),
        at,
    })
}

/// A promise the event states itself (`shipment.overdue`), for events with no shipment to
/// read it from.
pub fn stated_promise(payload: &crate::domain::Payload) -> Option<DateTime<Utc>> {
    match payload {
        crate::domain::Payload::ShipmentOverdue { promised_by, .. } => Some(*promised_by),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feature_count_matches_the_list_and_names_are_unique() {
        assert_eq!(Feature::ALL.len(), FEATURE_COUNT);
        let mut names: Vec<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FEATURE_COUNT);
        assert_eq!(Feature::of(Target::Delay).count(), 6);
        assert_eq!(Feature::of(Target::Churn).count(), 9);
    }
}

#[cfg(test)]
mod compute_tests {
    use chrono::DateTime;

    use super::*;
    use crate::domain::{PastOrder, PastOutreach};

    struct Usd;
    impl ValueUnit for Usd {
        fn value_of(&self, money: &Money) -> Option<f64> {
            (money.currency == "USD").then(|| money.minor as f64 / 100.0)
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn order(id: &str, placed: &str, dollars: i64, cancelled: Option<&str>) -> PastOrder {
        PastOrder {
            id: EntityId::parse(id).unwrap(),
            placed_at: Some(t(placed)),
            promised_by: Some(t(placed) + Duration::days(3)),
            total: Some(Money {
                minor: dollars * 100,
                currency: "USD".into(),
            }),
            cancelled_at: cancelled.map(t),
        }
    }

    #[test]
    fn order_and_outreach_features_read_only_what_was_known_at_the_decision() {
        let c = CustomerId::parse("c-1").unwrap();
        let mut h = History::default();
        h.record_order(&c, order("o-1", "2026-10-01T00:00:00Z", 100, None));
        h.record_order(
            &c,
            order(
                "o-2",
                "2026-10-05T00:00:00Z",
                40,
                Some("2026-10-06T00:00:00Z"),
            ),
        );
        h.record_order(&c, order("o-3", "2026-11-01T00:00:00Z", 60, None));
        // Cancelled only after the decision: still counts.
        h.record_order(
            &c,
            order(
                "o-4",
                "2026-11-02T00:00:00Z",
                10,
                Some("2026-11-30T00:00:00Z"),
            ),
        );
        h.outreach.insert(
            c.clone(),
            vec![
                PastOutreach {
                    created_at: t("2026-10-10T00:00:00Z"),
                    failed_at: Some(t("2026-10-11T00:00:00Z")),
                    redeemed_at: None,
                },
                // The last before the decision: its code used before it, then an opt-out.
                PastOutreach {
                    created_at: t("2026-11-05T00:00:00Z"),
                    failed_at: None,
                    redeemed_at: Some(t("2026-11-07T00:00:00Z")),
                },
                // Queued after the decision: not "the last outreach" yet.
                PastOutreach {
                    created_at: t("2026-11-21T00:00:00Z"),
                    failed_at: Some(t("2026-11-21T01:00:00Z")),
                    redeemed_at: None,
                },
            ],
        );
        h.opt_outs
            .insert(c.clone(), vec![t("2026-11-08T00:00:00Z")]);
        let o3 = EntityId::parse("o-3").unwrap();
        let subject = Subject {
            at: t("2026-11-20T00:00:00Z"),
            customer: &c,
            shipment: None,
            order: Some(&o3),
            promised_by: None,
        };
        let v = compute(&subject, &h, &Usd);
        assert_eq!(v.get(Feature::LifetimeOrders), Some(3.0));
        assert_eq!(v.get(Feature::LogLifetimeValue), Some(170f64.ln_1p()));
        assert_eq!(v.get(Feature::LogOrderValue), Some(60f64.ln_1p()));
        assert_eq!(v.get(Feature::FirstOrder), Some(0.0));
        assert_eq!(v.get(Feature::LastOutreachFailed), Some(0.0));
        assert_eq!(v.get(Feature::LastOutreachRedeemed), Some(1.0));
        assert_eq!(v.get(Feature::LastOutreachOptedOut), Some(1.0));
        // o-3's promise was 4 November: 16 days late by now, with no shipment to say otherwise.
        assert_eq!(v.get(Feature::DaysLate), Some(16.0));
        assert_eq!(v.get(Feature::CarrierLateShare30d), None);

        // On 15 October the first message had failed, and o-1 was the only order.
        let o1 = EntityId::parse("o-1").unwrap();
        let earlier = Subject {
            at: t("2026-10-15T00:00:00Z"),
            order: Some(&o1),
            ..subject
        };
        let v = compute(&earlier, &h, &Usd);
        assert_eq!(v.get(Feature::LifetimeOrders), Some(1.0));
        assert_eq!(v.get(Feature::FirstOrder), Some(1.0));
        assert_eq!(v.get(Feature::LastOutreachFailed), Some(1.0));
        assert_eq!(v.get(Feature::LastOutreachOptedOut), Some(0.0));
    }
}
