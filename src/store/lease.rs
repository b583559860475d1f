//! What a lease is, on every backend: one process at a time for a schedule's tick or a
//! fan-out's pages. Each backend's `lease.rs` implements the verbs (acquire, extend, release)
//! as single statements inside the caller's transaction.

use chrono::{DateTime, Utc};

/// The answer to "may I take this lease?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Yes: it is this owner's until the time asked for.
    Held,
    /// Another owner holds it, until then.
    Busy {
        /// Who.
        owner: String,
        /// Until when.
        until: DateTime<Utc>,
    },
}

/// What a schedule's lease name starts with; its name follows. Queries that join a table to
/// its leases bind it, so the names are spelled here only.
pub(crate) const SCHEDULE: &str = "schedule:";
/// What a fan-out's lease name starts with; its id follows.
pub(crate) const FANOUT: &str = "fanout:";

/// The lease name of a schedule.
pub(crate) fn schedule(name: &str) -> String {
    format!("{SCHEDULE}{name}")
}

/// The lease name of a fan-out.
pub(crate) fn fanout(id: i64) -> String {
    format!("{FANOUT}{id}")
}

/// The three lease verbs for one backend's connection type, written once: each backend's
/// `lease.rs` instantiates them. The statements use `$n` placeholders in the order they are
/// bound, which SQLite reads as PostgreSQL does.
///
/// - `acquire(conn, name, owner, now, until)`: takes `name` for `owner` until `until` if it is
///   free, expired at `now`, or already `owner`'s (then it is extended); else says who holds
///   it. `INSERT … ON CONFLICT DO UPDATE … WHERE` takes the row lock, so two processes asking
///   at once are serialised by the row and the second is refused.
/// - `extend(conn, name, owner, until)`: false when `owner` no longer holds it (another
///   process took it over): the caller must not commit what it did under it.
/// - `release(conn, name, owner)`: hands it back so any process may take it at once; false
///   when it was not `owner`'s.
macro_rules! lease_verbs {
    ($connection:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::Row;

        use crate::store::{from_millis, millis, StoreError};

        pub(super) async fn acquire(
            conn: &mut $connection,
            name: &str,
            owner: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<Acquired, StoreError> {
            let taken = sqlx::query(
                "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                 WHERE leases.owner = excluded.owner OR leases.until <= $4 \
                 RETURNING owner",
            )
            .bind(name)
            .bind(owner)
            .bind(millis(until))
            .bind(millis(now))
            .fetch_optional(&mut *conn)
            .await?;
            if taken.is_some() {
                return Ok(Acquired::Held);
            }
            let holder = sqlx::query("SELECT owner, until FROM leases WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
            Ok(Acquired::Busy {
                owner: holder.try_get("owner")?,
                until: from_millis(holder.try_get("until")?)?,
            })
        }

        pub(super) async fn extend(
            conn: &mut $connection,
            name: &str,
            owner: &str,
            until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let extended =
                sqlx::query("UPDATE leases SET until = $1 WHERE name = $2 AND owner = $3")
                    .bind(millis(until))
                    .bind(name)
                    .bind(owner)
                    .execute(&mut *conn)
                    .await?;
            Ok(extended.rows_affected() == 1)
        }

        pub(super) async fn release(
            conn: &mut $connection,
            name: &str,
            owner: &str,
        ) -> Result<bool, StoreError> {
            let released = sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(owner)
                .execute(&mut *conn)
                .await?;
            Ok(released.rows_affected() == 1)
        }
    };
}
pub(crate) use lease_verbs;

/// The lease's life, checked on one backend: `$store` is an async fn returning a guard and a
/// fresh store with a `writer()`.
#[cfg(test)]
macro_rules! lease_life_test {
    ($store:path) => {
        #[tokio::test]
        async fn a_lease_is_one_owners_until_it_expires_or_is_handed_back() {
            fn t(minute: u32) -> DateTime<Utc> {
                DateTime::from_timestamp(1_795_000_000 + i64::from(minute) * 60, 0).expect("a time")
            }
            let (_guard, store) = $store().await;
            let mut conn = store.writer().acquire().await.expect("a connection");
            assert_eq!(
                acquire(&mut conn, "job", "a", t(0), t(5)).await.unwrap(),
                Acquired::Held
            );
            // Someone else must wait; the holder may take it again (and extends it).
            assert_eq!(
                acquire(&mut conn, "job", "b", t(1), t(6)).await.unwrap(),
                Acquired::Busy {
                    owner: "a".into(),
                    until: t(5)
                }
            );
            assert_eq!(
                acquire(&mut conn, "job", "a", t(2), t(7)).await.unwrap(),
                Acquired::Held
            );
            // Expired: taken over, and the old holder can no longer extend or release it.
            assert_eq!(
                acquire(&mut conn, "job", "b", t(7), t(12)).await.unwrap(),
                Acquired::Held
            );
            assert!(!extend(&mut conn, "job", "a", t(13)).await.unwrap());
            assert!(!release(&mut conn, "job", "a").await.unwrap());
            assert!(extend(&mut conn, "job", "b", t(14)).await.unwrap());
            // Handed back: free at once, long before it would expire.
            assert!(release(&mut conn, "job", "b").await.unwrap());
            assert_eq!(
                acquire(&mut conn, "job", "c", t(8), t(9)).await.unwrap(),
                Acquired::Held
            );
        }
    };
}
#[cfg(test)]
pub(crate) use lease_life_test;
