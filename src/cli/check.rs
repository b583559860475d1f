//! `forewarn check`: everything a CX author can get wrong, found before a customer sees it.
//!
//! Validates the config, every template and every rule, then tries each rule on every example
//! event of its types: its expressions (`when`, `once_per`, `discount_percent`) must evaluate,
//! and its template must render on every channel and in every locale it has — so a variable
//! an event does not carry, a condition that fails on real data, or an SMS over the segment
//! budget is an error here and never a blank, a silent non-match or a surprise bill in
//! production.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::examples::{in_locale, Example, Examples};
use crate::authoring::Authoring;
use crate::cli::examples::{example_assessment, example_bindings};
use crate::config::Settings;
use crate::domain::{Channel, CustomerDoc, Locale, Offer, RiskScores};
use crate::pipeline::{issue_offer, offer_percent};
use crate::render::{event_tracking_link, render_parts, sms_as_sent, RenderInput};
use crate::render::{measure_sms, Part};
use crate::rules::{Location, Rule};

/// The default opt-out line's number: fine for a demo, wrong for a real sender.
const PLACEHOLDER_OPT_OUT: &str = "080-000-0000";

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
    let examples = Examples::read(&settings.paths.examples)?;
    let checker = Checker {
        authoring: &authoring,
        sms_max_segments: settings.render.sms_max_segments,
        now: Utc::now(),
    };

    let mut problems = Problems::default();
    let mut renders = 0;
    for rule in authoring.rules.rules() {
        for example in examples
            .events
            .iter()
            .filter(|e| rule.on.contains(&e.accepted.event.event_type))
        {
            let customer = examples.customer_for(&example.accepted);
            let risk = checker.risk(example, &customer);
            let offer = checker.expressions(rule, example, &customer, risk, &mut problems);
            renders += checker.renders(
                rule,
                example,
                &customer,
                offer.as_ref(),
                risk,
                &mut problems,
            );
        }
    }
    if !problems.is_empty() {
        problems.print();
        anyhow::bail!("{} problem(s) found", problems.len());
    }
    if settings
        .render
        .korean_ad_opt_out
        .contains(PLACEHOLDER_OPT_OUT)
    {
        println!(
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
                println!(
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
                println!(
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
    println!(
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

/// What every check needs.
struct Checker<'a> {
    authoring: &'a Authoring,
    sms_max_segments: usize,
    now: DateTime<Utc>,
}

impl Checker<'_> {
    /// The example's scores from the event alone (no history): what rules and templates see.
    fn risk(&self, example: &Example, customer: &CustomerDoc) -> RiskScores {
        let id = super::customer_id_of(customer, "example");
        example_assessment(&example.accepted, &id, &self.authoring.risk, self.now).scores()
    }

    /// The rule's expressions on one example: one that fails here would fail on the same event
    /// in production, and the rule would not match. Returns the offer it would issue.
    fn expressions(
        &self,
        rule: &Rule,
        example: &Example,
        customer: &CustomerDoc,
        risk: RiskScores,
        problems: &mut Problems,
    ) -> Option<Offer> {
        let mut bindings = example_bindings(&example.accepted, customer, risk, self.now);
        // At the expression itself, which is what to fix.
        let mut failed = |at: &Location, message: String| {
            problems.add(
                format!("{at}: rule `{}`: {message}", rule.id),
                format!("(example {}:{})", example.file.display(), example.line),
            );
        };
        if let Some(when) = &rule.when {
            match when.evaluate(&mut bindings) {
                Err(e) => failed(&when.location, format!("`when` fails: {e}")),
                // As when it runs: a rule whose `when` is false goes no further, so its
                // `once_per` and offer may rely on what `when` checked (`has(data.severity)`).
                Ok(cel::Value::Bool(false)) => return None,
                Ok(_) => {}
            }
        }
        if let Some(once_per) = &rule.once_per {
            if let Err(e) = once_per.evaluate(&mut bindings) {
                failed(&once_per.location, format!("`once_per` fails: {e}"));
            }
        }
        let spec = rule.offer.as_ref()?;
        match offer_percent(spec, &mut bindings).and_then(|p| issue_offer(p, spec, self.now)) {
            Ok(offer) => offer,
            Err(e) => {
                failed(&spec.discount_percent.location, e);
                None
            }
        }
    }

    /// The rule's template for one example on every channel and locale it has; returns how
    /// many renders were tried.
    fn renders(
        &self,
        rule: &Rule,
        example: &Example,
        customer: &CustomerDoc,
        offer: Option<&Offer>,
        risk: RiskScores,
        problems: &mut Problems,
    ) -> usize {
        let templates = &self.authoring.templates;
        let template = &rule.template;
        let mut renders = 0;
        for channel in Channel::ALL
            .into_iter()
            .filter(|c| templates.serves(template, *c))
        {
            for locale in templates.locales(template) {
                renders += 1;
                let parsed = Locale::parse(&locale).ok();
                let doc = in_locale(customer, parsed.as_ref());
                let shown = if locale.is_empty() {
                    "default"
                } else {
                    &locale
                };
                // What was being checked, after the place to fix it.
                let context = format!(
                    "(rule `{}` at {}; {channel}, {shown}; example {}:{})",
                    rule.id,
                    rule.location,
                    example.file.display(),
                    example.line
                );
                let input = RenderInput {
                    rule_id: &rule.id,
                    template,
                    accepted: &example.accepted,
                    doc: &doc,
                    tracking: event_tracking_link(&example.accepted),
                    offer,
                    risk: Some(risk),
                    category: rule.category,
                };
                match render_parts(&input, templates, channel, parsed.as_ref()) {
                    Err(e) => problems.add(e.to_string(), context),
                    Ok(mut parts) if channel == Channel::Sms => {
                        let body = parts.take(Part::Sms).unwrap_or_default();
                        let korean = parts.locale.starts_with("ko");
                        let body = sms_as_sent(body, &input, templates, korean);
                        let size = measure_sms(&body);
                        if size.segments > self.sms_max_segments {
                            let file = templates
                                .file(template, Part::Sms, &parts.locale)
                                .map_or_else(
                                    || rule.location.to_string(),
                                    |f| format!("{}:1:1", f.display()),
                                );
                            problems.add(
                                format!(
                                    "{file}: the SMS takes {} segments ({}, {} units), over \
                                     the budget of {} ([render] sms_max_segments)",
                                    size.segments, size.encoding, size.units, self.sms_max_segments
                                ),
                                context,
                            );
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        renders
    }
}

/// Problems found, each once: the same mistake met on several rules, examples or locales is
/// one line with the first place it was met and how many more.
#[derive(Default)]
struct Problems {
    /// `file:line:col: message` → where it was met, in order.
    found: Vec<(String, Vec<String>)>,
}

impl Problems {
    fn add(&mut self, problem: String, context: String) {
        match self.found.iter_mut().find(|(p, _)| *p == problem) {
            Some((_, contexts)) => contexts.push(context),
            None => self.found.push((problem, vec![context])),
        }
    }

    fn len(&self) -> usize {
        self.found.len()
    }

    fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    fn print(&self) {
        for (problem, contexts) in &self.found {
            match contexts.len() {
                1 => println!("{problem} {}", contexts[0]),
                n => println!("{problem} {} and {} more like it", contexts[0], n - 1),
            }
        }
    }
}
