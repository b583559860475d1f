//! Latency under a steady stream: from an event's publish to its message reaching the gateway.
//!
//! `cargo bench --bench latency` (release). Environment: `BENCH_RATES` (events per second,
//! default `100,500,1000,2000,3000`), `BENCH_SECONDS` per rate (default 30), `BENCH_CUSTOMERS`
//! (default 1000), `BENCH_BACKENDS` (default `sqlite,postgres`; PostgreSQL on the server
//! `FOREWARN_TEST_POSTGRES_URL` names, a fresh database per backend).
//!
//! Per backend: a fresh nats-server and database; the customers taken in first; then one
//! `forewarn run` process (the release binary) on the repository's rules, sending SMS through
//! the webhook gateway to a receiver in this process that checks every signature. For each
//! rate, `shipment.delayed` events are published with core NATS on a fixed schedule (event `i`
//! at `i / rate` seconds), each for a new parcel, so each asks for one message. Printed per
//! rate: the rate actually published, the rate delivered, p50/p90/p99/max from publish to the
//! gateway request, the process's CPU (share of one core), and where the process spent its
//! time (`forewarn_stage_seconds` from its `/metrics`, per event). First, per rate, the floor:
//! the same publish relayed to the receiver by this process, with no forewarn in between.

mod support;
use support::{
    backends, bench_settings, cpu_seconds, env_usize, env_usizes, parse_stage_times, sms_customer,
    take_in_customers, RunProcess, StageTimes,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use forewarn::cli::demo::nats_server::{free_port, NatsServer};
use forewarn::config::Settings;
use forewarn::domain::{Channel, CustomerId, IdempotencyKey};
use forewarn::gateway::{GatewayConfig, WebhookConfig};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// The webhook's shared secret, handed to forewarn through the environment.
const SECRET: &str = "bench-latency-secret";
/// The rule every event matches (`rules/shipments.toml`).
const RULE: &str = "shipment-delay-apology";
/// A rate whose messages stop arriving for this long has fallen over: report what arrived.
const STALL: Duration = Duration::from_secs(60);

/// When each message reached the receiver, by idempotency key.
#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    forged: Arc<Mutex<usize>>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let arrived = Instant::now();
    let signed = || -> Option<bool> {
        let timestamp = headers.get("forewarn-timestamp")?.to_str().ok()?;
        let given = headers.get("forewarn-signature")?.to_str().ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).ok()?;
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&body);
        Some(
            mac.verify_slice(&hex::decode(given.strip_prefix("v1=")?).ok()?)
                .is_ok(),
        )
    };
    let key = headers
        .get("forewarn-idempotency-key")
        .and_then(|v| v.to_str().ok());
    match (signed(), key) {
        (Some(true), Some(key)) => {
            receiver
                .arrivals
                .lock()
                .expect("arrivals")
                .entry(key.to_owned())
                .or_insert(arrived);
            (StatusCode::OK, r#"{"id":"bench"}"#)
        }
        _ => {
            *receiver.forged.lock().expect("forged") += 1;
            (StatusCode::UNAUTHORIZED, "bad signature")
        }
    }
}

