//! [`crate::store::RelayStore`] on SQLite, written once in `store::relay`.

use super::SqliteStore;

crate::store::relay::relay_store!(
    SqliteStore,
    forget = "DELETE FROM outreach_events WHERE seq IN (SELECT value FROM json_each($1))"
);
