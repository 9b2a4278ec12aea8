//! In-process session store: entries expire on their own, memory is bounded by live
//! sessions, and a per-user index makes listing and revoking a user's sessions cheap.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type UserIndex = Arc<Mutex<HashMap<String, HashSet<SessionId>>>>;

/// Sessions in this process's memory (moka). Lost on restart; not shared between
/// processes. Each entry is dropped by moka as soon as the record's idle or absolute
/// expiry passes, so memory holds live sessions only.
///
/// Writes are serialized by one lock (they are rare: read-only requests write nothing);
/// reads take no lock.
#[derive(Clone)]
pub struct MemoryStore {
    sessions: Cache<SessionId, Arc<SessionRecord>>,
    by_user: UserIndex,
    write_lock: Arc<Mutex<()>>,
}

/// moka expiry policy: an entry lives until its record's expiry time.
struct RecordExpiry;

impl RecordExpiry {
    fn remaining(record: &SessionRecord) -> Option<Duration> {
        let left = record.expires_at().as_millis() - Timestamp::now().as_millis();
        Some(Duration::from_millis(left.max(0) as u64))
    }
}

impl Expiry<SessionId, Arc<SessionRecord>> for RecordExpiry {
    fn expire_after_create(
        &self,
        _id: &SessionId,
        record: &Arc<SessionRecord>,
        _now: Instant,
    ) -> Option<Duration> {
        Self::remaining(record)
    }

    fn expire_after_update(
        &self,
        _id: &SessionId,
        record: &Arc<SessionRecord>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Self::remaining(record)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store holding up to 10 million sessions.
    pub fn new() -> Self {
        Self::with_capacity(10_000_000)
    }

    /// A store holding up to `max_sessions`; past that the least recently used sessions
    /// are dropped (their users are logged out).
    pub fn with_capacity(max_sessions: u64) -> Self {
        let by_user: UserIndex = Arc::default();
        let index = by_user.clone();
        let sessions = Cache::builder()
            .max_capacity(max_sessions)
            .expire_after(RecordExpiry)
            .eviction_listener(
                move |id: Arc<SessionId>, record: Arc<SessionRecord>, cause| {
                    // Explicit removals and replacements keep the index themselves.
                    if matches!(cause, RemovalCause::Expired | RemovalCause::Size) {
                        if let Some(user_id) = record.user_id() {
                            unindex(&mut lock(&index), user_id, &id);
                        }
                    }
                },
            )
            .build();
        MemoryStore {
            sessions,
            by_user,
            write_lock: Arc::default(),
        }
    }

    /// Number of sessions held (including ones moka has not yet swept).
    pub fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put(&self, id: SessionId, record: &SessionRecord, previous: Option<&SessionRecord>) {
        let mut index = lock(&self.by_user);
        if let Some(user_id) = previous.and_then(SessionRecord::user_id) {
            unindex(&mut index, user_id, &id);
        }
        if let Some(user_id) = record.user_id() {
            index.entry(user_id.to_string()).or_default().insert(id);
        }
        drop(index);
        self.sessions.insert(id, Arc::new(record.clone()));
    }

    fn take(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let removed = self.sessions.remove(id)?;
        if let Some(user_id) = removed.user_id() {
            unindex(&mut lock(&self.by_user), user_id, id);
        }
        Some(removed)
    }

    fn check_version(
        &self,
        id: &SessionId,
        expected_version: u64,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        match self.sessions.get(id) {
            None => Err(StoreError::NotFound),
            Some(current) if current.version != expected_version => {
                Err(StoreError::VersionConflict)
            }
            Some(current) => Ok(current),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.sessions.get(id).map(|record| (*record).clone()))
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let _guard = lock(&self.write_lock);
        if self.sessions.contains_key(id) {
            return Err(StoreError::AlreadyExists);
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
        let _guard = lock(&self.write_lock);
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
        let _guard = lock(&self.write_lock);
        self.check_version(old_id, expected_version)?;
        if self.sessions.contains_key(new_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.take(old_id);
        self.put(*new_id, record, None);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let _guard = lock(&self.write_lock);
        Ok(self.take(id).is_some())
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        let ids: Vec<SessionId> = lock(&self.by_user)
            .get(user_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.sessions.get(&id).map(|record| (id, (*record).clone())))
            .collect())
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let _guard = lock(&self.write_lock);
        let ids: Vec<SessionId> = lock(&self.by_user)
            .get(user_id)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        let mut deleted = 0;
        for id in ids.iter().filter(|id| Some(*id) != keep) {
            if self.take(id).is_some() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let _guard = lock(&self.write_lock);
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, record)| record.is_expired(now))
            .map(|(id, _)| *id)
            .take(limit as usize)
            .collect();
        let mut deleted = 0;
        for id in &expired {
            if self.take(id).is_some() {
                deleted += 1;
            }
        }
        self.sessions.run_pending_tasks();
        Ok(deleted)
    }
}
