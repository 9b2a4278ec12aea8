//! In-process session store: sharded hash maps behind read-write locks, swept of expired
//! sessions as it goes, bounded in size, with a per-user index.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

const SHARDS: usize = 16;
/// Every this many creates, one shard is swept of expired sessions.
const SWEEP_EVERY_CREATES: u64 = 64;

/// Session ids are SHA-256 digests, already uniformly random: their first 8 bytes are a
/// perfect hash, so no hashing work is needed.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (index, byte) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*byte) << (index * 8);
        }
    }
}

type Shard = RwLock<HashMap<SessionId, Arc<SessionRecord>, BuildHasherDefault<IdHasher>>>;

/// Sessions in this process's memory: lost on restart, not shared between processes.
///
/// Reads take a shared lock on one of 16 shards and clone the record; there is no
/// hashing work, since ids are already SHA-256 digests. Expired sessions are never
/// returned, and they are swept as the store is used (one shard every 64 new sessions)
/// and by [`SessionStore::delete_expired`], so memory holds live sessions plus at most
/// the recently expired. When `max_sessions` live sessions exist, creating another fails
/// with [`StoreError::Unavailable`] (a 503) instead of logging existing users out.
///
/// Whole-store writes are serialized by one lock (they are rare: read-only requests
/// write nothing).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Shard>,
    by_user: Mutex<HashMap<String, HashSet<SessionId>>>,
    write_lock: Mutex<()>,
    len: AtomicUsize,
    creates: AtomicU64,
    max_sessions: usize,
}

/// The memory store refused a new session because it is full.
#[derive(Debug, thiserror::Error)]
#[error("memory session store is full ({0} sessions)")]
pub struct StoreFull(pub usize);

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// A store holding up to 10 million sessions.
    pub fn new() -> Self {
        Self::with_capacity(10_000_000)
    }

    /// A store holding up to `max_sessions` sessions.
    pub fn with_capacity(max_sessions: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
                by_user: Mutex::default(),
                write_lock: Mutex::default(),
                len: AtomicUsize::new(0),
                creates: AtomicU64::new(0),
                max_sessions,
            }),
        }
    }

    /// Number of sessions held (live, or expired and not yet swept).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &SessionId) -> &Shard {
        &self.inner.shards[usize::from(id.0[31]) % SHARDS]
    }

    fn get(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let shard = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        shard.get(id).cloned()
    }

    /// Stores `record` under `id` and keeps the user index in step.
    fn put(&self, id: SessionId, record: &SessionRecord, previous: Option<&SessionRecord>) {
        let mut index = lock(&self.inner.by_user);
        if let Some(user_id) = previous.and_then(SessionRecord::user_id) {
            unindex(&mut index, user_id, &id);
        }
        if let Some(user_id) = record.user_id() {
            index.entry(user_id.to_string()).or_default().insert(id);
        }
        drop(index);
        let mut shard = self.shard(&id).write().unwrap_or_else(|p| p.into_inner());
        if shard.insert(id, Arc::new(record.clone())).is_none() {
            self.inner.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let removed = {
            let mut shard = self.shard(id).write().unwrap_or_else(|p| p.into_inner());
            shard.remove(id)?
        };
        self.inner.len.fetch_sub(1, Ordering::Relaxed);
        if let Some(user_id) = removed.user_id() {
            unindex(&mut lock(&self.inner.by_user), user_id, id);
        }
        Some(removed)
    }

    /// A live record stored under `id` at `expected_version`.
    fn check_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        match self.get(id) {
            Some(current) if current.is_expired(Timestamp::now()) => Err(StoreError::NotFound),
            None => Err(StoreError::NotFound),
            Some(current) if current.version != expected_version => {
                Err(StoreError::VersionConflict)
            }
            Some(current) => Ok(current),
        }
    }

    /// Removes up to `limit` expired sessions from shard `index`.
    fn sweep_shard(&self, index: usize, now: Timestamp, limit: usize) -> u64 {
        let expired: Vec<SessionId> = {
            let shard = self.inner.shards[index]
                .read()
                .unwrap_or_else(|p| p.into_inner());
            shard
                .iter()
                .filter(|(_, record)| record.is_expired(now))
                .map(|(id, _)| *id)
                .take(limit)
                .collect()
        };
        expired.iter().filter(|id| self.take(id).is_some()).count() as u64
    }
}

