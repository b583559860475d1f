//! Typed settings: embedded defaults, then `forewarn.toml`, then `FOREWARN_<SECTION>__<KEY>`
//! environment variables, each layer overriding the one before (SPEC §5). Each section's
//! settings live beside the code they configure (`intake::NatsSettings`,
//! `gateway::twilio::TwilioConfig`, …); this file only assembles and layers them.
//!
//! Every struct refuses unknown keys, so a typo (`[nats] ulr = …`) stops forewarn at start with
//! the key's name instead of being silently ignored. Secrets never live here: gateway settings
//! name the environment variable or file that holds them.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The environment variable that names the config file, like `--config`.
pub const CONFIG_ENV: &str = "FOREWARN_CONFIG";
/// The file read from the working directory when no path is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "forewarn.toml";
/// Prefix of the variables that override single keys.
const ENV_PREFIX: &str = "FOREWARN_";

/// Why the settings could not be loaded. The message names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {0} (--config or FOREWARN_CONFIG) does not exist")]
    Missing(PathBuf),
    /// A key is unknown or its value is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// All of forewarn's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[nats]`: where events come from.
    pub nats: crate::intake::NatsSettings,
    /// `[intake]`: how events are pulled.
    pub intake: crate::intake::IntakeSettings,
    /// `[database]`: where state lives.
    pub database: crate::store::DatabaseSettings,
    /// `[paths]`: the CX teams' files.
    pub paths: PathSettings,
    /// `[outbox]`: how messages are dispatched.
    pub outbox: crate::outbox::OutboxSettings,
    /// `[gateways.<channel>]`: which provider sends each channel.
    pub gateways: crate::gateway::GatewaySettings,
    /// `[http]`: health and metrics endpoint.
    pub http: crate::http::HttpSettings,
    /// `[costs]`: prices for `forewarn simulate`'s estimates.
    pub costs: crate::simulate::CostSettings,
    /// `[console]`: the browser console for CX and on-call.
    pub console: crate::console::ConsoleSettings,
    /// `[log]`: log format and level.
    pub log: crate::telemetry::LogSettings,
    /// `[render]`: limits on rendered messages.
    pub render: crate::render::RenderSettings,
    /// `[pacing.<channel>]`: how fast each channel's gateway is called.
    pub pacing: crate::gateway::PacingSettings,
    /// `[quiet_hours]`: when messages wait for a decent hour, per category, channel and region.
    pub quiet_hours: crate::policy::QuietHoursSettings,
    /// `[caps]`: how many marketing messages a customer may get in a rolling window.
    pub caps: crate::policy::CapSettings,
    /// `[scheduler]`: what all schedules share (the lease, where synthetic events go).
    pub scheduler: crate::schedule::SchedulerSettings,
    /// `[schedules.<name>]`: cron jobs — overdue parcels, stalled orders, CSAT, release of
    /// held messages, retention.
    pub schedules: std::collections::BTreeMap<String, crate::schedule::ScheduleSettings>,
    /// `[incidents]`: when customers hear an incident's updates, how its fan-out pages.
    pub incidents: crate::incident::IncidentSettings,
    /// `[relay]`: where outreach events are published for the shop's other systems.
    pub relay: crate::relay::RelaySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nats: Default::default(),
            intake: Default::default(),
            database: Default::default(),
            paths: PathSettings::default(),
            outbox: Default::default(),
            gateways: Default::default(),
            http: Default::default(),
            console: Default::default(),
            costs: Default::default(),
            log: Default::default(),
            render: Default::default(),
            pacing: Default::default(),
            quiet_hours: Default::default(),
            caps: Default::default(),
            scheduler: Default::default(),
            // One schedule per job; a file changes keys of these or adds its own.
            schedules: crate::schedule::settings::default_schedules(),
            incidents: Default::default(),
            relay: Default::default(),
        }
    }
}

/// `[paths]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSettings {
    /// Folder of `*.toml` rule files.
    pub rules: PathBuf,
    /// Folder of `<template>/<part>[.<locale>].hbs` files.
    pub templates: PathBuf,
    /// Where the sandbox gateway writes `<channel>.jsonl`.
    pub outbox: PathBuf,
    /// Sample events (`*.jsonl`) that `check` renders every template against.
    pub examples: PathBuf,
}

