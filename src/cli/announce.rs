//! `forewarn announce start|update|resolve|status`: on-call tells every affected customer.
//!
//! Each command checks the announcement (the same checks as `POST /v1/incidents`), publishes
//! the `outage.*` event with a JetStream ack and prints the incident id; the running forewarn
//! does the rest. `--dry-run` publishes nothing: it counts the customers the announcement would
//! reach and renders the message one of them would get. `--follow` draws the fan-out's
//! progress until every customer has been decided and every message due has been attempted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::cli::output::say;
use crate::config::Settings;
use crate::domain::{Affected, FanoutKind};
use crate::incident::{
    self, customer_ids_from, AnnounceError, Announcement, DryRun, Resolve, Start, Translations,
    Update,
};
use crate::store::{FanoutPhase, FanoutStatus, Store};

/// How often `--follow` reads the progress.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How long `--follow` waits for forewarn to read the announcement before it says so.
const NOT_READ_WARNING: Duration = Duration::from_secs(10);

/// Options of `forewarn announce`.
#[derive(Debug, clap::Args)]
pub struct AnnounceArgs {
    /// What to announce.
    #[command(subcommand)]
    pub command: AnnounceCommand,
}

/// What every announcement may add.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Delivery {
    /// Publish nothing: count the customers it would reach and show one message.
    #[arg(long)]
    pub dry_run: bool,
    /// After publishing, show the fan-out's progress until it is done.
    #[arg(long)]
    pub follow: bool,
}

/// `forewarn announce` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AnnounceCommand {
    /// An incident begins: everyone it affects hears once.
    Start {
        /// What is wrong, in words customers understand.
        #[arg(long)]
        title: String,
        /// A service that is down (repeat for several).
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// A region the outage is in; its customers are affected (`kr` takes in `kr-seoul`).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// A customer segment that is affected (repeat for several).
        #[arg(long = "segment")]
        segments: Vec<String>,
        /// A file of affected customer ids, one per line (`#` starts a comment).
        #[arg(long, value_name = "FILE")]
        customers_file: Option<PathBuf>,
        /// Every customer is affected (instead of --region, --segment, --customers-file).
        #[arg(long)]
        everyone: bool,
        /// minor, major or critical.
        #[arg(long)]
        severity: String,
        /// What customers are told.
        #[arg(long)]
        message: String,
        /// When it should be fixed: RFC 3339 or a duration from now (`90m`, `2h`).
        #[arg(long)]
        eta: Option<String>,
        /// The incident id; generated when absent.
        #[arg(long = "id")]
        incident_id: Option<String>,
        /// --title-in, --message-in, --translations.
        #[command(flatten)]
        languages: InLanguages,
        /// --dry-run, --follow.
        #[command(flatten)]
        delivery: Delivery,
    },
    /// Something changed. Customers hear it only if the severity escalates.
    Update {
        /// The incident.
        #[arg(long)]
        incident: String,
        /// What is new.
        #[arg(long)]
        message: String,
        /// A new severity: minor, major or critical.
        #[arg(long)]
        severity: Option<String>,
        /// A new ETA.
        #[arg(long)]
        eta: Option<String>,
        /// --title-in, --message-in, --translations.
        #[command(flatten)]
        languages: InLanguages,
        /// --dry-run, --follow.
        #[command(flatten)]
        delivery: Delivery,
    },
    /// It is over: those who were told hear so, with the rule's apology credit.
    Resolve {
        /// The incident.
        #[arg(long)]
        incident: String,
        /// What customers are told.
        #[arg(long)]
        message: String,
        /// --title-in, --message-in, --translations.
        #[command(flatten)]
        languages: InLanguages,
        /// --dry-run, --follow.
        #[command(flatten)]
        delivery: Delivery,
    },
    /// How far an incident's announcements have got.
    Status {
        /// The incident.
        #[arg(long)]
        incident: String,
        /// Keep showing until every fan-out is done.
        #[arg(long)]
        follow: bool,
    },
}

