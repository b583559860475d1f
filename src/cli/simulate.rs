//! `forewarn simulate`: what a draft rule set would do, replayed over the events forewarn
//! stored (or a file of them), before it ships — per rule and channel, with costs and discount
//! face values, and the difference from what the live rules did. Exits 1 when a template fails
//! to render or an expression fails on a replayed event, so a rules repository can run it in
//! its own CI against last week's traffic.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::cli::output::say;
use crate::simulate::{Difference, Events, Report, Simulation};

/// Options of `forewarn simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The draft rules folder.
    #[arg(long, value_name = "DIR")]
    pub rules: PathBuf,
    /// The draft templates folder; default: `paths.templates`.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Replay the stored events of this last stretch of time (`7d`, `12h`); the default is 7d.
    #[arg(long, value_parser = crate::cli::duration_arg, value_name = "DURATION",
          conflicts_with_all = ["from", "events"])]
    pub since: Option<std::time::Duration>,
    /// Replay the stored events from this time (RFC 3339) …
    #[arg(long, value_name = "TIME", requires = "to", conflicts_with = "events")]
    pub from: Option<DateTime<Utc>>,
    /// … to this one.
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<DateTime<Utc>>,
    /// Replay a JSON Lines file of CloudEvents instead, on an empty state, each as of its
    /// `time`.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// One JSON document instead of text, for tools.
    #[arg(long)]
    pub json: bool,
}

/// Runs the simulation and prints its report; fails when anything failed to render.
pub(super) async fn execute(
    args: SimulateArgs,
    config: Option<&Path>,
    log_json: bool,
) -> anyhow::Result<()> {
    let settings = super::tool_settings(config, log_json)?;
    let mut draft_settings = settings.clone();
    draft_settings.paths.rules = args.rules.clone();
    if let Some(templates) = &args.templates {
        draft_settings.paths.templates = templates.clone();
    }
    let draft = crate::authoring::load(&draft_settings).map_err(|e| super::load_errors(&e))?;
    let policy = settings.policy()?;
    let now = Utc::now();
    let events = match (&args.events, args.from, args.to) {
        (Some(file), _, _) => Events::File(file.clone()),
        (None, Some(from), Some(to)) => {
            if from >= to {
                bail!("--from must be before --to");
            }
            Events::Stored { from, to }
        }
        _ => {
            let since = args
                .since
                .unwrap_or(std::time::Duration::from_secs(7 * 24 * 3600));
            let since = chrono::Duration::from_std(since).context("--since is too long")?;
            Events::Stored {
                from: now - since,
                to: now,
            }
        }
    };
    let store = crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to open the database {}", settings.database.url))?;
    let simulation = Simulation {
        live: store.as_ref(),
        draft: std::sync::Arc::new(draft),
        policy: &policy,
        incidents: &settings.incidents,
        costs: &settings.costs,
        progress: None,
    };
    let report = simulation.run(&events).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, &events, &args)?;
    }
    if report.failed() {
        bail!(
            "{} message(s) failed to render or evaluate on the replayed events",
            report.failures.len()
        );
    }
    Ok(())
}

fn print_text(
    report: &Report,
    events: &Events,
    args: &SimulateArgs,
) -> Result<(), super::output::OutputError> {
    let replayed = match events {
        Events::Stored { from, to } => format!(
            "the events stored from {} to {}",
            crate::domain::time_shown(*from),
            crate::domain::time_shown(*to)
        ),
        Events::File(path) => path.display().to_string(),
    };
    say!(
        "Simulated {} event(s) of {replayed} against {} — nothing was sent and nothing written.",
        report.events,
        args.rules.display()
    );
    if report.warm_up > 0 {
        say!(
            "({} earlier event(s) replayed first for the state they leave, not counted.)",
            report.warm_up
        );
    }
    if report.purged > 0 {
        say!(
            "({} event(s) in the window were emptied by the retention purge and not replayed.)",
            report.purged
        );
    }
    if report.fanouts > 0 {
        say!(
            "({} incident fan-out(s) replayed to the customers they reach.)",
            report.fanouts
        );
    }
    say!();
    if report.rules.is_empty() {
        say!("No message would be sent.");
    }
    for (rule, channels) in &report.rules {
        for (channel, t) in channels {
            let mut line = format!(
                "{rule} · {channel}: {} message(s) to {} customer(s)",
                t.messages,
                t.customers()
            );
            if channel == "sms" {
                line.push_str(&format!(", {} segment(s)", t.segments));
            }
            if let (Some(cost), Some(currency)) = (t.cost, &report.cost_currency) {
                line.push_str(&format!(", ≈ {cost:.2} {currency}"));
            }
            if t.codes > 0 {
                line.push_str(&format!(
                    ", {} discount code(s) worth {}",
                    t.codes,
                    money_list(&t.face_value)
                ));
            }
            if t.held > 0 {
                line.push_str(&format!(", {} held for quiet hours", t.held));
            }
            say!("  {line}");
        }
    }
    if !report.suppressed.is_empty() {
        say!("\nHeld back:");
        for (rule, reasons) in &report.suppressed {
            let listed: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            say!("  {rule}: {}", listed.join(", "));
        }
    }
    if !report.failures.is_empty() {
        say!("\nFailed ({}):", report.failures.len());
        for f in &report.failures {
            say!("  rule {} on event {}: {}", f.rule_id, f.event, f.error);
        }
    }
    if !report.unreadable.is_empty() {
        say!("\nNot replayed ({}):", report.unreadable.len());
        for line in &report.unreadable {
            say!("  {line}");
        }
    }
    let Some(c) = &report.comparison else {
        return Ok(());
    };
    say!(
        "\nCompared with what the live rules did for the same events ({} message(s)):",
        c.live_messages
    );
    say!(
        "  new {} · dropped {} · changed channel {} · changed offer {}",
        c.new.count,
        c.dropped.count,
        c.changed_channel.count,
        c.changed_offer.count
    );
    if c.live_face_value != c.draft_face_value {
        say!(
            "  discount face value: {} live → {} draft",
            money_list(&c.live_face_value),
            money_list(&c.draft_face_value)
        );
    }
    for (kind, difference) in [
        ("new", &c.new),
        ("dropped", &c.dropped),
        ("changed channel", &c.changed_channel),
        ("changed offer", &c.changed_offer),
    ] {
        print_samples(kind, difference)?;
    }
    Ok(())
}

fn print_samples(kind: &str, difference: &Difference) -> Result<(), super::output::OutputError> {
    for sample in &difference.samples {
        let m = &sample.message;
        say!(
            "\n  {kind}: rule {} → {} by {}{}{} (event {})",
            m.rule_id,
            m.customer_id,
            m.channel,
            m.offer_percent
                .map(|p| format!(", {p} % off"))
                .unwrap_or_default(),
            sample
                .live
                .as_ref()
                .map(|l| format!("; live: {l}"))
                .unwrap_or_default(),
            m.event
        );
        for line in crate::telemetry::mask_text(&m.text).lines() {
            say!("     │ {line}");
        }
    }
    Ok(())
}

/// The sum of `values`, or that there is none to show.
fn money_list(values: &std::collections::BTreeMap<String, i64>) -> String {
    if values.is_empty() {
        return "nothing (no order total known)".into();
    }
    crate::simulate::money_shown(values)
}
