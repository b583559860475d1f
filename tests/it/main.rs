//! Integration tests: the real `forewarn` binary, a real nats-server per test, real SQLite files.
//! `tests/it_postgres` runs the same tests on PostgreSQL.
#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

/// The database every test of this binary runs on.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod database;
mod helpers;

mod backlog;
mod caps;
mod chaos;
mod check;
mod cli_output;
mod config;
mod console;
mod crash;
mod dead_letters;
mod demo;
mod explain;
mod fcm;
mod fuzz;
mod http;
mod incidents;
// The gate and the repeat counts serve the PostgreSQL scale-out tests only.
#[allow(dead_code)]
mod ledger;
mod offers;
mod pacing;
mod pipeline;
mod quiet_hours;
mod receipts;
mod relay;
mod reload;
mod retraction;
mod risk;
mod schedules;
mod sendgrid;
mod simulate;
mod smtp;
mod stock;
mod twilio;
mod unsubscribe;
mod webhook;
