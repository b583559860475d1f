//! [`CodeStore`] on SQLite, and the voiding of a cancelled message's code.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::domain::{DiscountCode, Redemption};
use crate::store::codes::refusal;
use crate::store::rows::{issued_code_from_row, percent};
use crate::store::{millis, CodeStore, IssuedCode, StoreError};

#[async_trait]
impl CodeStore for SqliteStore {
    async fn discount_code(&self, code: &DiscountCode) -> Result<Option<IssuedCode>, StoreError> {
        let row = sqlx::query(
            "SELECT code, percent, customer_id, rule_id, idempotency_key, issued_at, expires_at, \
             redeemed_at, redeemed_order_id, voided_at FROM discount_codes WHERE code = ?",
        )
        .bind(code.as_stored())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(issued_code_from_row).transpose()
    }

    async fn redeem_code(
        &self,
        code: &DiscountCode,
        customer_id: Option<&str>,
        order_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Redemption, StoreError> {
        // One statement: two checkouts racing for the same code cannot both win.
        let redeemed = sqlx::query(
            "UPDATE discount_codes SET redeemed_at = ?1, redeemed_order_id = ?2 \
             WHERE code = ?3 AND redeemed_at IS NULL AND voided_at IS NULL AND expires_at > ?1 \
               AND (?4 IS NULL OR customer_id = ?4) \
             RETURNING percent, customer_id",
        )
        .bind(millis(now))
        .bind(order_id)
        .bind(code.as_stored())
        .bind(customer_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = redeemed {
            return Ok(Redemption::Redeemed {
                percent: percent(row.try_get("percent")?)?,
                customer_id: row.try_get("customer_id")?,
            });
        }
        // Not redeemed: say why.
        Ok(refusal(self.discount_code(code).await?, now))
    }
}

/// Voids the discount code of the cancelled outbox row `id`, if it carried one and it is unused:
/// the customer never saw it.
pub(super) async fn void_code_of(
    tx: &mut Transaction<'_, Sqlite>,
    id: i64,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE discount_codes SET voided_at = ?1 \
         WHERE code = (SELECT discount_code FROM outbox WHERE id = ?2) \
           AND redeemed_at IS NULL AND voided_at IS NULL",
    )
    .bind(at_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
