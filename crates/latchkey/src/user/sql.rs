//! latchkey's users in SQL (SQLite and PostgreSQL). The dialects differ only in their
//! placeholders, so each names its [`UserStatements`] and [`sql_user_store!`] writes the
//! one implementation.

/// The columns every user query returns, in order.
macro_rules! user_columns {
    () => {
        "id, username, email, email_verified_at, password_hash, created_at, disabled, \
         credential_version"
    };
}

/// The SQL a user store runs, in one dialect; parameters in the order the comments give.
pub(crate) struct UserStatements {
    /// username, username_key, username_skeleton, email, email_key, password_hash,
    /// created_at → user
    pub create: &'static str,
    /// login key, legacy login key (each matched against username_key and email_key; a
    /// username match wins, then a match of the legacy key, which is what a row not
    /// re-keyed was found by before) → user
    pub find_by_login: &'static str,
    /// → id, username, email of every row without a username_skeleton (rows from before
    /// it existed)
    pub unkeyed: &'static str,
    /// username_key, username_skeleton, email_key, id (only while the row has no
    /// skeleton)
    pub rekey: &'static str,
    /// id → user
    pub find_by_id: &'static str,
    /// → every user, by id
    pub list: &'static str,
    /// password_hash, id → user (credential version bumped)
    pub set_password_hash: &'static str,
    /// disabled, id → user (credential version bumped)
    pub set_disabled: &'static str,
    /// id → user (credential version bumped)
    pub bump_credential_version: &'static str,
    /// new hash, id, old hash (credential version unchanged)
    pub upgrade_password_hash: &'static str,
    /// email, email_key, verified_at (or NULL), id → user
    pub set_email: &'static str,
    /// verified_at, id, email_key → user (none when the email moved on)
    pub mark_email_verified: &'static str,
}

