//! `spawn_app()`: a private nats-server, a fresh folder with the SQLite file and sandbox
//! outbox, and the forewarn binary running against them with the repository's own rules and
//! templates. Helpers publish events and await conditions; nothing sleeps to synchronise.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use forewarn::cli::demo::nats_server::{free_port, NatsServer};
use forewarn::store::{OutboxCounts, ScratchDatabase, Store};
use serde_json::{json, Value};

pub use crate::database::{Database, StatusTable, Table};

/// The database a test binary runs every test on (each binary names its own: `crate::BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each binary constructs one of them
pub enum Backend {
    /// A SQLite file in the test's folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server `FOREWARN_TEST_POSTGRES_URL` names.
    Postgres,
}

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct App {
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub js: jetstream::Context,
    /// Forewarn's own store on the test's database, for the reads users have.
    pub store: std::sync::Arc<dyn Store>,
    /// What the store's own reads do not answer (see `database.rs`).
    pub db: Database,
    /// Where forewarn's database is.
    pub database_url: String,
    /// The test's own PostgreSQL database, dropped after forewarn is stopped.
    _scratch: Option<ScratchDatabase>,
    child: Option<Child>,
    extra_config: String,
    env: Vec<(String, String)>,
}

/// Options for the `[outbox]` and `[intake]` tables of the test's config.
#[derive(Clone)]
pub struct Options {
    pub dispatch: bool,
    pub outbox_batch: usize,
    pub concurrency: usize,
    /// `[database] busy_timeout`: how long forewarn waits for a lock the test holds.
    pub busy_timeout: &'static str,
    /// Copy the repository's rules and templates into the app's folder, for tests that edit them.
    pub own_authoring: bool,
    /// Appended to the config (gateways, retry bounds).
    pub extra_config: String,
    /// Environment of the forewarn process (secrets).
    pub env: Vec<(String, String)>,
    /// With `own_authoring`: one more rule file, `rules/zz-test.toml`.
    pub extra_rules: Option<String>,
    /// The `[quiet_hours.default]` table's body; none means every window off.
    pub quiet_hours: Option<String>,
    /// Run `[schedules]` inside `forewarn run` (off: tests drive schedules themselves).
    pub scheduler: bool,
    /// `[outbox] claim_lease`: short, so a killed process's claims come back quickly.
    pub claim_lease: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dispatch: true,
            outbox_batch: 500,
            concurrency: 64,
            busy_timeout: "5s",
            own_authoring: false,
            extra_config: String::new(),
            env: Vec::new(),
            extra_rules: None,
            quiet_hours: None,
            scheduler: false,
            claim_lease: "1s",
        }
    }
}

pub async fn spawn_app() -> App {
    spawn_app_with(Options::default()).await
}

/// An app that queues outreach but does not send it, for tests that read the outbox.
pub async fn spawn_app_queueing_only() -> App {
    spawn_app_with(Options {
        dispatch: false,
        ..Options::default()
    })
    .await
}

