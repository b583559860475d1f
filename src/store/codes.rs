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
