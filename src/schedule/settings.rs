//! `[scheduler]` and `[schedules.<name>]`: which jobs run when, with what limits.
//!
//! A schedule is a cron expression and a named job. The embedded defaults define one schedule
//! per job; a config file changes a key of one (`[schedules.overdue] grace = "12h"`), turns one
//! off (`enabled = false`), or adds another (`[schedules.overdue-express] job = …`). Every
//! option is checked against its job at load, so a key a job does not read is an error, not a
//! silent no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cron::Cron;
use super::jobs::{Job, SurveyUrl};

/// `[scheduler]`: what all schedules share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Off: `forewarn run` runs no schedule (`forewarn schedule run` still can).
    pub enabled: bool,
    /// How long a process holds a schedule while it runs a tick. Another process takes over a
    /// tick only after this, so it must be longer than a run (runs are bounded by `batch`).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Synthetic events are published to this prefix and their type (`events.shipment.overdue`):
    /// inside the stream's subjects, so the intake reads them like any other event.
    pub subject_prefix: String,
    /// The CloudEvents `source` of synthetic events.
    pub source: String,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            enabled: true,
            lease: Duration::from_secs(300),
            subject_prefix: "events.".into(),
            source: "forewarn/schedules".into(),
        }
    }
}

/// The names `job = "…"` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobName {
    /// Parcels past their promise (plus `grace`) with no delivery and no word from the carrier.
    #[serde(rename = "shipment.overdue")]
    ShipmentOverdue,
    /// Orders placed `after` ago with no parcel created.
    #[serde(rename = "order.stalled")]
    OrderStalled,
    /// `after` a problem the customer was told about was resolved: ask how it went.
    #[serde(rename = "csat.due")]
    CsatDue,
    /// Wakes the dispatcher for held messages whose time has come.
    #[serde(rename = "release-deferred")]
    ReleaseDeferred,
    /// Removes personal data older than `keep`, keeping counts.
    #[serde(rename = "retention")]
    Retention,
}

impl JobName {
    /// Every job.
    pub const ALL: [JobName; 5] = [
        JobName::ShipmentOverdue,
        JobName::OrderStalled,
        JobName::CsatDue,
        JobName::ReleaseDeferred,
        JobName::Retention,
    ];

    /// The synthetic event type it emits, for the jobs that emit one.
    pub fn emits(self) -> Option<crate::domain::EventType> {
        use crate::domain::EventType;
        match self {
            JobName::ShipmentOverdue => Some(EventType::ShipmentOverdue),
            JobName::OrderStalled => Some(EventType::OrderStalled),
            JobName::CsatDue => Some(EventType::CsatDue),
            JobName::ReleaseDeferred | JobName::Retention => None,
        }
    }

    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            JobName::ShipmentOverdue => "shipment.overdue",
            JobName::OrderStalled => "order.stalled",
            JobName::CsatDue => "csat.due",
            JobName::ReleaseDeferred => "release-deferred",
            JobName::Retention => "retention",
        }
    }
}

