//! The template registry: loading, validation and rendering.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

    /// The part and locale a template file's name gives, as the loader reads it:
    /// `sms.ko.hbs` → (`Sms`, `"ko"`), `email.subject.hbs` → (`EmailSubject`, `""`).
    pub fn of_file(file_name: &str) -> Option<(Part, String)> {
        let (part, locale) = split_part(file_name.strip_suffix(".hbs")?)?;
        let locale = match locale {
            Some(tag) => Locale::parse(tag).ok()?.as_str().to_owned(),
            None => String::new(),
        };
        Some((part, locale))
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
    #[error("{0}")]
    Part(Box<PartFailure>),
}

/// Where and why one part failed to render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {message}", file.display(), line.unwrap_or(1), col.unwrap_or(1))]
pub struct PartFailure {
    /// Template name.
    pub template: String,
    /// Part file stem, with locale.
    pub part: String,
    /// The template file.
    pub file: PathBuf,
    /// Line of the failing expression, when handlebars knows it.
    pub line: Option<usize>,
    /// Its column.
    pub col: Option<usize>,
    /// What went wrong, in words for a CX author.
    pub message: String,
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
#[derive(Debug, Default, Clone)]
pub struct Templates {
    /// Registry for text parts: no escaping.
    text: Handlebars<'static>,
    /// Registry for `email.html`: HTML escaping.
    html: Handlebars<'static>,
    /// Template → part → locales present (`""` = the default file).
    index: BTreeMap<String, BTreeMap<Part, BTreeSet<String>>>,
    /// Registry name → the file it came from, for errors at render time.
    files: HashMap<String, PathBuf>,
    /// The language of the files without a locale.
    default_locale: Option<Locale>,
    /// What advertising SMS to Korean phones must carry.
    korean_ads: Option<super::KoreanAdLabel>,
    /// Templates with a part handlebars refused (only in a set `load_partial` returned).
    broken: BTreeSet<String>,
    /// Signs `links.unsubscribe`, when forewarn serves the links (`http.public_url`).
    unsubscribe: Option<std::sync::Arc<crate::feedback::UnsubscribeLinks>>,
}

impl Templates {
    /// Loads `<dir>/<template>/<part>[.<locale>].hbs`. All errors are returned, not just the first.
    pub fn load(dir: &Path) -> Result<Templates, Vec<TemplateError>> {
        let (templates, errors) = Templates::load_partial(dir);
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    /// Loads what can be loaded, and says what cannot: `check` goes on to rules and examples
    /// with the rest, so one run reports every problem. A part that handlebars refused is still
    /// listed (its template serves its channel; [`Templates::broken`] names it), so a rule using
    /// the template is not told a second, wrong thing about it.
    pub fn load_partial(dir: &Path) -> (Templates, Vec<TemplateError>) {
        let mut templates = Templates {
            text: registry(false),
            html: registry(true),
            index: BTreeMap::new(),
            files: HashMap::new(),
            default_locale: None,
            korean_ads: None,
            broken: BTreeSet::new(),
            unsubscribe: None,
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
                let error = at_file(dir, format!("cannot read the templates folder: {e}"));
                return (templates, vec![error]);
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
                let registered = key(&name, part, &locale);
                match registry.register_template_string(&registered, body) {
                    Ok(()) => {
                        entry.entry(part).or_default().insert(locale);
                        templates.files.insert(registered, file.clone());
                    }
                    Err(e) => {
                        let problem = super::syntax::explain(body, e.reason(), e.pos());
                        errors.push(TemplateError {
                            file: file.clone(),
                            line: problem.line,
                            col: problem.col,
                            message: problem.message,
                        });
                        entry.entry(part).or_default().insert(locale);
                        templates.broken.insert(name.clone());
                    }
                }
            }
        }
        (templates, errors)
    }

    /// The same templates with one file of `template` replaced by `source` (or added): what
    /// the console previews while an author types, before anything is saved. `file_name` is as
    /// on disk (`sms.ko.hbs`). A draft handlebars refuses is refused with its line and column.
    pub fn with_draft(
        &self,
        template: &str,
        file_name: &str,
        source: &str,
    ) -> Result<Templates, TemplateError> {
        let file = self
            .index
            .get(template)
            .and_then(|parts| {
                parts.iter().find_map(|(part, locales)| {
                    locales.iter().find_map(|l| {
                        let path = self.files.get(&key(template, *part, l))?;
                        (path.file_name()? == file_name).then(|| path.clone())
                    })
                })
            })
            .unwrap_or_else(|| PathBuf::from(template).join(file_name));
        let at_file = |message: String| TemplateError {
            file: file.clone(),
            line: 1,
            col: 1,
            message,
        };
        let stem = file_name
            .strip_suffix(".hbs")
            .ok_or_else(|| at_file("a template file ends in .hbs".into()))?;
        let (part, locale) =
            split_part(stem).ok_or_else(|| at_file(format!("unknown part `{stem}`")))?;
        let locale = match locale.map(Locale::parse).transpose() {
            Ok(l) => l.map(|l| l.as_str().to_owned()).unwrap_or_default(),
            Err(message) => return Err(at_file(format!("locale in file name {message}"))),
        };
        let mut draft = self.clone();
        let registry = if part.escapes_html() {
            &mut draft.html
        } else {
            &mut draft.text
        };
        let body = source.trim_end_matches(['\n', '\r']);
        let registered = key(template, part, &locale);
        if let Err(e) = registry.register_template_string(&registered, body) {
            let problem = super::syntax::explain(body, e.reason(), e.pos());
            return Err(TemplateError {
                file,
                line: problem.line,
                col: problem.col,
                message: problem.message,
            });
        }
        draft
            .index
            .entry(template.to_owned())
            .or_default()
            .entry(part)
            .or_default()
            .insert(locale);
        draft.files.insert(registered, file);
        Ok(draft)
    }

