//! The fan-out worker stepped page by page on a real SQLite file, with the repository's rules
//! and a clock the test moves: the order of passes, the lease between processes, and that a
//! take-over neither skips nor repeats a customer.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{watch, Notify};

use super::fanout::{FanoutWorker, PageReport};
use super::IncidentSettings;
use crate::authoring::{self, AuthoringHandle};
use crate::config::Settings;
use crate::domain::{Accepted, CloudEvent, EntityId, FanoutKind, Payload};
use crate::pipeline::{self, Deciding};
use crate::policy::Policy;
use crate::schedule::{Clock, ManualClock};
use crate::store::test_support::{at, store};
use crate::store::{EventRecord, FanoutPhase, IncidentStore, IntakeStore, SqliteStore, Store};

const CUSTOMERS: usize = 5;

fn accepted(body: serde_json::Value) -> Accepted {
    let event = CloudEvent::parse(body.to_string().as_bytes(), None).expect("an envelope");
    let payload = Payload::parse(event.event_type, &event.data).expect("a payload");
    Accepted { event, payload }
}

/// Customer `i` of Seoul, reachable by SMS; the last one is worth the most.
fn customer(i: usize) -> Accepted {
    accepted(
        json!({"specversion": "1.0", "id": format!("cust-{i}"), "source": "test",
        "type": "customer.upserted",
        "data": {"id": format!("c-{i}"), "name": "Jisoo", "locale": "ko-KR",
                 "phone": format!("+8210{i:08}"), "channels": ["sms"],
                 "consent": {"sms": true}, "region": "kr-seoul",
                 "lifetime_value": {"minor": 10_000 * (i as i64 + 1), "currency": "KRW"}}}),
    )
}

fn outage_started() -> Accepted {
    accepted(
        json!({"specversion": "1.0", "id": "inc-1:started", "source": "test",
        "type": "outage.started",
        "data": {"incident_id": "inc-1", "title": "Checkout errors", "severity": "major",
                 "services": ["checkout"], "regions": ["kr"],
                 "affected": {"regions": ["kr"]}, "message": "Card payments fail."}}),
    )
}

/// The repository's rules and templates, as `forewarn run` loads them.
fn repository_authoring() -> AuthoringHandle {
    let loaded = authoring::load(&Settings::default()).expect("the repository's rules");
    watch::channel(Arc::new(loaded)).1
}

/// Takes `events` in the way intake does: record, load, decide, write, one transaction.
async fn take_in(store: &SqliteStore, authoring: &AuthoringHandle, events: &[Accepted]) {
    let now = Utc::now();
    let authoring = authoring.borrow().clone();
    let mut tx = store.begin_intake().await.expect("begin");
    let records: Vec<EventRecord> = events.iter().map(|a| EventRecord::of(a, now)).collect();
    tx.record_events(&records).await.expect("record");
    let refs = pipeline::refs_of(events, &authoring.rules, now);
    let snapshot = tx.load(&refs).await.expect("load");
    let fresh: Vec<&Accepted> = events.iter().collect();
    let plan = pipeline::decide(
        &fresh,
        snapshot,
        &Deciding::new(&authoring, &Policy::none(), now),
    );
    tx.apply(&plan.changes, now).await.expect("apply");
    tx.commit().await.expect("commit");
}

/// A store with the directory and the announcement in it: one fan-out waiting.
async fn announced() -> (tempfile::TempDir, Arc<SqliteStore>, AuthoringHandle) {
    let (dir, store) = store().await;
    let authoring = repository_authoring();
    let directory: Vec<Accepted> = (0..CUSTOMERS).map(customer).collect();
    take_in(&store, &authoring, &directory).await;
    take_in(&store, &authoring, &[outage_started()]).await;
    (dir, Arc::new(store), authoring)
}

fn worker(
    store: &Arc<SqliteStore>,
    authoring: &AuthoringHandle,
    clock: &Arc<ManualClock>,
) -> FanoutWorker {
    let settings = IncidentSettings {
        page_size: 2,
        rank_window: 4,
        lease: Duration::from_secs(30),
        ..IncidentSettings::default()
    };
    let store: Arc<dyn Store> = store.clone();
    FanoutWorker::new(
        store,
        authoring.clone(),
        Policy::none(),
        settings,
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    )
    .with_clock(clock.clone())
}

