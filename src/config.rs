//! Typed settings: embedded defaults, then `forewarn.toml`, then `FOREWARN_<SECTION>__<KEY>`
//! environment variables, each layer overriding the one before (SPEC §5).
//!
//! Every struct refuses unknown keys, so a typo (`[nats] ulr = …`) stops forewarn at start with
//! the key's name instead of being silently ignored. Secrets never live here: gateway settings
//! name the environment variable or file that holds them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[error("config file {0} does not exist")]
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
    pub nats: NatsSettings,
    /// `[intake]`: how events are pulled.
    pub intake: IntakeSettings,
    /// `[database]`: where state lives.
    pub database: DatabaseSettings,
    /// `[paths]`: the CX teams' files.
    pub paths: PathSettings,
    /// `[outbox]`: how messages are dispatched.
    pub outbox: OutboxSettings,
    /// `[gateways.<channel>]`: which provider sends each channel.
    pub gateways: GatewaySettings,
    /// `[http]`: health and metrics endpoint.
    pub http: HttpSettings,
    /// `[log]`: log format and level.
    pub log: LogSettings,
    /// `[render]`: limits on rendered messages.
    pub render: RenderSettings,
    /// `[pacing.<channel>]`: how fast each channel's gateway is called.
    pub pacing: PacingSettings,
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nats: NatsSettings::default(),
            intake: IntakeSettings::default(),
            database: DatabaseSettings::default(),
            paths: PathSettings::default(),
            outbox: OutboxSettings::default(),
            gateways: GatewaySettings::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            render: RenderSettings::default(),
            pacing: PacingSettings::default(),
            quiet_hours: Default::default(),
            caps: Default::default(),
            scheduler: Default::default(),
            // One schedule per job; a file changes keys of these or adds its own.
            schedules: crate::schedule::settings::default_schedules(),
            incidents: Default::default(),
        }
    }
}

/// `[pacing]`: per-channel limits, to stay inside each provider's rate limits and keep a burst
/// (an outage notice to a million customers) from being throttled into retries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingSettings {
    /// `[pacing.sms]`.
    pub sms: Pacing,
    /// `[pacing.email]`.
    pub email: Pacing,
    /// `[pacing.push]`.
    pub push: Pacing,
}

/// Limits for one gateway. None set means as fast as `outbox.concurrency` allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pacing {
    /// Sustained requests per second (a token bucket).
    pub rate_per_second: Option<std::num::NonZeroU32>,
    /// Requests allowed at once above the sustained rate. Default: one second's worth.
    pub burst: Option<std::num::NonZeroU32>,
    /// Requests in flight to this gateway at most.
    pub concurrency: Option<std::num::NonZeroUsize>,
    /// Consecutive passing failures (timeouts, 5xx, 429) that open the circuit: the gateway
    /// is left alone for `breaker_cooldown`, then probed with one request. Default 5.
    pub breaker_failures: Option<std::num::NonZeroU32>,
    /// How long an open circuit waits before probing. Default 30s.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Option<Duration>,
}

/// `[nats]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL. Default `nats://127.0.0.1:4222`.
    pub url: String,
    /// The events stream, created if missing. Default `FOREWARN_EVENTS`.
    pub stream: String,
    /// Subjects the events stream captures. Default `["events.>"]`.
    pub subjects: Vec<String>,
    /// Durable pull consumer shared by every forewarn process. Default `forewarn`.
    pub consumer: String,
    /// Stream that keeps dead letters. Default `FOREWARN_DLQ`.
    pub dlq_stream: String,
    /// Dead letters go to `<dlq_subject_prefix>.<reason>`. Default `forewarn.dlq`.
    pub dlq_subject_prefix: String,
    /// Removed from each event's `type` before lookup, e.g. `com.shop.`. Default none.
    pub type_prefix: Option<String>,
    /// File with NATS credentials (`.creds`), if the server needs them. Default none.
    pub credentials_file: Option<PathBuf>,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            stream: "FOREWARN_EVENTS".into(),
            subjects: vec!["events.>".into()],
            consumer: "forewarn".into(),
            dlq_stream: "FOREWARN_DLQ".into(),
            dlq_subject_prefix: "forewarn.dlq".into(),
            type_prefix: None,
            credentials_file: None,
        }
    }
}

