//! Where personal access tokens are kept: one row per token with the SHA-256 of the token
//! (never the token), its owner, name, scopes and times. A verification is one lookup by
//! that hash; revoking marks the row, so a later use is told apart from a guess.

use crate::time::Timestamp;
use async_trait::async_trait;

crate::store_error::store_error!(
    /// Why an access token store failed.
    AccessTokenStoreError,
    "access token store"
);

/// A personal access token as stored (no secret: the token itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// Its public id (what lists show and revocation takes).
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// What its owner called it.
    pub name: String,
    /// Its first characters (`lk_` and eight more), for lists.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (`None`: never, where the administrator allows that).
    pub expires_at: Option<Timestamp>,
    /// When it was last used (written at most once a minute, so up to a minute early).
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl AccessTokenRecord {
    /// Whether it works at `now`: neither revoked nor expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// Where access tokens are kept. Implemented on SQLite and PostgreSQL
/// ([`SqliteAccessTokens`], [`PostgresAccessTokens`]); an application with its own
/// database implements it there.
#[async_trait]
pub trait AccessTokenStore: Send + Sync + 'static {
    /// Stores a new token under the SHA-256 of its text.
    async fn insert(
        &self,
        record: &AccessTokenRecord,
        hash: &[u8; 32],
    ) -> Result<(), AccessTokenStoreError>;
    /// The token whose text hashes to `hash`, revoked and expired ones included.
    async fn find(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError>;
    /// Records a use at `now`, unless one was recorded after `unless_after` (so a busy
    /// token is written at most once a minute, whichever process sees it).
    async fn touch(
        &self,
        id: &str,
        now: Timestamp,
        unless_after: Timestamp,
    ) -> Result<(), AccessTokenStoreError>;
    /// The live tokens of `user_id` (every user's when `None`), newest first.
    async fn list(
        &self,
        user_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<AccessTokenRecord>, AccessTokenStoreError>;
    /// Revokes the token `id` (only if `user_id` owns it, when given); whether a token
    /// not yet revoked was.
    async fn revoke(
        &self,
        id: &str,
        user_id: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, AccessTokenStoreError>;
    /// Revokes every token of `user_id` not yet revoked; how many.
    async fn revoke_for_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<u64, AccessTokenStoreError>;
}

/// A shared store is a store (the server hands one to the authenticator and keeps it).
#[async_trait]
impl<T: AccessTokenStore + ?Sized> AccessTokenStore for std::sync::Arc<T> {
    async fn insert(
        &self,
        record: &AccessTokenRecord,
        hash: &[u8; 32],
    ) -> Result<(), AccessTokenStoreError> {
        (**self).insert(record, hash).await
    }

    async fn find(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError> {
        (**self).find(hash).await
    }

    async fn touch(
        &self,
        id: &str,
        now: Timestamp,
        unless_after: Timestamp,
    ) -> Result<(), AccessTokenStoreError> {
        (**self).touch(id, now, unless_after).await
    }

    async fn list(
        &self,
        user_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<AccessTokenRecord>, AccessTokenStoreError> {
        (**self).list(user_id, now).await
    }

    async fn revoke(
        &self,
        id: &str,
        user_id: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, AccessTokenStoreError> {
        (**self).revoke(id, user_id, now).await
    }

    async fn revoke_for_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<u64, AccessTokenStoreError> {
        (**self).revoke_for_user(user_id, now).await
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The SQL an access token store runs, in one dialect; parameters in the order given.
struct TokenStatements {
    /// id, token_hash, user_id, name, prefix, scopes, created_at, expires_at
    insert: &'static str,
    /// token_hash
    find: &'static str,
    /// now, id, unless_after
    touch: &'static str,
    /// now
    list_all: &'static str,
    /// user_id, now
    list_for_user: &'static str,
    /// now, id
    revoke: &'static str,
    /// now, id, user_id
    revoke_owned: &'static str,
    /// now, user_id
    revoke_for_user: &'static str,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The numeric user id the SQL tables key on (they hold latchkey's own users, whose ids
/// are numbers; another id is refused as a record these tables cannot hold).
fn numeric_user(user_id: &str) -> Result<i64, AccessTokenStoreError> {
    user_id.parse().map_err(|_| {
        AccessTokenStoreError::Corrupt(
            format!("access tokens in SQL belong to numeric user ids, not {user_id:?}").into(),
        )
    })
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A row's columns as a record.
fn decode<R: sqlx::Row>(row: &R) -> Result<AccessTokenRecord, AccessTokenStoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let column = |error: sqlx::Error| AccessTokenStoreError::Corrupt(Box::new(error));
    let scopes: String = row.try_get("scopes").map_err(column)?;
    let user_id: i64 = row.try_get("user_id").map_err(column)?;
    let at = |name: &str| -> Result<Option<Timestamp>, AccessTokenStoreError> {
        Ok(row
            .try_get::<Option<i64>, _>(name)
            .map_err(column)?
            .map(Timestamp))
    };
    Ok(AccessTokenRecord {
        id: row.try_get("id").map_err(column)?,
        user_id: user_id.to_string(),
        name: row.try_get("name").map_err(column)?,
        prefix: row.try_get("prefix").map_err(column)?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        created_at: Timestamp(row.try_get("created_at").map_err(column)?),
        expires_at: at("expires_at")?,
        last_used_at: at("last_used_at")?,
        revoked_at: at("revoked_at")?,
    })
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Implements [`AccessTokenStore`] for `$store` (a struct with a `pool` field) with the
/// statements `$sql`, and `find_pooled` (the lookup through the pool) on it. `find` is
/// the store's own `lookup`, which may read another way first (SQLite's on-thread
/// reader) and falls back to `find_pooled`.
macro_rules! sql_access_token_store {
    ($store:ty, $sql:expr) => {
        impl $store {
            /// The token under `hash`, read through the pool.
            async fn find_pooled(
                &self,
                hash: &[u8; 32],
            ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError> {
                let row = sqlx::query($sql.find)
                    .bind(crate::bytes::lower_hex(hash))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                row.as_ref().map(decode).transpose()
            }
        }

        #[async_trait]
        impl AccessTokenStore for $store {
            async fn insert(
                &self,
                record: &AccessTokenRecord,
                hash: &[u8; 32],
            ) -> Result<(), AccessTokenStoreError> {
                sqlx::query($sql.insert)
                    .bind(&record.id)
                    .bind(crate::bytes::lower_hex(hash))
                    .bind(numeric_user(&record.user_id)?)
                    .bind(&record.name)
                    .bind(&record.prefix)
                    .bind(record.scopes.join(" "))
                    .bind(record.created_at.as_millis())
                    .bind(record.expires_at.map(Timestamp::as_millis))
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(())
            }

            async fn find(
                &self,
                hash: &[u8; 32],
            ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError> {
                self.lookup(hash).await
            }

            async fn touch(
                &self,
                id: &str,
                now: Timestamp,
                unless_after: Timestamp,
            ) -> Result<(), AccessTokenStoreError> {
                sqlx::query($sql.touch)
                    .bind(now.as_millis())
                    .bind(id)
                    .bind(unless_after.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(())
            }

            async fn list(
                &self,
                user_id: Option<&str>,
                now: Timestamp,
            ) -> Result<Vec<AccessTokenRecord>, AccessTokenStoreError> {
                let rows = match user_id {
                    Some(user_id) => {
                        sqlx::query($sql.list_for_user)
                            .bind(numeric_user(user_id)?)
                            .bind(now.as_millis())
                            .fetch_all(&self.pool)
                            .await
                    }
                    None => {
                        sqlx::query($sql.list_all)
                            .bind(now.as_millis())
                            .fetch_all(&self.pool)
                            .await
                    }
                }
                .map_err(crate::sql_error::map_sqlx)?;
                rows.iter().map(decode).collect()
            }

            async fn revoke(
                &self,
                id: &str,
                user_id: Option<&str>,
                now: Timestamp,
            ) -> Result<bool, AccessTokenStoreError> {
                let done = match user_id {
                    Some(user_id) => {
                        sqlx::query($sql.revoke_owned)
                            .bind(now.as_millis())
                            .bind(id)
                            .bind(numeric_user(user_id)?)
                            .execute(&self.pool)
                            .await
                    }
                    None => {
                        sqlx::query($sql.revoke)
                            .bind(now.as_millis())
                            .bind(id)
                            .execute(&self.pool)
                            .await
                    }
                }
                .map_err(crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_for_user(
                &self,
                user_id: &str,
                now: Timestamp,
            ) -> Result<u64, AccessTokenStoreError> {
                let done = sqlx::query($sql.revoke_for_user)
                    .bind(now.as_millis())
                    .bind(numeric_user(user_id)?)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteAccessTokens;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use crate::store::InlineReaders;
    use rusqlite::OptionalExtension;
    use sqlx::sqlite::SqlitePool;
    use std::sync::Arc;

    /// Access tokens in the `access_tokens` table of a database opened with
    /// [`crate::store::open_sqlite`]. A check reads the token on the request's thread
    /// (a read-only connection to the database file, as the SQLite session store reads
    /// sessions); writes go through the pool.
    #[derive(Clone, Debug)]
    pub struct SqliteAccessTokens {
        pool: SqlitePool,
        readers: Arc<InlineReaders>,
    }

    impl SqliteAccessTokens {
        /// A store over `pool`.
        pub fn new(pool: SqlitePool) -> Self {
            SqliteAccessTokens {
                pool,
                readers: Arc::default(),
            }
        }

        /// The token under `hash`: read on this thread where the on-thread reader can,
        /// through the pool otherwise.
        async fn lookup(
            &self,
            hash: &[u8; 32],
        ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError> {
            match self.read_inline(hash).await {
                Some(found) => found,
                None => self.find_pooled(hash).await,
            }
        }

        /// The token under `hash` read on this thread, or `None` to go through the pool.
        async fn read_inline(
            &self,
            hash: &[u8; 32],
        ) -> Option<Result<Option<AccessTokenRecord>, AccessTokenStoreError>> {
            let hash = crate::bytes::lower_hex(hash);
            self.readers
                .read(&self.pool, |connection| {
                    // Columns by position: looking each up by name was a sixth of a
                    // request (callgrind).
                    let mut statement = connection.prepare_cached(FIND_COLUMNS)?;
                    statement
                        .query_row([hash], |row| {
                            Ok(RawRow {
                                id: row.get(0)?,
                                user_id: row.get(1)?,
                                name: row.get(2)?,
                                prefix: row.get(3)?,
                                scopes: row.get(4)?,
                                created_at: row.get(5)?,
                                expires_at: row.get(6)?,
                                last_used_at: row.get(7)?,
                                revoked_at: row.get(8)?,
                            })
                        })
                        .optional()
                })
                .await
                .map(|row| Ok(row.map(RawRow::into_record)))
        }
    }

    /// The lookup of a check, its columns in [`RawRow`]'s order.
    const FIND_COLUMNS: &str = "SELECT id, user_id, name, prefix, scopes, created_at, \
                                expires_at, last_used_at, revoked_at FROM access_tokens \
                                WHERE token_hash = ?";

    /// A row as rusqlite reads it.
    struct RawRow {
        id: String,
        user_id: i64,
        name: String,
        prefix: String,
        scopes: String,
        created_at: i64,
        expires_at: Option<i64>,
        last_used_at: Option<i64>,
        revoked_at: Option<i64>,
    }

    impl RawRow {
        fn into_record(self) -> AccessTokenRecord {
            AccessTokenRecord {
                id: self.id,
                user_id: self.user_id.to_string(),
                name: self.name,
                prefix: self.prefix,
                scopes: self.scopes.split_whitespace().map(str::to_string).collect(),
                created_at: Timestamp(self.created_at),
                expires_at: self.expires_at.map(Timestamp),
                last_used_at: self.last_used_at.map(Timestamp),
                revoked_at: self.revoked_at.map(Timestamp),
            }
        }
    }

    const STATEMENTS: TokenStatements = TokenStatements {
        insert: "INSERT INTO access_tokens (id, token_hash, user_id, name, prefix, scopes, \
                 created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        find: "SELECT * FROM access_tokens WHERE token_hash = ?",
        touch: "UPDATE access_tokens SET last_used_at = ? WHERE id = ? \
                AND (last_used_at IS NULL OR last_used_at <= ?)",
        list_all: "SELECT * FROM access_tokens WHERE revoked_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id",
        list_for_user: "SELECT * FROM access_tokens WHERE user_id = ? AND revoked_at IS NULL \
                        AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id",
        revoke: "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        revoke_owned: "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? \
                       AND revoked_at IS NULL",
        revoke_for_user: "UPDATE access_tokens SET revoked_at = ? WHERE user_id = ? \
                          AND revoked_at IS NULL",
    };

    sql_access_token_store!(SqliteAccessTokens, STATEMENTS);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresAccessTokens;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::pg::PgHandle;

    /// Access tokens in the `access_tokens` table of a database opened with
    /// [`crate::store::open_postgres`] or [`PgHandle::connect`].
    #[derive(Clone, Debug)]
    pub struct PostgresAccessTokens {
        pool: PgHandle,
    }

    impl PostgresAccessTokens {
        /// A store over `pool`: a [`sqlx::PgPool`] (direct) or a [`PgHandle`].
        pub fn new(pool: impl Into<PgHandle>) -> Self {
            PostgresAccessTokens { pool: pool.into() }
        }

        /// The token under `hash`, through the pool.
        async fn lookup(
            &self,
            hash: &[u8; 32],
        ) -> Result<Option<AccessTokenRecord>, AccessTokenStoreError> {
            self.find_pooled(hash).await
        }
    }

    const STATEMENTS: TokenStatements = TokenStatements {
        insert: "INSERT INTO access_tokens (id, token_hash, user_id, name, prefix, scopes, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        find: "SELECT * FROM access_tokens WHERE token_hash = $1",
        touch: "UPDATE access_tokens SET last_used_at = $1 WHERE id = $2 \
                AND (last_used_at IS NULL OR last_used_at <= $3)",
        list_all: "SELECT * FROM access_tokens WHERE revoked_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > $1) ORDER BY created_at DESC, id",
        list_for_user: "SELECT * FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL \
                        AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id",
        revoke: "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        revoke_owned: "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
                       AND revoked_at IS NULL",
        revoke_for_user: "UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 \
                          AND revoked_at IS NULL",
    };

    sql_access_token_store!(PostgresAccessTokens, STATEMENTS);
}
