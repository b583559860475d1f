//! `forewarn simulate`'s replay rate over a large stored history, beside its ceilings.
//!
//! `cargo bench --bench simulate` (release build). Environment: `BENCH_EVENTS` (default
//! 1,000,000). The history is written straight into a SQLite database (not measured): per
//! customer, a `customer.upserted`, an `order.placed` and a `shipment.delayed` (which the
//! repository's rules answer with an apology SMS and a discount), and days later its
//! `shipment.delivered`; in batches of 2,000 taken at the same moment, over the last six days.
//! Then, measured:
//!
//! 1. reading: every stored event, page by page, as the replay reads them;
//! 2. recording: the same, each batch also recorded into a scratch database (as the replay
//!    makes it), nothing decided — the floor of what the replay reads and writes;
//! 3. forewarn: `simulate` of the repository's own rules over the whole history.
//!
//! The goal (issue 21) is a million stored events replayed in under 60 s on two cores.

mod support;
use support::{env_usize, metrics_handle, peak_rss_mib, print_stages, repo_settings, stage_times};

use std::time::Instant;

use chrono::{Duration, Utc};
use forewarn::domain::{Accepted, CloudEvent, EventType, Payload};
use forewarn::simulate::{Events, Simulation};
use forewarn::store::{DatabaseSettings, EventRecord, IntakeStore, Store};
use serde_json::json;
use sqlx::QueryBuilder;

/// Events intake took together.
const BATCH: usize = 2_000;

/// The `i`-th of `n` events of the history: (type, data). Each customer's record, order and
/// delay come in the first three quarters; the parcels' deliveries, days later, in the last.
fn event(i: usize, n: usize) -> (&'static str, serde_json::Value) {
    let first = n / 4 * 3;
    let (c, kind) = if i < first {
        (i / 3, i % 3)
    } else {
        (i - first, 3)
    };
    match kind {
        0 => (
            "customer.upserted",
            json!({"id": format!("c-{c}"), "name": "김지수",
            "locale": "ko-KR", "timezone": "Asia/Seoul", "phone": format!("+8210{c:08}"),
            "email": format!("c{c}@example.com"), "channels": ["sms", "email"],
            "consent": {"sms": true, "email": true, "marketing": true}, "region": "kr-seoul"}),
        ),
        1 => (
            "order.placed",
            json!({"order_id": format!("ord-{c}"), "customer_id": format!("c-{c}"),
            "items": [{"sku": "SHOE-270", "name": "러닝화 270", "quantity": 1,
                       "unit_price": {"minor": 129_000, "currency": "KRW"}}],
            "total": {"minor": 129_000, "currency": "KRW"}, "promised_by": "2026-11-25T09:00:00Z"}),
        ),
        2 => (
            "shipment.delayed",
            json!({"shipment_id": format!("shp-{c}"),
            "order_id": format!("ord-{c}"), "customer_id": format!("c-{c}"),
            "carrier": "CJ대한통운", "promised_by": "2026-11-25T09:00:00Z",
            "new_eta": "2026-11-27T09:00:00Z", "reason": "weather"}),
        ),
        _ => (
            "shipment.delivered",
            json!({"shipment_id": format!("shp-{c}"),
            "order_id": format!("ord-{c}"), "customer_id": format!("c-{c}"),
            "delivered_at": "2026-11-27T08:00:00Z"}),
        ),
    }
}

