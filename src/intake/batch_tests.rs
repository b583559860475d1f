//! Intake stepped batch by batch: real JetStream messages from a private nats-server, a real
//! SQLite file, the repository's rules, and a clock the test sets — what one batch reports,
//! what it acks and dead-letters, and that its decisions are made at the clock's hour.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::{
    ensure_consumer, BatchReport, DeadLetterPublisher, Intake, IntakeSettings, HEADER_ERROR,
};
use crate::authoring;
use crate::cli::demo::nats_server::NatsServer;
use crate::config::Settings;
use crate::domain::EventKey;
use crate::policy::{Policy, QuietHours, QuietHoursSettings};
use crate::schedule::ManualClock;
use crate::store::test_support::{at, store};
use crate::store::{IncidentStore, OutboxReads, SqliteStore, Store};

/// A delay notice for customer `c-{i}` in Seoul, reachable by SMS.
fn delayed(i: usize) -> Value {
    json!({"specversion": "1.0", "id": format!("evt-delay-{i}"), "source": "test/carrier",
        "type": "shipment.delayed", "time": "2026-11-23T09:15:00Z",
        "data": {"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
                 "customer": {"id": format!("c-{i}"), "name": "Jisoo", "locale": "ko-KR",
                              "timezone": "Asia/Seoul", "phone": format!("+8210{i:08}"),
                              "channels": ["sms"]},
                 "carrier": "CJ", "promised_by": "2026-11-25T09:00:00Z",
                 "new_eta": "2026-11-27T09:00:00Z"}})
}

/// A nats-server, its stream and consumer, a fresh database, and an intake on `clock`.
struct Bench {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    js: jetstream::Context,
    consumer: consumer::Consumer<consumer::pull::Config>,
    store: Arc<SqliteStore>,
    wake: Arc<Notify>,
    intake: Intake,
}

async fn bench(clock: Arc<ManualClock>, policy: Policy) -> Bench {
    let nats = NatsServer::start_local().expect("a nats-server");
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let settings = Settings::default();
    let consumer = ensure_consumer(&js, &settings.nats, &settings.intake)
        .await
        .expect("the stream and consumer");
    let (dir, store) = store().await;
    let store = Arc::new(store);
    let loaded = authoring::load(&settings).expect("the repository's rules");
    let wake = Arc::new(Notify::new());
    let as_store: Arc<dyn Store> = store.clone();
    let intake = Intake::new(
        as_store,
        watch::channel(Arc::new(loaded)).1,
        DeadLetterPublisher::new(js.clone(), &settings.nats.dlq_subject_prefix),
        None,
        IntakeSettings {
            retry_delay: Duration::from_millis(100),
            ..IntakeSettings::default()
        },
        wake.clone(),
    )
    .with_policy(policy)
    .with_clock(clock);
    Bench {
        _nats: nats,
        _dir: dir,
        js,
        consumer,
        store,
        wake,
        intake,
    }
}

impl Bench {
    /// Publishes `bodies` and processes them as one batch.
    async fn batch(&self, bodies: &[Vec<u8>]) -> BatchReport {
        let messages = self.fetch(bodies).await;
        self.intake.process(messages).await
    }

