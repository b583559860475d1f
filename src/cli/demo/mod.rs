//! `forewarn demo`: the whole flow on sample events, printed for a newcomer.

mod listing;
mod loop_closed;
pub mod nats_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::Value;

use crate::cli::output::say;
use crate::config::Settings;
use crate::schedule::{Clock, ManualClock};
use listing::{clock_shown, print, print_cancelled, Listing, Shown};
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

/// When the demo's story begins: 11:00 in Seoul, 21:00 in New York, after every example event.
/// Korean customers are awake and read their messages as they go; a New Yorker's marketing
/// waits for the morning. Forewarn reads this as "now", whatever today's date.
const STORY_STARTS: &str = "2026-11-26T02:00:00Z";

/// The hour (UTC) the story goes on at, days later: 10:00 in Seoul and 20:00 in New York, when
/// both are awake.
const LATER_HOUR_UTC: u32 = 1;

/// How far the demo's clock moves between two things a person does (announce, reply, …).
const STEP: chrono::Duration = chrono::Duration::seconds(1);

/// The zones the demo's customers live in, for showing its clock.
const ZONES: [&str; 2] = ["Asia/Seoul", "America/New_York"];

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
    let clock = Arc::new(ManualClock::new(STORY_STARTS.parse()?));

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
    // The demo runs the overdue schedule itself, at the story's hour: a wall-clock scheduler
    // would sweep at today's date instead.
    settings.scheduler.enabled = false;
    // The demo moves its clock; the dispatcher notices within this.
    settings.outbox.poll_interval = Duration::from_millis(100);
    say!(
        "  nats-server  {} (private, JetStream in a temporary folder)",
        server.url()
    );
    say!("  database     {}", dir.join("forewarn.db").display());
    say!("  rules        {}/*.toml", settings.paths.rules.display());
    say!("  templates    {}/", settings.paths.templates.display());
    say!(
        "  clock        {} — the examples' own time, set by the demo: forewarn reads it as \
         \"now\" (quiet hours, what is due), whatever today's date",
        clock_shown(clock.now(), &ZONES)
    );

    let running = super::start_on(settings.clone(), None, clock.clone()).await?;
    let client = crate::intake::connect(&settings.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
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
    settle(store.as_ref(), &mut consumer, clock.now(), deadline).await?;

    let mut dlq = js.get_stream(&settings.nats.dlq_stream).await?;
    let dead = dlq.info().await?.state.messages;
    let processed = store.event_count().await?;
    let repeated = repeated_keys(&events);
    say!("What forewarn did");
    say!(
        "  {processed} events stored; {} duplicate(s) ignored (same source + id):",
        repeated.len()
    );
    for (source, id, times) in &repeated {
        // What forewarn kept, read back: one event for the key, however many deliveries.
        let key = crate::domain::EventKey {
            source: source.clone(),
            id: id.clone(),
        };
        let kept = match store.event(&key).await? {
            Some(_) => "stored once",
            None => "not stored",
        };
        say!("    {id} from {source}: published {times} times, {kept}");
    }
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
    let mut listing = Listing::new(settings.paths.outbox.clone(), customers_in(&events));
    let cancelled = listing.new_cancelled(store.as_ref()).await?;
    say!(
        "  {} cancelled before sending: a later example resolved the problem, or said something \
         more important about the same order (`forewarn explain --customer …`):",
        cancelled.len()
    );
    for c in &cancelled {
        print_cancelled(c)?;
    }
    let sent = listing.new_sent()?;
    let held = listing.new_held(store.as_ref(), clock.now()).await?;
    say!(
        "  {} messages sent and {} held for the customer's quiet hours (their own time zone; \
         [quiet_hours] in the config), each shown below",
        sent.len(),
        held.len()
    );
    say!();
    say!("Messages (sandbox gateway), each before the customer had to ask");
    for shown in sent.iter().chain(&held) {
        print(shown, store.as_ref()).await?;
    }

    // Silence is news too: a day after the last promise the examples make, the overdue schedule
    // finds the parcels nobody said anything more about, and their customers hear first.
    if let Some(promise) = latest_promise(&events) {
        let at = next_at_hour(promise + chrono::Duration::days(1), LATER_HOUR_UTC);
        clock.set(at);
        settle(store.as_ref(), &mut consumer, clock.now(), deadline).await?;
        let released = listing.new_sent()?;
        say!(
            "The clock moves on to {}, a day after the last promise the examples make. {} \
             message(s) held for quiet hours went once those hours were over:",
            clock_shown(at, &ZONES),
            released.len()
        );
        for shown in &released {
            print(shown, store.as_ref()).await?;
        }
        overdue(
            &settings,
            store.clone(),
            &js,
            &clock,
            &mut listing,
            &mut consumer,
            deadline,
        )
        .await?;
    }
    on_call(
        &settings,
        store.as_ref(),
        &js,
        &clock,
        &mut listing,
        deadline,
    )
    .await?;
    loop_closed::close_the_loop(
        &running,
        &js,
        &clock,
        &mut listing,
        &mut consumer,
        &settings.paths.outbox,
        &settings.relay.stream,
        deadline,
    )
    .await?;
    running.wait(std::future::ready(())).await?;
    // The demo's own connections go before its nats-server does.
    drop(consumer);
    drop(dlq);
    drop(js);
    crate::intake::close(&client, Duration::from_secs(2))
        .await
        .ok();

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

/// The overdue schedule, run at the clock's hour: the parcels nobody said a word about since
/// their promise, and the messages their customers get.
async fn overdue(
    settings: &Settings,
    store: Arc<dyn crate::store::Store>,
    js: &async_nats::jetstream::Context,
    clock: &ManualClock,
    listing: &mut Listing,
    consumer: &mut async_nats::jetstream::consumer::Consumer<
        async_nats::jetstream::consumer::pull::Config,
    >,
    deadline: Instant,
) -> anyhow::Result<()> {
    let scheduler = super::run::scheduler(
        settings,
        store.clone(),
        js.clone(),
        Arc::new(tokio::sync::Notify::new()),
    )?;
    let Some(schedule) = scheduler.schedule("overdue") else {
        return Ok(());
    };
    let at = clock.now();
    let found = match scheduler.run_tick(schedule, at, at).await {
        crate::schedule::TickResult::Ran(report) => report.summary,
        other => bail!("the overdue schedule did not run: {other}"),
    };
    settle(store.as_ref(), consumer, clock.now(), deadline).await?;
    let superseded = listing.new_cancelled(store.as_ref()).await?;
    let sent = listing.new_sent()?;
    let held = listing.new_held(store.as_ref(), clock.now()).await?;
    say!(
        "No carrier has said a word since: the overdue schedule (`forewarn schedule run overdue \
         --at …`) found {found}; {} message(s) sent, {} held for quiet hours:",
        sent.len(),
        held.len()
    );
    for shown in sent.iter().chain(&held) {
        print(shown, store.as_ref()).await?;
    }
    if !superseded.is_empty() {
        say!(
            "  {} earlier message(s) still waiting gave way to the newer news about the same \
             order (one conversation, the latest word):",
            superseded.len()
        );
        for c in &superseded {
            print_cancelled(c)?;
        }
        say!();
    }
    Ok(())
}

/// On-call's side: an incident announced to the Korean customers, escalated, then resolved —
/// what `forewarn announce start|update|resolve` do — with the messages each step sent.
async fn on_call(
    settings: &Settings,
    store: &dyn crate::store::Store,
    js: &async_nats::jetstream::Context,
    clock: &ManualClock,
    listing: &mut Listing,
    deadline: Instant,
) -> anyhow::Result<()> {
    use crate::incident::{Announcement, Resolve, Start, Translation, Update};
    // Each customer reads their own language: on-call writes the words once per language
    // (`--title-in ko … --message-in ko …`).
    let korean = |title: Option<&str>, message: &str| {
        [(
            "ko".to_owned(),
            Translation {
                title: title.map(str::to_owned),
                message: Some(message.to_owned()),
            },
        )]
        .into()
    };
    let announcer = super::run::announcer(settings, js.clone());
    let now = clock.now();
    let start = Announcement::start(
        Start {
            incident_id: Some("inc-demo".into()),
            title: "Card payments failing".into(),
            services: vec!["checkout".into()],
            regions: vec!["kr".into()],
            severity: "major".into(),
            message: "Card payments fail at checkout; orders you placed are safe.".into(),
            eta: Some("2h".into()),
            translations: korean(
                Some("카드 결제 장애"),
                "카드 결제가 되지 않아요. 이미 하신 주문은 안전해요.",
            ),
            ..Start::default()
        },
        "demo",
        now,
    )?;
    let steps = [
        (
            "On-call: card payments fail in Korea (`forewarn announce start --id inc-demo \
             --region kr --severity major --title-in ko … --message-in ko …`)",
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
                    translations: korean(
                        Some("카드 결제 장애"),
                        "지금은 모든 카드 결제가 되지 않아요. 모두 복구에 매달리고 있어요.",
                    ),
                },
                "demo",
                now,
            )?,
        ),
        (
            "Fixed (`forewarn announce resolve --incident inc-demo …`): those who were told hear \
             it is over, with the critical incident's apology credit where their consent and \
             frequency cap allow",
            Announcement::resolve(
                "inc-demo",
                Resolve {
                    message: "Card payments work again.".into(),
                    translations: korean(Some("카드 결제 장애"), "카드 결제가 다시 돼요."),
                },
                "demo",
            )?,
        ),
    ];
    for (what, mut announcement) in steps {
        // Each step a moment after the one before, as on-call's are: intake takes it at a time
        // of its own, after the fan-out before it (`forewarn simulate` on the demo's database
        // replays the steps in that order too).
        clock.advance(STEP);
        // An update or resolution checks the incident exists: intake read the start by now.
        announcement.check_against(store).await?;
        announcer.publish(&announcement, clock.now()).await?;
        loop {
            let progress = store
                .incident_progress(&announcement.incident_id, clock.now())
                .await?;
            let settled = progress
                .fanout(&announcement.event_id)
                .is_some_and(|f| f.settled() && f.messages.queued + f.messages.sending == 0);
            if settled {
                break;
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for the incident's fan-out");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sent = listing.new_sent()?;
        let held = listing.new_held(store, clock.now()).await?;
        say!(
            "{what}: {} customer(s) told, {} held for quiet hours",
            sent.len(),
            held.len()
        );
        for shown in sent.iter().chain(&held) {
            print(shown, store).await?;
        }
        for withheld in withheld_credits(store, &sent, &announcement.event_id).await? {
            say!("  {withheld}");
        }
    }
    say!();
    Ok(())
}

/// Why customers who were told an incident is over got no credit with it, one line each.
async fn withheld_credits(
    store: &dyn crate::store::Store,
    told: &[Shown],
    event_id: &str,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for shown in told {
        let timeline = store
            .timeline(shown.customer(), chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .await?;
        for note in timeline
            .notes
            .iter()
            .filter(|n| n.event.id == event_id && n.outcome == "offer_withheld")
        {
            lines.push(format!(
                "no credit for customer {}: {} ({})",
                shown.customer(),
                note.reason,
                note.detail
            ));
        }
    }
    Ok(lines)
}

/// Waits until intake has acked everything and the dispatcher has sent all that is due at
/// `now` (messages held for a customer's quiet hours wait for their hour, not for the demo).
/// Forewarn's durable consumer of the events stream, read to know when intake caught up.
type EventConsumer =
    async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>;

async fn settle(
    store: &dyn crate::store::Store,
    consumer: &mut EventConsumer,
    now: chrono::DateTime<chrono::Utc>,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let info = consumer.info().await?;
        let counts = store.outbox_counts().await?;
        let consumed = info.num_pending == 0 && info.num_ack_pending == 0;
        let nothing_due = store.next_due().await?.is_none_or(|next| next > now);
        if consumed && counts.sending == 0 && nothing_due {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for forewarn to process the demo events");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first whole `hour` (UTC) at or after `at`.
fn next_at_hour(at: chrono::DateTime<chrono::Utc>, hour: u32) -> chrono::DateTime<chrono::Utc> {
    let same_day = at
        .date_naive()
        .and_hms_opt(hour, 0, 0)
        .expect("an hour of the day")
        .and_utc();
    if same_day >= at {
        same_day
    } else {
        same_day + chrono::Duration::days(1)
    }
}

/// Each (source, id) the examples publish more than once, with how many times.
fn repeated_keys(events: &[(String, Bytes)]) -> Vec<(String, String, usize)> {
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, body) in events {
        let Ok(event) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        if let (Some(source), Some(id)) = (event["source"].as_str(), event["id"].as_str()) {
            *seen.entry((source.to_owned(), id.to_owned())).or_default() += 1;
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((source, id), n)| (source, id, n))
        .collect()
}

/// Every customer id the examples name, in order of first mention.
fn customers_in(events: &[(String, Bytes)]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (subject, body) in events {
        let Ok(event) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        let data = &event["data"];
        let named = [
            (subject == "events.customer.upserted")
                .then(|| data["id"].as_str())
                .flatten(),
            data["customer_id"].as_str(),
            data["customer"]["id"].as_str(),
        ];
        for id in named.into_iter().flatten() {
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
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
