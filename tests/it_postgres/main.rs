//! The integration tests of `tests/it` again, each on a PostgreSQL database of its own (on the
//! server `FOREWARN_TEST_POSTGRES_URL` names, by default the local one as user `postgres`).
//! Every test that touches the store runs here; the authoring checks, config and demo tests,
//! which do not, run once in `tests/it`.
#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

/// The database every test of this binary runs on.
const BACKEND: helpers::Backend = helpers::Backend::Postgres;

#[path = "../it/database.rs"]
mod database;
#[path = "../it/helpers.rs"]
mod helpers;

#[path = "../it/backlog.rs"]
mod backlog;
#[path = "../it/caps.rs"]
mod caps;
#[path = "../it/chaos.rs"]
mod chaos;
#[path = "../it/console.rs"]
mod console;
#[path = "../it/crash.rs"]
mod crash;
#[path = "../it/dead_letters.rs"]
mod dead_letters;
#[path = "../it/explain.rs"]
mod explain;
#[path = "../it/fcm.rs"]
mod fcm;
#[path = "../it/http.rs"]
mod http;
#[path = "../it/incidents.rs"]
mod incidents;
#[path = "../it/ledger.rs"]
mod ledger;
#[path = "../it/offers.rs"]
mod offers;
#[path = "../it/pacing.rs"]
mod pacing;
#[path = "../it/pipeline.rs"]
mod pipeline;
#[path = "../it/quiet_hours.rs"]
mod quiet_hours;
#[path = "../it/receipts.rs"]
mod receipts;
#[path = "../it/relay.rs"]
mod relay;
#[path = "../it/reload.rs"]
mod reload;
#[path = "../it/retraction.rs"]
mod retraction;
#[path = "../it/risk.rs"]
mod risk;
mod scale_out;
#[path = "../it/schedules.rs"]
mod schedules;
#[path = "../it/sendgrid.rs"]
mod sendgrid;
#[path = "../it/simulate.rs"]
mod simulate;
#[path = "../it/smtp.rs"]
mod smtp;
#[path = "../it/stock.rs"]
mod stock;
#[path = "../it/twilio.rs"]
mod twilio;
#[path = "../it/unsubscribe.rs"]
mod unsubscribe;
#[path = "../it/webhook.rs"]
mod webhook;
