//! [`crate::store::TimelineStore`] on SQLite: one customer's story, read with a few indexed
//! probes (written once for both backends in `store::timeline`).

use super::SqliteStore;

crate::store::timeline::timeline_store!(SqliteStore);
