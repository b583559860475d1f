//! What the benchmarks share.

/// The allocator the `forewarn` binary runs on (`src/main.rs`): what a benchmark runs in its
/// own process is measured as it runs in forewarn's. On the system allocator the simulate
/// benchmark took half as long again (68.2 s against 45.0 s for a million events).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A size from the environment (`BENCH_EVENTS=…`), else `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of sizes from the environment (`BENCH_RATES=100,500`), else
/// `default`'s.
#[allow(dead_code)] // Not every bench uses every helper.
pub(crate) fn env_usizes(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The backends a bench runs on: `BENCH_BACKENDS`, default `sqlite,postgres`.
#[allow(dead_code)] // Not every bench uses every helper.
pub(crate) fn backends() -> Vec<String> {
    std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(|b| b.trim().to_owned())
        .collect()
}

/// The settings every bench starts from: the repository's rules and templates.
#[allow(dead_code)] // Not every bench uses every helper.
pub(crate) fn repo_settings() -> forewarn::config::Settings {
    forewarn::config::Settings {
        paths: forewarn::config::PathSettings {
            rules: concat!(env!("CARGO_MANIFEST_DIR"), "/rules").into(),
            templates: concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
            ..Default::default()
        },
        ..forewarn::config::Settings::default()
    }
}

/// The process's peak resident memory (`VmHWM`), in MiB.
#[allow(dead_code)]
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// A Twilio-shaped server on a free local port that takes every message at once (201 with a
/// `sid`), calling `seen` for each; returns its base URL. Its auth token is `bench-token` in
/// `BENCH_TWILIO_TOKEN`, for [`twilio_gateway`].
#[allow(dead_code)]
pub(crate) async fn twilio_stand_in(seen: impl Fn() + Clone + Send + Sync + 'static) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let router = axum::Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        axum::routing::post(move || {
            seen();
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                (
                    axum::http::StatusCode::CREATED,
                    format!(r#"{{"sid":"SM{n:032}","status":"queued"}}"#),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    // Set before any gateway reads the environment; the benches run nothing else yet.
    std::env::set_var("BENCH_TWILIO_TOKEN", "bench-token");
    url
}

/// The SMS gateway settings for a [`twilio_stand_in`] at `url`.
#[allow(dead_code)]
pub(crate) fn twilio_gateway(url: &str) -> forewarn::gateway::GatewayConfig {
    forewarn::gateway::GatewayConfig::Twilio(forewarn::gateway::TwilioConfig {
        base_url: url.to_owned(),
        account_sid: "AC00000000000000000000000000000001".into(),
        auth_token_env: "BENCH_TWILIO_TOKEN".into(),
        from: "+15005550006".into(),
        status_callback: None,
        timeout: std::time::Duration::from_secs(10),
    })
}

/// Seconds and count per stage of `forewarn_stage_seconds`, read from the recorder's rendering.
#[allow(dead_code)]
pub(crate) type StageTimes = std::collections::BTreeMap<String, (f64, u64)>;

/// Installs forewarn's metrics recorder for this process (before forewarn starts, so the bench
/// holds the handle) and returns it.
#[allow(dead_code)]
pub(crate) fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    forewarn::metrics::install().expect("no other recorder installed")
}

/// The stage totals recorded so far.
#[allow(dead_code)]
pub(crate) fn stage_times(handle: &metrics_exporter_prometheus::PrometheusHandle) -> StageTimes {
    parse_stage_times(&handle.render())
}

/// The stage totals in a Prometheus text (a `/metrics` page).
#[allow(dead_code)]
pub(crate) fn parse_stage_times(text: &str) -> StageTimes {
    let mut times = StageTimes::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(forewarn::metrics::STAGE_SECONDS) else {
            continue;
        };
        let (field, rest) = match rest.split_once("{stage=\"") {
            Some(("_sum", rest)) => ("sum", rest),
            Some(("_count", rest)) => ("count", rest),
            _ => continue,
        };
        let Some((stage, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let entry = times.entry(stage.to_owned()).or_default();
        if field == "sum" {
            entry.0 = value;
        } else {
            entry.1 = value as u64;
        }
    }
    times
}

/// Prints, per stage, the time spent between `before` and `after`: total seconds, share of
/// `wall` seconds, and microseconds per unit of work (`units` events, messages, customers).
#[allow(dead_code)]
pub(crate) fn print_stages(before: &StageTimes, after: &StageTimes, wall: f64, units: usize) {
    println!("    where the time went (stage: seconds, % of wall time, µs per item, passes):");
    for (stage, (seconds, count)) in after {
        let (seconds_before, count_before) = before.get(stage).copied().unwrap_or_default();
        let (seconds, count) = (seconds - seconds_before, count - count_before);
        if count == 0 {
            continue;
        }
        println!(
            "      {stage:<27} {seconds:>8.2} s {:>5.0} % {:>8.1} µs {count:>7}",
            100.0 * seconds / wall,
            1e6 * seconds / units as f64,
        );
    }
}

/// Publishes `bodies` to JetStream on `subject`, five hundred acks awaited at a time.
#[allow(dead_code)]
pub(crate) async fn publish_all(
    js: &async_nats::jetstream::Context,
    subject: &str,
    bodies: impl Iterator<Item = String>,
) {
    let mut pending = Vec::with_capacity(500);
    for body in bodies {
        pending.push(
            js.publish(subject.to_owned(), body.into())
                .await
                .expect("publish"),
        );
        if pending.len() == 500 {
            for ack in pending.drain(..) {
                ack.await.expect("publish ack");
            }
        }
    }
    for ack in pending {
        ack.await.expect("publish ack");
    }
}

/// Takes `bodies` (`customer.upserted` events) in with a forewarn in this process on
/// `settings` (dispatch and HTTP off), until all of them are stored, then stops it: the
/// customers a run's events are about, known before its clock starts.
#[allow(dead_code)]
pub(crate) async fn take_in_customers(
    settings: &forewarn::config::Settings,
    js: &async_nats::jetstream::Context,
    bodies: Vec<String>,
) {
    let mut taking_in = settings.clone();
    taking_in.outbox.dispatch = false;
    taking_in.http.enabled = false;
    let running = forewarn::cli::start(taking_in, None).await.expect("start");
    let count = bodies.len();
    publish_all(js, "events.customer.upserted", bodies.into_iter()).await;
    let store = running.store().clone();
    while (store.event_count().await.expect("count") as usize) < count {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(store);
    running.wait(std::future::ready(())).await.expect("stop");
}

/// User and system CPU seconds a process has used so far (`/proc/<pid>/stat`, in clock ticks
/// of 1/100 s).
#[allow(dead_code)]
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `customer.upserted` event for customer `c-<i>`: Korean, reachable by SMS only, consenting.
#[allow(dead_code)]
pub(crate) fn sms_customer(i: usize) -> String {
    serde_json::json!({
        "specversion": "1.0", "id": format!("cust-{i}"), "source": "bench/crm",
        "type": "customer.upserted",
        "data": {"id": format!("c-{i}"), "name": "김지수", "locale": "ko-KR", "timezone": "Asia/Seoul",
                 "phone": format!("+8210{i:08}"), "channels": ["sms"], "consent": {"sms": true}}
    })
    .to_string()
}

/// The settings a throughput or latency bench starts from: the repository's rules and
/// templates, the given NATS and database, the run's folder for the sandbox outbox, no HTTP,
/// and neither quiet hours nor caps — the figures must not depend on the hour the bench runs
/// at, and every customer gets several messages, which caps would withhold.
#[allow(dead_code)]
pub(crate) fn bench_settings(
    nats_url: String,
    database_url: String,
    dir: &std::path::Path,
) -> forewarn::config::Settings {
    let mut settings = repo_settings();
    settings.nats.url = nats_url;
    settings.database.url = database_url;
    settings.paths.outbox = dir.join("outbox");
    settings.http.enabled = false;
    settings.quiet_hours = forewarn::policy::QuietHoursSettings::off();
    settings.caps = forewarn::policy::CapSettings::off();
    // `BENCH_RELAY=off`: without the relay publishing outreach events beside the work measured,
    // to tell its cost from the triggers'.
    settings.relay.enabled = std::env::var("BENCH_RELAY").map_or(true, |v| v != "off");
    settings
}

/// A `forewarn run` process (the binary built with the benches), stopped with SIGTERM when
/// dropped.
#[allow(dead_code)]
pub(crate) struct RunProcess {
    child: std::process::Child,
}

#[allow(dead_code)]
impl RunProcess {
    /// Writes `settings` to `dir/forewarn.toml` (shared by every process of a run) and starts
    /// `forewarn run` on it, logging at WARN to `dir/<name>.log`.
    pub(crate) fn start(
        settings: &forewarn::config::Settings,
        dir: &std::path::Path,
        name: &str,
    ) -> RunProcess {
        let config = dir.join("forewarn.toml");
        std::fs::write(
            &config,
            toml::to_string(settings).expect("settings as TOML"),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
            .args(["--config", config.to_str().expect("path"), "run"])
            .env_remove("FOREWARN_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("forewarn run");
        RunProcess { child }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
