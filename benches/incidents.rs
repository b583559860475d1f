//! Incident fan-out: one `outage.started` to every customer of a directory, through the real
//! intake transaction, fan-out worker and dispatcher, to the sandbox and to a local HTTP
//! gateway.
//!
//! `cargo bench --bench incidents` (release). `BENCH_CUSTOMERS` is a comma-separated list of
//! directory sizes (default `100000,1000000`); `BENCH_BACKENDS` the databases (default
//! `sqlite,postgres`; PostgreSQL on the server `FOREWARN_TEST_POSTGRES_URL` names, the
//! directory written once into a database of its own and copied by the server per run). Customers are Korean and American, with names,
//! locales, time zones, phones and SMS consent, in the spirit of `gen_events.py`; all of them
//! are affected. For each size and gateway, from a fresh copy of the populated database:
//! seconds until every customer is decided and queued, seconds until every message is sent,
//! messages per second end to end, and the process's peak RSS during that run (reset between
//! runs through `/proc/self/clear_refs`), to show memory does not grow with the directory.
//! The HTTP gateway is a Twilio-shaped server in this process (it shares the two cores).

mod support;
use support::{
    backends, env_usize, env_usizes, metrics_handle, peak_rss_mib, print_stages, repo_settings,
    stage_times, twilio_gateway, twilio_stand_in,
};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use forewarn::config::Settings;
use forewarn::domain::{CustomerDoc, CustomerId};
use forewarn::gateway::Gateways;
use forewarn::incident::{Announcement, FanoutWorker, Start};
use forewarn::outbox::{Dispatcher, Fallback};
use forewarn::pipeline;
use forewarn::store::{Changes, EventRecord, IntakeStore, PgStore, SqliteStore, Store};
use serde_json::json;
use tokio::sync::Notify;

/// A run that moves no customer and no message this long is stuck: fail rather than wait.
const STALL: Duration = Duration::from_secs(60);

/// Customers written per transaction while populating.
const POPULATE_CHUNK: usize = 20_000;

fn customer(i: usize) -> (CustomerId, CustomerDoc) {
    let id = format!("c-{i:08}");
    let korean = !i.is_multiple_of(3);
    let doc = if korean {
        json!({"id": id, "name": "김지수", "locale": "ko-KR", "timezone": "Asia/Seoul",
               "phone": format!("+8210{:08}", i % 100_000_000), "channels": ["sms"],
               "consent": {"sms": true, "marketing": i.is_multiple_of(2)},
               "region": if i.is_multiple_of(2) { "kr-seoul" } else { "kr-busan" },
               "segment": if i.is_multiple_of(20) { "vip" } else { "regular" },
               "lifetime_value": {"minor": (i % 500) as i64 * 10_000, "currency": "KRW"}})
    } else {
        json!({"id": id, "name": "Jamie Park", "locale": "en-US", "timezone": "America/New_York",
               "phone": format!("+1212{:07}", i % 10_000_000), "channels": ["sms"],
               "consent": {"sms": true, "marketing": false}, "region": "us-ny",
               "segment": "regular",
               "lifetime_value": {"minor": (i % 700) as i64 * 100, "currency": "USD"}})
    };
    (
        CustomerId::parse(&id).expect("id"),
        CustomerDoc::from_object(doc.as_object().expect("object").clone()),
    )
}

/// A populated directory that runs start from a copy of.
enum Directory {
    Sqlite(std::path::PathBuf),
    Postgres(forewarn::store::ScratchDatabase),
}

/// A run's own copy of the directory (dropped after the run).
enum Copy {
    Sqlite(std::path::PathBuf),
    Postgres(forewarn::store::ScratchDatabase),
}

