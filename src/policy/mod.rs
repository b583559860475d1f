//! ④ Policy: what keeps proactive outreach from becoming noise. Today: quiet hours, which
//! defer a message to a decent hour in the customer's own time zone.

pub mod quiet_hours;

pub use quiet_hours::{QuietHours, QuietHoursSettings, QuietPolicy, QuietWindow};
