//! Session stores. Each implements [`crate::session::SessionStore`] and passes the
//! [`conformance`] suite.

#[cfg(any(feature = "postgres", feature = "redis"))]
mod batch;
#[cfg(feature = "cache")]
mod cache;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod codec;
mod compact;
mod cookie;
mod fanout;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod revocations;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "redis")]
pub(crate) use self::redis::map_redis as redis_error;
#[cfg(feature = "redis")]
pub(crate) use self::redis::refused_before_writing as redis_refused_before_writing;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "postgres")]
pub use crate::pg::{
    migrate_postgres, transaction_pooler_sign, PgHandle, PgPooling, PgTransaction,
    PgTransactionConnection, PoolerSign,
};
#[cfg(feature = "cache")]
pub use cache::{CachedStore, Change, ChangeFeed, Changes};
pub use cookie::{CookieStore, MAX_COOKIE_VALUE_BYTES};
pub use fanout::{FanOutStore, MirrorFailure};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{open_postgres, PostgresStore};
pub use revocations::{Revocations, StoreRevocations, UserMarker};
#[cfg(feature = "sqlite")]
pub(crate) use sqlite::InlineReaders;
#[cfg(feature = "sqlite")]
pub use sqlite::{open_sqlite, SqliteStore, DISK_RESERVE_BYTES, JOURNAL_SIZE_LIMIT};

/// A shared store error as an owned one (a coalesced or batched load shares one error
/// among its waiters). The kind is kept; a boxed cause is kept as its message.
#[cfg(any(feature = "cache", feature = "postgres", feature = "redis"))]
fn unshare(error: std::sync::Arc<crate::session::StoreError>) -> crate::session::StoreError {
    use crate::session::StoreError;
    std::sync::Arc::try_unwrap(error).unwrap_or_else(|shared| match &*shared {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::VersionConflict => StoreError::VersionConflict,
        StoreError::AlreadyExists => StoreError::AlreadyExists,
        StoreError::TooLarge { size, limit } => StoreError::TooLarge {
            size: *size,
            limit: *limit,
        },
        StoreError::Corrupt(cause) => StoreError::Corrupt(cause.to_string().into()),
        StoreError::Unavailable(cause) => StoreError::Unavailable(cause.to_string().into()),
    })
}