impl Default for PathSettings {
    fn default() -> Self {
        PathSettings {
            rules: "rules".into(),
            templates: "templates".into(),
            outbox: "outbox".into(),
            examples: "examples/events".into(),
        }
    }
}

impl Settings {
    /// Loads settings: defaults, then the file (`explicit`, else `FOREWARN_CONFIG`, else
    /// `./forewarn.toml` if present), then `FOREWARN_<SECTION>__<KEY>` variables.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let settings = Self::load_unchecked(explicit)?;
        settings.quiet_hours()?;
        settings.schedules()?;
        Ok(settings)
    }

    /// The settings as written, every key known and typed, but quiet hours and schedules not
    /// compiled yet: `check` compiles those itself, to report each mistake with the rest.
    pub fn load_unchecked(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = match Self::source_file(explicit) {
            Some(path) if !path.exists() => return Err(ConfigError::Missing(path)),
            file => file,
        };
        Self::figment(file.as_deref())
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))
    }

    /// Where `key` (`schedules.overdue.cron`) is written in the config `file`, as
    /// `file:line:col`, or as far as the file spells it out (its table, else the file itself).
    pub fn position_of(file: &Path, key: &str) -> String {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut at = 0;
        if let Ok(root) = toml::de::DeTable::parse(&text) {
            let mut table = Some(root.get_ref());
            for name in key.split('.') {
                let Some((found, value)) =
                    table.and_then(|t| t.iter().find(|(k, _)| k.get_ref().as_ref() == name))
                else {
                    break;
                };
                at = found.span().start;
                table = match value.get_ref() {
                    toml::de::DeValue::Table(inner) => Some(inner),
                    _ => None,
                };
            }
        }
        let before = &text[..at.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        format!("{}:{line}:{col}", file.display())
    }

    /// Quiet hours and caps, compiled.
    pub fn policy(&self) -> Result<crate::policy::Policy, ConfigError> {
        Ok(crate::policy::Policy {
            quiet: self.quiet_hours()?,
            caps: self.caps,
            incident_updates: self.incidents.updates,
        })
    }

    /// The enabled schedules, compiled; an invalid one names its key.
    pub fn schedules(&self) -> Result<Vec<crate::schedule::Schedule>, ConfigError> {
        crate::schedule::settings::compile(&self.schedules).map_err(ConfigError::Invalid)
    }

    /// The compiled quiet hours; an invalid window names its key.
    pub fn quiet_hours(&self) -> Result<crate::policy::QuietHours, ConfigError> {
        crate::policy::QuietHours::new(&self.quiet_hours).map_err(ConfigError::Invalid)
    }

    /// The file [`Settings::load`] reads: `explicit`, else `FOREWARN_CONFIG`, else
    /// `./forewarn.toml` if it exists; `None` means the embedded defaults.
    pub fn source_file(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()))
    }

    fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Forewarn's own default secret variables share the prefix; they are not settings.
        figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&[
            "config",
            "webhook_secret",
            "unsubscribe_secret",
        ]))
    }

    /// The sandbox gateway's folder.
    pub fn sandbox_dir(&self) -> &Path {
        &self.paths.outbox
    }
}

