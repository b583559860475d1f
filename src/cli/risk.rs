//! `forewarn risk fit` and `forewarn risk eval`: learn the built-in models' coefficients from
//! observed outcomes, and measure how well the current ones rank them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::cli::output::say;
use crate::config::Settings;
use crate::risk::fit::{
    evaluate, fit, missing_columns, outcomes_of, split, values_of, Evaluation, FitOptions,
    Outcomes, Row,
};
use crate::risk::{Feature, RiskModel, Target};

/// `forewarn risk …`.
#[derive(Debug, Args)]
pub struct RiskArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RiskCommand,
}

/// Risk subcommands.
#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Fit the delay and/or churn model on a CSV of outcomes (README, "Risk scores"): report
    /// AUC and log-loss on a held-out share next to the current model's, and write risk.toml.
    Fit(FitArgs),
    /// Report the current model's AUC and log-loss on a CSV of outcomes.
    Eval(EvalArgs),
    /// Write forewarn's own scored decisions and what became of them as a CSV for `risk fit`:
    /// the features stored with each outreach, `late` once its shipment arrived (or is a day
    /// past its promise), `churned` once the churn window has passed (no order in it).
    Export(ExportArgs),
}

/// `forewarn risk export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the CSV.
    #[arg(long, value_name = "CSV")]
    pub output: PathBuf,
    /// A customer who places no order this long after a decision counts as churned; decisions
    /// younger than this have an empty `churned`.
    #[arg(long, default_value = "90d", value_parser = crate::cli::duration_arg)]
    pub churn_window: std::time::Duration,
    /// Judge outcomes as they were known at this time (RFC 3339) instead of now: a delivery
    /// after it is not yet known, so an export can be reproduced, or cut at a past date.
    #[arg(long, value_name = "TIME")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `forewarn risk fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// The outcomes: a column per feature, `late` and/or `churned` (0 or 1).
    #[arg(long, value_name = "CSV")]
    pub input: PathBuf,
    /// Where to write the model [default: risk.toml in the rules folder].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Share of rows held out to measure the fit.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// Seed of the shuffle that picks the held-out rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// L2 penalty on the standardised weights.
    #[arg(long, default_value_t = FitOptions::default().alpha)]
    pub alpha: f64,
    /// Write a fitted model even when it ranks the held-out rows worse than the current one.
    #[arg(long)]
    pub force: bool,
}

/// `forewarn risk eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The outcomes: a column per feature, `late` and/or `churned` (0 or 1).
    #[arg(long, value_name = "CSV")]
    pub input: PathBuf,
}

/// How much worse (held-out AUC) a fit may be before it is not written without `--force`.
const AUC_TOLERANCE: f64 = 0.005;

/// Runs a risk subcommand.
pub(super) async fn execute(args: RiskArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let current = RiskModel::load(&settings.paths.rules).map_err(|errors| {
        super::load_errors(&errors).context("The current risk model is invalid")
    })?;
    match args.command {
        RiskCommand::Eval(args) => eval(&args, &current),
        RiskCommand::Export(args) => export(&args, &settings).await,
        RiskCommand::Fit(args) => {
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| settings.paths.rules.join(crate::rules::RISK_MODEL_FILE));
            fit_and_write(&args, current, &output)
        }
    }
}

async fn export(args: &ExportArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::store::connect(&settings.database).await?;
    let window =
        chrono::Duration::from_std(args.churn_window).context("--churn-window is too long")?;
    let decisions = store.decision_outcomes(window).await?;
    let now = args.at.unwrap_or_else(chrono::Utc::now);
    let mut writer = csv::Writer::from_path(&args.output)
        .with_context(|| format!("Failed to create {}", args.output.display()))?;
    let mut header = vec!["decided_at", "customer_id", "rule_id", "idempotency_key"];
    header.extend(Feature::ALL.iter().map(|f| f.name()));
    header.extend(Target::ALL.iter().map(|t| t.outcome_column()));
    writer.write_record(&header)?;
    let (mut late_known, mut churn_known) = (0, 0);
    for decision in &decisions {
        let values = values_of(&decision.explanation);
        let (late, churned) = outcomes_of(decision, now, window);
        late_known += usize::from(late.is_some());
        churn_known += usize::from(churned.is_some());
        let mut record = vec![
            decision.decided_at.to_rfc3339(),
            decision.customer_id.clone(),
            decision.rule_id.clone(),
            decision.key.to_string(),
        ];
        record.extend(
            Feature::ALL
                .iter()
                .map(|f| values.get(*f).map_or(String::new(), |v| v.to_string())),
        );
        record
            .extend([late, churned].map(|o| o.map_or(String::new(), |b| u8::from(b).to_string())));
        writer.write_record(&record)?;
    }
    writer.flush()?;
    say!(
        "wrote {}: {} decisions; `late` known for {late_known}, `churned` for {churn_known} (window {})",
        args.output.display(),
        decisions.len(),
        humantime::format_duration(args.churn_window)
    );
    Ok(())
}

