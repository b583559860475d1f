//! One decision's two scores, where each came from, and why: what rules read as `risk`, what
//! the outbox stores with the message, and what the customer timeline prints.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::features::{compute, Feature, Subject, Target};
use super::model::{RiskModel, Score};
use crate::domain::History;
use crate::domain::{RiskRecord, RiskScores};

/// How many terms a one-line explanation names.
const EXPLAINED_TERMS: usize = 3;

/// Where a score came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The built-in model.
    Builtin,
    /// A `risk.scored` event.
    External {
        /// When it was scored.
        scored_at: DateTime<Utc>,
    },
}

/// One score of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    /// Which score.
    pub target: Target,
    /// The probability used.
    pub probability: f64,
    /// The model that gave it.
    pub model: String,
    /// Built-in or external.
    pub source: Source,
    /// The built-in model's score with its terms, kept even when an external score won, so
    /// the two can be compared.
    pub builtin: Score,
    /// The currency unit order values are in, for explanations.
    pub unit: String,
}

/// Both scores of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskAssessment {
    /// `risk.delay`.
    pub delay: Assessed,
    /// `risk.churn`.
    pub churn: Assessed,
}

/// The order an incident's customers hear in: the churn risk weighted by what the customer is
/// worth — `churn × (1 + ln(1 + lifetime value))`, in the model's currency unit — so the
/// customers most likely to leave, and most costly to lose, are told first. The value is the
/// customer record's `lifetime_value`, else the orders forewarn has seen; unknown counts as 0.
pub fn value_weighted_urgency(
    assessment: &RiskAssessment,
    customer: &crate::domain::CustomerDoc,
    model: &RiskModel,
) -> f64 {
    use super::features::ValueUnit;
    let stated = customer
        .as_value()
        .get("lifetime_value")
        .and_then(|v| crate::domain::Money::deserialize(v).ok())
        .and_then(|money| model.currency.value_of(&money))
        .map(|value| value.max(0.0).ln_1p());
    let seen = || {
        assessment
            .churn
            .builtin
            .terms
            .iter()
            .find(|t| t.feature == Feature::LogLifetimeValue && t.known)
            .map(|t| t.value)
    };
    let log_value = stated.or_else(seen).unwrap_or(0.0);
    assessment.churn.probability * (1.0 + log_value)
}

/// Scores `subject`: features from `history` as of its time, both built-in models, then any
/// external score still valid for the same subject in place of the built-in one.
pub fn assess(subject: &Subject<'_>, history: &History, model: &RiskModel) -> RiskAssessment {
    let values = compute(subject, history, &model.currency);
    let shipment = subject.shipment.map(|s| &s.id);
    let order = subject.order_id();
    let (external_delay, external_churn) = history.external_at(
        subject.customer,
        shipment,
        order,
        subject.at,
        model.external_valid_for,
    );
    let one = |target: Target, external: Option<(f64, &str, DateTime<Utc>)>| {
        let builtin = model.model(target).score(&values);
        match external {
            Some((probability, name, scored_at)) => Assessed {
                target,
                probability,
                model: name.to_owned(),
                source: Source::External { scored_at },
                builtin,
                unit: model.currency.unit.clone(),
            },
            None => Assessed {
                target,
                probability: builtin.probability,
                model: model.model(target).name.clone(),
                source: Source::Builtin,
                builtin,
                unit: model.currency.unit.clone(),
            },
        }
    };
    RiskAssessment {
        delay: one(
            Target::Delay,
            external_delay.and_then(|s| Some((s.delay?, s.model.as_str(), s.scored_at))),
        ),
        churn: one(
            Target::Churn,
            external_churn.and_then(|s| Some((s.churn?, s.model.as_str(), s.scored_at))),
        ),
    }
}

impl RiskAssessment {
    /// The two probabilities.
    pub fn scores(&self) -> RiskScores {
        RiskScores {
            delay: self.delay.probability,
            churn: self.churn.probability,
        }
    }

    /// What the outbox stores.
    pub fn record(&self) -> RiskRecord {
        RiskRecord {
            scores: self.scores(),
            external: [self.delay.is_external(), self.churn.is_external()],
            explanation: self.to_json_text(),
        }
    }

    /// As stored with the outreach: scores, models, and every feature's value and
    /// contribution, as JSON text. Written directly rather than through a `serde_json::Value`
    /// tree: one is built per outreach, and the tree's allocations cost intake a fifth of its
    /// throughput (measured with `cargo bench --bench intake`).
    pub fn to_json_text(&self) -> String {
        let mut out = String::with_capacity(1536);
        out.push_str("{\"delay\":");
        self.delay.write_json(&mut out);
        out.push_str(",\"churn\":");
        self.churn.write_json(&mut out);
        out.push('}');
        out
    }

    /// [`Self::to_json_text`] parsed, for reading in code and tests.
    pub fn to_json(&self) -> Value {
        serde_json::from_str(&self.to_json_text()).unwrap_or(Value::Null)
    }

    /// "delay 0.31 (builtin-delay-2026-11): …; churn 0.74 (…): 3 bad experience(s) in 90 days
    /// (+1.65), first order (+0.60), …"
    pub fn explain(&self) -> String {
        format!("{}; {}", self.delay.explain(), self.churn.explain())
    }
}

impl Assessed {
    /// Built-in or external.
    pub fn is_external(&self) -> bool {
        matches!(self.source, Source::External { .. })
    }

