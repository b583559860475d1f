//! [`crate::store::ConsoleStore`] on SQLite (written once for both backends in
//! `store::console`).

use super::SqliteStore;

crate::store::console::console_store!(SqliteStore);
