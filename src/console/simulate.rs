//! `forewarn simulate` from the browser: the rules and templates on disk — with the template
//! draft in the editor, when one is sent — replayed over the last day, week or month of stored
//! events. The report is the command's, on a page: per rule and channel, what was held back,
//! what failed with the event that caused it, and the difference from what the live rules did.
//!
//! A month of a busy shop's events takes a minute or more to replay, longer than a browser or a
//! proxy waits for an answer, so the form starts the replay in the background and goes to its
//! page: a progress bar (the script reads `/console/api/simulations/{id}` every second) until
//! the report is there. One replay runs at a time per process — it takes a core that intake
//! and the dispatcher share — and the process keeps the last [`KEPT`] reports, in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::drafts::DraftSet;
use super::pages::Page;
use super::words::word;
use super::{Console, Signed};
use crate::authoring::Authoring;
use crate::domain::time_shown;
use crate::simulate::{Events, Progress, Report, Simulation};

/// How many simulations a process remembers, running or done.
const KEPT: usize = 10;

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

/// The simulations this process started, oldest first.
#[derive(Default)]
pub(super) struct Simulations {
    runs: Mutex<VecDeque<Arc<Run>>>,
}

/// One simulation, running or done.
#[derive(Debug)]
struct Run {
    /// Its number in this process, in its address.
    id: u64,
    /// Who started it.
    who: String,
    /// Over how many days of stored events.
    days: i64,
    /// The draft it replays with (`template/file`), if any.
    draft: Option<String>,
    started: DateTime<Utc>,
    progress: Progress,
    /// The report, or why it could not be made; set once, when the replay ends.
    outcome: OnceLock<Result<Report, String>>,
}

impl Simulations {
    fn find(&self, id: u64) -> Option<Arc<Run>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter().find(|run| run.id == id).cloned()
    }

    /// A new run, unless one is still running (which is returned instead).
    fn start(&self, who: &str, days: i64, draft: Option<String>) -> Result<Arc<Run>, Arc<Run>> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = runs.iter().find(|run| run.outcome.get().is_none()) {
            return Err(running.clone());
        }
        let run = Arc::new(Run {
            id: runs.back().map_or(1, |last| last.id + 1),
            who: who.to_owned(),
            days,
            draft,
            started: Utc::now(),
            progress: Progress::default(),
            outcome: OnceLock::new(),
        });
        if runs.len() == KEPT {
            runs.pop_front();
        }
        runs.push_back(run.clone());
        Ok(run)
    }
}

/// The simulate forms: checks the set (refused at once with its `file:line:col` errors), then
/// starts the replay and goes to its page.
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
    let draft_name = asked
        .source
        .as_ref()
        .map(|_| format!("{}/{}", asked.template, asked.file));
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
    let authoring = match draft {
        Ok(authoring) => authoring,
        Err(problems) => {
            let data = json!({
                "days": days, "draft": draft_name, "problems": problems, "report": null,
                "running": null,
            });
            return simulation_page(&console, &signed, StatusCode::UNPROCESSABLE_ENTITY, data);
        }
    };
    let run = match console
        .inner
        .simulations
        .start(&signed.session.who, days, draft_name)
    {
        Ok(run) => run,
        Err(running) => {
            let message = word(signed.lang, "simulation_busy")
                .replace("{who}", &running.who)
                .replace("{started}", &time_shown(running.started));
            let back = format!("/console/simulations/{}", running.id);
            return console.problem(&signed, StatusCode::CONFLICT, &message, &back);
        }
    };
    tracing::info!(who = %signed.session.who, days, simulation = run.id, "Simulation started from the console.");
    watch(
        run.clone(),
        tokio::spawn(replay(console, run.clone(), authoring)),
    );
    Redirect::to(&format!("/console/simulations/{}", run.id)).into_response()
}

/// Ends `run` with why, should its replay stop without an outcome (a panic): it must not look
/// as if it still ran, holding the one place for a simulation until the process restarts.
fn watch(run: Arc<Run>, replaying: tokio::task::JoinHandle<()>) {
    tokio::spawn(async move {
        if let Err(stopped) = replaying.await {
            tracing::error!(simulation = run.id, error = %stopped, "Simulation from the console stopped.");
            let _ = run
                .outcome
                .set(Err(format!("the simulation stopped: {stopped}")));
        }
    });
}

