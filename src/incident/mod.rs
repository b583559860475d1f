//! Incidents: on-call announces an outage (`announce`), forewarn finds every customer it
//! concerns and decides each one's message page by page (`fanout`), and reports how far the
//! announcement has got (`IncidentProgress` in the store).
//!
//! ```text
//!  forewarn announce / POST /v1/incidents ──▶ events.outage.* ──▶ intake: incident state,
//!                                                                  a `fanouts` row
//!  fan-out worker: claim ─▶ page of customers ─▶ rules, risk, policy, render ─▶ outbox + cursor
//!                   ▲                                                    (one transaction)
//!                   └──────────────── next page, until the directory ends
//! ```

pub mod announce;
mod dry_run;
pub mod fanout;
#[cfg(test)]
mod fanout_tests;
mod settings;

pub use announce::{
    customer_ids_from, AnnounceError, Announcement, Announcer, FieldError, Published, Resolve,
    Start, Translation, Translations, Update,
};
pub use dry_run::{
    dry_run, expected_fanout, who_hears, DryRun, FirstCustomer, Reach, DRY_RUN_SOURCE,
};
pub use fanout::{audience_of, DecidedPage, FanoutError, FanoutWorker, PageReport};
pub use settings::IncidentSettings;
