//! `forewarn check`: everything a CX author can get wrong, found before a customer sees it.
//!
//! Validates the config, every template and every rule, then tries each rule on every example
//! event of its types ([`crate::authoring::review`]) — the same checks `run` and a reload make
//! before a set goes live. Every problem is reported in one run, each once, at its
//! `file:line:col`.

use std::path::Path;

use chrono::Utc;

use crate::authoring::examples::Examples;
use crate::authoring::review::review;
use crate::cli::output::say;
use crate::config::Settings;

/// The default opt-out line's number: fine for a demo, wrong for a real sender.
const PLACEHOLDER_OPT_OUT: &str = "080-000-0000";

/// Runs every check; prints one `file:line:col: message` line per problem.
pub(super) async fn execute(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = match Settings::load_unchecked(config) {
        Ok(settings) => settings,
        Err(e) => {
            say!(
                "{}: {e}",
                Settings::source_file(config).map_or("config".into(), |p| p.display().to_string())
            );
            anyhow::bail!("the configuration is invalid");
        }
    };
    let mut problems = config_problems(&settings, config);
    let (authoring, load_problems) = crate::authoring::load_partial(&settings);
    problems.extend(load_problems);
    let examples = Examples::read(&settings.paths.examples)?;
    let found = review(
        &authoring,
        &examples,
        settings.render.sms_max_segments,
        Utc::now(),
    );
    problems.extend(found.problems.lines());
    if !problems.is_empty() {
        for problem in &problems {
            say!("{problem}");
        }
        anyhow::bail!("{} problem(s) found", problems.len());
    }
    let renders = found.renders;

    if settings
        .render
        .korean_ad_opt_out
        .contains(PLACEHOLDER_OPT_OUT)
    {
        say!(
            "warning: render.korean_ad_opt_out is still the placeholder `{}`; advertising SMS \
             to Korean phones must carry your own free opt-out number",
            settings.render.korean_ad_opt_out
        );
    }
    // A schedule whose events no rule reads sweeps for nothing; a rule on a synthetic type no
    // enabled schedule emits waits for a backend that may never send it.
    let schedules = settings.schedules()?;
    for schedule in &schedules {
        if let Some(kind) = schedule.job.emits() {
            if authoring.rules.candidates(kind).next().is_none() {
                say!(
                    "warning: schedules.{} emits {kind}, but no rule reacts to it: nobody hears",
                    schedule.name
                );
            }
        }
    }
    for rule in authoring.rules.rules() {
        for kind in &rule.on {
            let synthetic = crate::schedule::settings::JobName::ALL
                .iter()
                .any(|job| job.emits() == Some(*kind));
            if synthetic && !schedules.iter().any(|s| s.job.emits() == Some(*kind)) {
                say!(
                    "warning: rule {} reacts to {kind}, which no enabled schedule emits (a \
                     backend may publish it)",
                    rule.id
                );
            }
        }
    }
    let risk = authoring.risk.file.as_ref().map_or_else(
        || "risk models embedded (no risk.toml)".to_owned(),
        |file| format!("risk models from {}", file.display()),
    );
    say!(
        "ok: config, {} rules, {} templates, {risk}; {} renders of {} example events checked; \
         {} schedules ({})",
        authoring.rules.len(),
        authoring.templates.names().count(),
        renders,
        examples.events.len(),
        schedules.len(),
        schedules
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Quiet hours and schedules as `check` reports them: each mistake at the key it is about.
fn config_problems(settings: &Settings, config: Option<&Path>) -> Vec<String> {
    let file = Settings::source_file(config);
    let mut errors = crate::schedule::settings::compile_each(&settings.schedules).1;
    if let Err(joined) = crate::policy::QuietHours::new(&settings.quiet_hours) {
        // One line per key: each starts `quiet_hours.`.
        for (i, one) in joined.split("; quiet_hours").enumerate() {
            errors.push(if i == 0 {
                one.to_owned()
            } else {
                format!("quiet_hours{one}")
            });
        }
    }
    errors
        .into_iter()
        .map(|error| {
            let key = error.split(": ").next().unwrap_or_default();
            let at = match &file {
                Some(file) => Settings::position_of(file, key),
                None => "(environment)".into(),
            };
            format!("{at}: {error}")
        })
        .collect()
}
