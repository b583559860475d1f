//! The command line: one module per subcommand (SPEC §6). Exit codes: 0 ok, 1 failed, 2 usage.

mod announce;
mod check;
pub mod demo;
mod explain;
mod migrate;
mod output;
mod preview;
mod risk;
mod run;
mod schedule;
mod simulate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cli::output::say;

pub use announce::{AnnounceArgs, AnnounceCommand, Delivery};
pub use demo::DemoArgs;
pub use explain::ExplainArgs;
pub use preview::PreviewArgs;
pub use risk::{RiskArgs, RiskCommand};
pub use run::{load_authoring, scheduler, start, start_on, Running, StartError};
pub use schedule::{ScheduleArgs, ScheduleCommand};
pub use simulate::SimulateArgs;

/// Forewarn tells customers about a problem before they notice it.
///
/// It reads order, shipment and outage events from NATS JetStream, matches them against the
/// rules in `rules/`, renders messages from `templates/`, and sends each one exactly once
/// through the customer's channel.
#[derive(Debug, Parser)]
#[command(name = "forewarn", version, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Without one, ./forewarn.toml if present, else the embedded
    /// defaults: local NATS, SQLite file, sandbox gateways.
    #[arg(long, global = true, env = "FOREWARN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log one JSON object per line instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the processor: consume events, queue outreach, dispatch it, serve /healthz,
    /// /readyz and /metrics. Stops cleanly on SIGINT or SIGTERM.
    Run,
    /// Apply database migrations and exit (`run` also applies them at start).
    Migrate,
    /// Check the config, every rule and every template: each template is rendered against
    /// every example event of its rules' types, on every channel and in every locale it has.
    /// Prints one `file:line:col: message` line per problem and exits 1, or a one-line
    /// summary and exits 0.
    Check,
    /// Render one template for one event on every channel and in every locale it has: SMS
    /// with its encoding and segment count, e-mail subject and text (HTML to a file), push
    /// with its FCM payload size.
    Preview(PreviewArgs),
    /// Replay stored events (or a file of them) through a draft rule set — rules, risk,
    /// consent, opt-outs, quiet hours, caps, rendering — sending and writing nothing: per rule
    /// and channel the messages, customers, SMS segments, cost, discount codes and their face
    /// value, what was held back; then the difference from what the live rules did. Exits 1
    /// when anything fails to render or evaluate.
    Simulate(SimulateArgs),
    /// Show forewarn end to end on sample events: starts a private nats-server, runs forewarn
    /// on its embedded defaults in a fresh folder, publishes examples/events/*.jsonl and prints
    /// every message it sent. Run it from the forewarn checkout.
    Demo(DemoArgs),
    /// Why a customer did (or didn't) get a message: the events forewarn acted on, each
    /// message with its scores and every attempt, and everything held back with its reason.
    /// Phone numbers, e-mail addresses and names are masked unless --reveal.
    Explain(ExplainArgs),
    /// The built-in risk models (rules/risk.toml): `fit` learns their coefficients from a CSV
    /// of outcomes, `eval` measures the current ones on it.
    Risk(RiskArgs),
    /// The schedules of `[schedules]`: `list` shows each one's job, cron, next run and last
    /// run; `run` runs some (or all) once, now or as of --at.
    Schedule(ScheduleArgs),
    /// On-call: announce an incident (`start`), update it, resolve it, or see how far its
    /// announcements have got (`status`). Every affected customer hears once; an update only
    /// if the severity escalates; the resolution only those who were told, with an apology
    /// credit. --dry-run counts the customers and shows one message; --follow shows progress.
    Announce(AnnounceArgs),
}

