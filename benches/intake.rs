//! Intake throughput, end to end, beside the ceilings it runs under.
//!
//! `cargo bench --bench intake` (release build). Environment: `BENCH_EVENTS` (default 100000),
//! `BENCH_CUSTOMERS` (default 10000), `BENCH_BATCH` (`[intake] batch_size`, default 2000),
//! `BENCH_BACKENDS` (default `sqlite,postgres`; PostgreSQL on the server
//! `FOREWARN_TEST_POSTGRES_URL` names, a fresh database per run), `BENCH_RELAY=off` (no relay
//! publishing outreach events meanwhile). Prints, per backend, three
//! figures measured in the same run:
//!
//! 1. bare JetStream: a durable pull consumer acking every message, no processing;
//! 2. bare database: 1000-row INSERTs per transaction (SQLite: multi-row VALUES, WAL,
//!    synchronous = FULL; PostgreSQL: one array per column through UNNEST);
//! 3. forewarn: `shipment.delayed` events for known customers, from the stream until every
//!    outreach row is committed (dispatch off, so the figure is intake alone).
//!
//! Forewarn writes three rows per event (event, shipment, outreach), so its ceiling is the
//! lower of (1) and (2) / 3.

mod support;
use support::{
    backends, bench_settings, env_usize, print_stages, publish_all, stage_times, take_in_customers,
};

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use forewarn::cli::demo::nats_server::NatsServer;
use forewarn::store::SqliteStore;
use futures::StreamExt;
use serde_json::json;
use sqlx::QueryBuilder;

fn delayed(i: usize, customers: usize) -> String {
    json!({
        "specversion": "1.0", "id": format!("evt-{i}"), "source": "bench/carrier",
        "type": "shipment.delayed", "time": "2026-11-23T09:15:00Z",
        "data": {
            "shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
            "customer_id": format!("c-{}", i % customers), "carrier": "CJ대한통운",
            "promised_by": "2026-11-25T09:00:00Z", "new_eta": "2026-11-27T09:00:00Z",
            "alternatives": [{"kind": "pickup", "sku": "SHOE-270", "name": "러닝화 270",
                              "store": {"id": "st-12", "name": "강남점", "address": "서울 강남구 테헤란로 1"}}]
        }
    })
    .to_string()
}

fn customer(i: usize) -> String {
    json!({
        "specversion": "1.0", "id": format!("cust-{i}"), "source": "bench/crm",
        "type": "customer.upserted",
        "data": {"id": format!("c-{i}"), "name": "김지수", "locale": "ko-KR", "timezone": "Asia/Seoul",
                 "phone": format!("+8210{i:08}"), "channels": ["sms", "email"],
                 "email": format!("c{i}@example.com")}
    })
    .to_string()
}

