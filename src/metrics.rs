//! Prometheus metrics: names in one place, so dashboards and code agree.
//!
//! Recorded with the `metrics` facade (cheap atomic updates on the hot path) and rendered by
//! `metrics-exporter-prometheus` on `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Events taken from the stream, by `type` and `outcome` (`processed`, `duplicate`, `dead_letter`).
pub const EVENTS: &str = "forewarn_events_total";
/// Dead letters published, by `reason`.
pub const DEAD_LETTERS: &str = "forewarn_dead_letters_total";
/// Invalid events dropped because their dead letter could not be published, by `reason`.
pub const DEAD_LETTERS_DROPPED: &str = "forewarn_dead_letters_dropped_total";
/// Outreach, by `rule`, `channel` and `status` (`queued`, `sent`, `retry`, `failed`, `skipped`).
pub const OUTREACH: &str = "forewarn_outreach_total";
/// Seconds from an event's arrival to the commit of everything it caused.
pub const PROCESSING_SECONDS: &str = "forewarn_event_processing_seconds";
/// Events per committed batch.
pub const BATCH_SIZE: &str = "forewarn_intake_batch_events";
/// Attempts that may have arrived and are sent again: left ambiguous by a crash or a pause
/// when the gateway cannot tell, or unanswered (a timeout after the request went out).
pub const AMBIGUOUS_RESENDS: &str = "forewarn_outbox_ambiguous_resends_total";
/// Attempts found already delivered by the gateway after a crash, so not resent.
pub const RECONCILED: &str = "forewarn_outbox_reconciled_total";
/// Claims a dispatcher found taken over by another after it was paused past its lease, by
/// `stage`: `send` (not sent) or `record` (sent or tried, the outcome not recorded).
pub const CLAIMS_LOST: &str = "forewarn_outbox_claims_lost_total";
/// Seconds from outbox row creation to a gateway's answer.
pub const DISPATCH_SECONDS: &str = "forewarn_dispatch_seconds";
/// Rule expressions (`when`, `once_per`) that failed on an event, by `rule`.
pub const RULE_ERRORS: &str = "forewarn_rule_errors_total";
/// The version of the rules and templates in use (1 at start, +1 per accepted reload).
pub const AUTHORING_VERSION: &str = "forewarn_authoring_version";
/// Reloads refused because the new rules or templates had errors.
pub const AUTHORING_REJECTED: &str = "forewarn_authoring_reloads_refused_total";
/// Intake batches that failed and were redelivered.
pub const BATCH_FAILURES: &str = "forewarn_intake_batch_failures_total";
/// Discount codes issued with queued outreach, by rule.
pub const DISCOUNT_CODES_ISSUED: &str = "forewarn_discount_codes_issued_total";
/// Times a gateway's circuit breaker opened, by gateway.
pub const CIRCUIT_OPENED: &str = "forewarn_gateway_circuit_opened_total";
/// Delivery receipts that told an attempt something new, by `rule`, `channel` and `status`
/// (`accepted`, `sent`, `delivered`, `undelivered`, `failed`): the delivered ratio of a rule
/// is its `delivered` over the three endings.
pub const DELIVERIES: &str = "forewarn_deliveries_total";
/// Receipts received, by `gateway` and `result` (`recorded`, `fell_back`, `failed`, `behind`,
/// `repeat`, `unmatched`).
pub const RECEIPTS: &str = "forewarn_receipts_total";
/// Customers' replies, by `channel` and `keyword` (`stop`, `start`, `help`, `other`).
pub const REPLIES: &str = "forewarn_replies_total";
/// Opt-outs customers sent back, by `channel`, `scope` and `source` (`reply`, `one_click`,
/// or the provider's event: `spamreport`, `unsubscribe`, `group_unsubscribe`).
pub const OPT_OUTS: &str = "forewarn_opt_outs_total";
/// Discount codes redeemed through the HTTP API.
pub const DISCOUNT_CODES_REDEEMED: &str = "forewarn_discount_codes_redeemed_total";

/// Risk scores of queued outreach, by `score` (delay, churn) and `source` (builtin,
/// external): how a model's distribution moves after a refit or a bad day.
pub const RISK_SCORES: &str = "forewarn_outreach_risk_score";

/// Offers left out of a message because the customer has not consented to marketing.
pub const OFFERS_WITHHELD: &str = "forewarn_offers_withheld_total";

/// Customers an incident's fan-out decided, by `kind` (started, escalated, resolved).
pub const FANOUT_CUSTOMERS: &str = "forewarn_fanout_customers_total";
/// Messages an incident's fan-out queued, by `kind`.
pub const FANOUT_QUEUED: &str = "forewarn_fanout_queued_total";
/// Seconds one fan-out page took, from claim to commit.
pub const FANOUT_PAGE_SECONDS: &str = "forewarn_fanout_page_seconds";

