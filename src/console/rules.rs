//! Rules and templates for CX authors: every rule as it runs; every template with its files;
//! a live preview of a template for any example event and customer, per channel and locale;
//! and an editor whose draft the preview follows as the author types. Saving (with
//! `[console] allow_edit`) writes the file only if the whole set passes `check` with it —
//! otherwise its `file:line:col` errors are shown and nothing changes — and the running
//! forewarn's reload picks the file up as it would any edit.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::drafts::DraftSet;
use super::pages::Page;
use super::words::{channel_word, word, Lang};
use super::{Console, Signed};
use crate::authoring::examples::{customer_id_of, example_assessment, Examples};
use crate::authoring::preview::{preview, Outcome, Rendered, Sample};
use crate::authoring::Authoring;
use crate::domain::{DiscountCode, Offer};
use crate::render::Part;
use crate::rules::ChannelChoice;

/// The header the page's script sends its CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";

/// What a template page (and its preview) is asked to show.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Shown {
    /// The template, for the preview the script asks for.
    template: String,
    /// The example event's index among `paths.examples`.
    example: Option<usize>,
    /// A customer id from the database, instead of the example's customer.
    customer: String,
    /// The locale to preview.
    locale: String,
    /// A sample discount in percent; blank or 0 for none.
    offer: String,
    /// The file in the editor.
    file: String,
    /// The editor's text, when it is a draft.
    source: Option<String>,
    /// The form's CSRF token (for saving).
    csrf: String,
}

pub(super) async fn page(State(console): State<Console>, signed: Signed) -> Response {
    let authoring = console.inner.authoring.borrow().clone();
    let rules: Vec<Value> = authoring
        .rules
        .rules()
        .iter()
        .map(|rule| {
            let channels: Vec<&str> = rule
                .channels
                .iter()
                .map(|c| match c {
                    ChannelChoice::Preferred => "preferred",
                    ChannelChoice::Channel(c) => c.as_str(),
                })
                .collect();
            json!({
                "id": rule.id,
                "location": rule.location.to_string(),
                "on": rule.on.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "when": rule.when.as_ref().map(|w| w.source.clone()),
                "priority": rule.priority,
                "channels": channels.join(" → "),
                "category": rule.category.as_str(),
                "offer": rule.offer.as_ref().map(|o| format!(
                    "{} % · {} d", o.discount_percent.source, o.valid_days)),
                "template": rule.template,
            })
        })
        .collect();
    let templates: Vec<Value> = authoring
        .templates
        .names()
        .map(|name| {
            let files = authoring.templates.file_names(name);
            json!({"name": name, "parts": parts_of(&files)})
        })
        .collect();
    let data = json!({
        "version_words": format!("{} {}", word(signed.lang, "rules_version"), authoring.version),
        "rules": rules,
        "templates": templates,
    });
    let page = Page {
        template: "rules",
        nav: "rules",
        title: word(signed.lang, "rules_and_templates").to_owned(),
        data,
        back: "/console/rules",
    };
    console.page(&signed, StatusCode::OK, page)
}

/// `sms` · `default, ko` — each part with the locales it has.
fn parts_of(files: &[String]) -> Vec<Value> {
    let mut parts: Vec<(&str, Vec<String>)> = Vec::new();
    for (part, locale) in files.iter().filter_map(|f| Part::of_file(f)) {
        let locale = if locale.is_empty() {
            "default".to_owned()
        } else {
            locale
        };
        match parts.iter_mut().find(|(p, _)| *p == part.as_str()) {
            Some((_, locales)) => locales.push(locale),
            None => parts.push((part.as_str(), vec![locale])),
        }
    }
    parts
        .into_iter()
        .map(|(part, locales)| json!({"part": part, "locales": locales.join(", ")}))
        .collect()
}

pub(super) async fn template(
    State(console): State<Console>,
    signed: Signed,
    UrlPath(name): UrlPath<String>,
    Query(shown): Query<Shown>,
) -> Response {
    template_page(&console, &signed, &name, shown, StatusCode::OK, json!({})).await
}

