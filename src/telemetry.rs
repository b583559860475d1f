//! Logging: `tracing` with human-readable or JSON lines, and personal data masked on the way out.
//!
//! Masking happens in the writer, after formatting, so it covers every field and message —
//! including ones a future change adds without thinking of privacy. Typed contact details
//! (`PhoneE164`, `EmailAddress`) also mask themselves in `Debug`, so the writer is a second net.

use std::io::{self, Write};
use std::sync::OnceLock;

use regex::Regex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use serde::{Deserialize, Serialize};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `[log] level`.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskingWriter)
        // Colours only for a person at a terminal; files and log pipelines get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false);
    // A second init (tests, `demo` running `run` in-process) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Writes formatted log lines to stderr with phone numbers and e-mail addresses masked.
#[derive(Debug, Clone, Copy)]
pub struct MaskingWriter;

impl<'a> MakeWriter<'a> for MaskingWriter {
    type Writer = MaskingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter
    }
}

impl Write for MaskingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(mask_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn phone_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    // E.164 numbers: the only phone form forewarn stores. Dates and ids have no leading `+`.
    PATTERN.get_or_init(|| Regex::new(r"\+\d{7,15}").expect("constant pattern is valid"))
}

fn email_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+")
            .expect("constant pattern is valid")
    })
}

/// Masks every phone number and e-mail address in `text`.
pub fn mask_text(text: &str) -> String {
    let masked = email_pattern().replace_all(text, |c: &regex::Captures<'_>| mask_email(&c[0]));
    phone_pattern()
        .replace_all(&masked, |c: &regex::Captures<'_>| mask_phone(&c[0]))
        .into_owned()
}

/// `+821012345678` → `+82********78`: enough to tell numbers apart, not to call one.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let keep_head = 3.min(chars.len());
    let keep_tail = 2.min(chars.len().saturating_sub(keep_head));
    let hidden = chars.len() - keep_head - keep_tail;
    let mut out: String = chars[..keep_head].iter().collect();
    out.push_str(&"*".repeat(hidden));
    out.extend(&chars[chars.len() - keep_tail..]);
    out
}

/// `jisoo@example.com` → `j***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (for people) or `json` (for log pipelines).
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `forewarn=debug`; `RUST_LOG` wins when set.
    ///
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_mask_phones_and_addresses_but_not_dates() {
        let line = "Sent to=+821012345678 email=jisoo.kim@example.com at 2026-11-23T09:15:00Z";
        let masked = mask_text(line);
        assert_eq!(
            masked,
            "Sent to=+82********78 email=j***@example.com at 2026-11-23T09:15:00Z"
        );
    }
}
