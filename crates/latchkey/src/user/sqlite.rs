//! latchkey's users in SQLite.

use super::{login_key, NewUser, User, UserLoader, UserStore, UserStoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

/// Users in the `users` table of a database opened with [`crate::store::open_sqlite`].
#[derive(Clone, Debug)]
pub struct SqliteUserStore {
    pool: SqlitePool,
}

const USER_COLUMNS: &str =
    "id, username, email, password_hash, created_at, disabled, credential_version";

impl SqliteUserStore {
    /// A user store over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        SqliteUserStore { pool }
    }

    async fn fetch_one(
        &self,
        sql: &str,
        key: impl ToString,
    ) -> Result<Option<User>, UserStoreError> {
        let row = sqlx::query(sql)
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(decode_user).transpose()
    }

    async fn update_returning(
        &self,
        sql: &str,
        id: i64,
        value: impl ToString,
    ) -> Result<User, UserStoreError> {
        let row = sqlx::query(sql)
            .bind(value.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => decode_user(&row),
            None => Err(UserStoreError::NotFound),
        }
    }
}

fn unavailable(error: sqlx::Error) -> UserStoreError {
    UserStoreError::Unavailable(Box::new(error))
}

fn decode_user(row: &SqliteRow) -> Result<User, UserStoreError> {
    let decoded = (|| -> Result<User, sqlx::Error> {
        Ok(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            created_at: Timestamp(row.try_get("created_at")?),
            disabled: row.try_get("disabled")?,
            credential_version: row.try_get("credential_version")?,
        })
    })();
    decoded.map_err(unavailable)
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn create(&self, user: NewUser) -> Result<User, UserStoreError> {
        let sql = format!(
            "INSERT INTO users (username, username_key, email, email_key, password_hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
        );
        let result = sqlx::query(&sql)
            .bind(&user.username)
            .bind(login_key(&user.username))
            .bind(&user.email)
            .bind(user.email.as_deref().map(login_key))
            .bind(&user.password_hash)
            .bind(Timestamp::now().as_millis())
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => decode_user(&row),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                if db.message().contains("email_key") {
                    Err(UserStoreError::EmailTaken(user.email.unwrap_or_default()))
                } else {
                    Err(UserStoreError::UsernameTaken(user.username))
                }
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn find_by_login(&self, login: &str) -> Result<Option<User>, UserStoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username_key = ?1 OR email_key = ?1 \
             ORDER BY username_key = ?1 DESC LIMIT 1"
        );
        self.fetch_one(&sql, login_key(login)).await
    }

    async fn find_by_id(&self, id: i64) -> Result<Option<User>, UserStoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        self.fetch_one(&sql, id).await
    }

    async fn list(&self) -> Result<Vec<User>, UserStoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(decode_user).collect()
    }

    async fn set_password_hash(&self, id: i64, hash: &str) -> Result<User, UserStoreError> {
        let sql = format!(
            "UPDATE users SET password_hash = ?, credential_version = credential_version + 1 \
             WHERE id = ? RETURNING {USER_COLUMNS}"
        );
        self.update_returning(&sql, id, hash).await
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> Result<User, UserStoreError> {
        let sql = format!(
            "UPDATE users SET disabled = ?, credential_version = credential_version + 1 \
             WHERE id = ? RETURNING {USER_COLUMNS}"
        );
        self.update_returning(&sql, id, i64::from(disabled)).await
    }
}

#[async_trait]
impl UserLoader<User> for SqliteUserStore {
    async fn load_user(&self, user_id: &str) -> Result<Option<User>, UserStoreError> {
        match user_id.parse::<i64>() {
            Ok(id) => self.find_by_id(id).await,
            Err(_) => Ok(None),
        }
    }
}
