//! Redis session store: native expiry, a per-user index, compare-and-swap in Lua, and a
//! connection that reconnects on its own after Redis restarts (and sends a command that
//! found its connection dead once more, on the fresh one).
//!
//! Layout (`P` is the key prefix, `latchkey` by default):
//! * `P:s:{<hex id>}`: a hash with `v` (version), `u` (user id, empty when anonymous)
//!   and `r` (the record as JSON), expiring at the record's expiry (`PEXPIREAT`);
//! * `P:u:{<user id>}`: a set of the user's session ids, expiring with the last of them.
//!
//! Every script touches exactly one key, so each runs in one Redis Cluster slot. The
//! user index is written *before* a session joins it, so a crash can leave a dangling
//! index entry (pruned when listed) but never a session that per-user revocation
//! misses. A rotation is two single-key steps: the new key is created, then the old
//! key is deleted if its version is still the expected one (otherwise the new key is
//! removed again and the rotation fails). The new token reaches no client before the
//! old key is gone, so the old token is dead the moment the new one is issued.

use super::batch::{Answer, FetchMany, LoadBatcher};
use super::codec::{decode_id, decode_record, decode_stored, encode_record};
use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Creates the session hash if the key is free: 1, or 0 when taken.
/// KEYS: session. ARGV: version, user, record, expires (ms).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'v', ARGV[1], 'u', ARGV[2], 'r', ARGV[3])
        redis.call('PEXPIREAT', KEYS[1], ARGV[4])
        redis.call('PUBLISH', ARGV[5], KEYS[1])
        return 1",
    )
});

/// Replaces the record if the stored version is the expected one: 1 done, 0 missing,
/// -1 version conflict.
/// KEYS: session. ARGV: expected version, version, user, record, expires (ms).
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('HGET', KEYS[1], 'v')
        if not current then return 0 end
        if current ~= ARGV[1] then return -1 end
        redis.call('HSET', KEYS[1], 'v', ARGV[2], 'u', ARGV[3], 'r', ARGV[4])
        redis.call('PEXPIREAT', KEYS[1], ARGV[5])
        redis.call('PUBLISH', ARGV[6], KEYS[1])
        return 1",
    )
});

/// Deletes the session if its version is the expected one (the old half of a rotation):
/// {1, user} done, {0, ''} missing, {-1, ''} version conflict.
/// KEYS: session. ARGV: expected version.
static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local stored = redis.call('HMGET', KEYS[1], 'v', 'u')
        if not stored[1] then return {0, ''} end
        if stored[1] ~= ARGV[1] then return {-1, ''} end
        redis.call('DEL', KEYS[1])
        redis.call('PUBLISH', ARGV[2], KEYS[1])
        return {1, stored[2] or ''}",
    )
});

/// Deletes the session: {1, user} when it existed, {0, ''} otherwise.
/// KEYS: session.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local user = redis.call('HGET', KEYS[1], 'u')
        if not user then return {0, ''} end
        redis.call('DEL', KEYS[1])
        redis.call('PUBLISH', ARGV[1], KEYS[1])
        return {1, user}",
    )
});

/// Deletes the session only if it still belongs to the user: 1 or 0.
/// KEYS: session. ARGV: user.
static DELETE_IF_OWNED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
        redis.call('PUBLISH', ARGV[2], KEYS[1])
        return redis.call('DEL', KEYS[1])",
    )
});

/// Adds a session to a user's index and makes the index live at least until `expires`.
/// KEYS: index. ARGV: session id, expires (ms).
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        redis.call('SADD', KEYS[1], ARGV[1])
        if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[2]) then
            redis.call('PEXPIREAT', KEYS[1], ARGV[2])
        end
        return 1",
    )
});

/// The store's connection: a [`ConnectionManager`] whose commands are sent once more
/// when the connection they went to turns out to be dead.
///
/// The manager notices a dead connection only when a command fails on it (Redis closed
/// it on restart while this process was idle, say); it then reconnects in the background
/// but hands that first command its error, which a request would answer with 503. Here
/// that command is sent again, once, and waits for the fresh connection. A command sent
/// twice is safe: every write is a script that checks what it finds (a second `CREATE`
/// finds the id taken, a second `SAVE` the version moved on, and the session layer
/// handles both as it handles any race).
#[derive(Clone)]
pub(crate) struct Reconnecting(ConnectionManager);

