//! One lease primitive for whatever only one process may do at a time — a schedule's tick, a
//! fan-out's pages — on the `leases` table, always inside the caller's transaction, so what is
//! done under a lease commits only while it is held.
//!
//! Every verb is one statement that PostgreSQL accepts too (`INSERT … ON CONFLICT DO UPDATE …
//! WHERE … RETURNING`): the lease is fenced by the database, not by SQLite's single writer.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use crate::store::{from_millis, millis, StoreError};

/// The answer to "may I take this lease?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Acquired {
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

/// Takes `name` for `owner` until `until`, if it is free, expired at `now`, or already
/// `owner`'s (then it is extended).
pub(super) async fn acquire(
    conn: &mut SqliteConnection,
    name: &str,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Acquired, StoreError> {
    let taken = sqlx::query(
        "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
         WHERE leases.owner = excluded.owner OR leases.until <= ?4 \
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
    let holder = sqlx::query("SELECT owner, until FROM leases WHERE name = ?1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Acquired::Busy {
        owner: holder.try_get("owner")?,
        until: from_millis(holder.try_get("until")?)?,
    })
}

/// Extends `owner`'s lease on `name` to `until`; false when `owner` no longer holds it
/// (another process took it over): the caller must not commit what it did under it.
pub(super) async fn extend(
    conn: &mut SqliteConnection,
    name: &str,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let extended = sqlx::query("UPDATE leases SET until = ?1 WHERE name = ?2 AND owner = ?3")
        .bind(millis(until))
        .bind(name)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(extended.rows_affected() == 1)
}

/// Hands `name` back, if `owner` holds it, so any process may take it at once; false when it
/// was not `owner`'s.
pub(super) async fn release(
    conn: &mut SqliteConnection,
    name: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    let released = sqlx::query("DELETE FROM leases WHERE name = ?1 AND owner = ?2")
        .bind(name)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(released.rows_affected() == 1)
}

/// What a schedule's lease name starts with; its name follows. Queries that join a table to
/// its leases bind it, so the names are spelled here only.
pub(super) const SCHEDULE: &str = "schedule:";
/// What a fan-out's lease name starts with; its id follows.
pub(super) const FANOUT: &str = "fanout:";

/// The lease name of a schedule.
pub(super) fn schedule(name: &str) -> String {
    format!("{SCHEDULE}{name}")
}

/// The lease name of a fan-out.
pub(super) fn fanout(id: i64) -> String {
    format!("{FANOUT}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + i64::from(minute) * 60, 0).expect("a time")
    }

    #[tokio::test]
    async fn a_lease_is_one_owners_until_it_expires_or_is_handed_back() {
        let (_dir, store) = crate::store::test_support::store().await;
        let mut conn = store.pool().acquire().await.expect("a connection");
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
}