/// `(phase, customers, queued, finished)` of a page; anything else as is.
fn page(report: &PageReport) -> (FanoutPhase, usize, usize, bool) {
    match report {
        PageReport::Page {
            phase,
            customers,
            queued,
            finished,
            kind,
            ..
        } => {
            assert_eq!(*kind, FanoutKind::Started);
            (*phase, *customers, *queued, *finished)
        }
        other => panic!("not a page: {other:?}"),
    }
}

async fn progress(store: &SqliteStore, now: DateTime<Utc>) -> crate::store::IncidentProgress {
    let id = EntityId::parse("inc-1").expect("an id");
    store.incident_progress(&id, now).await.expect("progress")
}

#[tokio::test]
async fn ranks_a_window_then_sends_it_then_ranks_the_rest_and_finishes() {
    let (_dir, store, authoring) = announced().await;
    let clock = Arc::new(ManualClock::new(at("2026-11-23T09:00:00Z")));
    let worker = worker(&store, &authoring, &clock);

    let mut pages = Vec::new();
    loop {
        match worker.step().await.expect("a page") {
            PageReport::Idle => break,
            report => pages.push(page(&report)),
        }
    }
    use FanoutPhase::{Rank, Send};
    assert_eq!(
        pages,
        [
            // Two pages of two fill the window of four…
            (Rank, 2, 0, false),
            (Rank, 2, 0, false),
            // …which is sent, two at a time, until a short page says it is empty…
            (Send, 2, 2, false),
            (Send, 2, 2, false),
            (Send, 0, 0, false),
            // …then the last customer is ranked (a short page: the audience is done) and sent.
            (Rank, 1, 0, false),
            (Send, 1, 1, true),
        ]
    );
    let progress = progress(&store, clock.now()).await;
    let fanout = progress.fanout("inc-1:started").expect("the fan-out");
    assert_eq!(fanout.status, "done");
    assert_eq!(
        (fanout.ranked, fanout.customers, fanout.queued),
        (CUSTOMERS as u64, CUSTOMERS as u64, CUSTOMERS as u64)
    );
    assert_eq!(progress.messages.queued, CUSTOMERS as u64);
}

#[tokio::test]
async fn a_second_process_waits_out_the_lease_then_goes_on_where_the_first_stopped() {
    let (_dir, store, authoring) = announced().await;
    let start = at("2026-11-23T09:00:00Z");
    let first_clock = Arc::new(ManualClock::new(start));
    let second_clock = Arc::new(ManualClock::new(start));
    let first = worker(&store, &authoring, &first_clock);
    let second = worker(&store, &authoring, &second_clock);

    // The first process ranks a window and sends a page, then goes silent (a pause, a crash).
    for _ in 0..3 {
        assert!(!page(&first.step().await.expect("a page")).3);
    }
    // Its lease holds the fan-out against the second…
    second_clock.set(start + chrono::Duration::seconds(29));
    assert_eq!(second.step().await.expect("a step"), PageReport::Idle);
    // …until it runs out.
    second_clock.set(start + chrono::Duration::seconds(31));
    let mut finished = false;
    while !finished {
        match second.step().await.expect("a page") {
            PageReport::Idle => break,
            report => finished = page(&report).3,
        }
    }
    assert!(finished, "the second process finished the fan-out");
    // The first, back, finds nothing of it left to do: the page it would have sent is gone.
    assert_eq!(first.step().await.expect("a step"), PageReport::Idle);

    let progress = progress(&store, second_clock.now()).await;
    let fanout = progress.fanout("inc-1:started").expect("the fan-out");
    // Every customer decided once: counted once each, one message each.
    assert_eq!(
        (fanout.customers, fanout.queued),
        (CUSTOMERS as u64, CUSTOMERS as u64)
    );
    assert_eq!(progress.messages.total(), CUSTOMERS as u64);
}
