//! `release-deferred`: messages held for quiet hours (or a retry) whose time has come are
//! handed to the dispatcher now. The dispatcher also sleeps until the next due message, so this
//! is the safety net and the record: a dispatcher idling in its poll interval is woken, and the
//! run reports how many held messages were due.

use chrono::{DateTime, Utc};

use super::{JobContext, JobError, JobReport};

pub(super) async fn run(ctx: &JobContext, now: DateTime<Utc>) -> Result<JobReport, JobError> {
    let due = ctx.store.due_count(now).await?;
    if due > 0 {
        ctx.wake.notify_one();
    }
    Ok(JobReport {
        found: due,
        emitted: due,
        summary: if due > 0 {
            format!("{due} held message(s) due; dispatcher woken")
        } else {
            "0 held message(s) due".to_owned()
        },
        cursor: None,
    })
}