/// (1) Bare JetStream consume rate, messages per second.
async fn bare_jetstream(js: &jetstream::Context, n: usize) -> f64 {
    let events = js
        .get_or_create_stream(stream::Config {
            name: "BARE".into(),
            subjects: vec!["bare.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    publish_all(js, "bare.x", (0..n).map(|i| delayed(i, 1000))).await;
    let consumer = events
        .get_or_create_consumer(
            "bare",
            consumer::pull::Config {
                durable_name: Some("bare".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .expect("messages");
    let mut seen = 0;
    while seen < n {
        let message = messages
            .next()
            .await
            .expect("stream open")
            .expect("message");
        message.ack().await.expect("ack");
        seen += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The database a run writes to: a SQLite file in the run's folder, or a fresh PostgreSQL
/// database (dropped with this value).
enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(forewarn::store::ScratchDatabase),
}

impl Target {
    async fn new(backend: &str, dir: &std::path::Path) -> Target {
        match backend {
            "postgres" => Target::Postgres(
                forewarn::store::ScratchDatabase::create()
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            _ => Target::Sqlite(dir.to_path_buf()),
        }
    }

    fn url(&self, file: &str) -> String {
        match self {
            Target::Sqlite(dir) => format!("sqlite://{}", dir.join(file).display()),
            Target::Postgres(database) => database.url(),
        }
    }

    async fn probe(&self) -> Probe {
        match self {
            Target::Sqlite(_) => Probe::Sqlite(
                sqlx::SqlitePool::connect(&self.url("forewarn.db"))
                    .await
                    .expect("probe"),
            ),
            Target::Postgres(_) => Probe::Postgres(
                sqlx::PgPool::connect(&self.url("forewarn.db"))
                    .await
                    .expect("probe"),
            ),
        }
    }
}

/// A connection that watches the outbox fill.
enum Probe {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Probe {
    /// The largest outbox id: one index probe, so polling does not compete with the work.
    async fn max_outbox_id(&self) -> i64 {
        let sql = "SELECT MAX(id) FROM outbox";
        let max: Option<i64> = match self {
            Probe::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Probe::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("probe");
        max.unwrap_or(0)
    }
}

/// (2) Bare insert rate on the target's database, rows per second.
async fn bare_insert(target: &Target, n: usize) -> f64 {
    let body = delayed(0, 1);
    let create =
        "CREATE TABLE bare_rows (source TEXT, id TEXT, data TEXT, at BIGINT, PRIMARY KEY (source, id))";
    let started;
    match target {
        Target::Sqlite(dir) => {
            let store = SqliteStore::connect(&forewarn::store::DatabaseSettings {
                url: format!("sqlite://{}", dir.join("bare.db").display()),
                ..Default::default()
            })
            .await
            .expect("sqlite");
            sqlx::query(create)
                .execute(store.writer())
                .await
                .expect("table");
            started = Instant::now();
            for chunk_start in (0..n).step_by(1000) {
                let mut tx = store.writer().begin().await.expect("begin");
                let mut q = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO bare_rows (source, id, data, at) ",
                );
                q.push_values(chunk_start..(chunk_start + 1000).min(n), |mut row, i| {
                    row.push_bind("bench")
                        .push_bind(format!("evt-{i}"))
                        .push_bind(body.clone())
                        .push_bind(i as i64);
                });
                q.build().execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
            }
        }
        Target::Postgres(database) => {
            let pool = sqlx::PgPool::connect(&database.url())
                .await
                .expect("postgres");
            sqlx::query(create).execute(&pool).await.expect("table");
            started = Instant::now();
            for chunk_start in (0..n).step_by(1000) {
                let range = chunk_start..(chunk_start + 1000).min(n);
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(
                    "INSERT INTO bare_rows (source, id, data, at) \
                     SELECT 'bench', id, $2, at FROM UNNEST($1::text[], $3::int8[]) AS r(id, at)",
                )
                .bind(
                    range
                        .clone()
                        .map(|i| format!("evt-{i}"))
                        .collect::<Vec<_>>(),
                )
                .bind(&body)
                .bind(range.map(|i| i as i64).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .expect("insert");
                tx.commit().await.expect("commit");
            }
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// (3) Forewarn end to end, events per second, and the peak of outbox rows per second.
async fn forewarn_intake(
    server: &NatsServer,
    dir: &std::path::Path,
    target: &Target,
    n: usize,
    customers: usize,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> f64 {
    let mut settings = bench_settings(server.url(), target.url("forewarn.db"), dir);
    settings.outbox.dispatch = false;
    settings.intake.batch_size = env_usize("BENCH_BATCH", settings.intake.batch_size);
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));

    // Customers first, processed before the clock starts.
    take_in_customers(&settings, &js, (0..customers).map(customer).collect()).await;

    // The events wait in the stream; forewarn starts and drains them.
    publish_all(
        &js,
        "events.shipment.delayed",
        (0..n).map(|i| delayed(i, customers)),
    )
    .await;
    let stages_before = stage_times(metrics);
    let started = Instant::now();
    let running = forewarn::cli::start(settings, None).await.expect("start");
    let probe = target.probe().await;
    loop {
        if probe.max_outbox_id().await as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    running.wait(std::future::ready(())).await.expect("stop");
    print_stages(
        &stages_before,
        &stage_times(metrics),
        elapsed.as_secs_f64(),
        n,
    );
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_EVENTS", 100_000);
    let customers = env_usize("BENCH_CUSTOMERS", 10_000);
    let metrics = support::metrics_handle();
    println!("forewarn intake benchmark: {n} shipment.delayed events, {customers} known customers");
    for backend in backends().iter().map(String::as_str) {
        // A fresh server, folder and database per backend: nothing carries over.
        let server = NatsServer::start_local().expect("nats-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
        let target = Target::new(backend, dir.path()).await;
        println!("{backend}:");
        let consume = bare_jetstream(&js, n).await;
        println!("  bare JetStream pull+ack        {consume:>10.0} msgs/s");
        let insert = bare_insert(&target, n).await;
        println!(
            "  bare {backend:<8} insert          {insert:>10.0} rows/s  (= {:.0} events/s at 3 rows per event)",
            insert / 3.0
        );
        let end_to_end =
            forewarn_intake(&server, dir.path(), &target, n, customers, &metrics).await;
        let ceiling = consume.min(insert / 3.0);
        println!("  forewarn end to end            {end_to_end:>10.0} events/s  (every outreach row committed)");
        println!(
            "  ratio to ceiling               {:>10.0} %",
            100.0 * end_to_end / ceiling
        );
    }
}