/// Whether a command failed because its connection was dead (closed, reset, refused):
/// worth one more try on a fresh one.
fn connection_was_dead(error: &redis::RedisError) -> bool {
    error.is_connection_dropped()
}

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.send_packed_command(cmd).await {
                Err(error) if connection_was_dead(&error) => {
                    tracing::info!(%error, "Redis connection was dead; retrying on a fresh one");
                    self.0.send_packed_command(cmd).await
                }
                answer => answer,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.send_packed_commands(pipeline, offset, count).await {
                Err(error) if connection_was_dead(&error) => {
                    tracing::info!(%error, "Redis connection was dead; retrying on a fresh one");
                    self.0.send_packed_commands(pipeline, offset, count).await
                }
                answer => answer,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Sessions in Redis. Cheap to clone (one multiplexed connection, shared).
#[derive(Clone)]
pub struct RedisStore {
    /// For the change feed's own subscription connection.
    client: redis::Client,
    connection: Reconnecting,
    prefix: Arc<str>,
    /// Loads that arrive together share one pipeline.
    loads: Arc<LoadBatcher<FetchSessions>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to Redis at `url` (`redis://host:port/db`, `rediss://…` for TLS when
    /// the redis crate is built with it). Fails if Redis cannot be reached now; once
    /// open, a lost connection is re-established in the background and requests in
    /// the meantime fail with [`StoreError::Unavailable`] within about two seconds.
    pub async fn open(url: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let connection = Reconnecting(connection);
        Ok(RedisStore::assemble(
            client,
            connection,
            Arc::from("latchkey"),
        ))
    }

    fn assemble(client: redis::Client, connection: Reconnecting, prefix: Arc<str>) -> Self {
        let fetcher = FetchSessions {
            connection: connection.clone(),
            prefix: prefix.clone(),
        };
        RedisStore {
            client,
            connection,
            prefix,
            loads: Arc::new(LoadBatcher::new(fetcher)),
        }
    }

    /// Uses `prefix` instead of `latchkey` in front of every key (to share one Redis
    /// between applications). It may not contain `{` or `}`, which would change the
    /// Cluster hash slot.
    pub fn with_prefix(self, prefix: &str) -> Result<RedisStore, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(
                format!("Redis key prefix {prefix:?} may not contain braces").into(),
            ));
        }
        Ok(RedisStore::assemble(
            self.client,
            self.connection,
            Arc::from(prefix),
        ))
    }

    /// The key of a session.
    pub fn session_key(&self, id: &SessionId) -> String {
        self.session_key_hex(&id.to_hex())
    }

    /// The key of the session whose id is `hex` (as the user index holds it).
    fn session_key_hex(&self, hex: &str) -> String {
        session_key(&self.prefix, hex)
    }

    /// The key of a user's session index.
    pub fn user_key(&self, user_id: &str) -> String {
        format!("{}:u:{{{}}}", self.prefix, user_id)
    }

    /// The key of a throttle counter.
    pub(crate) fn throttle_key(&self, key: &str) -> String {
        format!("{}:t:{{{key}}}", self.prefix)
    }

    /// The channel the write scripts publish changed session keys on.
    fn change_channel(&self) -> String {
        format!("{}:changed", self.prefix)
    }

    pub(crate) fn connection(&self) -> Reconnecting {
        self.connection.clone()
    }

    /// Adds the session to its user's index (before the session itself is written).
    async fn index(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        if let Some(user_id) = record.user_id() {
            let _: i64 = INDEX_ADD
                .key(self.user_key(user_id))
                .arg(id.to_hex())
                .arg(record.expires_at().as_millis())
                .invoke_async(&mut self.connection())
                .await
                .map_err(map_redis)?;
        }
        Ok(())
    }

    /// Removes ids from a user's index after their sessions are gone. Best effort: the
    /// index tolerates entries without a session (they expire with it), so a failure
    /// here is logged, never reported for a write that already happened.
    async fn unindex(&self, user_id: &str, ids: &[String]) {
        if user_id.is_empty() || ids.is_empty() {
            return;
        }
        let removed: Result<i64, _> = redis::cmd("SREM")
            .arg(self.user_key(user_id))
            .arg(ids)
            .query_async(&mut self.connection())
            .await;
        if let Err(error) = removed {
            tracing::warn!(%error, "Redis session index cleanup failed");
        }
    }

    /// Runs CREATE for `id`: `true` if created, `false` if the id was taken.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<bool, StoreError> {
        let created: i64 = CREATE
            .key(self.session_key(id))
            .arg(record.version)
            .arg(record.user_id().unwrap_or(""))
            .arg(encode_record(record)?)
            .arg(record.expires_at().as_millis())
            .arg(self.change_channel())
            .invoke_async(&mut self.connection())
            .await
            .map_err(map_redis)?;
        Ok(created == 1)
    }

    /// The session ids in a user's index.
    async fn indexed(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        redis::cmd("SMEMBERS")
            .arg(self.user_key(user_id))
            .query_async(&mut self.connection())
            .await
            .map_err(map_redis)
    }
}

