//! [`crate::store::ReplayStore`] on PostgreSQL (written once for both backends in
//! `store::replay`).

use super::PgStore;

crate::store::replay::replay_store!(PgStore);
