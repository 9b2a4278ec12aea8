//! Redis session store, on one server or a Redis Cluster: native expiry, a per-user
//! index, compare-and-swap in Lua, and a connection that reconnects on its own (on one
//! server it sends a command that found its connection dead once more, on the fresh
//! one; on a cluster the redis crate follows `MOVED`/`ASK` and failovers).
//!
//! Layout (`P` is the key prefix, `latchkey` by default):
//! * `P:s:{<hex id>}`: a hash with `v` (version), `u` (user id, empty when anonymous)
//!   and `r` (the record as JSON), expiring at the record's expiry (`PEXPIREAT`);
//! * `P:u:{<user id>}`: a set of the user's session ids, expiring with the last of them.
//!
//! Every script touches exactly one key, so each runs in one Redis Cluster slot, and
//! announces the change on a channel of that slot (see [`cluster`]). The
//! user index is written *before* a session joins it, so a crash can leave a dangling
//! index entry (pruned when listed) but never a session that per-user revocation
//! misses. A rotation is two single-key steps: the new key is created, then the old
//! key is deleted if its version is still the expected one (otherwise the new key is
//! removed again and the rotation fails). The new token reaches no client before the
//! old key is gone, so the old token is dead the moment the new one is issued.

mod cluster;
mod connection;

use super::batch::{Answer, FetchMany, LoadBatcher};
use super::codec::{decode_id, decode_record, decode_stored, encode_record};
use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
pub(crate) use connection::{map_redis, refused_before_writing};
use connection::{Address, Connection};
use redis::{Cmd, Script, ScriptInvocation};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Creates the session hash if the key is free: 1, or 0 when taken.
/// KEYS: session. ARGV: version, user, record, expires (ms), then [`Announce`]'s two.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'v', ARGV[1], 'u', ARGV[2], 'r', ARGV[3])
        redis.call('PEXPIREAT', KEYS[1], ARGV[4])
        redis.call(ARGV[6], ARGV[5], KEYS[1])
        return 1",
    )
});

/// Replaces the record if the stored version is the expected one: 1 done, 0 missing,
/// -1 version conflict.
/// KEYS: session. ARGV: expected version, version, user, record, expires (ms), then
/// [`Announce`]'s two.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local current = redis.call('HGET', KEYS[1], 'v')
        if not current then return 0 end
        if current ~= ARGV[1] then return -1 end
        redis.call('HSET', KEYS[1], 'v', ARGV[2], 'u', ARGV[3], 'r', ARGV[4])
        redis.call('PEXPIREAT', KEYS[1], ARGV[5])
        redis.call(ARGV[7], ARGV[6], KEYS[1])
        return 1",
    )
});

/// Deletes the session if its version is the expected one (the old half of a rotation):
/// {1, user} done, {0, ''} missing, {-1, ''} version conflict.
/// KEYS: session. ARGV: expected version, then [`Announce`]'s two.
static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local stored = redis.call('HMGET', KEYS[1], 'v', 'u')
        if not stored[1] then return {0, ''} end
        if stored[1] ~= ARGV[1] then return {-1, ''} end
        redis.call('DEL', KEYS[1])
        redis.call(ARGV[3], ARGV[2], KEYS[1])
        return {1, stored[2] or ''}",
    )
});

/// Deletes the session: {1, user} when it existed, {0, ''} otherwise.
/// KEYS: session. ARGV: [`Announce`]'s two.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local user = redis.call('HGET', KEYS[1], 'u')
        if not user then return {0, ''} end
        redis.call('DEL', KEYS[1])
        redis.call(ARGV[2], ARGV[1], KEYS[1])
        return {1, user}",
    )
});

/// Deletes the session only if it still belongs to the user: 1 or 0.
/// KEYS: session. ARGV: user, then [`Announce`]'s two.
static DELETE_IF_OWNED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
        redis.call(ARGV[3], ARGV[2], KEYS[1])
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

/// How a write script announces the key it changed: the publish command and channel it
/// passes as its last two arguments. One server: `PUBLISH` on `P:changed`. A cluster:
/// `SPUBLISH` on the key's slot's channel, heard only by that shard's subscribers.
trait Announce {
    /// Appends the command and the channel for changes to `key`.
    fn announce(&mut self, store: &RedisStore, key: &str) -> &mut Self;
}

impl Announce for ScriptInvocation<'_> {
    fn announce(&mut self, store: &RedisStore, key: &str) -> &mut Self {
        match store.connection {
            Connection::Server(_) => self.arg(store.change_channel()).arg("PUBLISH"),
            Connection::Cluster(_) => self
                .arg(cluster::channel_for_key(&store.prefix, key))
                .arg("SPUBLISH"),
        }
    }
}

