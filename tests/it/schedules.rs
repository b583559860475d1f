//! Schedules notice what no event announces. Time is injected (a `ManualClock` drives an
//! in-process scheduler against the app's database); the events are real: the synthetic ones
//! go through the app's nats-server and the real `forewarn run`, like a backend's.

use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use forewarn::schedule::{ManualClock, Scheduler, TickResult};
use forewarn::store::RunRecord;
use serde_json::{json, Value};

use crate::helpers::*;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Now, in whole seconds, like cron ticks.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn customer(i: usize) -> Value {
    json!({"id": format!("c-{i}"), "name": "Jisoo Kim", "locale": "ko-KR", "timezone": "Asia/Seoul",
           "email": format!("jisoo{i}@example.com"), "phone": format!("+8210{:08}", i),
           "channels": ["email"], "consent": {"email": true, "sms": true}})
}

fn event(id: String, kind: &str, time: DateTime<Utc>, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test/shop", "type": kind,
           "time": ts(time), "data": data})
}

fn placed(i: usize, at: DateTime<Utc>) -> Value {
    event(
        format!("placed-{i}"),
        "order.placed",
        at,
        json!({"order_id": format!("ord-{i}"), "customer": customer(i),
               "items": [{"sku": "SHOE-270", "name": "Runner 270", "quantity": 1,
                          "unit_price": {"minor": 129000, "currency": "KRW"}}],
               "total": {"minor": 129000, "currency": "KRW"}, "promised_by": ts(at + Duration::days(3))}),
    )
}

fn created(i: usize, promised_by: DateTime<Utc>, at: DateTime<Utc>) -> Value {
    event(
        format!("created-{i}"),
        "shipment.created",
        at,
        json!({"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
               "customer": customer(i), "carrier": "CJ대한통운", "tracking_number": format!("T{i}"),
               "promised_by": ts(promised_by),
               "destination": {"region": "kr-seoul", "postal_code": "06236"}}),
    )
}

fn delayed(
    i: usize,
    promised_by: DateTime<Utc>,
    new_eta: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Value {
    event(
        format!("delayed-{i}-{}", new_eta.timestamp()),
        "shipment.delayed",
        at,
        json!({"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
               "customer_id": format!("c-{i}"), "carrier": "CJ대한통운",
               "promised_by": ts(promised_by), "new_eta": ts(new_eta)}),
    )
}

fn delivered(i: usize, at: DateTime<Utc>) -> Value {
    event(
        format!("delivered-{i}"),
        "shipment.delivered",
        at,
        json!({"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
               "delivered_at": ts(at)}),
    )
}

fn lost(i: usize, at: DateTime<Utc>) -> Value {
    event(
        format!("lost-{i}"),
        "shipment.exception",
        at,
        json!({"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
               "customer_id": format!("c-{i}"), "kind": "lost"}),
    )
}

fn cancelled(i: usize, at: DateTime<Utc>) -> Value {
    event(
        format!("cancelled-{i}"),
        "order.cancelled",
        at,
        json!({"order_id": format!("ord-{i}"), "customer_id": format!("c-{i}"),
               "reason": "customer_request"}),
    )
}

/// Runs the tick at `at` of the schedule `name` as of `at`; asserts it ran and returns what
/// it found and emitted.
async fn run_at(scheduler: &Scheduler, name: &str, at: DateTime<Utc>) -> (u64, u64) {
    let schedule = scheduler.schedule(name).unwrap();
    match scheduler.run_tick(schedule, at, at).await {
        TickResult::Ran(report) => (report.found, report.emitted),
        other => panic!("{name} did not run at {at}: {other:?}"),
    }
}

/// (customer, entity) of every outreach of `rule`, in queue order; the entity is the rule's
/// `once_per` value.
async fn outreach_of(app: &App, rule: &str) -> Vec<(String, String)> {
    app.db
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.rule_id == rule)
        .map(|m| (m.customer_id, m.entity))
        .collect()
}

/// How many synthetic `shipment.overdue` events intake stored.
async fn overdue_events(app: &App) -> usize {
    app.db.events_of_type("shipment.overdue").await.len()
}

/// The runs of `schedule` that ended, oldest first.
async fn finished_runs(app: &App, schedule: &str) -> Vec<RunRecord> {
    let mut runs = app.store.schedule_runs(schedule, 1_000).await.unwrap();
    runs.retain(|r| r.finished_at.is_some());
    runs.reverse();
    runs
}

