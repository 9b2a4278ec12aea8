//! Throttle counters in SQL (SQLite and PostgreSQL): one upsert per attempt, so
//! concurrent processes count together.

use super::ThrottleStoreError;
use super::{Counter, ThrottleStore};
use crate::sql_error::map_sqlx;
use crate::time::Timestamp;
use std::time::Duration;

/// The SQL a throttle store runs, in one dialect; parameters in the order given.
pub(crate) struct ThrottleStatements {
    /// key, now, window start, seen → count, first_at, last_at (no row: it had moved)
    pub record_if: &'static str,
    /// key, first_at
    pub release: &'static str,
    /// key → count, first_at, last_at
    pub get: &'static str,
    /// key
    pub clear: &'static str,
    /// before, limit
    pub delete_stale: &'static str,
}

fn counter(count: i64, first_at: i64, last_at: i64) -> Counter {
    Counter {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        first_at: Timestamp(first_at),
        last_at: Timestamp(last_at),
    }
}

macro_rules! sql_throttle_store {
    ($store:ty, $sql:expr) => {
        #[async_trait::async_trait]
        impl ThrottleStore for $store {
            async fn record_if(
                &self,
                key: &str,
                window: Duration,
                now: Timestamp,
                seen: u32,
            ) -> Result<Option<Counter>, ThrottleStoreError> {
                let row: Option<(i64, i64, i64)> = sqlx::query_as($sql.record_if)
                    .bind(key)
                    .bind(now.as_millis())
                    .bind(now.minus(window).as_millis())
                    .bind(i64::from(seen))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(row.map(|(count, first_at, last_at)| counter(count, first_at, last_at)))
            }

            async fn release(
                &self,
                key: &str,
                first_at: Timestamp,
            ) -> Result<(), ThrottleStoreError> {
                sqlx::query($sql.release)
                    .bind(key)
                    .bind(first_at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn get(
                &self,
                key: &str,
                window: Duration,
                now: Timestamp,
            ) -> Result<Option<Counter>, ThrottleStoreError> {
                let row: Option<(i64, i64, i64)> = sqlx::query_as($sql.get)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(row
                    .map(|(count, first_at, last_at)| counter(count, first_at, last_at))
                    .filter(|counter| counter.first_at > now.minus(window)))
            }

            async fn clear(&self, key: &str) -> Result<(), ThrottleStoreError> {
                sqlx::query($sql.clear)
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn delete_stale(
                &self,
                before: Timestamp,
                limit: u32,
            ) -> Result<u64, ThrottleStoreError> {
                let done = sqlx::query($sql.delete_stale)
                    .bind(before.as_millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteThrottleStore;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use sqlx::sqlite::SqlitePool;

    /// Throttle counters in the `throttle_counters` table of a database opened with
    /// [`crate::store::open_sqlite`].
    #[derive(Clone, Debug)]
    pub struct SqliteThrottleStore {
        pool: SqlitePool,
    }

    impl SqliteThrottleStore {
        /// A store over `pool`.
        pub fn new(pool: SqlitePool) -> Self {
            SqliteThrottleStore { pool }
        }
    }

    const STATEMENTS: ThrottleStatements = ThrottleStatements {
        record_if:
            "INSERT INTO throttle_counters (key, count, first_at, last_at) VALUES (?1, 1, ?2, ?2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 count = CASE WHEN first_at <= ?3 THEN 1 ELSE count + 1 END, \
                 first_at = CASE WHEN first_at <= ?3 THEN ?2 ELSE first_at END, \
                 last_at = ?2 \
                 WHERE (CASE WHEN first_at <= ?3 THEN 0 ELSE count END) <= ?4 \
                 RETURNING count, first_at, last_at",
        release: "UPDATE throttle_counters SET count = count - 1 \
                  WHERE key = ? AND first_at = ? AND count > 0",
        get: "SELECT count, first_at, last_at FROM throttle_counters WHERE key = ?",
        clear: "DELETE FROM throttle_counters WHERE key = ?",
        delete_stale: "DELETE FROM throttle_counters WHERE key IN \
                       (SELECT key FROM throttle_counters WHERE last_at < ? LIMIT ?)",
    };

    sql_throttle_store!(SqliteThrottleStore, STATEMENTS);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresThrottleStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::pg::PgHandle;

    /// Throttle counters in the `throttle_counters` table of a database opened with
    /// [`crate::store::open_postgres`] or
    /// [`PgHandle::connect`].
    #[derive(Clone, Debug)]
    pub struct PostgresThrottleStore {
        pool: PgHandle,
    }

    impl PostgresThrottleStore {
        /// A store over `pool`: a [`sqlx::PgPool`] (direct) or a [`PgHandle`].
        pub fn new(pool: impl Into<PgHandle>) -> Self {
            PostgresThrottleStore { pool: pool.into() }
        }
    }

    const STATEMENTS: ThrottleStatements = ThrottleStatements {
        record_if: "INSERT INTO throttle_counters AS t (key, count, first_at, last_at) \
                 VALUES ($1, 1, $2, $2) ON CONFLICT (key) DO UPDATE SET \
                 count = CASE WHEN t.first_at <= $3 THEN 1 ELSE t.count + 1 END, \
                 first_at = CASE WHEN t.first_at <= $3 THEN $2 ELSE t.first_at END, \
                 last_at = $2 \
                 WHERE (CASE WHEN t.first_at <= $3 THEN 0 ELSE t.count END) <= $4 \
                 RETURNING count, first_at, last_at",
        release: "UPDATE throttle_counters SET count = count - 1 \
                  WHERE key = $1 AND first_at = $2 AND count > 0",
        get: "SELECT count, first_at, last_at FROM throttle_counters WHERE key = $1",
        clear: "DELETE FROM throttle_counters WHERE key = $1",
        delete_stale: "DELETE FROM throttle_counters WHERE key IN \
                       (SELECT key FROM throttle_counters WHERE last_at < $1 LIMIT $2)",
    };

    sql_throttle_store!(PostgresThrottleStore, STATEMENTS);
}