/// An announcement's words in other languages: each customer reads their own language, else
/// `--title` and `--message`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InLanguages {
    /// The title in another language, repeated per language: `--title-in ko "카드 결제 장애"`.
    #[arg(long = "title-in", num_args = 2, value_names = ["LANG", "TITLE"], action = clap::ArgAction::Append)]
    title_in: Vec<String>,
    /// The message in another language, repeated per language: `--message-in ko "…"`.
    #[arg(long = "message-in", num_args = 2, value_names = ["LANG", "MESSAGE"], action = clap::ArgAction::Append)]
    message_in: Vec<String>,
    /// A JSON file of the words per language: `{"ko": {"title": "…", "message": "…"}}`.
    #[arg(long, value_name = "FILE")]
    translations: Option<PathBuf>,
}

impl InLanguages {
    /// The translations the flags give, the file's first and the flags' over them.
    fn collect(&self) -> anyhow::Result<Translations> {
        let mut translations = match &self.translations {
            None => Translations::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--translations: cannot read {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "--translations: {} is not {{\"<lang>\": {{\"title\": …, \"message\": …}}}}",
                        path.display()
                    )
                })?
            }
        };
        for pair in self.title_in.chunks(2) {
            if let [lang, title] = pair {
                translations.entry(lang.clone()).or_default().title = Some(title.clone());
            }
        }
        for pair in self.message_in.chunks(2) {
            if let [lang, message] = pair {
                translations.entry(lang.clone()).or_default().message = Some(message.clone());
            }
        }
        Ok(translations)
    }
}

/// Runs `forewarn announce …`.
pub(super) async fn execute(
    args: AnnounceArgs,
    config: Option<&Path>,
    log_json: bool,
) -> anyhow::Result<()> {
    let settings = super::tool_settings(config, log_json)?;
    let by = std::env::var("USER").unwrap_or_else(|_| "on-call".into());
    let now = Utc::now();
    let (announcement, delivery) = match args.command {
        AnnounceCommand::Status { incident, follow } => {
            let store = open_store(&settings).await?;
            let id = crate::domain::EntityId::parse(&incident)
                .map_err(|e| anyhow::anyhow!("--incident: {e}"))?;
            return status(store.as_ref(), &id, follow).await;
        }
        AnnounceCommand::Start {
            title,
            services,
            regions,
            segments,
            customers_file,
            everyone,
            severity,
            message,
            eta,
            incident_id,
            languages,
            delivery,
        } => {
            let customer_ids = match &customers_file {
                None => Vec::new(),
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("--customers-file: cannot read {}", path.display())
                    })?;
                    customer_ids_from(&text, &path.display().to_string())?
                }
            };
            let selects = !(segments.is_empty() && customer_ids.is_empty());
            let start = Start {
                incident_id,
                title,
                services,
                affected: selects.then(|| Affected {
                    regions: regions.clone(),
                    segments,
                    customer_ids,
                }),
                regions,
                severity,
                message,
                everyone,
                eta,
                translations: languages.collect()?,
            };
            (
                Announcement::start(start, &by, now).map_err(in_flags)?,
                delivery,
            )
        }
        AnnounceCommand::Update {
            incident,
            message,
            severity,
            eta,
            languages,
            delivery,
        } => {
            let update = Update {
                message,
                severity,
                eta,
                translations: languages.collect()?,
            };
            (
                Announcement::update(&incident, update, &by, now).map_err(in_flags)?,
                delivery,
            )
        }
        AnnounceCommand::Resolve {
            incident,
            message,
            languages,
            delivery,
        } => {
            let resolve = Resolve {
                message,
                translations: languages.collect()?,
            };
            (
                Announcement::resolve(&incident, resolve, &by).map_err(in_flags)?,
                delivery,
            )
        }
    };
    let store = open_store(&settings).await?;
    let mut announcement = announcement;
    announcement.check_against(store.as_ref()).await?;
    if delivery.dry_run {
        return dry_run(&settings, store.as_ref(), &announcement).await;
    }
    // The incident as it stood before this announcement, to know whether it will fan out.
    let expected_from = store.incident(&announcement.incident_id).await?;
    let (_nats, js) = super::publishing_nats(&settings).await?;
    let published = super::run::announcer(&settings, js)
        .publish(&announcement, Utc::now())
        .await?;
    // The sentence for people on stderr, the bare id on stdout: `ID=$(forewarn announce …)`.
    eprintln!(
        "{} {} ({}, stream sequence {}{})",
        match announcement.event_type.as_str() {
            "outage.started" => "Announced incident",
            "outage.updated" => "Updated incident",
            _ => "Resolved incident",
        },
        published.incident_id,
        published.event_type,
        published.stream_sequence,
        if published.duplicate {
            "; already published before, not repeated"
        } else {
            ""
        }
    );
    say!("{}", published.incident_id);
    let authoring = super::load_authoring(&settings).map_err(|e| super::load_errors(&e))?;
    let expected = incident::expected_fanout(
        &authoring,
        &settings.policy()?,
        expected_from.as_ref(),
        &announcement.accepted(incident::DRY_RUN_SOURCE, Utc::now())?,
    );
    match expected {
        Err(why) => eprintln!("No customer will be messaged: {why}."),
        Ok(kind) => {
            eprintln!("{}", incident::who_hears(kind));
            if delivery.follow {
                follow_one(store.as_ref(), &announcement).await?;
            } else {
                eprintln!(
                    "Follow it: forewarn announce status --incident {} --follow",
                    published.incident_id
                );
            }
        }
    }
    Ok(())
}