impl Copy {
    fn url(&self) -> String {
        match self {
            Copy::Sqlite(path) => format!("sqlite://{}", path.display()),
            Copy::Postgres(database) => database.url(),
        }
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        if let Copy::Sqlite(path) = self {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

impl Directory {
    /// A directory of `n` customers on `backend`.
    async fn populate(backend: &str, dir: &Path, n: usize) -> Directory {
        let directory = match backend {
            "postgres" => Directory::Postgres(
                forewarn::store::ScratchDatabase::create()
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            _ => Directory::Sqlite(dir.join(format!("directory-{n}.db"))),
        };
        match &directory {
            Directory::Sqlite(path) => {
                let store = SqliteStore::connect(&forewarn::store::DatabaseSettings {
                    url: format!("sqlite://{}", path.display()),
                    ..Default::default()
                })
                .await
                .expect("store");
                store.migrate().await.expect("migrations");
                write_customers(&store, n).await;
                // One file that runs copy: the write-ahead log folded in.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(store.writer())
                    .await
                    .expect("checkpoint");
                store.close().await;
            }
            Directory::Postgres(database) => {
                let store = PgStore::connect(&forewarn::store::DatabaseSettings {
                    url: database.url(),
                    ..Default::default()
                })
                .await
                .expect("store");
                store.migrate().await.expect("migrations");
                write_customers(&store, n).await;
                sqlx::query("VACUUM ANALYZE")
                    .execute(store.writer())
                    .await
                    .expect("analyze");
                // The server copies a database only when nobody is connected to it.
                store.writer().close().await;
            }
        }
        directory
    }

    /// A fresh copy for one run, named `name` beside the directory (SQLite).
    async fn copy(&self, name: &str) -> Copy {
        match self {
            Directory::Sqlite(path) => {
                let copy = path.with_file_name(format!("{name}.db"));
                std::fs::copy(path, &copy).expect("copy the populated database");
                Copy::Sqlite(copy)
            }
            Directory::Postgres(database) => {
                Copy::Postgres(database.copy().await.unwrap_or_else(|e| panic!("{e}")))
            }
        }
    }
}

/// `n` customers through intake's own transaction, `POPULATE_CHUNK` at a time.
async fn write_customers(store: &impl IntakeStore, n: usize) {
    for start in (0..n).step_by(POPULATE_CHUNK) {
        let customers = (start..(start + POPULATE_CHUNK).min(n))
            .map(customer)
            .collect();
        let mut tx = store.begin_intake().await.expect("transaction");
        tx.apply(
            &Changes {
                customers,
                ..Changes::default()
            },
            Utc::now(),
        )
        .await
        .expect("customers");
        tx.commit().await.expect("commit");
    }
}

/// What intake does with the announcement: record it, apply it, write its fan-out.
async fn announce(store: &Arc<dyn Store>, settings: &Settings) {
    let start = Start {
        incident_id: Some("inc-bench".into()),
        title: "Checkout errors".into(),
        services: vec!["checkout".into()],
        severity: "major".into(),
        message: "Card payments fail; we are fixing it.".into(),
        everyone: true,
        eta: Some("2h".into()),
        ..Start::default()
    };
    let announcement = Announcement::start(start, "bench", Utc::now()).expect("announcement");
    let accepted = announcement
        .accepted("bench/oncall", Utc::now())
        .expect("a catalogue event");
    let authoring = forewarn::cli::load_authoring(settings).expect("rules and templates");
    let policy = settings.policy().expect("policy");
    let now = Utc::now();
    let mut tx = store.begin_intake().await.expect("transaction");
    tx.record_events(&[EventRecord::of(&accepted, now)])
        .await
        .expect("event");
    let refs = pipeline::refs_of([&accepted], &authoring.rules, now);
    let snapshot = tx.load(&refs).await.expect("load");
    let plan = pipeline::decide(
        &[&accepted],
        snapshot,
        &pipeline::Deciding::new(&authoring, &policy, now),
    );
    assert_eq!(plan.changes.fanouts.len(), 1, "the start must fan out");
    tx.apply(&plan.changes, now).await.expect("apply");
    tx.commit().await.expect("commit");
}

/// Resident memory now by kind: anonymous (heap), file-backed (SQLite's memory map), shared.
fn rss_parts() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("RssAnon") || l.starts_with("RssFile") || l.starts_with("RssShmem")
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resets the kernel's peak-RSS mark, so each run reports its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One fan-out of `n` customers from `copy` of the directory, through `settings`' gateways.
async fn run(copy: Copy, settings: &Settings, n: usize) -> (f64, f64, f64) {
    let mut settings = settings.clone();
    settings.database.url = copy.url();
    let settings = &settings;
    let store = forewarn::store::connect(&settings.database)
        .await
        .expect("store");
    reset_peak_rss();
    announce(&store, settings).await;
    let authoring = forewarn::cli::load_authoring(settings).expect("rules and templates");
    let (_keep, handle) = tokio::sync::watch::channel(Arc::new(authoring));
    let wake_dispatcher = Arc::new(Notify::new());
    let dispatcher = Dispatcher::new(
        store.clone(),
        Gateways::from_settings(settings).expect("gateways"),
        Fallback::new(store.clone(), handle.clone()),
        settings.outbox.clone(),
        wake_dispatcher.clone(),
    );
    let worker = FanoutWorker::new(
        store.clone(),
        handle,
        settings.policy().expect("policy"),
        settings.incidents.clone(),
        Arc::new(Notify::new()),
        wake_dispatcher,
    );
    let (trigger, shutdown) = forewarn::shutdown::channel();
    let started = Instant::now();
    let tasks = [
        tokio::spawn(dispatcher.run(shutdown.clone())),
        tokio::spawn(worker.run(shutdown)),
    ];
    let mut queued_after = None;
    let id = forewarn::domain::EntityId::parse("inc-bench").expect("id");
    let mut last_change = (Instant::now(), 0, 0);
    loop {
        let probed = Instant::now();
        let progress = store
            .incident_progress(&id, Utc::now())
            .await
            .expect("progress");
        // Counting a million rows' statuses is work too: the probe waits ten times as long as
        // it took (at least 100 ms), so watching takes under a tenth of one core.
        let pause = (probed.elapsed() * 10).max(Duration::from_millis(100));
        let fanout = progress.fanouts.first().expect("the fan-out");
        if queued_after.is_none() && fanout.status != "running" {
            queued_after = Some(started.elapsed().as_secs_f64());
            eprintln!(
                "    (sent when all were queued: {}; {})",
                progress.messages.sent,
                rss_parts()
            );
        }
        let m = &progress.messages;
        if (fanout.customers, m.sent) != (last_change.1, last_change.2) {
            last_change = (Instant::now(), fanout.customers, m.sent);
        }
        assert!(
            last_change.0.elapsed() < STALL,
            "no progress for {STALL:?}: {progress:?}"
        );
        if queued_after.is_some() && m.queued + m.sending + m.deferred == 0 {
            assert_eq!(m.failed, 0, "messages failed");
            assert_eq!(fanout.customers, n as u64, "every customer decided");
            assert_eq!(m.sent, n as u64, "every customer sent one message");
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let sent_after = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    trigger.trigger();
    for task in tasks {
        let _ = task.await;
    }
    drop(store);
    drop(copy);
    (queued_after.unwrap_or(f64::NAN), sent_after, rss)
}

#[tokio::main]
async fn main() {
    let sizes = env_usizes("BENCH_CUSTOMERS", "100000,1000000");
    forewarn::gateway::install_tls_provider();
    let metrics = metrics_handle();
    let mut base = repo_settings();
    // Quiet hours would hold most of a burst until morning; the bench measures throughput.
    base.quiet_hours = forewarn::policy::QuietHoursSettings::off();
    base.incidents.page_size = env_usize("BENCH_PAGE", base.incidents.page_size);
    base.outbox.batch_size = env_usize("BENCH_OUTBOX_BATCH", base.outbox.batch_size);
    base.outbox.concurrency = env_usize("BENCH_CONCURRENCY", base.outbox.concurrency);
    println!(
        "forewarn incident fan-out benchmark: page {}, outbox batch {}, concurrency {}",
        base.incidents.page_size, base.outbox.batch_size, base.outbox.concurrency
    );

    let url = twilio_stand_in(|| ()).await;

    let dir = tempfile::tempdir().expect("temp dir");
    for backend in backends().iter().map(String::as_str) {
        for &n in &sizes {
            let started = Instant::now();
            let directory = Directory::populate(backend, dir.path(), n).await;
            println!(
                "\n{backend}, {n} customers (directory written in {:.1} s)",
                started.elapsed().as_secs_f64()
            );
            let mut sandbox = base.clone();
            sandbox.paths.outbox = dir.path().join(format!("outbox-{n}"));
            let mut http = base.clone();
            http.gateways.sms = twilio_gateway(&url);
            for (name, settings) in [("sandbox", &sandbox), ("local HTTP (Twilio)", &http)] {
                let copy = directory.copy(&format!("run-{n}")).await;
                let stages_before = stage_times(&metrics);
                let (queued, sent, rss) = run(copy, settings, n).await;
                println!(
                    "  {name:<20} all queued {queued:>7.1} s   all sent {sent:>7.1} s   \
                     {:>7.0} msgs/s   peak RSS {rss:>6.0} MiB",
                    n as f64 / sent
                );
                print_stages(&stages_before, &stage_times(&metrics), sent, n);
            }
            let _ = std::fs::remove_dir_all(dir.path().join(format!("outbox-{n}")));
            if let Directory::Sqlite(path) = &directory {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
