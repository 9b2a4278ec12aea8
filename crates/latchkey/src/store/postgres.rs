//! PostgreSQL session store (sqlx): compare-and-swap saves, atomic re-keying, no upserts.

use super::sql::{sql_session_store, Statements};
use crate::session::StoreError;
use sqlx::postgres::{PgPool, PgPoolOptions};
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
}

/// The PostgreSQL dialect of the session statements.
const STATEMENTS: Statements = Statements {
    load: "SELECT record FROM sessions WHERE id = $1",
    insert: "INSERT INTO sessions (id, user_id, version, expires_at, record) \
             VALUES ($1, $2, $3, $4, $5)",
    replace: "UPDATE sessions SET id = $1, user_id = $2, version = $3, expires_at = $4, \
              record = $5 WHERE id = $6 AND version = $7",
    exists: "SELECT 1 FROM sessions WHERE id = $1",
    delete: "DELETE FROM sessions WHERE id = $1",
    list_for_user: "SELECT id, record FROM sessions WHERE user_id = $1",
    delete_for_user: "DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2",
    delete_expired: "DELETE FROM sessions WHERE id IN \
                     (SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2)",
};

sql_session_store!(PostgresStore, STATEMENTS);