/// Implements [`super::UserStore`] for `$store` (a struct with
/// a `pool` field) on database `$db` whose rows are `$row`, with the statements `$sql`.
macro_rules! sql_user_store {
    ($store:ty, $db:ty, $row:ty, $sql:expr) => {
        impl $store {
            fn decode_user(row: &$row) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                use sqlx::Row;
                let decoded = (|| -> Result<$crate::user::User, sqlx::Error> {
                    Ok($crate::user::User {
                        id: row.try_get("id")?,
                        username: row.try_get("username")?,
                        email: row.try_get("email")?,
                        email_verified_at: row
                            .try_get::<Option<i64>, _>("email_verified_at")?
                            .map($crate::time::Timestamp),
                        password_hash: row.try_get::<String, _>("password_hash")?.into(),
                        created_at: $crate::time::Timestamp(row.try_get("created_at")?),
                        disabled: row.try_get("disabled")?,
                        credential_version: row.try_get("credential_version")?,
                    })
                })();
                decoded.map_err($crate::user::sql::unavailable)
            }

            /// Runs the insert of `user` on a pool or a transaction.
            async fn insert<'e, E>(executor: E, user: &$crate::user::NewUser) -> Result<$row, sqlx::Error>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                use $crate::user::login_key;
                sqlx::query($sql.create)
                    .bind(&user.username)
                    .bind(login_key(&user.username))
                    .bind($crate::user::username_skeleton(&user.username))
                    .bind(&user.email)
                    .bind(user.email.as_deref().map(login_key))
                    .bind(&user.password_hash)
                    .bind($crate::time::Timestamp::now().as_millis())
                    .fetch_one(executor)
                    .await
            }

            /// The user an insert made, or why it failed: a unique violation names what
            /// is taken (both dialects name the violated column or constraint).
            fn created(
                result: Result<$row, sqlx::Error>,
                user: $crate::user::NewUser,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                match result {
                    Ok(row) => Self::decode_user(&row),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        if db.message().contains("email_key")
                            || db
                                .constraint()
                                .is_some_and(|name| name.contains("email_key"))
                        {
                            Err($crate::user::UserStoreError::EmailTaken(
                                user.email.unwrap_or_default(),
                            ))
                        } else {
                            Err($crate::user::UserStoreError::UsernameTaken(user.username))
                        }
                    }
                    Err(error) => Err($crate::user::sql::unavailable(error)),
                }
            }

            /// Gives every user stored before names were normalised (a row without a
            /// username skeleton) its normalised username and email keys and its
            /// confusable skeleton, so look-alikes of those names are refused and any
            /// form of them logs in. Run it once after opening the database (the server
            /// does at start). A row whose new keys collide with another user's (two
            /// look-alike accounts made before) keeps its old keys, is still found by
            /// them, and is logged. Answers how many rows were re-keyed.
            pub async fn rekey_legacy_users(&self) -> Result<u64, $crate::user::UserStoreError> {
                use sqlx::Row;
                use $crate::user::{login_key, username_skeleton};
                let rows = sqlx::query($sql.unkeyed)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                let mut rekeyed = 0;
                for row in rows {
                    let (id, username, email) = (|| -> Result<(i64, String, Option<String>), sqlx::Error> {
                        Ok((row.try_get("id")?, row.try_get("username")?, row.try_get("email")?))
                    })()
                    .map_err($crate::user::sql::unavailable)?;
                    let done = sqlx::query($sql.rekey)
                        .bind(login_key(&username))
                        .bind(username_skeleton(&username))
                        .bind(email.as_deref().map(login_key))
                        .bind(id)
                        .execute(&self.pool)
                        .await;
                    match done {
                        Ok(done) => rekeyed += done.rows_affected(),
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                            tracing::warn!(
                                target: "latchkey::audit",
                                event = "user_rekey_conflict",
                                user_id = id,
                                "user {id}'s normalised name or email looks like another \
                                 user's; it keeps its old keys"
                            );
                        }
                        Err(error) => return Err($crate::user::sql::unavailable(error)),
                    }
                }
                Ok(rekeyed)
            }

            fn decode_changed(
                row: Result<Option<$row>, sqlx::Error>,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                match row.map_err($crate::user::sql::unavailable)? {
                    Some(row) => Self::decode_user(&row),
                    None => Err($crate::user::UserStoreError::NotFound),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::user::UserStore for $store {
            async fn create(
                &self,
                user: $crate::user::NewUser,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                let result = Self::insert(&self.pool, &user).await;
                Self::created(result, user)
            }

            async fn create_many(
                &self,
                users: Vec<$crate::user::NewUser>,
            ) -> Result<Vec<$crate::user::User>, (usize, $crate::user::UserStoreError)> {
                let unavailable = |error| (0, $crate::user::sql::unavailable(error));
                let mut transaction = self.pool.begin().await.map_err(unavailable)?;
                let mut created = Vec::with_capacity(users.len());
                for (index, user) in users.into_iter().enumerate() {
                    let result = Self::insert(&mut *transaction, &user).await;
                    // An early return drops the transaction: nothing is kept.
                    created.push(Self::created(result, user).map_err(|error| (index, error))?);
                }
                transaction.commit().await.map_err(unavailable)?;
                Ok(created)
            }

            async fn find_by_login(
                &self,
                login: &str,
            ) -> Result<Option<$crate::user::User>, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.find_by_login)
                    .bind($crate::user::login_key(login))
                    .bind($crate::user::legacy_login_key(login))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                row.as_ref().map(Self::decode_user).transpose()
            }

            async fn find_by_id(
                &self,
                id: i64,
            ) -> Result<Option<$crate::user::User>, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.find_by_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                row.as_ref().map(Self::decode_user).transpose()
            }

            async fn list(&self) -> Result<Vec<$crate::user::User>, $crate::user::UserStoreError> {
                let rows = sqlx::query($sql.list)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                rows.iter().map(Self::decode_user).collect()
            }

            async fn set_password_hash(
                &self,
                id: i64,
                hash: &str,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.set_password_hash)
                    .bind(hash)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await;
                Self::decode_changed(row)
            }

            async fn set_disabled(
                &self,
                id: i64,
                disabled: bool,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.set_disabled)
                    .bind(disabled)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await;
                Self::decode_changed(row)
            }

            async fn bump_credential_version(
                &self,
                id: i64,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.bump_credential_version)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await;
                Self::decode_changed(row)
            }

            async fn set_email(
                &self,
                id: i64,
                email: &str,
                verified: bool,
            ) -> Result<$crate::user::User, $crate::user::UserStoreError> {
                let verified_at = verified.then(|| $crate::time::Timestamp::now().as_millis());
                let row = sqlx::query($sql.set_email)
                    .bind(email)
                    .bind($crate::user::login_key(email))
                    .bind(verified_at)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await;
                match row {
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        Err($crate::user::UserStoreError::EmailTaken(email.to_string()))
                    }
                    row => Self::decode_changed(row),
                }
            }

            async fn mark_email_verified(
                &self,
                id: i64,
                email: &str,
            ) -> Result<Option<$crate::user::User>, $crate::user::UserStoreError> {
                let row = sqlx::query($sql.mark_email_verified)
                    .bind($crate::time::Timestamp::now().as_millis())
                    .bind(id)
                    .bind($crate::user::login_key(email))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                row.as_ref().map(Self::decode_user).transpose()
            }

            async fn upgrade_password_hash(
                &self,
                id: i64,
                old_hash: &str,
                new_hash: &str,
            ) -> Result<bool, $crate::user::UserStoreError> {
                let done = sqlx::query($sql.upgrade_password_hash)
                    .bind(new_hash)
                    .bind(id)
                    .bind(old_hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::user::sql::unavailable)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

/// A driver error as a user-store error.
pub(crate) fn unavailable(error: sqlx::Error) -> super::UserStoreError {
    super::UserStoreError::Unavailable(Box::new(error))
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteUserStore;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::UserStatements;
    use sqlx::sqlite::{SqlitePool, SqliteRow};

    /// Users in the `users` table of a database opened with [`crate::store::open_sqlite`].
    #[derive(Clone, Debug)]
    pub struct SqliteUserStore {
        pool: SqlitePool,
    }

    impl SqliteUserStore {
        /// A user store over `pool`.
        pub fn new(pool: SqlitePool) -> Self {
            SqliteUserStore { pool }
        }
    }

    const STATEMENTS: UserStatements = UserStatements {
        create: concat!(
            "INSERT INTO users (username, username_key, username_skeleton, email, email_key, \
             password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ",
            user_columns!()
        ),
        find_by_login: concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key IN (?1, ?2) OR email_key IN (?1, ?2) \
             ORDER BY username_key IN (?1, ?2) DESC, (username_key = ?2 OR email_key = ?2) DESC \
             LIMIT 1"
        ),
        unkeyed:
            "SELECT id, username, email FROM users WHERE username_skeleton IS NULL ORDER BY id",
        rekey: "UPDATE users SET username_key = ?, username_skeleton = ?, email_key = ? \
                WHERE id = ? AND username_skeleton IS NULL",
        find_by_id: concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?"),
        list: concat!("SELECT ", user_columns!(), " FROM users ORDER BY id"),
        set_password_hash: concat!(
            "UPDATE users SET password_hash = ?, credential_version = credential_version + 1 \
             WHERE id = ? RETURNING ",
            user_columns!()
        ),
        set_disabled: concat!(
            "UPDATE users SET disabled = ?, credential_version = credential_version + 1 \
             WHERE id = ? RETURNING ",
            user_columns!()
        ),
        bump_credential_version: concat!(
            "UPDATE users SET credential_version = credential_version + 1 WHERE id = ? RETURNING ",
            user_columns!()
        ),
        upgrade_password_hash:
            "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
        set_email: concat!(
            "UPDATE users SET email = ?, email_key = ?, email_verified_at = ? WHERE id = ? \
             RETURNING ",
            user_columns!()
        ),
        mark_email_verified: concat!(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?) \
             WHERE id = ? AND email_key = ? RETURNING ",
            user_columns!()
        ),
    };

    sql_user_store!(SqliteUserStore, sqlx::Sqlite, SqliteRow, STATEMENTS);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresUserStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::UserStatements;
    use crate::pg::PgHandle;
    use sqlx::postgres::PgRow;

    /// Users in the `users` table of a database opened with
    /// [`crate::store::open_postgres`] or
    /// [`PgHandle::connect`].
    #[derive(Clone, Debug)]
    pub struct PostgresUserStore {
        pool: PgHandle,
    }

    impl PostgresUserStore {
        /// A user store over `pool`: a [`sqlx::PgPool`] (direct) or a [`PgHandle`].
        pub fn new(pool: impl Into<PgHandle>) -> Self {
            PostgresUserStore { pool: pool.into() }
        }
    }

    const STATEMENTS: UserStatements = UserStatements {
        create: concat!(
            "INSERT INTO users (username, username_key, username_skeleton, email, email_key, \
             password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            user_columns!()
        ),
        find_by_login: concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key IN ($1, $2) OR email_key IN ($1, $2) \
             ORDER BY (username_key IN ($1, $2)) DESC, (username_key = $2 OR email_key = $2) DESC \
             LIMIT 1"
        ),
        unkeyed:
            "SELECT id, username, email FROM users WHERE username_skeleton IS NULL ORDER BY id",
        rekey: "UPDATE users SET username_key = $1, username_skeleton = $2, email_key = $3 \
                WHERE id = $4 AND username_skeleton IS NULL",
        find_by_id: concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"),
        list: concat!("SELECT ", user_columns!(), " FROM users ORDER BY id"),
        set_password_hash: concat!(
            "UPDATE users SET password_hash = $1, credential_version = credential_version + 1 \
             WHERE id = $2 RETURNING ",
            user_columns!()
        ),
        set_disabled: concat!(
            "UPDATE users SET disabled = $1, credential_version = credential_version + 1 \
             WHERE id = $2 RETURNING ",
            user_columns!()
        ),
        bump_credential_version: concat!(
            "UPDATE users SET credential_version = credential_version + 1 WHERE id = $1 \
             RETURNING ",
            user_columns!()
        ),
        upgrade_password_hash:
            "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        set_email: concat!(
            "UPDATE users SET email = $1, email_key = $2, email_verified_at = $3 WHERE id = $4 \
             RETURNING ",
            user_columns!()
        ),
        mark_email_verified: concat!(
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) \
             WHERE id = $2 AND email_key = $3 RETURNING ",
            user_columns!()
        ),
    };

    sql_user_store!(PostgresUserStore, sqlx::Postgres, PgRow, STATEMENTS);
}
