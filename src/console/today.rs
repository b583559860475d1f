//! Today at a glance: the day's messages by rule, channel and where they stand; the dead
//! letters the stream keeps, by reason, with the latest few; and each schedule's last run.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::{json, Value};

use super::pages::Page;
use super::words::word;
use super::{Console, Signed};
use crate::domain::time_shown;
use crate::intake::{HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_REASON};
use crate::store::TALLY_STATES;

/// How many of the latest dead letters are shown.
const LATEST_DEAD_LETTERS: u64 = 5;

pub(super) async fn page(State(console): State<Console>, signed: Signed) -> Response {
    let now = Utc::now();
    let since = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |midnight| midnight.and_utc());
    let store = &console.inner.store;
    let tallies = match store.message_tallies(since, now).await {
        Ok(tallies) => tallies,
        Err(e) => {
            let message = e.to_string();
            return console.problem(
                &signed,
                StatusCode::SERVICE_UNAVAILABLE,
                &message,
                "/console/today",
            );
        }
    };
    // Rule and channel → a count per state, in TALLY_STATES' order.
    let mut rows: BTreeMap<(String, String), [u64; TALLY_STATES.len()]> = BTreeMap::new();
    for tally in tallies {
        let counts = rows.entry((tally.rule_id, tally.channel)).or_default();
        if let Some(at) = TALLY_STATES.iter().position(|s| *s == tally.state) {
            counts[at] += tally.count;
        }
    }
    let mut totals = [0u64; TALLY_STATES.len() + 1];
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|((rule, channel), counts)| {
            let total: u64 = counts.iter().sum();
            for (sum, n) in totals.iter_mut().zip(counts.iter().chain([&total])) {
                *sum += n;
            }
            json!({"rule": rule, "channel": channel, "counts": counts, "total": total})
        })
        .collect();
    let states: Vec<&str> = TALLY_STATES
        .iter()
        .map(|s| word(signed.lang, state_word(s)))
        .collect();
    let schedules = schedules(&console).await;
    let data = json!({
        "since_words": format!("{} {}", word(signed.lang, "today_since"), time_shown(since)),
        "states": states,
        "rows": rows,
        "totals": totals,
        "dead_letters": dead_letters(&console).await,
        "schedules": schedules,
    });
    let page = Page {
        template: "today",
        nav: "today",
        title: word(signed.lang, "nav_today").to_owned(),
        data,
        back: "/console/today",
    };
    console.page(&signed, StatusCode::OK, page)
}

fn state_word(state: &str) -> &'static str {
    match state {
        "queued" => "queued",
        "held" => "held",
        "sending" => "sending",
        "sent" => "sent",
        "failed" => "failed",
        _ => "withdrawn",
    }
}

/// The dead-letter stream's count per reason and its latest messages' reasons; what could not
/// be read is said instead.
async fn dead_letters(console: &Console) -> Value {
    let nats = &console.inner.settings.nats;
    let read = async {
        let stream = console.inner.js.get_stream(&nats.dlq_stream).await?;
        let prefix = format!("{}.", nats.dlq_subject_prefix);
        let mut reasons: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{prefix}>"))
            .await?
            .map_ok(|(subject, n)| (subject.trim_start_matches(&prefix).to_owned(), n))
            .try_collect()
            .await?;
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let state = stream.get_info().await?.state;
        let mut latest = Vec::new();
        let mut seq = state.last_sequence;
        while seq >= state.first_sequence.max(1) && (latest.len() as u64) < LATEST_DEAD_LETTERS {
            // A sequence the stream deleted is skipped.
            if let Ok(message) = stream.get_raw_message(seq).await {
                let header = |name: &str| {
                    message
                        .headers
                        .get(name)
                        .map(|v| crate::telemetry::mask_text(v.as_str()))
                        .unwrap_or_default()
                };
                let at = DateTime::<Utc>::from_timestamp(message.time.unix_timestamp(), 0)
                    .unwrap_or_default();
                latest.push(json!({
                    "at": at,
                    "at_shown": time_shown(at),
                    "reason": header(HEADER_REASON),
                    "error": header(HEADER_ERROR),
                    "subject": header(HEADER_ORIGINAL_SUBJECT),
                }));
            }
            seq -= 1;
        }
        let reasons: Vec<Value> = reasons
            .into_iter()
            .map(|(reason, count)| json!({"reason": reason, "count": count}))
            .collect();
        Ok::<_, async_nats::Error>(json!({"reasons": reasons, "latest": latest, "error": null}))
    };
    read.await.unwrap_or_else(
        |e| json!({"reasons": [], "latest": [], "error": format!("{}: {e}", nats.dlq_stream)}),
    )
}

/// Each schedule's last run.
async fn schedules(console: &Console) -> Vec<Value> {
    let store = &console.inner.store;
    let mut shown = Vec::new();
    for name in console.inner.settings.schedules.keys() {
        let last = store
            .schedule_runs(name, 1)
            .await
            .ok()
            .and_then(|mut r| r.pop());
        shown.push(match last {
            None => json!({"name": name, "last_run": "—", "found": "", "emitted": "",
                           "error": null, "result": "—"}),
            Some(run) => json!({
                "name": name,
                "last_run": time_shown(run.started_at),
                "found": run.found,
                "emitted": run.emitted,
                "error": run.error,
                "result": if run.finished_at.is_some() { "✓" } else { "…" },
            }),
        });
    }
    shown
}