async fn wait_outreach(app: &App, rule: &str, n: usize) {
    wait_for(&format!("{n} outreach of {rule}"), || async {
        outreach_of(app, rule).await.len() >= n
    })
    .await;
    app.wait_intake_idle().await;
}

async fn publish_all(app: &App, events: &[Value]) {
    for e in events {
        app.publish(e).await;
    }
    app.wait_intake_idle().await;
}

#[tokio::test]
async fn a_parcel_past_its_promise_is_announced_once_per_promise() {
    let app = spawn_app_queueing_only().await;
    let now = now();
    let promise = now - Duration::days(2);
    let long_ago = now - Duration::days(5);
    publish_all(
        &app,
        &[
            // 1: silent since it was handed over.
            created(1, promise, long_ago),
            // 2: delivered before the sweep.
            created(2, promise, long_ago),
            delivered(2, now - Duration::days(1)),
            // 3: not due yet.
            created(3, now + Duration::days(1), long_ago),
            // 4: lost, and the customer was told.
            created(4, promise, long_ago),
            lost(4, now - Duration::days(3)),
            // 5: its order was cancelled.
            placed(5, long_ago),
            created(5, promise, long_ago),
            cancelled(5, now - Duration::days(3)),
        ],
    )
    .await;

    let clock = Arc::new(ManualClock::new(now));
    let scheduler = app.scheduler(clock.clone(), |_| {}).await;
    assert_eq!(run_at(&scheduler, "overdue", now).await, (1, 1));
    wait_outreach(&app, "shipment-overdue-checkin", 1).await;
    assert_eq!(
        outreach_of(&app, "shipment-overdue-checkin").await,
        [("c-1".to_owned(), format!("once:shp-1@{}", ts(promise)))]
    );
    // The synthetic event went through the stream like a backend's, and says what happened.
    let mut overdue = app.db.events_of_type("shipment.overdue").await;
    assert_eq!(overdue.len(), 1);
    let overdue = overdue.remove(0);
    let (source, data) = (overdue.source, overdue.data);
    assert_eq!(source, "forewarn/schedules");
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["shipment_id"], "shp-1");
    assert_eq!(data["promised_by"], ts(promise));
    assert_eq!(data["hours_overdue"], 48);
    // Support sees where it came from.
    let config = app.config_path();
    let (code, out) = forewarn_cli(
        app.dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "explain",
            "--customer",
            "c-1",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "shipment.overdue (shipment_id shp-1, order_id ord-1) from forewarn/schedules"
        ),
        "{out}"
    );

    // The next sweep finds nothing new: one event per parcel per promise.
    let later = now + Duration::minutes(10);
    clock.set(later);
    assert_eq!(run_at(&scheduler, "overdue", later).await, (0, 0));

    // A delay notice gives parcel 1 a new date. When that passes too, the customer hears
    // again — and parcel 3's promise has passed meanwhile.
    let new_eta = now + Duration::days(1);
    publish_all(&app, &[delayed(1, promise, new_eta, now)]).await;
    let after_new_eta = new_eta + Duration::hours(7);
    clock.set(after_new_eta);
    assert_eq!(run_at(&scheduler, "overdue", after_new_eta).await, (2, 2));
    wait_outreach(&app, "shipment-overdue-checkin", 3).await;
    let mut told = outreach_of(&app, "shipment-overdue-checkin").await;
    told.sort();
    assert_eq!(
        told,
        [
            ("c-1".to_owned(), format!("once:shp-1@{}", ts(promise))),
            ("c-1".to_owned(), format!("once:shp-1@{}", ts(new_eta))),
            (
                "c-3".to_owned(),
                format!("once:shp-3@{}", ts(now + Duration::days(1)))
            ),
        ]
    );
    assert_eq!(overdue_events(&app).await, 3);
}

