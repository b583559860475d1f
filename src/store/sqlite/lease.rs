//! The lease primitive on SQLite (see `store::lease`): always inside the caller's transaction,
//! so what is done under a lease commits only while it is held. Each verb is one statement, so
//! the lease is fenced by the database, not by SQLite's single writer.

pub(super) use crate::store::lease::{fanout, Acquired, FANOUT};

crate::store::lease::lease_verbs!(sqlx::SqliteConnection);

#[cfg(test)]
mod tests {
    use super::*;

    crate::store::lease::lease_life_test!(crate::store::test_support::store);
}
