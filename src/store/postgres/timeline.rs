//! [`crate::store::TimelineStore`] on PostgreSQL: one customer's story, read with a few
//! indexed probes (written once for both backends in `store::timeline`).

use super::PgStore;

crate::store::timeline::timeline_store!(PgStore);