/// Sessions in Redis, on one server or a Redis Cluster. Cheap to clone (one
/// multiplexed connection per node, shared).
#[derive(Clone)]
pub struct RedisStore {
    /// Where Redis is, for the change feed's own subscription.
    address: Arc<Address>,
    connection: Connection,
    /// On a cluster, the connection sessions are ended on, of its own because each
    /// deletion there waits for a replica, if its master has one connected (see
    /// [`cluster::replicated`], [`cluster::has_replica`]); opened at the
    /// first ending, so stores that end none (the feed's, the throttle's) never open it.
    endings: Arc<tokio::sync::OnceCell<Connection>>,
    prefix: Arc<str>,
    /// Tells this store's heartbeats from other processes' on a cluster's channels.
    instance: u64,
    /// The cluster heartbeat round last sent (by the change feed, feature `cache`).
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    heartbeat_round: Arc<AtomicU64>,
    /// Loads that arrive together share one round trip.
    loads: Arc<LoadBatcher<FetchSessions>>,
    /// On a cluster, how long a command waits out a failover (see
    /// [`RedisStore::open_patient`]); zero: not at all.
    patience: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field(
                "cluster",
                &matches!(self.connection, Connection::Cluster(_)),
            )
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to Redis at `url`: one server (`redis://host:port/db`, `rediss://…` for
    /// TLS when the redis crate is built with it) or a Redis Cluster by its seed nodes
    /// (`redis-cluster://host:port[,host:port…]`, Redis ≥ 7.0 for its sharded change
    /// channels). Fails if Redis cannot be reached now; once open, a lost connection is
    /// re-established in the background and requests in the meantime fail with
    /// [`StoreError::Unavailable`] within a few seconds (on a cluster, until a replica
    /// has taken over from a failed master).
    pub async fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_patient(url, Duration::ZERO).await
    }

    /// [`RedisStore::open`] for a one-shot tool, such as an administrator's command, that
    /// had rather wait for a Redis Cluster to fail over than fail: on a cluster, a command
    /// that meets a failover in progress (a master unreachable before its replica is
    /// promoted, a slot said to be elsewhere, `CLUSTERDOWN`) is sent again, after pauses
    /// that grow to a second, against the topology the client refreshes meanwhile, until
    /// it succeeds or `patience` has passed since it was first sent; then it fails with
    /// [`StoreError::Unavailable`] saying that the cluster did not recover in time.
    /// Connecting waits the same way. A server should use [`RedisStore::open`], so that a
    /// request meeting a failover answers at once (with 503) rather than hold its client.
    /// On one Redis server, the same as [`RedisStore::open`].
    pub async fn open_patient(url: &str, patience: Duration) -> Result<RedisStore, StoreError> {
        let address = Address::parse(url)?;
        let connection = Connection::open(&address, patience).await?;
        let mut instance = [0u8; 8];
        crate::bytes::random_bytes(&mut instance);
        Ok(RedisStore::assemble(
            Arc::new(address),
            (connection, Arc::default()),
            Arc::from("latchkey"),
            (u64::from_le_bytes(instance), patience),
        ))
    }