#[tokio::test]
async fn an_order_with_no_parcel_after_the_wait_is_announced_once() {
    let app = spawn_app_queueing_only().await;
    let now = now();
    let three_days_ago = now - Duration::days(3);
    publish_all(
        &app,
        &[
            // 1: placed three days ago, nothing shipped.
            placed(1, three_days_ago),
            // 2: shipped.
            placed(2, three_days_ago),
            created(2, now + Duration::days(1), now - Duration::days(2)),
            // 3: placed an hour ago.
            placed(3, now - Duration::hours(1)),
            // 4: cancelled.
            placed(4, three_days_ago),
            cancelled(4, now - Duration::days(2)),
            // 5: older than the sweep looks back (14 days): not news any more.
            placed(5, now - Duration::days(20)),
        ],
    )
    .await;

    let clock = Arc::new(ManualClock::new(now));
    let scheduler = app.scheduler(clock.clone(), |_| {}).await;
    assert_eq!(run_at(&scheduler, "stalled", now).await, (1, 1));
    wait_outreach(&app, "order-stalled-update", 1).await;
    assert_eq!(
        outreach_of(&app, "order-stalled-update").await,
        [("c-1".to_owned(), "once:ord-1".to_owned())]
    );
    let mut contents = app.db.contents_of_rule("order-stalled-update").await;
    assert_eq!(contents.len(), 1);
    let content = contents.remove(0);
    assert!(
        content.contains("아직 창고에서 출발하지 못했어요"),
        "{content}"
    );

    // A parcel moves its order out of `placed`.
    assert_eq!(
        app.db.status(StatusTable::Orders, "ord-2").await.as_deref(),
        Some("shipped")
    );

    let later = now + Duration::minutes(15);
    clock.set(later);
    assert_eq!(run_at(&scheduler, "stalled", later).await, (0, 0));

    // Two days on, order 3 has waited 49 hours.
    let two_days_on = now + Duration::days(2);
    clock.set(two_days_on);
    assert_eq!(run_at(&scheduler, "stalled", two_days_on).await, (1, 1));
    wait_outreach(&app, "order-stalled-update", 2).await;
    assert_eq!(
        outreach_of(&app, "order-stalled-update").await[1],
        ("c-3".to_owned(), "once:ord-3".to_owned())
    );
}

#[tokio::test]
async fn csat_is_due_only_after_a_resolved_problem_the_customer_was_told_about() {
    let app = spawn_app().await;
    let now = now();
    let promise = now - Duration::days(6);
    let handed_over = now - Duration::days(8);
    // 1 and 4 are told about a delay; 3 is told and still waiting; 2 is late but was never told.
    publish_all(
        &app,
        &[
            created(1, promise, handed_over),
            created(2, promise, handed_over),
            created(3, promise, handed_over),
            created(4, promise, handed_over),
            delayed(1, promise, now - Duration::days(4), now - Duration::days(7)),
            delayed(3, promise, now + Duration::days(1), now - Duration::days(7)),
            delayed(4, promise, now - Duration::days(1), now - Duration::days(7)),
        ],
    )
    .await;
    // The apologies are sent before the parcels arrive (else they would be retracted).
    app.wait_sent(3).await;
    publish_all(
        &app,
        &[
            delivered(1, now - Duration::days(4)),
            delivered(2, now - Duration::days(4)),
            delivered(4, now - Duration::days(1)),
        ],
    )
    .await;

    let clock = Arc::new(ManualClock::new(now));
    let scheduler = app.scheduler(clock.clone(), |_| {}).await;
    assert_eq!(run_at(&scheduler, "csat", now).await, (1, 1));
    wait_outreach(&app, "csat-follow-up", 1).await;
    app.wait_sent(4).await;
    let surveys: Vec<Value> = app
        .sandbox("email")
        .into_iter()
        .filter(|m| m["rule_id"] == "csat-follow-up")
        .collect();
    assert_eq!(surveys.len(), 1, "{surveys:?}");
    let text = surveys[0].to_string();
    assert!(
        text.contains("https://shop.example/survey?order=ord-1"),
        "{text}"
    );
    assert!(text.contains("jisoo1@example.com"), "{text}");

    // Asked once.
    let later = now + Duration::hours(1);
    clock.set(later);
    assert_eq!(run_at(&scheduler, "csat", later).await, (0, 0));

    // Customer 4's parcel arrived a day ago: asked once three days have passed.
    let after = now + Duration::days(2) + Duration::hours(1);
    clock.set(after);
    assert_eq!(run_at(&scheduler, "csat", after).await, (1, 1));
    wait_outreach(&app, "csat-follow-up", 2).await;
    assert_eq!(
        outreach_of(&app, "csat-follow-up").await[1],
        ("c-4".to_owned(), "once:ord-4".to_owned())
    );
}

/// Only `overdue` and `release`, every minute.
fn every_minute(settings: &mut forewarn::config::Settings) {
    for (name, schedule) in settings.schedules.iter_mut() {
        schedule.enabled = matches!(name.as_str(), "overdue" | "release");
        schedule.cron = "0 * * * * *".into();
    }
}

