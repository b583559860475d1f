//! [`crate::store::OutcomeStore`] on PostgreSQL (written once for both backends in
//! `store::outcomes`).

use super::PgStore;

crate::store::outcomes::outcome_store!(PgStore);
