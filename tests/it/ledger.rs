//! What the fault tests count: a webhook receiver that verifies every signature and counts every
//! idempotency key across processes (optionally failing a share of requests as a provider
//! does), and the ledger each run ends with — published, expected, delivered, duplicates, lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::{wait_within, App};

/// The webhook gateway's signing secret in these tests.
pub const SECRET: &str = "whsec-scale-out-0123456789";

/// A webhook receiver: checks each request's signature as a real receiver would, and counts
/// deliveries per idempotency key.
#[derive(Clone, Default)]
pub struct Receiver {
    keys: Arc<Mutex<HashMap<String, usize>>>,
    pub forged: Arc<Mutex<usize>>,
    /// Requests to `/hooks/held` wait here until it opens.
    pub gate: Gate,
    /// Requests answered so far, for [`Faults`].
    requests: Arc<AtomicUsize>,
    faults: Faults,
    failed: Arc<AtomicUsize>,
}

/// Requests a receiver fails on purpose, each out of every ten: answered 500, answered 429,
/// held past the gateway's timeout and dropped unprocessed (a load balancer's timeout), or
/// processed and then answered too late (a slow provider).
#[derive(Clone, Copy, Default)]
pub struct Faults {
    pub server_errors: usize,
    pub throttled: usize,
    pub timeouts: usize,
    pub late: usize,
    /// How long a timed-out request is held: longer than the gateway's `timeout`.
    pub hold: Duration,
}

/// Holds requests until opened, counting those waiting.
#[derive(Clone, Default)]
pub struct Gate {
    waiting: Arc<AtomicUsize>,
    opened: Arc<tokio::sync::Notify>,
    open: Arc<AtomicBool>,
}

impl Gate {
    async fn pass(&self) {
        let opened = self.opened.notified();
        if !self.open.load(SeqCst) {
            self.waiting.fetch_add(1, SeqCst);
            opened.await;
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }

    pub fn open(&self) {
        self.open.store(true, SeqCst);
        self.opened.notify_waiters();
    }
}

impl Receiver {
    /// A receiver that fails requests as `faults` says.
    pub fn failing(faults: Faults) -> Receiver {
        Receiver {
            faults,
            ..Receiver::default()
        }
    }

    /// Serves `/hooks/forewarn` and `/hooks/held`; returns the first one's URL.
    pub async fn start(self) -> String {
        let router = Router::new()
            .route("/hooks/forewarn", post(receive))
            .route("/hooks/held", post(receive_when_open))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/forewarn", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    pub fn distinct(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    /// Deliveries beyond the first of each key.
    pub fn repeats(&self) -> usize {
        self.keys.lock().unwrap().values().map(|n| n - 1).sum()
    }

    /// The keys delivered more than once.
    pub fn repeated_keys(&self) -> Vec<String> {
        let keys = self.keys.lock().unwrap();
        keys.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Every key and how often it arrived.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.keys.lock().unwrap().clone()
    }

    /// Requests failed on purpose so far.
    pub fn failed(&self) -> usize {
        self.failed.load(SeqCst)
    }

    /// The fault this request gets, if any, and whether it is held past the gateway's timeout.
    fn fault(&self) -> Option<(StatusCode, &'static str, bool)> {
        let f = self.faults;
        let slot = self.requests.fetch_add(1, SeqCst) % 10;
        let fault = if slot < f.server_errors {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected: internal error",
                false,
            )
        } else if slot < f.server_errors + f.throttled {
            (StatusCode::TOO_MANY_REQUESTS, "injected: slow down", false)
        } else if slot < f.server_errors + f.throttled + f.timeouts {
            (
                StatusCode::GATEWAY_TIMEOUT,
                "injected: timed out upstream",
                true,
            )
        } else if slot < f.server_errors + f.throttled + f.timeouts + f.late {
            (StatusCode::OK, "injected: processed, answered late", true)
        } else {
            return None;
        };
        // Counted now: a held request's handler is dropped when the gateway hangs up.
        self.failed.fetch_add(1, SeqCst);
        Some(fault)
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let signed = || -> Option<bool> {
        let timestamp = headers.get("forewarn-timestamp")?.to_str().ok()?;
        let given = headers.get("forewarn-signature")?.to_str().ok()?;
        let mac_hex = given.strip_prefix("v1=")?;
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).ok()?;
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&body);
        Some(mac.verify_slice(&hex::decode(mac_hex).ok()?).is_ok())
    };
    if signed() != Some(true) {
        *receiver.forged.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature".to_owned());
    }
    let key = headers["forewarn-idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    if let Some((status, why, held)) = receiver.fault() {
        // The gateway gives up on a held request first: a late one was processed, a timed-out
        // one never was.
        if status == StatusCode::OK {
            *receiver.keys.lock().unwrap().entry(key).or_default() += 1;
        }
        if held {
            tokio::time::sleep(receiver.faults.hold).await;
        }
        return (status, why.to_owned());
    }
    *receiver.keys.lock().unwrap().entry(key).or_default() += 1;
    (StatusCode::OK, r#"{"id":"hook-1"}"#.to_owned())
}

/// [`receive`], once the receiver's gate is open.
async fn receive_when_open(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    receiver.gate.pass().await;
    receive(State(receiver), headers, body).await
}

/// Waits until the receiver holds `events` keys and the outbox has nothing left to do.
pub async fn wait_delivered(app: &App, receiver: &Receiver, events: usize, patience: Duration) {
    wait_within("every outreach delivered", patience, || async {
        receiver.distinct() >= events
    })
    .await;
    wait_within("the outbox settled", patience, || async {
        let c = app.counts().await;
        c.sent as usize == events && c.pending + c.sending == 0
    })
    .await;
    app.wait_intake_idle().await;
}

/// The config that sends SMS through the webhook gateway to `url`.
pub fn webhook_sms(url: &str) -> String {
    format!(
        "\n[gateways.sms]\nkind = \"webhook\"\nurl = \"{url}\"\n\
         secret_env = \"TEST_WEBHOOK_SECRET\"\n"
    )
}

/// The sum of the samples of counter `name` with every one of `labels` (`key="value"`) in a
/// Prometheus text.
pub fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How often a process logged that an attempt may have arrived and is sent again: one in
/// flight at a kill or a pause whose outcome the gateway cannot say, or one that got no answer
/// (logs outlive the processes; metrics do not).
pub fn resent_keys<'a>(lines: impl IntoIterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut resent = HashMap::new();
    for line in lines.into_iter().filter(|line| {
        line.contains("Resending an ambiguous attempt")
            || line.contains("No answer from the gateway")
    }) {
        let key = line
            .split("key=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(key) = key {
            *resent.entry(key.trim_matches('"').to_owned()).or_default() += 1;
        }
    }
    resent
}

