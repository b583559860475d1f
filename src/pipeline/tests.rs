//! Decisions on hand-made events, rules and templates: no database, no broker.

use serde_json::json;

use super::*;
use crate::domain::{CustomerDoc, EntityId, IncidentStatus, MessageContent, Offer, Payload};

/// Templates and rules written to a temporary folder, loaded as forewarn loads them.
fn authoring(rules: &str) -> (Templates, RuleSet) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates/t")).unwrap();
    std::fs::write(
        dir.path().join("templates/t/sms.hbs"),
        "{{rule.id}}: hi {{customer.name}}{{#if offer}} {{offer.percent}}% off with {{offer.code}}{{/if}}",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/r.toml"), rules).unwrap();
    let templates = Templates::load(&dir.path().join("templates")).unwrap();
    let rules = RuleSet::load(&dir.path().join("rules"), &templates).unwrap();
    (templates, rules)
}

fn rule(id: &str, priority: i32, extra: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\non = [\"shipment.delayed\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\npriority = {priority}\n{extra}\n"
    )
}

fn delayed(id: &str, shipment: &str, reason: &str, days_late: i64) -> Accepted {
    let body = json!({"specversion": "1.0", "id": id, "source": "test", "type": "shipment.delayed",
        "data": {"shipment_id": shipment, "order_id": "o-1", "customer_id": "c-1", "carrier": "CJ",
                 "promised_by": "2026-11-25T09:00:00Z", "new_eta": "2026-11-27T09:00:00Z",
                 "reason": reason, "days_late": days_late}});
    let event = CloudEvent::parse(body.to_string().as_bytes(), None).unwrap();
    let payload = Payload::parse(event.event_type, &event.data).unwrap();
    Accepted { event, payload }
}

fn snapshot() -> Snapshot {
    snapshot_of(
        json!({"id": "c-1", "name": "Jamie", "phone": "+12125550142",
                       "segment": "vip", "consent": {"marketing": true}}),
    )
}

/// A snapshot that knows customer `c-1` as `doc`.
fn snapshot_of(doc: serde_json::Value) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.customers.insert(
        CustomerId::parse("c-1").unwrap(),
        CustomerDoc::from_object(doc.as_object().unwrap().clone()),
    );
    snapshot
}

/// Decides `events` with the embedded risk model.
fn plan_for(
    events: &[Accepted],
    snapshot: Snapshot,
    (rules, templates): (&RuleSet, &Templates),
    policy: &Policy,
    now: DateTime<Utc>,
) -> Plan {
    let refs: Vec<&Accepted> = events.iter().collect();
    let risk = RiskModel::embedded();
    let deciding = Deciding {
        rules,
        templates,
        risk: &risk,
        policy,
        now,
    };
    decide(&refs, snapshot, &deciding)
}

fn run(rules: &str, events: &[Accepted]) -> Plan {
    let (templates, rules) = authoring(rules);
    plan_for(
        events,
        snapshot(),
        (&rules, &templates),
        &Policy::none(),
        Utc::now(),
    )
}

