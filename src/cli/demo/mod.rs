//! `forewarn demo`: the whole flow on sample events, printed for a newcomer.

pub mod nats_server;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::Value;

use crate::cli::output::say;
use crate::config::Settings;
use crate::domain::Channel;
use crate::gateway::sandbox_file;
use nats_server::NatsServer;

/// Options of `forewarn demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder of sample events (`*.jsonl`, one CloudEvent per line).
    #[arg(long, default_value = "examples/events", value_name = "DIR")]
    pub events: PathBuf,
    /// Where to keep the demo's database and sandbox outbox; a new temporary folder by default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How long to wait for every event to be processed and every message sent.
    #[arg(long, default_value = "60s", value_parser = crate::cli::duration_arg)]
    pub timeout: Duration,
}

/// Runs the demo.
pub(super) async fn execute(args: DemoArgs, log_json: bool) -> anyhow::Result<()> {
    let mut settings = Settings::default();
    settings.log.level = "warn".into();
    if log_json {
        settings.log.format = crate::telemetry::LogFormat::Json;
    }
    crate::telemetry::init(&settings.log);
    for needed in [
        &settings.paths.rules,
        &settings.paths.templates,
        &args.events,
    ] {
        if !needed.is_dir() {
            bail!(
                "{} not found: run `forewarn demo` from the forewarn checkout (where rules/, \
                 templates/ and examples/ are)",
                needed.display()
            );
        }
    }
    let events = read_events(&args.events)?;

    say!("forewarn demo — a shoe order is going to miss its delivery date\n");
    let server = tokio::task::spawn_blocking(NatsServer::start_local)
        .await?
        .map_err(anyhow::Error::msg)
        .context("Failed to start a local nats-server")?;
    let dir = match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("forewarn-demo-")
            .tempdir()?
            .keep(),
    };
    settings.nats.url = server.url();
    settings.database.url = format!("sqlite://{}", dir.join("forewarn.db").display());
    settings.paths.outbox = dir.join("outbox");
    settings.http.enabled = false;
    // The demo tells its story on the examples' own clock: it runs the overdue schedule itself,
    // as of a day after their last promise. A wall-clock scheduler would sweep those promises
    // at start-up, whatever today's date, and leave the demo's own run nothing to find.
    settings.scheduler.enabled = false;
    say!(
        "  nats-server  {} (private, JetStream in a temporary folder)",
        server.url()
    );
    say!("  database     {}", dir.join("forewarn.db").display());
    say!("  rules        {}/*.toml", settings.paths.rules.display());
    say!("  templates    {}/", settings.paths.templates.display());

    let running = super::start(settings.clone(), None).await?;
    let client = crate::intake::connect(&settings.nats).await?;
    let js = async_nats::jetstream::new(client);
    for (subject, body) in &events {
        js.publish(subject.clone(), body.clone())
            .await
            .context("Failed to publish")?
            .await
            .context("JetStream did not acknowledge a published event")?;
    }
    say!(
        "  published    {} events from {}/*.jsonl\n",
        events.len(),
        args.events.display()
    );

    let store = running.store().clone();
    let deadline = Instant::now() + args.timeout;
    let mut consumer = js
        .get_stream(&settings.nats.stream)
        .await?
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&settings.nats.consumer)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to read the consumer: {e}"))?;
    settle(store.as_ref(), &mut consumer, deadline).await?;

    let mut dlq = js.get_stream(&settings.nats.dlq_stream).await?;
    let dead = dlq.info().await?.state.messages;
    let processed = store.event_count().await?;
    let counts = store.outbox_counts().await?;
    let duplicates = (events.len() as u64).saturating_sub(processed + dead);
    say!("What forewarn did");
    say!("  {processed} events stored; {duplicates} duplicate delivery ignored (same source + id)");
    say!("  {dead} events refused, each published to forewarn.dlq.<reason> with the reason in a header:");
    for sequence in 1..=dead {
        let message = dlq
            .get_raw_message(sequence)
            .await
            .map_err(|e| anyhow::anyhow!("Failed to read dead letter {sequence}: {e}"))?;
        let error = message
            .headers
            .get(crate::intake::HEADER_ERROR)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        say!("    {:<32} {error}", message.subject.as_str());
    }
    say!("  {} messages sent, {} failed", counts.sent, counts.failed);
    if counts.cancelled > 0 {
        say!(
            "  {} retracted or superseded before sending: a later example resolved the problem \
             or said something more important about the same order (`forewarn explain --customer …`)",
            counts.cancelled
        );
    }
    if counts.pending > 0 {
        let first = store
            .next_due()
            .await?
            .map(|t| crate::domain::time_shown(t).to_string())
            .unwrap_or_default();
        say!(
            "  {} held for the customer's quiet hours (their time zone; [quiet_hours] in the \
             config), the first going out at {first}",
            counts.pending
        );
    }
    say!();
    say!("Messages (sandbox gateway), each before the customer had to ask");
    let mut shown = print_messages(&settings.paths.outbox, store.as_ref(), &HashSet::new()).await?;

    // Silence is news too: a day after the last promise the examples make, the overdue schedule
    // finds the parcels nobody said anything more about, and their customers hear first.
    if let Some(promise) = latest_promise(&events) {
        let at = promise + chrono::Duration::days(1);
        let scheduler = super::run::scheduler(
            &settings,
            store.clone(),
            js.clone(),
            std::sync::Arc::new(tokio::sync::Notify::new()),
        )?;
        if let Some(overdue) = scheduler.schedule("overdue") {
            let said = match scheduler.run_tick(overdue, at, at).await {
                crate::schedule::TickResult::Ran(report) => format!("found {}", report.summary),
                other => format!("did not run: {other}"),
            };
            settle(store.as_ref(), &mut consumer, deadline).await?;
            say!(
                "A day after the last promise ({}), no carrier has said a word: the overdue \
                 schedule (`forewarn schedule run overdue --at …`) {said}",
                crate::domain::time_shown(at)
            );
            let superseded = store.outbox_counts().await?.cancelled - counts.cancelled;
            if superseded > 0 {
                say!(
                    "  ({superseded} earlier message(s) still held for quiet hours gave way to \
                     the newer news about the same order: one conversation, the latest word)"
                );
            }
            shown = print_messages(&settings.paths.outbox, store.as_ref(), &shown).await?;
        }
    }
    on_call(&settings, store.as_ref(), &js, deadline, &shown).await?;
    running.wait(std::future::ready(())).await?;

    say!(
        "Discount codes in these messages are stored with the outreach that issued them and are \
         single-use: a checkout redeems one with POST /v1/discount-codes/<code>/redeem."
    );
    say!(
        "Sandbox outbox: {}/{{sms,email,push}}.jsonl — one JSON line per message, as a real gateway would receive it.",
        settings.paths.outbox.display()
    );
    say!("Next: edit rules/ or templates/ and run the demo again; `forewarn run` processes live events from NATS.");
    drop(server);
    Ok(())
}