/// One line per problem: the key as users write it (`outbox.batch_size`), what is wrong, and
/// where the value came from — the file, or the exact environment variable to fix.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let path: Vec<String> = e
                .path
                .iter()
                .filter(|p| p.as_str() != "default")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") && !path.is_empty() => format!(
                    " (from {ENV_PREFIX}{})",
                    path.iter()
                        .map(|p| p.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join("__")
                ),
                Some(m) => m
                    .source
                    .as_ref()
                    .map(|s| format!(" (in {s})"))
                    .unwrap_or_default(),
                None => String::new(),
            };
            if path.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{}: {}{source}", path.join("."), e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its own error type.
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::gateway::GatewayConfig;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    #[test]
    fn no_file_means_the_embedded_defaults() {
        // The jail isolates the environment from tests that set FOREWARN_* variables.
        figment::Jail::expect_with(|_| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.nats.url, "nats://127.0.0.1:4222");
            assert_eq!(settings.database.url, "sqlite://forewarn.db");
            assert_eq!(settings.gateways.sms, GatewayConfig::Sandbox);
            Ok(())
        });
    }

    #[test]
    fn forewarns_own_default_secret_variables_are_not_read_as_settings() {
        // Their names share the prefix; before, setting the webhook gateway's default secret
        // variable stopped forewarn with "unknown field: webhook_secret".
        figment::Jail::expect_with(|jail| {
            jail.set_env("FOREWARN_WEBHOOK_SECRET", "0123456789abcdef0123");
            jail.set_env(
                "FOREWARN_UNSUBSCRIBE_SECRET",
                "0123456789abcdef0123456789abcdef",
            );
            jail.set_env("FOREWARN_HTTP__PUBLIC_URL", "https://forewarn.example");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.http.public_url,
                Some(crate::http::PublicUrl::parse("https://forewarn.example").unwrap())
            );
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let f = file("[nats]\nulr = \"nats://x\"\n");
        let err = describe(
            Settings::figment(Some(f.path()))
                .extract::<Settings>()
                .unwrap_err(),
        );
        assert!(err.contains("ulr"), "{err}");
        assert!(err.contains("nats"), "{err}");
    }

    #[test]
    fn a_bad_value_is_refused_with_its_key() {
        let f = file("[outbox]\nbatch_size = \"many\"\n");
        let err = describe(
            Settings::figment(Some(f.path()))
                .extract::<Settings>()
                .unwrap_err(),
        );
        assert!(err.contains("outbox.batch_size"), "{err}");
    }

    #[test]
    fn an_unknown_gateway_kind_is_refused() {
        let f = file("[gateways.sms]\nkind = \"pigeon\"\n");
        let err = describe(
            Settings::figment(Some(f.path()))
                .extract::<Settings>()
                .unwrap_err(),
        );
        assert!(err.contains("pigeon"), "{err}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "forewarn.toml",
                "[nats]\nurl = \"nats://file:4222\"\n[outbox]\nretry_base = \"5s\"\n",
            )?;
            jail.set_env("FOREWARN_NATS__URL", "nats://env:4222");
            jail.set_env("FOREWARN_OUTBOX__BATCH_SIZE", "42");
            jail.set_env("FOREWARN_CONFIG", "forewarn.toml");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.nats.url, "nats://env:4222");
            assert_eq!(settings.outbox.batch_size, 42);
            assert_eq!(settings.outbox.retry_base, Duration::from_secs(5));
            Ok(())
        });
    }

    #[test]
    fn a_schedule_is_changed_by_the_file_and_the_environment_and_checked_at_load() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "forewarn.toml",
                "[schedules.overdue]\ncron = \"*/5 * * * *\"\n\n[schedules.express]\njob = \"shipment.overdue\"\ncron = \"@hourly\"\ngrace = \"1h\"\nlookback = \"2d\"\n",
            )?;
            jail.set_env("FOREWARN_CONFIG", "forewarn.toml");
            jail.set_env("FOREWARN_SCHEDULES__OVERDUE__GRACE", "2h");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            let overdue = &settings.schedules["overdue"];
            assert_eq!(overdue.cron, "*/5 * * * *");
            assert_eq!(overdue.grace, Some(Duration::from_secs(7200)));
            // The other embedded keys stay, and the added schedule joins them.
            assert_eq!(overdue.lookback, Some(Duration::from_secs(14 * 24 * 3600)));
            assert_eq!(settings.schedules().map_err(|e| e.to_string())?.len(), 6);

            jail.set_env("FOREWARN_SCHEDULES__RETENTION__CRON", "whenever");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("schedules.retention.cron: `whenever`"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/forewarn.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(_)));
    }
}

/// The README's configuration table against the code: every key the code accepts is listed,
/// nothing else is, and each listed default is the one the code applies.
#[cfg(test)]
mod readme {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::Settings;