/// The template page again, with the editor's draft: the Preview button without the script.
pub(super) async fn template_posted(
    State(console): State<Console>,
    signed: Signed,
    UrlPath(name): UrlPath<String>,
    Form(shown): Form<Shown>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &shown.csrf) {
        return *refused;
    }
    template_page(&console, &signed, &name, shown, StatusCode::OK, json!({})).await
}

async fn template_page(
    console: &Console,
    signed: &Signed,
    name: &str,
    shown: Shown,
    status: StatusCode,
    outcome: Value,
) -> Response {
    let authoring = match known_template(console, signed, name) {
        Ok(authoring) => authoring,
        Err(missing) => return *missing,
    };
    let view = View::of(console, &authoring, name, &shown).await;
    let mut data = view.page(console, signed.lang, &authoring, name, &shown);
    data["saved"] = outcome["saved"].clone();
    data["refused"] = outcome["refused"].clone();
    let page = Page {
        template: "template",
        nav: "rules",
        title: format!("{} · {name}", word(signed.lang, "template")),
        data,
        back: "/console/rules",
    };
    console.page(signed, status, page)
}

/// The set in use, if it has the template `name`; else the page saying there is none.
fn known_template(
    console: &Console,
    signed: &Signed,
    name: &str,
) -> Result<Arc<Authoring>, Box<Response>> {
    let authoring = console.inner.authoring.borrow().clone();
    if authoring.templates.names().any(|n| n == name) {
        return Ok(authoring);
    }
    let message = format!("{} {name}", word(signed.lang, "no_such_template"));
    let back = "/console/rules";
    Err(Box::new(console.problem(
        signed,
        StatusCode::NOT_FOUND,
        &message,
        back,
    )))
}

/// The preview alone, for the page's script: the same HTML the page was rendered with.
pub(super) async fn preview_fragment(
    State(console): State<Console>,
    signed: Signed,
    headers: HeaderMap,
    Form(shown): Form<Shown>,
) -> Response {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(refused) = signed.check_csrf(&console, given) {
        return *refused;
    }
    let name = shown.template.clone();
    let authoring = match known_template(&console, &signed, &name) {
        Ok(authoring) => authoring,
        Err(missing) => return *missing,
    };
    let view = View::of(&console, &authoring, &name, &shown).await;
    let data = view.preview(signed.lang, &authoring, &name, &shown);
    console.inner.pages.fragment(signed.lang, "preview", data)
}

pub(super) async fn save(
    State(console): State<Console>,
    signed: Signed,
    UrlPath(name): UrlPath<String>,
    Form(shown): Form<Shown>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &shown.csrf) {
        return *refused;
    }
    let back = format!("/console/templates/{name}");
    if !console.inner.settings.console.allow_edit {
        let message = word(signed.lang, "editing_off");
        return console.problem(&signed, StatusCode::FORBIDDEN, message, &back);
    }
    let authoring = console.inner.authoring.borrow().clone();
    let files = authoring.templates.file_names(&name);
    let (Some(source), true) = (&shown.source, files.contains(&shown.file)) else {
        let message = word(signed.lang, "no_such_file");
        return console.problem(&signed, StatusCode::NOT_FOUND, message, &back);
    };
    let settings = &console.inner.settings;
    let outcome = match checked_save(settings, &name, &shown.file, source) {
        Ok(()) => {
            tracing::info!(
                target: "forewarn::audit",
                who = %signed.session.who,
                template = %name,
                file = %shown.file,
                "Template saved from the console."
            );
            (StatusCode::OK, json!({"saved": word(signed.lang, "saved")}))
        }
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"refused": problems}),
        ),
    };
    template_page(&console, &signed, &name, shown, outcome.0, outcome.1).await
}

