//! Discount codes as issued with their messages, looked up and redeemed at checkout.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{DiscountCode, Redemption};

/// A stored discount code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedCode {
    /// The code.
    pub code: DiscountCode,
    /// Percent off.
    pub percent: u8,
    /// Who it was issued to.
    pub customer_id: String,
    /// The rule that offered it.
    pub rule_id: String,
    /// The outreach that carried it.
    pub idempotency_key: String,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Refused after this.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub redeemed_at: Option<DateTime<Utc>>,
    /// The order it was used on.
    pub redeemed_order_id: Option<String>,
    /// When it was voided: its message was cancelled before it was sent.
    pub voided_at: Option<DateTime<Utc>>,
}

/// Why `code` was not redeemed, from the code as stored now (`None`: unknown). Every backend
/// redeems in one guarded statement and, when it changed nothing, explains with this.
pub(crate) fn refusal(issued: Option<IssuedCode>, now: DateTime<Utc>) -> Redemption {
    match issued {
        None => Redemption::Unknown,
        Some(IssuedCode {
            redeemed_at: Some(at),
            ..
        }) => Redemption::AlreadyRedeemed { at },
        Some(IssuedCode {
            voided_at: Some(at),
            ..
        }) => Redemption::Void { at },
        Some(issued) if issued.expires_at <= now => Redemption::Expired {
            at: issued.expires_at,
        },
        Some(_) => Redemption::OtherCustomer,
    }
}

/// Discount codes: issued by intake with their outreach, voided by the outbox, read and
/// redeemed here.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// A discount code as issued, for checkout and support.
    async fn discount_code(&self, code: &DiscountCode) -> Result<Option<IssuedCode>, StoreError>;

    /// Uses a code, once: atomically marks it redeemed unless it is used, expired, unknown or
    /// (when `customer_id` is given) issued to someone else.
    async fn redeem_code(
        &self,
        code: &DiscountCode,
        customer_id: Option<&str>,
        order_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Redemption, StoreError>;
}

/// [`CodeStore`] for a backend's store type (with a `pool` field), written once: the
/// statements use `$n` placeholders in bind order and a standard `CAST`, which SQLite and
/// PostgreSQL read alike. Redemption is one guarded `UPDATE`: of two checkouts racing for one
/// code, in one process or two, the second finds it used and changes nothing.
macro_rules! code_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::CodeStore for $store {
            async fn discount_code(
                &self,
                code: &$crate::domain::DiscountCode,
            ) -> Result<Option<$crate::store::IssuedCode>, $crate::store::StoreError> {
                let row = sqlx::query(
                    "SELECT code, percent, customer_id, rule_id, idempotency_key, issued_at, \
                     expires_at, redeemed_at, redeemed_order_id, voided_at \
                     FROM discount_codes WHERE code = $1",
                )
                .bind(code.as_stored())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map($crate::store::rows::issued_code_from_row)
                    .transpose()
            }

            async fn redeem_code(
                &self,
                code: &$crate::domain::DiscountCode,
                customer_id: Option<&str>,
                order_id: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::domain::Redemption, $crate::store::StoreError> {
                use sqlx::Row;
                let redeemed = sqlx::query(
                    "UPDATE discount_codes SET redeemed_at = $1, redeemed_order_id = $2 \
                     WHERE code = $3 AND redeemed_at IS NULL AND voided_at IS NULL \
                       AND expires_at > $1 AND (CAST($4 AS TEXT) IS NULL OR customer_id = $4) \
                     RETURNING percent, customer_id",
                )
                .bind($crate::store::millis(now))
                .bind(order_id)
                .bind(code.as_stored())
                .bind(customer_id)
                .fetch_optional(self.writer())
                .await?;
                if let Some(row) = redeemed {
                    return Ok($crate::domain::Redemption::Redeemed {
                        percent: $crate::store::rows::percent(row.try_get("percent")?)?,
                        customer_id: row.try_get("customer_id")?,
                    });
                }
                // Not redeemed: say why.
                Ok($crate::store::codes::refusal(
                    self.discount_code(code).await?,
                    now,
                ))
            }
        }
    };
}
pub(crate) use code_store;
