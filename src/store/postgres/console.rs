//! [`crate::store::ConsoleStore`] on PostgreSQL (written once for both backends in
//! `store::console`).

use super::PgStore;

crate::store::console::console_store!(PgStore);
