//! SQLite session store (sqlx): WAL mode, embedded migrations, compare-and-swap saves.

use super::sql::{sql_session_store, Statements};
use crate::session::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
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
}

/// The SQLite dialect of the session statements.
const STATEMENTS: Statements = Statements {
    load: "SELECT record FROM sessions WHERE id = ?",
    insert:
        "INSERT INTO sessions (id, user_id, version, expires_at, record) VALUES (?, ?, ?, ?, ?)",
    replace: "UPDATE sessions SET id = ?, user_id = ?, version = ?, expires_at = ?, record = ? \
              WHERE id = ? AND version = ?",
    exists: "SELECT 1 FROM sessions WHERE id = ?",
    delete: "DELETE FROM sessions WHERE id = ?",
    list_for_user: "SELECT id, record FROM sessions WHERE user_id = ?",
    delete_for_user: "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?",
    delete_expired: "DELETE FROM sessions WHERE id IN \
                     (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)",
};

sql_session_store!(SqliteStore, STATEMENTS);

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}
