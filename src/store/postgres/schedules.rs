//! [`crate::store::ScheduleStore`] on PostgreSQL: leases, sweeps and emissions (written once
//! for both backends in `store::schedules`). Of several processes reaching the same tick, the
//! lease lets one run it; the others see it taken or done.

use super::PgStore;

crate::store::schedules::schedule_store!(PgStore, sqlx::PgConnection, sqlx::Postgres);
