//! In-process session store: sharded hash maps behind read-write locks, swept of expired
//! sessions as it goes, bounded in size, with a per-user index. Idle sessions are kept in
//! a compact encoding; sessions in use are kept decoded.

use super::compact;
use crate::session::{Loaded, SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

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

/// One stored session.
enum Entry {
    /// Decoded, ready to hand out: a session read since its shard was last swept.
    Decoded(Arc<SessionRecord>),
    /// The compact encoding (a few hundred bytes): a session just written, or idle.
    Compact(Box<[u8]>),
}

impl Entry {
    fn record(&self) -> Result<Arc<SessionRecord>, StoreError> {
        match self {
            Entry::Decoded(record) => Ok(Arc::clone(record)),
            Entry::Compact(bytes) => Ok(Arc::new(compact::decode(bytes)?)),
        }
    }

    /// Whether the session is over at `now`; an entry that does not decode is over.
    fn is_expired(&self, now: Timestamp) -> bool {
        match self {
            Entry::Decoded(record) => record.is_expired(now),
            Entry::Compact(bytes) => !compact::expires_at(bytes).is_ok_and(|at| now < at),
        }
    }
}

type Entries = HashMap<SessionId, Entry, BuildHasherDefault<IdHasher>>;
type Shard = RwLock<Entries>;

/// Sessions in this process's memory: lost on restart, not shared between processes.
///
/// Reads take a shared lock on one of 16 shards and clone an `Arc` of the decoded
/// record; there is no hashing work, since ids are already SHA-256 digests. Writes store
/// the record in a compact encoding (about 250 bytes for a logged-in browser session);
/// the first read decodes it and keeps it decoded, and each sweep of a shard compacts
/// its decoded records again, so idle sessions stay small and sessions in use are
/// decoded about once per sweep.
///
/// Expired sessions are never returned, and they are swept as the store is used (one
/// shard every 64 new sessions) and by [`SessionStore::delete_expired`], so memory holds
/// live sessions plus at most the recently expired. When `max_sessions` live sessions
/// exist, creating another fails with [`StoreError::Unavailable`] (a 503) instead of
/// logging existing users out.
///
/// Whole-store writes are serialized by one lock (they are rare: read-only requests
/// write nothing).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Shard>,
    /// (keyed hash of the user id, session id): one ordered set for every user, so a
    /// user costs no allocation of their own. Hash collisions are told apart by the
    /// records' user ids.
    by_user: Mutex<BTreeSet<(u64, SessionId)>>,
    user_hasher: RandomState,
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
                user_hasher: RandomState::new(),
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

    fn shard_of(&self, id: &SessionId) -> &Shard {
        &self.inner.shards[usize::from(id.0[31]) % SHARDS]
    }

    fn read(shard: &Shard) -> RwLockReadGuard<'_, Entries> {
        shard.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(shard: &Shard) -> RwLockWriteGuard<'_, Entries> {
        shard.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `id`, expired or not, decoded without changing how it is kept.
    fn peek(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Self::read(self.shard_of(id))
            .get(id)
            .map(Entry::record)
            .transpose()
    }

    /// The record under `id`, keeping it decoded from now on: a session being read is
    /// probably in use. Concurrent first reads decode it once.
    fn get_for_use(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let shard = self.shard_of(id);
        match Self::read(shard).get(id) {
            None => return Ok(None),
            Some(Entry::Decoded(record)) => return Ok(Some(Arc::clone(record))),
            Some(Entry::Compact(_)) => {}
        }
        let mut shard = Self::write(shard);
        let Some(entry) = shard.get_mut(id) else {
            return Ok(None);
        };
        let record = entry.record()?;
        *entry = Entry::Decoded(Arc::clone(&record));
        Ok(Some(record))
    }

    /// The record under `id` if it is live at `now`.
    fn live_at(&self, id: &SessionId, now: Timestamp) -> Loaded {
        Ok(self
            .get_for_use(id)?
            .filter(|record| !record.is_expired(now)))
    }

    fn user_key(&self, user_id: &str) -> u64 {
        self.inner.user_hasher.hash_one(user_id)
    }

    /// Stores `record` under `id` (compact) and keeps the user index in step.
    fn put(
        &self,
        id: SessionId,
        record: &SessionRecord,
        previous: Option<&SessionRecord>,
    ) -> Result<(), StoreError> {
        let bytes = compact::encode(record)?;
        // Only what decodes is stored (JSON nested deeper than serde_json reads back is
        // refused now), so every stored session can be listed and revoked later.
        compact::decode(&bytes)?;
        let entry = Entry::Compact(bytes);
        let mut index = lock(&self.inner.by_user);
        if let Some(user_id) = previous.and_then(SessionRecord::user_id) {
            index.remove(&(self.user_key(user_id), id));
        }
        if let Some(user_id) = record.user_id() {
            index.insert((self.user_key(user_id), id));
        }
        drop(index);
        if Self::write(self.shard_of(&id)).insert(id, entry).is_none() {
            self.inner.len.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes the session under `id`; whether there was one.
    fn take(&self, id: &SessionId) -> bool {
        let Some(removed) = Self::write(self.shard_of(id)).remove(id) else {
            return false;
        };
        self.inner.len.fetch_sub(1, Ordering::Relaxed);
        // A record that does not decode leaves an index entry naming no session, which
        // listings skip.
        if let Some(user_id) = removed
            .record()
            .ok()
            .as_deref()
            .and_then(SessionRecord::user_id)
        {
            lock(&self.inner.by_user).remove(&(self.user_key(user_id), *id));
        }
        true
    }

    /// A live record stored under `id` at `expected_version`.
    fn check_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        match self.peek(id)? {
            Some(current) if current.is_expired(Timestamp::now()) => Err(StoreError::NotFound),
            None => Err(StoreError::NotFound),
            Some(current) if current.version != expected_version => {
                Err(StoreError::VersionConflict)
            }
            Some(current) => Ok(current),
        }
    }

    /// Removes up to `limit` expired sessions from shard `index` and compacts its
    /// decoded records; returns how many were removed.
    fn sweep_shard(&self, index: usize, now: Timestamp, limit: usize) -> u64 {
        let shard = &self.inner.shards[index];
        let (expired, decoded): (Vec<SessionId>, Vec<(SessionId, Arc<SessionRecord>)>) = {
            let entries = Self::read(shard);
            let expired = entries
                .iter()
                .filter(|(_, entry)| entry.is_expired(now))
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            let decoded = entries
                .iter()
                .filter_map(|(id, entry)| match entry {
                    Entry::Decoded(record) if !record.is_expired(now) => {
                        Some((*id, Arc::clone(record)))
                    }
                    _ => None,
                })
                .collect();
            (expired, decoded)
        };
        let removed = expired.iter().filter(|id| self.take(id)).count() as u64;
        // Encoded outside the lock; swapped in only where the entry still holds the very
        // record encoded (a write in between wins).
        let compacted: Vec<_> = decoded
            .into_iter()
            .filter_map(|(id, record)| Some((id, compact::encode(&record).ok()?, record)))
            .collect();
        let mut entries = Self::write(shard);
        for (id, bytes, record) in compacted {
            compact_unless_rewritten(&mut entries, &id, &record, bytes);
        }
        removed
    }

    /// The ids of `user_id`'s sessions, with the records they hold now.
    fn sessions_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, Arc<SessionRecord>)>, StoreError> {
        let key = self.user_key(user_id);
        let ids: Vec<SessionId> = lock(&self.inner.by_user)
            .range((key, SessionId([0; 32]))..=(key, SessionId([0xff; 32])))
            .map(|(_, id)| *id)
            .collect();
        let mut sessions = Vec::with_capacity(ids.len());
        for id in ids {
            match self.peek(&id) {
                Ok(Some(record)) if record.user_id() == Some(user_id) => {
                    sessions.push((id, record))
                }
                Ok(_) => {}
                // Cannot happen (writes store only what decodes); if it did, one bad
                // record must not stop the user's other sessions being revoked.
                Err(error) => tracing::error!(session = ?id, %error, "undecodable session skipped"),
            }
        }
        Ok(sessions)
    }
}