    /// Rows documented elsewhere in the README, in tables of their own.
    const ELSEWHERE: [&str; 3] = [
        "schedules.<name>.*",
        "quiet_hours.regions.<region>.<key>",
        "costs.sms_per_segment.<prefix>",
    ];

    /// `(key, default)` of each row of the README's "Configuration" table, with rows such as
    /// `` `outbox.retry_base` / `retry_max` `` spelled out into one pair per key.
    fn documented() -> BTreeMap<String, String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let section = readme
            .split("\n## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Configuration section");
        let mut rows = BTreeMap::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let keys: Vec<&str> = cells[0]
                .split(" / ")
                .map(|k| k.trim().trim_matches('`'))
                .collect();
            let defaults: Vec<&str> = cells[1]
                .split(" / ")
                .map(|d| d.trim().trim_matches('`'))
                .collect();
            let first = keys[0];
            let parent = first.rsplit_once('.').map_or("", |(p, _)| p);
            for (i, key) in keys.iter().enumerate() {
                let key = if i == 0 {
                    first.to_owned()
                } else if key.starts_with('.') {
                    format!("{parent}{key}")
                } else if key.starts_with('_') {
                    format!("{}{key}", &first[..first.rfind('_').expect("a suffix")])
                } else if key.contains('.') {
                    (*key).to_owned()
                } else {
                    format!("{parent}.{key}")
                };
                let default = match defaults.len() {
                    1 => defaults[0],
                    n if n == keys.len() => defaults[i],
                    n => panic!("`{line}`: {} keys but {n} defaults", keys.len()),
                };
                rows.insert(key, default.to_owned());
            }
        }
        rows
    }

    /// Every key of the default settings with its value; a gateway is one key (its `kind`
    /// table), and per-channel pacing keys are written once for `<channel>`.
    fn in_code() -> BTreeMap<String, Value> {
        fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
            match value {
                Value::Object(map) if !prefix.starts_with("gateways.") || prefix == "gateways" => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                _ => {
                    let key = match prefix.split('.').collect::<Vec<_>>().as_slice() {
                        ["pacing", _, rest @ ..] => format!("pacing.<channel>.{}", rest.join(".")),
                        _ => prefix.to_owned(),
                    };
                    out.insert(key, value.clone());
                }
            }
        }
        let mut out = BTreeMap::new();
        let value = serde_json::to_value(Settings::default()).expect("settings serialise");
        walk("", &value, &mut out);
        out.retain(|k, _| !k.starts_with("schedules.") && !k.starts_with("quiet_hours.regions"));
        out
    }

    /// Whether the README's `written` default says `value`.
    fn agrees(written: &str, value: &Value) -> bool {
        if let Value::String(text) = value {
            let both = (
                humantime::parse_duration(written),
                humantime::parse_duration(text),
            );
            if let (Ok(a), Ok(b)) = both {
                return a == b;
            }
        }
        match toml::from_str::<toml::Table>(&format!("v = {written}")) {
            Ok(table) => serde_json::to_value(&table["v"]).ok().as_ref() == Some(value),
            Err(_) => match value {
                Value::Null => written == "none",
                Value::String(text) => text == written,
                _ => false,
            },
        }
    }

    #[test]
    fn the_readme_lists_every_configuration_key_with_the_default_the_code_applies() {
        let documented = documented();
        let code = in_code();
        let missing: Vec<&String> = code
            .keys()
            .filter(|k| !documented.contains_key(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "keys the README does not list: {missing:?}"
        );
        let unknown: Vec<&String> = documented
            .keys()
            .filter(|k| !code.contains_key(*k) && !ELSEWHERE.contains(&k.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "README keys the code does not accept: {unknown:?}"
        );
        let wrong: Vec<String> = code
            .iter()
            .filter(|(k, v)| !agrees(&documented[*k], v))
            .map(|(k, v)| format!("{k}: README `{}`, code {v}", documented[k]))
            .collect();
        assert!(
            wrong.is_empty(),
            "defaults that differ:\n{}",
            wrong.join("\n")
        );
    }
}