    /// Publishes `bodies` and pulls them back as the intake's messages.
    async fn fetch(&self, bodies: &[Vec<u8>]) -> Vec<jetstream::Message> {
        for body in bodies {
            self.js
                .publish("events.test", body.clone().into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        let mut messages = Vec::new();
        while messages.len() < bodies.len() {
            let mut fetched = self
                .consumer
                .fetch()
                .max_messages(bodies.len() - messages.len())
                .messages()
                .await
                .expect("fetch");
            while let Some(message) = fetched.next().await {
                messages.push(message.expect("a message"));
            }
        }
        messages
    }

    /// Waits until the server has every ack (acks are sent without waiting for a reply).
    async fn wait_all_acked(&self) {
        let mut consumer = self.consumer.clone();
        let acked = async {
            while consumer
                .info()
                .await
                .expect("consumer info")
                .num_ack_pending
                > 0
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), acked)
            .await
            .expect("every message acked");
    }
}

fn bytes(event: &Value) -> Vec<u8> {
    event.to_string().into_bytes()
}

#[tokio::test]
async fn a_batch_reports_each_message_acks_all_and_dead_letters_the_bad_one() {
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:00:00Z")));
    let b = bench(clock, Policy::none()).await;
    let mut no_type = delayed(3);
    no_type.as_object_mut().unwrap().remove("type");

    let report = b
        .batch(&[
            bytes(&delayed(1)),
            bytes(&delayed(2)),
            // A redelivery inside the same batch…
            bytes(&delayed(1)),
            // …and an envelope without its type.
            bytes(&no_type),
        ])
        .await;
    assert_eq!(
        report,
        BatchReport {
            processed: 2,
            duplicates: 1,
            dead_lettered: 1,
            outreach: 2,
            redelivered: 0,
        }
    );
    b.wait_all_acked().await;
    // The dispatcher was told there is work.
    tokio::time::timeout(Duration::from_secs(5), b.wake.notified())
        .await
        .expect("the dispatcher woken");
    assert_eq!(b.store.outbox_counts().await.unwrap().pending, 2);
    // The dead letter names the missing field.
    let mut dlq =
        b.js.get_stream("FOREWARN_DLQ")
            .await
            .expect("the DLQ stream");
    assert_eq!(dlq.info().await.expect("DLQ info").state.messages, 1);
    let letter = dlq.get_raw_message(1).await.expect("the dead letter");
    let error = letter.headers.get(HEADER_ERROR).expect("an error header");
    assert!(error.as_str().contains("type"), "{error}");

    // The same event in a later batch is a duplicate: no second message.
    let again = b.batch(&[bytes(&delayed(2))]).await;
    assert_eq!(
        again,
        BatchReport {
            duplicates: 1,
            ..BatchReport::default()
        }
    );
    assert_eq!(b.store.outbox_counts().await.unwrap().pending, 2);
}

#[tokio::test]
async fn chunks_arriving_while_the_database_is_busy_fill_a_batch_then_start_the_next() {
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:00:00Z")));
    let b = bench(clock, Policy::none()).await;
    let mut waiting = VecDeque::new();
    let first = b.fetch(&[bytes(&delayed(1)), b"not json".to_vec()]).await;
    b.intake.take_in(&mut waiting, first, 3, usize::MAX);
    let second = b
        .fetch(&[bytes(&delayed(2)), bytes(&delayed(3)), bytes(&delayed(1))])
        .await;
    b.intake.take_in(&mut waiting, second, 3, usize::MAX);
    let sizes: Vec<usize> = waiting.iter().map(|p| p.messages.len()).collect();
    assert_eq!(sizes, [3, 2]);

    let mut reports = Vec::new();
    while let Some(batch) = waiting.pop_front() {
        reports.push(b.intake.settle(b.intake.commit(batch).await).await);
    }
    assert_eq!(
        reports,
        [
            BatchReport {
                processed: 2,
                dead_lettered: 1,
                outreach: 2,
                ..BatchReport::default()
            },
            // The repeat of the first event, in the batch it spilled into.
            BatchReport {
                processed: 1,
                duplicates: 1,
                outreach: 1,
                ..BatchReport::default()
            },
        ]
    );
    b.wait_all_acked().await;
    assert_eq!(b.store.outbox_counts().await.unwrap().pending, 3);
}

#[tokio::test]
async fn large_events_are_batched_by_their_bytes_as_well_as_their_count() {
    let clock = Arc::new(ManualClock::new(at("2026-11-23T01:00:00Z")));
    let b = bench(clock, Policy::none()).await;
    let events: Vec<Vec<u8>> = (1..=5).map(|i| bytes(&delayed(i))).collect();
    let size = events[0].len();
    assert!(events.iter().all(|e| e.len() == size), "events of one size");
    // Room for two events a batch; a third would not fit.
    let limit = size * 2 + size / 2;
    let mut waiting = VecDeque::new();
    let first = b.fetch(&events[..1]).await;
    b.intake.take_in(&mut waiting, first, 100, limit);
    let rest = b.fetch(&events[1..]).await;
    b.intake.take_in(&mut waiting, rest, 100, limit);
    let sizes: Vec<usize> = waiting.iter().map(|p| p.messages.len()).collect();
    assert_eq!(
        sizes,
        [2, 2, 1],
        "the first batch filled up to its bytes, then new ones"
    );

    // An event larger than the bound is a batch of its own, not refused.
    let mut alone = VecDeque::new();
    let large = b.fetch(&[bytes(&delayed(6))]).await;
    b.intake.take_in(&mut alone, large, 100, size / 2);
    assert_eq!(alone.len(), 1);

    let mut processed = 0;
    for batch in waiting.into_iter().chain(alone) {
        processed += b
            .intake
            .settle(b.intake.commit(batch).await)
            .await
            .processed;
    }
    b.wait_all_acked().await;
    assert_eq!(processed, 6);
    assert_eq!(b.store.outbox_counts().await.unwrap().pending, 6);
}

#[tokio::test]
async fn a_batch_is_recorded_and_decided_at_the_clock_s_hour() {
    // 23:30 in Seoul: inside the default transactional SMS quiet window (22:00–07:00).
    let late = at("2026-11-23T14:30:00Z");
    let policy = Policy {
        quiet: QuietHours::new(&QuietHoursSettings::default()).expect("the default windows"),
        ..Policy::none()
    };
    let b = bench(Arc::new(ManualClock::new(late)), policy).await;

    let report = b.batch(&[bytes(&delayed(1))]).await;
    assert_eq!((report.processed, report.outreach), (1, 1));
    let key = EventKey {
        source: "test/carrier".into(),
        id: "evt-delay-1".into(),
    };
    let record = b.store.event(&key).await.unwrap().expect("the event");
    assert_eq!(record.received_at, late);
    // Held for the morning in the customer's time zone, not sent at night.
    let waiting = b.store.waiting(10).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].due, at("2026-11-23T22:00:00Z"));
}
