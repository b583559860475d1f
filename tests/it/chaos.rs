//! The chaos suite: faults injected while a stream of events is on its way — the process killed
//! at random points, NATS restarted, the database locked (SQLite) or shut to connections
//! (PostgreSQL), a gateway failing three requests in ten, a full disk under the sandbox, ten
//! thousand hostile messages. Each run ends with a ledger (published, expected, delivered,
//! duplicates, lost; see `ledger.rs`) and asserts nothing lost and no duplicate forewarn did not
//! report as the resend of a request in flight at a kill. Two processes paused past their lease
//! are in `it_postgres/scale_out.rs`.
//!
//! `cargo test` runs the short version (2,000 events a run); `CHAOS=full` the
//! issue's volume (20,000).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::ledger::*;

/// How long a run's whole volume may take on a debug build.
const CHAOS_PATIENCE: Duration = Duration::from_secs(600);

/// Events (one outreach each) per run.
fn volume() -> usize {
    match std::env::var("CHAOS").as_deref() {
        Ok("full") => 20_000,
        _ => 2_000,
    }
}

fn backend() -> &'static str {
    match crate::BACKEND {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// Sends SMS through the webhook gateway to `url`; `extra` goes into `[outbox]` first.
fn through_webhook(url: &str, outbox: &str) -> Options {
    Options {
        extra_config: format!("{outbox}{}", webhook_sms(url)),
        env: vec![("TEST_WEBHOOK_SECRET".into(), SECRET.into())],
        claim_lease: "2s",
        ..Options::default()
    }
}

/// Publishes `events` delayed events in the background.
fn publish_in_background(app: &App, events: std::ops::Range<usize>) -> tokio::task::JoinHandle<()> {
    let js = app.js.clone();
    tokio::spawn(async move { publish_many(&js, events.map(delayed_event)).await })
}

/// The ledger of a webhook run, every duplicate checked against the resends forewarn logged.
fn settle(app: &App, fault: &str, events: usize, arrivals: &HashMap<String, usize>) {
    let log = app.log();
    let ledger = Ledger::of(fault, events, events, arrivals, &resent_keys(log.lines()));
    ledger.settle(backend(), || warnings(&log));
}

/// The first warnings and errors of a log, for a failure's message.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `/readyz`: whether it says ready, and its body.
async fn readiness(app: &App) -> (bool, String) {
    match reqwest::get(format!("http://127.0.0.1:{}/readyz", app.http_port)).await {
        Ok(response) => (
            response.status().is_success(),
            response.text().await.unwrap_or_default(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

#[tokio::test]
async fn killed_ten_times_at_random_points_nothing_is_lost_and_only_reported_resends_repeat() {
    let events = volume();
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let options = through_webhook(&url, "");
    let mut app = spawn_app_with(options.clone()).await;
    let publisher = publish_in_background(&app, 0..events);

    // Ten points over the run, half by events taken in and half by messages delivered, so
    // kills land in intake's transactions as well as between a request and its record.
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    let mut points: Vec<(bool, usize)> = (0..10)
        .map(|k| (k % 2 == 0, random.usize(1..events)))
        .collect();
    points.sort_by_key(|(_, at)| *at);
    for (by_intake, at) in points {
        wait_within("the next kill point", CHAOS_PATIENCE, || async {
            if by_intake {
                app.db.count(Table::Events).await as usize >= at
            } else {
                receiver.distinct() >= at
            }
        })
        .await;
        app.kill();
        app.restart_with(options.clone()).await;
    }
    publisher.await.unwrap();
    wait_delivered(&app, &receiver, events, CHAOS_PATIENCE).await;

    assert_eq!(app.db.count(Table::Events).await, events as i64);
    assert_eq!(
        *receiver.forged.lock().unwrap(),
        0,
        "every signature verifies"
    );
    settle(
        &app,
        &format!("SIGKILL ×10 (seed {seed})"),
        events,
        &receiver.counts(),
    );
}

#[tokio::test]
async fn nats_stopped_and_restarted_mid_stream_loses_and_repeats_nothing() {
    let events = volume();
    let half = events / 2;
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let mut app = spawn_app_with(through_webhook(&url, "")).await;
    publish_many(&app.js, (0..half).map(delayed_event)).await;
    wait_within("some delivered", CHAOS_PATIENCE, || async {
        receiver.distinct() >= half / 4
    })
    .await;

    app.nats.stop();
    wait_for("readiness to report NATS lost", || async {
        let (ready, body) = readiness(&app).await;
        !ready && !body.contains(r#""nats":"ok""#)
    })
    .await;
    app.nats.restart().unwrap();
    wait_for("readiness back once NATS is", || async {
        readiness(&app).await.0
    })
    .await;
    publish_many(&app.js, (half..events).map(delayed_event)).await;
    wait_delivered(&app, &receiver, events, CHAOS_PATIENCE).await;

    assert_eq!(app.db.count(Table::Events).await, events as i64);
    settle(&app, "NATS restarted", events, &receiver.counts());
}

/// Takes the database away from forewarn until readiness says so, then gives it back: on
/// SQLite another connection holds the write lock (`BEGIN EXCLUSIVE`); on PostgreSQL the
/// server cuts every connection to the test's database and refuses new ones, as a restart does.
struct Outage {
    sqlite: Option<sqlx::SqliteConnection>,
    postgres: Option<(sqlx::PgPool, String)>,
}

impl Outage {
    async fn begin(app: &App) -> Outage {
        use sqlx::Connection;
        match crate::BACKEND {
            Backend::Sqlite => {
                // Forewarn may be in the middle of a write (a checkpoint on a loaded machine can
                // take seconds): the outage begins once the test has the lock.
                let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(
                    &app.database_url,
                )
                .unwrap()
                .busy_timeout(PATIENCE);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Outage {
                    sqlite: Some(conn),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let server = forewarn::store::ScratchDatabase::server_url();
                let admin = sqlx::PgPool::connect(&server).await.unwrap();
                let name = app
                    .database_url
                    .rsplit('/')
                    .next()
                    .and_then(|tail| tail.split('?').next())
                    .unwrap()
                    .to_owned();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
                )))
                .execute(&admin)
                .await
                .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&admin)
                .await
                .unwrap();
                Outage {
                    sqlite: None,
                    postgres: Some((admin, name)),
                }
            }
        }
    }

    async fn end(self) {
        if let Some(mut conn) = self.sqlite {
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        }
        if let Some((admin, name)) = self.postgres {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn the_database_gone_mid_stream_is_reported_and_everything_is_sent_once_it_is_back() {
    let events = volume();
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let app = spawn_app_with(through_webhook(&url, "")).await;
    publish_many(&app.js, (0..events / 2).map(delayed_event)).await;
    wait_within("some delivered", CHAOS_PATIENCE, || async {
        receiver.distinct() >= events / 8
    })
    .await;

    let outage = Outage::begin(&app).await;
    // Events keep coming while the database is away; intake cannot commit them.
    let publisher = publish_in_background(&app, events / 2..events);
    let said = std::sync::Mutex::new(String::new());
    wait_within(
        "readiness to report the stalled work",
        CHAOS_PATIENCE,
        || async {
            let (ready, body) = readiness(&app).await;
            *said.lock().unwrap() = body;
            !ready
        },
    )
    .await;
    outage.end().await;
    let said = said.into_inner().unwrap();
    assert!(
        said.contains("failing to commit") || !said.contains(r#""database":"ok""#),
        "/readyz names what is stalled: {said}"
    );
    wait_within("readiness back", CHAOS_PATIENCE, || async {
        readiness(&app).await.0
    })
    .await;
    publisher.await.unwrap();
    wait_delivered(&app, &receiver, events, CHAOS_PATIENCE).await;

    assert_eq!(app.db.count(Table::Events).await, events as i64);
    let fault = match crate::BACKEND {
        Backend::Sqlite => "database write-locked past busy_timeout",
        Backend::Postgres => "database connections cut and refused",
    };
    settle(&app, fault, events, &receiver.counts());
}

#[tokio::test]
async fn a_gateway_failing_three_requests_in_ten_delivers_everything_once() {
    let events = volume();
    let receiver = Receiver::failing(Faults {
        server_errors: 1,
        throttled: 1,
        timeouts: 1,
        late: 0,
        hold: Duration::from_millis(1_500),
    });
    let url = receiver.clone().start().await;
    // Quick retries, a budget no message exhausts at 30 % (0.3^40), and a breaker that opens
    // (five failures in a row happen) but probes again soon.
    let mut options = through_webhook(
        &url,
        "retry_base = \"20ms\"\nretry_max = \"200ms\"\nmax_attempts = 40\n",
    );
    options
        .extra_config
        .push_str("timeout = \"500ms\"\n[pacing.sms]\nbreaker_cooldown = \"100ms\"\n");
    let app = spawn_app_with(options).await;
    publish_many(&app.js, (0..events).map(delayed_event)).await;
    wait_delivered(&app, &receiver, events, CHAOS_PATIENCE).await;

    assert_eq!(app.counts().await.failed, 0, "no message given up");
    assert!(
        receiver.failed() >= events * 3 / 10,
        "{} of the requests failed",
        receiver.failed()
    );
    settle(
        &app,
        &format!(
            "gateway failing 30 % (500, 429, timeout; {} requests failed)",
            receiver.failed()
        ),
        events,
        &receiver.counts(),
    );
}

#[tokio::test]
async fn a_gateway_answering_too_late_has_every_repeat_reported() {
    const EVENTS: usize = 200;
    // One request in ten is processed, then answered after the gateway gave up on it.
    let receiver = Receiver::failing(Faults {
        late: 1,
        hold: Duration::from_millis(1_500),
        ..Faults::default()
    });
    let url = receiver.clone().start().await;
    let mut options = through_webhook(&url, "retry_base = \"20ms\"\nretry_max = \"200ms\"\n");
    options.extra_config.push_str("timeout = \"500ms\"\n");
    let app = spawn_app_with(options).await;
    publish_many(&app.js, (0..EVENTS).map(delayed_event)).await;
    wait_delivered(&app, &receiver, EVENTS, CHAOS_PATIENCE).await;

    // The provider got those twice: forewarn cannot know, but it says which may repeat.
    assert!(receiver.repeats() > 0, "no request was answered late");
    assert_eq!(
        counter(
            &app.metrics().await,
            "forewarn_outbox_ambiguous_resends_total",
            &[]
        ) as usize,
        receiver.failed(),
        "every unanswered request counted"
    );
    settle(
        &app,
        "gateway answering 1 in 10 too late",
        EVENTS,
        &receiver.counts(),
    );
}

/// A small tmpfs mounted over a folder, unmounted on drop.
struct SmallDisk {
    at: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        let args = ["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"];
        let mounted = |program: &str, sudo: &[&str]| {
            std::process::Command::new(program)
                .args(sudo)
                .args(args)
                .arg(at)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            mounted("mount", &[]) || mounted("sudo", &["-n", "mount"]),
            "the full-disk test mounts a small tmpfs at {}: it needs root or passwordless sudo",
            at.display()
        );
        SmallDisk { at: at.to_owned() }
    }

    /// Fills what is left with a file, until the disk refuses another byte, then gives `room`
    /// bytes of it back.
    fn fill_leaving(&self, room: u64) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.at.join("filler")).unwrap();
        let block = vec![b'.'; 4096];
        while filler.write_all(&block).is_ok() {}
        while filler.write_all(b".").is_ok() {}
        let full = filler.metadata().unwrap().len();
        filler.set_len(full - room).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.at.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_under_the_sandbox_holds_messages_back_and_tears_no_line() {
    let events = volume() / 2;
    let mut app = spawn_app_queueing_only().await;
    publish_many(&app.js, (0..events).map(delayed_event)).await;
    app.wait_intake_idle().await;
    app.terminate().await;

    let disk = SmallDisk::mount(&app.outbox_dir(), "8m");
    // Room for a hundred-odd lines, filled while messages are being written however fast they
    // go. (Filling the disk once some lines were written raced the dispatcher: on a loaded
    // machine every message was out before the disk filled.)
    disk.fill_leaving(64 * 1024);
    app.restart_with(Options::default()).await;
    wait_for("writes refused for want of space", || async {
        app.log().contains("No space left on device")
    })
    .await;
    let written_when_full = app.sandbox("sms").len();
    println!("disk full after {written_when_full} of {events} messages written");
    disk.free();
    app.wait_sent(events as u64).await;

    // `sandbox` parses every line: a torn one fails here.
    let lines = app.sandbox("sms");
    assert!(
        0 < written_when_full && written_when_full < events,
        "the disk filled after {written_when_full} of {events} messages were written"
    );
    assert_each_key_once(&lines, events);
    let mut arrivals = HashMap::new();
    for line in &lines {
        *arrivals
            .entry(line["key"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let log = app.log();
    Ledger::of(
        "sandbox disk full, then freed",
        events,
        events,
        &arrivals,
        &resent_keys(log.lines()),
    )
    .settle(backend(), || warnings(&log));
    drop(disk);
}

/// One hostile message of kind `i % KINDS`: its subject, body and the dead-letter reason it
/// must get.
fn hostile(i: usize, random: &mut fastrand::Rng) -> (String, Vec<u8>, &'static str) {
    let mut event = delayed_event(1_000_000 + i);
    event["id"] = json!(format!("hostile-{i}"));
    let long = |n: usize| "x".repeat(n);
    let reason = match i % 20 {
        0 => {
            let bytes: Vec<u8> = (0..random.usize(1..512)).map(|_| random.u8(..)).collect();
            // Starting with a byte no JSON starts with.
            let mut body = vec![b'#'];
            body.extend(bytes);
            return ("events.garbage".into(), body, "not_json");
        }
        1 => {
            event = json!([event]);
            "not_cloudevent"
        }
        2 => {
            let attribute = ["specversion", "id", "source", "type"][random.usize(..4)];
            event.as_object_mut().unwrap().remove(attribute);
            "not_cloudevent"
        }
        3 => {
            event["specversion"] = json!("0.3");
            "not_cloudevent"
        }
        4 => {
            event["source"] = json!(random.i64(..));
            "not_cloudevent"
        }
        5 => {
            event["id"] = json!(long(random.usize(257..200_000)));
            "not_cloudevent"
        }
        6 => {
            event["type"] = json!(long(random.usize(129..10_000)));
            "not_cloudevent"
        }
        7 => {
            event["type"] = json!(format!("return.requested.{}", random.u32(..)));
            "unknown_type"
        }
        8 => {
            event["data_base64"] = json!("aGVsbG8=");
            "not_cloudevent"
        }
        9 => {
            event["datacontenttype"] = json!("text/xml");
            "not_cloudevent"
        }
        10 => {
            event["data"].as_object_mut().unwrap().remove("new_eta");
            "invalid_data"
        }
        11 => {
            event["data"]["reason"] =
                [json!(42), json!({"code": 1}), json!([1])][random.usize(..3)].clone();
            "invalid_data"
        }
        12 => {
            event["data"]["carrier"] = json!(long(random.usize(4_097..100_000)));
            "invalid_data"
        }
        13 => {
            event["data"]["customer"]["phone"] = json!(format!("010-{}", random.u16(..)));
            "invalid_data"
        }
        14 => {
            event["data"]["customer"]["timezone"] = json!("Mars/Olympus_Mons");
            "invalid_data"
        }
        15 => {
            event["data"].as_object_mut().unwrap().remove("customer");
            event["data"]["customer_id"] = json!(format!("nobody-{i}"));
            "unknown_customer"
        }
        16 => {
            let mut deep = json!("bottom");
            for _ in 0..200 {
                deep = json!([deep]);
            }
            event["data"]["nested"] = deep;
            "not_json"
        }
        17 => {
            event["time"] = json!("yesterday");
            "not_cloudevent"
        }
        18 => {
            event["subject"] = json!(random.u32(..));
            "not_cloudevent"
        }
        _ if i % 400 == 19 => {
            // Just under NATS's 1 MiB: the dead letter's headers would push it over.
            event["data"]["notes"] = json!(long(1_048_000 - event.to_string().len()));
            "invalid_data"
        }
        _ => {
            event["data"]["new_eta"] = json!("soon");
            "invalid_data"
        }
    };
    (
        "events.shipment.delayed".into(),
        event.to_string().into_bytes(),
        reason,
    )
}

#[tokio::test]
async fn ten_thousand_hostile_messages_are_each_dead_lettered_with_their_reason() {
    const HOSTILE: usize = 10_000;
    const GOOD: usize = 500;
    let app = spawn_app().await;
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    let mut expected: HashMap<&str, u64> = HashMap::new();
    let mut acks = Vec::new();
    for i in 0..HOSTILE {
        let (subject, body, reason) = hostile(i, &mut random);
        *expected.entry(reason).or_default() += 1;
        acks.push(app.js.publish(subject, body.into()).await.unwrap());
        if i % (HOSTILE / GOOD) == 0 {
            let good = delayed_event(i / (HOSTILE / GOOD));
            acks.push(
                app.js
                    .publish("events.shipment.delayed", good.to_string().into())
                    .await
                    .unwrap(),
            );
        }
        if acks.len() >= 500 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    wait_within("every message handled", CHAOS_PATIENCE, || {
        app.intake_idle()
    })
    .await;
    app.wait_sent(GOOD as u64).await;

    // Every hostile message is in the dead-letter stream under the reason it deserves.
    let dlq = app.js.get_stream("FOREWARN_DLQ").await.unwrap();
    let stored = dlq.get_info().await.unwrap().state.messages;
    assert_eq!(stored, HOSTILE as u64, "seed {seed}");
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut longest_error = 0;
    for sequence in 1..=stored {
        let message = dlq.get_raw_message(sequence).await.unwrap();
        let error = message.headers.get("Forewarn-Error").unwrap().as_str();
        assert!(!error.is_empty(), "dead letter {sequence} says why");
        longest_error = longest_error.max(error.len());
        let reason = message.headers.get("Forewarn-Reason").unwrap().as_str();
        *reasons.entry(reason.to_owned()).or_default() += 1;
    }
    let expected: HashMap<String, u64> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(reasons, expected, "seed {seed}");
    assert_eq!(
        app.db.count(Table::Events).await,
        GOOD as i64,
        "only the good events are recorded as processed"
    );
    assert_each_key_once(&app.sandbox_all(), GOOD);

    // Alive, within bounds, and its log not an echo of the input.
    assert!(readiness(&app).await.0, "still ready");
    let peak = app.peak_rss();
    let log = app.log().len();
    eprintln!(
        "chaos [{}] {HOSTILE} hostile messages: all dead-lettered by reason, {GOOD} good ones \
         sent; peak RSS {} MB, log {} KB, longest Forewarn-Error {longest_error} bytes",
        backend(),
        peak / 1_000_000,
        log / 1_000
    );
    assert!(
        longest_error < 1_024,
        "an error header of {longest_error} bytes"
    );
    assert!(
        log < 16_000_000,
        "{log} bytes of log for {HOSTILE} messages"
    );
    assert!(peak < 450_000_000, "peak RSS {peak} bytes");
}