    fn assemble(
        address: Arc<Address>,
        (connection, endings): (Connection, Arc<tokio::sync::OnceCell<Connection>>),
        prefix: Arc<str>,
        (instance, patience): (u64, Duration),
    ) -> Self {
        let fetcher = FetchSessions {
            connection: connection.clone(),
            prefix: prefix.clone(),
        };
        RedisStore {
            address,
            connection,
            endings,
            prefix,
            instance,
            heartbeat_round: Arc::new(AtomicU64::new(0)),
            loads: Arc::new(LoadBatcher::new(fetcher)),
            patience,
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
            self.address,
            (self.connection, self.endings),
            Arc::from(prefix),
            (self.instance, self.patience),
        ))
    }

    /// Whether this store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
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

    /// The channel the write scripts publish changed session keys on (one server).
    fn change_channel(&self) -> String {
        format!("{}:changed", self.prefix)
    }

    pub(crate) fn connection(&self) -> Connection {
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

    /// The connection sessions are ended on: on one server the store's own, on a
    /// cluster the one kept for endings.
    async fn endings(&self) -> Result<Connection, StoreError> {
        match self.connection {
            Connection::Server(_) => Ok(self.connection.clone()),
            Connection::Cluster(_) => self
                .endings
                .get_or_try_init(|| Connection::open(&self.address, self.patience))
                .await
                .cloned(),
        }
    }

    /// On a cluster, whether the master of `key` has a replica connected (see
    /// [`cluster::has_replica`]), asked on the store's shared connection: never behind a
    /// `WAIT` on `endings`. On one server, no question: `Ok(true)`.
    async fn has_replica(&self, key: &str) -> redis::RedisResult<bool> {
        match &self.connection {
            Connection::Server(_) => Ok(true),
            Connection::Cluster(cluster) => {
                cluster::has_replica(&mut cluster.connection.clone(), key).await
            }
        }
    }

    /// On a cluster, waits until a replica has the deletion of `key`, made on
    /// `endings` (at most [`cluster::REPLICA_WAIT`]); one that does not in time is
    /// logged, not failed: the session is gone from its master, and refusing the logout
    /// would not bring the replica back. When `has_replica` says the master has no
    /// replica connected, there is none to wait for: the wait is skipped (and logged), since
    /// it would only hold `endings` to that master, and every deletion queued behind it,
    /// for the whole [`cluster::REPLICA_WAIT`]. If that could not be asked, it waits.
    async fn confirm_ended(endings: &Connection, key: &str, has_replica: redis::RedisResult<bool>) {
        if let Connection::Cluster(endings) = endings {
            if let Ok(false) = has_replica {
                tracing::warn!(
                    key,
                    "an ended session's master has no replica: a failover now could bring it \
                     back"
                );
                return;
            }
            match cluster::replicated(&mut endings.connection.clone(), key).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    key,
                    "an ended session is not on a replica yet: a failover now could bring it back"
                ),
                Err(error) => tracing::warn!(
                    key,
                    %error,
                    "cannot confirm that a replica has an ended session"
                ),
            }
        }
    }

    /// On a cluster, waits until every master's replica has the deletions of `count`
    /// sessions made on `endings` (one `WAIT` per master, together: at most
    /// [`cluster::REPLICA_WAIT`] in all); masters whose replicas do not in time are
    /// logged, as in [`RedisStore::confirm_ended`].
    async fn confirm_all_ended(endings: &Connection, count: usize) {
        if let Connection::Cluster(endings) = endings {
            match cluster::replicated_on_every_master(&mut endings.connection.clone()).await {
                Ok(unconfirmed) if unconfirmed.is_empty() => {}
                Ok(unconfirmed) => tracing::warn!(
                    count,
                    masters = ?unconfirmed,
                    "ended sessions are not on a replica yet on these masters: a failover now \
                     could bring those ended there back"
                ),
                Err(error) => tracing::warn!(
                    count,
                    %error,
                    "cannot confirm that replicas have the ended sessions"
                ),
            }
        }
    }

    /// Runs CREATE for `id`: `true` if created, `false` if the id was taken.
    async fn insert(&self, id: &SessionId, record: &SessionRecord) -> Result<bool, StoreError> {
        let key = self.session_key(id);
        let created: i64 = CREATE
            .key(&key)
            .arg(record.version)
            .arg(record.user_id().unwrap_or(""))
            .arg(encode_record(record)?)
            .arg(record.expires_at().as_millis())
            .announce(self, &key)
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

/// Fetches sessions' records with one `HGET` each, sent together.
struct FetchSessions {
    connection: Connection,
    prefix: Arc<str>,
}

#[async_trait]
impl FetchMany for FetchSessions {
    async fn fetch_many(&self, ids: &[SessionId]) -> Result<Vec<Answer>, StoreError> {
        let commands = ids
            .iter()
            .map(|id| {
                redis::cmd("HGET")
                    .arg(session_key(&self.prefix, &id.to_hex()))
                    .arg("r")
                    .to_owned()
            })
            .collect();
        // One key of the wrong type (or text that is not UTF-8) fails its own loads,
        // not the whole batch's.
        let replies: Vec<redis::RedisResult<Option<String>>> =
            self.connection.each(commands).await.map_err(map_redis)?;
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
        let key = self.session_key(id);
        let saved: i64 = SAVE
            .key(&key)
            .arg(expected_version)
            .arg(record.version)
            .arg(record.user_id().unwrap_or(""))
            .arg(encode_record(record)?)
            .arg(record.expires_at().as_millis())
            .announce(self, &key)
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
        let old_key = self.session_key(old_id);
        let retired: (i64, String) = match RETIRE
            .key(&old_key)
            .arg(expected_version)
            .announce(self, &old_key)
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
        let key = self.session_key(id);
        let endings = self.endings().await?;
        // On a cluster, whether the key's master has a replica to wait for is asked
        // together with the deletion, on the shared connection, so it costs no round
        // trip and never queues behind a WAIT. Asked every time rather than cached per
        // node: `ROLE` is as cheap as the deletion, and a fresh answer follows a
        // failover (a promoted master without replica, a replica that reconnected) at
        // once, where a cached one would keep waiting, or not, on stale news. Of the
        // other ways: `WAIT` on a connection of its own would confirm nothing (it waits
        // for the writes made on the connection it is sent on), and waiting with
        // `numreplicas` = the replicas connected is this, with `WAIT 0` in place of no wait.
        let mut deleting = endings.clone();
        let mut invocation = DELETE.key(&key);
        let deletion = invocation
            .announce(self, &key)
            .invoke_async::<(i64, String)>(&mut deleting);
        let (deleted, has_replica) =
            futures_util::future::join(deletion, self.has_replica(&key)).await;
        let (deleted, user) = deleted.map_err(map_redis)?;
        if deleted == 1 {
            Self::confirm_ended(&endings, &key, has_replica).await;
        }
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
        let commands: Vec<Cmd> = ids
            .iter()
            .map(|hex| {
                redis::cmd("HMGET")
                    .arg(self.session_key_hex(hex))
                    .arg("u")
                    .arg("r")
                    .to_owned()
            })
            .collect();
        let rows: Vec<redis::RedisResult<(Option<String>, Option<String>)>> =
            self.connection.each(commands).await.map_err(map_redis)?;
        // Entries without a session are left alone: one may be a session being created
        // right now (its index entry is written first). They expire with the index.
        let mut sessions = Vec::new();
        for (hex, row) in ids.into_iter().zip(rows) {
            if let (Some(owner), Some(text)) = row.map_err(map_redis)? {
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
        // not there yet may belong to a login in progress. On a cluster the sessions
        // live on several shards: each delete goes to its own, and once all are done one
        // wait per master confirms them on replicas (a wait per session would block the
        // connection to its master for each in turn, and the deletes queued behind).
        let endings = self.endings().await?;
        let endings = &endings;
        let deletes = ids.into_iter().map(|hex| async move {
            let key = self.session_key_hex(&hex);
            let done: i64 = DELETE_IF_OWNED
                .key(&key)
                .arg(user_id)
                .announce(self, &key)
                .invoke_async(&mut endings.clone())
                .await
                .map_err(map_redis)?;
            Ok::<_, StoreError>((done == 1).then_some(hex))
        });
        let mut deleted = Vec::new();
        let mut failure = None;
        for outcome in futures_util::future::join_all(deletes).await {
            match outcome {
                Ok(Some(hex)) => deleted.push(hex),
                Ok(None) => {}
                Err(error) => failure = Some(error),
            }
        }
        if !deleted.is_empty() {
            Self::confirm_all_ended(endings, deleted.len()).await;
        }
        self.unindex(user_id, &deleted).await;
        match failure {
            Some(error) => Err(error),
            None => Ok(deleted.len() as u64),
        }
    }

    /// Redis removes expired sessions itself (`PEXPIREAT`), so there is nothing to do.
    async fn delete_expired(&self, _now: Timestamp, _limit: u32) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(feature = "cache")]
/// The change announced for a session key (`P:s:{<hex id>}`), or a heartbeat.
fn change_of_key(key: &str) -> Result<super::Change, StoreError> {
    if key == super::cache::HEARTBEAT {
        return Ok(super::Change::Heartbeat);
    }
    let hex = key
        .rsplit_once('{')
        .and_then(|(_, rest)| rest.strip_suffix('}'))
        .unwrap_or_default();
    decode_id(hex).map(super::Change::Session)
}

/// Announcements come from the write scripts (`PUBLISH`, or `SPUBLISH` on a cluster, of
/// the session key), so every writer through a `RedisStore` is heard, the command line
/// included.
#[cfg(feature = "cache")]
#[async_trait]
impl super::ChangeFeed for RedisStore {
    async fn subscribe(&self) -> Result<Box<dyn super::Changes>, StoreError> {
        match &*self.address {
            Address::Server(url) => {
                let client = redis::Client::open(url.as_str()).map_err(map_redis)?;
                let mut pubsub = client.get_async_pubsub().await.map_err(map_redis)?;
                pubsub
                    .subscribe(self.change_channel())
                    .await
                    .map_err(map_redis)?;
                Ok(Box::new(RedisChanges(pubsub.into_on_message())))
            }
            Address::Cluster(seeds) => Ok(Box::new(
                cluster::subscribe(seeds, &self.prefix, self.instance).await?,
            )),
        }
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        match &self.connection {
            Connection::Server(server) => redis::cmd("PUBLISH")
                .arg(self.change_channel())
                .arg(super::cache::HEARTBEAT)
                .query_async::<i64>(&mut server.clone())
                .await
                .map(drop)
                .map_err(map_redis),
            Connection::Cluster(cluster) => {
                let round = self
                    .heartbeat_round
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                cluster::heartbeat(
                    &mut cluster.connection.clone(),
                    &self.prefix,
                    self.instance,
                    round,
                )
                .await
            }
        }
    }
}

/// A subscription to a server's change channel.
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
        change_of_key(&key)
    }
}
