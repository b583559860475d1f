//! Dispatch throughput: a full outbox drained to a gateway that answers at once.
//!
//! `cargo bench --bench dispatch` (release). `BENCH_MESSAGES` (default 20000), `BENCH_BACKENDS`
//! (default `sqlite,postgres`). Two runs in one
//! process: a local Twilio-shaped HTTP server (form POST, Basic auth, 201 with a `sid`), and
//! the sandbox gateway (a JSON line per message, fsync'd per batch by the OS only). For each:
//! messages per second from the first claim to the last `sent`, p50/p99 from the outbox row's
//! creation to the request's arrival (for a full outbox this is mostly queueing: it says how
//! long the last of a burst waits), and at the end the process's peak RSS.

mod support;
use support::{backends, env_usize, peak_rss_mib, repo_settings, twilio_gateway, twilio_stand_in};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forewarn::config::Settings;
use forewarn::domain::{
    Category, Channel, CustomerId, EventKey, IdempotencyKey, MessageContent, Outreach,
};
use forewarn::gateway::Gateways;
use forewarn::outbox::{Dispatcher, Fallback};
use forewarn::store::{Changes, Store};
use tokio::sync::Notify;

/// `n` SMS outreach rows, queued in one transaction.
async fn fill(store: &Arc<dyn Store>, n: usize) {
    let outreach: Vec<Outreach> = (0..n)
        .map(|i| {
            let customer = CustomerId::parse(&format!("c-{i}")).expect("id");
            let entity = format!("event:bench/{i}");
            Outreach {
                key: IdempotencyKey::derive("bench", &customer, &entity, Channel::Sms),
                rule_id: "bench".into(),
                customer_id: customer,
                entity,
                category: Category::Transactional,
                priority: 50,
                fallback: Vec::new(),
                event: EventKey {
                    source: "bench".into(),
                    id: i.to_string(),
                },
                locale: "ko".into(),
                content: MessageContent::Sms {
                    to: format!("+8210{i:08}"),
                    body: "[슈즈샵] 김지수님, 죄송해요. 주문하신 상품이 약속보다 늦은 11월 27일 (금) 오후 6시에 도착해요.".into(),
                },
                offer: None,
                risk: None,
                not_before: None,
                timezone: None,
                region: None,
                order_id: None,
                incident_id: None,
                shipment_id: None,
                urgency: 0.0,
            }
        })
        .collect();
    let mut tx = store.begin_intake().await.expect("transaction");
    tx.apply(
        &Changes {
            outreach,
            ..Changes::default()
        },
        chrono::Utc::now(),
    )
    .await
    .expect("outbox rows");
    tx.commit().await.expect("commit");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Queues `n` messages and drains them through `settings`' gateways; returns msgs/s and when
/// the rows were queued.
async fn drain(settings: &Settings, n: usize) -> (f64, Instant) {
    let store = forewarn::store::connect(&settings.database)
        .await
        .expect("store");
    fill(&store, n).await;
    let queued_at = Instant::now();
    let gateways = Gateways::from_settings(settings).expect("gateways");
    let authoring = forewarn::cli::load_authoring(settings).expect("rules and templates");
    let (_keep, handle) = tokio::sync::watch::channel(Arc::new(authoring));
    let dispatcher = Dispatcher::new(
        store.clone(),
        gateways,
        Fallback::new(store.clone(), handle),
        settings.outbox.clone(),
        Arc::new(Notify::new()),
    );
    let (trigger, shutdown) = forewarn::shutdown::channel();
    let started = Instant::now();
    let task = tokio::spawn(dispatcher.run(shutdown));
    loop {
        let counts = store.outbox_counts().await.expect("counts");
        if counts.sent + counts.failed >= n as u64 {
            assert_eq!(counts.failed, 0, "messages failed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    trigger.trigger();
    let _ = task.await;
    (n as f64 / elapsed, queued_at)
}

/// A database of a run's own: the SQLite file `path`, or a fresh PostgreSQL database (dropped
/// with the second value).
async fn database(
    backend: &str,
    path: &std::path::Path,
) -> (String, Option<forewarn::store::ScratchDatabase>) {
    match backend {
        "postgres" => {
            let scratch = forewarn::store::ScratchDatabase::create()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (scratch.url(), Some(scratch))
        }
        _ => (format!("sqlite://{}", path.display()), None),
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_MESSAGES", 20_000);
    forewarn::gateway::install_tls_provider();
    let base = repo_settings();
    println!(
        "forewarn dispatch benchmark: {n} queued SMS, outbox batch {}, concurrency {}",
        base.outbox.batch_size, base.outbox.concurrency
    );

    // 1. A Twilio-shaped server that answers at once and notes when each request arrived.
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrivals.clone();
    let url = twilio_stand_in(move || seen.lock().expect("lock").push(Instant::now())).await;

    let dir = tempfile::tempdir().expect("temp dir");
    for backend in backends().iter().map(String::as_str) {
        println!("{backend}:");
        arrivals.lock().expect("lock").clear();
        let mut twilio = base.clone();
        let (url_of_db, _twilio_db) = database(backend, &dir.path().join("twilio.db")).await;
        twilio.database.url = url_of_db;
        twilio.gateways.sms = twilio_gateway(&url);
        let (rate, queued_at) = drain(&twilio, n).await;
        let mut waits: Vec<Duration> = arrivals
            .lock()
            .expect("lock")
            .iter()
            .map(|t| *t - queued_at)
            .collect();
        waits.sort();
        println!(
            "  twilio-shaped HTTP gateway   {rate:>8.0} msgs/s   outbox row → request p50 {:>6.0} ms  p99 {:>6.0} ms",
            percentile(&waits, 0.50).as_secs_f64() * 1000.0,
            percentile(&waits, 0.99).as_secs_f64() * 1000.0,
        );

        // 2. The sandbox gateway.
        let mut sandbox = base.clone();
        let (url_of_db, _sandbox_db) = database(backend, &dir.path().join("sandbox.db")).await;
        sandbox.database.url = url_of_db;
        sandbox.paths.outbox = dir.path().join(format!("outbox-{backend}"));
        let (rate, _) = drain(&sandbox, n).await;
        println!("  sandbox gateway              {rate:>8.0} msgs/s");
    }
    println!("  peak RSS (whole process)     {:>8.1} MiB", peak_rss_mib());
}
