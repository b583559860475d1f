//! Fitting and evaluating the built-in models on observed outcomes (`forewarn risk fit` and
//! `forewarn risk eval`).
//!
//! The input is a CSV file, one row per decision: a column per feature (named as in
//! `risk.toml`; an empty cell means the feature was unknown), and the outcome columns `late`
//! (for the delay model) and `churned` (for the churn model), each 0 or 1, or empty when not
//! yet known. Other columns (ids, dates) are ignored. The fit is an L2-regularised logistic
//! regression by `linfa-logistic` on standardised features, converted back to raw units so the
//! written weights read per hour, per order, per day.

use std::path::Path;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

use super::features::{Feature, FeatureValues, Target};
use super::model::{Logistic, Term};

/// Why a fit or an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The file could not be read as CSV.
    #[error("{0}")]
    Csv(String),
    /// A cell holds something that is not a number.
    #[error("{file}:{line}: column `{column}`: {message}")]
    Cell {
        /// The file.
        file: String,
        /// Its line.
        line: u64,
        /// The column's header.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Not enough to learn from.
    #[error("{0}")]
    Data(String),
    /// The solver failed.
    #[error("the fit did not converge: {0}")]
    Solver(String),
}

/// One decision and what became of it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Feature values.
    pub values: FeatureValues,
    /// Late (delay model), if known.
    pub late: Option<bool>,
    /// Churned (churn model), if known.
    pub churned: Option<bool>,
}

impl Row {
    /// The outcome for `target`.
    pub fn outcome(&self, target: Target) -> Option<bool> {
        match target {
            Target::Delay => self.late,
            Target::Churn => self.churned,
        }
    }
}

/// A CSV file of outcomes.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// The rows.
    pub rows: Vec<Row>,
    /// The feature columns it has.
    pub features: Vec<Feature>,
    /// The outcome columns it has.
    pub targets: Vec<Target>,
    /// Columns that are neither, ignored.
    pub ignored: Vec<String>,
}

impl Outcomes {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Outcomes, FitError> {
        let file = path.display().to_string();
        let mut reader =
            csv::Reader::from_path(path).map_err(|e| FitError::Csv(format!("{file}: {e}")))?;
        let headers = reader
            .headers()
            .map_err(|e| FitError::Csv(format!("{file}: {e}")))?
            .clone();
        enum Column {
            Feature(Feature),
            Outcome(Target),
            Ignored,
        }
        let mut outcomes = Outcomes::default();
        let columns: Vec<Column> = headers
            .iter()
            .map(|name| {
                let name = name.trim();
                if let Some(f) = Feature::by_name(name) {
                    outcomes.features.push(f);
                    Column::Feature(f)
                } else if let Some(t) = Target::ALL.into_iter().find(|t| t.outcome_column() == name)
                {
                    outcomes.targets.push(t);
                    Column::Outcome(t)
                } else {
                    outcomes.ignored.push(name.to_owned());
                    Column::Ignored
                }
            })
            .collect();
        if outcomes.targets.is_empty() {
            return Err(FitError::Data(format!(
                "{file}: no outcome column; add `late` (delay model) and/or `churned` (churn model), 0 or 1"
            )));
        }
        for record in reader.records() {
            let record = record.map_err(|e| FitError::Csv(format!("{file}: {e}")))?;
            let line = record.position().map_or(0, |p| p.line());
            let mut row = Row::default();
            for (cell, (column, header)) in record.iter().zip(columns.iter().zip(headers.iter())) {
                let cell = cell.trim();
                let bad = |message: String| FitError::Cell {
                    file: file.clone(),
                    line,
                    column: header.to_owned(),
                    message,
                };
                match column {
                    Column::Ignored => {}
                    Column::Feature(f) if cell.is_empty() => row.values.set(*f, None),
                    Column::Feature(f) => {
                        let value: f64 = cell
                            .parse()
                            .map_err(|_| bad(format!("`{cell}` is not a number")))?;
                        if !value.is_finite() {
                            return Err(bad(format!("`{cell}` is not a finite number")));
                        }
                        row.values.set(*f, Some(value));
                    }
                    Column::Outcome(t) => {
                        let outcome = match cell {
                            "" => None,
                            "1" | "true" | "TRUE" | "True" => Some(true),
                            "0" | "false" | "FALSE" | "False" => Some(false),
                            other => return Err(bad(format!("`{other}` is not 0, 1 or empty"))),
                        };
                        match t {
                            Target::Delay => row.late = outcome,
                            Target::Churn => row.churned = outcome,
                        }
                    }
                }
            }
            outcomes.rows.push(row);
        }
        Ok(outcomes)
    }

