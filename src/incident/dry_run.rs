//! What an announcement would do, worked out without publishing or writing anything: whether
//! it fans out at all, how many customers it reaches, and the message the first of them would
//! get — decided as the fan-out will decide it, in a transaction that is rolled back. `forewarn
//! announce --dry-run` prints it; the console shows it before its confirm button.

use chrono::{DateTime, Utc};

use super::{audience_of, AnnounceError, Announcement};
use crate::authoring::Authoring;
use crate::domain::{Accepted, CustomerId, FanoutKind, Incident, Outreach, Payload};
use crate::pipeline::{self, Deciding};
use crate::policy::Policy;
use crate::store::Store;

/// The CloudEvents source of what a dry run decides on (nothing is published).
pub const DRY_RUN_SOURCE: &str = "forewarn/dry-run";

/// What an announcement would do.
#[derive(Debug, Clone)]
pub enum DryRun {
    /// No customer would be messaged, for this reason (in words for on-call).
    Nobody(String),
    /// Customers would be.
    Reaches(Box<Reach>),
}

/// Whom an announcement that fans out would reach.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Which fan-out it starts.
    pub kind: FanoutKind,
    /// How many customers it would reach (for a resolution: those who were told it started).
    pub customers: u64,
    /// The first customer in the fan-out's order and what they would get; `None` when the
    /// audience is empty.
    pub first: Option<FirstCustomer>,
}

/// The first customer of a dry run, decided as the fan-out would decide them.
#[derive(Debug, Clone)]
pub struct FirstCustomer {
    /// Who.
    pub customer_id: CustomerId,
    /// The message they would get, if any.
    pub message: Option<Outreach>,
    /// Why they would get nothing, when they would not.
    pub nothing_because: Option<String>,
    /// Offers the message would go without, and why.
    pub withheld: Vec<String>,
}

/// Counts the customers `announcement` would reach and decides the first one's message, as of
/// `now`. Publishes nothing and writes nothing.
pub async fn dry_run(
    store: &dyn Store,
    authoring: &Authoring,
    policy: &Policy,
    announcement: &Announcement,
    now: DateTime<Utc>,
) -> Result<DryRun, AnnounceError> {
    let existing = store.incident(&announcement.incident_id).await?;
    let accepted = announcement.accepted(DRY_RUN_SOURCE, now)?;
    let kind = match expected_fanout(authoring, policy, existing.as_ref(), &accepted) {
        Ok(kind) => kind,
        Err(why) => return Ok(DryRun::Nobody(why)),
    };
    // The incident as intake will leave it, and whom its fan-out will page through.
    let Some(incident) = Incident::apply(existing, &accepted.payload, now) else {
        return Ok(DryRun::Nobody(format!(
            "{} is not an outage event",
            announcement.event_type.as_str()
        )));
    };
    let audience = audience_of(kind, &incident, &accepted.event.key);
    let customers = store.audience_count(&audience).await?;
    // The first customer in the fan-out's order, decided as the fan-out would; rolled back.
    let mut tx = store.begin_fanout().await?;
    let Some(first) = tx
        .audience_page(&audience, None, 1)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(DryRun::Reaches(Box::new(Reach {
            kind,
            customers,
            first: None,
        })));
    };
    let mut snapshot = tx
        .load(&pipeline::fanout_refs(
            &accepted,
            std::slice::from_ref(&first),
            policy,
            now,
        ))
        .await?;
    drop(tx);
    snapshot.incidents.insert(incident.id.clone(), incident);
    let plan = pipeline::decide_fanout(
        &accepted,
        std::slice::from_ref(&first),
        snapshot,
        &Deciding::new(authoring, policy, now),
    );
    let message = plan.changes.outreach.into_iter().next();
    let nothing_because = message.is_none().then(|| {
        plan.skipped
            .first()
            .map(|s| format!("{} ({})", s.reason, s.detail))
            .unwrap_or_else(|| "no rule reacts to this event".into())
    });
    Ok(DryRun::Reaches(Box::new(Reach {
        kind,
        customers,
        first: Some(FirstCustomer {
            customer_id: first,
            message,
            nothing_because,
            withheld: plan.withheld_offers.into_iter().map(|w| w.detail).collect(),
        }),
    })))
}

/// Whether customers will be looked for, as intake will decide: a start, an escalation (if
/// `[incidents] updates` allows), a resolution of an open incident — and some rule must react.
/// `Err` says why not.
pub fn expected_fanout(
    authoring: &Authoring,
    policy: &Policy,
    existing: Option<&Incident>,
    accepted: &Accepted,
) -> Result<FanoutKind, String> {
    let kind = crate::policy::incidents::fanout_after(
        existing,
        &accepted.payload,
        policy.incident_updates,
    );
    let Some(kind) = kind else {
        return Err(
            match (&accepted.payload, existing.and_then(Incident::severity)) {
                (
                    Payload::OutageUpdated {
                        severity: Some(new),
                        ..
                    },
                    Some(was),
                ) => format!(
                    "the severity does not escalate ({} → {})",
                    was.as_str(),
                    new.as_str()
                ),
                (Payload::OutageUpdated { .. }, _) => {
                    "an update reaches customers only when its severity escalates".into()
                }
                _ => "the incident is not open".into(),
            },
        );
    };
    if authoring
        .rules
        .candidates(accepted.event.event_type)
        .next()
        .is_none()
    {
        return Err(format!(
            "no rule reacts to {}",
            accepted.event.event_type.as_str()
        ));
    }
    Ok(kind)
}

/// Who an announcement that fans out will reach, said before it does.
pub fn who_hears(kind: FanoutKind) -> &'static str {
    match kind {
        FanoutKind::Started => "Every affected customer will be messaged.",
        FanoutKind::Escalated => {
            "The severity escalates: every affected customer will be messaged again."
        }
        FanoutKind::Resolved => {
            "Customers who were told it started will hear it is over; their notices still \
             waiting are withdrawn."
        }
    }
}
