//! Scale-out: three `forewarn run` processes on one PostgreSQL database and one JetStream
//! consumer, sending through a webhook gateway to a receiver that verifies every signature and
//! counts every key. One process is killed and one stopped mid-stream, and both come back:
//! everything is delivered, and a key arrives twice only when forewarn itself reports the
//! resend of a request that was in flight at the kill.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::ledger::*;

/// Outreach (and events) of the intake test; customers of the fan-out test.
const VOLUME: usize = 20_000;
/// How long the whole of a test's volume may take on a debug build.
const LARGE_PATIENCE: Duration = Duration::from_secs(600);

/// Another `forewarn run` on the app's config, with an HTTP port of its own.
struct Peer {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Peer {
    async fn start(app: &App, n: usize) -> Peer {
        Peer::start_with(app, n, |config| config).await
    }

    /// A peer on the app's config as `edit` changes it.
    async fn start_with(app: &App, n: usize, edit: impl FnOnce(String) -> String) -> Peer {
        let port = forewarn::cli::demo::nats_server::free_port().unwrap();
        let text = edit(std::fs::read_to_string(app.config_path()).unwrap()).replace(
            &format!("listen = \"127.0.0.1:{}\"", app.http_port),
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let config = app.dir.path().join(format!("forewarn-{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut peer = Peer {
            child: None,
            port,
            config,
            log: app.dir.path().join(format!("forewarn-{n}.log")),
        };
        peer.spawn().await;
        peer
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_forewarn"))
                .args(["--config", self.config.to_str().unwrap(), "run"])
                .env_remove("FOREWARN_CONFIG")
                .env("RUST_LOG", "info")
                .env("TEST_WEBHOOK_SECRET", SECRET)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        wait_for("a peer to be ready", || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    async fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "TERM");
        wait_for("a peer to exit after SIGTERM", || {
            let exited = child.try_wait().unwrap();
            async move { exited.is_some() }
        })
        .await;
    }

    async fn metrics(&self) -> String {
        metrics_at(self.port).await
    }

    /// Pauses the process (SIGSTOP) and waits until every one of its threads has stopped.
    /// `kill` returns once the signal is queued, and the process's threads stop only as the
    /// one that takes it gets to run: on a loaded machine the others went on and sent two
    /// more requests after `kill` had returned (seen in CI).
    async fn pause(&self) {
        let pid = self.child.as_ref().unwrap().id();
        signal(pid, "STOP");
        wait_for("every thread of the peer to stop", || async move {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
            threads.map(|thread| thread.unwrap().path()).all(|thread| {
                // `tid (name) state …`: the name may hold spaces and parentheses.
                let stat = std::fs::read_to_string(thread.join("stat")).unwrap_or_default();
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                state.is_none_or(|state| state.starts_with('T'))
            })
        })
        .await;
    }

    /// Lets a paused process go on (SIGCONT).
    fn resume(&self) {
        signal(self.child.as_ref().unwrap().id(), "CONT");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The warnings and errors every process logged, for a failure's message.
fn warnings(app: &App, peers: &[Peer]) -> String {
    log_lines(app, peers)
        .into_iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn metrics_at(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every line the app and its peers logged (a peer's log spans its restarts).
fn log_lines(app: &App, peers: &[Peer]) -> Vec<String> {
    let mut logs = vec![app.log()];
    logs.extend(
        peers
            .iter()
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default()),
    );
    logs.iter()
        .flat_map(|log| log.lines())
        .map(str::to_owned)
        .collect()
}

/// Every line the app and the peer (`peer_log`) logged about each of `keys`, and the peer's
/// unrecorded outcomes: what a failure needs to tell which process sent a key twice.
fn key_histories(app: &App, keys: &[String], peer_log: &str) -> String {
    let app_log = app.log();
    let mut history = String::new();
    for key in keys {
        history.push_str(&format!("{key}:\n"));
        for (process, log) in [("app", app_log.as_str()), ("peer", peer_log)] {
            for line in log.lines().filter(|line| line.contains(key.as_str())) {
                history.push_str(&format!("  {process}: {line}\n"));
            }
        }
    }
    for line in peer_log
        .lines()
        .filter(|line| line.contains("Outcomes not recorded"))
    {
        history.push_str(&format!("peer: {line}\n"));
    }
    history
}

/// The keys any of the processes logged resending because the gateway could not say whether
/// the attempt in flight at a kill had arrived.
fn logged_resends(app: &App, peers: &[Peer]) -> std::collections::HashSet<String> {
    resent_keys(log_lines(app, peers).iter().map(String::as_str))
        .into_keys()
        .collect()
}

/// The ledger of a run of [`VOLUME`] outreach across the app and its peers, every duplicate
/// checked against the resends any of them logged.
fn settle(app: &App, peers: &[Peer], receiver: &Receiver, fault: &str) {
    let lines = log_lines(app, peers);
    Ledger::of(
        fault,
        VOLUME,
        VOLUME,
        &receiver.counts(),
        &resent_keys(lines.iter().map(String::as_str)),
    )
    .settle("postgres", || warnings(app, peers));
}

/// The app and two peers on one PostgreSQL database, sending SMS through the webhook.
async fn cluster(receiver_url: &str, scheduler: bool, extra: &str) -> (App, Vec<Peer>) {
    let app = spawn_app_with(Options {
        scheduler,
        extra_config: format!("{}{extra}", webhook_sms(receiver_url)),
        env: vec![("TEST_WEBHOOK_SECRET".into(), SECRET.into())],
        // Six processes and PostgreSQL share two cores here: a lease long enough that a
        // starved process still extends its claims in time; a killed one's come back after it.
        claim_lease: "5s",
        ..Options::default()
    })
    .await;
    let peers = vec![Peer::start(&app, 2).await, Peer::start(&app, 3).await];
    (app, peers)
}

#[tokio::test]
async fn three_processes_lose_nothing_and_repeat_only_what_a_kill_left_in_flight() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let (mut app, mut peers) = cluster(&url, false, "").await;
    let publisher = {
        let js = app.js.clone();
        tokio::spawn(async move { publish_many(&js, (0..VOLUME).map(delayed_event)).await })
    };

    // One process dies without warning a third of the way; another is stopped half way.
    wait_within("a third delivered", LARGE_PATIENCE, || async {
        receiver.distinct() >= VOLUME / 3
    })
    .await;
    peers[0].kill();
    wait_within("half delivered", LARGE_PATIENCE, || async {
        receiver.distinct() >= VOLUME / 2
    })
    .await;
    let before_stop = peers[1].metrics().await;
    peers[1].terminate().await;
    peers[0].spawn().await;
    peers[1].spawn().await;
    publisher.await.unwrap();

    wait_delivered(&app, &receiver, VOLUME, LARGE_PATIENCE).await;

    assert_eq!(receiver.distinct(), VOLUME);
    assert_eq!(
        *receiver.forged.lock().unwrap(),
        0,
        "every signature verifies"
    );
    assert_eq!(app.db.count(Table::Events).await, VOLUME as i64);
    // A repeat is the resend of a request in flight at the kill, which forewarn reports: in
    // its metric (a lower bound here — a process's counts end with it, and one may resend
    // while it drains after SIGTERM) and, key by key, in its log.
    let resends = |metrics: &str| counter(metrics, "forewarn_outbox_ambiguous_resends_total", &[]);
    let mut reported = resends(&before_stop) + resends(&app.metrics().await);
    for peer in &peers {
        reported += resends(&peer.metrics().await);
    }
    let repeats = receiver.repeats();
    let logged = logged_resends(&app, &peers);
    eprintln!(
        "scale-out: {VOLUME} delivered, {repeats} repeated, {reported} resends in the metrics of \
         the processes still up, {} logged",
        logged.len()
    );
    settle(
        &app,
        &peers,
        &receiver,
        "three processes, one SIGKILLed and one SIGTERMed mid-stream",
    );
    app.kill();
}

/// An incident's customer, in Seoul, reachable by SMS.
fn customer(i: usize) -> Value {
    json!({"specversion": "1.0", "id": format!("cust-{i}"), "source": "test/crm",
           "type": "customer.upserted", "time": "2026-11-23T08:00:00Z",
           "data": {"id": format!("c-{i:05}"), "name": "김지수", "locale": "ko-KR",
                    "timezone": "Asia/Seoul", "phone": format!("+8210{i:08}"),
                    "channels": ["sms"], "consent": {"sms": true}, "region": "kr-seoul"}})
}

#[tokio::test]
async fn three_processes_tell_every_customer_of_an_incident_once_and_tick_once() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let (app, peers) = cluster(
        &url,
        true,
        "\n[incidents]\npage_size = 500\n[schedules.release]\ncron = \"* * * * * *\"\n",
    )
    .await;
    publish_many(&app.js, (0..VOLUME).map(customer)).await;
    wait_within("the directory taken in", LARGE_PATIENCE, || async {
        app.intake_idle().await
    })
    .await;
    app.publish(
        &json!({"specversion": "1.0", "id": "inc-1:started", "source": "test/status",
        "type": "outage.started",
        "data": {"incident_id": "inc-1", "title": "Checkout errors", "services": ["checkout"],
                 "regions": ["kr"], "severity": "critical", "affected": {"regions": ["kr"]},
                 "message": "Card payments fail."}}),
    )
    .await;

    wait_delivered(&app, &receiver, VOLUME, LARGE_PATIENCE).await;
    // Nobody told twice, but for the requests forewarn reports may have arrived (on a machine
    // this loaded, a request can outlast the gateway's timeout or a starved claim its lease).
    settle(
        &app,
        &peers,
        &receiver,
        "an incident told by three processes",
    );

    // Every second's release tick ran in one of the three: the runs the processes report
    // (read first) are no more than the ticks recorded (read after), but for one in progress.
    let release_runs = |metrics: &str| {
        counter(
            metrics,
            "forewarn_schedule_runs_total",
            &["schedule=\"release\"", "outcome=\"ok\""],
        )
    };
    let mut ran = release_runs(&app.metrics().await);
    for peer in &peers {
        ran += release_runs(&peer.metrics().await);
    }
    let runs = app.store.schedule_runs("release", 10_000).await.unwrap();
    let recorded = runs.len();
    assert!(ran >= 2.0, "release ran {ran} times");
    assert!(
        ran as usize <= recorded + 1,
        "{ran} runs reported by the processes for {recorded} ticks recorded"
    );
}

/// A dispatcher paused (SIGSTOP) past its claim lease with a batch in hand: another process
/// takes the batch over and sends it; woken, the paused one sends none of what it still held
/// and records none of its outcomes. Only the requests it had in flight at the pause arrive
/// twice, and the process that took them over reports each resend.
#[tokio::test]
async fn a_dispatcher_paused_past_its_lease_neither_sends_nor_records_what_was_taken_over() {
    const EVENTS: usize = 200;
    const IN_FLIGHT: usize = 2;
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let options = Options {
        // The app only takes events in at first; the peer sends, through the gate.
        dispatch: false,
        concurrency: IN_FLIGHT,
        extra_config: webhook_sms(&url),
        env: vec![("TEST_WEBHOOK_SECRET".into(), SECRET.into())],
        claim_lease: "2s",
        ..Options::default()
    };
    let mut app = spawn_app_with(options.clone()).await;
    let mut peer = Peer::start_with(&app, 2, |config| {
        config
            .replace("dispatch = false", "dispatch = true")
            .replace("/hooks/forewarn", "/hooks/held")
    })
    .await;
    publish_many(&app.js, (0..EVENTS).map(delayed_event)).await;

    // The peer holds claims on more messages than it has requests in flight, stuck at the
    // gate, and every event is in. (Paused inside an intake transaction, it would hold the
    // app's intake up for `database.stalled_transaction_timeout`; see the store's tests.)
    wait_for("the peer's requests held and more claimed", || async {
        receiver.gate.waiting() == IN_FLIGHT
            && app.counts().await.sending > IN_FLIGHT as u64
            && app.intake_idle().await
    })
    .await;
    peer.pause().await;
    receiver.gate.open();

    // The app takes over once the peer's claims run out, and sends everything.
    app.terminate().await;
    app.restart_with(Options {
        dispatch: true,
        ..options
    })
    .await;
    wait_within("every outreach delivered", LARGE_PATIENCE, || async {
        let c = app.counts().await;
        receiver.distinct() == EVENTS && c.sent as usize == EVENTS && c.sending == 0
    })
    .await;

    // Woken, the peer finishes its batches and stops.
    peer.resume();
    peer.terminate().await;
    // Every claim the peer held ran out with its outcome unknown to the app, which resent
    // each one (the webhook cannot say what arrived) and said so.
    let taken_over = logged_resends(&app, &[]);
    let log = std::fs::read_to_string(&peer.log).unwrap();
    let not_sent = log
        .matches("Not sending: this dispatcher was held up")
        .count();
    eprintln!(
        "paused: the peer held {} claims, {IN_FLIGHT} in flight; woken, it left {not_sent} \
         unsent; {} repeated at the receiver",
        taken_over.len(),
        receiver.repeats()
    );
    assert_eq!(
        receiver.repeats(),
        IN_FLIGHT,
        "only the requests in flight at the pause arrive twice; what each process logged of \
         them:\n{}",
        key_histories(&app, &receiver.repeated_keys(), &log)
    );
    for key in receiver.repeated_keys() {
        assert!(taken_over.contains(&key), "{key} arrived twice unreported");
    }
    assert_eq!(
        not_sent + IN_FLIGHT,
        taken_over.len(),
        "everything the peer held but had not sent is left to the app"
    );
    assert!(
        log.contains("Outcomes not recorded"),
        "the requests in flight at the pause are not recorded by the peer"
    );
    assert_eq!(app.counts().await.sent as usize, EVENTS);
    let log = app.log();
    Ledger::of(
        "SIGSTOP past the lease, two processes",
        EVENTS,
        EVENTS,
        &receiver.counts(),
        &resent_keys(log.lines()),
    )
    .settle("postgres", || warnings(&app, std::slice::from_ref(&peer)));
    app.kill();
}