    /// The rows whose `target` outcome is known.
    pub fn labelled(&self, target: Target) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.outcome(target).is_some())
            .collect()
    }
}

/// What became of a stored decision, as known at `now`: `late` once its shipment is delivered
/// (by `now`) or a day past its promise; `churned` once `churn_window` has passed since it (no
/// order in that window means churned). `None` while not yet known.
pub fn outcomes_of(
    decision: &crate::store::DecisionOutcome,
    now: chrono::DateTime<chrono::Utc>,
    churn_window: chrono::Duration,
) -> (Option<bool>, Option<bool>) {
    let day = chrono::Duration::days(1);
    let late = decision.promised_by.and_then(|promised| {
        match decision.delivered_at.filter(|d| *d <= now) {
            Some(delivered) => Some(delivered - promised >= day),
            None => (now - promised >= day).then_some(true),
        }
    });
    let churned = (now - decision.decided_at >= churn_window).then_some(decision.orders_after == 0);
    (late, churned)
}

/// The feature values a stored explanation recorded (unknown ones left out).
pub fn values_of(explanation: &serde_json::Value) -> FeatureValues {
    let mut values = FeatureValues::default();
    for target in Target::ALL {
        let builtin = &explanation[target.as_str()]["builtin"];
        let unknown: Vec<&str> = builtin["unknown"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for term in builtin["terms"].as_array().into_iter().flatten() {
            let (Some(name), Some(value)) = (term[0].as_str(), term[1].as_f64()) else {
                continue;
            };
            if let Some(feature) = Feature::by_name(name).filter(|_| !unknown.contains(&name)) {
                values.set(feature, Some(value));
            }
        }
    }
    values
}

/// A deterministic split into (training, held-out) index lists: a seeded shuffle, then the
/// last `holdout` share held out.
pub fn split(n: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    let held = ((n as f64) * holdout.clamp(0.0, 0.9)).round() as usize;
    let test = order.split_off(n - held.min(n));
    (order, test)
}

/// Fit settings.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// L2 penalty on the standardised weights.
    pub alpha: f64,
    /// Solver iterations at most.
    pub max_iterations: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            alpha: 1.0,
            max_iterations: 200,
        }
    }
}

/// Fits the `target` model on `rows` using `features` (those of the target the file has).
/// Unknown values are replaced by the training mean, which becomes the model's `when_unknown`.
pub fn fit(
    target: Target,
    name: String,
    rows: &[&Row],
    features: &[Feature],
    options: FitOptions,
) -> Result<(Logistic, Vec<String>), FitError> {
    let mut notes = Vec::new();
    let positives = rows
        .iter()
        .filter(|r| r.outcome(target) == Some(true))
        .count();
    if positives == 0 || positives == rows.len() {
        return Err(FitError::Data(format!(
            "{target}: the {} labelled rows are all one outcome; a model needs both",
            rows.len()
        )));
    }
    // Per feature: mean of known values (the fill) and standard deviation after filling.
    let mut columns: Vec<(Feature, f64, f64)> = Vec::new();
    for &feature in features.iter().filter(|f| f.target() == target) {
        let known: Vec<f64> = rows.iter().filter_map(|r| r.values.get(feature)).collect();
        if known.is_empty() {
            notes.push(format!("{}: no values; left out", feature.name()));
            continue;
        }
        let fill = known.iter().sum::<f64>() / known.len() as f64;
        let filled = rows.iter().map(|r| r.values.get(feature).unwrap_or(fill));
        let var = filled.map(|x| (x - fill).powi(2)).sum::<f64>() / rows.len() as f64;
        if var <= 1e-12 {
            notes.push(format!("{}: always {fill}; left out", feature.name()));
            continue;
        }
        columns.push((feature, fill, var.sqrt()));
    }
    if columns.is_empty() {
        return Err(FitError::Data(format!(
            "{target}: no feature varies; nothing to fit"
        )));
    }
    let mut x = Array2::<f64>::zeros((rows.len(), columns.len()));
    let mut y = Array1::<usize>::zeros(rows.len());
    for (i, row) in rows.iter().enumerate() {
        for (j, (feature, fill, sd)) in columns.iter().enumerate() {
            x[[i, j]] = (row.values.get(*feature).unwrap_or(*fill) - fill) / sd;
        }
        y[i] = usize::from(row.outcome(target) == Some(true));
    }
    let fitted = LogisticRegression::default()
        .alpha(options.alpha)
        .max_iterations(options.max_iterations)
        .fit(&Dataset::new(x, y))
        .map_err(|e| FitError::Solver(e.to_string()))?;
    // linfa names the "larger" class positive; make the logit point at outcome 1 either way.
    let sign = if fitted.labels().pos.class == 1 {
        1.0
    } else {
        -1.0
    };
    let mut intercept = sign * fitted.intercept();
    let mut terms = Vec::with_capacity(columns.len());
    for ((feature, fill, sd), w) in columns.iter().zip(fitted.params().iter()) {
        let weight = sign * w / sd;
        intercept -= weight * fill;
        terms.push(Term {
            feature: *feature,
            weight,
            when_unknown: *fill,
        });
    }
    Ok((
        Logistic {
            target,
            name,
            intercept,
            terms,
        },
        notes,
    ))
}