fn bodies(plan: &Plan) -> Vec<String> {
    plan.changes
        .outreach
        .iter()
        .map(|o| match &o.content {
            MessageContent::Sms { body, .. } => body.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn keys(plan: &Plan) -> Vec<&str> {
    plan.changes
        .outreach
        .iter()
        .map(|o| o.key.as_str())
        .collect()
}

#[test]
fn a_rule_whose_condition_is_false_sends_nothing() {
    let plan = run(
        &rule("weather-only", 50, "when = \"data.reason == 'weather'\""),
        &[delayed("e1", "s1", "backlog", 1)],
    );
    assert!(plan.changes.outreach.is_empty());
    assert!(plan.rule_errors.is_empty());
}

#[test]
fn the_highest_priority_rule_whose_condition_holds_wins() {
    let rules = [
        rule(
            "vip-big-delay",
            90,
            "when = \"customer.segment == 'vip' && data.days_late + 1 > 3\"",
        ),
        rule("any-delay", 10, ""),
        rule("weather", 50, "when = \"data.reason == 'weather'\""),
    ]
    .join("\n");
    let plan = run(
        &rules,
        &[
            delayed("e1", "s1", "weather", 1),
            delayed("e2", "s2", "backlog", 5),
            delayed("e3", "s3", "backlog", 1),
        ],
    );
    assert_eq!(
        bodies(&plan),
        [
            "weather: hi Jamie",
            "vip-big-delay: hi Jamie",
            "any-delay: hi Jamie"
        ]
    );
}

#[test]
fn a_failing_condition_does_not_match_and_is_reported() {
    let rules = [
        rule("broken", 90, "when = \"data.no_such_field > 1\""),
        rule("fallback", 10, ""),
    ]
    .join("\n");
    let plan = run(&rules, &[delayed("e1", "s1", "backlog", 1)]);
    assert_eq!(bodies(&plan), ["fallback: hi Jamie"]);
    assert_eq!(plan.rule_errors.len(), 1);
    assert_eq!(plan.rule_errors[0].rule_id, "broken");
    assert!(
        plan.rule_errors[0].location.ends_with("r.toml:7:8"),
        "at the expression: {}",
        plan.rule_errors[0].location
    );
}

#[test]
fn once_per_gives_two_events_about_one_shipment_the_same_key() {
    let plan = run(
        &rule("per-shipment", 50, "once_per = \"data.shipment_id\""),
        &[
            delayed("e1", "s1", "backlog", 1),
            delayed("e2", "s1", "weather", 2),
            delayed("e3", "s2", "backlog", 1),
        ],
    );
    let keys = keys(&plan);
    assert_eq!(keys.len(), 3);
    assert_eq!(
        keys[0], keys[1],
        "same shipment, same key: the outbox keeps one"
    );
    assert_ne!(keys[0], keys[2]);
    assert_eq!(plan.changes.outreach[0].entity, "once:s1");
}

#[test]
fn without_once_per_each_event_is_its_own_outreach() {
    let plan = run(
        &rule("per-event", 50, ""),
        &[
            delayed("e1", "s1", "backlog", 1),
            delayed("e2", "s1", "backlog", 1),
        ],
    );
    let keys = keys(&plan);
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn an_offer_issues_a_code_for_the_computed_percent_valid_for_its_days() {
    let now = Utc::now();
    let (templates, rules) = authoring(&rule(
        "sorry",
        50,
        "[rule.offer]\ndiscount_percent = \"data.days_late >= 3 ? 20 : 10\"\nvalid_days = 14",
    ));
    let events = [
        delayed("e1", "s1", "backlog", 1),
        delayed("e2", "s2", "backlog", 4),
    ];
    let plan = plan_for(
        &events,
        snapshot(),
        (&rules, &templates),
        &Policy::none(),
        now,
    );
    let offers: Vec<&Offer> = plan
        .changes
        .outreach
        .iter()
        .map(|o| o.offer.as_ref().unwrap())
        .collect();
    assert_eq!(offers[0].percent, 10);
    assert_eq!(offers[1].percent, 20);
    assert_ne!(offers[0].code, offers[1].code);
    assert_eq!(offers[0].expires_at, now + chrono::Duration::days(14));
    assert_eq!(
        bodies(&plan)[1],
        format!("sorry: hi Jamie 20% off with {}", offers[1].code)
    );
}

#[test]
fn zero_percent_means_no_offer_and_a_bad_percent_means_no_match() {
    let plan = run(
        &rule(
            "maybe",
            50,
            "[rule.offer]\ndiscount_percent = \"data.reason == 'weather' ? 15 : 0\"",
        ),
        &[delayed("e1", "s1", "backlog", 1)],
    );
    assert_eq!(bodies(&plan), ["maybe: hi Jamie"]);
    assert!(plan.changes.outreach[0].offer.is_none());

    let rules = [
        rule(
            "greedy",
            50,
            "[rule.offer]\ndiscount_percent = \"data.days_late * 100\"",
        ),
        rule("plain", 10, ""),
    ]
    .join("\n");
    let plan = run(&rules, &[delayed("e1", "s1", "backlog", 2)]);
    // Like a failing `when`: the rule does not match and the next one is tried.
    assert_eq!(bodies(&plan), ["plain: hi Jamie"]);
    assert!(
        plan.rule_errors[0]
            .message
            .contains("whole number from 0 to 100"),
        "{:?}",
        plan.rule_errors
    );
}

#[test]
fn an_offer_is_marketing_so_without_consent_the_message_goes_without_it() {
    let (templates, rules) = authoring(&rule("sorry", 50, "[rule.offer]\ndiscount_percent = 15"));
    let events = [delayed("e1", "s1", "backlog", 1)];
    let no_consent = snapshot_of(json!({"id": "c-1", "name": "Jamie",
        "phone": "+12125550142", "consent": {"marketing": false}}));
    let authored = (&rules, &templates);
    let plan = plan_for(&events, no_consent, authored, &Policy::none(), Utc::now());
    // The apology still goes, on the transactional terms of its rule, without a code.
    assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
    assert!(plan.changes.outreach[0].offer.is_none());
    assert_eq!(plan.withheld_offers.len(), 1);
    assert_eq!(plan.withheld_offers[0].reason, "no_marketing_consent");

    // With consent, the same decision carries the code.
    let plan = plan_for(&events, snapshot(), authored, &Policy::none(), Utc::now());
    assert!(plan.changes.outreach[0].offer.is_some());
    assert!(plan.withheld_offers.is_empty());
}

#[test]
fn only_advertising_to_a_korean_phone_carries_the_korean_ad_label() {
    let (templates, rules) = authoring(
        &[
            rule(
                "sorry",
                50,
                "when = \"data.reason == 'weather'\"\n[rule.offer]\ndiscount_percent = 10",
            ),
            rule("plain", 10, ""),
        ]
        .join("\n"),
    );
    let templates = templates.with_korean_ad_label(crate::render::KoreanAdLabel {
        sender: "슈즈샵".into(),
        opt_out: "무료거부 080-123-4567".into(),
    });
    let decide_for = |phone: &str, reason: &str| {
        let snapshot = snapshot_of(json!({"id": "c-1", "name": "Jamie", "phone": phone,
                                          "consent": {"marketing": true}}));
        let events = [delayed("e1", "s1", reason, 1)];
        let plan = plan_for(
            &events,
            snapshot,
            (&rules, &templates),
            &Policy::none(),
            Utc::now(),
        );
        bodies(&plan).remove(0)
    };
    let code_free = |body: String| body.split(" 10%").next().unwrap().to_owned();
    // An offer to a Korean phone: labelled, with the sender and the free opt-out line.
    let ad = decide_for("+821012345678", "weather");
    assert!(ad.starts_with("(광고)슈즈샵 sorry: hi Jamie"), "{ad}");
    assert!(ad.ends_with("\n무료거부 080-123-4567"), "{ad}");
    // No offer, or not a Korean phone: as written.
    assert_eq!(decide_for("+821012345678", "backlog"), "plain: hi Jamie");
    assert_eq!(
        code_free(decide_for("+12125550142", "weather")),
        "sorry: hi Jamie"
    );
}

/// A marketing rule for `reason == 'promo'` (priority 90), and a transactional apology
/// with 10 % off for everything else.
fn promotion_and_apology() -> (Templates, RuleSet) {
    authoring(
        &[
            rule(
                "promo",
                90,
                "category = \"marketing\"\nwhen = \"data.reason == 'promo'\"",
            ),
            rule("sorry", 50, "[rule.offer]\ndiscount_percent = 10"),
        ]
        .join("\n"),
    )
}

#[test]
fn an_open_incident_holds_marketing_back_from_the_customers_it_affects() {
    let now = Utc::now();
    let (templates, rules) = promotion_and_apology();
    let incident = |status| crate::domain::Incident {
        id: EntityId::parse("inc-1").unwrap(),
        title: Some("Checkout down".into()),
        severity: Some("major".into()),
        status,
        affected: json!({"regions": ["kr"]}),
        started_at: Some(now),
        resolved_at: None,
        updated_at: now,
        peak_severity: None,
    };
    let run_with = |region: &str, status, reason: &str| {
        let mut snapshot = snapshot_of(json!({"id": "c-1", "name": "Jamie",
            "phone": "+12125550142", "region": region, "consent": {"marketing": true}}));
        snapshot
            .incidents
            .insert(EntityId::parse("inc-1").unwrap(), incident(status));
        let events = [delayed("e1", "s1", reason, 1)];
        plan_for(
            &events,
            snapshot,
            (&rules, &templates),
            &Policy::none(),
            now,
        )
    };
    // In Seoul, under the open incident: no promotion, and the apology without its code.
    let plan = run_with("kr-seoul", IncidentStatus::Open, "promo");
    assert!(plan.changes.outreach.is_empty());
    assert_eq!(plan.skipped[0].reason, "open_incident");
    assert!(
        plan.skipped[0].detail.contains("incident inc-1"),
        "{}",
        plan.skipped[0].detail
    );
    let plan = run_with("kr-seoul", IncidentStatus::Open, "backlog");
    assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
    assert!(plan.changes.outreach[0].offer.is_none());
    assert_eq!(plan.withheld_offers[0].reason, "open_incident");
    // Elsewhere, or once it is resolved: as usual.
    let plan = run_with("us-ny", IncidentStatus::Open, "backlog");
    assert!(plan.changes.outreach[0].offer.is_some());
    let plan = run_with("kr-seoul", IncidentStatus::Resolved, "promo");
    assert_eq!(bodies(&plan), ["promo: hi Jamie"]);
}

#[test]
fn marketing_beyond_the_cap_is_skipped_and_an_offer_beyond_it_is_withheld() {
    let now = Utc::now();
    let policy = Policy {
        caps: crate::policy::CapSettings::default(),
        ..Policy::none()
    };
    let (templates, rules) = promotion_and_apology();
    let run_with = |hours_ago: &[i64], reason: &str| {
        let mut snapshot = snapshot();
        snapshot.history.marketing.insert(
            CustomerId::parse("c-1").unwrap(),
            hours_ago
                .iter()
                .map(|h| now - chrono::Duration::hours(*h))
                .collect(),
        );
        let events = [delayed("e1", "s1", reason, 1)];
        plan_for(&events, snapshot, (&rules, &templates), &policy, now)
    };
    // Two in the last 24 hours: the marketing rule is skipped, and the next rule does
    // not take over — the cap is on the customer, not the rule.
    let plan = run_with(&[1, 23], "promo");
    assert!(plan.changes.outreach.is_empty());
    assert_eq!(plan.skipped[0].reason, "frequency_cap");
    // One of them 25 hours ago: the window has rolled past it.
    let plan = run_with(&[1, 25], "promo");
    assert_eq!(bodies(&plan), ["promo: hi Jamie"]);
    // The transactional apology still goes, without its discount.
    let plan = run_with(&[1, 23], "backlog");
    assert_eq!(bodies(&plan), ["sorry: hi Jamie"]);
    assert!(plan.changes.outreach[0].offer.is_none());
    assert_eq!(plan.withheld_offers[0].reason, "frequency_cap");
    // Within one batch, the third offer is the one withheld.
    let events: Vec<Accepted> = (0..3)
        .map(|i| delayed(&format!("e{i}"), &format!("s{i}"), "backlog", 1))
        .collect();
    let plan = plan_for(&events, snapshot(), (&rules, &templates), &policy, now);
    let offers: Vec<bool> = plan
        .changes
        .outreach
        .iter()
        .map(|o| o.offer.is_some())
        .collect();
    assert_eq!(offers, [true, true, false]);
}
