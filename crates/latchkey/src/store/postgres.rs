//! PostgreSQL session store (sqlx): compare-and-swap saves, atomic re-keying, no upserts.

use super::batch::{Answer, FetchMany, LoadBatcher};
use super::sql::{map_sqlx, sql_session_store, Statements};
use crate::pg::{run_migrations, PgHandle, PgPooling};
use crate::session::{SessionId, SessionRecord, StoreError};
use sqlx::postgres::PgPool;
use std::collections::HashMap;
use std::sync::Arc;

/// Connects to PostgreSQL at `url` directly (no pooler in between) and applies
/// latchkey's migrations (users, sessions and remember-me tables). Behind a transaction
/// pooler use [`PgHandle::connect`] and [`super::migrate_postgres`] instead.
pub async fn open_postgres(url: &str) -> Result<PgPool, StoreError> {
    let handle = PgHandle::connect(url, PgPooling::Direct).await?;
    run_migrations(handle.pool()).await?;
    Ok(handle.pool().clone())
}

/// Sessions in PostgreSQL: table `sessions`, keyed by the hex SHA-256 of the token,
/// indexed by user and expiry. Saves are `UPDATE … WHERE version = $n`; rotation
/// re-keys the row in the same statement. Loads that arrive together share one query
/// (see [`LoadBatcher`]).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgHandle,
    loads: Arc<LoadBatcher<FetchSessions>>,
    /// Where `LISTEN` connects, when not through `pool`.
    #[cfg(feature = "cache")]
    listen_url: Option<Arc<str>>,
}

impl PostgresStore {
    /// A store over a pool opened with [`open_postgres`] (a [`PgPool`]) or a
    /// [`PgHandle`].
    pub fn new(pool: impl Into<PgHandle>) -> Self {
        let pool = pool.into();
        PostgresStore {
            loads: Arc::new(LoadBatcher::new(FetchSessions(pool.clone()))),
            pool,
            #[cfg(feature = "cache")]
            listen_url: None,
        }
    }

    /// The store whose change feed `LISTEN`s on its own connection to `url` (a direct
    /// one: a transaction pooler cannot hold a `LISTEN`).
    #[cfg(feature = "cache")]
    pub fn with_listen_url(mut self, url: &str) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Whether [`super::ChangeFeed::subscribe`] can work: a direct pool, or a listen URL.
    #[cfg(feature = "cache")]
    pub fn can_listen(&self) -> bool {
        self.listen_url.is_some() || self.pool.pooling() == super::PgPooling::Direct
    }

    /// The pool. Statements run on it directly are prepared as named statements: behind
    /// a transaction pooler, run them on a [`PgHandle`] instead.
    pub fn pool(&self) -> &PgPool {
        self.pool.pool()
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

/// The channel a trigger on the sessions table notifies (migration 0003).
#[cfg(feature = "cache")]
const CHANGE_CHANNEL: &str = "latchkey_sessions";

/// Announcements come from a trigger, so every writer's changes are heard.
#[cfg(feature = "cache")]
#[async_trait::async_trait]
impl super::ChangeFeed for PostgresStore {
    async fn subscribe(&self) -> Result<Box<dyn super::Changes>, StoreError> {
        let mut listener = match (&self.listen_url, self.pool.pooling()) {
            (Some(url), _) => sqlx::postgres::PgListener::connect(url).await,
            (None, super::PgPooling::Direct) => {
                sqlx::postgres::PgListener::connect_with(self.pool.pool()).await
            }
            (None, super::PgPooling::Transaction) => {
                return Err(StoreError::Unavailable(
                    "LISTEN needs a direct connection to PostgreSQL, not a transaction pooler"
                        .into(),
                ))
            }
        }
        .map_err(map_sqlx)?;
        listener.listen(CHANGE_CHANNEL).await.map_err(map_sqlx)?;
        Ok(Box::new(PostgresChanges(listener)))
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(super::cache::HEARTBEAT)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_sqlx)
    }
}

/// A `LISTEN` connection to [`CHANGE_CHANNEL`].
#[cfg(feature = "cache")]
struct PostgresChanges(sqlx::postgres::PgListener);

#[cfg(feature = "cache")]
#[async_trait::async_trait]
impl super::Changes for PostgresChanges {
    async fn next_change(&mut self) -> Result<super::Change, StoreError> {
        // `None`: the connection was lost (the listener would reconnect silently, so
        // this subscription ends instead and the cache starts over).
        match self.0.try_recv().await.map_err(map_sqlx)? {
            Some(notification) if notification.payload() == super::cache::HEARTBEAT => {
                Ok(super::Change::Heartbeat)
            }
            Some(notification) => {
                super::codec::decode_id(notification.payload()).map(super::Change::Session)
            }
            None => Err(StoreError::Unavailable(
                "PostgreSQL notification connection lost".into(),
            )),
        }
    }
}

impl PostgresStore {
    /// The expiry sweep: one `DELETE`.
    async fn sweep_expired(
        &self,
        now: crate::time::Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.delete_expired_rows(now, limit).await.map_err(map_sqlx)
    }

    /// Every load joins a batch.
    async fn load_fast(
        &self,
        id: &SessionId,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        Some(
            self.loads
                .load(id)
                .await
                .and_then(super::codec::decode_stored),
        )
    }
}

/// Fetches sessions' records in one `SELECT … WHERE id = ANY($1)`.
struct FetchSessions(PgHandle);

#[async_trait::async_trait]
impl FetchMany for FetchSessions {
    async fn fetch_many(&self, ids: &[SessionId]) -> Result<Vec<Answer>, StoreError> {
        let hex: Vec<String> = ids.iter().map(SessionId::to_hex).collect();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, record FROM sessions WHERE id = ANY($1)")
                .bind(&hex)
                .fetch_all(&self.0)
                .await
                .map_err(map_sqlx)?;
        let mut found: HashMap<String, String> = rows.into_iter().collect();
        Ok(hex.iter().map(|id| Ok(found.remove(id))).collect())
    }
}

sql_session_store!(PostgresStore, STATEMENTS);