/// `[schedules.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// The job it runs.
    pub job: Option<JobName>,
    /// When: a cron expression with seconds (`0 */10 * * * *`), or the classic five fields
    /// (`*/10 * * * *`, run at second 0), or `@hourly`, `@daily`, …
    pub cron: String,
    /// The zone the cron expression is read in (`Asia/Seoul`); UTC when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Off: never runs.
    pub enabled: bool,
    /// At most this many things are found (and emitted, or purged per table) per run.
    pub batch: usize,
    /// `shipment.overdue`: how long past the promise before a parcel counts as overdue.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub grace: Option<Duration>,
    /// `order.stalled`, `csat.due`: how long after placement, or after resolution.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub after: Option<Duration>,
    /// `shipment.overdue`, `order.stalled`, `csat.due`: how far back a sweep looks. Older
    /// things are not news any more, and a sweep's cost stays bounded however long forewarn
    /// runs.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub lookback: Option<Duration>,
    /// `csat.due`: the survey link, with `{order_id}` and `{customer_id}` filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey_url: Option<String>,
    /// `retention`: how long personal data is kept.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub keep: Option<Duration>,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            job: None,
            cron: String::new(),
            timezone: None,
            enabled: true,
            // A carrier's bad day can make tens of thousands of parcels overdue at once: 5000
            // per run every 10 minutes tells 720k a day, each run well under a second.
            batch: 5000,
            grace: None,
            after: None,
            lookback: None,
            survey_url: None,
            keep: None,
        }
    }
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The embedded schedules: one per job.
pub fn default_schedules() -> BTreeMap<String, ScheduleSettings> {
    let base = ScheduleSettings::default();
    BTreeMap::from([
        (
            "overdue".to_owned(),
            ScheduleSettings {
                job: Some(JobName::ShipmentOverdue),
                cron: "0 */10 * * * *".into(),
                grace: Some(Duration::from_secs(6 * HOUR)),
                lookback: Some(Duration::from_secs(14 * DAY)),
                ..base.clone()
            },
        ),
        (
            "stalled".to_owned(),
            ScheduleSettings {
                job: Some(JobName::OrderStalled),
                cron: "0 5-59/15 * * * *".into(),
                after: Some(Duration::from_secs(48 * HOUR)),
                lookback: Some(Duration::from_secs(14 * DAY)),
                ..base.clone()
            },
        ),
        (
            "csat".to_owned(),
            ScheduleSettings {
                job: Some(JobName::CsatDue),
                cron: "0 0 * * * *".into(),
                after: Some(Duration::from_secs(3 * DAY)),
                lookback: Some(Duration::from_secs(7 * DAY)),
                survey_url: Some("https://shop.example/survey?order={order_id}".into()),
                ..base.clone()
            },
        ),
        (
            "release".to_owned(),
            ScheduleSettings {
                job: Some(JobName::ReleaseDeferred),
                cron: "0 * * * * *".into(),
                ..base.clone()
            },
        ),
        (
            "retention".to_owned(),
            ScheduleSettings {
                job: Some(JobName::Retention),
                // Often and small: each run holds the database's writer briefly, and
                // 5000 rows per table every 10 minutes keeps up with 720k a day.
                cron: "0 7-59/10 * * * *".into(),
                batch: 5_000,
                keep: Some(Duration::from_secs(180 * DAY)),
                ..base
            },
        ),
    ])
}

/// A schedule ready to run.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name, the key under `[schedules]`: metrics, logs and the lease use it.
    pub name: String,
    /// When it fires.
    pub cron: Cron,
    /// What it does.
    pub job: Job,
    /// The most it does per run.
    pub batch: usize,
}

/// Compiles the enabled schedules; errors name the key (`schedules.overdue.cron: …`).
pub fn compile(schedules: &BTreeMap<String, ScheduleSettings>) -> Result<Vec<Schedule>, String> {
    let (compiled, errors) = compile_each(schedules);
    if errors.is_empty() {
        Ok(compiled)
    } else {
        Err(errors.join("; "))
    }
}

