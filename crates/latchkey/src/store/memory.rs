//! In-process session store: sharded hash maps behind read-write locks, bounded in size,
//! with a per-user index. Idle sessions are kept in a compact encoding; sessions in use
//! are kept decoded. When full, it reclaims expired sessions, then evicts the least
//! recently written anonymous ones, in O(1) amortized work per write.

use super::compact;
use crate::session::{Loaded, SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

const SHARDS: usize = 16;
/// Each create removes up to this many expired sessions from the front of each queue.
const RECLAIM_PER_CREATE: usize = 2;
/// The queues are compacted once they hold more than twice as many ids as there are
/// sessions, plus this many.
const COMPACT_SLACK: usize = 1024;
/// Ids per block of a queue (32 KiB).
const BLOCK: usize = 1024;

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

/// One stored session's record.
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

/// Which eviction queue a session's last write went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Nobody logged in: evicted, least recently written first, when the store is full.
    Anonymous = 0,
    /// A user logged in: never evicted while it is live.
    LoggedIn = 1,
}

const KINDS: [Kind; 2] = [Kind::Anonymous, Kind::LoggedIn];

impl Kind {
    /// The queue a write of `record` goes to.
    fn of(record: &SessionRecord) -> Kind {
        if record.auth.is_some() {
            Kind::LoggedIn
        } else {
            Kind::Anonymous
        }
    }
}

/// Where the id of a session's last write sits: its queue (the low bit) and its position
/// in that queue (the other bits). A queued id whose place is not its session's place
/// was superseded by a later write (or its session is gone): it is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place(u64);

impl Place {
    fn new(kind: Kind, position: u64) -> Place {
        Place((position << 1) | kind as u64)
    }

    fn kind(self) -> Kind {
        if self.0 & 1 == 1 {
            Kind::LoggedIn
        } else {
            Kind::Anonymous
        }
    }
}

/// One stored session: its record and where its last write is queued.
struct Slot {
    entry: Entry,
    place: Place,
}

type Entries = HashMap<SessionId, Slot, BuildHasherDefault<IdHasher>>;
type Shard = RwLock<Entries>;

/// Session ids in the order they were written, oldest first, in blocks of [`BLOCK`], so
/// the queue holds at most one block of spare room and never moves its ids to grow.
/// Every block but the last is full. Each id has a position: the number of ids pushed
/// before it, less those dropped by [`Queue::retain`].
#[derive(Default)]
struct Queue {
    blocks: VecDeque<Vec<SessionId>>,
    /// Index of the front id in the first block.
    head: usize,
    /// Position of the front id.
    front_position: u64,
    len: usize,
}