/// Replaces the decoded `record` under `id` with its encoding `bytes`, unless a write
/// has replaced the record since it was read.
fn compact_unless_rewritten(
    entries: &mut Entries,
    id: &SessionId,
    record: &Arc<SessionRecord>,
    bytes: Box<[u8]>,
) {
    if let Some(entry) = entries.get_mut(id) {
        if matches!(entry, Entry::Decoded(current) if Arc::ptr_eq(current, record)) {
            *entry = Entry::Compact(bytes);
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.live_at(id, Timestamp::now())
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let creates = self.inner.creates.fetch_add(1, Ordering::Relaxed);
        if creates.is_multiple_of(SWEEP_EVERY_CREATES) {
            let shard = (creates / SWEEP_EVERY_CREATES) as usize % SHARDS;
            self.sweep_shard(shard, Timestamp::now(), usize::MAX);
        }
        let existing = Self::read(self.shard_of(id))
            .get(id)
            .map(|entry| entry.is_expired(Timestamp::now()));
        match existing {
            Some(false) => return Err(StoreError::AlreadyExists),
            Some(true) => {
                self.take(id);
            }
            None => {}
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
        self.put(*id, record, None)
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let _guard = lock(&self.inner.write_lock);
        let current = self.check_version(id, expected_version)?;
        self.put(*id, record, Some(&current))
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
        if Self::read(self.shard_of(new_id)).contains_key(new_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.put(*new_id, record, None)?;
        self.take(old_id);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let _guard = lock(&self.inner.write_lock);
        Ok(self.take(id))
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        Ok(self
            .sessions_of(user_id)?
            .into_iter()
            .map(|(id, record)| (id, Arc::unwrap_or_clone(record)))
            .collect())
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let _guard = lock(&self.inner.write_lock);
        Ok(self
            .sessions_of(user_id)?
            .iter()
            .filter(|(id, _)| Some(id) != keep)
            .filter(|(id, _)| self.take(id))
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

    fn is_decoded(store: &MemoryStore, id: &SessionId) -> bool {
        matches!(
            MemoryStore::read(store.shard_of(id)).get(id),
            Some(Entry::Decoded(_))
        )
    }

    #[tokio::test]
    async fn writes_are_compact_reads_decode_once_and_sweeps_compact_again() {
        let store = MemoryStore::new();
        let id = id();
        let mut written = record(60_000);
        written
            .data
            .insert("cart".into(), serde_json::json!([1, 2]));
        store.create(&id, &written).await.expect("create");
        assert!(!is_decoded(&store, &id), "a new session is stored compact");

        let first = store.load(&id).await.expect("load").expect("session");
        assert_eq!(*first, written);
        assert!(is_decoded(&store, &id), "a session in use stays decoded");
        let second = store.load(&id).await.expect("load").expect("session");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second read decodes nothing"
        );

        store
            .delete_expired(Timestamp::now(), 1000)
            .await
            .expect("sweep");
        assert!(!is_decoded(&store, &id), "a sweep compacts it again");
        assert_eq!(
            *store.load(&id).await.expect("load").expect("session"),
            written
        );
    }

    #[tokio::test]
    async fn a_sweep_never_puts_back_a_record_older_than_a_write() {
        let store = MemoryStore::new();
        let id = id();
        store.create(&id, &record(60_000)).await.expect("create");
        let loaded = store.load(&id).await.expect("load").expect("session");
        // A write lands between the sweep's read of the decoded record and its swap.
        let stale = Arc::clone(&loaded);
        let newer = SessionRecord {
            version: 2,
            ..(*loaded).clone()
        };
        store.save(&id, &newer, 1).await.expect("save");
        let bytes = compact::encode(&stale).expect("encode");
        compact_unless_rewritten(
            &mut MemoryStore::write(store.shard_of(&id)),
            &id,
            &stale,
            bytes,
        );
        let now = store.load(&id).await.expect("load").expect("session");
        assert_eq!(now.version, 2);
    }

    #[tokio::test]
    async fn data_too_deeply_nested_to_read_back_is_refused_and_nothing_changes() {
        let store = MemoryStore::new();
        let id = id();
        let mut deep = serde_json::json!(1);
        for _ in 0..200 {
            deep = serde_json::json!([deep]);
        }
        let mut written = record(60_000);
        written.data.insert("deep".into(), deep);
        assert!(matches!(
            store.create(&id, &written).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(store.is_empty());
        assert!(store.load(&id).await.expect("load").is_none());
    }
}