/// The key of the session whose id is `hex`, under `prefix`.
fn session_key(prefix: &str, hex: &str) -> String {
    format!("{prefix}:s:{{{hex}}}")
}

/// Fetches sessions' records with one pipeline of `HGET`s.
struct FetchSessions {
    connection: Reconnecting,
    prefix: Arc<str>,
}

#[async_trait]
impl FetchMany for FetchSessions {
    async fn fetch_many(&self, ids: &[SessionId]) -> Result<Vec<Answer>, StoreError> {
        let mut pipeline = redis::pipe();
        // One key of the wrong type (or text that is not UTF-8) fails its own loads,
        // not the whole pipeline's.
        pipeline.ignore_errors();
        for id in ids {
            pipeline
                .cmd("HGET")
                .arg(session_key(&self.prefix, &id.to_hex()))
                .arg("r");
        }
        let replies: Vec<redis::RedisResult<Option<String>>> = pipeline
            .query_async(&mut self.connection.clone())
            .await
            .map_err(map_redis)?;
        Ok(replies
            .into_iter()
            .map(|reply| reply.map_err(|error| Arc::new(map_redis(error))))
            .collect())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.loads.load(id).await.and_then(decode_stored)
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.index(id, record).await?;
        if self.insert(id, record).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.index(id, record).await?;
        let saved: i64 = SAVE
            .key(self.session_key(id))
            .arg(expected_version)
            .arg(record.version)
            .arg(record.user_id().unwrap_or(""))
            .arg(encode_record(record)?)
            .arg(record.expires_at().as_millis())
            .arg(self.change_channel())
            .invoke_async(&mut self.connection())
            .await
            .map_err(map_redis)?;
        match saved {
            1 => Ok(()),
            0 => Err(StoreError::NotFound),
            _ => Err(StoreError::VersionConflict),
        }
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.index(new_id, record).await?;
        if !self.insert(new_id, record).await? {
            return Err(StoreError::AlreadyExists);
        }
        let retired: (i64, String) = match RETIRE
            .key(self.session_key(old_id))
            .arg(expected_version)
            .arg(self.change_channel())
            .invoke_async(&mut self.connection())
            .await
        {
            Ok(retired) => retired,
            Err(error) => {
                // Whether the old key went or not is unknown; the new one must not
                // outlive a failed rotation. Best effort: Redis may be gone.
                let _ = self.delete(new_id).await;
                return Err(map_redis(error));
            }
        };
        match retired {
            (1, old_user) => {
                self.unindex(&old_user, &[old_id.to_hex()]).await;
                Ok(())
            }
            (code, _) => {
                self.delete(new_id).await?;
                Err(if code == 0 {
                    StoreError::NotFound
                } else {
                    StoreError::VersionConflict
                })
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let (deleted, user): (i64, String) = DELETE
            .key(self.session_key(id))
            .arg(self.change_channel())
            .invoke_async(&mut self.connection())
            .await
            .map_err(map_redis)?;
        self.unindex(&user, &[id.to_hex()]).await;
        Ok(deleted == 1)
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        let ids = self.indexed(user_id).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for hex in &ids {
            pipe.cmd("HMGET")
                .arg(self.session_key_hex(hex))
                .arg("u")
                .arg("r");
        }
        let rows: Vec<(Option<String>, Option<String>)> = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(map_redis)?;
        // Entries without a session are left alone: one may be a session being created
        // right now (its index entry is written first). They expire with the index.
        let mut sessions = Vec::new();
        for (hex, (owner, text)) in ids.into_iter().zip(rows) {
            if let (Some(owner), Some(text)) = (owner, text) {
                if owner == user_id {
                    sessions.push((decode_id(&hex)?, decode_record(&text)?));
                }
            }
        }
        Ok(sessions)
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let keep = keep.map(SessionId::to_hex);
        let ids: Vec<String> = self
            .indexed(user_id)
            .await?
            .into_iter()
            .filter(|hex| Some(hex) != keep.as_ref())
            .collect();
        // Only ids whose session was deleted leave the index: an id whose session is
        // not there yet may belong to a login in progress.
        let mut deleted = Vec::new();
        for hex in ids {
            let done: i64 = DELETE_IF_OWNED
                .key(self.session_key_hex(&hex))
                .arg(user_id)
                .arg(self.change_channel())
                .invoke_async(&mut self.connection())
                .await
                .map_err(map_redis)?;
            if done == 1 {
                deleted.push(hex);
            }
        }
        self.unindex(user_id, &deleted).await;
        Ok(deleted.len() as u64)
    }

    /// Redis removes expired sessions itself (`PEXPIREAT`), so there is nothing to do.
    async fn delete_expired(&self, _now: Timestamp, _limit: u32) -> Result<u64, StoreError> {
        Ok(0)
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// A Redis error, by cause: data of the wrong shape is corruption, anything else means
/// Redis is unavailable.
pub(crate) fn map_redis(error: redis::RedisError) -> StoreError {
    use redis::ErrorKind;
    let wrong_shape = matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) || error.code() == Some("WRONGTYPE");
    if wrong_shape {
        StoreError::Corrupt(Box::new(error))
    } else {
        unavailable(error)
    }
}

/// Announcements come from the write scripts (`PUBLISH` of the session key), so every
/// writer through a `RedisStore` is heard, the command line included.
#[cfg(feature = "cache")]
#[async_trait]
impl super::ChangeFeed for RedisStore {
    async fn subscribe(&self) -> Result<Box<dyn super::Changes>, StoreError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(map_redis)?;
        pubsub
            .subscribe(self.change_channel())
            .await
            .map_err(map_redis)?;
        Ok(Box::new(RedisChanges(pubsub.into_on_message())))
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        redis::cmd("PUBLISH")
            .arg(self.change_channel())
            .arg(super::cache::HEARTBEAT)
            .query_async::<i64>(&mut self.connection())
            .await
            .map(drop)
            .map_err(map_redis)
    }
}

/// A subscription to a store's change channel.
#[cfg(feature = "cache")]
struct RedisChanges(redis::aio::PubSubStream);

#[cfg(feature = "cache")]
#[async_trait]
impl super::Changes for RedisChanges {
    async fn next_change(&mut self) -> Result<super::Change, StoreError> {
        use futures_util::StreamExt;
        let message = self
            .0
            .next()
            .await
            .ok_or_else(|| StoreError::Unavailable("Redis change subscription lost".into()))?;
        let key: String = message.get_payload().map_err(map_redis)?;
        if key == super::cache::HEARTBEAT {
            return Ok(super::Change::Heartbeat);
        }
        // `P:s:{<hex id>}`
        let hex = key
            .rsplit_once('{')
            .and_then(|(_, rest)| rest.strip_suffix('}'))
            .unwrap_or_default();
        decode_id(hex).map(super::Change::Session)
    }
}
