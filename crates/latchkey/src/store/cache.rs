//! An in-process cache (moka) in front of any session store.
//!
//! Reads are served from the cache for at most `ttl` after the store was last read or
//! written by this process; concurrent reads of one cold session wait for a single
//! store load. Every write and delete goes through to the store first and then updates
//! the cache, and a lost compare-and-swap evicts the entry so the retry reads the store.
//!
//! Staleness: a change made by *another* process (a logout, a revocation, another
//! request's write) is seen here at most `ttl` later; with a [`ChangeFeed`]
//! ([`CachedStore::with_feed`]), as soon as the store's announcement arrives (a
//! PostgreSQL `NOTIFY` or a Redis `PUBLISH`, typically well under a millisecond), and
//! while the feed is down the cache is bypassed. Within this process, a delete
//! that races a write or a load of the same session can leave the deleted record
//! cached, also for at most `ttl`. Writes never lose updates because
//! of the cache: a stale version only makes the store's compare-and-swap fail, and the
//! retry reloads. Keep `ttl` short (about a second) where processes share a store.

use super::unshare;
use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use moka::future::Cache;
use moka::ops::compute::Op;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where a store announces the sessions that any process changed or ended, so that a
/// [`CachedStore`] in front of it can drop its copies. `PostgresStore` announces through
/// `NOTIFY` (a trigger on the sessions table), `RedisStore` through `PUBLISH` (from its
/// write scripts), so every writer is covered, the command line included.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Starts listening.
    async fn subscribe(&self) -> Result<Box<dyn Changes>, StoreError>;

    /// Sends a heartbeat that every subscription hears as [`Change::Heartbeat`]: a
    /// subscription that stops hearing them is broken even if its connection looks open.
    async fn heartbeat(&self) -> Result<(), StoreError>;
}

/// What a subscription hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The session changed or ended.
    Session(SessionId),
    /// A [`ChangeFeed::heartbeat`] came through.
    Heartbeat,
}

/// One subscription to a [`ChangeFeed`].
#[async_trait]
pub trait Changes: Send {
    /// The next announcement; an error when the subscription broke (changes may have
    /// been missed since).
    async fn next_change(&mut self) -> Result<Change, StoreError>;
}

/// The payload of a heartbeat on the stores' change channels.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) const HEARTBEAT: &str = "heartbeat";

/// How often the cache sends a heartbeat through its feed; one not heard back by the
/// next one means the subscription is broken.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A cached entry: the record, or the knowledge that there is none.
type Entry = Option<Arc<SessionRecord>>;

/// [`SessionStore`] wrapper that caches loads in this process.
#[derive(Clone)]
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    cache: Cache<SessionId, Entry>,
    /// Set when other processes' changes arrive through a [`ChangeFeed`].
    feed: Option<Arc<FeedState>>,
    /// Dropped with the last clone of the store, which ends the feed's listening task.
    _stop: Option<Arc<tokio::sync::oneshot::Sender<()>>>,
}

/// What the feed's listening task tells the cache.
#[derive(Default)]
struct FeedState {
    /// Subscribed: cached entries can be trusted. Otherwise loads bypass the cache.
    live: AtomicBool,
    /// Bumped by every change heard and every break: a load that overlapped one is not
    /// kept, since it may have read the store just before the change.
    changes: AtomicU64,
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
            feed: None,
            _stop: None,
        }
    }

    /// Like [`CachedStore::new`], and drops each entry as soon as `feed` announces a
    /// change to it from any process; `ttl` then only bounds memory. While the feed is
    /// not subscribed (at first, and after it breaks until it reconnects, every second)
    /// every load goes to the store. Must be called inside a Tokio runtime: the feed is
    /// followed by a task that ends with the last clone of the store.
    pub fn with_feed(
        inner: Arc<dyn SessionStore>,
        ttl: Duration,
        capacity: u64,
        feed: Arc<dyn ChangeFeed>,
    ) -> CachedStore {
        let mut store = CachedStore::new(inner, ttl, capacity);
        let state = Arc::new(FeedState::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(follow(feed, state.clone(), store.cache.clone(), stopped));
        store.feed = Some(state);
        store._stop = Some(Arc::new(stop));
        store
    }

    /// Whether the store was built [`CachedStore::with_feed`] and the feed is
    /// subscribed right now (so the cache is in use).
    pub fn feed_is_live(&self) -> bool {
        self.feed
            .as_ref()
            .is_some_and(|state| state.live.load(Ordering::SeqCst))
    }

    /// The feed's change count, if there is a feed: read before a store write, so the
    /// write is not cached over a change heard while it ran.
    fn change_count(&self) -> Option<u64> {
        self.feed
            .as_ref()
            .map(|state| state.changes.load(Ordering::SeqCst))
    }

    /// Whether entries may be cached now: always without a feed, only while it is live
    /// with one.
    fn trusted(&self) -> bool {
        self.feed
            .as_ref()
            .is_none_or(|state| state.live.load(Ordering::SeqCst))
    }
}