pub async fn spawn_app_with(options: Options) -> App {
    // The tests' own HTTP clients (readiness, metrics, stand-ins) use the same TLS set-up.
    forewarn::gateway::install_tls_provider();
    let nats = NatsServer::start_local().expect("a nats-server for the test");
    let dir = tempfile::tempdir().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    // A SQLite file in the test's folder, or a PostgreSQL database of the test's own.
    let scratch = match crate::BACKEND {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            ScratchDatabase::create()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    };
    let database_url = match &scratch {
        Some(database) => database.url(),
        None => format!("sqlite://{}", dir.path().join("forewarn.db").display()),
    };
    let settings = forewarn::store::DatabaseSettings {
        url: database_url.clone(),
        ..Default::default()
    };
    let store = forewarn::store::connect(&settings).await.unwrap();
    let mut app = App {
        http_port: free_port().unwrap(),
        js,
        db: Database::connect(&database_url).await,
        store,
        database_url,
        _scratch: scratch,
        nats,
        dir,
        child: None,
        extra_config: options.extra_config.clone(),
        env: options.env.clone(),
    };
    if options.own_authoring {
        copy_dir(&repo().join("rules"), &app.dir.path().join("rules"));
        copy_dir(&repo().join("templates"), &app.dir.path().join("templates"));
        if let Some(rules) = &options.extra_rules {
            std::fs::write(app.dir.path().join("rules/zz-test.toml"), rules).unwrap();
        }
    }
    app.write_config(&options);
    app.start();
    app.wait_ready().await;
    app
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl App {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("forewarn.toml")
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Writes the config; `extra` is appended (used to break it on purpose).
    pub fn write_config(&mut self, options: &Options) {
        let text = format!(
            r#"
[nats]
url = "{nats}"

[database]
url = "{database}"
busy_timeout = "{busy}"

[paths]
rules = "{authoring}/rules"
templates = "{authoring}/templates"
outbox = "{dir}/outbox"

[http]
listen = "127.0.0.1:{port}"

[intake]
ack_wait = "3s"
retry_delay = "100ms"

# Off unless the test sets them, so no test depends on the hour it runs at.
[quiet_hours.default]
{quiet}

[scheduler]
enabled = {scheduler}

[outbox]
dispatch = {dispatch}
batch_size = {batch}
concurrency = {concurrency}
poll_interval = "50ms"
claim_lease = "{claim_lease}"
{extra}"#,
            nats = self.nats.url(),
            database = self.database_url,
            dir = self.dir.path().display(),
            authoring = if options.own_authoring {
                self.dir.path().display().to_string()
            } else {
                repo().display().to_string()
            },
            port = self.http_port,
            dispatch = options.dispatch,
            scheduler = options.scheduler,
            batch = options.outbox_batch,
            concurrency = options.concurrency,
            busy = options.busy_timeout,
            claim_lease = options.claim_lease,
            extra = self.extra_config,
            quiet = options.quiet_hours.clone().unwrap_or_else(|| {
                [
                    "marketing_sms",
                    "marketing_email",
                    "marketing_push",
                    "transactional_sms",
                    "transactional_email",
                    "transactional_push",
                ]
                .map(|key| format!("{key} = \"\""))
                .join("\n")
            }),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts `forewarn run` with this app's config.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "forewarn is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("forewarn.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_forewarn"))
            .args(["--config", self.config_path().to_str().unwrap(), "run"])
            .env_remove("FOREWARN_CONFIG")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Restarts with new options.
    pub async fn restart_with(&mut self, options: Options) {
        self.write_config(&options);
        self.start();
        self.wait_ready().await;
    }

    /// The Prometheus text forewarn serves on `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("forewarn.log")).unwrap_or_default()
    }

    /// The lines of the log that contain `phrase`.
    pub fn logged(&self, phrase: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(phrase))
            .map(str::to_owned)
            .collect()
    }

    pub async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("forewarn exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "forewarn never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The forewarn process's peak resident memory so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        self.memory("VmHWM")
    }

    /// The forewarn process's resident memory now, in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        self.memory("VmRSS")
    }

    /// A memory figure of `/proc/<pid>/status`, in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let child = self.child.as_ref().expect("forewarn is running");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"));
        kib * 1024
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the running forewarn.
    pub fn signal(&self, name: &str) {
        signal(self.child.as_ref().expect("forewarn is running").id(), name);
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("forewarn is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for the process to exit and returns its status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("forewarn is running");
        signal(child.id(), "TERM");
        wait_for("forewarn to exit after SIGTERM", || {
            let exited = child.try_wait().unwrap();
            async move { exited.is_some() }
        })
        .await;
        child.wait().unwrap()
    }

    pub async fn publish(&self, event: &Value) {
        let subject = format!("events.{}", event["type"].as_str().unwrap_or("unknown"));
        self.publish_raw(&subject, event.to_string().into_bytes())
            .await;
    }

    pub async fn publish_raw(&self, subject: &str, body: Vec<u8>) {
        self.js
            .publish(subject.to_owned(), body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes every line of an `examples/events` file; returns how many.
    pub async fn publish_example(&self, name: &str) -> usize {
        let text = std::fs::read_to_string(repo().join("examples/events").join(name)).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let subject = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["type"].as_str().map(|t| format!("events.{t}")))
                .unwrap_or_else(|| "events.unknown".into());
            self.publish_raw(&subject, line.as_bytes().to_vec()).await;
            n += 1;
        }
        n
    }

    /// Forewarn's durable consumer as the server reports it; `None` until forewarn made it.
    async fn intake_consumer(&self) -> Option<jetstream::consumer::Info> {
        let stream = self.js.get_stream("FOREWARN_EVENTS").await.ok()?;
        let consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>("forewarn")
            .await
            .ok()?;
        consumer.get_info().await.ok()
    }

    /// Whether intake has acked everything published so far.
    pub async fn intake_idle(&self) -> bool {
        self.intake_consumer()
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    }

    /// Events the server has handed to forewarn that it has not acked yet.
    pub async fn unacked(&self) -> u64 {
        let info = self.intake_consumer().await.expect("forewarn's consumer");
        info.num_ack_pending as u64
    }

    pub async fn wait_intake_idle(&self) {
        wait_for("intake to ack everything", || self.intake_idle()).await;
    }

    pub async fn counts(&self) -> OutboxCounts {
        self.store.outbox_counts().await.unwrap()
    }

    pub async fn wait_sent(&self, n: u64) {
        wait_for(&format!("{n} messages sent"), || async {
            self.counts().await.sent >= n
        })
        .await;
    }

    /// Every line the sandbox wrote for `channel`.
    pub fn sandbox(&self, channel: &str) -> Vec<Value> {
        read_jsonl(&self.outbox_dir().join(format!("{channel}.jsonl")))
    }

    /// Every sandbox line of every channel.
    pub fn sandbox_all(&self) -> Vec<Value> {
        ["sms", "email", "push"]
            .iter()
            .flat_map(|c| self.sandbox(c))
            .collect()
    }

    /// The risk explanation stored with the message `event_id` caused.
    pub async fn explanation(&self, event_id: &str) -> Value {
        let key = self.db.outbox_for_event(event_id).await.idempotency_key;
        self.store
            .outreach_risk(&forewarn::domain::IdempotencyKey::from_stored(key))
            .await
            .unwrap()
            .expect("an explanation")
    }

    /// Claims what the outbox would hand a dispatcher at `now` (no forewarn running); returns
    /// the customers.
    pub async fn store_claim(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease: std::time::Duration,
    ) -> Vec<String> {
        self.store
            .claim_due(now, lease, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.customer_id)
            .collect()
    }

    /// A scheduler in the test's own process, on `clock`, against this app's database and
    /// NATS: the schedules of its config, changed by `adjust` first.
    pub async fn scheduler(
        &self,
        clock: std::sync::Arc<forewarn::schedule::ManualClock>,
        adjust: impl FnOnce(&mut forewarn::config::Settings),
    ) -> forewarn::schedule::Scheduler {
        let mut settings = forewarn::config::Settings::load(Some(&self.config_path())).unwrap();
        adjust(&mut settings);
        let store = forewarn::store::connect(&settings.database).await.unwrap();
        let ctx = forewarn::schedule::JobContext {
            store,
            emitter: forewarn::schedule::Emitter::new(
                self.js.clone(),
                &settings.scheduler.subject_prefix,
                &settings.scheduler.source,
            ),
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
        };
        forewarn::schedule::Scheduler::new(
            settings.schedules().unwrap(),
            ctx,
            clock,
            settings.scheduler.clone(),
        )
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies the folder `from`, and everything under it, to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `forewarn announce <args>` against the app's config.
pub fn announce(app: &App, args: &[&str]) -> (i32, String) {
    let config = app.config_path();
    let mut all = vec!["--config", config.to_str().unwrap(), "announce"];
    all.extend_from_slice(args);
    forewarn_cli(app.dir.path(), &all, &[])
}

/// `announce start` for incident `id`: checkout errors in Korea, major, then `extra`.
pub fn start_args<'a>(id: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "start",
        "--id",
        id,
        "--title",
        "Checkout errors",
        "--service",
        "checkout",
        "--region",
        "kr",
        "--severity",
        "major",
        "--message",
        "Card payments fail; we are fixing it.",
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs the `forewarn` binary with `args` in `dir` (no `FOREWARN_CONFIG` from the test's
/// environment, `env` added); returns its exit code and its stdout followed by its stderr.
pub fn forewarn_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(args)
        .current_dir(dir)
        .env_remove("FOREWARN_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_within(what, PATIENCE, condition).await;
}

/// [`wait_for`] with a patience of its own, for work that is large on purpose.
pub async fn wait_within<F, Fut>(what: &str, patience: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `shipment.delayed` for customer `c-{i}` carrying the customer inline, so every event
/// stands alone.
pub fn delayed_event(i: usize) -> Value {
    json!({
        "specversion": "1.0", "id": format!("evt-delay-{i}"), "source": "test/carrier",
        "type": "shipment.delayed", "time": "2026-11-23T09:15:00Z", "subject": format!("shp-{i}"),
        "data": {
            "shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
            "customer": {"id": format!("c-{i}"), "name": "김지수", "locale": "ko-KR",
                         "timezone": "Asia/Seoul", "phone": format!("+8210{:08}", i),
                         "channels": ["sms"], "consent": {"marketing": true}},
            "carrier": "CJ대한통운", "promised_by": "2026-11-25T09:00:00Z",
            "new_eta": "2026-11-27T09:00:00Z",
            "alternatives": [{"kind": "pickup", "sku": "SHOE-270", "name": "러닝화 270",
                              "store": {"id": "st-12", "name": "강남점", "address": "서울 강남구 테헤란로 1"}}]
        }
    })
}

/// Asserts each key appears exactly once across the sandbox files.
pub fn assert_each_key_once(lines: &[Value], expected: usize) {
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    let total = keys.len();
    keys.dedup();
    assert_eq!(total, keys.len(), "a message was sent twice");
    assert_eq!(keys.len(), expected, "messages missing");
}

/// Sends process `pid` signal `name` (`HUP`, `TERM`, `STOP`, …).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