/// Runs the parsed command; returns the process exit code.
pub async fn execute(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run => run::execute(cli.config.as_deref(), cli.log_json).await,
        Command::Migrate => migrate::execute(cli.config.as_deref(), cli.log_json).await,
        Command::Check => check::execute(cli.config.as_deref()).await,
        Command::Preview(args) => preview::execute(args, cli.config.as_deref()).await,
        Command::Simulate(args) => {
            simulate::execute(args, cli.config.as_deref(), cli.log_json).await
        }
        Command::Demo(args) => demo::execute(args, cli.log_json).await,
        Command::Risk(args) => risk::execute(args, cli.config.as_deref()).await,
        Command::Explain(args) => explain::execute(args, cli.config.as_deref()).await,
        Command::Schedule(args) => {
            schedule::execute(args, cli.config.as_deref(), cli.log_json).await
        }
        Command::Announce(args) => {
            announce::execute(args, cli.config.as_deref(), cli.log_json).await
        }
    };
    match result {
        Ok(()) => 0,
        // The reader stopped reading (`| head`): what it wanted was printed.
        Err(e) if matches!(e.downcast_ref(), Some(output::OutputError::Closed)) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Load errors (rules, templates, the risk model) as one error, a line each.
fn load_errors(errors: &[impl std::fmt::Display]) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// A flag's duration (`30d`, `12h`, `90m`), refused in words: clap puts the flag before it.
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("`{text}` is not a duration; write a number and a unit, such as 30d, 12h or 90m")
    })
}

/// Prints one rendered message — its JSON form: `channel`, `to`, and `body`, `subject`/`text`
/// or `title`/`body` — under a header: the channel, `note`, the masked recipient, `about`, and
/// an SMS's encoding and segments.
fn print_message(
    m: &serde_json::Value,
    note: &str,
    about: &str,
) -> Result<(), output::OutputError> {
    let channel = m["channel"].as_str().unwrap_or("?");
    let to = crate::store::recipient_shown(&m["to"], false);
    let text = |k: &str| m[k].as_str().unwrap_or("").to_owned();
    let size = match channel {
        "sms" => {
            let size = crate::render::measure_sms(&text("body"));
            format!(" · {}, {} segment(s)", size.encoding, size.segments)
        }
        _ => String::new(),
    };
    say!(
        "  ── {}{note} to {to} · {about}{size}",
        channel.to_uppercase()
    );
    let body = match channel {
        "email" => format!("Subject: {}\n\n{}", text("subject"), text("text")),
        "push" => format!("{}\n{}", text("title"), text("body")),
        _ => text("body"),
    };
    for line in body.lines() {
        say!("     │ {line}");
    }
    Ok(())
}

/// Connects to NATS and makes sure the events stream exists, for commands that publish onto it:
/// `run` may not have created it yet, and the stream keeps what they publish until it reads it.
async fn publishing_nats(
    settings: &crate::config::Settings,
) -> anyhow::Result<(async_nats::Client, async_nats::jetstream::Context)> {
    use anyhow::Context;
    let nats = crate::intake::connect(&settings.nats)
        .await
        .context("Failed to connect to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    crate::intake::ensure_consumer(&js, &settings.nats, &settings.intake)
        .await
        .context("Failed to set up JetStream")?;
    Ok((nats, js))
}

/// Loads settings and installs logging, the start of `run`.
fn settings(
    config: Option<&std::path::Path>,
    log_json: bool,
) -> anyhow::Result<crate::config::Settings> {
    settings_logging(config, log_json, false)
}

/// Loads settings and installs logging for a command someone types (`announce`, `schedule`,
/// `migrate`): it says what it did in its own words, so the log shows only warnings and errors
/// — not a library's `connected successfully` — unless `[log] level` or `RUST_LOG` asks for
/// more.
fn tool_settings(
    config: Option<&std::path::Path>,
    log_json: bool,
) -> anyhow::Result<crate::config::Settings> {
    settings_logging(config, log_json, true)
}

/// Settings, with logging installed: JSON if asked, and at `warn` for a `quiet` command whose
/// level was not set.
fn settings_logging(
    config: Option<&std::path::Path>,
    log_json: bool,
    quiet: bool,
) -> anyhow::Result<crate::config::Settings> {
    let mut settings = crate::config::Settings::load(config)?;
    if log_json {
        settings.log.format = crate::telemetry::LogFormat::Json;
    }
    if quiet && settings.log.level == crate::telemetry::LogSettings::default().level {
        settings.log.level = "warn".into();
    }
    crate::telemetry::init(&settings.log);
    Ok(settings)
}