/// An announcement's problems in this interface's words: each names the flag to fix, where
/// the HTTP API names the body's field.
fn in_flags(error: AnnounceError) -> anyhow::Error {
    let AnnounceError::Invalid(problems) = error else {
        return error.into();
    };
    let flag = |field: &str| match field.split(['.', '[']).collect::<Vec<_>>().as_slice() {
        ["incident_id", ..] => "--id / --incident",
        ["title", ..] => "--title",
        ["services", ..] => "--service",
        ["regions", ..] | ["affected", "regions", ..] => "--region",
        ["affected", "segments", ..] => "--segment",
        ["affected", "customer_ids", ..] => "--customers-file",
        ["affected"] => "--region, --segment or --customers-file",
        ["everyone", ..] => "--everyone",
        ["severity", ..] => "--severity",
        ["message", ..] => "--message",
        ["eta", ..] => "--eta",
        ["translations", ..] => "--title-in / --message-in / --translations",
        _ => "",
    };
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match flag(&p.field) {
            "" => format!("{}: {}", p.field, p.message),
            flag => format!("{flag}: {}", p.message),
        })
        .collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}

async fn open_store(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to open the database {}", settings.database.url))
}

/// Counts the customers it would reach and renders the first one's message, publishing
/// nothing and writing nothing.
async fn dry_run(
    settings: &Settings,
    store: &dyn Store,
    announcement: &Announcement,
) -> anyhow::Result<()> {
    let policy = settings.policy()?;
    let authoring = super::load_authoring(settings).map_err(|e| super::load_errors(&e))?;
    let reach =
        match incident::dry_run(store, &authoring, &policy, announcement, Utc::now()).await? {
            DryRun::Nobody(why) => {
                say!("Dry run: no customer would be messaged — {why}. Nothing was published.");
                return Ok(());
            }
            DryRun::Reaches(reach) => reach,
        };
    say!(
        "Dry run: {} would reach {} customer(s){}. Nothing was published.",
        announcement.event_type.as_str(),
        reach.customers,
        if reach.kind == FanoutKind::Resolved {
            " — those who were told it started"
        } else {
            ""
        }
    );
    let Some(first) = reach.first else {
        return Ok(());
    };
    match &first.message {
        Some(outreach) => {
            say!("\nFor example, customer {} would get:", first.customer_id);
            let mut m = serde_json::to_value(&outreach.content)?;
            m["rule_id"] = outreach.rule_id.clone().into();
            super::print_message(
                &m,
                &outreach
                    .not_before
                    .map(|t| {
                        format!(
                            " · held for quiet hours until {}",
                            crate::domain::time_shown(t)
                        )
                    })
                    .unwrap_or_default(),
                &format!(
                    "rule {}{}",
                    outreach.rule_id,
                    outreach
                        .offer
                        .as_ref()
                        .map(|o| format!(" · {}% credit", o.percent))
                        .unwrap_or_default()
                ),
            )?;
        }
        None => say!(
            "\nCustomer {} would get nothing: {}",
            first.customer_id,
            first.nothing_because.as_deref().unwrap_or("?")
        ),
    }
    for withheld in &first.withheld {
        say!("   (credit withheld: {withheld})");
    }
    Ok(())
}