/// Seconds each stage of the hot path took, by `stage` (`intake.parse`, `intake.record`, …):
/// where a batch's time goes, for an operator as for a benchmark.
pub const STAGE_SECONDS: &str = "forewarn_stage_seconds";

/// A stage taking this long is logged as well as measured.
pub const SLOW_STAGE: std::time::Duration = std::time::Duration::from_secs(1);

tokio::task_local! {
    /// Set in a task that replays history ([`replaying`]).
    static REPLAYING: ();
}

/// Runs `work` as a replay of history (`forewarn simulate`, the console's simulation): the
/// stages it times are recorded as `replay:<stage>`, and the fan-out's counters are not
/// touched, so a simulation run inside `forewarn run` does not show on its dashboards as work
/// the process did.
pub async fn replaying<F: std::future::Future>(work: F) -> F::Output {
    REPLAYING.scope((), work).await
}

/// Whether this task replays history (see [`replaying`]).
pub fn is_replaying() -> bool {
    REPLAYING.try_with(|_| ()).is_ok()
}

/// Times consecutive stages of one unit of work (a batch, a page): each [`Stages::lap`]
/// records the time since the previous one under its stage's name.
pub struct Stages {
    last: std::time::Instant,
}

impl Stages {
    /// Starts the first stage now.
    pub fn start() -> Self {
        Stages {
            last: std::time::Instant::now(),
        }
    }

    /// Ends `stage` now and starts the next one. A stage slower than [`SLOW_STAGE`] is also
    /// logged, by name and time: one short line where the database's own slow-statement log
    /// would print the whole statement.
    pub fn lap(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        let took = now.duration_since(self.last);
        self.last = now;
        if is_replaying() {
            metrics::histogram!(STAGE_SECONDS, "stage" => format!("replay:{stage}"))
                .record(took.as_secs_f64());
            return;
        }
        metrics::histogram!(STAGE_SECONDS, "stage" => stage).record(took.as_secs_f64());
        if took >= SLOW_STAGE {
            tracing::warn!(stage, seconds = took.as_secs_f64(), "Slow stage.");
        }
    }
}

/// Buckets for probabilities.
const PROBABILITY_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Buckets for latency histograms, in seconds: 1 ms to 1 min.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];
/// Buckets for batch sizes.
const BATCH_BUCKETS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// Installs the global recorder and returns the handle `/metrics` renders. A second call (the
/// demo runs forewarn in-process) returns `None` and metrics keep going to the first recorder.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(RISK_SCORES.into()), &PROBABILITY_BUCKETS)
        })
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(EVENTS, "Events taken from the stream, by type and outcome.");
    describe_counter!(DEAD_LETTERS, "Dead letters published, by reason.");
    describe_counter!(OUTREACH, "Outreach by rule, channel and status.");
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "From an event's arrival to the commit of what it caused."
    );
    describe_histogram!(BATCH_SIZE, "Events per committed intake batch.");
    describe_counter!(
        OFFERS_WITHHELD,
        "Messages sent without their rule's offer: no marketing consent, by rule."
    );
    describe_histogram!(
        RISK_SCORES,
        "Risk scores of queued outreach, by score (delay, churn) and source (builtin, external)."
    );
    describe_counter!(
        AMBIGUOUS_RESENDS,
        "Attempts resent after a crash left them ambiguous."
    );
    describe_counter!(
        RECONCILED,
        "Ambiguous attempts the gateway confirmed as delivered."
    );
    describe_histogram!(
        DISPATCH_SECONDS,
        Unit::Seconds,
        "From outbox row creation to the gateway's answer."
    );
    describe_counter!(
        BATCH_FAILURES,
        "Intake batches that failed and were redelivered."
    );
    describe_counter!(
        DISCOUNT_CODES_ISSUED,
        "Discount codes issued with queued outreach, by rule."
    );
    describe_counter!(DISCOUNT_CODES_REDEEMED, "Discount codes redeemed.");
    describe_counter!(
        DELIVERIES,
        "Delivery receipts that told an attempt something new, by rule, channel and status."
    );
    describe_counter!(RECEIPTS, "Receipts received, by gateway and result.");
    describe_counter!(REPLIES, "Customers' replies, by channel and keyword.");
    describe_counter!(
        OPT_OUTS,
        "Opt-outs customers sent back, by channel, scope and source."
    );
    describe_counter!(
        FANOUT_CUSTOMERS,
        "Customers an incident's fan-out decided, by kind (started, escalated, resolved)."
    );
    describe_counter!(
        FANOUT_QUEUED,
        "Messages an incident's fan-out queued, by kind."
    );
    describe_histogram!(
        FANOUT_PAGE_SECONDS,
        Unit::Seconds,
        "One fan-out page, from claim to commit."
    );
    describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Time spent in each stage of the hot path (intake, dispatch, fan-out), by stage."
    );
    describe_counter!(
        CIRCUIT_OPENED,
        "Times a gateway kept failing and its circuit opened."
    );
    crate::schedule::describe_metrics();
}
