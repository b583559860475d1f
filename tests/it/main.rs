//! Integration tests: the real `forewarn` binary, a real nats-server per test, real SQLite files.
#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

mod database;
mod helpers;

mod caps;
mod check;
mod config;
mod crash;
mod dead_letters;
mod demo;
mod explain;
mod fcm;
mod http;
mod incidents;
mod offers;
mod pacing;
mod pipeline;
mod quiet_hours;
mod reload;
mod retraction;
mod risk;
mod schedules;
mod sendgrid;
mod smtp;
mod twilio;
mod webhook;
