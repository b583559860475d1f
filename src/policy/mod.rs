//! ④ Policy: what keeps proactive outreach from becoming noise — quiet hours, which defer a
//! message to a decent hour in the customer's own time zone, and frequency caps on marketing.

pub mod caps;
pub mod quiet_hours;

pub use caps::{CapSettings, Policy};
pub use quiet_hours::{QuietHours, QuietHoursSettings, QuietPolicy, QuietWindow};