/// Follows `feed` until `stopped`: evicts every announced session, and clears and
/// distrusts the cache whenever the subscription is down.
async fn follow(
    feed: Arc<dyn ChangeFeed>,
    state: Arc<FeedState>,
    cache: Cache<SessionId, Entry>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let subscribed = tokio::select! {
            _ = &mut stopped => return,
            subscribed = feed.subscribe() => subscribed,
        };
        match subscribed {
            Ok(mut changes) => {
                cache.invalidate_all();
                state.changes.fetch_add(1, Ordering::SeqCst);
                state.live.store(true, Ordering::SeqCst);
                let mut heartbeats = tokio::time::interval(HEARTBEAT_EVERY);
                let mut unanswered = false;
                loop {
                    let change = tokio::select! {
                        _ = &mut stopped => return,
                        change = changes.next_change() => change,
                        _ = heartbeats.tick() => {
                            if unanswered {
                                tracing::warn!("session change feed went silent; bypassing the cache until it is back");
                                break;
                            }
                            let sent = tokio::time::timeout(HEARTBEAT_EVERY, feed.heartbeat()).await;
                            if let Err(error) = sent.unwrap_or_else(|_| Err(StoreError::Unavailable("heartbeat timed out".into()))) {
                                tracing::warn!(%error, "cannot send a heartbeat through the session change feed; bypassing the cache");
                                break;
                            }
                            unanswered = true;
                            continue;
                        }
                    };
                    match change {
                        Ok(Change::Heartbeat) => unanswered = false,
                        Ok(Change::Session(id)) => {
                            state.changes.fetch_add(1, Ordering::SeqCst);
                            cache.invalidate(&id).await
                        }
                        Err(error) => {
                            tracing::warn!(%error, "session change feed broke; bypassing the cache until it is back");
                            break;
                        }
                    }
                }
                state.live.store(false, Ordering::SeqCst);
                state.changes.fetch_add(1, Ordering::SeqCst);
                cache.invalidate_all();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to session changes; bypassing the cache");
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl CachedStore {
    /// Caches `record` unless the cache already holds that version or a later one:
    /// concurrent writers finish in any order, and the newest must stay. With a feed,
    /// `changes_before` is [`CachedStore::change_count`] from before the store write:
    /// if the feed heard a change since (another process may have deleted the session
    /// right after this write), the entry is dropped again.
    async fn remember(&self, id: &SessionId, record: &SessionRecord, changes_before: Option<u64>) {
        if !self.trusted() {
            return;
        }
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
        if self.change_count() != changes_before {
            self.cache.invalidate(id).await;
        }
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

#[async_trait]
impl SessionStore for CachedStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let Some(state) = &self.feed else {
            return self
                .cache
                .try_get_with(*id, self.inner.load(id))
                .await
                .map_err(unshare);
        };
        if !state.live.load(Ordering::SeqCst) {
            return self.inner.load(id).await;
        }
        let before = state.changes.load(Ordering::SeqCst);
        let loaded = self
            .cache
            .try_get_with(*id, self.inner.load(id))
            .await
            .map_err(unshare)?;
        if state.changes.load(Ordering::SeqCst) != before {
            self.cache.invalidate(id).await;
        }
        Ok(loaded)
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let changes_before = self.change_count();
        self.inner.create(id, record).await?;
        self.remember(id, record, changes_before).await;
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let changes_before = self.change_count();
        match self.inner.save(id, record, expected_version).await {
            Ok(()) => {
                self.remember(id, record, changes_before).await;
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
        let changes_before = self.change_count();
        let rotated = self
            .inner
            .rotate(old_id, new_id, record, expected_version)
            .await;
        self.cache.invalidate(old_id).await;
        rotated?;
        self.remember(new_id, record, changes_before).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::atomic::AtomicUsize;

    /// A feed whose subscriptions hear nothing, heartbeats included: a connection that
    /// looks open but is dead.
    struct SilentFeed {
        subscriptions: Arc<AtomicUsize>,
    }

    struct Silence;

    #[async_trait]
    impl Changes for Silence {
        async fn next_change(&mut self) -> Result<Change, StoreError> {
            std::future::pending().await
        }
    }

    #[async_trait]
    impl ChangeFeed for SilentFeed {
        async fn subscribe(&self) -> Result<Box<dyn Changes>, StoreError> {
            self.subscriptions.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Silence))
        }

        async fn heartbeat(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_goes_silent_is_distrusted_and_resubscribed() {
        let subscriptions = Arc::new(AtomicUsize::new(0));
        let feed = SilentFeed {
            subscriptions: subscriptions.clone(),
        };
        let store = CachedStore::with_feed(
            Arc::new(MemoryStore::new()),
            Duration::from_secs(600),
            100,
            Arc::new(feed),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(store.feed_is_live());
        // The first heartbeat goes out at once and is never heard; the next tick gives up.
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        assert!(!store.feed_is_live(), "a silent feed is still trusted");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(subscriptions.load(Ordering::SeqCst), 2, "not resubscribed");
        assert!(store.feed_is_live());
    }
}