fn unindex(index: &mut HashMap<String, HashSet<SessionId>>, user_id: &str, id: &SessionId) {
    if let Some(ids) = index.get_mut(user_id) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(user_id);
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self
            .get(id)
            .filter(|record| !record.is_expired(Timestamp::now())))
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let creates = self.inner.creates.fetch_add(1, Ordering::Relaxed);
        if creates.is_multiple_of(SWEEP_EVERY_CREATES) {
            let shard = (creates / SWEEP_EVERY_CREATES) as usize % SHARDS;
            self.sweep_shard(shard, Timestamp::now(), usize::MAX);
        }
        if let Some(existing) = self.get(id) {
            if !existing.is_expired(Timestamp::now()) {
                return Err(StoreError::AlreadyExists);
            }
            self.take(id);
        }
        if self.len() >= self.inner.max_sessions {
            let now = Timestamp::now();
            for shard in 0..SHARDS {
                self.sweep_shard(shard, now, usize::MAX);
            }
            if self.len() >= self.inner.max_sessions {
                return Err(StoreError::Unavailable(Box::new(StoreFull(
                    self.inner.max_sessions,
                ))));
            }
        }
        self.put(*id, record, None);
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let current = self.check_version(id, expected_version)?;
        self.put(*id, record, Some(&current));
        Ok(())
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.inner.write_lock);
        self.check_version(old_id, expected_version)?;
        if self.get(new_id).is_some() {
            return Err(StoreError::AlreadyExists);
        }
        self.take(old_id);
        self.put(*new_id, record, None);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let _guard = lock(&self.inner.write_lock);
        Ok(self.take(id).is_some())
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        let ids: Vec<SessionId> = lock(&self.inner.by_user)
            .get(user_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.get(&id).map(|record| (id, (*record).clone())))
            .collect())
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let ids: Vec<SessionId> = lock(&self.inner.by_user)
            .get(user_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter(|id| Some(*id) != keep)
            .filter(|id| self.take(id).is_some())
            .count() as u64)
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let mut deleted = 0;
        for shard in 0..SHARDS {
            let left = (u64::from(limit) - deleted) as usize;
            if left == 0 {
                break;
            }
            deleted += self.sweep_shard(shard, now, left);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_in_ms: i64) -> SessionRecord {
        let now = Timestamp::now();
        SessionRecord {
            version: 1,
            auth: None,
            data: Default::default(),
            created_at: now,
            last_active_at: now,
            idle_expires_at: Timestamp(now.as_millis() + expires_in_ms),
            absolute_expires_at: Timestamp(now.as_millis() + 3_600_000),
            client_ip: None,
            user_agent: None,
        }
    }

    fn id() -> SessionId {
        crate::SessionToken::generate().id()
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_sessions_but_reclaims_expired_ones() {
        let store = MemoryStore::with_capacity(2);
        store.create(&id(), &record(60_000)).await.expect("first");
        store
            .create(&id(), &record(-1))
            .await
            .expect("second (expired)");
        // The expired one is swept to make room.
        store.create(&id(), &record(60_000)).await.expect("third");
        assert!(matches!(
            store.create(&id(), &record(60_000)).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn creating_sessions_sweeps_expired_ones() {
        let store = MemoryStore::new();
        for _ in 0..200 {
            store.create(&id(), &record(-1)).await.expect("create");
        }
        for _ in 0..(SWEEP_EVERY_CREATES as usize * SHARDS) {
            store.create(&id(), &record(60_000)).await.expect("create");
        }
        assert_eq!(
            store.len(),
            SWEEP_EVERY_CREATES as usize * SHARDS,
            "every shard was swept once"
        );
    }
}
