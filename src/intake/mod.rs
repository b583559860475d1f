//! ① Intake: events from NATS JetStream into the database, each exactly once.
//!
//! A durable pull consumer hands over whatever has arrived, up to `[intake] batch_size`. The
//! batch is parsed (bad input is dead-lettered with its reason), deduplicated against the
//! `events` table, decided by the [`crate::pipeline`], and written in one transaction. Only
//! after the commit are the messages acked; a failure naks them for redelivery, so nothing is
//! lost, and the idempotency keys make the replay harmless.

mod batch;
#[cfg(test)]
mod batch_tests;
mod dead_letter;
mod jetstream;
mod settings;
pub mod transaction;

pub use batch::{BatchReport, Intake};
pub use dead_letter::{
    DeadLetterPublisher, HEADER_ERROR, HEADER_ORIGINAL_SUBJECT, HEADER_REASON, HEADER_TRUNCATED,
};
pub use jetstream::{close, connect, ensure_consumer, IntakeError};
pub use settings::{IntakeSettings, NatsSettings};