/// `[intake]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Most events decided and committed in one database transaction. Larger batches amortise
    /// the commit; the batch is whatever has arrived, so a quiet stream is not delayed. Default 2000.
    pub batch_size: usize,
    /// How long the server waits for an ack before redelivering. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Most unacknowledged events per consumer, across all processes: bounds in-flight work.
    /// Keep it at least 6 × `batch_size` per process (two batches buffered, three in the
    /// stages): at the limit the server stops delivering and intake stalls. Default 50000.
    pub max_ack_pending: i64,
    /// Delay before a batch that failed (database unavailable) is redelivered. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            batch_size: 2000,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 50_000,
            retry_delay: Duration::from_secs(2),
        }
    }
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` (created if missing). Default `sqlite://forewarn.db`.
    pub url: String,
    /// Connections in the pool. Default 4.
    pub max_connections: u32,
    /// How long a statement waits for another writer's lock. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://forewarn.db".into(),
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// `[paths]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSettings {
    /// Folder of `*.toml` rule files. Default `rules`.
    pub rules: PathBuf,
    /// Folder of `<template>/<part>[.<locale>].hbs` files. Default `templates`.
    pub templates: PathBuf,
    /// Where the sandbox gateway writes `<channel>.jsonl`. Default `outbox`.
    pub outbox: PathBuf,
    /// Sample events (`*.jsonl`) that `check` renders every template against. Default
    /// `examples/events`.
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

/// `[outbox]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Run the dispatcher in this process. Turn off for intake-only processes. Default true.
    pub dispatch: bool,
    /// Most messages claimed at once. Default 500.
    pub batch_size: usize,
    /// Most messages in flight to gateways at once. Default 64.
    pub concurrency: usize,
    /// How often an idle dispatcher looks for due messages (new outreach wakes it at once in
    /// the same process). Default 500 ms.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a claim holds before another dispatcher may take the message over, treating
    /// the attempt as ambiguous. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
    /// Attempts per channel before it is given up (and the next channel tried). Default 8.
    pub max_attempts: u32,
    /// A message not delivered this long after it was queued is given up rather than retried:
    /// news of a delay that arrives days later helps nobody. Default 24h.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// First retry delay; doubled each attempt, with full jitter. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            dispatch: true,
            batch_size: 500,
            concurrency: 64,
            poll_interval: Duration::from_millis(500),
            claim_lease: Duration::from_secs(60),
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// `[gateways]`: one provider per channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// `[gateways.sms]`. Default sandbox.
    pub sms: GatewayConfig,
    /// `[gateways.email]`. Default sandbox.
    pub email: GatewayConfig,
    /// `[gateways.push]`. Default sandbox.
    pub push: GatewayConfig,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            sms: GatewayConfig::Sandbox,
            email: GatewayConfig::Sandbox,
            push: GatewayConfig::Sandbox,
        }
    }
}

/// A gateway, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum GatewayConfig {
    /// Appends each message to `<paths.outbox>/<channel>.jsonl`; needs no credentials.
    Sandbox,
    /// Twilio's Messages API (SMS only).
    Twilio(TwilioConfig),
    /// SendGrid's v3 Mail Send API (e-mail only).
    Sendgrid(SendgridConfig),
    /// A signed JSON POST to your own endpoint (any channel).
    Webhook(WebhookConfig),
    /// An SMTP relay (e-mail only).
    Smtp(SmtpConfig),
    /// Firebase Cloud Messaging HTTP v1 (push only).
    Fcm(FcmConfig),
}

/// `[gateways.push] kind = "fcm"`. Credentials come from a service-account key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// API root. Default `https://fcm.googleapis.com`.
    #[serde(default = "FcmConfig::default_base_url")]
    pub base_url: String,
    /// The Firebase project.
    pub project_id: String,
    /// The service-account JSON key file (its `token_uri` is where tokens are fetched).
    pub credentials_file: PathBuf,
    /// A request not answered in this time is retried. Default 10s.
    #[serde(default = "TwilioConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl FcmConfig {
    fn default_base_url() -> String {
        "https://fcm.googleapis.com".into()
    }
}

/// `[gateways.email] kind = "smtp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain; add `?tls=required` for STARTTLS) or `smtps://host:port`.
    /// No credentials here: see `username` and `password_env`.
    pub url: String,
    /// Sender, `Name <address>`.
    pub from: String,
    /// SMTP user, if the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the SMTP password. Default `SMTP_PASSWORD`.
    #[serde(default = "SmtpConfig::default_password_env")]
    pub password_env: String,
    /// One-click unsubscribe URL for marketing mail; `{key}` becomes the outreach key (no
    /// personal data in the link). Marketing mail is refused without it.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// A conversation not finished in this time is retried. Default 10s.
    #[serde(default = "TwilioConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl SmtpConfig {
    fn default_password_env() -> String {
        "SMTP_PASSWORD".into()
    }
}

/// `kind = "webhook"`: each message is POSTed as JSON to `url`, signed with HMAC-SHA256 using
/// the secret in the environment variable `secret_env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint.
    pub url: String,
    /// Name of the environment variable holding the shared secret. Default
    /// `FOREWARN_WEBHOOK_SECRET`.
    #[serde(default = "WebhookConfig::default_secret_env")]
    pub secret_env: String,
    /// A request not answered in this time is retried. Default 10s.
    #[serde(default = "TwilioConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl WebhookConfig {
    fn default_secret_env() -> String {
        "FOREWARN_WEBHOOK_SECRET".into()
    }
}

