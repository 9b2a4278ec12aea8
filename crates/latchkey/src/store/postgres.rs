//! PostgreSQL session store (sqlx): compare-and-swap saves, atomic re-keying, no upserts.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// Connects to PostgreSQL at `url` and applies latchkey's migrations (users, sessions
/// and remember-me tables).
pub async fn open_postgres(url: &str) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    Ok(pool)
}

/// Sessions in PostgreSQL: table `sessions`, keyed by the hex SHA-256 of the token,
/// indexed by user and expiry. Saves are `UPDATE … WHERE version = $n`; rotation
/// re-keys the row in the same statement.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// A store over a pool opened with [`open_postgres`].
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn replace(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET id = $1, user_id = $2, version = $3, expires_at = $4, \
             record = $5 WHERE id = $6 AND version = $7",
        )
        .bind(new_id.to_hex())
        .bind(record.user_id())
        .bind(record.version as i64)
        .bind(record.expires_at().as_millis())
        .bind(super::encode_record(record)?)
        .bind(old_id.to_hex())
        .bind(expected_version as i64)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT 1 FROM sessions WHERE id = $1")
            .bind(old_id.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Err(match exists {
            Some(_) => StoreError::VersionConflict,
            None => StoreError::NotFound,
        })
    }
}

fn map_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(Box::new(error))
        }
        _ => StoreError::Unavailable(Box::new(error)),
    }
}

fn decode_row(row: &PgRow) -> Result<(SessionId, SessionRecord), StoreError> {
    let id: String = row.try_get("id").map_err(map_sqlx)?;
    let text: String = row.try_get("record").map_err(map_sqlx)?;
    let id = SessionId::from_hex(&id).ok_or_else(|| {
        StoreError::Corrupt(format!("session id {id:?} is not 64 hex characters").into())
    })?;
    Ok((id, super::decode_record(&text)?))
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let row = sqlx::query("SELECT record FROM sessions WHERE id = $1")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?;
        match row {
            Some(row) => {
                let text: String = row.try_get("record").map_err(map_sqlx)?;
                super::decode_record(&text).map(|record| Some(Arc::new(record)))
            }
            None => Ok(None),
        }
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, version, expires_at, record) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_hex())
        .bind(record.user_id())
        .bind(record.version as i64)
        .bind(record.expires_at().as_millis())
        .bind(super::encode_record(record)?)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.replace(id, id, record, expected_version).await
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.replace(old_id, new_id, record, expected_version).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_hex())
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        let rows = sqlx::query("SELECT id, record FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(decode_row).collect()
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2")
                .bind(user_id)
                .bind(keep.map(SessionId::to_hex))
                .execute(&self.pool)
                .await
                .map_err(map_sqlx)?;
        Ok(done.rows_affected())
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE id IN \
             (SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected())
    }
}