fn read(input: &Path) -> anyhow::Result<Outcomes> {
    let outcomes = Outcomes::read(input).map_err(|e| anyhow::anyhow!("--input: {e:#}"))?;
    say!(
        "{}: {} rows; {} feature column(s), outcome column(s): {}{}",
        input.display(),
        outcomes.rows.len(),
        outcomes.features.len(),
        outcomes
            .targets
            .iter()
            .map(|t| t.outcome_column())
            .collect::<Vec<_>>()
            .join(", "),
        if outcomes.ignored.is_empty() {
            String::new()
        } else {
            format!("; ignored: {}", outcomes.ignored.join(", "))
        }
    );
    Ok(outcomes)
}

fn eval(args: &EvalArgs, current: &RiskModel) -> anyhow::Result<()> {
    let outcomes = read(&args.input)?;
    for &target in &outcomes.targets {
        let rows = outcomes.labelled(target);
        let model = current.model(target);
        let e = evaluate(model, &rows);
        say!(
            "{target} ({}): {} rows, {} {} ({:.1}%); AUC {}, log-loss {:.4} (base rate {:.4})",
            model.name,
            e.rows,
            e.positives,
            target.outcome_column(),
            100.0 * e.positives as f64 / e.rows.max(1) as f64,
            auc_text(&e),
            e.log_loss,
            e.base_log_loss
        );
        let missing = missing_columns(&outcomes, target);
        if !missing.is_empty() {
            say!(
                "  not in the file, so at their when_unknown value: {}",
                missing.join(", ")
            );
        }
    }
    Ok(())
}

fn auc_text(e: &Evaluation) -> String {
    e.auc
        .map_or("n/a (one outcome only)".into(), |a| format!("{a:.4}"))
}

fn fit_and_write(args: &FitArgs, current: RiskModel, output: &Path) -> anyhow::Result<()> {
    if !(0.05..=0.5).contains(&args.holdout) {
        bail!("--holdout must be between 0.05 and 0.5");
    }
    let outcomes = read(&args.input)?;
    let mut model = current.clone();
    let mut written = Vec::new();
    let today = chrono::Utc::now().format("%Y-%m-%d");
    for &target in &outcomes.targets {
        let rows = outcomes.labelled(target);
        let (train, test) = split(rows.len(), args.holdout, args.seed);
        let train: Vec<&Row> = train.iter().map(|&i| rows[i]).collect();
        let test: Vec<&Row> = test.iter().map(|&i| rows[i]).collect();
        let positives = train
            .iter()
            .filter(|r| r.outcome(target) == Some(true))
            .count();
        say!(
            "\n{target}: fitting on {} rows ({:.1}% {}), holding out {} (seed {})",
            train.len(),
            100.0 * positives as f64 / train.len().max(1) as f64,
            target.outcome_column(),
            test.len(),
            args.seed
        );
        let missing = missing_columns(&outcomes, target);
        if !missing.is_empty() {
            say!(
                "  not in the file, so left out of the model: {}",
                missing.join(", ")
            );
        }
        let (fitted, notes) = fit(
            target,
            format!("{target}-fit-{today}"),
            &train,
            &outcomes.features,
            FitOptions {
                alpha: args.alpha,
                ..FitOptions::default()
            },
        )
        .with_context(|| format!("Failed to fit the {target} model"))?;
        for note in notes {
            say!("  {note}");
        }
        let new = evaluate(&fitted, &test);
        let old = evaluate(current.model(target), &test);
        say!("  held out:        AUC       log-loss");
        say!(
            "    fitted         {:<9} {:.4}",
            auc_text(&new),
            new.log_loss
        );
        say!(
            "    current        {:<9} {:.4}   ({})",
            auc_text(&old),
            old.log_loss,
            current.model(target).name
        );
        say!("    base rate      0.5000    {:.4}", new.base_log_loss);
        say!(
            "  intercept {:.4}; weights: {}",
            fitted.intercept,
            fitted
                .terms
                .iter()
                .map(|t| format!("{} {:.4}", t.feature.name(), t.weight))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let worse = matches!((new.auc, old.auc), (Some(n), Some(o)) if n + AUC_TOLERANCE < o);
        if worse && !args.force {
            say!(
                "  not written: it ranks the held-out rows worse than the current model (use --force to write it anyway)"
            );
            continue;
        }
        written.push(format!("{target} `{}`", fitted.name));
        *model.model_mut(target) = fitted;
    }
    if written.is_empty() {
        say!("\nnothing written; {} is unchanged", output.display());
        return Ok(());
    }
    let text = model.to_toml();
    // What is written must load: check it before it replaces a working file.
    RiskModel::parse(output, &text).map_err(|errors| {
        anyhow::anyhow!("the fitted model does not validate (a bug): {errors:?}")
    })?;
    let temporary = output.with_extension("toml.tmp");
    std::fs::write(&temporary, text)
        .with_context(|| format!("Failed to write {}", temporary.display()))?;
    std::fs::rename(&temporary, output)
        .with_context(|| format!("Failed to replace {}", output.display()))?;
    say!("\nwrote {}: {}", output.display(), written.join(", "));
    Ok(())
}