/// Publishes `events` without waiting for each ack in turn: a thousand in flight at a time.
pub async fn publish_many(
    js: &async_nats::jetstream::Context,
    events: impl Iterator<Item = Value>,
) {
    let events: Vec<Value> = events.collect();
    for chunk in events.chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for event in chunk {
            let subject = format!("events.{}", event["type"].as_str().unwrap());
            acks.push(js.publish(subject, event.to_string().into()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}

/// How a fault run ended, in the terms its promise is stated in.
#[derive(Debug)]
pub struct Ledger {
    /// The fault, for the printed line.
    pub fault: String,
    pub published: usize,
    /// Outreach the events call for.
    pub expected: usize,
    /// Distinct keys at the receiver.
    pub delivered: usize,
    /// Deliveries beyond the first of a key.
    pub duplicates: usize,
    /// Duplicates forewarn reported resending (in flight at a kill or pause, or unanswered).
    pub reported: usize,
    /// Keys that arrived more often than forewarn reported resending them.
    pub unexplained: Vec<String>,
}

impl Ledger {
    /// The ledger of a run whose receiver saw `arrivals` (key → times), given how often
    /// forewarn logged resending each key: a key may arrive once more for each resend.
    pub fn of(
        fault: impl Into<String>,
        published: usize,
        expected: usize,
        arrivals: &HashMap<String, usize>,
        resent: &HashMap<String, usize>,
    ) -> Ledger {
        let extra = |key: &String, n: usize| (n - 1, resent.get(key).copied().unwrap_or(0));
        Ledger {
            fault: fault.into(),
            published,
            expected,
            delivered: arrivals.len(),
            duplicates: arrivals.values().map(|n| n - 1).sum(),
            reported: arrivals
                .iter()
                .map(|(key, n)| {
                    let (extra, resent) = extra(key, *n);
                    extra.min(resent)
                })
                .sum(),
            unexplained: arrivals
                .iter()
                .filter(|(key, n)| {
                    let (extra, resent) = extra(key, **n);
                    extra > resent
                })
                .map(|(key, _)| key.clone())
                .collect(),
        }
    }

    pub fn lost(&self) -> usize {
        self.expected.saturating_sub(self.delivered)
    }

    /// Prints the ledger (and keeps it in `target/tmp/chaos-ledger.txt`, for the README's
    /// figures), then asserts nothing was lost and every duplicate was a reported resend.
    pub fn settle(&self, backend: &str, context: impl FnOnce() -> String) {
        let line = format!(
            "chaos [{backend}] {}: published {}, expected {}, delivered {}, duplicates {} \
             ({} of them resends forewarn reported: in flight at a kill or pause, or unanswered), \
             lost {}",
            self.fault,
            self.published,
            self.expected,
            self.delivered,
            self.duplicates,
            self.reported,
            self.lost()
        );
        eprintln!("{line}");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-ledger.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            use std::io::Write;
            let _ = writeln!(file, "{line}");
        }
        assert_eq!(self.lost(), 0, "{line}\n{}", context());
        assert_eq!(
            self.delivered, self.expected,
            "delivered more keys than expected: {line}"
        );
        assert!(
            self.unexplained.is_empty(),
            "{} keys arrived more often than forewarn reported resending them, e.g. {:?}: \
             {line}\n{}",
            self.unexplained.len(),
            self.unexplained.first(),
            context()
        );
    }
}
