//! Scale-out on PostgreSQL: the same work done by one `forewarn run` process and by three on
//! one database and one JetStream consumer.
//!
//! `cargo bench --bench scale` (release). Environment: `BENCH_EVENTS` (default 50000),
//! `BENCH_CUSTOMERS` (default 10000), `BENCH_PROCESSES` (default `1,3`). For each process count,
//! from nothing: a fresh nats-server and a fresh PostgreSQL database on the server
//! `FOREWARN_TEST_POSTGRES_URL` names; the customers taken in first by one in-process forewarn;
//! then `shipment.delayed` events waiting in the stream when the processes start, every one
//! asking for an SMS through a Twilio-shaped server in this process. Prints, per count, the
//! seconds until every message was accepted by that server, events per second end to end, the
//! totals (requests the server took, outbox rows sent), and the CPU seconds the processes used
//! beside those the whole machine used (the rest is PostgreSQL's, NATS's and the stand-in's: an
//! upper bound on the database's CPU per message).
//! The one-process figure is the ceiling the others are measured against: on two cores more
//! processes share the same CPU, so the goal is the same totals and no slowdown.

mod support;
use support::{
    bench_settings, cpu_seconds, env_usize, env_usizes, publish_all, sms_customer,
    take_in_customers, twilio_gateway, twilio_stand_in, RunProcess,
};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use forewarn::cli::demo::nats_server::NatsServer;
use forewarn::store::ScratchDatabase;
use serde_json::json;

/// A run in which no message arrives for this long is stuck: fail rather than wait.
const STALL: Duration = Duration::from_secs(60);

fn delayed(i: usize, customers: usize) -> String {
    json!({
        "specversion": "1.0", "id": format!("evt-{i}"), "source": "bench/carrier",
        "type": "shipment.delayed", "time": "2026-11-23T09:15:00Z",
        "data": {
            "shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
            "customer_id": format!("c-{}", i % customers), "carrier": "CJ대한통운",
            "promised_by": "2026-11-25T09:00:00Z", "new_eta": "2026-11-27T09:00:00Z"
        }
    })
    .to_string()
}

/// CPU seconds the whole machine has spent busy so far (`/proc/stat`: user, nice, system,
/// irq, softirq and steal, in ticks of 1/100 s).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// What one process count measured.
struct Outcome {
    seconds: f64,
    received: usize,
    sent: i64,
    /// CPU seconds of the forewarn processes.
    cpu: f64,
    /// CPU seconds of the whole machine: forewarn, PostgreSQL, NATS and the stand-in.
    machine: f64,
}

async fn run(
    processes: usize,
    n: usize,
    customers: usize,
    gateway: &str,
    received: &AtomicUsize,
) -> Outcome {
    let server = NatsServer::start_local().expect("nats-server");
    let database = ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = bench_settings(server.url(), database.url(), dir.path());
    settings.scheduler.enabled = false;
    settings.gateways.sms = twilio_gateway(gateway);
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));

    // Customers first, taken in by one forewarn in this process before the clock starts.
    take_in_customers(&settings, &js, (0..customers).map(sms_customer).collect()).await;

    publish_all(
        &js,
        "events.shipment.delayed",
        (0..n).map(|i| delayed(i, customers)),
    )
    .await;
    received.store(0, Ordering::SeqCst);
    let busy_before = machine_busy_seconds();
    let started = Instant::now();
    let running: Vec<RunProcess> = (0..processes)
        .map(|i| RunProcess::start(&settings, dir.path(), &format!("forewarn-{i}")))
        .collect();
    let mut last = (Instant::now(), 0);
    loop {
        let now = received.load(Ordering::SeqCst);
        if now >= n {
            break;
        }
        if now != last.1 {
            last = (Instant::now(), now);
        }
        assert!(
            last.0.elapsed() < STALL,
            "{processes} process(es): no message for {STALL:?} at {now} of {n}; logs in {}",
            dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = running.iter().map(|p| cpu_seconds(p.pid())).sum();
    let machine = machine_busy_seconds() - busy_before;
    // Stopped with SIGTERM, each finishing what it holds.
    drop(running);
    let probe = sqlx::PgPool::connect(&database.url()).await.expect("probe");
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'sent'")
        .fetch_one(&probe)
        .await
        .expect("count");
    probe.close().await;
    Outcome {
        seconds,
        received: received.load(Ordering::SeqCst),
        sent,
        cpu,
        machine,
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_EVENTS", 50_000);
    let customers = env_usize("BENCH_CUSTOMERS", 10_000);
    let counts = env_usizes("BENCH_PROCESSES", "1,3");
    forewarn::gateway::install_tls_provider();
    let received = Arc::new(AtomicUsize::new(0));
    let gateway = twilio_stand_in({
        let received = received.clone();
        move || {
            received.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    println!(
        "forewarn scale-out benchmark (PostgreSQL): {n} shipment.delayed events, {customers} \
         customers, one SMS each to a local Twilio-shaped server"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut first: Option<f64> = None;
    for processes in counts {
        let outcome = run(processes, n, customers, &gateway, &received).await;
        let rate = n as f64 / outcome.seconds;
        let against = first.map_or(String::new(), |one| {
            format!("  ({:.0} % of one process)", 100.0 * rate / one)
        });
        first.get_or_insert(rate);
        println!(
            "  {processes} process(es)   all sent {:>6.1} s   {rate:>7.0} events/s   received \
             {}   outbox sent {}   CPU: forewarn {:.1} s, machine {:.1} s of {:.1} \
             ({:.0} µs per message outside forewarn){against}",
            outcome.seconds,
            outcome.received,
            outcome.sent,
            outcome.cpu,
            outcome.machine,
            cores * outcome.seconds,
            1e6 * (outcome.machine - outcome.cpu) / n as f64
        );
        assert_eq!(outcome.received, n, "the server took every message once");
        assert_eq!(outcome.sent, n as i64, "every outreach recorded as sent");
    }
}