    /// The file names of `template`'s parts (`sms.hbs`, `sms.ko.hbs`, …), sorted.
    pub fn file_names(&self, template: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .index
            .get(template)
            .into_iter()
            .flat_map(|parts| {
                parts.iter().flat_map(move |(part, locales)| {
                    locales.iter().map(move |locale| {
                        match self.files.get(&key(template, *part, locale)) {
                            Some(path) => path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            None if locale.is_empty() => format!("{}.hbs", part.as_str()),
                            None => format!("{}.{locale}.hbs", part.as_str()),
                        }
                    })
                })
            })
            .collect();
        names.sort();
        names
    }

    /// Whether a part of `template` could not be loaded: it cannot be rendered.
    pub fn broken(&self, template: &str) -> bool {
        self.broken.contains(template)
    }

    /// The label advertising SMS to Korean phones carry (`render.korean_ad_*`).
    pub fn with_korean_ad_label(mut self, label: super::KoreanAdLabel) -> Self {
        self.korean_ads = Some(label);
        self
    }

    /// The label for advertising SMS to Korean phones, if configured.
    pub fn korean_ad_label(&self) -> Option<&super::KoreanAdLabel> {
        self.korean_ads.as_ref()
    }

    /// Gives templates `links.unsubscribe`, forewarn's own one-click link for the customer and
    /// channel being rendered.
    pub fn with_unsubscribe(
        mut self,
        links: Option<std::sync::Arc<crate::feedback::UnsubscribeLinks>>,
    ) -> Self {
        self.unsubscribe = links;
        self
    }

    /// What signs `links.unsubscribe`, if forewarn serves the links.
    pub fn unsubscribe(&self) -> Option<&crate::feedback::UnsubscribeLinks> {
        self.unsubscribe.as_deref()
    }

    /// Says which language the files without a locale are written in (`render.default_locale`),
    /// so dates and money in them read that way.
    pub fn with_default_locale(mut self, locale: Locale) -> Self {
        self.default_locale = Some(locale);
        self
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

    /// The file behind one part in one locale (`""` = the file without a locale).
    pub fn file(&self, template: &str, part: Part, locale: &str) -> Option<&Path> {
        self.files
            .get(&key(template, part, locale))
            .map(PathBuf::as_path)
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
        // One context for every part, moved in rather than re-serialised per render; only its
        // `locale` changes between parts.
        let mut context = handlebars::Context::from(context);
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
            // Dates and money follow the language of the file used: a Korean customer reading
            // the English default file sees English dates, in their own time zone.
            let format_locale = self.format_locale(chosen, locale);
            if let Some(object) = context.data_mut().as_object_mut() {
                object.insert("locale".into(), Value::String(format_locale));
            }
            let name = key(template, *part, chosen);
            let text = registry.render_with_context(&name, &context).map_err(|e| {
                RenderError::Part(Box::new(PartFailure {
                    template: template.to_owned(),
                    part: name[template.len() + 1..].to_owned(),
                    file: self
                        .files
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| name.clone().into()),
                    line: e.line_no,
                    col: e.column_no,
                    message: explain(e.reason()),
                }))
            })?;
            rendered.parts.insert(*part, text);
        }
        Ok(rendered)
    }
}