/// The schedules that compile, and one `schedules.<name>.<key>: problem` line for each that
/// does not: `check` reports each at its key.
pub fn compile_each(
    schedules: &BTreeMap<String, ScheduleSettings>,
) -> (Vec<Schedule>, Vec<String>) {
    let mut compiled = Vec::new();
    let mut errors = Vec::new();
    for (name, settings) in schedules {
        match compile_one(name, settings) {
            Ok(Some(schedule)) => compiled.push(schedule),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    (compiled, errors)
}

fn compile_one(name: &str, s: &ScheduleSettings) -> Result<Option<Schedule>, String> {
    let key = |k: &str| format!("schedules.{name}.{k}");
    let job_name = s.job.ok_or_else(|| {
        format!(
            "{}: missing; one of shipment.overdue, order.stalled, csat.due, release-deferred, retention",
            key("job")
        )
    })?;
    let cron = Cron::parse(&s.cron, s.timezone.as_deref()).map_err(|e| {
        format!(
            "{}: {e}",
            key(if e.is_timezone() { "timezone" } else { "cron" })
        )
    })?;
    if s.batch == 0 {
        return Err(format!("{}: must be at least 1", key("batch")));
    }
    let required = |value: Option<Duration>, k: &str| {
        value.ok_or_else(|| format!("{}: required by job {}", key(k), job_name.as_str()))
    };
    let mut used: Vec<&str> = Vec::new();
    let job = match job_name {
        JobName::ShipmentOverdue => {
            used.extend(["grace", "lookback"]);
            Job::ShipmentOverdue {
                grace: required(s.grace, "grace")?,
                lookback: required(s.lookback, "lookback")?,
            }
        }
        JobName::OrderStalled => {
            used.extend(["after", "lookback"]);
            Job::OrderStalled {
                after: required(s.after, "after")?,
                lookback: required(s.lookback, "lookback")?,
            }
        }
        JobName::CsatDue => {
            used.extend(["after", "lookback", "survey_url"]);
            let url = s
                .survey_url
                .as_deref()
                .ok_or_else(|| format!("{}: required by job csat.due", key("survey_url")))?;
            Job::CsatDue {
                after: required(s.after, "after")?,
                lookback: required(s.lookback, "lookback")?,
                survey_url: SurveyUrl::parse(url)
                    .map_err(|e| format!("{}: {e}", key("survey_url")))?,
            }
        }
        JobName::ReleaseDeferred => Job::ReleaseDeferred,
        JobName::Retention => {
            used.push("keep");
            let keep = required(s.keep, "keep")?;
            let floor = super::jobs::retention::MINIMUM_KEEP;
            if keep < floor {
                return Err(format!(
                    "{}: at least {} days: risk scores read {} days of history",
                    key("keep"),
                    floor.as_secs() / DAY,
                    crate::domain::EXPERIENCE_DAYS
                ));
            }
            Job::Retention { keep }
        }
    };
    let given = [
        ("grace", s.grace.is_some()),
        ("after", s.after.is_some()),
        ("lookback", s.lookback.is_some()),
        ("survey_url", s.survey_url.is_some()),
        ("keep", s.keep.is_some()),
    ];
    if let Some((unused, _)) = given.iter().find(|(k, set)| *set && !used.contains(k)) {
        return Err(format!(
            "{}: not an option of job {} (it reads: {})",
            key(unused),
            job_name.as_str(),
            if used.is_empty() {
                "none".to_owned()
            } else {
                used.join(", ")
            }
        ));
    }
    if !s.enabled {
        return Ok(None);
    }
    Ok(Some(Schedule {
        name: name.to_owned(),
        cron,
        job,
        batch: s.batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schedules_compile() {
        let compiled = compile(&default_schedules()).unwrap();
        let names: Vec<_> = compiled.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["csat", "overdue", "release", "retention", "stalled"]
        );
    }

    #[test]
    fn an_option_the_job_does_not_read_is_refused_by_key() {
        let mut schedules = default_schedules();
        schedules.get_mut("overdue").unwrap().keep = Some(Duration::from_secs(DAY));
        let err = compile(&schedules).unwrap_err();
        assert!(
            err.contains("schedules.overdue.keep: not an option of job shipment.overdue"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_option_and_a_bad_cron_name_their_keys() {
        let mut schedules = default_schedules();
        schedules.get_mut("stalled").unwrap().after = None;
        schedules.get_mut("csat").unwrap().cron = "every tuesday".into();
        let err = compile(&schedules).unwrap_err();
        assert!(
            err.contains("schedules.stalled.after: required by job order.stalled"),
            "{err}"
        );
        assert!(err.contains("schedules.csat.cron:"), "{err}");
    }

    #[test]
    fn retention_shorter_than_the_risk_history_is_refused() {
        let mut schedules = default_schedules();
        schedules.get_mut("retention").unwrap().keep = Some(Duration::from_secs(30 * DAY));
        let err = compile(&schedules).unwrap_err();
        assert!(err.contains("schedules.retention.keep: at least"), "{err}");
    }

    #[test]
    fn a_disabled_schedule_is_checked_but_not_run() {
        let mut schedules = default_schedules();
        schedules.get_mut("retention").unwrap().enabled = false;
        assert_eq!(compile(&schedules).unwrap().len(), 4);
        schedules.get_mut("retention").unwrap().cron = "nonsense".into();
        assert!(compile(&schedules).is_err());
    }
}
