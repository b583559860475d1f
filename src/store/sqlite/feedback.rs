//! [`crate::store::FeedbackStore`] on SQLite, written once in `store::feedback`.

use super::SqliteStore;

crate::store::feedback::feedback_store!(SqliteStore, phone = "json_extract(doc, '$.phone')");
