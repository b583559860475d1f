//! No marketing under an open incident: a customer whose checkout, payments or deliveries are
//! down right now hears about the outage, not about a sale. Marketing rules are skipped and
//! offers on transactional messages are withheld (an offer is marketing) until the incident is
//! resolved; its resolution notice may then carry the apology credit.

//!
//! Who hears what, like the best status pages: everyone affected hears once when an incident
//! starts; again only if its severity escalates (`[incidents] updates`); and those who were
//! told hear once more when it is resolved. [`fanout_after`] decides which outage event sends
//! forewarn through the customer directory (`incident::fanout`); the rules decide the words.

use serde::{Deserialize, Serialize};

use crate::domain::{
    Affected, CustomerDoc, CustomerId, FanoutKind, Incident, IncidentStatus, Payload,
};

/// `[incidents] updates`: when an `outage.updated` is announced to customers again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateNotice {
    /// Only when the severity rises above what it was: minor → major → critical. Other updates
    /// are for the status page, not for customers' phones.
    #[default]
    Escalation,
    /// Never: one message when it starts, one when it is resolved.
    Never,
}

/// Whether `payload`, applied to the incident as it stood (`before`), needs customers found:
/// a start always; an update that raises the severity above the highest it has had, if
/// `updates` allows (major → minor → major is not news); a resolution of an open incident.
pub fn fanout_after(
    before: Option<&Incident>,
    payload: &Payload,
    updates: UpdateNotice,
) -> Option<FanoutKind> {
    match payload {
        Payload::OutageStarted { .. } => Some(FanoutKind::Started),
        Payload::OutageUpdated {
            severity: Some(severity),
            ..
        } if updates == UpdateNotice::Escalation => {
            let was = before.and_then(Incident::peak);
            let open = before.is_some_and(|i| i.status == IncidentStatus::Open);
            (open && was.is_some_and(|was| *severity > was)).then_some(FanoutKind::Escalated)
        }
        Payload::OutageResolved { .. } => before
            .is_some_and(|i| i.status == IncidentStatus::Open)
            .then_some(FanoutKind::Resolved),
        _ => None,
    }
}

/// The first open incident among `incidents` that affects the customer, if any.
pub fn open_incident_affecting<'a>(
    incidents: impl IntoIterator<Item = &'a Incident>,
    customer_id: &CustomerId,
    customer: &CustomerDoc,
) -> Option<&'a Incident> {
    incidents
        .into_iter()
        .filter(|i| i.status == IncidentStatus::Open)
        .find(|i| affects(i, customer_id, customer))
}

/// Whether an incident's `affected` takes in the customer: a listed id, a segment, or a region
/// (`kr` takes in `kr-seoul`). An incident that names nobody in particular affects everyone.
pub fn affects(incident: &Incident, customer_id: &CustomerId, customer: &CustomerDoc) -> bool {
    // Read in place (no copy of the stored JSON): this runs for every marketing decision.
    let affected = Affected::deserialize(&incident.affected).unwrap_or_default();
    let field = |name: &str| customer.as_value().get(name).and_then(|v| v.as_str());
    affected.takes_in(customer_id, field("region"), field("segment"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::EntityId;

    fn incident(affected: serde_json::Value, status: IncidentStatus) -> Incident {
        Incident {
            id: EntityId::parse("inc-1").unwrap(),
            title: None,
            severity: Some("major".into()),
            status,
            affected,
            started_at: None,
            resolved_at: None,
            updated_at: chrono::Utc::now(),
            peak_severity: None,
        }
    }

    fn customer(doc: serde_json::Value) -> (CustomerId, CustomerDoc) {
        (
            CustomerId::parse(doc["id"].as_str().unwrap()).unwrap(),
            CustomerDoc::from_object(doc.as_object().unwrap().clone()),
        )
    }

    #[test]
    fn regions_match_by_prefix_segments_and_ids_exactly() {
        let seoul = incident(json!({"regions": ["kr"]}), IncidentStatus::Open);
        let (id, doc) = customer(json!({"id": "c-1", "region": "kr-seoul"}));
        assert!(affects(&seoul, &id, &doc));
        let (id, doc) = customer(json!({"id": "c-2", "region": "krx-1"}));
        assert!(!affects(&seoul, &id, &doc), "a prefix must end at a dash");
        let vip = incident(
            json!({"segments": ["vip"], "customer_ids": ["c-9"]}),
            IncidentStatus::Open,
        );
        let (id, doc) = customer(json!({"id": "c-3", "segment": "vip"}));
        assert!(affects(&vip, &id, &doc));
        let (id, doc) = customer(json!({"id": "c-9"}));
        assert!(affects(&vip, &id, &doc));
        let (id, doc) = customer(json!({"id": "c-4", "segment": "regular", "region": "kr"}));
        assert!(!affects(&vip, &id, &doc));
        // Naming nobody in particular: everyone.
        assert!(affects(
            &incident(json!({}), IncidentStatus::Open),
            &id,
            &doc
        ));
    }

    #[test]
    fn a_start_escalation_and_resolution_fan_out_and_nothing_else_does() {
        use crate::domain::Severity;
        let open = incident(json!({}), IncidentStatus::Open);
        let update = |severity| Payload::OutageUpdated {
            incident_id: EntityId::parse("inc-1").unwrap(),
            severity,
        };
        let esc = UpdateNotice::Escalation;
        assert_eq!(
            fanout_after(Some(&open), &update(Some(Severity::Critical)), esc),
            Some(FanoutKind::Escalated)
        );
        assert_eq!(
            fanout_after(Some(&open), &update(Some(Severity::Major)), esc),
            None
        );
        assert_eq!(
            fanout_after(Some(&open), &update(Some(Severity::Minor)), esc),
            None
        );
        assert_eq!(fanout_after(Some(&open), &update(None), esc), None);
        // Down and up again is not news: the peak was major.
        let lowered = Incident {
            severity: Some("minor".into()),
            peak_severity: Some("major".into()),
            ..open.clone()
        };
        assert_eq!(
            fanout_after(Some(&lowered), &update(Some(Severity::Major)), esc),
            None
        );
        assert_eq!(
            fanout_after(
                Some(&open),
                &update(Some(Severity::Critical)),
                UpdateNotice::Never
            ),
            None
        );
        let resolve = Payload::OutageResolved {
            incident_id: EntityId::parse("inc-1").unwrap(),
        };
        assert_eq!(
            fanout_after(Some(&open), &resolve, esc),
            Some(FanoutKind::Resolved)
        );
        let resolved = incident(json!({}), IncidentStatus::Resolved);
        assert_eq!(
            fanout_after(Some(&resolved), &resolve, esc),
            None,
            "resolved twice"
        );
        assert_eq!(fanout_after(None, &resolve, esc), None, "never announced");
        assert_eq!(
            fanout_after(Some(&resolved), &update(Some(Severity::Critical)), esc),
            None
        );
    }

    #[test]
    fn only_an_open_incident_holds_marketing_back() {
        let (id, doc) = customer(json!({"id": "c-1", "region": "kr-seoul"}));
        let resolved = incident(json!({"regions": ["kr"]}), IncidentStatus::Resolved);
        assert!(open_incident_affecting([&resolved], &id, &doc).is_none());
        let open = incident(json!({"regions": ["kr"]}), IncidentStatus::Open);
        assert_eq!(
            open_incident_affecting([&resolved, &open], &id, &doc).map(|i| i.status),
            Some(IncidentStatus::Open)
        );
    }
}
