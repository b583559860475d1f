//! [`crate::store::OutcomeStore`] on SQLite (written once for both backends in
//! `store::outcomes`).

use super::SqliteStore;

crate::store::outcomes::outcome_store!(SqliteStore);
