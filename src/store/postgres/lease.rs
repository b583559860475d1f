//! The lease primitive on PostgreSQL: the same three verbs and names as `sqlite/lease.rs`, each
//! one statement inside the caller's transaction. `INSERT … ON CONFLICT DO UPDATE … WHERE`
//! takes the row lock, so two processes asking at once are serialised by the row: the second
//! sees the first's lease and is refused.

pub(super) use crate::store::lease::{fanout, Acquired, FANOUT};

crate::store::lease::lease_verbs!(sqlx::PgConnection);

#[cfg(test)]
mod tests {
    use super::*;

    crate::store::lease::lease_life_test!(crate::store::test_support::postgres);

    #[tokio::test]
    async fn of_many_connections_asking_at_once_exactly_one_gets_the_lease() {
        let (_db, store) = crate::store::test_support::postgres().await;
        let contenders = 8;
        let mut asks = Vec::new();
        for i in 0..contenders {
            let pool = store.pool().clone();
            asks.push(tokio::spawn(async move {
                // Each in its own transaction, as a process taking a tick would be.
                let mut tx = pool.begin().await.expect("begin");
                let (now, until) = (
                    DateTime::UNIX_EPOCH,
                    DateTime::UNIX_EPOCH + chrono::Duration::minutes(5),
                );
                let got = acquire(&mut tx, "tick", &format!("p{i}"), now, until)
                    .await
                    .expect("acquire");
                tx.commit().await.expect("commit");
                got
            }));
        }
        let mut held = 0;
        for ask in asks {
            if ask.await.expect("a contender") == Acquired::Held {
                held += 1;
            }
        }
        assert_eq!(held, 1);
    }
}
