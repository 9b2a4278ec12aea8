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

/// Whether `error` says the statement surely changed nothing for want of room or right:
/// no connection to send it on, or the database refusing it before any change (SQLite:
/// out of memory, full, read-only, busy, locked, no permission; PostgreSQL: out of
/// disk, memory or connections, a read-only transaction or standby, no privilege, a
/// serialization failure or deadlock, a lock not available, a cancelled statement). Anything else (a lost connection, an I/O error
/// after the commit, a shutdown) may have come after the change.
pub(crate) fn refused_before_writing(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(database) => database_refused(database.as_ref()),
        _ => false,
    }
}

fn database_refused(error: &dyn sqlx::error::DatabaseError) -> bool {
    let code = error.code().unwrap_or_default();
    #[cfg(feature = "sqlite")]
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        // The primary result code is the extended one's low byte.
        let primary = code.parse::<i32>().map(|code| code & 0xff);
        return matches!(primary, Ok(3 | 5 | 6 | 7 | 8 | 13));
    }
    #[cfg(feature = "postgres")]
    if error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return code.starts_with("53")
            || matches!(
                &*code,
                "25006" | "42501" | "40001" | "40P01" | "55P03" | "57014"
            );
    }
    false
}