#[tokio::test]
async fn two_processes_run_each_tick_once() {
    let app = spawn_app_queueing_only().await;
    let now = now();
    let events: Vec<Value> = (1..=3)
        .map(|i| created(i, now - Duration::days(2), now - Duration::days(5)))
        .collect();
    publish_all(&app, &events).await;

    let start = DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let a = app
        .scheduler(clock.clone(), every_minute)
        .await
        .with_owner("a");
    let b = app
        .scheduler(clock.clone(), every_minute)
        .await
        .with_owner("b");
    for minute in 0..5 {
        let t = start + Duration::minutes(minute);
        clock.set(t);
        let (ran_a, ran_b) = tokio::join!(a.run_due(t), b.run_due(t));
        for name in ["overdue", "release"] {
            let ran = ran_a
                .iter()
                .chain(&ran_b)
                .filter(|(n, r)| n == name && matches!(r, TickResult::Ran(_)))
                .count();
            assert_eq!(ran, 1, "{name} at {t}: {ran_a:?} {ran_b:?}");
        }
    }
    for name in ["overdue", "release"] {
        let runs = app.store.schedule_runs(name, 1_000).await.unwrap();
        assert_eq!(runs.len(), 5, "{name}");
    }
    wait_outreach(&app, "shipment-overdue-checkin", 3).await;
    assert_eq!(overdue_events(&app).await, 3);

    // Two real processes, by hand, for the same instant: one runs it.
    let at = ts(start + Duration::minutes(30));
    let config = app.config_path();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "schedule",
                "run",
                "overdue",
            ])
            .args(["--at", &at])
            .env_remove("FOREWARN_CONFIG")
            .output()
    };
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(spawn);
        let two = s.spawn(spawn);
        (one.join().unwrap().unwrap(), two.join().unwrap().unwrap())
    });
    let outputs: Vec<String> = [&one, &two]
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{o:?}");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    let ran = outputs
        .iter()
        .filter(|o| o.contains("(shipment.overdue) at"))
        .count();
    assert_eq!(ran, 1, "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("already done") || o.contains("is running it now")),
        "{outputs:?}"
    );
}

#[tokio::test]
async fn ticks_missed_while_down_run_once_at_start() {
    let app = spawn_app_queueing_only().await;
    let now = now();
    let t0 = DateTime::from_timestamp(now.timestamp() - now.timestamp() % 60, 0).unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let release_only = |settings: &mut forewarn::config::Settings| {
        every_minute(settings);
        settings.schedules.get_mut("overdue").unwrap().enabled = false;
    };
    let before = app.scheduler(clock.clone(), release_only).await;
    assert_eq!(run_at(&before, "release", t0).await, (0, 0));

    // Down for ten minutes; then started.
    clock.set(t0 + Duration::minutes(10) + Duration::seconds(30));
    let scheduler = app.scheduler(clock.clone(), release_only).await;
    let (trigger, shutdown) = forewarn::shutdown::channel();
    let running = tokio::spawn(scheduler.run(shutdown));
    let runs = || async {
        let runs = finished_runs(&app, "release").await;
        runs.into_iter()
            .map(|r| r.tick.timestamp_millis())
            .collect::<Vec<i64>>()
    };
    wait_for("the run at start", || async { runs().await.len() >= 2 }).await;
    // And on with the next tick.
    clock.set(t0 + Duration::minutes(11));
    wait_for("the next tick", || async { runs().await.len() >= 3 }).await;
    trigger.trigger();
    running.await.unwrap();
    let minutes: Vec<i64> = runs()
        .await
        .iter()
        .map(|ms| (ms - t0.timestamp_millis()) / 60_000)
        .collect();
    assert_eq!(
        minutes,
        [0, 10, 11],
        "the nine ticks in between fold into one"
    );
}

