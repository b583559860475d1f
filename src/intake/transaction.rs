//! One batch's transaction — record the events, load the state they touch, decide, write the
//! changes and the outreach, retract what they resolve, keep the notes, commit — apart from
//! the stream it came from. Intake runs it on the live database; `forewarn simulate` runs the
//! very same steps on a scratch one, so a simulation decides exactly as intake would.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::authoring::Authoring;
use crate::domain::{Accepted, EventKey, IdempotencyKey};
use crate::metrics as m;
use crate::pipeline::{self, Deciding, Plan};
use crate::policy::{retraction, Policy};
use crate::store::{EventRecord, Retracted, Store, StoreError};

/// What one batch's transaction wrote.
#[derive(Debug)]
pub struct Written {
    /// Keys recorded for the first time (a redelivered event is not among them).
    pub new_keys: HashSet<EventKey>,
    /// What was decided.
    pub plan: Plan,
    /// The outreach rows written (an existing idempotency key makes a write a no-op).
    pub queued: HashSet<IdempotencyKey>,
    /// Waiting messages cancelled because the batch resolved their problem.
    pub retracted: Vec<Retracted>,
}

/// Runs one batch's transaction on `store`, deciding with `authoring` and `policy` as of
/// `received_at`. Nothing is written unless all of it is.
pub async fn write_batch(
    store: &dyn Store,
    authoring: &Authoring,
    policy: &Policy,
    accepted: &[Accepted],
    records: &[EventRecord],
    received_at: DateTime<Utc>,
) -> Result<Written, StoreError> {
    let mut stages = m::Stages::start();
    let mut tx = store.begin_intake().await?;
    stages.lap("intake.begin");
    let new_keys = tx.record_events(records).await?;
    stages.lap("intake.record");
    // A key twice in one batch is recorded once; only its first copy is decided.
    let mut first_copies = new_keys.clone();
    let fresh: Vec<&Accepted> = accepted
        .iter()
        .filter(|a| first_copies.remove(&a.event.key))
        .collect();
    let mut refs = pipeline::refs_of(fresh.iter().copied(), &authoring.rules, received_at);
    if policy.caps.binds() {
        refs.marketing_since = Some(received_at - policy.caps.window());
    }
    let snapshot = tx.load(&refs).await?;
    stages.lap("intake.load");
    let plan = pipeline::decide(
        &fresh,
        snapshot,
        &Deciding::new(authoring, policy, received_at),
    );
    stages.lap("intake.decide");
    let rejected_keys: Vec<EventKey> = plan.rejected.iter().map(|(k, _)| k.clone()).collect();
    tx.forget_events(&rejected_keys).await?;
    let queued = tx.apply(&plan.changes, received_at).await?;
    stages.lap("intake.apply");
    let retracted = tx
        .retract(&retraction::resolutions(&plan.changes), received_at)
        .await?;
    stages.lap("intake.retract");
    tx.record_notes(&plan.notes(&queued, received_at)).await?;
    stages.lap("intake.notes");
    tx.commit().await?;
    stages.lap("intake.commit");
    Ok(Written {
        new_keys,
        plan,
        queued,
        retracted,
    })
}