/// How well a model ranks and predicts a set of rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Rows scored.
    pub rows: usize,
    /// Of those, outcome 1.
    pub positives: usize,
    /// Area under the ROC curve: the chance a random positive scores above a random
    /// negative (ties count half). `None` with only one outcome.
    pub auc: Option<f64>,
    /// Mean negative log-likelihood (natural log), probabilities clipped to [1e-15, 1 - 1e-15].
    pub log_loss: f64,
    /// The log-loss of always predicting the base rate, for comparison.
    pub base_log_loss: f64,
}

/// Evaluates `model` on the labelled rows.
pub fn evaluate(model: &Logistic, rows: &[&Row]) -> Evaluation {
    let scored: Vec<(f64, bool)> = rows
        .iter()
        .filter_map(|r| Some((model.probability(&r.values), r.outcome(model.target)?)))
        .collect();
    metrics(&scored)
}

/// AUC and log-loss of (probability, outcome) pairs.
pub fn metrics(scored: &[(f64, bool)]) -> Evaluation {
    let positives = scored.iter().filter(|(_, y)| *y).count();
    let n = scored.len();
    let clip = |p: f64| p.clamp(1e-15, 1.0 - 1e-15);
    let loss = |p: f64, y: bool| {
        if y {
            -clip(p).ln()
        } else {
            -(1.0 - clip(p)).ln()
        }
    };
    let log_loss = if n == 0 {
        0.0
    } else {
        scored.iter().map(|(p, y)| loss(*p, *y)).sum::<f64>() / n as f64
    };
    let base = if n == 0 {
        0.0
    } else {
        positives as f64 / n as f64
    };
    let base_log_loss = if n == 0 {
        0.0
    } else {
        scored.iter().map(|(_, y)| loss(base, *y)).sum::<f64>() / n as f64
    };
    Evaluation {
        rows: n,
        positives,
        auc: auc(scored),
        log_loss,
        base_log_loss,
    }
}

/// The Mann-Whitney form of the AUC, with average ranks for ties.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|(_, y)| *y).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let average = (i + j + 2) as f64 / 2.0;
        rank_sum += average * sorted[i..=j].iter().filter(|(_, y)| *y).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Feature columns of `target` the file lacks, by name.
