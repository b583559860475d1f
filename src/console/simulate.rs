//! `forewarn simulate` from the browser: the rules and templates on disk — with the template
//! draft in the editor, when one is sent — replayed over the last day, week or month of stored
//! events. The report is the command's, on a page: per rule and channel, what was held back,
//! what failed with the event that caused it, and the difference from what the live rules did.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::drafts::DraftSet;
use super::pages::Page;
use super::words::word;
use super::{Console, Signed};
use crate::simulate::{Events, Report, Simulation};

/// What the simulate forms post.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Asked {
    csrf: String,
    /// `1d`, `7d` or `30d`.
    since: String,
    /// With a draft: its template, file and text.
    template: String,
    file: String,
    source: Option<String>,
}

pub(super) async fn run(
    State(console): State<Console>,
    signed: Signed,
    Form(asked): Form<Asked>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &asked.csrf) {
        return *refused;
    }
    let settings = &console.inner.settings;
    let days = match asked.since.as_str() {
        "1d" => 1,
        "30d" => 30,
        _ => 7,
    };
    // The set on disk, with the editor's draft when one came along.
    let draft = match &asked.source {
        Some(source) if !asked.template.is_empty() => {
            let files = console
                .inner
                .authoring
                .borrow()
                .templates
                .file_names(&asked.template);
            if !files.contains(&asked.file) {
                let message = word(signed.lang, "no_such_file");
                return console.problem(&signed, StatusCode::NOT_FOUND, message, "/console/rules");
            }
            DraftSet::with_template(settings, &asked.template, &asked.file, source)
                .map_err(|e| vec![e.to_string()])
                .and_then(|set| set.load())
        }
        _ => crate::authoring::load(settings),
    };
    let now = Utc::now();
    let mut data = json!({
        "days": days,
        "draft": asked.source.as_ref().map(|_| format!("{}/{}", asked.template, asked.file)),
        "problems": null,
        "report": null,
    });
    let status = match draft {
        Err(problems) => {
            data["problems"] = json!(problems);
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Ok(authoring) => {
            let simulation = Simulation {
                live: console.inner.store.as_ref(),
                draft: &authoring,
                policy: &console.inner.policy,
                costs: &settings.costs,
            };
            let window = Events::Stored {
                from: now - chrono::Duration::days(days),
                to: now,
            };
            match simulation.run(&window).await {
                Ok(report) => {
                    tracing::info!(
                        who = %signed.session.who,
                        days,
                        events = report.events,
                        "Simulation run from the console."
                    );
                    data["report"] = shown(&report);
                    if report.failed() {
                        StatusCode::UNPROCESSABLE_ENTITY
                    } else {
                        StatusCode::OK
                    }
                }
                Err(e) => {
                    data["problems"] = json!([e.to_string()]);
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }
    };
    let page = Page {
        template: "simulation",
        nav: "rules",
        title: word(signed.lang, "simulation").to_owned(),
        data,
        back: "/console/rules",
    };
    console.page(&signed, status, page)
}

/// The report as the page lists it.
fn shown(report: &Report) -> Value {
    let rows: Vec<Value> = report
        .rules
        .iter()
        .flat_map(|(rule, channels)| {
            channels.iter().map(move |(channel, t)| {
                json!({
                    "rule": rule, "channel": channel, "messages": t.messages,
                    "customers": t.customers(), "segments": t.segments,
                    "cost": t.cost.map(|c| format!("{c:.2}")), "codes": t.codes,
                    "face_value": crate::simulate::money_shown(&t.face_value),
                    "held": t.held,
                })
            })
        })
        .collect();
    let suppressed: Vec<Value> = report
        .suppressed
        .iter()
        .flat_map(|(rule, reasons)| {
            reasons
                .iter()
                .map(move |(reason, n)| json!({"rule": rule, "reason": reason, "count": n}))
        })
        .collect();
    let comparison = report.comparison.as_ref().map(|c| {
        let kinds = [
            ("new", &c.new),
            ("dropped", &c.dropped),
            ("changed_channel", &c.changed_channel),
            ("changed_offer", &c.changed_offer),
        ];
        json!({
            "live_messages": c.live_messages,
            "kinds": kinds.iter().map(|(kind, d)| json!({
                "kind": kind,
                "count": d.count,
                "samples": d.samples.iter().map(|s| json!({
                    "rule": s.message.rule_id,
                    "customer": s.message.customer_id,
                    "channel": s.message.channel,
                    "offer": s.message.offer_percent,
                    "live": s.live,
                    "event": s.message.event,
                    "text": crate::telemetry::mask_text(&s.message.text),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "events": report.events,
        "warm_up": report.warm_up,
        "rows": rows,
        "suppressed": suppressed,
        "failures": report.failures,
        "failure_count": report.failures.len(),
        "comparison": comparison,
        "cost_currency": report.cost_currency,
    })
}
