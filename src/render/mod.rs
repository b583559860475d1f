//! ⑤ Rendering: handlebars templates per channel part and locale (SPEC §3).
//!
//! `templates/<template>/<part>[.<locale>].hbs`. Parts: `sms`, `email.subject`, `email.html`,
//! `email.text`, `push.title`, `push.body`. Locale resolution: `ko-KR` → `ko` → no locale.
//! Strict mode: a missing variable is an error, never a blank in a customer's message.

mod advertising;
mod format;
mod helpers;
mod korean;
mod message;
mod settings;
mod sms;
mod syntax;
mod templates;

pub use advertising::KoreanAdLabel;
pub use format::{format_date, format_money, DateStyle, FormatLocale, MoneyError};
pub use korean::Particle;
pub(crate) use message::{attributes_json, incident_json};
pub use message::{event_tracking_link, render_on, render_parts, sms_as_sent, RenderInput};
pub use settings::RenderSettings;
pub use sms::{measure as measure_sms, SmsEncoding, SmsSize};
pub use templates::{Part, PartFailure, RenderError, RenderedParts, TemplateError, Templates};
