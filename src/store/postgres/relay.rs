//! [`crate::store::RelayStore`] on PostgreSQL, written once in `store::relay`.

use super::PgStore;

crate::store::relay::relay_store!(
    PgStore,
    forget = "DELETE FROM outreach_events \
              WHERE seq IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint)"
);
