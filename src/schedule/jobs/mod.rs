//! The jobs schedules run. Three notice what no event announces and emit a synthetic event
//! into the ordinary pipeline, so CX teams write plain rules for them; two keep house.
//!
//! Every job is bounded per run (`batch`) and idempotent: what an emitting job emitted is
//! remembered under a key (a parcel and its promise, an order, a customer's order), and its
//! sweep skips what is remembered. A crash between publishing and remembering re-emits the same
//! event id on the next run, which JetStream's duplicate window and the intake's (source, id)
//! key both drop.

mod csat;
mod overdue;
mod release;
pub(crate) mod retention;
mod stalled;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::emit::{EmitError, Emitter, Synthetic};
use super::settings::JobName;
use crate::store::Store;

/// A job with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `shipment.overdue`.
    ShipmentOverdue {
        /// How long past the promise.
        grace: Duration,
        /// How far back to look.
        lookback: Duration,
    },
    /// `order.stalled`.
    OrderStalled {
        /// How long after placement with no parcel.
        after: Duration,
        /// How far back to look.
        lookback: Duration,
    },
    /// `csat.due`.
    CsatDue {
        /// How long after the resolution.
        after: Duration,
        /// How far back to look.
        lookback: Duration,
        /// The survey link.
        survey_url: SurveyUrl,
    },
    /// `release-deferred`.
    ReleaseDeferred,
    /// `retention`.
    Retention {
        /// How long personal data is kept.
        keep: Duration,
    },
}

impl Job {
    /// Which job it is, as `job = "…"` names it.
    pub fn kind(&self) -> JobName {
        match self {
            Job::ShipmentOverdue { .. } => JobName::ShipmentOverdue,
            Job::OrderStalled { .. } => JobName::OrderStalled,
            Job::CsatDue { .. } => JobName::CsatDue,
            Job::ReleaseDeferred => JobName::ReleaseDeferred,
            Job::Retention { .. } => JobName::Retention,
        }
    }

    /// The job's name, as `job = "…"` writes it.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The synthetic event type it emits, for the jobs that emit one.
    pub fn emits(&self) -> Option<crate::domain::EventType> {
        self.kind().emits()
    }
}

/// A survey link with `{order_id}` and `{customer_id}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyUrl(String);

impl SurveyUrl {
    const PLACEHOLDERS: [&'static str; 2] = ["order_id", "customer_id"];

    /// Checks the link: http(s), and only known placeholders.
    pub fn parse(raw: &str) -> Result<SurveyUrl, String> {
        if !(raw.starts_with("https://") || raw.starts_with("http://")) {
            return Err(format!("`{raw}` is not an http(s) link"));
        }
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{raw}`: a `{{` is not closed"))?;
            let name = &rest[open + 1..open + close];
            if !Self::PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "`{{{name}}}` is not a placeholder; use {}",
                    Self::PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" or ")
                ));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(SurveyUrl(raw.to_owned()))
    }

    /// The link for one order of one customer, each value URL-encoded.
    pub fn for_order(&self, order_id: &str, customer_id: &str) -> String {
        self.0
            .replace("{order_id}", &encode(order_id))
            .replace("{customer_id}", &encode(customer_id))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a job runs with.
#[derive(Clone)]
pub struct JobContext {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Publishes synthetic events.
    pub emitter: Emitter,
    /// Wakes this process's dispatcher.
    pub wake: Arc<Notify>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Things found to act on.
    pub found: u64,
    /// Events emitted, messages released, rows purged.
    pub emitted: u64,
    /// A line for the log: what was done, in words.
    pub summary: String,
    /// Where a sweep stopped, for the next run.
    pub cursor: Option<String>,
}

/// Why a run failed. Whatever was done before the failure stays done; the next tick goes on.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Publishing failed part-way.
    #[error(transparent)]
    Emit(#[from] EmitError),
}

/// Runs `job` as of `now`, doing at most `batch` things.
pub async fn run(
    job: &Job,
    ctx: &JobContext,
    now: DateTime<Utc>,
    batch: usize,
    cursor: &str,
) -> Result<JobReport, JobError> {
    match job {
        Job::ShipmentOverdue { grace, lookback } => {
            let (until, since) = window(now, *grace, *lookback);
            let found = ctx.store.overdue_shipments(until, since, batch).await?;
            let events = found.iter().map(|s| overdue::event(s, now)).collect();
            emit_found(ctx, now, events, batch, overdue::FOUND).await
        }
        Job::OrderStalled { after, lookback } => {
            let (until, since) = window(now, *after, *lookback);
            let found = ctx.store.stalled_orders(until, since, batch).await?;
            let events = found.iter().map(|o| stalled::event(o, now)).collect();
            emit_found(ctx, now, events, batch, stalled::FOUND).await
        }
        Job::CsatDue {
            after,
            lookback,
            survey_url,
        } => {
            let (until, since) = window(now, *after, *lookback);
            let found = ctx.store.resolved_problems(until, since, batch).await?;
            let events = found.iter().map(|p| csat::event(p, survey_url)).collect();
            emit_found(ctx, now, events, batch, csat::FOUND).await
        }
        Job::ReleaseDeferred => release::run(ctx, now).await,
        Job::Retention { keep } => retention::run(ctx, now, *keep, batch, cursor).await,
    }
}

/// Where a sweep looks, as of `now`: what waited `wait` (a promise, a placement, a resolution),
/// and no further back than `lookback` before that — `(since, until]`.
fn window(
    now: DateTime<Utc>,
    wait: Duration,
    lookback: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let until = before(now, wait);
    (until, before(until, lookback))
}

/// Publishes what a sweep found and reports it; `what` says in words what each one is. A
/// sweep that found `batch` things has more left for its next run, and says so.
async fn emit_found(
    ctx: &JobContext,
    now: DateTime<Utc>,
    events: Vec<Synthetic>,
    batch: usize,
    what: &str,
) -> Result<JobReport, JobError> {
    let found = events.len() as u64;
    let emitted = ctx.emitter.emit(ctx.store.as_ref(), events, now).await?;
    let more = if found as usize >= batch {
        "; more left: the next run goes on (raise `batch` or run more often if this persists)"
    } else {
        ""
    };
    Ok(JobReport {
        found,
        emitted,
        summary: format!("{emitted} {what}{more}"),
        cursor: None,
    })
}

/// `now - d`, saturating far in the past.
fn before(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_links_fill_and_encode_their_placeholders() {
        let url = SurveyUrl::parse("https://shop.example/s?o={order_id}&c={customer_id}").unwrap();
        assert_eq!(
            url.for_order("ord 1/2", "c-1"),
            "https://shop.example/s?o=ord%201%2F2&c=c-1"
        );
        assert!(SurveyUrl::parse("https://x/{order}")
            .unwrap_err()
            .contains("`{order}` is not a placeholder"));
        assert!(SurveyUrl::parse("ftp://x").is_err());
        assert!(SurveyUrl::parse("https://x/{order_id").is_err());
    }
}
