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

/// Whether the database answered `error` by refusing the statement, so that it surely
/// changed nothing (an error the database reported, which rolls the statement back, or
/// no connection to send it on), rather than by losing the connection on the way, when
/// it may have been applied.
pub(crate) fn refused_before_writing(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}
