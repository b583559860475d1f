//! `forewarn check`: everything a CX author can get wrong, found before a customer sees it.
//!
//! Validates the config, every template and every rule, then renders each rule's template
//! against every example event of the rule's types, on every channel and in every locale the
//! template has — so a variable an event does not carry, or an SMS over the segment budget,
//! is an error here and never a blank or a surprise bill in production.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::Settings;
use crate::domain::{Channel, CloudEvent, CustomerDoc, CustomerRef, Locale, Payload};
use crate::pipeline::{render_preview, Accepted, PreviewInput};
use crate::render::{measure_sms, Part};

/// An example event and where it was written.
struct Example {
    accepted: Accepted,
    file: PathBuf,
    line: usize,
}

/// Runs every check; prints one `file:line:col: message` line per problem.
pub(super) async fn execute(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(e) => {
            println!(
                "{}: {e}",
                Settings::source_file(config).map_or("config".into(), |p| p.display().to_string())
            );
            anyhow::bail!("the configuration is invalid");
        }
    };
    let authoring = match super::load_authoring(&settings) {
        Ok(authoring) => authoring,
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            anyhow::bail!("{} problem(s) in rules or templates", errors.len());
        }
    };
    let (examples, customers) = read_examples(&settings.paths.examples)?;
    let fallback_customer = CustomerDoc::from_object(
        json!({"id": "sample", "name": "Sample Customer"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );

    let mut problems = Vec::new();
    let mut renders = 0;
    for rule in authoring.rules.rules() {
        let template = &rule.template;
        for example in examples
            .iter()
            .filter(|e| rule.on.contains(&e.accepted.event.event_type))
        {
            let base = example
                .accepted
                .payload
                .customer()
                .and_then(|c| customers.get(c.id().as_str()))
                .unwrap_or(&fallback_customer);
            for channel in Channel::ALL
                .into_iter()
                .filter(|c| authoring.templates.serves(template, *c))
            {
                for locale in authoring.templates.locales(template) {
                    let parsed = Locale::parse(&locale).ok();
                    let mut doc = base.clone();
                    if let Some(l) = &parsed {
                        doc.merge(
                            json!({"locale": l.as_str()})
                                .as_object()
                                .expect("an object"),
                        );
                    }
                    renders += 1;
                    let shown = if locale.is_empty() {
                        "default"
                    } else {
                        &locale
                    };
                    let at = format!(
                        "{}: rule `{}`, template `{template}` {channel} ({shown}), example {}:{}",
                        rule.location,
                        rule.id,
                        example.file.display(),
                        example.line
                    );
                    let input = PreviewInput {
                        rule_id: &rule.id,
                        template,
                        accepted: &example.accepted,
                        customer: &doc,
                    };
                    match render_preview(input, &authoring.templates, channel, parsed.as_ref()) {
                        Err(e) => problems.push(format!("{at}: {e}")),
                        Ok(mut parts) if channel == Channel::Sms => {
                            let body = parts.take(Part::Sms).unwrap_or_default();
                            let size = measure_sms(&body);
                            if size.segments > settings.render.sms_max_segments {
                                problems.push(format!(
                                    "{at}: the SMS takes {} segments ({}, {} units), over the budget of {} ([render] sms_max_segments)",
                                    size.segments, size.encoding, size.units, settings.render.sms_max_segments
                                ));
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            println!("{p}");
        }
        anyhow::bail!("{} problem(s) found", problems.len());
    }
    println!(
        "ok: config, {} rules, {} templates; {} renders of {} example events checked",
        authoring.rules.len(),
        authoring.templates.names().count(),
        renders,
        examples.len()
    );
    Ok(())
}

/// Every valid event of `dir/*.jsonl`, and the customers they define (inline objects and
/// `customer.upserted`, merged in order). Lines that are not valid events are skipped: example
/// folders also hold samples of what forewarn refuses.
fn read_examples(dir: &Path) -> anyhow::Result<(Vec<Example>, HashMap<String, CustomerDoc>)> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut examples = Vec::new();
    let mut customers: HashMap<String, CustomerDoc> = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for (i, line) in text.lines().enumerate() {
            let Ok(event) = CloudEvent::parse(line.as_bytes(), None) else {
                continue;
            };
            let Ok(payload) = Payload::parse(event.event_type, &event.data) else {
                continue;
            };
            if let Some(CustomerRef::Inline { id, object }) = payload.customer() {
                customers
                    .entry(id.as_str().to_owned())
                    .or_default()
                    .merge(object);
            }
            examples.push(Example {
                accepted: Accepted { event, payload },
                file: file.clone(),
                line: i + 1,
            });
        }
    }
    Ok((examples, customers))
}