/// Follows the fan-out of one announcement until it settles.
async fn follow_one(store: &dyn Store, announcement: &Announcement) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut warned = false;
    let mut bar = Bar::new();
    loop {
        let progress = store
            .incident_progress(&announcement.incident_id, Utc::now())
            .await?;
        match progress.fanout(&announcement.event_id) {
            Some(fanout) => {
                bar.draw(fanout);
                if fanout.settled() {
                    bar.finish(fanout);
                    return Ok(());
                }
            }
            None => {
                if !warned && started.elapsed() > NOT_READ_WARNING {
                    warned = true;
                    eprintln!(
                        "Waiting for forewarn to read the announcement… (is `forewarn run` running?)"
                    );
                }
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// `forewarn announce status`.
async fn status(
    store: &dyn Store,
    id: &crate::domain::EntityId,
    follow: bool,
) -> anyhow::Result<()> {
    loop {
        let progress = store.incident_progress(id, Utc::now()).await?;
        let Some(incident) = &progress.incident else {
            anyhow::bail!("incident `{id}` is not known (or forewarn has not read its start yet)");
        };
        say!(
            "{id}: {} · {} · {}",
            incident.title.as_deref().unwrap_or("(untitled)"),
            incident.severity.as_deref().unwrap_or("?"),
            incident.status.as_str()
        );
        for f in &progress.fanouts {
            say!("  {}", describe(f));
        }
        if !follow || progress.settled() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY * 4).await;
    }
}

fn describe(f: &FanoutStatus) -> String {
    if f.phase == FanoutPhase::Rank && f.status == "running" {
        return format!(
            "{kind:<9} finding customers: {ranked} so far",
            kind = f.kind.as_str(),
            ranked = f.ranked
        );
    }
    format!(
        "{kind:<9} {status:<7} {counts}{detail}",
        kind = f.kind.as_str(),
        status = f.status,
        counts = counts(f),
        detail = f
            .detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    )
}

/// One fan-out's numbers, the same words and the same numbers while it runs and at the end.
fn counts(f: &FanoutStatus) -> String {
    let m = &f.messages;
    format!(
        "customers {customers:>8} · queued {queued:>8} · sent {sent:>8} · failed {failed} · deferred {deferred} · withdrawn {cancelled}",
        customers = f.customers,
        queued = f.queued,
        sent = m.sent,
        failed = m.failed,
        deferred = m.deferred,
        cancelled = m.cancelled,
    )
}

/// A one-line progress bar on a terminal; a line every few seconds elsewhere (logs, CI). On
/// stderr: it is for people, and stdout keeps only the id a script captures.
struct Bar {
    tty: bool,
    last_line: std::time::Instant,
}

impl Bar {
    fn new() -> Self {
        Bar {
            tty: std::io::stderr().is_terminal(),
            last_line: std::time::Instant::now(),
        }
    }

    fn line(f: &FanoutStatus) -> String {
        let m = &f.messages;
        if f.phase == FanoutPhase::Rank {
            return format!(
                "finding the affected customers and who should hear first: {} so far",
                f.ranked
            );
        }
        // Customers decided whose message, if any, is no longer on its way.
        let done = f.customers.saturating_sub(m.queued + m.sending);
        let total = f.ranked.max(1);
        let width = 30usize;
        let filled = ((done as f64 / total as f64) * width as f64).round() as usize;
        format!(
            "[{}{}] {done}/{} settled · {}",
            "#".repeat(filled.min(width)),
            "-".repeat(width - filled.min(width)),
            f.ranked,
            counts(f),
        )
    }

    fn draw(&mut self, f: &FanoutStatus) {
        if self.tty {
            eprint!("\r{}\x1b[K", Self::line(f));
        } else if self.last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{}", Self::line(f));
            self.last_line = std::time::Instant::now();
        }
    }

    fn finish(&mut self, f: &FanoutStatus) {
        if self.tty {
            eprintln!();
        }
        eprintln!("Done: {}", describe(f));
    }
}
