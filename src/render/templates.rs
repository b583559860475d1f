//! The template registry: loading, validation and rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde_json::Value;

use crate::domain::{Channel, Locale};
use crate::rules::TemplateIndex;

/// A part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The text of an SMS.
    Sms,
    /// E-mail subject line.
    EmailSubject,
    /// E-mail HTML body (the only escaped part).
    EmailHtml,
    /// E-mail plain-text body.
    EmailText,
    /// Push title.
    PushTitle,
    /// Push body.
    PushBody,
}

impl Part {
    /// Every part. Longer names first, so `email.subject` is not read as part `email`.
    pub const ALL: [Part; 6] = [
        Part::EmailSubject,
        Part::EmailHtml,
        Part::EmailText,
        Part::PushTitle,
        Part::PushBody,
        Part::Sms,
    ];

    /// The part's file name stem.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Sms => "sms",
            Part::EmailSubject => "email.subject",
            Part::EmailHtml => "email.html",
            Part::EmailText => "email.text",
            Part::PushTitle => "push.title",
            Part::PushBody => "push.body",
        }
    }

    fn escapes_html(self) -> bool {
        self == Part::EmailHtml
    }
}

/// A template file that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Why a message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template has no parts for the channel.
    #[error("template `{template}` has no {channel} parts")]
    ChannelNotServed {
        /// Template name.
        template: String,
        /// Channel.
        channel: Channel,
    },
    /// A part failed: usually a variable the event does not carry.
    #[error("{template}/{part}: {message}")]
    Part {
        /// Template name.
        template: String,
        /// Part file stem, with locale.
        part: String,
        /// Handlebars' message.
        message: String,
    },
}

/// The rendered parts of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedParts {
    /// The locale the parts came from (`""` for the default files).
    pub locale: String,
    /// Part → text.
    pub parts: BTreeMap<Part, String>,
}

impl RenderedParts {
    /// Takes a part out.
    pub fn take(&mut self, part: Part) -> Option<String> {
        self.parts.remove(&part)
    }
}

/// Every template, compiled once.
#[derive(Debug, Default)]
pub struct Templates {
    /// Registry for text parts: no escaping.
    text: Handlebars<'static>,
    /// Registry for `email.html`: HTML escaping.
    html: Handlebars<'static>,
    /// Template → part → locales present (`""` = the default file).
    index: BTreeMap<String, BTreeMap<Part, BTreeSet<String>>>,
}

