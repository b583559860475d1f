//! What CX teams author — rules and templates — loaded and validated as one set, and reloaded
//! while forewarn runs.
//!
//! A reload (SIGHUP, or a change under `paths.rules` / `paths.templates` seen by a poll) builds
//! and validates the whole new set first. Only a valid set replaces the running one; a bad one
//! is refused with every error logged, and the last good set keeps serving. The version of the
//! set in use is a metric, so a dashboard shows which edit is live.

pub mod examples;
pub mod preview;
pub mod review;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use tokio::sync::watch;

use crate::config::Settings;
use crate::metrics as m;
use crate::render::Templates;
use crate::risk::RiskModel;
use crate::rules::RuleSet;
use crate::shutdown::Shutdown;
use examples::Examples;

/// Rules, the templates they use and the risk model they read, validated together.
#[derive(Debug)]
pub struct Authoring {
    /// Loaded rules.
    pub rules: RuleSet,
    /// Loaded templates.
    pub templates: Templates,
    /// `rules/risk.toml`, or the embedded default.
    pub risk: RiskModel,
    /// 1 for the set loaded at start, one more for each accepted reload.
    pub version: u64,
}

/// Loads and cross-checks templates and rules, and tries every rule on the example events
/// (`paths.examples`, see [`review`]): the set `run` starts with and a reload swaps in. Every
/// problem is returned, each once, as `file:line:col: message` — the lines `forewarn check`
/// prints.
pub fn load(settings: &Settings) -> Result<Authoring, Vec<String>> {
    let (authoring, mut problems) = load_partial(settings);
    match Examples::read(&settings.paths.examples) {
        Ok(examples) => {
            let found = review::review(
                &authoring,
                &examples,
                settings.render.sms_max_segments,
                chrono::Utc::now(),
            );
            problems.extend(found.problems.lines());
        }
        Err(e) => problems.push(format!(
            "{}:1:1: cannot read the examples: {e:#}",
            settings.paths.examples.display()
        )),
    }
    if problems.is_empty() {
        Ok(authoring)
    } else {
        Err(problems)
    }
}

/// Everything that loads, and the load errors of the rest — templates handlebars refuses,
/// rules that do not validate, a risk model with mistakes — so one run reports them all. With
/// errors, the set is for reporting only (a broken template is listed but cannot render; a bad
/// risk model is replaced by the embedded one).
pub fn load_partial(settings: &Settings) -> (Authoring, Vec<String>) {
    let (templates, template_errors) = Templates::load_partial(&settings.paths.templates);
    let templates = configured(templates, settings);
    let mut problems: Vec<String> = template_errors.iter().map(ToString::to_string).collect();
    let (rules, rule_errors) = RuleSet::load_partial(&settings.paths.rules, &templates);
    problems.extend(rule_errors.iter().map(ToString::to_string));
    let risk = RiskModel::load(&settings.paths.rules).unwrap_or_else(|errors| {
        problems.extend(errors.iter().map(ToString::to_string));
        RiskModel::embedded()
    });
    let authoring = Authoring {
        rules,
        templates,
        risk,
        version: 1,
    };
    (authoring, problems)
}

/// The templates alone, configured as forewarn renders them (default locale, the Korean
/// advertising label): for `preview`, which needs no rules.
pub fn load_templates(settings: &Settings) -> Result<Templates, Vec<String>> {
    let templates = Templates::load(&settings.paths.templates)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok(configured(templates, settings))
}

/// Templates rendering as forewarn renders them: the default locale, the Korean advertising
/// label, and `links.unsubscribe` when forewarn serves the links (a missing secret is refused
/// at start, by `run`; a tool without it renders no link).
fn configured(templates: Templates, settings: &Settings) -> Templates {
    templates
        .with_default_locale(settings.render.default_locale.clone())
        .with_korean_ad_label(settings.render.korean_ad_label())
        .with_unsubscribe(
            crate::feedback::UnsubscribeLinks::from_settings(settings)
                .ok()
                .flatten()
                .map(Arc::new),
        )
}

/// The set in use; cheap to clone, read once per batch.
pub type AuthoringHandle = watch::Receiver<Arc<Authoring>>;

/// How often the folders are polled for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Starts serving `initial`; returns the handle readers use and the reloader to run.
pub fn serve(initial: Authoring, settings: &Settings) -> (AuthoringHandle, Reloader) {
    gauge!(m::AUTHORING_VERSION).set(initial.version as f64);
    let version = initial.version;
    let (tx, rx) = watch::channel(Arc::new(initial));
    let reloader = Reloader {
        tx,
        settings: settings.clone(),
        version,
        fingerprint: fingerprint(&[&settings.paths.rules, &settings.paths.templates]),
    };
    (rx, reloader)
}

/// Watches for SIGHUP and file changes and swaps in valid new sets.
pub struct Reloader {
    tx: watch::Sender<Arc<Authoring>>,
    settings: Settings,
    version: u64,
    fingerprint: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

impl Reloader {
    /// Runs until shutdown.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut hangups = hangup_signals();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = shutdown.wait() => return,
                _ = next_hangup(&mut hangups) => true,
                _ = tick.tick() => false,
            };
            let now = fingerprint(&[&self.settings.paths.rules, &self.settings.paths.templates]);
            if forced || now != self.fingerprint {
                self.fingerprint = now;
                self.reload();
            }
        }
    }

    /// Loads the folders again; swaps the set in only if it is valid.
    pub fn reload(&mut self) {
        match load(&self.settings) {
            Ok(mut authoring) => {
                self.version += 1;
                authoring.version = self.version;
                gauge!(m::AUTHORING_VERSION).set(self.version as f64);
                tracing::info!(
                    version = self.version,
                    rules = authoring.rules.len(),
                    "Rules and templates reloaded."
                );
                let _ = self.tx.send(Arc::new(authoring));
            }
            Err(errors) => {
                counter!(m::AUTHORING_REJECTED).increment(1);
                for error in &errors {
                    tracing::error!(%error, "Reload refused.");
                }
                tracing::error!(
                    errors = errors.len(),
                    version = self.version,
                    "The new rules or templates have errors; the last good set keeps serving."
                );
            }
        }
    }
}

/// Every file below `dirs` with its modification time and size, sorted: a change to any of
/// them, an added or a removed file changes the fingerprint.
fn fingerprint(dirs: &[&Path]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(path),
                Ok(meta) => files.push((path, meta.modified().ok(), meta.len())),
                Err(_) => {}
            }
        }
    }
    files.sort();
    files
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signals() -> Hangups {
    None
}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) {
    match hangups {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}
