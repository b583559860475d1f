//! `retention`: personal data older than `keep` is removed; counts stay.
//!
//! - events keep their type, identity and times (so a very late redelivery is still known and
//!   the counts by type stand) and lose `data` and the customer's id;
//! - messages in a final state keep rule, channel, category, status and times and lose their
//!   content and errors (which may quote an address); attempts lose their errors;
//! - decision notes are counted per day, rule, outcome and reason, then deleted;
//! - customer records untouched for `keep` are reduced to what identifies nobody (locale, zone,
//!   region, segment, channel preferences, consent, lifetime value): names, addresses, phone
//!   numbers and push tokens go;
//! - bad-experience rows, external risk scores, schedule runs and emissions older than `keep`
//!   are deleted.
//!
//! Customer ids stay: they are the shop's own pseudonymous keys, and the idempotency of past
//! messages rests on them. Opt-outs stay forever: forgetting one would message someone who
//! said no.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{before, JobContext, JobError, JobReport};
use crate::store::PurgeCursor;

/// The shortest retention allowed: longer than the longest history risk scores read.
pub(crate) const MINIMUM_KEEP: Duration =
    Duration::from_secs((crate::domain::EXPERIENCE_DAYS as u64 + 1) * 24 * 3600);

pub(super) async fn run(
    ctx: &JobContext,
    now: DateTime<Utc>,
    keep: Duration,
    batch: usize,
    cursor: &str,
) -> Result<JobReport, JobError> {
    let cursor: PurgeCursor = serde_json::from_str(cursor).unwrap_or_default();
    let (report, next) = ctx.store.purge(before(now, keep), batch, cursor).await?;
    Ok(JobReport {
        found: report.total(),
        emitted: report.total(),
        summary: format!(
            "purged {} event(s), {} message(s), {} note(s), {} customer record(s), {} experience(s) and score(s), {} schedule row(s)",
            report.events,
            report.messages,
            report.notes,
            report.customers,
            report.experiences,
            report.schedule_rows
        ) + if report.more {
            "; more left: the next run goes on (raise `batch` or run more often if this persists)"
        } else {
            ""
        },
        cursor: serde_json::to_string(&next).ok(),
    })
}