/// Checks the whole set with `source` as `template/file`; writes the real file only if it
/// passes. Problems name the real file.
fn checked_save(
    settings: &crate::config::Settings,
    template: &str,
    file: &str,
    source: &str,
) -> Result<(), Vec<String>> {
    let real = &settings.paths.templates;
    let failed = |e: std::io::Error| vec![format!("{}: {e}", real.display())];
    DraftSet::with_template(settings, template, file, source)
        .map_err(failed)?
        .load()?;
    // Written beside the file and renamed over it: the reload never reads half a file.
    let target = real.join(template).join(file);
    let partial = real.join(template).join(format!(".{file}.saving"));
    std::fs::write(&partial, source)
        .and_then(|()| std::fs::rename(&partial, &target))
        .map_err(failed)
}

/// What a template page shows, worked out once for the page and its preview.
struct View {
    /// Example events the template's rules react to: (index, label).
    examples: Vec<(usize, String)>,
    /// The chosen example, read.
    example: Option<(usize, crate::domain::Accepted)>,
    /// The customer the preview is for, and a note if the one asked for was not found.
    customer: crate::domain::CustomerDoc,
    customer_note: Option<String>,
    /// The template's files.
    files: Vec<String>,
    /// The chosen locale (`""` for the files without one), the file in the editor, its text.
    locale: String,
    file: String,
    source: String,
    /// The chosen sample discount.
    offer: Option<u8>,
}

