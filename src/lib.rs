//! Forewarn tells customers about a problem before they notice it.
//!
//! Backends publish order, shipment and outage events to NATS JetStream; forewarn matches each
//! one against the rules customer-experience teams write, renders the message from a handlebars
//! template in the customer's language, and dispatches it through the customer's channel —
//! exactly once, even across crashes.
//!
//! ```text
//!  NATS JetStream ──① intake ──② rules ──③ risk ──④ policy ──⑤ render ──⑥ outbox ──⑦ gateway ──⑧ delivery
//!  events.>          parse,       match,    delay,    consent,   locale,     enqueue,    sandbox,
//!                    dead-letter  priority  churn,    quiet      parts,      claim,      twilio, smtp, …
//!                                           why       hours,     (광고)      retract,
//!                                                     caps                   retry
//!        ▲
//!        ├── schedule: cron jobs publish synthetic events for what no event announces
//!        │   (shipment.overdue, order.stalled, csat.due); release held messages; retention
//!        └── incident: on-call announces outage.* (CLI, HTTP); a fan-out worker pages through
//!            the customers an incident concerns, most urgent first, into ② → ⑥
//! ```
//!
//! # Layout
//! - [`authoring`]: rules and templates as one validated set, hot-reloaded.
//! - [`config`]: assembles each module's typed settings (each lives beside the code it
//!   configures) with embedded defaults and `FOREWARN_<SECTION>__<KEY>` overrides; [`secrets`]
//!   reads credentials from the environment.
//! - [`domain`]: pure types — the CloudEvent envelope, the event catalogue, customers, channels,
//!   outreach. Parsed once at the edge; nothing past it holds a raw string where a type exists.
//! - [`intake`]: ① JetStream stream and durable consumer, batch pulls, dead letters, acks.
//! - [`rules`]: ② rule files and matching by event type and priority.
//! - [`risk`]: ③ delay and churn scores from history, their model file, explanations, fitting.
//! - [`policy`]: ④ quiet hours, frequency caps, retraction of messages whose problem is gone.
//! - [`render`]: ⑤ the handlebars registry, locale resolution and channel parts.
//! - [`pipeline`]: ②→⑤ by stage over domain types, with no I/O: applying events to state, the
//!   one per-customer decision (rules, risk, holds) that intake and the fan-out share, channel
//!   choice and rendering.
//! - [`outbox`]: ⑥ idempotency keys, the dispatcher that claims due rows, retry schedule.
//! - [`gateway`]: ⑦ the `Gateway` trait and one module per provider: sandbox, twilio, smtp,
//!   sendgrid, fcm, webhook; pacing and circuit breaking.
//! - [`feedback`]: ⑧ what comes back — delivery receipts that move an attempt forward (and an
//!   undelivered outreach to its next channel), and customers' replies (STOP, START, HELP).
//! - [`relay`]: ⑨ outreach events out — every change of a message's state and every opt-out,
//!   recorded by triggers in the same transaction, published to NATS in order, once.
//! - [`schedule`]: cron jobs that emit synthetic events for what no event announces (overdue
//!   parcels, stalled orders, CSAT), release held messages and purge old personal data.
//! - [`simulate`]: a draft rule set replayed over stored history (or a file of events) on a
//!   scratch database with intake's own batch transaction, reported per rule and channel and
//!   compared with what the live rules decided.
//! - [`incident`]: announcements checked once for the CLI and HTTP, and the fan-out worker that
//!   finds an incident's customers page by page, ranks them by churn risk × value, and decides
//!   each one's message with the pipeline.
//! - [`store`]: the database, one narrow trait per aggregate (intake, outbox, incidents,
//!   schedules, retention, codes, timeline, outcomes), each implemented in a file of the same
//!   name under the backend's folder (`sqlite/`, `postgres/`); `database.url` picks one.
//! - [`http`]: health, readiness and Prometheus metrics; discount codes; incidents;
//!   providers' receipts and replies; `/openapi.json`; and at `/console/`, the [`console`]:
//!   rules, template previews, customers' timelines, incidents and the day's numbers in a
//!   browser, for CX and on-call.
//! - [`cli`]: one module per subcommand; [`shutdown`], [`worker`] (the one loop the dispatcher,
//!   fan-out worker and scheduler step in), [`telemetry`] and [`metrics`] are the plumbing
//!   around them. The local `nats-server` the demo starts (and the tests and benchmarks
//!   borrow) lives with the demo, in `cli::demo::nats_server`: `forewarn run` never installs
//!   or starts one.

pub mod authoring;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod feedback;
pub mod gateway;
pub mod http;
pub mod incident;
pub mod intake;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod policy;
pub mod readiness;
pub mod relay;
pub mod render;
pub mod risk;
pub mod rules;
pub mod schedule;
pub mod secrets;
pub mod shutdown;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod worker;