#[tokio::test]
async fn retention_removes_personal_data_and_keeps_the_counts() {
    let app = spawn_app().await;
    let now = now();
    let promise = now - Duration::days(1);
    publish_all(
        &app,
        &[
            created(1, promise, now - Duration::days(3)),
            delayed(1, promise, now + Duration::days(1), now),
            // Customer 2 has no address for any channel the rule may use: a decision note.
            event(
                "created-2".into(),
                "shipment.created",
                now - Duration::days(3),
                json!({"shipment_id": "shp-2", "order_id": "ord-2",
                       "customer": {"id": "c-2", "name": "Minjun Park", "locale": "ko-KR"},
                       "carrier": "CJ대한통운", "tracking_number": "T2", "promised_by": ts(promise),
                       "destination": {"region": "kr-seoul", "postal_code": "06236"}}),
            ),
            delayed(2, promise, now + Duration::days(1), now),
            event(
                "score-1".into(),
                "risk.scored",
                now,
                json!({"customer_id": "c-1", "scores": {"churn": 0.7}, "model": "shop-churn-v3"}),
            ),
            event(
                "opt-out-1".into(),
                "customer.opted_out",
                now,
                json!({"customer_id": "c-1", "channel": "sms", "scope": "marketing"}),
            ),
        ],
    )
    .await;
    app.wait_sent(1).await;
    let counts = app.counts().await;
    let events = app.db.count(Table::Events).await;
    let notes = app.db.count(Table::DecisionNotes).await;
    assert!(notes >= 1, "a decision note to purge");
    let personal = || async {
        let events = app.db.events().await;
        events
            .iter()
            .filter(|e| e.data.contains("Jisoo") || e.data.contains("Minjun"))
            .count()
    };
    assert!(personal().await > 0);

    let clock = Arc::new(ManualClock::new(now));
    // Small batches: the purge goes on where it stopped, run after run.
    let scheduler = app
        .scheduler(clock.clone(), |s| {
            s.schedules.get_mut("retention").unwrap().batch = 2;
        })
        .await;
    // A day short of the 180 kept, nothing goes.
    let almost = now + Duration::days(179);
    clock.set(almost);
    assert_eq!(run_at(&scheduler, "retention", almost).await, (0, 0));
    assert!(personal().await > 0);

    let mut at = now + Duration::days(181);
    clock.set(at);
    let mut purged = 0;
    loop {
        let (found, _) = run_at(&scheduler, "retention", at).await;
        if found == 0 {
            break;
        }
        purged += found;
        at += Duration::minutes(1);
        clock.set(at);
    }
    assert!(purged > 0);

    // Personal data is gone…
    assert_eq!(personal().await, 0);
    let events_left = app.db.events().await;
    assert!(
        events_left
            .iter()
            .all(|e| e.data == "{}" && e.customer_id.is_none()),
        "{events_left:?}"
    );
    let contents = app.db.contents().await;
    assert!(contents.iter().all(|(_, c)| c == "{}"), "{contents:?}");
    let customers = app.db.customers().await;
    let docs: Vec<Value> = customers
        .iter()
        .map(|c| serde_json::from_str(&c.doc).unwrap())
        .collect();
    for field in ["name", "email", "phone"] {
        assert!(docs.iter().all(|d| d[field].is_null()), "{field}: {docs:?}");
    }
    assert_eq!(app.db.count(Table::DecisionNotes).await, 0);
    assert_eq!(app.db.count(Table::CustomerExperiences).await, 0);
    assert_eq!(app.db.count(Table::RiskScores).await, 0);
    // …and the counts stay: events by type, messages by status, notes per day, preferences.
    assert_eq!(app.counts().await, counts);
    assert_eq!(app.db.count(Table::Events).await, events);
    assert_eq!(app.db.noted_per_day().await, notes);
    let first = customers.iter().position(|c| c.id == "c-1").expect("c-1");
    assert_eq!(docs[first]["locale"], "ko-KR");
    // An opt-out is never forgotten.
    assert_eq!(app.db.count(Table::OptOuts).await, 1);
}

