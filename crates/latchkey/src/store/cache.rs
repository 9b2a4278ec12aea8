//! An in-process cache (moka) in front of any session store.
//!
//! Reads are served from the cache for at most `ttl` after the store was last read or
//! written by this process; concurrent reads of one cold session wait for a single
//! store load. Every write and delete goes through to the store first and then updates
//! the cache, and a lost compare-and-swap evicts the entry so the retry reads the store.
//!
//! Staleness: a change made by *another* process (a logout, a revocation, another
//! request's write) is seen here at most `ttl` later. Within this process, a delete
//! that races a write or a load of the same session can leave the deleted record
//! cached, also for at most `ttl`. Writes never lose updates because
//! of the cache: a stale version only makes the store's compare-and-swap fail, and the
//! retry reloads. Keep `ttl` short (about a second) where processes share a store.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::Op;
use std::sync::Arc;
use std::time::Duration;

/// A cached entry: the record, or the knowledge that there is none.
type Entry = Option<Arc<SessionRecord>>;

/// [`SessionStore`] wrapper that caches loads in this process.
#[derive(Clone)]
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    cache: Cache<SessionId, Entry>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl CachedStore {
    /// Caches up to `capacity` sessions of `inner`, each for at most `ttl`.
    pub fn new(inner: Arc<dyn SessionStore>, ttl: Duration, capacity: u64) -> CachedStore {
        CachedStore {
            inner,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
        }
    }
}

impl CachedStore {
    /// Caches `record` unless the cache already holds that version or a later one:
    /// concurrent writers finish in any order, and the newest must stay.
    async fn remember(&self, id: &SessionId, record: &SessionRecord) {
        let record = Arc::new(record.clone());
        self.cache
            .entry(*id)
            .and_compute_with(|entry| {
                let newer_cached = entry
                    .as_ref()
                    .and_then(|entry| entry.value().as_ref())
                    .is_some_and(|cached| cached.version >= record.version);
                std::future::ready(if newer_cached {
                    Op::Nop
                } else {
                    Op::Put(Some(record))
                })
            })
            .await;
    }

    /// Evicts every entry `predicate` picks.
    fn evict_where(&self, predicate: impl Fn(&SessionId, &Entry) -> bool + Send + Sync + 'static) {
        if let Err(error) = self.cache.invalidate_entries_if(predicate) {
            // Only if the cache were built without invalidation closures: stay correct.
            tracing::warn!(%error, "selective cache eviction failed; clearing the cache");
            self.cache.invalidate_all();
        }
    }
}

/// A shared store error as an owned one (moka shares the error of a coalesced load).
fn unshare(error: Arc<StoreError>) -> StoreError {
    Arc::try_unwrap(error).unwrap_or_else(|shared| match &*shared {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::VersionConflict => StoreError::VersionConflict,
        StoreError::AlreadyExists => StoreError::AlreadyExists,
        StoreError::TooLarge { size, limit } => StoreError::TooLarge {
            size: *size,
            limit: *limit,
        },
        StoreError::Corrupt(_) => StoreError::Corrupt(shared.to_string().into()),
        StoreError::Unavailable(_) => StoreError::Unavailable(shared.to_string().into()),
    })
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.cache
            .try_get_with(*id, self.inner.load(id))
            .await
            .map_err(unshare)
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create(id, record).await?;
        self.remember(id, record).await;
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        match self.inner.save(id, record, expected_version).await {
            Ok(()) => {
                self.remember(id, record).await;
                Ok(())
            }
            Err(error) => {
                self.cache.invalidate(id).await;
                Err(error)
            }
        }
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let rotated = self
            .inner
            .rotate(old_id, new_id, record, expected_version)
            .await;
        self.cache.invalidate(old_id).await;
        rotated?;
        self.remember(new_id, record).await;
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(id).await;
        self.cache.invalidate(id).await;
        deleted
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        self.inner.list_for_user(user_id).await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_for_user(user_id, keep).await;
        let user = user_id.to_string();
        let keep = keep.copied();
        self.evict_where(move |id, entry| {
            Some(*id) != keep
                && entry
                    .as_ref()
                    .is_some_and(|record| record.user_id() == Some(user.as_str()))
        });
        deleted
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let deleted = self.inner.delete_expired(now, limit).await;
        self.evict_where(move |_, entry| {
            entry.as_ref().is_some_and(|record| record.is_expired(now))
        });
        deleted
    }
}
