//! `forewarn explain --customer ID`: why a customer did (or didn't) get a message — the events
//! forewarn acted on, each decision with its scores, every message with every attempt and what
//! receipts said of it, everything held back with its reason, and what the customer replied.
//! Personal data is masked unless `--reveal`.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::output::say;
use crate::config::Settings;
use crate::domain::time_shown;
use crate::store::{CustomerTimeline, DecisionNote, ReplySummary, TimelineEvent};

/// Options of `forewarn explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The customer's id.
    #[arg(long, value_name = "ID")]
    pub customer: String,
    /// Only what happened in this last stretch of time (`30d`, `12h`); everything by default.
    #[arg(long, value_parser = crate::cli::duration_arg, value_name = "DURATION")]
    pub since: Option<std::time::Duration>,
    /// One JSON document instead of text, for tools.
    #[arg(long)]
    pub json: bool,
    /// Show phone numbers, e-mail addresses and names in full.
    #[arg(long)]
    pub reveal: bool,
}

/// Prints the customer's timeline.
pub(super) async fn execute(args: ExplainArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let store = crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to open the database {}", settings.database.url))?;
    let since = match args.since {
        Some(d) => Utc::now() - chrono::Duration::from_std(d).context("--since is too long")?,
        None => DateTime::<Utc>::MIN_UTC,
    };
    let timeline = store.timeline(&args.customer, since).await?;
    if args.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&timeline.to_json(&args.customer, args.reveal))?
        );
    } else {
        print_text(&args.customer, &timeline, args.reveal)?;
    }
    Ok(())
}

/// One line about an event: its type, the ids it names, and who sent it (a backend, or
/// `forewarn/schedules` for what a schedule noticed).
fn describe_event(event: &TimelineEvent) -> String {
    let ids: Vec<String> = ["shipment_id", "order_id", "incident_id"]
        .iter()
        .filter_map(|k| {
            event
                .data
                .get(*k)
                .and_then(Value::as_str)
                .map(|v| format!("{k} {v}"))
        })
        .collect();
    format!(
        "{} ({}) from {}",
        event.event_type,
        ids.join(", "),
        event.key.source
    )
}

fn print_text(
    customer: &str,
    t: &CustomerTimeline,
    reveal: bool,
) -> Result<(), super::output::OutputError> {
    let mask = |text: &str| crate::store::masked(text, reveal);
    let Some(doc) = &t.customer else {
        say!("customer {customer}: not known to forewarn (no customer.upserted or inline customer yet)");
        return Ok(());
    };
    let object = doc.as_object();
    let field = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let consent = object.get("consent").cloned().unwrap_or(Value::Null);
    let said = |k: &str| match consent.get(k).and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not given",
    };
    say!(
        "customer {customer} ({}, {}, {}); consent: sms {}, email {}, push {}, marketing {}",
        crate::store::mask_name(&field("name"), reveal),
        field("locale"),
        field("timezone"),
        said("sms"),
        said("email"),
        said("push"),
        said("marketing")
    );
    for (channel, scope, at) in &t.opt_outs {
        say!(
            "  opted out of {} on {channel} at {}",
            scope.as_str(),
            time_shown(*at)
        );
    }
    for reply in &t.replies {
        say!("  {}", reply_line(reply, reveal));
    }
    if t.events.is_empty() {
        say!("  nothing decided for this customer yet");
    }
    for event in &t.events {
        say!(
            "\n{}  {}",
            time_shown(event.time.unwrap_or(event.received_at)),
            describe_event(event)
        );
        for m in t.messages.iter().filter(|m| m.event == event.key) {
            let offer = m.offer.as_ref().map_or(String::new(), |o| {
                format!(
                    " · {}% off, code {}",
                    o["percent"],
                    o["code"].as_str().unwrap_or("?")
                )
            });
            let state = match m.status.as_str() {
                "sent" => format!("sent {}", m.sent_at.map_or("?".into(), time_shown)),
                "pending" if m.next_attempt_at > Utc::now() => {
                    format!("waiting until {}", time_shown(m.next_attempt_at))
                }
                "cancelled" => m.last_error.clone().unwrap_or_else(|| "cancelled".into()),
                other => other.to_owned(),
            };
            say!(
                "  → rule {}: {} to {} · {state}{offer}",
                m.rule_id,
                m.channel.as_str().to_uppercase(),
                crate::store::recipient_shown(&m.content["to"], reveal)
            );
            for a in &m.attempts {
                let delivery = match (&a.delivery, a.delivery_at) {
                    (Some(state), Some(at)) => format!(
                        " · {state} {}{}",
                        time_shown(at),
                        a.delivery_error
                            .as_deref()
                            .map(|e| format!(" ({})", mask(e)))
                            .unwrap_or_default()
                    ),
                    _ => String::new(),
                };
                say!(
                    "      attempt {} via {} at {}: {}{}{delivery}",
                    a.attempt,
                    a.gateway,
                    time_shown(a.at),
                    a.outcome,
                    a.error
                        .as_deref()
                        .map(|e| format!(" ({})", mask(e)))
                        .unwrap_or_default()
                );
            }
            if !m.receipts.is_empty() {
                let receipts: Vec<String> = m
                    .receipts
                    .iter()
                    .map(|r| {
                        let late = if r.applied { "" } else { " (changed nothing)" };
                        format!("{} {}{late}", r.status, time_shown(r.at))
                    })
                    .collect();
                say!("      receipts: {}", receipts.join(", "));
            }
            if let Some(error) = &m.last_error {
                if m.status == "failed" {
                    say!("      failed: {}", mask(error));
                }
            }
            if let Some(risk) = &m.risk {
                for target in ["delay", "churn"] {
                    if let Some(why) = risk[target]["why"].as_str() {
                        say!("      risk · {why}");
                    }
                }
            }
        }
        for n in t.notes.iter().filter(|n| n.event == event.key) {
            say!("  {}", note_line(n));
        }
    }
    say!();
    Ok(())
}

/// `replied STOP by SMS at …: opted out of SMS`, or what they wrote.
fn reply_line(reply: &ReplySummary, reveal: bool) -> String {
    let channel = reply.channel.as_str().to_uppercase();
    let word = reply.body.trim();
    let at = time_shown(reply.at);
    match reply.keyword.as_str() {
        "stop" => format!("replied {word} by {channel} at {at}: opted out of {channel}"),
        "start" => format!("replied {word} by {channel} at {at}: opted back in to {channel}"),
        "help" => format!("replied {word} by {channel} at {at}: answered with the help text"),
        _ => format!(
            "replied by {channel} at {at}: \"{}\"",
            crate::store::masked(word, reveal)
        ),
    }
}

fn note_line(n: &DecisionNote) -> String {
    if n.reason == "no_rule_matched" {
        return format!("✗ no rule matched: {}", n.detail);
    }
    let (mark, what) = match n.outcome {
        "skipped" => ("✗", "nothing sent"),
        "offer_withheld" => ("−", "sent without its offer"),
        _ => ("…", "held"),
    };
    format!(
        "{mark} rule {}: {what}, {}: {}",
        n.rule_id, n.reason, n.detail
    )
}