impl Templates {
    /// The locale dates and money use in a part from file locale `chosen` (`""` = default):
    /// the customer's own tag when it is the same language (`en-GB` keeps its day-month
    /// order with an `en` file), else the file's.
    fn format_locale(&self, chosen: &str, customer: Option<&Locale>) -> String {
        let file = if chosen.is_empty() {
            self.default_locale.as_ref().map_or("en-US", Locale::as_str)
        } else {
            chosen
        };
        let file_language = file.split('-').next().unwrap_or(file);
        match customer {
            Some(c) if c.language() == file_language => c.as_str().to_owned(),
            _ => file.to_owned(),
        }
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

/// Handlebars' reason in words for a CX author.
fn explain(reason: &handlebars::RenderErrorReason) -> String {
    use handlebars::RenderErrorReason as R;
    match reason {
        R::MissingVariable(Some(path)) => format!(
            "`{path}` is missing from this event or customer; guard optional fields with \
             {{{{#if {path}}}}}…{{{{/if}}}}"
        ),
        R::MissingVariable(None) => "a variable is missing from this event or customer".into(),
        R::HelperNotFound(name) => format!(
            "there is no helper `{name}` (helpers: date, money, and handlebars' own: if, \
             unless, each, with, eq, ne, gt, lt, and, or, not, len)"
        ),
        other => other.to_string(),
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
        let RenderError::Part(failure) = &err else {
            panic!("{err}")
        };
        assert!(failure.file.ends_with("t/sms.hbs"), "{err}");
        assert_eq!((failure.line, failure.col), (Some(1), Some(4)), "{err}");
        assert!(err.to_string().contains("customer.nickname"), "{err}");
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
    fn a_syntax_error_is_reported_where_the_mistake_is() {
        let errors = templates(&[("t/sms.hbs", "line one\n{{#if x}}never closed")]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].file.ends_with("t/sms.hbs"));
        assert_eq!((errors[0].line, errors[0].col), (2, 1), "{}", errors[0]);
        assert_eq!(errors[0].message, "`{{#if}}` opened at 2:1 is never closed");
    }

    #[test]
    fn a_partial_load_keeps_the_good_templates_and_names_the_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in [("good/sms.hbs", "fine"), ("bad/sms.hbs", "{{#if x}}")] {
            std::fs::create_dir_all(dir.path().join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let (t, errors) = Templates::load_partial(dir.path());
        assert_eq!(errors.len(), 1);
        assert!(t.serves("good", Channel::Sms) && !t.broken("good"));
        assert!(t.serves("bad", Channel::Sms) && t.broken("bad"));
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
        let parts = "{{date data.eta}} | {{date data.eta \"day\"}} | {{money data.total}}";
        let t = templates(&[("t/sms.hbs", parts), ("t/sms.ko.hbs", parts)]).unwrap();
        let ctx = json!({"customer": {"timezone": "Asia/Seoul", "locale": "ko-KR"},
                         "data": {"eta": "2026-11-26T18:00:00Z",
                                  "total": {"minor": 129000, "currency": "KRW"}}});
        let sms = t.render("t", Channel::Sms, Some(&ko()), ctx).unwrap();
        assert_eq!(
            sms.parts[&Part::Sms],
            "11월 27일 (금) 오전 3시 | 11월 27일 (금) | ₩129,000"
        );
        let ctx = json!({"customer": {"timezone": "America/New_York", "locale": "en-US"},
                         "data": {"eta": "2026-11-26T18:00:00Z",
                                  "total": {"minor": 1299, "currency": "USD"}}});
        let en = Locale::parse("en-US").unwrap();
        let sms = t.render("t", Channel::Sms, Some(&en), ctx).unwrap();
        assert_eq!(
            sms.parts[&Part::Sms],
            "Thu, Nov 26, 1 PM | Thu, Nov 26 | $12.99"
        );
    }

    #[test]
    fn dates_follow_the_language_of_the_file_used_in_the_customers_zone() {
        let t = templates(&[
            ("t/sms.hbs", "Arrives {{date data.eta}}"),
            ("t/push.title.ko.hbs", "{{date data.eta \"day\"}} 도착"),
            ("t/push.body.hbs", "Arrives {{date data.eta \"day\"}}"),
        ])
        .unwrap();
        let ctx = json!({"customer": {"timezone": "Asia/Seoul", "locale": "ko-KR"},
                         "data": {"eta": "2026-11-26T18:00:00Z"}});
        // No Korean SMS: the English file, in English, at Seoul's time.
        let sms = t
            .render("t", Channel::Sms, Some(&ko()), ctx.clone())
            .unwrap();
        assert_eq!(sms.parts[&Part::Sms], "Arrives Fri, Nov 27, 3 AM");
        // One push part in Korean, the other in English: each reads its own way.
        let push = t
            .render("t", Channel::Push, Some(&ko()), ctx.clone())
            .unwrap();
        assert_eq!(push.parts[&Part::PushTitle], "11월 27일 (금) 도착");
        assert_eq!(push.parts[&Part::PushBody], "Arrives Fri, Nov 27");
        // A shop whose unsuffixed files are Korean says so once.
        let t = t.with_default_locale(ko());
        let sms = t.render("t", Channel::Sms, None, ctx).unwrap();
        assert_eq!(sms.parts[&Part::Sms], "Arrives 11월 27일 (금) 오전 3시");
    }

    #[test]
    fn korean_particles_follow_the_word_before_them() {
        let t = templates(&[(
            "t/sms.hbs",
            "{{data.a}}{{josa data.a \"을/를\"}} {{data.b}}{{josa data.b \"을/를\"}}",
        )])
        .unwrap();
        let sms = t
            .render(
                "t",
                Channel::Sms,
                None,
                json!({"data": {"a": "러닝화", "b": "양말"}}),
            )
            .unwrap();
        assert_eq!(sms.parts[&Part::Sms], "러닝화를 양말을");
    }

    #[test]
    fn a_helper_given_the_wrong_value_is_an_error_naming_what_it_wants() {
        let t = templates(&[("t/sms.hbs", "{{money data.total}}")]).unwrap();
        let err = t
            .render("t", Channel::Sms, None, json!({"data": {"total": "12.99"}}))
            .unwrap_err();
        assert!(err.to_string().contains("a money object"), "{err}");
    }
}
