//! One decision's two scores, where each came from, and why: what rules read as `risk`, what
//! the outbox stores with the message, and what the customer timeline prints.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

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
}

/// Both scores of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskAssessment {
    /// `risk.delay`.
    pub delay: Assessed,
    /// `risk.churn`.
    pub churn: Assessed,
}

/// Scores `subject`: features from `history` as of its time, both built-in models, then any
/// external score still valid for the same subject in place of the built-in one.
pub fn assess(subject: &Subject<'_>, history: &History, model: &RiskModel) -> RiskAssessment {
    let values = compute(subject, history, &model.currency);
    let shipment = subject.shipment.map(|s| &s.id);
    let order = subject
        .order
        .or_else(|| subject.shipment.and_then(|s| s.order_id.as_ref()));
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
            },
            None => Assessed {
                target,
                probability: builtin.probability,
                model: model.model(target).name.clone(),
                source: Source::Builtin,
                builtin,
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
            explanation: self.to_json(),
        }
    }

    /// As stored with the outreach: scores, models, and every feature's value and
    /// contribution.
    pub fn to_json(&self) -> Value {
        json!({"delay": self.delay.to_json(), "churn": self.churn.to_json()})
    }

    /// "delay 0.31 (builtin-delay-2026-11): …; churn 0.74 (…): 3 bad experience(s) in 90 days
    /// (+1.65), first order (+0.60), …"
    pub fn explain(&self) -> String {
        format!("{}; {}", self.delay.explain(), self.churn.explain())
    }
}

impl Assessed {
    /// `{"score", "model", "why" (the one-line explanation), "builtin": {"score", "logit", "intercept", "terms": [[feature,
    /// value, contribution], …], "unknown": [features at their when_unknown value]},
    /// "external"?: {"scored_at"}}`: compact, as one is stored with every outreach.
    fn to_json(&self) -> Value {
        let terms: Vec<Value> = self
            .builtin
            .terms
            .iter()
            .map(|t| json!([t.feature.name(), round(t.value), round(t.contribution)]))
            .collect();
        let unknown: Vec<&str> = self
            .builtin
            .terms
            .iter()
            .filter(|t| !t.known)
            .map(|t| t.feature.name())
            .collect();
        let mut out = json!({
            "score": round(self.probability),
            "model": self.model,
            "why": self.explain(),
            "builtin": {"score": round(self.builtin.probability), "logit": round(self.builtin.logit),
                        "intercept": round(self.builtin.intercept), "terms": terms,
                        "unknown": unknown},
        });
        if let Source::External { scored_at } = &self.source {
            out["external"] = json!({"scored_at": scored_at.to_rfc3339()});
        }
        out
    }

    /// One line: the score, its model, and the terms that moved it most.
    pub fn explain(&self) -> String {
        let mut line = format!("{} {:.2} ({})", self.target, self.probability, self.model);
        if let Source::External { scored_at } = &self.source {
            line.push_str(&format!(
                ", external score of {}; built-in says {:.2}",
                scored_at.format("%Y-%m-%d %H:%M UTC"),
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
                    t.feature.describe(t.value)
                } else {
                    format!("{} unknown", t.feature.name())
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

/// Six decimals: enough for any explanation, and half the stored size of a full f64.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