#[tokio::test]
async fn forewarn_run_runs_its_schedules_and_reports_them() {
    let app = spawn_app_with(Options {
        scheduler: true,
        extra_config: "[schedules.release]\ncron = \"* * * * * *\"\n".into(),
        ..Options::default()
    })
    .await;
    // Every schedule's latest tick was never done: each runs once at start.
    wait_for("every schedule's first run", || async {
        let mut ran = 0;
        for status in app.store.schedule_statuses().await.unwrap() {
            if !finished_runs(&app, &status.schedule).await.is_empty() {
                ran += 1;
            }
        }
        ran == 5
    })
    .await;
    // The release schedule runs every second.
    wait_for("a second release run", || async {
        let runs = app.store.schedule_runs("release", 1_000).await.unwrap();
        runs.len() >= 2
    })
    .await;
    let metrics = app.metrics().await;
    for line in [
        "forewarn_schedule_runs_total{schedule=\"release\",outcome=\"ok\"}",
        "forewarn_schedule_found_total{schedule=\"overdue\"} 0",
        "forewarn_schedule_last_success_timestamp_seconds{schedule=\"retention\"}",
        "forewarn_schedule_run_seconds_count{schedule=\"csat\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(app.log().contains("0 held message(s) due schedule=release"));

    let config = app.config_path();
    let (code, out) = forewarn_cli(
        app.dir.path(),
        &["--config", config.to_str().unwrap(), "schedule", "list"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("overdue  job shipment.overdue  cron `0 */10 * * * *`  next "),
        "{out}"
    );
    assert!(out.contains("    last run: tick "), "{out}");
    assert!(!out.contains("never run"), "{out}");
}

#[tokio::test]
async fn an_event_emitted_but_not_remembered_is_emitted_again_and_dropped_as_a_duplicate() {
    let app = spawn_app_queueing_only().await;
    let now = now();
    publish_all(
        &app,
        &[created(1, now - Duration::days(2), now - Duration::days(5))],
    )
    .await;
    let clock = Arc::new(ManualClock::new(now));
    let scheduler = app.scheduler(clock.clone(), |_| {}).await;
    assert_eq!(run_at(&scheduler, "overdue", now).await, (1, 1));
    wait_outreach(&app, "shipment-overdue-checkin", 1).await;
    let stream = || async {
        app.js
            .get_stream("FOREWARN_EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };
    let in_stream = stream().await;

    // As if forewarn died after publishing and before remembering.
    app.db.forget_emissions().await;
    let later = now + Duration::minutes(10);
    clock.set(later);
    assert_eq!(run_at(&scheduler, "overdue", later).await, (1, 1));
    app.wait_intake_idle().await;
    // JetStream dropped the copy (same Nats-Msg-Id within its window)…
    assert_eq!(stream().await, in_stream);
    // …and had it not, intake's (source, id) key would have: one event, one message.
    assert_eq!(overdue_events(&app).await, 1);
    assert_eq!(outreach_of(&app, "shipment-overdue-checkin").await.len(), 1);
}

#[tokio::test]
async fn a_process_that_died_mid_run_is_replaced_after_its_lease() {
    use forewarn::store::{TickClaim, TickOutcome};
    let app = spawn_app_queueing_only().await;
    let store = &app.store;
    let tick = now();
    let lease = std::time::Duration::from_secs(300);
    assert!(matches!(
        store
            .claim_tick("overdue", tick, "a", tick, lease)
            .await
            .unwrap(),
        TickClaim::Claimed { previous: None, .. }
    ));
    // "a" dies without finishing. Within its lease, "b" waits its turn…
    let soon = tick + Duration::minutes(1);
    assert_eq!(
        store
            .claim_tick("overdue", tick, "b", soon, lease)
            .await
            .unwrap(),
        TickClaim::Busy {
            owner: "a".into(),
            until: tick + Duration::minutes(5)
        }
    );
    // …and after it, takes the tick over and runs it once.
    let after = tick + Duration::minutes(6);
    assert!(matches!(
        store
            .claim_tick("overdue", tick, "b", after, lease)
            .await
            .unwrap(),
        TickClaim::Claimed { .. }
    ));
    store
        .finish_tick("overdue", tick, "b", after, &TickOutcome::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_tick("overdue", tick, "a", after, lease)
            .await
            .unwrap(),
        TickClaim::AlreadyDone
    );
    let runs = store.schedule_runs("overdue", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].owner, "b");
    assert_eq!(runs[0].finished_at, Some(after));
    // A failed run leaves its tick to be tried again.
    let next = tick + Duration::minutes(10);
    store
        .claim_tick("overdue", next, "b", next, lease)
        .await
        .unwrap();
    let failed = TickOutcome {
        error: Some("NATS is down".into()),
        ..TickOutcome::default()
    };
    store
        .finish_tick("overdue", next, "b", next, &failed)
        .await
        .unwrap();
    assert!(matches!(
        store.claim_tick("overdue", next, "a", next, lease).await.unwrap(),
        TickClaim::Claimed { previous: Some(p), .. } if p == tick
    ));
}

#[tokio::test]
async fn the_release_schedule_counts_held_messages_whose_time_has_come() {
    let app = spawn_app_queueing_only().await;
    app.publish(&delayed_event(1)).await;
    app.wait_intake_idle().await;
    // A second on (ticks are whole seconds): queued for then at the latest (no quiet hours in
    // the tests), and nobody dispatching here.
    let now = now() + Duration::seconds(1);
    let clock = Arc::new(ManualClock::new(now));
    let scheduler = app.scheduler(clock, |_| {}).await;
    assert_eq!(run_at(&scheduler, "release", now).await, (1, 1));
}