pub fn missing_columns(outcomes: &Outcomes, target: Target) -> Vec<&'static str> {
    Feature::of(target)
        .filter(|f| !outcomes.features.contains(f))
        .map(Feature::name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::model::sigmoid;

    #[test]
    fn an_outcome_is_judged_only_by_what_was_known_at_the_time_asked() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let decision = crate::store::DecisionOutcome {
            key: crate::domain::IdempotencyKey::from_stored("k".into()),
            rule_id: "r".into(),
            customer_id: "c".into(),
            decided_at: at("2026-11-10T00:00:00Z"),
            explanation: serde_json::Value::Null,
            promised_by: Some(at("2026-11-12T00:00:00Z")),
            delivered_at: Some(at("2026-11-20T00:00:00Z")),
            orders_after: 0,
        };
        let window = chrono::Duration::days(30);
        // Before the delivery, it is a day past its promise: late already.
        assert_eq!(
            outcomes_of(&decision, at("2026-11-14T00:00:00Z"), window),
            (Some(true), None)
        );
        // Before the promise, nothing is known, not even the delivery that came later.
        assert_eq!(
            outcomes_of(&decision, at("2026-11-11T00:00:00Z"), window),
            (None, None)
        );
        // Once the window has passed with no order, the customer churned.
        assert_eq!(
            outcomes_of(&decision, at("2026-12-10T00:00:00Z"), window),
            (Some(true), Some(true))
        );
    }

    #[test]
    fn auc_is_the_share_of_correctly_ordered_pairs() {
        assert_eq!(auc(&[(0.9, true), (0.1, false)]), Some(1.0));
        assert_eq!(auc(&[(0.1, true), (0.9, false)]), Some(0.0));
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        // Pairs: (0.8 vs 0.3) ok, (0.8 vs 0.6) ok, (0.4 vs 0.3) ok, (0.4 vs 0.6) wrong → 3/4.
        assert_eq!(
            auc(&[(0.8, true), (0.4, true), (0.3, false), (0.6, false)]),
            Some(0.75)
        );
        assert_eq!(auc(&[(0.8, true)]), None);
    }

    #[test]
    fn log_loss_of_a_perfectly_calibrated_coin_is_ln_2() {
        let e = metrics(&[(0.5, true), (0.5, false)]);
        assert!((e.log_loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert!((e.base_log_loss - std::f64::consts::LN_2).abs() < 1e-12);
    }

    /// Rows drawn from a known churn model (fixed seed), as a data team's export would look.
    fn generated(n: usize, seed: u64) -> (Logistic, Vec<Row>) {
        let truth = Logistic {
            target: Target::Churn,
            name: "truth".into(),
            intercept: -2.0,
            terms: vec![
                Term {
                    feature: Feature::BadExperiences90d,
                    weight: 0.7,
                    when_unknown: 0.0,
                },
                Term {
                    feature: Feature::DaysLate,
                    weight: 0.4,
                    when_unknown: 0.0,
                },
                Term {
                    feature: Feature::LogOrderValue,
                    weight: 0.2,
                    when_unknown: 0.0,
                },
                Term {
                    feature: Feature::FirstOrder,
                    weight: 0.9,
                    when_unknown: 0.0,
                },
                Term {
                    feature: Feature::LastOutreachRedeemed,
                    weight: -1.0,
                    when_unknown: 0.0,
                },
            ],
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let rows = (0..n)
            .map(|_| {
                let mut values = FeatureValues::default();
                values.set(Feature::BadExperiences90d, Some(f64::from(rng.u8(0..5))));
                values.set(Feature::DaysLate, Some(rng.f64() * 5.0));
                values.set(Feature::LogOrderValue, Some(2.0 + rng.f64() * 5.0));
                values.set(Feature::FirstOrder, Some(f64::from(u8::from(rng.bool()))));
                values.set(
                    Feature::LastOutreachRedeemed,
                    Some(f64::from(u8::from(rng.f64() < 0.2))),
                );
                let p = truth.probability(&values);
                Row {
                    values,
                    late: None,
                    churned: Some(rng.f64() < p),
                }
            })
            .collect();
        (truth, rows)
    }

    #[test]
    fn a_fit_on_data_from_known_coefficients_ranks_as_well_as_the_truth_on_held_out_rows() {
        let (truth, rows) = generated(20_000, 7);
        let (train, test) = split(rows.len(), 0.25, 42);
        let train: Vec<&Row> = train.iter().map(|&i| &rows[i]).collect();
        let test: Vec<&Row> = test.iter().map(|&i| &rows[i]).collect();
        let features: Vec<Feature> = truth.terms.iter().map(|t| t.feature).collect();
        let (fitted, notes) = fit(
            Target::Churn,
            "fitted".into(),
            &train,
            &features,
            FitOptions::default(),
        )
        .unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let truth_auc = evaluate(&truth, &test).auc.unwrap();
        let fitted_auc = evaluate(&fitted, &test).auc.unwrap();
        assert!(
            (truth_auc - fitted_auc).abs() <= 0.02,
            "fitted {fitted_auc:.4} vs generating model {truth_auc:.4}"
        );
        // The weights come back in raw units, close to the truth.
        for (fitted, truth) in fitted.terms.iter().zip(&truth.terms) {
            assert!(
                (fitted.weight - truth.weight).abs() < 0.15,
                "{}: fitted {} vs {}",
                truth.feature.name(),
                fitted.weight,
                truth.weight
            );
        }
        assert!(
            (fitted.intercept - truth.intercept).abs() < 0.3,
            "{}",
            fitted.intercept
        );
        // And the fitted model's probabilities match its logit.
        let score = fitted.score(&test[0].values);
        assert!((sigmoid(score.logit) - score.probability).abs() < 1e-15);
    }

    #[test]
    fn a_split_is_deterministic_and_disjoint() {
        let (a_train, a_test) = split(100, 0.2, 1);
        let (b_train, b_test) = split(100, 0.2, 1);
        assert_eq!((a_train.clone(), a_test.clone()), (b_train, b_test));
        assert_eq!(a_test.len(), 20);
        let mut all: Vec<usize> = a_train.into_iter().chain(a_test).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
