//! `forewarn schedule list|run`: what the schedules are, when they last ran and when they run
//! next; and one run by hand, now or as of a given time, under the same lease as `run`'s.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::cli::output::say;
use crate::domain::time_shown;
use crate::schedule::{Schedule, TickResult};

/// Options of `forewarn schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// `forewarn schedule` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule: its job, cron, next run, last run and what it found.
    List,
    /// Run schedules once, now (or as of --at), whatever their cron says. The run takes the
    /// schedule's lease like `forewarn run` does, so it never doubles a run in progress, and
    /// counts as the schedule's latest tick.
    Run {
        /// The schedules to run (their names under `[schedules]`); all enabled ones if none.
        names: Vec<String>,
        /// Run as if it were this time (RFC 3339): what would the sweep find tomorrow?
        /// Synthetic events are published for real.
        #[arg(long, value_name = "TIME")]
        at: Option<DateTime<Utc>>,
    },
}

/// Runs `forewarn schedule …`.
pub(super) async fn execute(
    args: ScheduleArgs,
    config: Option<&Path>,
    log_json: bool,
) -> anyhow::Result<()> {
    let settings = super::tool_settings(config, log_json)?;
    let schedules = settings.schedules()?;
    let store = crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to open the database {}", settings.database.url))?;
    match args.command {
        ScheduleCommand::List => list(&schedules, store.as_ref()).await,
        ScheduleCommand::Run { names, at } => {
            let chosen = choose(&schedules, &names)?;
            let (nats, js) = super::publishing_nats(&settings).await?;
            let scheduler =
                super::run::scheduler(&settings, store, js, Arc::new(tokio::sync::Notify::new()))?;
            let at = at.unwrap_or_else(Utc::now);
            // Whole seconds, like cron ticks.
            let tick = DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at);
            let mut failed = false;
            for schedule in chosen {
                let result = scheduler.run_tick(schedule, tick, at).await;
                failed |= matches!(result, TickResult::Failed(_));
                say!("{}", describe(schedule, tick, &result));
            }
            nats.flush().await.ok();
            if failed {
                anyhow::bail!("a schedule failed; see above");
            }
            Ok(())
        }
    }
}

/// The schedules `names` picks, in their order; all of them when empty.
fn choose<'a>(schedules: &'a [Schedule], names: &[String]) -> anyhow::Result<Vec<&'a Schedule>> {
    if names.is_empty() {
        return Ok(schedules.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            schedules.iter().find(|s| &s.name == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no enabled schedule `{name}`; there are: {}",
                    schedules
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
}

fn describe(schedule: &Schedule, tick: DateTime<Utc>, result: &TickResult) -> String {
    let name = &schedule.name;
    let at = time_shown(tick);
    match result {
        TickResult::Ran(report) => format!(
            "{name} ({job}) at {at}: {summary} (found {found}, {done} done)",
            job = schedule.job.name(),
            summary = report.summary,
            found = report.found,
            done = report.emitted
        ),
        other => format!("{name} at {at}: {other}"),
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or("-".into(), time_shown)
}

async fn list(schedules: &[Schedule], store: &dyn crate::store::Store) -> anyhow::Result<()> {
    let statuses = store.schedule_statuses().await?;
    let now = Utc::now();
    for schedule in schedules {
        let status = statuses.iter().find(|s| s.schedule == schedule.name);
        say!(
            "{name}  job {job}  cron `{cron}`  next {next}",
            name = schedule.name,
            job = schedule.job.name(),
            cron = schedule.cron.source(),
            next = time(schedule.cron.next_after(now)),
        );
        let Some(status) = status else {
            say!("    never run");
            continue;
        };
        let last = store
            .schedule_runs(&schedule.name, 1)
            .await?
            .into_iter()
            .next();
        match last {
            Some(run) => say!(
                "    last run: tick {tick} by {owner}, {state}, found {found}, {done} done",
                tick = time(Some(run.tick)),
                owner = run.owner,
                state = match (&run.error, run.finished_at) {
                    (Some(e), _) => format!("failed: {e}"),
                    (None, Some(end)) =>
                        format!("took {} ms", (end - run.started_at).num_milliseconds()),
                    (None, None) => "running (or its process died)".into(),
                },
                found = run.found,
                done = run.emitted,
            ),
            None => say!("    no run recorded"),
        }
        say!(
            "    last success {}{}",
            time(status.last_success_at),
            status
                .lease
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(owner, until)| format!("; held by {owner} until {}", time(Some(*until))))
                .unwrap_or_default()
        );
    }
    let unknown: Vec<&str> = statuses
        .iter()
        .map(|s| s.schedule.as_str())
        .filter(|name| !schedules.iter().any(|s| s.name == *name))
        .collect();
    if !unknown.is_empty() {
        say!(
            "(the database also remembers {}, no longer enabled)",
            unknown.join(", ")
        );
    }
    Ok(())
}
