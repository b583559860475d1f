//! The store's aggregates driven step by step, on every backend: what one verb writes, the
//! next one reads. Each test is written once against `Store` and run on a fresh SQLite file and
//! on a fresh PostgreSQL database.

use chrono::Duration;
use serde_json::json;

use crate::domain::{
    Channel, CustomerId, DiscountCode, EntityId, Experience, ExperienceKind, History,
    IdempotencyKey, Offer, Redemption, RiskScores, Shipment, ShipmentStatus,
};
use crate::store::test_support::{at, delayed, intake, outreach, queue_delay_notice, RawSql};
use crate::store::{
    AttemptRecord, AttemptResult, Changes, ClaimedMessage, PurgeCursor, Refs, Store,
};

/// Runs each named test (an `async fn(&impl Store)`) on SQLite and on PostgreSQL.
macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test]
                async fn sqlite() {
                    let (_file, store) = crate::store::test_support::store().await;
                    super::$test(&store).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let (_database, store) = crate::store::test_support::postgres().await;
                    super::$test(&store).await;
                }
            }
        )*
    };
}

on_each_backend!(
    an_event_is_stored_with_the_parcel_and_order_it_is_about,
    a_claimed_message_carries_its_scores_and_how_its_parcel_stands_now,
    a_cancelled_message_voids_its_code_and_a_live_code_is_redeemed_once,
    an_incident_in_a_region_takes_in_the_regions_inside_it,
    a_claim_kept_alive_is_not_taken_and_one_taken_over_is_neither_kept_nor_recorded,
    a_batch_counts_old_experiences_as_if_it_read_each_one,
    the_experience_summaries_follow_every_write_and_purge,
    a_delivery_cancels_the_waiting_apology_about_its_parcel_and_voids_its_code,
);

async fn an_event_is_stored_with_the_parcel_and_order_it_is_about(store: &impl Store) {
    let event = delayed();
    intake(
        store,
        &event,
        Changes::default(),
        at("2026-11-23T09:00:01Z"),
    )
    .await;
    let stored = store
        .event(&event.event.key)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.about.shipment_id.as_ref().map(EntityId::as_str),
        Some("shp-1")
    );
    assert_eq!(
        stored.about.order_id.as_ref().map(EntityId::as_str),
        Some("o-1")
    );
    assert_eq!(stored.about.incident_id, None);
    // What is stored parses back into the event that was accepted.
    let again = stored.accepted().expect("parses");
    assert_eq!(again.about(), event.about());
    assert_eq!(again.event.data, event.event.data);
}

async fn a_claimed_message_carries_its_scores_and_how_its_parcel_stands_now(store: &impl Store) {
    let now = at("2026-11-23T09:00:01Z");
    queue_delay_notice(store, now).await;
    // The parcel arrives before the message is claimed.
    let delivered = Shipment {
        id: EntityId::parse("shp-1").expect("an id"),
        order_id: EntityId::parse("o-1").ok(),
        customer_id: CustomerId::parse("c-1").ok(),
        carrier: Some("CJ".into()),
        tracking_number: None,
        tracking_url: None,
        promised_by: Some(at("2026-11-25T09:00:00Z")),
        new_eta: None,
        status: ShipmentStatus::Delivered,
        region: None,
        last_scan_at: None,
        delivered_at: Some(at("2026-11-23T10:00:00Z")),
        exception_kind: None,
        updated_at: at("2026-11-23T10:00:00Z"),
    };
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(
        &Changes {
            shipments: vec![delivered],
            ..Changes::default()
        },
        now,
    )
    .await
    .expect("apply");
    tx.commit().await.expect("commit");

    let claimed = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let message = &claimed[0];
    assert_eq!(
        message.risk,
        Some(RiskScores {
            delay: 0.25,
            churn: 0.75
        })
    );
    let current = message.current.as_ref().expect("the event's state");
    assert_eq!(current.event_type, "shipment.delayed");
    assert_eq!(current.shipment_status.as_deref(), Some("delivered"));
    assert_eq!(current.order_status, None, "no order record was written");
    assert!(current.order_shipped, "a parcel of its order exists");
    // Nothing else is due, and a claim under lease is not claimed again.
    let again = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert!(again.is_empty());
}

