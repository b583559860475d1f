//! How fast the schedules sweep a large database: `cargo bench --bench schedules`.
//!
//! Builds a SQLite file with `BENCH_SHIPMENTS` (default 200000) parcels and their orders: 5 %
//! overdue and silent, 3 % of orders never shipped, 4 % delivered after a delay notice that was
//! sent (due a survey), the rest on time; and `BENCH_SHIPMENTS` old events. Starts a private
//! nats-server with the events stream, then runs each job tick after tick with the shipped
//! options (batch 5000) until it finds nothing, and prints, per job, what it
//! found, how many runs that took, the median run, and things per second — the emitting jobs
//! publishing every synthetic event to JetStream with acks and remembering it.

mod support;
use support::env_usize;

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use forewarn::cli::demo::nats_server::NatsServer;
use forewarn::config::Settings;
use forewarn::schedule::{Emitter, JobContext, ManualClock, Scheduler, TickResult};
use forewarn::store::DatabaseSettings;
use forewarn::store::{SqliteStore, Store};

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_SHIPMENTS", 200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Default::default()
    };
    let store = SqliteStore::connect(&database).await.expect("database");
    store.migrate().await.expect("migrations");

    let started = Instant::now();
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let day_ms: i64 = 86_400_000;
    let hour_ms: i64 = 3_600_000;
    let seq = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {})",
        n - 1
    );
    // i % 100: 0-4 overdue and silent; 5-7 order never shipped; 8-11 delivered four days ago
    // after a sent delay notice; the rest delivered on time or due in the future.
    let statements = [
        format!("{seq} INSERT INTO customers (id, doc, region, segment, updated_at) \
                 SELECT 'c-' || i, json_object('id', 'c-' || i, 'name', 'Customer', 'locale', 'ko-KR', \
                 'phone', printf('+8210%08d', i), 'channels', json_array('sms')), 'r' || (i % 20), \
                 NULL, {now_ms} - 200 * {day_ms} FROM seq"),
        format!("{seq} INSERT INTO orders (id, customer_id, status, total_minor, currency, promised_by, \
                 placed_at, updated_at) \
                 SELECT 'o-' || i, 'c-' || i, \
                 CASE WHEN i % 100 BETWEEN 5 AND 7 THEN 'placed' ELSE 'shipped' END, 129000, 'KRW', {now_ms} + {day_ms}, \
                 {now_ms} - 3 * {day_ms} - (i % 48) * {hour_ms}, {now_ms} FROM seq"),
        format!("{seq} INSERT INTO shipments (id, order_id, customer_id, carrier, tracking_number, \
                 promised_by, status, region, delivered_at, updated_at) \
                 SELECT 's-' || i, 'o-' || i, 'c-' || i, 'carrier-' || (i % 10), 'T', \
                 CASE WHEN i % 100 < 5 THEN {now_ms} - (1 + i % 5) * {day_ms} \
                      WHEN i % 100 < 12 THEN {now_ms} - 5 * {day_ms} \
                      ELSE {now_ms} + (i % 3 - 1) * {day_ms} END, \
                 CASE WHEN i % 100 < 5 THEN 'in_transit' \
                      WHEN i % 100 < 12 OR i % 3 = 0 THEN 'delivered' ELSE 'in_transit' END, \
                 'r' || (i % 20), \
                 CASE WHEN i % 100 BETWEEN 8 AND 11 THEN {now_ms} - 4 * {day_ms} \
                      WHEN i % 100 >= 12 AND i % 3 = 0 THEN {now_ms} - {day_ms} END, \
                 {now_ms} FROM seq WHERE i % 100 NOT BETWEEN 5 AND 7"),
        format!("{seq} INSERT INTO events (source, id, type, time, customer_id, data, received_at) \
                 SELECT 'bench', 'delay-' || i, 'shipment.delayed', {now_ms} - 6 * {day_ms}, 'c-' || i, \
                 json_object('shipment_id', 's-' || i, 'order_id', 'o-' || i, 'customer_id', 'c-' || i), \
                 {now_ms} - 200 * {day_ms} FROM seq"),
        format!("{seq} INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, \
                 category, priority, fallback, event_source, event_id, locale, content, status, \
                 attempts, next_attempt_at, created_at, updated_at, order_id) \
                 SELECT printf('%032x', i), 'shipment-delay-apology', 'c-' || i, 'once:s-' || i, 'sms', \
                 'transactional', 50, '[]', 'bench', 'delay-' || i, 'ko', \
                 json_object('to', printf('+8210%08d', i), 'body', 'Sorry, Customer'), 'sent', 1, 0, \
                 {now_ms} - 200 * {day_ms}, {now_ms} - 200 * {day_ms}, 'o-' || i \
                 FROM seq WHERE i % 100 BETWEEN 8 AND 11"),
    ];
    for sql in &statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(store.writer())
            .await
            .unwrap_or_else(|e| panic!("set-up failed: {e}\n{sql}"));
    }
    sqlx::query("ANALYZE")
        .execute(store.writer())
        .await
        .expect("analyze");
    println!(
        "schedules: {n} parcels, orders, customers and events built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let nats = NatsServer::start_local().expect("nats-server");
    let mut settings = Settings::default();
    settings.nats.url = nats.url();
    settings.database = database;
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    forewarn::intake::ensure_consumer(&js, &settings.nats, &settings.intake)
        .await
        .expect("stream");
    let store: Arc<dyn Store> = forewarn::store::connect(&settings.database)
        .await
        .expect("store");
    let clock = Arc::new(ManualClock::new(now));
    let scheduler = Scheduler::new(
        settings.schedules().expect("schedules"),
        JobContext {
            store,
            emitter: Emitter::new(js, "events.", "forewarn/schedules"),
            wake: Arc::new(tokio::sync::Notify::new()),
        },
        clock.clone(),
        settings.scheduler.clone(),
    );

    let mut at = now;
    for (name, expected) in [
        ("overdue", n / 20),
        ("stalled", n * 3 / 100),
        ("csat", n / 25),
        ("release", 0),
        ("retention", 0),
    ] {
        let schedule = scheduler.schedule(name).expect("schedule");
        let mut total = 0u64;
        let mut runs = Vec::new();
        let started = Instant::now();
        loop {
            at += Duration::seconds(1);
            clock.set(at);
            let run = Instant::now();
            let report = match scheduler.run_tick(schedule, at, at).await {
                TickResult::Ran(report) => report,
                other => panic!("{name}: {other:?}"),
            };
            runs.push(run.elapsed().as_secs_f64() * 1000.0);
            total += report.emitted;
            if report.found == 0 {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        runs.sort_by(f64::total_cmp);
        println!(
            "{name:>9}: {total} done in {count} run(s), {elapsed:.2} s: {rate:.0}/s; median run {median:.1} ms{check}",
            count = runs.len(),
            rate = total as f64 / elapsed,
            median = runs[runs.len() / 2],
            check = if expected > 0 && total as usize != expected {
                format!(" (expected {expected})")
            } else {
                String::new()
            },
        );
    }
    // Retention is measured 200 days on, when everything above is old.
    let schedule = scheduler.schedule("retention").expect("retention");
    let later = at + Duration::days(200);
    let started = Instant::now();
    let mut total = 0;
    let mut runs = 0;
    let mut t = later;
    loop {
        t += Duration::seconds(1);
        clock.set(t);
        runs += 1;
        match scheduler.run_tick(schedule, t, t).await {
            TickResult::Ran(report) if report.found == 0 => break,
            TickResult::Ran(report) => total += report.found,
            other => panic!("retention: {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "retention: {total} rows purged 200 days on in {runs} run(s), {elapsed:.2} s: {:.0} rows/s",
        total as f64 / elapsed
    );
}
