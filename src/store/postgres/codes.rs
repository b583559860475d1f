//! [`crate::store::CodeStore`] on PostgreSQL (written once in `store::codes`). Redemption is one guarded `UPDATE`: of two checkouts in two
//! processes racing for one code, the row lock makes the second re-check the guard after the
//! first commits, and it changes nothing.

use super::PgStore;

crate::store::codes::code_store!(PgStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DiscountCode, Redemption};
    use crate::store::test_support::{at, postgres};
    use crate::store::{millis, CodeStore};

    /// A code issued to `c-1` on the 23rd, valid for a week.
    async fn issue(store: &PgStore, code: &str) {
        sqlx::query(
            "INSERT INTO discount_codes (code, idempotency_key, rule_id, customer_id, percent, \
             issued_at, expires_at) VALUES ($1, 'key-1', 'delay', 'c-1', 15, $2, $3)",
        )
        .bind(code)
        .bind(millis(at("2026-11-23T09:00:00Z")))
        .bind(millis(at("2026-11-30T09:00:00Z")))
        .execute(store.pool())
        .await
        .expect("a code");
    }

    #[tokio::test]
    async fn a_code_is_redeemed_once_however_many_checkouts_race_for_it() {
        let (_db, store) = postgres().await;
        issue(&store, "ABCD2345EFGH").await;
        let code = DiscountCode::from_stored("ABCD2345EFGH".into());
        let now = at("2026-11-24T09:00:00Z");
        let mut checkouts = Vec::new();
        for i in 0..8 {
            let (store, code) = (store.clone(), code.clone());
            checkouts.push(tokio::spawn(async move {
                let order = format!("ord-{i}");
                store
                    .redeem_code(&code, Some("c-1"), Some(&order), now)
                    .await
                    .expect("redeem")
            }));
        }
        let mut redeemed = 0;
        for checkout in checkouts {
            match checkout.await.expect("a checkout") {
                Redemption::Redeemed { percent, .. } => {
                    assert_eq!(percent, 15);
                    redeemed += 1;
                }
                Redemption::AlreadyRedeemed { at } => assert_eq!(at, now),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(redeemed, 1);
        let stored = store.discount_code(&code).await.unwrap().expect("the code");
        assert_eq!(stored.redeemed_at, Some(now));
    }

    #[tokio::test]
    async fn a_refused_code_says_why() {
        let (_db, store) = postgres().await;
        issue(&store, "ABCD2345EFGH").await;
        let code = DiscountCode::from_stored("ABCD2345EFGH".into());
        let unknown = DiscountCode::from_stored("ZZZZ2345ZZZZ".into());
        let soon = at("2026-11-24T09:00:00Z");
        assert_eq!(
            store.redeem_code(&unknown, None, None, soon).await.unwrap(),
            Redemption::Unknown
        );
        assert_eq!(
            store
                .redeem_code(&code, Some("c-2"), None, soon)
                .await
                .unwrap(),
            Redemption::OtherCustomer
        );
        let late = at("2026-12-01T09:00:00Z");
        assert_eq!(
            store.redeem_code(&code, None, None, late).await.unwrap(),
            Redemption::Expired {
                at: at("2026-11-30T09:00:00Z")
            }
        );
    }
}