/// The batch that delivers a parcel cancels the apology still waiting about it — and only that:
/// a message about another parcel, or one being sent right now, is left alone.
async fn a_delivery_cancels_the_waiting_apology_about_its_parcel_and_voids_its_code(
    store: &impl Store,
) {
    let now = at("2026-11-23T09:00:01Z");
    let event = delayed();
    let offer = Offer {
        code: DiscountCode::from_stored("AAAABBBBCCCC".into()),
        percent: 10,
        expires_at: now + Duration::days(30),
    };
    let mut other = outreach(&event, None);
    other.entity = "once:shp-2".into();
    other.shipment_id = Some("shp-2".into());
    other.key = IdempotencyKey::derive("delay", &other.customer_id, "once:shp-2", Channel::Sms);
    let changes = Changes {
        outreach: vec![outreach(&event, Some(offer)), other],
        ..Changes::default()
    };
    intake(store, &event, changes, now).await;

    let later = now + Duration::minutes(5);
    let delivered = Shipment {
        status: ShipmentStatus::Delivered,
        delivered_at: Some(later),
        ..Shipment::apply(None, &event.payload, now).expect("a shipment")
    };
    let changes = Changes {
        shipments: vec![delivered],
        ..Changes::default()
    };
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(&changes, later).await.expect("apply");
    let retracted = tx
        .retract(&crate::policy::retraction::resolutions(&changes), later)
        .await
        .expect("retract");
    tx.commit().await.expect("commit");

    assert_eq!(
        retracted,
        [crate::store::Retracted {
            rule_id: "delay".into(),
            channel: "sms".into()
        }]
    );
    let counts = store.outbox_counts().await.expect("counts");
    assert_eq!((counts.cancelled, counts.pending), (1, 1), "{counts:?}");
    let code = store
        .discount_code(&DiscountCode::from_stored("AAAABBBBCCCC".into()))
        .await
        .expect("read")
        .expect("the code");
    assert!(code.voided_at.is_some(), "{code:?}");
    let timeline = store
        .timeline("c-1", chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .await
        .expect("timeline");
    let reasons: Vec<Option<&str>> = timeline
        .messages
        .iter()
        .map(|m| m.last_error.as_deref())
        .collect();
    assert!(
        reasons.contains(&Some("cancelled: the parcel was delivered")),
        "{reasons:?}"
    );
}

async fn a_cancelled_message_voids_its_code_and_a_live_code_is_redeemed_once(store: &impl Store) {
    let now = at("2026-11-23T09:00:01Z");
    let event = delayed();
    let offer = |code: &str| Offer {
        code: DiscountCode::from_stored(code.into()),
        percent: 10,
        expires_at: now + Duration::days(30),
    };
    let mut second = outreach(&event, Some(offer("DDDDEEEEFFFF")));
    second.entity = "once:other".into();
    second.key = IdempotencyKey::derive("delay", &second.customer_id, "once:other", Channel::Sms);
    let changes = Changes {
        outreach: vec![outreach(&event, Some(offer("AAAABBBBCCCC"))), second],
        ..Changes::default()
    };
    intake(store, &event, changes, now).await;
    let claimed = store
        .claim_due(now, std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    let cancelled = claimed
        .iter()
        .find(|m| m.offer.as_ref().map(|o| o.code.as_stored()) == Some("AAAABBBBCCCC"))
        .expect("the first message");
    let later = now + Duration::seconds(1);
    store
        .record_attempts(&[AttemptRecord {
            outbox_id: cancelled.id,
            attempt: cancelled.attempt,
            gateway: "sandbox".into(),
            started_at: later,
            finished_at: later,
            result: AttemptResult::Cancelled {
                reason: "the parcel was delivered".into(),
            },
            channel: Channel::Sms,
            effect: None,
            switch: None,
        }])
        .await
        .expect("record");

    let void = DiscountCode::from_stored("AAAABBBBCCCC".into());
    assert_eq!(
        store
            .discount_code(&void)
            .await
            .expect("read")
            .expect("issued")
            .voided_at,
        Some(later)
    );
    assert_eq!(
        store
            .redeem_code(&void, None, None, later)
            .await
            .expect("redeem"),
        Redemption::Void { at: later }
    );
    let live = DiscountCode::from_stored("DDDDEEEEFFFF".into());
    assert!(matches!(
        store
            .redeem_code(&live, Some("c-1"), Some("o-9"), later)
            .await
            .expect("redeem"),
        Redemption::Redeemed { percent: 10, .. }
    ));
    assert_eq!(
        store
            .redeem_code(&live, Some("c-1"), Some("o-10"), later)
            .await
            .expect("redeem"),
        Redemption::AlreadyRedeemed { at: later }
    );
}

async fn an_incident_in_a_region_takes_in_the_regions_inside_it(store: &impl Store) {
    let customer = |id: &str, region: &str| {
        (
            CustomerId::parse(id).expect("an id"),
            crate::domain::CustomerDoc::from_object(
                json!({"id": id, "region": region})
                    .as_object()
                    .cloned()
                    .expect("an object"),
            ),
        )
    };
    let changes = Changes {
        customers: vec![
            customer("c-1", "kr"),
            customer("c-2", "kr-seoul"),
            customer("c-3", "krx"),
            customer("c-4", "us-ny"),
            customer("c-5", "kr-busan-haeundae"),
        ],
        ..Changes::default()
    };
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(&changes, at("2026-11-23T09:00:00Z"))
        .await
        .expect("apply");
    tx.commit().await.expect("commit");
    let in_regions = |regions: &[&str]| {
        crate::store::Audience::Affected(crate::domain::Affected {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            ..crate::domain::Affected::default()
        })
    };
    let count = |audience| async move { store.audience_count(&audience).await.expect("count") };
    // `kr` takes in kr-seoul and kr-busan-haeundae, not `krx`.
    assert_eq!(count(in_regions(&["kr"])).await, 3);
    assert_eq!(count(in_regions(&["kr-busan"])).await, 1);
    assert_eq!(count(in_regions(&["kr-seoul", "us"])).await, 2);
    assert_eq!(count(in_regions(&["seoul"])).await, 0);
    assert_eq!(count(in_regions(&[])).await, 5, "nobody named: everyone");
}

async fn a_claim_kept_alive_is_not_taken_and_one_taken_over_is_neither_kept_nor_recorded(
    store: &impl Store,
) {
    let now = at("2026-11-23T09:00:01Z");
    queue_delay_notice(store, now).await;
    let lease = std::time::Duration::from_secs(60);
    let claimed = store.claim_due(now, lease, 10).await.expect("claim");
    let held = [(claimed[0].id, claimed[0].attempt)];

    // Kept alive past its lease: another dispatcher finds nothing to take.
    let later = now + Duration::seconds(50);
    let kept = store
        .extend_claims(&held, later + Duration::seconds(60))
        .await
        .expect("extend");
    assert_eq!(kept, vec![claimed[0].id]);
    let after_lease = now + Duration::seconds(90);
    assert!(store
        .claim_due(after_lease, lease, 10)
        .await
        .expect("claim")
        .is_empty());

    // Left to expire, another dispatcher takes it over; the first can no longer keep it.
    let expired = now + Duration::seconds(200);
    let taken = store.claim_due(expired, lease, 10).await.expect("claim");
    assert_eq!(taken.len(), 1);
    assert!(taken[0].ambiguous, "its first attempt's outcome is unknown");
    assert!(store
        .extend_claims(&held, expired + Duration::seconds(600))
        .await
        .expect("extend")
        .is_empty());

    // The first one's outcome, arriving late (it was paused), is not recorded: the row is the
    // new owner's, whose outcome is the one that stands.
    let sent = |claim: &ClaimedMessage, provider_id: &str| AttemptRecord {
        outbox_id: claim.id,
        attempt: claim.attempt,
        gateway: "sandbox".into(),
        started_at: expired,
        finished_at: expired,
        result: AttemptResult::Sent {
            provider_id: provider_id.into(),
        },
        channel: Channel::Sms,
        effect: None,
        switch: None,
    };
    let stale = store
        .record_attempts(&[sent(&claimed[0], "from-the-paused-one")])
        .await
        .expect("record");
    assert_eq!(stale, vec![claimed[0].id], "reported as taken over");
    assert_eq!(store.outbox_counts().await.expect("counts").sending, 1);
    let current = store
        .record_attempts(&[sent(&taken[0], "from-the-new-owner")])
        .await
        .expect("record");
    assert!(current.is_empty());
    let timeline = store
        .timeline(&taken[0].customer_id, now - Duration::days(1))
        .await
        .expect("the timeline");
    let message = &timeline.messages[0];
    assert_eq!(message.status, "sent");
    let recorded: Vec<(u32, &str)> = message
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(recorded, vec![(2, "sent")], "only the new owner's attempt");
}

/// A batch deciding between `earliest` and `latest` is told how many of a customer's
/// experiences every one of its decisions counts, and reads only the rest one by one; each
/// decision still counts exactly what reading every row would.
async fn a_batch_counts_old_experiences_as_if_it_read_each_one(store: &impl Store) {
    let earliest = at("2026-11-23T09:00:00Z");
    let latest = earliest + Duration::hours(2);
    let days = |n: i64| earliest - Duration::days(n);
    let (c1, c2) = (
        CustomerId::parse("c-1").expect("an id"),
        CustomerId::parse("c-2").expect("an id"),
    );
    let stored = [
        // In every decision's window: counted by the store.
        (&c1, ExperienceKind::Delay, "s-twice", days(10)),
        (&c1, ExperienceKind::Delay, "s-twice", days(5)),
        (&c1, ExperienceKind::Exception, "s-broken", days(20)),
        (&c1, ExperienceKind::Outage, "inc-1", days(30)),
        // Leaving the window during the batch, but the same delay again later: counted once.
        (
            &c1,
            ExperienceKind::Delay,
            "s-again",
            days(90) + Duration::hours(1),
        ),
        (&c1, ExperienceKind::Delay, "s-again", days(40)),
        // Leaving the window during the batch: read.
        (
            &c1,
            ExperienceKind::Delay,
            "s-leaving",
            days(90) + Duration::hours(1),
        ),
        // About a shipment the batch names: read, its events may add to it.
        (&c1, ExperienceKind::Exception, "s-named", days(3)),
        // After the batch's first decision: read.
        (
            &c1,
            ExperienceKind::Exception,
            "s-later",
            earliest + Duration::hours(1),
        ),
        // In the span and after it: counted by the store, the later one not read.
        (&c1, ExperienceKind::Exception, "s-both", days(2)),
        (
            &c1,
            ExperienceKind::Exception,
            "s-both",
            earliest + Duration::minutes(30),
        ),
        // On the span's first day after it begins, and on its last day before it ends.
        (
            &c1,
            ExperienceKind::Delay,
            "s-first-day",
            latest - Duration::days(90) + Duration::hours(1),
        ),
        (
            &c1,
            ExperienceKind::Delay,
            "s-this-morning",
            earliest - Duration::hours(1),
        ),
        // About an incident the batch names: read.
        (&c1, ExperienceKind::Outage, "inc-named", days(8)),
        // Older than any window: not read.
        (&c1, ExperienceKind::Delay, "s-ancient", days(100)),
        (&c2, ExperienceKind::Overdue, "s-other", days(7)),
    ];
    let mut everything = History::default();
    let mut changes = Changes::default();
    for (customer, kind, entity, when) in stored {
        let experience = Experience {
            kind,
            entity: entity.into(),
            at: when,
        };
        everything.record_experience(customer, experience.clone());
        changes.experiences.push((customer.clone(), experience));
    }
    intake(store, &delayed(), changes, earliest).await;

    let mut refs = Refs {
        earliest: Some(earliest),
        latest: Some(latest),
        ..Refs::default()
    };
    refs.customers.extend([c1.clone(), c2.clone()]);
    refs.scored_customers.extend([c1.clone(), c2.clone()]);
    refs.shipments
        .insert(EntityId::parse("s-named").expect("an id"));
    refs.incidents
        .insert(EntityId::parse("inc-named").expect("an id"));
    let mut tx = store.begin_intake().await.expect("begin");
    let history = tx.load(&refs).await.expect("load").history;
    drop(tx);

    assert_eq!(history.shared_experiences.get(&c1), Some(&7));
    assert_eq!(history.shared_experiences.get(&c2), Some(&1));
    let mut read: Vec<&str> = history.experiences[&c1]
        .iter()
        .map(|e| e.entity.as_str())
        .collect();
    read.sort_unstable();
    assert_eq!(read, ["inc-named", "s-later", "s-leaving", "s-named"]);
    for minutes in [0, 29, 30, 60, 61, 120] {
        let t = earliest + Duration::minutes(minutes);
        for customer in [&c1, &c2] {
            assert_eq!(
                history.bad_experiences(customer, t),
                everything.bad_experiences(customer, t),
                "{customer} at {t}"
            );
        }
        for shipment in ["s-named", "s-later"] {
            assert_eq!(
                history.exception_scans(&c1, shipment, t),
                everything.exception_scans(&c1, shipment, t),
                "{shipment} at {t}"
            );
        }
    }
}

/// Asserts that the summaries the triggers keep say what `customer_experiences` holds: each
/// (customer, kind, entity) once with its latest time, and (where the backend keeps it) per
/// customer and day how many of them end there.
pub(crate) async fn assert_summaries_match<S: RawSql>(store: &S) {
    assert_eq!(
        store
            .groups(
                "SELECT customer_id, kind, entity, last_at FROM customer_experience_groups \
                 ORDER BY 1, 2, 3"
            )
            .await,
        store
            .groups(
                "SELECT customer_id, kind, entity, max(at) FROM customer_experiences \
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
            .await,
        "each group's latest experience"
    );
    if !S::KEEPS_DAYS {
        return;
    }
    assert_eq!(
        store
            .days(
                "SELECT customer_id, day, groups FROM customer_experience_days \
                 WHERE groups <> 0 ORDER BY 1, 2"
            )
            .await,
        store
            .days(
                "SELECT customer_id, last_at / 86400000, count(*) FROM ( \
                  SELECT customer_id, max(at) AS last_at FROM customer_experiences \
                  GROUP BY customer_id, kind, entity) g GROUP BY 1, 2 ORDER BY 1, 2"
            )
            .await,
        "groups per customer and day"
    );
}

/// Writes `rows` (customer, kind, entity, when) as one intake batch's experiences.
async fn record_experiences(store: &impl Store, rows: &[(&str, ExperienceKind, &str, &str)]) {
    let mut changes = Changes::default();
    for (customer, kind, entity, when) in rows {
        changes.experiences.push((
            CustomerId::parse(customer).expect("an id"),
            Experience {
                kind: *kind,
                entity: (*entity).into(),
                at: at(when),
            },
        ));
    }
    let mut tx = store.begin_intake().await.expect("begin");
    tx.apply(&changes, at("2026-11-23T09:00:00Z"))
        .await
        .expect("apply");
    tx.commit().await.expect("commit");
}

async fn the_experience_summaries_follow_every_write_and_purge(store: &impl RawSql) {
    use ExperienceKind::{Delay, Exception, Outage};
    record_experiences(
        store,
        &[
            ("c-1", Delay, "s-1", "2026-10-04T09:00:00Z"),
            ("c-1", Delay, "s-1", "2026-11-13T09:00:00Z"),
            ("c-1", Exception, "s-2", "2026-10-24T09:00:00Z"),
            ("c-1", Delay, "s-3", "2026-10-09T09:00:00Z"),
            ("c-1", Delay, "s-3", "2026-10-19T09:00:00Z"),
            ("c-2", Outage, "inc-1", "2026-11-18T09:00:00Z"),
        ],
    )
    .await;
    assert_summaries_match(store).await;
    // An older row arriving late changes nothing; a later one moves its group to a new day;
    // a row stored already is not stored twice.
    record_experiences(
        store,
        &[
            ("c-1", Delay, "s-1", "2026-09-24T09:00:00Z"),
            ("c-1", Exception, "s-2", "2026-11-20T09:00:00Z"),
            ("c-2", Outage, "inc-1", "2026-11-18T09:00:00Z"),
            ("c-3", Delay, "s-4", "2026-11-18T10:00:00Z"),
        ],
    )
    .await;
    assert_summaries_match(store).await;
    // A group's latest row deleted, an earlier one left: the group moves back a day.
    store
        .execute(&format!(
            "DELETE FROM customer_experiences WHERE entity = 's-3' AND at = {}",
            crate::store::millis(at("2026-10-19T09:00:00Z"))
        ))
        .await;
    assert_summaries_match(store).await;
    // The purge, a row at a time: groups with rows left keep counting, the others go.
    let cutoff = at("2026-11-01T00:00:00Z");
    let mut cursor = PurgeCursor::default();
    let mut purged = 0;
    loop {
        let (report, next) = store.purge(cutoff, 1, cursor).await.expect("purge");
        assert_summaries_match(store).await;
        purged += report.experiences;
        cursor = next;
        if !report.more {
            break;
        }
    }
    assert_eq!(purged, 4, "the rows before the cutoff");
    let groups = store
        .groups(
            "SELECT customer_id, kind, entity, last_at FROM customer_experience_groups \
             ORDER BY 1, 3",
        )
        .await;
    let entities: Vec<&str> = groups.iter().map(|(_, _, e, _)| e.as_str()).collect();
    assert_eq!(
        entities,
        ["s-1", "s-2", "inc-1", "s-4"],
        "s-3 is gone, the others still count"
    );
}

/// Experiences an older forewarn stored, on a database migrated up to just before the
/// summaries: the migration that adds them summarises what is there.
pub(crate) async fn old_experiences_are_summarised_by_the_migration(store: &impl RawSql) {
    store
        .execute(
            "INSERT INTO customer_experiences (customer_id, kind, entity, at) VALUES \
             ('c-1', 'delay', 's-1', 1000), ('c-1', 'delay', 's-1', 90000000), \
             ('c-1', 'exception', 's-1', 2000), ('c-2', 'outage', 'inc-1', 3000)",
        )
        .await;

    store.migrate_rest().await;

    assert_summaries_match(store).await;
    let groups = store
        .groups("SELECT customer_id, kind, entity, last_at FROM customer_experience_groups")
        .await;
    assert_eq!(groups.len(), 3);
}