impl Receiver {
    async fn start(&self) -> String {
        let router = axum::Router::new()
            .route("/hooks/forewarn", axum::routing::post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port");
        let url = format!(
            "http://{}/hooks/forewarn",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    fn arrived(&self, key: &str) -> Option<Instant> {
        self.arrivals.lock().expect("arrivals").get(key).copied()
    }
}

/// The times every event of a run carries: now, a promise for tomorrow, a new date the day
/// after. In the future, as a live stream's are: the `overdue` schedule finds none of these
/// parcels late (past dates made it sweep every parcel of the run, a burst in the middle of a
/// rate).
struct Dates {
    time: String,
    promised_by: String,
    new_eta: String,
}

impl Dates {
    fn now() -> Dates {
        let now = chrono::Utc::now();
        let at = |days: i64| {
            (now + chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        Dates {
            time: at(0),
            promised_by: at(1),
            new_eta: at(2),
        }
    }
}

/// Event `i` of a phase, and the key of the one message it asks for.
fn delayed(dates: &Dates, phase: &str, i: usize, customers: usize) -> (String, IdempotencyKey) {
    let shipment = format!("shp-{phase}-{i}");
    let customer = format!("c-{}", i % customers);
    let body = json!({
        "specversion": "1.0", "id": format!("evt-{phase}-{i}"), "source": "bench/carrier",
        "type": "shipment.delayed", "time": dates.time,
        "data": {
            "shipment_id": shipment, "order_id": format!("ord-{phase}-{i}"),
            "customer_id": customer, "carrier": "CJ대한통운",
            "promised_by": dates.promised_by, "new_eta": dates.new_eta
        }
    })
    .to_string();
    // The rule's `once_per` is `data.shipment_id + '@' + data.new_eta`, kept as `once:<value>`.
    let key = IdempotencyKey::derive(
        RULE,
        &CustomerId::parse(&customer).expect("a customer id"),
        &format!("once:{shipment}@{}", dates.new_eta),
        Channel::Sms,
    );
    (body, key)
}

/// The `p`-th percentile of sorted `values`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `p50 … p90 … p99 … max …` of sorted `latencies`, in columns.
fn quantiles(latencies: &[Duration]) -> String {
    format!(
        "p50 {:>9}  p90 {:>9}  p99 {:>9}  max {:>9}",
        ms(percentile(latencies, 50.0)),
        ms(percentile(latencies, 90.0)),
        ms(percentile(latencies, 99.0)),
        ms(percentile(latencies, 100.0)),
    )
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// The forewarn process under test, with its `/metrics` port.
struct Forewarn {
    process: RunProcess,
    http: u16,
}

impl Forewarn {
    async fn stage_times(&self) -> StageTimes {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http))
            .await
            .and_then(|r| r.error_for_status())
            .expect("metrics");
        parse_stage_times(&text.text().await.expect("metrics text"))
    }
}

/// Starts `forewarn run` on `settings` and waits until a first message has gone through.
async fn start(
    settings: &mut Settings,
    dir: &std::path::Path,
    nats: &async_nats::Client,
    receiver: &Receiver,
) -> Forewarn {
    let http = free_port().expect("a free port");
    settings.http.enabled = true;
    settings.http.listen = ([127, 0, 0, 1], http).into();
    let forewarn = Forewarn {
        process: RunProcess::start(settings, dir, "forewarn"),
        http,
    };
    // Its own parcel per backend: the receiver outlives each run.
    let (body, key) = delayed(
        &Dates::now(),
        &format!("warm-{}", settings.database.url),
        0,
        1,
    );
    nats.publish("events.shipment.delayed", body.into())
        .await
        .expect("publish");
    let started = Instant::now();
    while receiver.arrived(key.as_str()).is_none() {
        assert!(
            started.elapsed() < STALL,
            "the first message ({key}) did not arrive (the receiver has {:?}); forewarn \
             logged:\n{}",
            receiver.arrivals.lock().expect("arrivals").keys().next(),
            std::fs::read_to_string(dir.join("forewarn.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    forewarn
}

/// Publishes `bodies` on `subject`, body `i` at `i / rate` seconds; returns when it started
/// and when each was published.
async fn publish_paced<'b>(
    nats: &async_nats::Client,
    subject: &'static str,
    bodies: impl Iterator<Item = &'b String>,
    rate: usize,
) -> (Instant, Vec<Instant>) {
    let mut published = Vec::new();
    let started = Instant::now();
    for (i, body) in bodies.enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        published.push(Instant::now());
        nats.publish(subject, body.clone().into())
            .await
            .expect("publish");
    }
    (started, published)
}

/// The floor at each rate, what this machine's NATS and HTTP take with nothing in between:
/// the same paced publish through a nats-server of its own to a relay in this process that
/// signs each message and makes the same request to the same receiver, with no database and
/// no decision. Printed before forewarn's figures, for each rate.
async fn floor(receiver: &Receiver, url: &str, rates: &[usize], seconds: usize) {
    let server = NatsServer::start_local().expect("nats-server");
    let nats = async_nats::connect(server.url()).await.expect("connect");
    let mut relayed = nats.subscribe("floor").await.expect("subscribe");
    nats.flush().await.expect("flush");
    let url = url.to_owned();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Some(message) = futures::StreamExt::next(&mut relayed).await {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let key = String::from_utf8_lossy(&message.payload).into_owned();
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
                mac.update(format!("{timestamp}.").as_bytes());
                mac.update(key.as_bytes());
                let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
                let _ = client
                    .post(&url)
                    .header("forewarn-timestamp", timestamp)
                    .header("forewarn-signature", signature)
                    .header("forewarn-idempotency-key", &key)
                    .body(key)
                    .send()
                    .await;
            });
        }
    });
    // A few seconds per rate are enough to know the floor.
    let seconds = seconds.min(10);
    println!("floor: the same paced publish relayed by this process to the receiver, no forewarn:");
    for &rate in rates {
        let keys: Vec<String> = (0..rate * seconds)
            .map(|i| format!("floor-r{rate}-{i}"))
            .collect();
        let (_, published) = publish_paced(&nats, "floor", keys.iter(), rate).await;
        let waiting = Instant::now();
        while keys.iter().any(|k| receiver.arrived(k).is_none()) && waiting.elapsed() < STALL {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut latencies: Vec<Duration> = keys
            .iter()
            .zip(&published)
            .filter_map(|(key, sent)| Some(receiver.arrived(key)?.saturating_duration_since(*sent)))
            .collect();
        latencies.sort_unstable();
        println!(
            "  {rate:>5}/s  relayed {:>6}  {}",
            latencies.len(),
            quantiles(&latencies)
        );
    }
}

/// One rate: publishes on schedule, waits for every message, prints the figures.
async fn phase(
    forewarn: &Forewarn,
    nats: &async_nats::Client,
    receiver: &Receiver,
    rate: usize,
    seconds: usize,
    customers: usize,
) {
    let total = rate * seconds;
    // Keys unique across backends too: the receiver outlives each run.
    let phase = format!("{}-r{rate}", forewarn.http);
    let dates = Dates::now();
    let events: Vec<(String, IdempotencyKey)> = (0..total)
        .map(|i| delayed(&dates, &phase, i, customers))
        .collect();
    let stages_before = forewarn.stage_times().await;
    let cpu_before = cpu_seconds(forewarn.process.pid());
    let bodies = events.iter().map(|(body, _)| body);
    let (started, published) = publish_paced(nats, "events.shipment.delayed", bodies, rate).await;
    let publishing = started.elapsed().as_secs_f64();
    // Every message, or until they stop coming.
    let mut last = (Instant::now(), 0);
    loop {
        let arrived = events
            .iter()
            .filter(|(_, key)| receiver.arrived(key.as_str()).is_some())
            .count();
        if arrived == total || last.0.elapsed() > STALL {
            break;
        }
        if arrived != last.1 {
            last = (Instant::now(), arrived);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds(forewarn.process.pid()) - cpu_before;
    let mut latencies = Vec::with_capacity(total);
    let mut last_arrival = started;
    for ((_, key), sent) in events.iter().zip(&published) {
        if let Some(arrived) = receiver.arrived(key.as_str()) {
            latencies.push(arrived.saturating_duration_since(*sent));
            last_arrival = last_arrival.max(arrived);
        }
    }
    latencies.sort_unstable();
    let wall = last_arrival.duration_since(started).as_secs_f64();
    println!(
        "  {rate:>5}/s  published {:>6.0}/s  delivered {:>6.0}/s  {}  CPU {:>3.0} %{}",
        total as f64 / publishing,
        latencies.len() as f64 / wall,
        quantiles(&latencies),
        100.0 * cpu / wall,
        if latencies.len() < total {
            format!("  MISSING {} of {total}", total - latencies.len())
        } else {
            String::new()
        }
    );
    let stages_after = forewarn.stage_times().await;
    let per_event: Vec<String> = stages_after
        .iter()
        .filter_map(|(stage, (seconds, count))| {
            let (s0, c0) = stages_before.get(stage).copied().unwrap_or_default();
            (count > &c0).then(|| format!("{stage} {:.0} µs", 1e6 * (seconds - s0) / total as f64))
        })
        .collect();
    println!("           per event: {}", per_event.join(", "));
    // How well the stream was batched: events per intake transaction, messages per claim.
    let batches = |stage: &str| {
        let (_, after) = stages_after.get(stage).copied().unwrap_or_default();
        let (_, before) = stages_before.get(stage).copied().unwrap_or_default();
        after.saturating_sub(before)
    };
    let (commits, claims) = (batches("intake.commit"), batches("dispatch.claim"));
    println!(
        "           batches: {commits} intake transactions ({:.1} events each), {claims} claims \
         ({:.1} messages each)",
        total as f64 / commits.max(1) as f64,
        total as f64 / claims.max(1) as f64
    );
}

#[tokio::main]
async fn main() {
    let rates = env_usizes("BENCH_RATES", "100,500,1000,2000,3000");
    let seconds = env_usize("BENCH_SECONDS", 30);
    let customers = env_usize("BENCH_CUSTOMERS", 1000);
    forewarn::gateway::install_tls_provider();
    // For the in-process forewarn that takes the customers in; the process under test gets
    // it in its own environment.
    std::env::set_var("BENCH_WEBHOOK_SECRET", SECRET);
    println!(
        "forewarn latency benchmark: publish → gateway request, {seconds} s per rate, \
         {customers} customers, one SMS per event through a signed webhook"
    );
    let receiver = Receiver::default();
    let url = receiver.start().await;
    floor(&receiver, &url, &rates, seconds).await;
    for backend in backends().iter().map(String::as_str) {
        // What other programs left for the disk to write (a build just before leaves
        // gigabytes) is written back meanwhile, and the database's fsyncs wait behind it:
        // measured, stalls of 300–500 ms in a 100 events/s run started after a build.
        let _ = std::process::Command::new("sync").status();
        let server = NatsServer::start_local().expect("nats-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let postgres = match backend {
            "postgres" => Some(
                forewarn::store::ScratchDatabase::create()
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            _ => None,
        };
        let database_url = postgres.as_ref().map_or_else(
            || format!("sqlite://{}", dir.path().join("forewarn.db").display()),
            |db| db.url(),
        );
        let mut settings = bench_settings(server.url(), database_url, dir.path());
        settings.gateways.sms = GatewayConfig::Webhook(WebhookConfig {
            url: url.clone(),
            secret_env: "BENCH_WEBHOOK_SECRET".into(),
            timeout: Duration::from_secs(10),
        });

        // Customers first, taken in by a forewarn in this process.
        let nats = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(nats.clone());
        take_in_customers(&settings, &js, (0..customers).map(sms_customer).collect()).await;

        println!("{backend}:");
        let forewarn = start(&mut settings, dir.path(), &nats, &receiver).await;
        for &rate in &rates {
            phase(&forewarn, &nats, &receiver, rate, seconds, customers).await;
        }
        assert_eq!(
            *receiver.forged.lock().expect("forged"),
            0,
            "every signature verifies"
        );
        drop(forewarn);
    }
}
