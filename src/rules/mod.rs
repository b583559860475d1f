//! ② Rules: which event, for whom, with which template, on which channels.
//!
//! CX teams write `rules/*.toml` (SPEC §2). A rule set is loaded whole and validated whole —
//! every error reported as `file:line:col: message` — and then is immutable: matching is a
//! lookup by event type into rules pre-sorted by priority.

mod expr;
mod load;
mod rule;

pub use expr::{key_text, shown, to_cel, Bindings, Expression, SyntaxError};
pub use load::{LoadError, TemplateIndex, RISK_MODEL_FILE};
pub use rule::{ChannelChoice, Location, OfferSpec, Rule, RuleSet};
