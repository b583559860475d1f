//! ④ Policy: what keeps proactive outreach from becoming noise — quiet hours, which defer a
//! message to a decent hour in the customer's own time zone, frequency caps on marketing, and
//! retraction of a message whose problem is gone before it is sent, no marketing for customers
//! under an open incident.

pub mod caps;
pub mod incidents;
pub mod quiet_hours;
pub mod retraction;

pub use caps::{CapSettings, Policy};
pub use quiet_hours::{QuietHours, QuietHoursSettings, QuietPolicy, QuietWindow};
