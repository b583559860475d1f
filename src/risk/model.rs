//! The built-in models: logistic regressions whose coefficients live in `rules/risk.toml`, a
//! data file a data team edits (or `forewarn risk fit` writes) and `check` validates.
//!
//! `p = 1 / (1 + e^-(intercept + Σ weight × value))`. Each term's `weight × value` is its
//! contribution to the logit, which is what an explanation shows: they sum, with the intercept,
//! to the logit exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use super::features::{Feature, FeatureValues, Target, ValueUnit};
use crate::domain::Money;
use crate::rules::{LoadError, Location};

/// The shipped model, used when the rules folder has no `risk.toml`.
const EMBEDDED: &str = include_str!("../../rules/risk.toml");

/// Both models and how scores are read.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskModel {
    /// `risk.delay`.
    pub delay: Logistic,
    /// `risk.churn`.
    pub churn: Logistic,
    /// How long a `risk.scored` event overrides the built-in score.
    pub external_valid_for: Duration,
    /// How order values are made comparable.
    pub currency: CurrencyUnit,
    /// The file it came from; `None` for the embedded default.
    pub file: Option<PathBuf>,
}

/// One logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    /// Which score.
    pub target: Target,
    /// Recorded with every score it gives.
    pub name: String,
    /// The logit with every feature at 0.
    pub intercept: f64,
    /// Features with a weight, in the order of [`Feature::ALL`].
    pub terms: Vec<Term>,
}

/// One feature's place in a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    /// The feature.
    pub feature: Feature,
    /// Its coefficient, per unit of the feature.
    pub weight: f64,
    /// The value used when the feature cannot be computed (no carrier history, no order).
    pub when_unknown: f64,
}

/// One score with how it came about.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0..1.
    pub probability: f64,
    /// intercept + Σ contributions.
    pub logit: f64,
    /// The model's intercept.
    pub intercept: f64,
    /// One per term, in the model's order.
    pub terms: Vec<Contribution>,
}

/// One term of one score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    /// The feature.
    pub feature: Feature,
    /// The value used.
    pub value: f64,
    /// False when `value` is the model's `when_unknown`.
    pub known: bool,
    /// weight × value, in logit units.
    pub contribution: f64,
}

/// The logistic function.
pub fn sigmoid(logit: f64) -> f64 {
    1.0 / (1.0 + (-logit).exp())
}

impl Logistic {
    /// Scores `values`.
    pub fn score(&self, values: &FeatureValues) -> Score {
        let terms: Vec<Contribution> = self
            .terms
            .iter()
            .map(|t| {
                let known = values.get(t.feature);
                let value = known.unwrap_or(t.when_unknown);
                Contribution {
                    feature: t.feature,
                    value,
                    known: known.is_some(),
                    contribution: t.weight * value,
                }
            })
            .collect();
        let logit = self.intercept + terms.iter().map(|t| t.contribution).sum::<f64>();
        Score {
            probability: sigmoid(logit),
            logit,
            intercept: self.intercept,
            terms,
        }
    }

    /// Just the probability, for evaluation over many rows.
    pub fn probability(&self, values: &FeatureValues) -> f64 {
        let logit = self.intercept
            + self
                .terms
                .iter()
                .map(|t| t.weight * values.get(t.feature).unwrap_or(t.when_unknown))
                .sum::<f64>();
        sigmoid(logit)
    }
}

/// Order values in one unit: `rates` maps ISO 4217 codes to units per major unit of the
/// currency (`KRW = 0.00072` with `unit = "USD"`).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrencyUnit {
    /// The unit's name, for people.
    pub unit: String,
    /// Units per major unit of each currency.
    pub rates: BTreeMap<String, f64>,
}