/// Writes the history straight into the events table.
async fn write_history(url: &str, n: usize) {
    let pool = sqlx::SqlitePool::connect(url)
        .await
        .expect("history database");
    let start = Utc::now() - Duration::days(6);
    let step = Duration::days(6).num_milliseconds() / (n / BATCH).max(1) as i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut tx = pool.begin().await.expect("begin");
        for rows in chunk.chunks(500) {
            let mut q = QueryBuilder::new(
                "INSERT INTO events (source, id, type, time, customer_id, data, received_at) ",
            );
            q.push_values(rows, |mut b, &i| {
                let (kind, data) = event(i, n);
                let at = start + Duration::milliseconds(step * (i / BATCH) as i64);
                b.push_bind("bench/history")
                    .push_bind(format!("evt-{i}"))
                    .push_bind(kind)
                    .push_bind(at.timestamp_millis())
                    .push_bind(
                        data["customer_id"]
                            .as_str()
                            .or(data["id"].as_str())
                            .map(str::to_owned),
                    )
                    .push_bind(data.to_string())
                    .push_bind(at.timestamp_millis());
            });
            q.build().execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
    pool.close().await;
}

/// Reads every stored event page by page, parses it, and hands each batch (events taken at one
/// moment) to `each`; returns how many were read.
async fn read_all<F, Fut>(live: &dyn Store, mut each: F) -> usize
where
    F: FnMut(Vec<Accepted>, chrono::DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut after, mut read) = (0, 0);
    loop {
        let page = live
            .stored_events(after, Utc::now(), 5_000)
            .await
            .expect("read");
        let Some(last) = page.last() else {
            return read;
        };
        after = last.seq;
        read += page.len();
        let mut batch = Vec::new();
        let mut batch_time = None;
        for stored in page {
            let envelope = json!({"specversion": "1.0", "id": stored.id, "source": stored.source,
                "type": stored.event_type, "time": stored.time,
                "data": serde_json::from_str::<serde_json::Value>(&stored.data).expect("data")});
            let event = CloudEvent::parse(envelope.to_string().as_bytes(), None).expect("event");
            let kind = EventType::parse(&stored.event_type).expect("type");
            let payload = Payload::parse(kind, &event.data).expect("payload");
            if batch_time != Some(stored.received_at) {
                if let Some(at) = batch_time {
                    each(std::mem::take(&mut batch), at).await;
                }
                batch_time = Some(stored.received_at);
            }
            batch.push(Accepted { event, payload });
        }
        if let Some(at) = batch_time {
            each(batch, at).await;
        }
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_EVENTS", 1_000_000);
    let handle = metrics_handle();
    let dir = tempfile::tempdir().expect("folder");
    let url = format!("sqlite://{}", dir.path().join("forewarn.db").display());
    let live = forewarn::store::connect(&DatabaseSettings {
        url: url.clone(),
        ..Default::default()
    })
    .await
    .expect("database");
    let started = Instant::now();
    write_history(&url, n).await;
    println!(
        "simulate: {n} stored events written in {:.1} s (setup, not measured)",
        started.elapsed().as_secs_f64()
    );

    // (1) Reading and parsing every stored event, as the replay pages through them.
    let started = Instant::now();
    let read = read_all(live.as_ref(), |_, _| async {}).await;
    let reading = read as f64 / started.elapsed().as_secs_f64();

    // (2) The same, each batch also recorded into a scratch database, nothing decided.
    let scratch_dir = tempfile::tempdir().expect("folder");
    let scratch = forewarn::store::SqliteStore::scratch(&scratch_dir.path().join("scratch.db"))
        .await
        .expect("scratch");
    let started = Instant::now();
    read_all(live.as_ref(), |batch, at| {
        let scratch = &scratch;
        async move {
            let records: Vec<EventRecord> = batch.iter().map(|a| EventRecord::of(a, at)).collect();
            let mut tx = scratch.begin_intake().await.expect("begin");
            tx.record_events(&records).await.expect("record");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    let recording = read as f64 / started.elapsed().as_secs_f64();
    drop(scratch);
    // Peak memory from here on is the simulation's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    // (3) forewarn simulate over the whole history.
    let settings = repo_settings();
    let authoring = forewarn::authoring::load(&settings).expect("the repository's rules");
    let policy = settings.policy().expect("policy");
    let simulation = Simulation {
        live: live.as_ref(),
        draft: std::sync::Arc::new(authoring),
        policy: &policy,
        incidents: &settings.incidents,
        costs: &settings.costs,
        progress: None,
    };
    let before = stage_times(&handle);
    let started = Instant::now();
    let report = simulation
        .run(&Events::Stored {
            from: Utc::now() - Duration::days(7),
            to: Utc::now(),
        })
        .await
        .expect("simulation");
    let wall = started.elapsed().as_secs_f64();
    let messages: u64 = report
        .rules
        .values()
        .flat_map(|c| c.values())
        .map(|t| t.messages)
        .sum();
    println!("  ceilings: reading {reading:>9.0} events/s · recording {recording:>9.0} events/s");
    println!(
        "  forewarn: {:>9.0} events/s — {} events in {wall:.1} s (goal: 1,000,000 in under 60 s), \
         {messages} messages decided, peak RSS {:.0} MiB",
        report.events as f64 / wall,
        report.events,
        peak_rss_mib()
    );
    print_stages(&before, &stage_times(&handle), wall, report.events as usize);
    assert_eq!(report.events as usize, n, "every stored event replayed");
}
