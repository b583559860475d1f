//! Every rule tried on every example event of its types, as `check` does and as `run` and a
//! reload do before a set goes live: its expressions (`when`, `once_per`, `discount_percent`)
//! must evaluate, and its template must render on every channel and in every locale it has —
//! so a variable an event does not carry, a condition that fails on real data, or an SMS over
//! the segment budget is refused here and never a blank, a silent non-match or a surprise bill
//! in production.

use chrono::{DateTime, Utc};

use super::examples::{customer_id_of, example_assessment, example_bindings, in_locale};
use super::examples::{Example, Examples};
use super::Authoring;
use crate::domain::{Channel, CustomerDoc, Locale, Offer, RiskScores};
use crate::pipeline::{issue_offer, offer_percent};
use crate::render::RenderInput;
use crate::render::{event_tracking_link, measure_sms, render_parts, sms_as_sent, Part};
use crate::rules::{Location, Rule};

/// What trying the set on the examples found.
#[derive(Debug, Default)]
pub struct Review {
    /// Each problem once, in the order met.
    pub problems: Problems,
    /// How many renders were tried.
    pub renders: usize,
}

/// Tries every rule of `authoring` on every example event of its types, as of `now`.
pub fn review(
    authoring: &Authoring,
    examples: &Examples,
    sms_max_segments: usize,
    now: DateTime<Utc>,
) -> Review {
    let checker = Checker {
        authoring,
        sms_max_segments,
        now,
    };
    let mut review = Review::default();
    for rule in authoring.rules.rules() {
        for example in examples
            .events
            .iter()
            .filter(|e| rule.on.contains(&e.accepted.event.event_type))
        {
            let customer = examples.customer_for(&example.accepted);
            let risk = checker.risk(example, &customer);
            let offer = checker.expressions(rule, example, &customer, risk, &mut review.problems);
            // A template handlebars refused is reported where it is broken, once.
            if !authoring.templates.broken(&rule.template) {
                review.renders += checker.renders(
                    rule,
                    example,
                    &customer,
                    offer.as_ref(),
                    risk,
                    &mut review.problems,
                );
            }
        }
    }
    review
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
        let id = customer_id_of(customer, "example");
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
#[derive(Debug, Default)]
pub struct Problems {
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

    /// How many distinct problems.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// One line per problem: `file:line:col: message (where it was met)`, and how many more
    /// places met it.
    pub fn lines(&self) -> Vec<String> {
        self.found
            .iter()
            .map(|(problem, contexts)| match contexts.len() {
                1 => format!("{problem} {}", contexts[0]),
                n => format!("{problem} {} and {} more like it", contexts[0], n - 1),
            })
            .collect()
    }
}