/// `[gateways.email] kind = "sendgrid"`. The API key is read from the environment variable
/// named by `api_key_env`, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    /// API root. Default `https://api.sendgrid.com`.
    #[serde(default = "SendgridConfig::default_base_url")]
    pub base_url: String,
    /// Name of the environment variable holding the API key. Default `SENDGRID_API_KEY`.
    #[serde(default = "SendgridConfig::default_key_env")]
    pub api_key_env: String,
    /// Sender, `Name <address>` or a bare address, from a domain verified in SendGrid.
    pub from: String,
    /// One-click unsubscribe URL for marketing mail; `{key}` becomes the outreach key.
    /// Marketing mail is refused without it.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
    /// A request not answered in this time is retried. Default 10s.
    #[serde(default = "TwilioConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl SendgridConfig {
    fn default_base_url() -> String {
        "https://api.sendgrid.com".into()
    }
    fn default_key_env() -> String {
        "SENDGRID_API_KEY".into()
    }
}

/// `[gateways.sms] kind = "twilio"`. The auth token is read from the environment variable
/// named by `auth_token_env`, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API root; tests and staging point it at a local server. Default
    /// `https://api.twilio.com`.
    #[serde(default = "TwilioConfig::default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`): not a secret, it names the account in the URL.
    pub account_sid: String,
    /// Name of the environment variable holding the auth token. Default `TWILIO_AUTH_TOKEN`.
    #[serde(default = "TwilioConfig::default_token_env")]
    pub auth_token_env: String,
    /// Sender: an E.164 number or a messaging service's number.
    pub from: String,
    /// URL Twilio posts delivery status to, if any.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// A request not answered in this time is retried. Default 10s.
    #[serde(default = "TwilioConfig::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl TwilioConfig {
    fn default_base_url() -> String {
        "https://api.twilio.com".into()
    }
    fn default_token_env() -> String {
        "TWILIO_AUTH_TOKEN".into()
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address for `/healthz`, `/readyz` and `/metrics`. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Serve HTTP at all. Default true.
    pub enabled: bool,
    /// Name of the environment variable holding the bearer token the `/v1/` API (discount
    /// codes) requires. Unset: the API is open to whoever reaches `listen`.
    pub api_token_env: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            api_token_env: None,
        }
    }
}

/// `[render]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSettings {
    /// Most SMS segments one message may take; `check` refuses a template over it (each segment
    /// is billed, and long texts arrive split on older phones). Default 3.
    pub sms_max_segments: usize,
    /// The language of template files without a locale suffix (`sms.hbs`): dates and money in
    /// them read this way when a customer's own language has no file. Default `en-US`.
    pub default_locale: crate::domain::Locale,
    /// Sender name an advertising SMS to a Korean phone carries after `(광고)`, unless the text
    /// already names it. Default empty (the shipped templates start with `[슈즈샵]`).
    pub korean_ad_sender: String,
    /// The free opt-out line that ends an advertising SMS to a Korean phone; set your 080
    /// number. Default `무료거부 080-000-0000`, a placeholder to replace.
    pub korean_ad_opt_out: String,
}

impl RenderSettings {
    /// The Korean advertising label these settings describe.
    pub fn korean_ad_label(&self) -> crate::render::KoreanAdLabel {
        crate::render::KoreanAdLabel {
            sender: self.korean_ad_sender.clone(),
            opt_out: self.korean_ad_opt_out.clone(),
        }
    }
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            sms_max_segments: 3,
            default_locale: crate::domain::Locale::parse("en-US").expect("a valid language tag"),
            korean_ad_sender: String::new(),
            korean_ad_opt_out: "무료거부 080-000-0000".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (for people) or `json` (for log pipelines). Default `text`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `forewarn=debug`; `RUST_LOG` wins when set.
    /// Default `info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret from the environment variable a setting names (`auth_token_env = "…"`): secrets
/// never live in the config file. The error names the secret and the variable.
pub fn secret_from_env(what: &str, variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| {
        format!("the {what} is read from the environment variable {variable}, which is not set")
    })
}

impl Settings {
    /// Loads settings: defaults, then the file (`explicit`, else `FOREWARN_CONFIG`, else
    /// `./forewarn.toml` if present), then `FOREWARN_<SECTION>__<KEY>` variables.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = match Self::source_file(explicit) {
            Some(path) if !path.exists() => return Err(ConfigError::Missing(path)),
            file => file,
        };
        let settings: Settings = Self::figment(file.as_deref())
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        settings.quiet_hours()?;
        settings.schedules()?;
        Ok(settings)
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
        figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]))
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

    use super::*;

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
