//! ⑥ The outbox: messages wait here, durably, until a gateway has them.
//!
//! ```text
//!   pending ──claim──▶ sending ──Sent──▶ sent
//!      ▲  ▲               │  └──Reject / attempts exhausted──▶ failed (no channel left)
//!      │  └──Retry (backoff)─┤
//!      └── next channel, re-rendered (Reject / attempts exhausted, a channel left)
//!   sending, lease expired (a dispatcher died mid-request) ──claim──▶ ambiguous:
//!      gateway.reconcile(key): delivered → sent; otherwise resend
//! ```
//! Rows are written by intake in the same transaction as the event that caused them, under a
//! unique idempotency key; the dispatcher claims them in batches, sends concurrently, and
//! records every attempt.

mod claims;
mod dispatcher;
mod fallback;
mod retry;
mod settings;

pub use dispatcher::{DispatchOutcome, Dispatcher};
pub use fallback::Fallback;
pub use retry::RetryPolicy;
pub use settings::OutboxSettings;