impl Queue {
    /// Appends `id`; returns its position.
    fn push(&mut self, id: SessionId) -> u64 {
        match self.blocks.back_mut() {
            Some(block) if block.len() < BLOCK => block.push(id),
            _ => {
                let mut block = Vec::with_capacity(BLOCK);
                block.push(id);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
        self.front_position + (self.len - 1) as u64
    }

    /// The front id and its position.
    fn front(&self) -> Option<(SessionId, u64)> {
        let id = self.blocks.front()?.get(self.head)?;
        Some((*id, self.front_position))
    }

    /// Removes the front id.
    fn pop_front(&mut self) -> Option<(SessionId, u64)> {
        let front = self.front()?;
        self.head += 1;
        self.len -= 1;
        self.front_position += 1;
        if self.head == BLOCK {
            self.blocks.pop_front();
            self.head = 0;
        } else if self.len == 0 {
            // The only block, not full and now read to its end: reuse it.
            if let Some(block) = self.blocks.front_mut() {
                block.clear();
            }
            self.head = 0;
        }
        Some(front)
    }

    /// Keeps, in order, the ids `keep` says yes to, given each id, its position and the
    /// position it will have if kept. One pass; the old blocks are freed as it goes.
    fn retain(&mut self, mut keep: impl FnMut(SessionId, u64, u64) -> bool) {
        let Queue {
            blocks,
            head,
            front_position,
            ..
        } = std::mem::take(self);
        self.front_position = front_position;
        let mut position = front_position;
        for (number, block) in blocks.into_iter().enumerate() {
            let skip = if number == 0 { head } else { 0 };
            for id in block.into_iter().skip(skip) {
                let next = self.front_position + self.len as u64;
                if keep(id, position, next) {
                    self.push(id);
                }
                position += 1;
            }
        }
    }
}

/// The eviction queues (one per [`Kind`]), guarded by the store's write lock.
#[derive(Default)]
struct Queues([Queue; 2]);

impl Queues {
    fn get_mut(&mut self, kind: Kind) -> &mut Queue {
        &mut self.0[kind as usize]
    }

    /// Ids queued, stale or not.
    fn len(&self) -> usize {
        self.0.iter().map(|queue| queue.len).sum()
    }
}

/// Sessions in this process's memory: lost on restart, not shared between processes.
///
/// Reads take a shared lock on one of 16 shards and clone an `Arc` of the decoded
/// record; there is no hashing work, since ids are already SHA-256 digests. Writes store
/// the record in a compact encoding (about 250 bytes for a logged-in browser session);
/// the first read decodes it and keeps it decoded, and each sweep of a shard compacts
/// its decoded records again, so idle sessions stay small and sessions in use are
/// decoded about once per sweep.
///
/// Every write (create, save, touch, rotate) appends the session's id to one of two
/// queues, anonymous or logged-in, so each lists its sessions in the order of their last
/// write, oldest first; an id a later write superseded (or whose session is gone) is
/// dropped when it reaches the front, and the queues are compacted once they hold more
/// than about twice as many ids as there are sessions. This costs about 42 bytes per
/// idle session: its 32-byte id in a queue, and its place there (8 bytes) in the map.
/// Each create removes up to two expired sessions from the front of each queue, so
/// memory follows the live sessions without sweeping; [`SessionStore::delete_expired`]
/// (the background cleanup) sweeps the whole store for the rest (a session whose
/// absolute expiry comes before a later write's idle expiry, or one written with a
/// shorter lifetime).
///
/// When `max_sessions` sessions exist, a create makes room by removing the session at
/// the front of either queue if it has expired, else by evicting the least recently
/// written anonymous session; logged-in sessions are never evicted, so a store full of
/// live logged-in sessions refuses the new one with [`StoreError::Unavailable`] (a 503)
/// instead of logging anyone out (an expired session behind a live one at the front of
/// its queue waits for the cleanup). All of this is O(1) amortized work per write; reads
/// never touch the queues.
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
    /// The write lock, with the eviction queues it guards.
    queues: Mutex<Queues>,
    len: AtomicUsize,
    max_sessions: usize,
    /// Stored sessions looked at by eviction, compaction and sweeps (tests bound it).
    #[cfg(test)]
    examined: std::sync::atomic::AtomicU64,
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

/// `record` in the compact encoding, refused unless it decodes: JSON nested deeper than
/// serde_json reads back fails here, so every stored session can be listed and revoked.
fn encode(record: &SessionRecord) -> Result<Box<[u8]>, StoreError> {
    let bytes = compact::encode(record)?;
    compact::decode(&bytes)?;
    Ok(bytes)
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
                queues: Mutex::default(),
                len: AtomicUsize::new(0),
                max_sessions,
                #[cfg(test)]
                examined: Default::default(),
            }),
        }
    }

    /// Number of sessions held (live, or expired and not yet removed).
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

    /// Counts stored sessions looked at by eviction, compaction and sweeps.
    fn examined(&self, count: usize) {
        #[cfg(test)]
        self.inner
            .examined
            .fetch_add(count as u64, Ordering::Relaxed);
        #[cfg(not(test))]
        let _ = count;
    }

    /// The record under `id`, expired or not, decoded without changing how it is kept.
    fn peek(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Self::read(self.shard_of(id))
            .get(id)
            .map(|slot| slot.entry.record())
            .transpose()
    }

    /// The record under `id`, keeping it decoded from now on: a session being read is
    /// probably in use. Concurrent first reads decode it once.
    fn get_for_use(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let shard = self.shard_of(id);
        match Self::read(shard).get(id).map(|slot| &slot.entry) {
            None => return Ok(None),
            Some(Entry::Decoded(record)) => return Ok(Some(Arc::clone(record))),
            Some(Entry::Compact(_)) => {}
        }
        let mut shard = Self::write(shard);
        let Some(slot) = shard.get_mut(id) else {
            return Ok(None);
        };
        let record = slot.entry.record()?;
        slot.entry = Entry::Decoded(Arc::clone(&record));
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

    /// Stores `record`, already encoded as `bytes`, under `id`, queues the write and keeps
    /// the user index in step.
    fn put(
        &self,
        queues: &mut Queues,
        id: SessionId,
        bytes: Box<[u8]>,
        record: &SessionRecord,
        previous: Option<&SessionRecord>,
    ) {
        let mut index = lock(&self.inner.by_user);
        if let Some(user_id) = previous.and_then(SessionRecord::user_id) {
            index.remove(&(self.user_key(user_id), id));
        }
        if let Some(user_id) = record.user_id() {
            index.insert((self.user_key(user_id), id));
        }
        drop(index);
        let kind = Kind::of(record);
        let slot = Slot {
            entry: Entry::Compact(bytes),
            place: Place::new(kind, queues.get_mut(kind).push(id)),
        };
        if Self::write(self.shard_of(&id)).insert(id, slot).is_none() {
            self.inner.len.fetch_add(1, Ordering::Relaxed);
        }
        self.compact_queues_if_stale(queues);
    }

    /// Removes the session under `id`; whether there was one. Its queued ids go stale.
    fn take(&self, id: &SessionId) -> bool {
        let Some(removed) = Self::write(self.shard_of(id)).remove(id) else {
            return false;
        };
        self.inner.len.fetch_sub(1, Ordering::Relaxed);
        if removed.place.kind() == Kind::Anonymous {
            return true;
        }
        // A record that does not decode leaves an index entry naming no session, which
        // listings skip.
        if let Some(user_id) = removed
            .entry
            .record()
            .ok()
            .as_deref()
            .and_then(SessionRecord::user_id)
        {
            lock(&self.inner.by_user).remove(&(self.user_key(user_id), *id));
        }
        true
    }

    /// The session at the front of `kind`'s queue (the least recently written of its
    /// kind), with whether it has expired at `now`. Stale ids met on the way are dropped.
    fn oldest(&self, queues: &mut Queues, kind: Kind, now: Timestamp) -> Option<(SessionId, bool)> {
        let queue = queues.get_mut(kind);
        while let Some((id, position)) = queue.front() {
            self.examined(1);
            let expired = Self::read(self.shard_of(&id))
                .get(&id)
                .filter(|slot| slot.place == Place::new(kind, position))
                .map(|slot| slot.entry.is_expired(now));
            if let Some(expired) = expired {
                return Some((id, expired));
            }
            queue.pop_front();
        }
        None
    }

    /// Removes the session at the front of `kind`'s queue (as [`Self::oldest`] left it).
    fn remove_oldest(&self, queues: &mut Queues, kind: Kind) {
        if let Some((id, _)) = queues.get_mut(kind).pop_front() {
            self.take(&id);
        }
    }

    /// Removes up to [`RECLAIM_PER_CREATE`] expired sessions from the front of each queue.
    fn reclaim_expired(&self, queues: &mut Queues, now: Timestamp) {
        for kind in KINDS {
            for _ in 0..RECLAIM_PER_CREATE {
                if !matches!(self.oldest(queues, kind, now), Some((_, true))) {
                    break;
                }
                self.remove_oldest(queues, kind);
            }
        }
    }

    /// Removes one session to make room for a new one: an expired one at the front of
    /// either queue, else the least recently written anonymous one. `false` (nothing
    /// removed) if the front of each queue is a live logged-in session or nothing.
    fn make_room(&self, queues: &mut Queues, now: Timestamp) -> bool {
        let anonymous = self.oldest(queues, Kind::Anonymous, now);
        let logged_in = self.oldest(queues, Kind::LoggedIn, now);
        let kind = if anonymous.is_some_and(|(_, expired)| expired) {
            Kind::Anonymous
        } else if logged_in.is_some_and(|(_, expired)| expired) {
            Kind::LoggedIn
        } else if anonymous.is_some() {
            Kind::Anonymous
        } else {
            return false;
        };
        self.remove_oldest(queues, kind);
        true
    }

    /// Drops the stale ids from both queues once they hold more than twice as many ids as
    /// there are sessions (plus [`COMPACT_SLACK`]): each id a compaction keeps is a
    /// session's last write, so at least half of what it looks at is dropped, and the work
    /// is O(1) amortized per write. Kept ids move forward, so their sessions' places
    /// are renumbered.
    fn compact_queues_if_stale(&self, queues: &mut Queues) {
        if queues.len() <= 2 * self.len() + COMPACT_SLACK {
            return;
        }
        for kind in KINDS {
            queues.get_mut(kind).retain(|id, position, next| {
                self.examined(1);
                let mut entries = Self::write(self.shard_of(&id));
                match entries.get_mut(&id) {
                    Some(slot) if slot.place == Place::new(kind, position) => {
                        slot.place = Place::new(kind, next);
                        true
                    }
                    _ => false,
                }
            });
        }
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
            self.examined(entries.len());
            let expired = entries
                .iter()
                .filter(|(_, slot)| slot.entry.is_expired(now))
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            let decoded = entries
                .iter()
                .filter_map(|(id, slot)| match &slot.entry {
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
    if let Some(slot) = entries.get_mut(id) {
        if matches!(&slot.entry, Entry::Decoded(current) if Arc::ptr_eq(current, record)) {
            slot.entry = Entry::Compact(bytes);
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.live_at(id, Timestamp::now())
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        // Encoded before anything is removed: a record refused here evicts nothing.
        let bytes = encode(record)?;
        let mut queues = lock(&self.inner.queues);
        let now = Timestamp::now();
        let existing = Self::read(self.shard_of(id))
            .get(id)
            .map(|slot| slot.entry.is_expired(now));
        match existing {
            Some(false) => return Err(StoreError::AlreadyExists),
            Some(true) => {
                self.take(id);
            }
            None => {}
        }
        self.reclaim_expired(&mut queues, now);
        while self.len() >= self.inner.max_sessions {
            if !self.make_room(&mut queues, now) {
                return Err(StoreError::Unavailable(Box::new(StoreFull(
                    self.inner.max_sessions,
                ))));
            }
        }
        self.put(&mut queues, *id, bytes, record, None);
        Ok(())
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let mut queues = lock(&self.inner.queues);
        let current = self.check_version(id, expected_version)?;
        self.put(&mut queues, *id, bytes, record, Some(&current));
        Ok(())
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let mut queues = lock(&self.inner.queues);
        self.check_version(old_id, expected_version)?;
        if Self::read(self.shard_of(new_id)).contains_key(new_id) {
            return Err(StoreError::AlreadyExists);
        }
        self.put(&mut queues, *new_id, bytes, record, None);
        self.take(old_id);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let _queues = lock(&self.inner.queues);
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
        let _queues = lock(&self.inner.queues);
        Ok(self
            .sessions_of(user_id)?
            .iter()
            .filter(|(id, _)| Some(id) != keep)
            .filter(|(id, _)| self.take(id))
            .count() as u64)
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut queues = lock(&self.inner.queues);
        let mut deleted = 0;
        for shard in 0..SHARDS {
            let left = (u64::from(limit) - deleted) as usize;
            if left == 0 {
                break;
            }
            deleted += self.sweep_shard(shard, now, left);
        }
        // The removed sessions' ids are stale now: if they are many, they are dropped
        // here, in the background, rather than by the next write.
        self.compact_queues_if_stale(&mut queues);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::AuthInfo;

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

    fn logged_in(user_id: &str, expires_in_ms: i64) -> SessionRecord {
        SessionRecord {
            auth: Some(AuthInfo::new(
                user_id,
                Timestamp::now(),
                1,
                crate::session::Authentication {
                    methods: vec!["password".into()],
                    fresh: true,
                    multi_factor: false,
                },
            )),
            ..record(expires_in_ms)
        }
    }

    fn id() -> SessionId {
        crate::session::SessionToken::generate().id()
    }

    /// Whether the store still holds `id`, expired or not.
    fn holds(store: &MemoryStore, id: &SessionId) -> bool {
        MemoryStore::read(store.shard_of(id)).contains_key(id)
    }

    async fn create(store: &MemoryStore, record: SessionRecord) -> SessionId {
        let id = id();
        store.create(&id, &record).await.expect("create");
        id
    }

    /// Writes the session under `id` again, unchanged but for its version.
    async fn rewrite(store: &MemoryStore, id: &SessionId) {
        let current = store.load(id).await.expect("load").expect("session");
        let next = SessionRecord {
            version: current.version + 1,
            ..(*current).clone()
        };
        store.save(id, &next, current.version).await.expect("save");
    }

    fn is_store_full(result: Result<(), StoreError>) -> bool {
        matches!(result, Err(StoreError::Unavailable(error)) if error.is::<StoreFull>())
    }

    fn examined(store: &MemoryStore) -> u64 {
        store.inner.examined.load(Ordering::Relaxed)
    }

    fn queued(store: &MemoryStore) -> usize {
        lock(&store.inner.queues).len()
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_sessions_but_reclaims_expired_ones() {
        let store = MemoryStore::with_capacity(2);
        create(&store, logged_in("ann", 60_000)).await;
        let expired = create(&store, record(-1)).await;
        // The expired one is removed to make room.
        create(&store, logged_in("bob", 60_000)).await;
        assert!(!holds(&store, &expired));
        // Full of live logged-in sessions: refused.
        assert!(is_store_full(
            store.create(&id(), &logged_in("cid", 60_000)).await
        ));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn at_capacity_an_expired_session_is_reclaimed_before_a_live_one_is_evicted() {
        let store = MemoryStore::with_capacity(3);
        // The least recently written session is anonymous and live; an expired
        // logged-in session was written after it.
        let live = create(&store, record(60_000)).await;
        let newer_live = create(&store, record(60_000)).await;
        let expired_user = create(&store, logged_in("ann", -1)).await;
        assert_eq!(store.len(), 3);
        let new = create(&store, record(60_000)).await;
        assert!(!holds(&store, &expired_user), "the expired session is gone");
        for id in [&live, &newer_live, &new] {
            assert!(store.load(id).await.expect("load").is_some());
        }
        assert_eq!(store.len(), 3);

        // An anonymous session that expires while the store is full.
        let store = MemoryStore::with_capacity(3);
        let expiring = create(&store, record(100)).await;
        let user = create(&store, logged_in("ann", 60_000)).await;
        let live = create(&store, record(60_000)).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let new = create(&store, record(60_000)).await;
        assert!(!holds(&store, &expiring));
        for id in [&user, &live, &new] {
            assert!(store.load(id).await.expect("load").is_some());
        }
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn at_capacity_the_least_recently_written_anonymous_session_is_evicted() {
        let store = MemoryStore::with_capacity(4);
        // The logged-in session is the least recently written of all.
        let user = create(&store, logged_in("ann", 60_000)).await;
        let deleted = create(&store, record(60_000)).await;
        let a = create(&store, record(60_000)).await;
        let b = create(&store, record(60_000)).await;
        assert!(store.delete(&deleted).await.expect("delete"));
        let c = create(&store, record(60_000)).await;
        assert_eq!(store.len(), 4);
        // Written again, `a` is now the most recently written: `b` goes first.
        rewrite(&store, &a).await;
        let d = create(&store, record(60_000)).await;
        assert!(!holds(&store, &b), "the least recently written goes");
        let mut evicted = Vec::new();
        let mut created = vec![d];
        for _ in 0..4 {
            let before: Vec<SessionId> = [a, c]
                .iter()
                .chain(&created)
                .copied()
                .filter(|id| holds(&store, id))
                .collect();
            created.push(create(&store, record(60_000)).await);
            evicted.extend(before.into_iter().filter(|id| !holds(&store, id)));
            assert!(
                store.load(&user).await.expect("load").is_some(),
                "a logged-in session is never evicted while an anonymous one is left"
            );
            assert_eq!(store.len(), 4);
        }
        assert_eq!(evicted, vec![c, a, d, created[1]]);
    }

    #[tokio::test]
    async fn a_session_changes_queue_when_its_user_logs_in_or_out() {
        let store = MemoryStore::with_capacity(3);
        let a = create(&store, record(60_000)).await;
        let b = create(&store, record(60_000)).await;
        let c = create(&store, record(60_000)).await;
        // `a`, the least recently written, logs in (a rotation, as the session layer does).
        let a_user = id();
        let login = SessionRecord {
            version: 2,
            ..logged_in("ann", 60_000)
        };
        store.rotate(&a, &a_user, &login, 1).await.expect("rotate");
        rewrite(&store, &b).await;
        let d = create(&store, record(60_000)).await;
        assert!(!holds(&store, &c));
        let e = create(&store, record(60_000)).await;
        assert!(!holds(&store, &b));
        let f = create(&store, record(60_000)).await;
        assert!(!holds(&store, &d));
        assert!(holds(&store, &a_user) && holds(&store, &e) && holds(&store, &f));

        // Logged out, it is the most recently written anonymous session.
        let logout = SessionRecord {
            version: 3,
            ..record(60_000)
        };
        store.save(&a_user, &logout, 2).await.expect("save");
        create(&store, record(60_000)).await;
        assert!(!holds(&store, &e));
        create(&store, record(60_000)).await;
        assert!(!holds(&store, &f));
        create(&store, record(60_000)).await;
        assert!(!holds(&store, &a_user));
        assert!(store.list_for_user("ann").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_store_full_of_live_logged_in_sessions_refuses_and_logs_nobody_out() {
        let store = MemoryStore::with_capacity(3);
        let mut users = Vec::new();
        for user in ["ann", "bob", "cid"] {
            users.push(create(&store, logged_in(user, 60_000)).await);
        }
        assert!(is_store_full(store.create(&id(), &record(60_000)).await));
        assert!(is_store_full(
            store.create(&id(), &logged_in("dan", 60_000)).await
        ));
        for id in &users {
            assert!(store.load(id).await.expect("load").is_some());
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.list_for_user("bob").await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn the_work_per_create_at_capacity_is_bounded() {
        const CAPACITY: usize = 20_000;
        let store = MemoryStore::with_capacity(CAPACITY);
        for _ in 0..CAPACITY {
            create(&store, record(60_000)).await;
        }
        // An anonymous flood: every create evicts one session.
        let before = examined(&store);
        for _ in 0..CAPACITY {
            create(&store, record(60_000)).await;
        }
        let work = examined(&store) - before;
        assert!(
            work <= 3 * CAPACITY as u64,
            "{work} sessions looked at for {CAPACITY} creates"
        );
        assert_eq!(store.len(), CAPACITY);

        // Sessions written again and again leave stale ids to skip and compact away.
        let before = examined(&store);
        for _ in 0..CAPACITY {
            let id = create(&store, record(60_000)).await;
            rewrite(&store, &id).await;
            rewrite(&store, &id).await;
        }
        let work = examined(&store) - before;
        let writes = 3 * CAPACITY as u64;
        assert!(
            work <= 3 * writes,
            "{work} sessions looked at for {writes} writes"
        );
        assert!(queued(&store) <= 2 * CAPACITY + COMPACT_SLACK + 1);
        assert_eq!(store.len(), CAPACITY);
    }

    #[tokio::test]
    async fn compacted_queues_keep_the_order_of_writes() {
        let store = MemoryStore::with_capacity(5);
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(create(&store, record(60_000)).await);
        }
        let [first, second, hot, third, fourth] = ids[..] else {
            unreachable!()
        };
        // Enough writes of one session to compact the queues twice: the sessions never
        // written again keep their order through it.
        for _ in 0..2 * (COMPACT_SLACK + 10) {
            rewrite(&store, &hot).await;
        }
        rewrite(&store, &second).await;
        rewrite(&store, &first).await;
        assert!(queued(&store) <= 2 * 5 + COMPACT_SLACK + 1, "compacted");
        for (name, id) in [
            ("third", third),
            ("fourth", fourth),
            ("hot", hot),
            ("second", second),
            ("first", first),
        ] {
            assert!(holds(&store, &id));
            create(&store, record(60_000)).await;
            assert!(!holds(&store, &id), "{name} evicted next");
        }
    }

    #[tokio::test]
    async fn the_cleanup_sweep_drops_the_queued_ids_of_the_sessions_it_removes() {
        let store = MemoryStore::new();
        for _ in 0..2 * COMPACT_SLACK {
            create(&store, record(60_000)).await;
        }
        let later = Timestamp(Timestamp::now().as_millis() + 2 * 3_600_000);
        let removed = store.delete_expired(later, u32::MAX).await.expect("sweep");
        assert_eq!(removed, 2 * COMPACT_SLACK as u64);
        assert!(store.is_empty());
        assert_eq!(queued(&store), 0, "no write left to pay for the stale ids");
    }

    #[tokio::test]
    async fn creating_sessions_reclaims_expired_ones() {
        let store = MemoryStore::new();
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids.push(create(&store, record(60_000)).await);
        }
        for user in 0..50 {
            ids.push(create(&store, logged_in(&user.to_string(), 60_000)).await);
        }
        // Saved as expired (a create would reclaim the ones before it right away).
        for id in &ids {
            let current = store.load(id).await.expect("load").expect("session");
            let expired = SessionRecord {
                version: current.version + 1,
                idle_expires_at: Timestamp(0),
                ..(*current).clone()
            };
            store
                .save(id, &expired, current.version)
                .await
                .expect("save");
        }
        // Each create removes up to two expired sessions from the front of each queue.
        for _ in 0..100 {
            create(&store, record(60_000)).await;
        }
        assert_eq!(store.len(), 100, "every expired session was reclaimed");
        assert!(store.list_for_user("7").await.expect("list").is_empty());
    }

    fn is_decoded(store: &MemoryStore, id: &SessionId) -> bool {
        matches!(
            MemoryStore::read(store.shard_of(id))
                .get(id)
                .map(|slot| &slot.entry),
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
        // A full store: a refused record must not evict anything either.
        let store = MemoryStore::with_capacity(1);
        let other = create(&store, record(60_000)).await;
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
        assert_eq!(store.len(), 1);
        assert!(store.load(&other).await.expect("load").is_some());
        assert!(store.load(&id).await.expect("load").is_none());
    }
}
