//! `forewarn preview`: how one template reads on every channel and in every locale, for one
//! event — what a CX author looks at before saving.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::authoring::examples::{customer_id_of, example_assessment, Examples};
use crate::authoring::preview::{preview, Outcome, Rendered, Sample};
use crate::cli::output::say;
use crate::config::Settings;
use crate::domain::Accepted;
use crate::domain::{CustomerDoc, DiscountCode, Locale, Offer};
use crate::risk::RiskModel;
use crate::rules::OfferSpec;

/// Options of `forewarn preview`.
#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// The template folder name, e.g. `delay-apology`.
    #[arg(long, value_name = "NAME")]
    pub template: String,
    /// A CloudEvent as JSON (or JSON Lines: the first line is used).
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
    /// A customer record as JSON; default: the customer the event names, as the example
    /// events (`paths.examples`) define it, else a sample one.
    #[arg(long, value_name = "FILE")]
    pub customer: Option<PathBuf>,
    /// Render this locale only; default: every locale the template has.
    #[arg(long, value_name = "LOCALE")]
    pub locale: Option<String>,
    /// Write the e-mail's HTML part to this file (`<name>.<locale>.html` per locale when there
    /// are several).
    #[arg(long, value_name = "FILE")]
    pub html_out: Option<PathBuf>,
    /// Show the message as a rule with `[rule.offer]` sends it: with a sample discount code
    /// for this many percent off, valid `--valid-days`.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub offer: Option<u8>,
    /// Days the sample code is valid.
    #[arg(long, value_name = "DAYS", default_value_t = OfferSpec::DEFAULT_VALID_DAYS, requires = "offer")]
    pub valid_days: u32,
}

/// Renders and prints; fails if any part fails.
pub(super) async fn execute(args: PreviewArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let templates = crate::authoring::load_templates(&settings)
        .map_err(|errors| super::load_errors(&errors))?;
    if !templates.names().any(|n| n == args.template) {
        bail!(
            "no template `{}` in {} (there are: {})",
            args.template,
            settings.paths.templates.display(),
            templates.names().collect::<Vec<_>>().join(", ")
        );
    }
    let accepted = read_event(&args.event)?;
    let customer = match &args.customer {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--customer: cannot read {}", path.display()))?;
            let Value::Object(object) = serde_json::from_str(&text)
                .with_context(|| format!("--customer: {} is not JSON", path.display()))?
            else {
                bail!("--customer: {} must hold a JSON object", path.display());
            };
            CustomerDoc::from_object(object)
        }
        // The customer the event names, as the example events define it (inline objects are
        // merged over what the examples know), else a sample customer.
        None => Examples::read(&settings.paths.examples)?.customer_for(&accepted),
    };
    let locales: Vec<String> = match &args.locale {
        Some(l) => vec![Locale::parse(l)
            .map_err(anyhow::Error::msg)?
            .as_str()
            .to_owned()],
        None => templates.locales(&args.template).into_iter().collect(),
    };

    let offer = args.offer.map(|percent| Offer {
        code: DiscountCode::from_stored("SAMP1E0FFER0".into()),
        percent,
        expires_at: chrono::Utc::now() + chrono::Duration::days(i64::from(args.valid_days)),
    });

    // Scored from the event alone, as `check` does: no history.
    let risk_model =
        RiskModel::load(&settings.paths.rules).map_err(|errors| super::load_errors(&errors))?;
    let customer_id = customer_id_of(&customer, "preview");
    let risk = example_assessment(&accepted, &customer_id, &risk_model, chrono::Utc::now());
    say!(
        "risk (from this event alone, no history): {}\n",
        risk.explain()
    );

    let sample = Sample {
        accepted: &accepted,
        customer: &customer,
        offer: offer.as_ref(),
        risk: risk.scores(),
    };
    let several = locales.len() > 1;
    let mut failures = 0;
    for shown in preview(&templates, &args.template, sample, &locales) {
        say!(
            "── {} · {}",
            shown.channel.as_str().to_uppercase(),
            shown.locale
        );
        match shown.outcome {
            Outcome::Rendered(rendered) => print_rendered(rendered, &args, &shown.locale, several)?,
            Outcome::Failed { error } => {
                failures += 1;
                say!("   ✗ {error}");
            }
        }
        say!();
    }
    if failures > 0 {
        bail!("{failures} rendering(s) failed");
    }
    Ok(())
}

fn print_rendered(
    rendered: Rendered,
    args: &PreviewArgs,
    locale: &str,
    several: bool,
) -> anyhow::Result<()> {
    let indent = |text: &str| -> Result<(), super::output::OutputError> {
        for line in text.lines() {
            say!("   │ {line}");
        }
        Ok(())
    };
    match rendered {
        Rendered::Sms {
            text,
            encoding,
            units,
            segments,
        } => {
            indent(&text)?;
            say!("   {encoding} · {units} units · {segments} segment(s)");
        }
        Rendered::Email {
            subject,
            text,
            html,
        } => {
            say!("   Subject: {subject}");
            if let Some(text) = text {
                indent(&text)?;
            }
            if let Some(html) = html {
                match &args.html_out {
                    Some(path) => {
                        let path = if several {
                            path.with_extension(format!("{locale}.html"))
                        } else {
                            path.clone()
                        };
                        std::fs::write(&path, &html).with_context(|| {
                            format!("--html-out: cannot write {}", path.display())
                        })?;
                        say!(
                            "   HTML: {} bytes, written to {}",
                            html.len(),
                            path.display()
                        );
                    }
                    None => say!("   HTML: {} bytes (--html-out FILE to see it)", html.len()),
                }
            }
        }
        Rendered::Push {
            title,
            body,
            payload_bytes,
            payload_limit,
        } => {
            say!("   {title}");
            indent(&body)?;
            say!(
                "   FCM payload {payload_bytes} of {payload_limit} bytes{}",
                if payload_bytes > payload_limit {
                    " — TOO LARGE"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// The event in `path`: a JSON object, or the first line of a JSON Lines file.
fn read_event(path: &Path) -> anyhow::Result<Accepted> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--event: cannot read {}", path.display()))?;
    let body = if text.trim_start().starts_with('{') && serde_json::from_str::<Value>(&text).is_ok()
    {
        text.trim().to_owned()
    } else {
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    };
    Accepted::parse(body.as_bytes(), None)
        .map_err(|e| anyhow::anyhow!("--event: {}: {}", path.display(), e.detail))
}