impl Templates {
    /// Loads `<dir>/<template>/<part>[.<locale>].hbs`. All errors are returned, not just the first.
    pub fn load(dir: &Path) -> Result<Templates, Vec<TemplateError>> {
        let mut templates = Templates {
            text: registry(false),
            html: registry(true),
            index: BTreeMap::new(),
        };
        let mut errors = Vec::new();
        let at_file = |file: &Path, message: String| TemplateError {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            message,
        };
        let folders = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())),
            Err(e) => {
                return Err(vec![at_file(
                    dir,
                    format!("cannot read the templates folder: {e}"),
                )])
            }
        };
        let mut folders: Vec<PathBuf> = folders.filter(|p| p.is_dir()).collect();
        folders.sort();
        for folder in folders {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    errors.push(at_file(&folder, format!("cannot read: {e}")));
                    continue;
                }
            };
            files.sort();
            let entry = templates.index.entry(name.clone()).or_default();
            for file in files {
                let Some(file_name) = file.file_name().map(|n| n.to_string_lossy().into_owned())
                else {
                    continue;
                };
                let Some(stem) = file_name.strip_suffix(".hbs") else {
                    continue;
                };
                let Some((part, locale)) = split_part(stem) else {
                    errors.push(at_file(
                        &file,
                        format!(
                            "unknown part `{stem}` (expected one of: {}, optionally followed by \
                             .<locale>)",
                            Part::ALL.map(Part::as_str).join(", ")
                        ),
                    ));
                    continue;
                };
                let locale = match locale.map(Locale::parse).transpose() {
                    Ok(l) => l.map(|l| l.as_str().to_owned()).unwrap_or_default(),
                    Err(message) => {
                        errors.push(at_file(&file, format!("locale in file name {message}")));
                        continue;
                    }
                };
                let text = match std::fs::read_to_string(&file) {
                    Ok(text) => text,
                    Err(e) => {
                        errors.push(at_file(&file, format!("cannot read: {e}")));
                        continue;
                    }
                };
                let registry = if part.escapes_html() {
                    &mut templates.html
                } else {
                    &mut templates.text
                };
                // Trailing newlines are an editor's habit, not part of the message.
                let body = text.trim_end_matches(['\n', '\r']);
                match registry.register_template_string(&key(&name, part, &locale), body) {
                    Ok(()) => {
                        entry.entry(part).or_default().insert(locale);
                    }
                    Err(e) => errors.push(TemplateError {
                        file: file.clone(),
                        line: e.pos().map_or(1, |(line, _)| line),
                        col: e.pos().map_or(1, |(_, col)| col),
                        message: e.reason().to_string(),
                    }),
                }
            }
        }
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    /// Template names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// The locales `template` has files for, `""` meaning the files without a locale.
    pub fn locales(&self, template: &str) -> BTreeSet<String> {
        self.index
            .get(template)
            .map(|parts| parts.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `template` can render `channel`.
    pub fn serves(&self, template: &str, channel: Channel) -> bool {
        self.index
            .get(template)
            .is_some_and(|parts| serves(parts, channel))
    }

    /// Renders the parts of `channel` for `locale`, each part resolved `ko-KR` → `ko` → default.
    pub fn render(
        &self,
        template: &str,
        channel: Channel,
        locale: Option<&Locale>,
        context: Value,
    ) -> Result<RenderedParts, RenderError> {
        let not_served = || RenderError::ChannelNotServed {
            template: template.to_owned(),
            channel,
        };
        let parts = self.index.get(template).ok_or_else(not_served)?;
        if !serves(parts, channel) {
            return Err(not_served());
        }
        let wanted: &[Part] = match channel {
            Channel::Sms => &[Part::Sms],
            Channel::Email => &[Part::EmailSubject, Part::EmailText, Part::EmailHtml],
            Channel::Push => &[Part::PushTitle, Part::PushBody],
        };
        let candidates: Vec<String> = match locale {
            Some(l) => vec![
                l.as_str().to_owned(),
                l.language().to_owned(),
                String::new(),
            ],
            None => vec![String::new()],
        };
        // One context for every part, moved in rather than re-serialised per render.
        let context = handlebars::Context::from(context);
        let mut rendered = RenderedParts::default();
        for part in wanted {
            let Some(present) = parts.get(part) else {
                continue;
            };
            let Some(chosen) = candidates.iter().find(|c| present.contains(*c)) else {
                continue;
            };
            if *part == wanted[0] {
                rendered.locale = chosen.clone();
            }
            let registry = if part.escapes_html() {
                &self.html
            } else {
                &self.text
            };
            let name = key(template, *part, chosen);
            let text =
                registry
                    .render_with_context(&name, &context)
                    .map_err(|e| RenderError::Part {
                        template: template.to_owned(),
                        part: name[template.len() + 1..].to_owned(),
                        message: e.reason().to_string(),
                    })?;
            rendered.parts.insert(*part, text);
        }
        Ok(rendered)
    }
}

impl TemplateIndex for Templates {
    fn channels_of(&self, template: &str) -> Option<BTreeSet<Channel>> {
        let parts = self.index.get(template)?;
        Some(
            Channel::ALL
                .into_iter()
                .filter(|c| serves(parts, *c))
                .collect(),
        )
    }
}

fn registry(escape_html: bool) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    if !escape_html {
        registry.register_escape_fn(handlebars::no_escape);
    }
    super::helpers::register(&mut registry);
    registry
}

fn key(template: &str, part: Part, locale: &str) -> String {
    if locale.is_empty() {
        format!("{template}/{}", part.as_str())
    } else {
        format!("{template}/{}.{locale}", part.as_str())
    }
}

