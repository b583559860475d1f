//! [`crate::store::ScheduleStore`] on SQLite: leases, sweeps and emissions (written once for
//! both backends in `store::schedules`).

use super::SqliteStore;

crate::store::schedules::schedule_store!(SqliteStore, sqlx::SqliteConnection, sqlx::Sqlite);