/// Replays the window for `run` and keeps what it found.
async fn replay(console: Console, run: Arc<Run>, authoring: Authoring) {
    let settings = &console.inner.settings;
    let simulation = Simulation {
        live: console.inner.store.as_ref(),
        draft: Arc::new(authoring),
        policy: &console.inner.policy,
        incidents: &settings.incidents,
        costs: &settings.costs,
        progress: Some(&run.progress),
    };
    let now = Utc::now();
    let window = Events::Stored {
        from: now - chrono::Duration::days(run.days),
        to: now,
    };
    let outcome = simulation.run(&window).await;
    match &outcome {
        Ok(report) => tracing::info!(
            who = %run.who,
            simulation = run.id,
            events = report.events,
            failures = report.failures.len(),
            "Simulation from the console done."
        ),
        Err(error) => {
            tracing::warn!(simulation = run.id, %error, "Simulation from the console failed.")
        }
    }
    let _ = run.outcome.set(outcome.map_err(|e| e.to_string()));
}

/// A simulation's page: its progress while it runs, then its report.
pub(super) async fn show(
    State(console): State<Console>,
    signed: Signed,
    Path(id): Path<u64>,
) -> Response {
    let Some(run) = console.inner.simulations.find(id) else {
        let message = word(signed.lang, "simulation_gone");
        return console.problem(&signed, StatusCode::NOT_FOUND, message, "/console/rules");
    };
    let mut data = json!({
        "days": run.days, "draft": run.draft, "problems": null, "report": null, "running": null,
    });
    match run.outcome.get() {
        None => data["running"] = running(&run),
        Some(Ok(report)) => data["report"] = shown(report),
        Some(Err(problem)) => data["problems"] = json!([problem]),
    }
    simulation_page(&console, &signed, StatusCode::OK, data)
}

/// How far a simulation has got, for the page's script.
pub(super) async fn progress(
    State(console): State<Console>,
    _signed: Signed,
    Path(id): Path<u64>,
) -> Response {
    match console.inner.simulations.find(id) {
        Some(run) => Json(running(&run)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A run's progress as the page and its script show it.
fn running(run: &Run) -> Value {
    json!({
        "id": run.id,
        "who": run.who,
        "started": time_shown(run.started),
        "events": run.progress.events(),
        "percent": (run.progress.done() * 100.0).floor() as u64,
        "done": run.outcome.get().is_some(),
    })
}

fn simulation_page(
    console: &Console,
    signed: &Signed,
    status: StatusCode,
    data: Value,
) -> Response {
    let page = Page {
        template: "simulation",
        nav: "rules",
        title: word(signed.lang, "simulation").to_owned(),
        data,
        back: "/console/rules",
    };
    console.page(signed, status, page)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_simulation_runs_at_a_time_and_the_last_ten_are_kept() {
        let simulations = Simulations::default();
        let first = simulations.start("Min-ji", 7, None).unwrap();
        let busy = simulations.start("Dana", 1, None).unwrap_err();
        assert_eq!((busy.id, busy.who.as_str()), (first.id, "Min-ji"));

        let _ = first.outcome.set(Err("done".into()));
        let mut last = first.id;
        for _ in 0..KEPT {
            let run = simulations.start("Dana", 1, None).unwrap();
            assert_eq!(run.id, last + 1);
            last = run.id;
            let _ = run.outcome.set(Ok(Report::default()));
        }
        assert!(
            simulations.find(first.id).is_none(),
            "the oldest is forgotten"
        );
        assert!(simulations.find(first.id + 1).is_some());
        assert!(simulations.find(last).is_some());
    }

    #[tokio::test]
    async fn a_replay_that_panics_ends_its_run_and_frees_the_place() {
        let simulations = Simulations::default();
        let run = simulations.start("Min-ji", 7, None).unwrap();
        watch(
            run.clone(),
            tokio::spawn(async { panic!("a bug in the replay") }),
        );
        for _ in 0..1_000 {
            if run.outcome.get().is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let outcome = run.outcome.get().expect("the run ended");
        assert!(
            outcome
                .as_ref()
                .is_err_and(|e| e.contains("a bug in the replay")),
            "{outcome:?}"
        );
        assert!(simulations.start("Dana", 1, None).is_ok());
    }
}
