//! Remember-me tokens in SQL (SQLite and PostgreSQL): one statement table per dialect,
//! one implementation written by [`sql_remember_store!`].

use super::RememberRecord;
use super::RememberStoreError;

/// The SQL a remember store runs, in one dialect; parameters in the order given.
pub(crate) struct RememberStatements {
    /// series, validator_hash, user_id, created_at, last_used_at, expires_at
    pub insert: &'static str,
    /// series → row
    pub find: &'static str,
    /// grace_until, new hash, now, series, expected hash
    pub rotate: &'static str,
    /// series
    pub delete: &'static str,
    /// user_id
    pub delete_for_user: &'static str,
    /// now, limit
    pub delete_expired: &'static str,
}

/// A stored 32-byte hash; `Corrupt` if it has another length.
pub(crate) fn hash(bytes: Vec<u8>) -> Result<[u8; 32], RememberStoreError> {
    bytes
        .try_into()
        .map_err(|_| RememberStoreError::Corrupt("validator hash is not 32 bytes".into()))
}

/// A row's columns as a record.
pub(crate) fn decode<R: sqlx::Row>(row: &R) -> Result<RememberRecord, RememberStoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    use crate::time::Timestamp;
    let column = |error: sqlx::Error| RememberStoreError::Corrupt(Box::new(error));
    let previous: Option<Vec<u8>> = row.try_get("previous_hash").map_err(column)?;
    Ok(RememberRecord {
        series: row.try_get("series").map_err(column)?,
        validator_hash: hash(row.try_get("validator_hash").map_err(column)?)?,
        previous_hash: previous.map(hash).transpose()?,
        previous_valid_until: row
            .try_get::<Option<i64>, _>("previous_valid_until")
            .map_err(column)?
            .map(Timestamp),
        user_id: row.try_get("user_id").map_err(column)?,
        created_at: Timestamp(row.try_get("created_at").map_err(column)?),
        last_used_at: Timestamp(row.try_get("last_used_at").map_err(column)?),
        expires_at: Timestamp(row.try_get("expires_at").map_err(column)?),
    })
}

/// Implements [`super::RememberStore`] for `$store` (a struct with a `pool` field) with
/// the statements `$sql`. Rotation is a conditional `UPDATE` on the current hash.
macro_rules! sql_remember_store {
    ($store:ty, $sql:expr) => {
        #[async_trait::async_trait]
        impl $crate::remember::RememberStore for $store {
            async fn insert(
                &self,
                record: &$crate::remember::RememberRecord,
            ) -> Result<(), $crate::remember::RememberStoreError> {
                sqlx::query($sql.insert)
                    .bind(&record.series)
                    .bind(&record.validator_hash[..])
                    .bind(&record.user_id)
                    .bind(record.created_at.as_millis())
                    .bind(record.last_used_at.as_millis())
                    .bind(record.expires_at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                Ok(())
            }

            async fn find(
                &self,
                series: &str,
            ) -> Result<
                Option<$crate::remember::RememberRecord>,
                $crate::remember::RememberStoreError,
            > {
                let row = sqlx::query($sql.find)
                    .bind(series)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                row.as_ref().map(super::decode).transpose()
            }

            async fn rotate(
                &self,
                series: &str,
                expected: &[u8; 32],
                new_hash: &[u8; 32],
                grace_until: $crate::time::Timestamp,
                now: $crate::time::Timestamp,
            ) -> Result<bool, $crate::remember::RememberStoreError> {
                let done = sqlx::query($sql.rotate)
                    .bind(grace_until.as_millis())
                    .bind(&new_hash[..])
                    .bind(now.as_millis())
                    .bind(series)
                    .bind(&expected[..])
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(
                &self,
                series: &str,
            ) -> Result<bool, $crate::remember::RememberStoreError> {
                let done = sqlx::query($sql.delete)
                    .bind(series)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_for_user(
                &self,
                user_id: &str,
            ) -> Result<u64, $crate::remember::RememberStoreError> {
                let done = sqlx::query($sql.delete_for_user)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn delete_expired(
                &self,
                now: $crate::time::Timestamp,
                limit: u32,
            ) -> Result<u64, $crate::remember::RememberStoreError> {
                let done = sqlx::query($sql.delete_expired)
                    .bind(now.as_millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteRememberStore;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::RememberStatements;
    use sqlx::sqlite::SqlitePool;

    /// Remember-me tokens in the `remember_tokens` table of a database opened with
    /// [`crate::store::open_sqlite`].
    #[derive(Clone, Debug)]
    pub struct SqliteRememberStore {
        pool: SqlitePool,
    }

    impl SqliteRememberStore {
        /// A store over `pool`.
        pub fn new(pool: SqlitePool) -> Self {
            SqliteRememberStore { pool }
        }
    }

    const STATEMENTS: RememberStatements = RememberStatements {
        insert: "INSERT INTO remember_tokens (series, validator_hash, user_id, created_at, \
                 last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        find: "SELECT * FROM remember_tokens WHERE series = ?",
        rotate: "UPDATE remember_tokens SET previous_hash = validator_hash, \
                 previous_valid_until = ?, validator_hash = ?, last_used_at = ? \
                 WHERE series = ? AND validator_hash = ?",
        delete: "DELETE FROM remember_tokens WHERE series = ?",
        delete_for_user: "DELETE FROM remember_tokens WHERE user_id = ?",
        delete_expired: "DELETE FROM remember_tokens WHERE series IN \
                         (SELECT series FROM remember_tokens WHERE expires_at <= ? LIMIT ?)",
    };

    sql_remember_store!(SqliteRememberStore, STATEMENTS);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresRememberStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::RememberStatements;
    use crate::pg::PgHandle;

    /// Remember-me tokens in the `remember_tokens` table of a database opened with
    /// [`crate::store::open_postgres`] or
    /// [`PgHandle::connect`].
    #[derive(Clone, Debug)]
    pub struct PostgresRememberStore {
        pool: PgHandle,
    }

    impl PostgresRememberStore {
        /// A store over `pool`: a [`sqlx::PgPool`] (direct) or a [`PgHandle`].
        pub fn new(pool: impl Into<PgHandle>) -> Self {
            PostgresRememberStore { pool: pool.into() }
        }
    }

    const STATEMENTS: RememberStatements = RememberStatements {
        insert: "INSERT INTO remember_tokens (series, validator_hash, user_id, created_at, \
                 last_used_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        find: "SELECT * FROM remember_tokens WHERE series = $1",
        rotate: "UPDATE remember_tokens SET previous_hash = validator_hash, \
                 previous_valid_until = $1, validator_hash = $2, last_used_at = $3 \
                 WHERE series = $4 AND validator_hash = $5",
        delete: "DELETE FROM remember_tokens WHERE series = $1",
        delete_for_user: "DELETE FROM remember_tokens WHERE user_id = $1",
        delete_expired: "DELETE FROM remember_tokens WHERE series IN \
                         (SELECT series FROM remember_tokens WHERE expires_at <= $1 LIMIT $2)",
    };

    sql_remember_store!(PostgresRememberStore, STATEMENTS);
}
