//! [`crate::store::FeedbackStore`] on PostgreSQL, written once in `store::feedback`.

use super::PgStore;

crate::store::feedback::feedback_store!(PgStore, phone = "(doc::jsonb ->> 'phone')");
