//! How a SQL driver error reads as a [`StoreError`], for every SQL-backed store (sessions,
//! users, remember-me tokens, mail tokens, throttle counters, the mail outbox).

use crate::session::StoreError;

/// A driver error, by cause.
pub(crate) fn map_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(Box::new(error))
        }
        _ => StoreError::Unavailable(Box::new(error)),
    }
}
