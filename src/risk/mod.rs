//! ③ Risk: how likely this shipment is to be late (`risk.delay`) and this customer to leave
//! after this experience (`risk.churn`), on every decision, with the reasons.
//!
//! ```text
//!  history (store) ──▶ features (as of the event's time) ──▶ model (rules/risk.toml) ──▶ score
//!                                                         external risk.scored ──┘ overrides
//! ```
//! - history (`domain::History`): what forewarn remembers per customer, carrier and region,
//!   read as of a time; loaded by the store with the batch's snapshot.
//! - [`features`]: the documented inputs, computed from the event, state and history.
//! - [`model`]: the logistic regressions and their file.
//! - [`assess`](mod@assess): one decision's scores, external overrides, explanations.
//! - [`fit`]: `forewarn risk fit` / `risk eval` on observed outcomes.

pub mod assess;
pub mod features;
pub mod fit;
pub mod model;

pub use assess::{assess, value_weighted_urgency, Assessed, RiskAssessment, Source};
pub use features::{Feature, FeatureValues, Subject, Target};
pub use model::{Logistic, RiskModel, Score};