/// `email.subject.ko-KR` → (`EmailSubject`, `Some("ko-KR")`).
fn split_part(stem: &str) -> Option<(Part, Option<&str>)> {
    Part::ALL.into_iter().find_map(|part| {
        let rest = stem.strip_prefix(part.as_str())?;
        match rest {
            "" => Some((part, None)),
            _ => rest.strip_prefix('.').map(|locale| (part, Some(locale))),
        }
    })
}

fn serves(parts: &BTreeMap<Part, BTreeSet<String>>, channel: Channel) -> bool {
    let has = |p: Part| parts.contains_key(&p);
    match channel {
        Channel::Sms => has(Part::Sms),
        Channel::Email => has(Part::EmailSubject) && (has(Part::EmailText) || has(Part::EmailHtml)),
        Channel::Push => has(Part::PushTitle) && has(Part::PushBody),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn templates(files: &[(&str, &str)]) -> Result<Templates, Vec<TemplateError>> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Templates::load(dir.path())
    }

    fn ko() -> Locale {
        Locale::parse("ko-KR").unwrap()
    }

    #[test]
    fn the_locale_falls_back_from_region_to_language_to_default() {
        let t = templates(&[
            ("t/sms.hbs", "Hello {{customer.name}}"),
            ("t/sms.ko.hbs", "안녕하세요 {{customer.name}}님"),
        ])
        .unwrap();
        let ctx = json!({"customer": {"name": "지수"}});
        let sms = t
            .render("t", Channel::Sms, Some(&ko()), ctx.clone())
            .unwrap();
        assert_eq!(sms.parts[&Part::Sms], "안녕하세요 지수님");
        assert_eq!(sms.locale, "ko");
        let en = Locale::parse("en-US").unwrap();
        let sms = t.render("t", Channel::Sms, Some(&en), ctx.clone()).unwrap();
        assert_eq!(sms.parts[&Part::Sms], "Hello 지수");
    }

    #[test]
    fn a_missing_variable_is_an_error_not_a_blank() {
        let t = templates(&[("t/sms.hbs", "Hi {{customer.nickname}}")]).unwrap();
        let err = t
            .render("t", Channel::Sms, None, json!({"customer": {}}))
            .unwrap_err();
        assert!(matches!(err, RenderError::Part { .. }), "{err}");
    }

    #[test]
    fn only_the_html_part_is_escaped() {
        let t = templates(&[
            ("t/email.subject.hbs", "{{data.item}}"),
            ("t/email.text.hbs", "{{data.item}}"),
            ("t/email.html.hbs", "<p>{{data.item}}</p>"),
        ])
        .unwrap();
        let mut email = t
            .render(
                "t",
                Channel::Email,
                None,
                json!({"data": {"item": "Tom & Jerry <3>"}}),
            )
            .unwrap();
        assert_eq!(email.take(Part::EmailText).unwrap(), "Tom & Jerry <3>");
        assert_eq!(
            email.take(Part::EmailHtml).unwrap(),
            "<p>Tom &amp; Jerry &lt;3&gt;</p>"
        );
    }

    #[test]
    fn a_syntax_error_is_reported_with_file_and_line() {
        let errors = templates(&[("t/sms.hbs", "line one\n{{#if x}}never closed")]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].file.ends_with("t/sms.hbs"));
        assert!(errors[0].line >= 2, "{}", errors[0]);
    }

    #[test]
    fn a_template_serves_a_channel_only_with_its_required_parts() {
        let t = templates(&[("t/email.subject.hbs", "s"), ("t/push.title.hbs", "t")]).unwrap();
        assert!(!t.serves("t", Channel::Email));
        assert!(!t.serves("t", Channel::Push));
        let errors = templates(&[("t/fax.hbs", "x")]).unwrap_err();
        assert!(errors[0].message.contains("unknown part `fax`"));
    }

    #[test]
    fn dates_are_shown_in_the_customers_zone_and_language() {
        let t = templates(&[("t/sms.hbs", "{{date data.eta}}")]).unwrap();
        let ctx = json!({"customer": {"timezone": "Asia/Seoul", "locale": "ko-KR"},
                         "data": {"eta": "2026-11-26T18:00:00Z"}});
        let sms = t.render("t", Channel::Sms, None, ctx).unwrap();
        assert_eq!(sms.parts[&Part::Sms], "11월 27일");
    }
}