impl ValueUnit for CurrencyUnit {
    fn value_of(&self, money: &Money) -> Option<f64> {
        let rate = self.rates.get(&money.currency)?;
        let exponent = iso_currency::Currency::from_code(&money.currency)
            .and_then(|c| c.exponent())
            .unwrap_or(0);
        Some(money.minor as f64 / 10f64.powi(i32::from(exponent)) * rate)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    external: Option<RawExternal>,
    currency: Option<Spanned<RawCurrency>>,
    delay: Option<Spanned<RawModel>>,
    churn: Option<Spanned<RawModel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternal {
    valid_for_hours: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurrency {
    unit: String,
    #[serde(default)]
    rates: BTreeMap<Spanned<String>, Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    intercept: Spanned<f64>,
    #[serde(default)]
    weights: BTreeMap<Spanned<String>, Spanned<f64>>,
    #[serde(default)]
    when_unknown: BTreeMap<Spanned<String>, Spanned<f64>>,
}

/// How long external scores count when the file does not say.
pub const DEFAULT_EXTERNAL_HOURS: f64 = 72.0;

impl RiskModel {
    /// Loads `rules_dir/risk.toml`, or the embedded default when there is none.
    pub fn load(rules_dir: &Path) -> Result<RiskModel, Vec<LoadError>> {
        let path = rules_dir.join(crate::rules::RISK_MODEL_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => RiskModel::parse(&path, &text).map(|mut m| {
                m.file = Some(path);
                m
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RiskModel::embedded()),
            Err(e) => Err(vec![LoadError {
                location: Location::at_offset(&path, "", 0),
                message: format!("cannot read: {e}"),
            }]),
        }
    }

    /// The model shipped with forewarn.
    pub fn embedded() -> RiskModel {
        match RiskModel::parse(Path::new("<embedded risk.toml>"), EMBEDDED) {
            Ok(model) => model,
            // The embedded file is checked by a unit test; this cannot happen in a build
            // whose tests passed.
            Err(errors) => panic!("the embedded risk.toml is invalid: {errors:?}"),
        }
    }

    /// Parses a model file; every error with its place.
    pub fn parse(file: &Path, text: &str) -> Result<RiskModel, Vec<LoadError>> {
        let at = |offset: usize| Location::at_offset(file, text, offset);
        let error = |offset: usize, message: String| LoadError {
            location: at(offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            vec![error(
                e.span().map_or(0, |s| s.start),
                e.message().to_owned(),
            )]
        })?;
        let mut errors = Vec::new();
        let external_valid_for = match raw.external {
            None => Duration::minutes((DEFAULT_EXTERNAL_HOURS * 60.0) as i64),
            Some(RawExternal { valid_for_hours }) => {
                let hours = *valid_for_hours.get_ref();
                if !(hours > 0.0 && hours <= 24.0 * 366.0) {
                    errors.push(error(
                        valid_for_hours.span().start,
                        format!(
                            "`valid_for_hours` must be more than 0 and at most a year; got {hours}"
                        ),
                    ));
                }
                Duration::seconds((hours.clamp(0.0, 24.0 * 366.0) * 3600.0) as i64)
            }
        };
        let currency = match raw.currency {
            None => CurrencyUnit {
                unit: "USD".into(),
                rates: BTreeMap::from([("USD".into(), 1.0)]),
            },
            Some(spanned) => {
                let raw = spanned.into_inner();
                let mut rates = BTreeMap::new();
                for (code, rate) in raw.rates {
                    if iso_currency::Currency::from_code(code.get_ref()).is_none() {
                        errors.push(error(
                            code.span().start,
                            format!("`{}` is not an ISO 4217 currency code", code.get_ref()),
                        ));
                    }
                    if !(rate.get_ref().is_finite() && *rate.get_ref() > 0.0) {
                        errors.push(error(
                            rate.span().start,
                            format!(
                                "the rate for `{}` must be a positive number",
                                code.get_ref()
                            ),
                        ));
                    }
                    rates.insert(code.into_inner(), rate.into_inner());
                }
                CurrencyUnit {
                    unit: raw.unit,
                    rates,
                }
            }
        };
        let mut model = |target: Target, raw: Option<Spanned<RawModel>>| -> Option<Logistic> {
            let Some(raw) = raw else {
                errors.push(error(
                    text.len(),
                    format!("the `[{target}]` model is missing"),
                ));
                return None;
            };
            let raw = raw.into_inner();
            check_number(&raw.intercept, "intercept", &mut errors, &at);
            let mut weights: BTreeMap<Feature, f64> = BTreeMap::new();
            let mut unknown: BTreeMap<Feature, f64> = BTreeMap::new();
            for (table, values, into) in [
                ("weights", &raw.weights, &mut weights),
                ("when_unknown", &raw.when_unknown, &mut unknown),
            ] {
                for (name, value) in values {
                    match Feature::by_name(name.get_ref()) {
                        Some(f) if f.target() == target => {
                            check_number(value, name.get_ref(), &mut errors, &at);
                            into.insert(f, *value.get_ref());
                        }
                        Some(f) => errors.push(error(
                            name.span().start,
                            format!(
                                "`{}` is a {} feature; it cannot be used in [{target}.{table}]",
                                f.name(),
                                f.target()
                            ),
                        )),
                        None => errors.push(error(
                            name.span().start,
                            format!(
                                "unknown feature `{}` in [{target}.{table}]; {target} features are: {}",
                                name.get_ref(),
                                Feature::of(target).map(Feature::name).collect::<Vec<_>>().join(", ")
                            ),
                        )),
                    }
                }
            }
            for (feature, _) in unknown.iter().filter(|(f, _)| !weights.contains_key(f)) {
                if let Some((name, _)) = raw
                    .when_unknown
                    .iter()
                    .find(|(n, _)| n.get_ref() == feature.name())
                {
                    errors.push(error(
                        name.span().start,
                        format!("`{}` has a `when_unknown` but no weight", feature.name()),
                    ));
                }
            }
            Some(Logistic {
                target,
                name: raw.name.into_inner(),
                intercept: *raw.intercept.get_ref(),
                terms: weights
                    .into_iter()
                    .map(|(feature, weight)| Term {
                        feature,
                        weight,
                        when_unknown: unknown.get(&feature).copied().unwrap_or(0.0),
                    })
                    .collect(),
            })
        };
        let delay = model(Target::Delay, raw.delay);
        let churn = model(Target::Churn, raw.churn);
        match (delay, churn) {
            (Some(delay), Some(churn)) if errors.is_empty() => Ok(RiskModel {
                delay,
                churn,
                external_valid_for,
                currency,
                file: None,
            }),
            _ => Err(errors),
        }
    }

    /// The model for `target`.
    pub fn model(&self, target: Target) -> &Logistic {
        match target {
            Target::Delay => &self.delay,
            Target::Churn => &self.churn,
        }
    }

    /// The model for `target`, to replace.
    pub fn model_mut(&mut self, target: Target) -> &mut Logistic {
        match target {
            Target::Delay => &mut self.delay,
            Target::Churn => &mut self.churn,
        }
    }

    /// The model as a `risk.toml` file, every feature's meaning beside its weight.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Forewarn's built-in risk models: logistic regressions, p = 1 / (1 + e^-(intercept + sum of weight x value)).\n\
             # Edit by hand or write with `forewarn risk fit --input outcomes.csv`; `forewarn check` validates it.\n\
             # A feature that cannot be computed for a decision (no carrier history, no order) takes its `when_unknown`\n\
             # value (0 if none is given). The README lists every feature and the CSV columns."
        );
        let hours = self.external_valid_for.num_seconds() as f64 / 3600.0;
        let _ = writeln!(
            out,
            "\n# A risk.scored event from a team's own model replaces the built-in score for its subject this long.\n\
             [external]\nvalid_for_hours = {}",
            number(hours)
        );
        let _ = writeln!(
            out,
            "\n# Order values are converted to one unit before `log_order_value` and `log_lifetime_value`;\n\
             # a currency without a rate leaves them unknown.\n[currency]\nunit = {:?}\n\n[currency.rates]",
            self.currency.unit
        );
        for (code, rate) in &self.currency.rates {
            let _ = writeln!(out, "{code} = {}", number(*rate));
        }
        for target in Target::ALL {
            let model = self.model(target);
            let what = match target {
                Target::Delay => "risk.delay: the probability that this shipment misses its promise by a day or more.",
                Target::Churn => "risk.churn: the probability that this customer is lost after this experience.",
            };
            let _ = writeln!(
                out,
                "\n# {what}\n[{target}]\nname = {:?}\nintercept = {}\n\n[{target}.weights]",
                model.name,
                number(model.intercept)
            );
            for term in &model.terms {
                let _ = writeln!(
                    out,
                    "{} = {}    # {}",
                    term.feature.name(),
                    number(term.weight),
                    term.feature.meaning()
                );
            }
            let _ = writeln!(out, "\n[{target}.when_unknown]");
            for term in model.terms.iter().filter(|t| t.when_unknown != 0.0) {
                let _ = writeln!(
                    out,
                    "{} = {}",
                    term.feature.name(),
                    number(term.when_unknown)
                );
            }
        }
        out
    }
}

/// A number as TOML writes it: always with a decimal point or exponent, six significant digits.
fn number(x: f64) -> String {
    let text = format!("{}", (x * 1e6).round() / 1e6);
    if text.contains('.') || text.contains('e') || text.contains("inf") || text.contains("NaN") {
        text
    } else {
        format!("{text}.0")
    }
}

fn check_number(
    value: &Spanned<f64>,
    what: &str,
    errors: &mut Vec<LoadError>,
    at: &dyn Fn(usize) -> Location,
) {
    if !value.get_ref().is_finite() || value.get_ref().abs() > 1e6 {
        errors.push(LoadError {
            location: at(value.span().start),
            message: format!(
                "`{what}` must be a finite number of reasonable size; got {}",
                value.get_ref()
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_loads_and_uses_every_feature() {
        let model = RiskModel::embedded();
        assert_eq!(model.delay.terms.len(), Feature::of(Target::Delay).count());
        assert_eq!(model.churn.terms.len(), Feature::of(Target::Churn).count());
        assert!(model.currency.rates.contains_key("KRW"));
    }

    #[test]
    fn a_written_model_reads_back_the_same() {
        let model = RiskModel::embedded();
        let again = RiskModel::parse(Path::new("x.toml"), &model.to_toml()).unwrap();
        assert_eq!(again, model);
    }

    #[test]
    fn mistakes_are_reported_at_their_place() {
        let text = "[delay]\nname = \"d\"\nintercept = -2\n[delay.weights]\ncarrier_late_share = 3\nfirst_order = 1\n\
                    [churn]\nname = \"c\"\nintercept = 1\n[churn.weights]\ndays_late = inf\n\
                    [currency]\nunit = \"USD\"\n[currency.rates]\nXYZ = 1\n";
        let errors: Vec<String> = RiskModel::parse(Path::new("risk.toml"), text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("risk.toml:15:1: `XYZ` is not an ISO 4217")),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("risk.toml:5:1: unknown feature `carrier_late_share` in [delay.weights]; delay features are: carrier_late_share_30d")), "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("risk.toml:6:1: `first_order` is a churn feature")),
            "{errors:#?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("risk.toml:11:13: `days_late` must be a finite number")),
            "{errors:#?}"
        );
    }

    #[test]
    fn contributions_and_the_intercept_sum_to_the_logit() {
        let model = RiskModel::embedded();
        let mut values = FeatureValues::default();
        values.set(Feature::BadExperiences90d, Some(3.0));
        values.set(Feature::FirstOrder, Some(1.0));
        values.set(Feature::DaysLate, Some(2.5));
        let score = model.churn.score(&values);
        let sum: f64 = score.intercept + score.terms.iter().map(|t| t.contribution).sum::<f64>();
        assert!((sum - score.logit).abs() < 1e-12);
        assert!((sigmoid(score.logit) - score.probability).abs() < 1e-15);
        assert!((model.churn.probability(&values) - score.probability).abs() < 1e-15);
        let unknown = score
            .terms
            .iter()
            .find(|t| t.feature == Feature::LogOrderValue)
            .unwrap();
        assert!(!unknown.known);
    }
}