    /// `{"score", "model", "why"? (the one-line explanation), "builtin": {"score", "logit",
    /// "intercept", "terms": [[feature, value, contribution], …], "unknown": [features at
    /// their when_unknown value]}, "external"?: {"scored_at"}}`. No `why` when the model knew
    /// nothing of the decision (every feature unknown, no external score): an outage notice's
    /// delay risk is the model's prior, and a line about carriers would only mislead.
    fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(out, "{{\"score\":{},\"model\":", round(self.probability));
        push_json_string(out, &self.model);
        if self.is_external() || self.builtin.terms.iter().any(|t| t.known) {
            out.push_str(",\"why\":");
            push_json_string(out, &self.explain());
        }
        let b = &self.builtin;
        let _ = write!(
            out,
            ",\"builtin\":{{\"score\":{},\"logit\":{},\"intercept\":{},\"terms\":[",
            round(b.probability),
            round(b.logit),
            round(b.intercept)
        );
        for (i, t) in b.terms.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            // Feature names are fixed identifiers: no escaping needed.
            let _ = write!(
                out,
                "{comma}[\"{}\",{},{}]",
                t.feature.name(),
                round(t.value),
                round(t.contribution)
            );
        }
        out.push_str("],\"unknown\":[");
        for (i, t) in b.terms.iter().filter(|t| !t.known).enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, "{comma}\"{}\"", t.feature.name());
        }
        out.push_str("]}");
        if let Source::External { scored_at } = &self.source {
            let _ = write!(
                out,
                ",\"external\":{{\"scored_at\":\"{}\"}}",
                scored_at.to_rfc3339()
            );
        }
        out.push('}');
    }

    /// One line: the score, its model, and the terms that moved it most.
    pub fn explain(&self) -> String {
        let mut line = format!("{} {:.2} ({})", self.target, self.probability, self.model);
        if let Source::External { scored_at } = &self.source {
            line.push_str(&format!(
                ", external score of {}; built-in says {:.2}",
                crate::domain::time_shown(*scored_at),
                self.builtin.probability
            ));
            return line;
        }
        let mut terms: Vec<_> = self
            .builtin
            .terms
            .iter()
            .filter(|t| t.contribution.abs() >= 0.005)
            .collect();
        terms.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        let parts: Vec<String> = terms
            .iter()
            .take(EXPLAINED_TERMS)
            .map(|t| {
                let what = if t.known {
                    t.feature.describe(t.value, &self.unit)
                } else {
                    t.feature.describe_unknown().to_owned()
                };
                format!("{what} ({:+.2})", t.contribution)
            })
            .collect();
        if !parts.is_empty() {
            line.push_str(": ");
            line.push_str(&parts.join(", "));
        }
        line
    }

    /// The contribution of `feature`, if the model uses it.
    pub fn contribution(&self, feature: Feature) -> Option<f64> {
        self.builtin
            .terms
            .iter()
            .find(|t| t.feature == feature)
            .map(|t| t.contribution)
    }
}

/// Six decimals: enough for any explanation, and half the stored size of a full f64. Never
/// NaN or infinite (scores and features are finite), so always a JSON number.
fn round(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r.is_finite() {
        r + 0.0 // -0 → 0
    } else {
        0.0
    }
}

/// `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    // serde_json's escaping, without building a Value.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, ExternalScore};

    #[test]
    fn an_explanation_names_the_terms_that_moved_the_score_most() {
        let model = RiskModel::embedded();
        let customer = CustomerId::parse("c-1").unwrap();
        let mut history = History::default();
        let at: DateTime<Utc> = "2026-11-20T12:00:00Z".parse().unwrap();
        for (i, day) in ["2026-10-01", "2026-10-20", "2026-11-19"]
            .iter()
            .enumerate()
        {
            history.record_experience(
                &customer,
                crate::domain::Experience {
                    kind: crate::domain::ExperienceKind::Delay,
                    entity: format!("s{i}"),
                    at: format!("{day}T00:00:00Z").parse().unwrap(),
                },
            );
        }
        let subject = Subject {
            at,
            customer: &customer,
            shipment: None,
            order: None,
            promised_by: None,
        };
        let a = assess(&subject, &history, &model);
        assert_eq!(a.churn.source, Source::Builtin);
        let why = a.churn.explain();
        assert!(
            why.starts_with(&format!("churn {:.2} (builtin-churn-2026-11): 3 bad experience(s) in 90 days (+1.65), order value unknown (+0.60)", a.churn.probability)),
            "{why}"
        );
        let stored = a.to_json();
        assert_eq!(stored["churn"]["why"], why);
        assert_eq!(
            stored["churn"]["score"].as_f64(),
            Some(round(a.churn.probability))
        );

        // An external churn score wins, and says so; the built-in one stays beside it.
        history.external.push(ExternalScore {
            customer_id: Some(customer.clone()),
            shipment_id: None,
            order_id: None,
            delay: None,
            churn: Some(0.9),
            // A name that needs escaping in the stored JSON.
            model: "ml \"v7\"".into(),
            scored_at: "2026-11-20T11:00:00Z".parse().unwrap(),
        });
        let b = assess(&subject, &history, &model);
        assert_eq!(b.churn.probability, 0.9);
        assert_eq!(
            b.delay.model, "builtin-delay-2026-11",
            "a churn score leaves delay alone"
        );
        assert!(
            b.churn.explain().starts_with(
                "churn 0.90 (ml \"v7\"), external score of 2026-11-20 11:00 UTC; built-in says"
            ),
            "{}",
            b.churn.explain()
        );
        assert_eq!(b.churn.builtin, a.churn.builtin);
        let stored = b.to_json();
        assert_eq!(stored["churn"]["model"], "ml \"v7\"");
        assert_eq!(
            stored["churn"]["external"]["scored_at"],
            "2026-11-20T11:00:00+00:00"
        );
        assert_eq!(b.record().external, [false, true]);
    }
}
