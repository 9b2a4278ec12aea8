//! SQLite session store (sqlx): WAL mode, embedded migrations, compare-and-swap saves.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Opens (creating the file if missing) the SQLite database at `url`, in WAL mode, and
/// applies latchkey's migrations (users and sessions tables).
///
/// `sqlite://latchkey.db` is a file beside the working directory; `sqlite::memory:` is a
/// private in-memory database (one connection, so every query sees the same data).
pub async fn open_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = SqliteConnectOptions::from_str(url)
        .map_err(unavailable)?
        .create_if_missing(true)
        .journal_mode(if in_memory {
            SqliteJournalMode::Memory
        } else {
            SqliteJournalMode::Wal
        })
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let mut pool = SqlitePoolOptions::new().acquire_timeout(Duration::from_secs(10));
    if in_memory {
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    } else {
        pool = pool.max_connections(8);
    }
    let pool = pool.connect_with(options).await.map_err(unavailable)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    Ok(pool)
}

/// Sessions in a SQLite database: table `sessions`, keyed by the hex SHA-256 of the
/// token, indexed by user and by expiry. Saves are `UPDATE … WHERE version = ?`; nothing
/// ever upserts, so a session deleted by a logout stays deleted.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A store over a pool opened with [`open_sqlite`].
    pub fn new(pool: SqlitePool) -> Self {
        SqliteStore { pool }
    }

    /// The pool (shared with the user store).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Replaces the row of `old_id` (re-keying it to `new_id`) if its version is
    /// `expected_version`. One statement: for a rotation the row changes key and content
    /// at once, so the old token is dead the moment the new one exists.
    async fn replace(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET id = ?, user_id = ?, version = ?, expires_at = ?, record = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(new_id.to_hex())
        .bind(record.user_id())
        .bind(record.version as i64)
        .bind(record.expires_at().as_millis())
        .bind(encode(record)?)
        .bind(old_id.to_hex())
        .bind(expected_version as i64)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.missed_write(old_id).await)
        }
    }

    /// Why a conditional write touched no row: the session is gone, or its version moved.
    async fn missed_write(&self, id: &SessionId) -> StoreError {
        match sqlx::query("SELECT version FROM sessions WHERE id = ?")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await
        {
            Ok(Some(_)) => StoreError::VersionConflict,
            Ok(None) => StoreError::NotFound,
            Err(error) => map_sqlx(error),
        }
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

fn map_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(Box::new(error))
        }
        _ => unavailable(error),
    }
}

use super::{decode_record as decode, encode_record as encode};

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> Result<(SessionId, SessionRecord), StoreError> {
    let id: String = row.try_get("id").map_err(map_sqlx)?;
    let text: String = row.try_get("record").map_err(map_sqlx)?;
    let id = SessionId::from_hex(&id).ok_or_else(|| {
        StoreError::Corrupt(format!("session id {id:?} is not 64 hex characters").into())
    })?;
    Ok((id, decode(&text)?))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let row = sqlx::query("SELECT record FROM sessions WHERE id = ?")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?;
        match row {
            Some(row) => {
                let text: String = row.try_get("record").map_err(map_sqlx)?;
                decode(&text).map(|record| Some(Arc::new(record)))
            }
            None => Ok(None),
        }
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, version, expires_at, record) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.to_hex())
        .bind(record.user_id())
        .bind(record.version as i64)
        .bind(record.expires_at().as_millis())
        .bind(encode(record)?)
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
        let done = sqlx::query("DELETE FROM sessions WHERE id = ?")
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
        let rows = sqlx::query("SELECT id, record FROM sessions WHERE user_id = ?")
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
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?")
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
             (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected())
    }
}