/// On-call's side: an incident announced to the Korean customers, escalated, then resolved —
/// what `forewarn announce start|update|resolve` do — with the messages each step sent.
async fn on_call(
    settings: &Settings,
    store: &dyn crate::store::Store,
    js: &async_nats::jetstream::Context,
    deadline: Instant,
    shown: &HashSet<String>,
) -> anyhow::Result<()> {
    use crate::incident::{Announcement, Resolve, Start, Update};
    let announcer = super::run::announcer(settings, js.clone());
    let now = chrono::Utc::now();
    let start = Announcement::start(
        Start {
            incident_id: Some("inc-demo".into()),
            title: "Card payments failing".into(),
            services: vec!["checkout".into()],
            regions: vec!["kr".into()],
            severity: "major".into(),
            message: "Card payments fail at checkout; orders you placed are safe.".into(),
            eta: Some("2h".into()),
            ..Start::default()
        },
        "demo",
        now,
    )?;
    let steps = [
        (
            "On-call: card payments fail in Korea \
             (`forewarn announce start --id inc-demo --region kr --severity major …`)",
            start,
        ),
        (
            "It gets worse (`forewarn announce update --incident inc-demo --severity critical …`): \
             an escalation is news; a plain update would not have been",
            Announcement::update(
                "inc-demo",
                Update {
                    message: "Every card payment in Korea fails now; all hands are on it.".into(),
                    severity: Some("critical".into()),
                    eta: None,
                },
                "demo",
                now,
            )?,
        ),
        (
            "Fixed (`forewarn announce resolve --incident inc-demo …`): those who were told \
             hear it is over. A critical incident's apology credit is an offer, and offers go \
             only to customers who accept marketing and are under their cap \
             (`forewarn explain --customer …` says why one was withheld)",
            Announcement::resolve(
                "inc-demo",
                Resolve {
                    message: "Card payments work again.".into(),
                },
                "demo",
            )?,
        ),
    ];
    let mut shown = shown.clone();
    for (what, mut announcement) in steps {
        // An update or resolution checks the incident exists: intake read the start by now.
        announcement.check_against(store).await?;
        announcer.publish(&announcement, chrono::Utc::now()).await?;
        loop {
            let progress = store
                .incident_progress(&announcement.incident_id, chrono::Utc::now())
                .await?;
            if let Some(fanout) = progress.fanout(&announcement.event_id) {
                if fanout.settled() {
                    say!(
                        "{what}: {} customer(s) decided, {} message(s) queued",
                        fanout.customers,
                        fanout.queued
                    );
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for the incident's fan-out");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shown = print_messages(&settings.paths.outbox, store, &shown).await?;
    }
    Ok(())
}

/// Waits until intake has acked everything and the dispatcher has sent all it can now.
async fn settle(
    store: &dyn crate::store::Store,
    consumer: &mut async_nats::jetstream::consumer::Consumer<
        async_nats::jetstream::consumer::pull::Config,
    >,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let info = consumer.info().await?;
        let counts = store.outbox_counts().await?;
        let consumed = info.num_pending == 0 && info.num_ack_pending == 0;
        // Messages held for a customer's quiet hours wait for the morning, not for the demo.
        let held = match store.next_due().await? {
            Some(next) => next > chrono::Utc::now() + chrono::Duration::seconds(5),
            None => true,
        };
        if consumed && counts.sending == 0 && (counts.pending == 0 || held) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for forewarn to process the demo events");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The latest delivery promise (`promised_by`, `new_eta`) the example events make.
fn latest_promise(events: &[(String, Bytes)]) -> Option<chrono::DateTime<chrono::Utc>> {
    events
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice::<Value>(body).ok())
        .flat_map(|event| {
            ["promised_by", "new_eta"]
                .into_iter()
                .filter_map(|k| event["data"][k].as_str()?.parse().ok())
                .collect::<Vec<_>>()
        })
        .max()
}

/// Every line of every `*.jsonl` in `dir`, with the subject it is published on.
fn read_events(dir: &Path) -> anyhow::Result<Vec<(String, Bytes)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut events = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("Failed to read {}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Backends publish on events.<type>; a line that is not even JSON still goes out,
            // to show how forewarn refuses it.
            let event_type = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            events.push((format!("events.{event_type}"), Bytes::from(line.to_owned())));
        }
    }
    Ok(events)
}

/// Prints each sandbox message not in `skip`, grouped by customer, with the risk scores it was
/// decided with; returns the keys of every message printed or skipped.
async fn print_messages(
    outbox: &Path,
    store: &dyn crate::store::Store,
    skip: &HashSet<String>,
) -> anyhow::Result<HashSet<String>> {
    let mut by_customer: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for channel in Channel::ALL {
        let Ok(text) = std::fs::read_to_string(sandbox_file(outbox, channel)) else {
            continue;
        };
        for line in text.lines() {
            let record: Value = serde_json::from_str(line)?;
            let customer = record["customer_id"].as_str().unwrap_or("?").to_owned();
            by_customer.entry(customer).or_default().push(record);
        }
    }
    // Held messages are shown too, as they will go out.
    for waiting in store.waiting(100).await? {
        let mut record = serde_json::to_value(&waiting.content)?;
        record["customer_id"] = waiting.customer_id.clone().into();
        record["rule_id"] = waiting.rule_id.into();
        record["key"] = waiting.key.to_string().into();
        record["held_until"] = crate::domain::time_shown(waiting.due).into();
        by_customer
            .entry(waiting.customer_id)
            .or_default()
            .push(record);
    }
    let mut shown = skip.clone();
    for (customer, messages) in by_customer {
        for m in messages {
            if !shown.insert(m["key"].as_str().unwrap_or_default().to_owned()) {
                continue;
            }
            let held = m["held_until"]
                .as_str()
                .map(|t| format!(" · held for quiet hours until {t}"))
                .unwrap_or_default();
            super::print_message(
                &m,
                &held,
                &format!(
                    "customer {} · rule {}",
                    customer,
                    m["rule_id"].as_str().unwrap_or("?")
                ),
            )?;
            let text = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            let key = crate::domain::IdempotencyKey::from_stored(text("key"));
            if let Some(risk) = store.outreach_risk(&key).await? {
                for target in ["delay", "churn"] {
                    if let Some(why) = risk[target]["why"].as_str() {
                        say!("     risk · {why}");
                    }
                }
            }
            say!();
        }
    }
    Ok(shown)
}
