//! [`crate::store::CodeStore`] on SQLite (written once in `store::codes`), and the voiding of a
//! cancelled message's code.

use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::store::StoreError;

crate::store::codes::code_store!(SqliteStore);

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