impl View {
    async fn of(console: &Console, authoring: &Authoring, name: &str, shown: &Shown) -> View {
        let settings = &console.inner.settings;
        let all = Examples::read(&settings.paths.examples).unwrap_or_default();
        let types: Vec<_> = authoring
            .rules
            .rules()
            .iter()
            .filter(|r| r.template == name)
            .flat_map(|r| r.on.iter().copied())
            .collect();
        let mut examples: Vec<(usize, String)> = all
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| types.is_empty() || types.contains(&e.accepted.event.event_type))
            .map(|(i, e)| (i, example_label(e)))
            .collect();
        if examples.is_empty() {
            examples = all
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| (i, example_label(e)))
                .collect();
        }
        let chosen = shown
            .example
            .filter(|i| examples.iter().any(|(j, _)| j == i))
            .or_else(|| examples.first().map(|(i, _)| *i));
        let example = chosen.and_then(|i| Some((i, all.events.get(i)?.accepted.clone())));
        let mut customer_note = None;
        let asked = shown.customer.trim();
        let stored = if asked.is_empty() {
            None
        } else {
            match console.inner.store.customer(asked).await {
                Ok(Some(doc)) => Some(doc),
                Ok(None) | Err(_) => {
                    customer_note = Some(asked.to_owned());
                    None
                }
            }
        };
        let customer = stored.unwrap_or_else(|| match &example {
            Some((_, accepted)) => all.customer_for(accepted),
            None => crate::domain::CustomerDoc::default(),
        });
        let files = authoring.templates.file_names(name);
        let file = Some(shown.file.clone())
            .filter(|f| files.contains(f))
            .or_else(|| files.first().cloned())
            .unwrap_or_default();
        let locales = authoring.templates.locales(name);
        let locale = Some(shown.locale.clone())
            .map(|l| if l == "default" { String::new() } else { l })
            .filter(|l| locales.contains(l))
            .or_else(|| Part::of_file(&file).map(|(_, locale)| locale))
            .filter(|l| locales.contains(l))
            .or_else(|| locales.iter().next().cloned())
            .unwrap_or_default();
        let source = match &shown.source {
            Some(draft) => draft.clone(),
            None => std::fs::read_to_string(settings.paths.templates.join(name).join(&file))
                .unwrap_or_default(),
        };
        View {
            examples,
            example,
            customer,
            customer_note,
            files,
            locale,
            file,
            source,
            offer: shown
                .offer
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p)),
        }
    }

    /// The template page's data.
    fn page(
        &self,
        console: &Console,
        lang: Lang,
        authoring: &Authoring,
        name: &str,
        shown: &Shown,
    ) -> Value {
        let chosen = self.example.as_ref().map(|(i, _)| *i);
        let locales: Vec<Value> = authoring
            .templates
            .locales(name)
            .into_iter()
            .map(|l| {
                let selected = l == self.locale;
                let label = if l.is_empty() {
                    "default".to_owned()
                } else {
                    l.clone()
                };
                json!({"value": label, "label": label, "selected": selected})
            })
            .collect();
        json!({
            "name": name,
            "examples": self.examples.iter().map(|(i, label)| json!({
                "index": i, "label": label, "selected": Some(*i) == chosen,
            })).collect::<Vec<_>>(),
            "customer": shown.customer.trim(),
            "locales": locales,
            "offer": self.offer.map(|p| p.to_string()).unwrap_or_default(),
            "files": self.files,
            "file": self.file,
            "source": self.source,
            "allow_edit": console.inner.settings.console.allow_edit,
            "preview": self.preview(lang, authoring, name, shown),
            "saved": null,
            "refused": null,
        })
    }

    /// The preview: every channel the template serves, in the chosen locale, rendered from the
    /// draft when there is one.
    fn preview(&self, lang: Lang, authoring: &Authoring, name: &str, shown: &Shown) -> Value {
        let mut draft_error = None;
        let draft: Option<Arc<crate::render::Templates>> = shown.source.as_ref().and_then(|s| {
            match authoring.templates.with_draft(name, &self.file, s) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    draft_error = Some(e.to_string());
                    None
                }
            }
        });
        let templates = draft.as_deref().unwrap_or(&authoring.templates);
        let Some((_, accepted)) = &self.example else {
            return json!({"draft_error": draft_error, "note": word(lang, "no_examples"),
                          "channels": []});
        };
        let now = Utc::now();
        let offer = self.offer.map(|percent| Offer {
            code: DiscountCode::from_stored("SAMP1E0FFER0".into()),
            percent,
            expires_at: now + chrono::Duration::days(30),
        });
        let customer_id = customer_id_of(&self.customer, "preview");
        let risk = example_assessment(accepted, &customer_id, &authoring.risk, now);
        let sample = Sample {
            accepted,
            customer: &self.customer,
            offer: offer.as_ref(),
            risk: risk.scores(),
        };
        let channels: Vec<Value> =
            preview(templates, name, sample, std::slice::from_ref(&self.locale))
                .into_iter()
                .map(|shown| {
                    let mut view = json!({
                        "channel": shown.channel.as_str(),
                        "channel_name": channel_word(lang, shown.channel.as_str()),
                        "locale": shown.locale,
                        "error": null,
                        "kind": shown.channel.as_str(),
                    });
                    match shown.outcome {
                        Outcome::Failed { error } => view["error"] = json!(error),
                        Outcome::Rendered(rendered) => {
                            let too_large = matches!(&rendered,
                            Rendered::Push { payload_bytes, payload_limit, .. }
                                if payload_bytes > payload_limit);
                            if let (Value::Object(view), Value::Object(fields)) =
                                (&mut view, json!(rendered))
                            {
                                view.extend(fields);
                            }
                            view["too_large"] = json!(too_large);
                            // Every field the page reads, present (strict mode).
                            for key in ["text", "html", "subject", "title", "body"] {
                                if view.get(key).is_none() {
                                    view[key] = Value::Null;
                                }
                            }
                        }
                    }
                    view
                })
                .collect();
        let note = self
            .customer_note
            .as_ref()
            .map(|id| format!("{} {id}", word(lang, "customer_not_found_preview")));
        json!({"draft_error": draft_error, "note": note, "channels": channels})
    }
}

/// `shipment.delayed · examples/events/shipments.jsonl:3`
fn example_label(example: &crate::authoring::examples::Example) -> String {
    let file = example
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{} · {} · {file}:{}",
        example.accepted.event.event_type.as_str(),
        example.accepted.event.key.id,
        example.line
    )
}
