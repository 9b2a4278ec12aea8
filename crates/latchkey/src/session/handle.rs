//! `Session`: one request's view of its session, loaded lazily and saved with
//! compare-and-swap.

use super::config::SessionConfig;
use super::record::{AuthInfo, Authentication, SessionRecord};
use super::storage::{CookieSession, ServerSide, SessionStorage};
use super::store::{Loaded as StoreAnswer, NewSessionPolicy, SessionStore, StoreError};
use super::token::{SessionId, SessionToken};
use crate::bytes::random_bytes;
use crate::log_budget::LogBudget;
use crate::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Longest user agent kept in a session record.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed (see [`StoreError`]); `Unavailable` means "answer 503".
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be turned into or out of JSON.
    #[error("session value is not valid for this type: {0}")]
    Value(#[from] serde_json::Error),
    /// Too many concurrent writers kept winning the compare-and-swap race.
    #[error("session is too busy: gave up after {0} write attempts")]
    Contended(u32),
    /// The layer's [`NewSessionPolicy`] refused a new session for this client; it may
    /// try again after this long (answered 429).
    #[error("too many new sessions from this client: retry after {0:?}")]
    Refused(Duration),
    /// The write would make the session's data bigger than [`SessionConfig`] allows
    /// (its encoded bytes or its number of keys); nothing was changed (answered 413).
    #[error("session data too large: {size} {unit}, limit {limit}")]
    TooLarge {
        /// What the session would hold.
        size: usize,
        /// What it may hold.
        limit: usize,
        /// `bytes` or `keys`.
        unit: &'static str,
    },
}

impl SessionError {
    /// Whether the failure is the store being down (or overloaded): worth a 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SessionError::Store(StoreError::Unavailable(_)) | SessionError::Contended(_)
        )
    }

    /// Whether the failure is a session too large to keep (over [`SessionConfig`]'s
    /// limits or its store's): the client's doing, worth a 413.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            SessionError::TooLarge { .. } | SessionError::Store(StoreError::TooLarge { .. })
        )
    }
}

/// Counts the bytes written to it (a record's encoded size, without keeping the text).
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`SessionError::TooLarge`] unless `record` is within `config`'s limits on keys and
/// encoded bytes (its JSON, as the stores write it).
fn check_limits(config: &SessionConfig, record: &SessionRecord) -> Result<(), SessionError> {
    let keys = record.data.len();
    if keys > config.max_keys() {
        return Err(SessionError::TooLarge {
            size: keys,
            limit: config.max_keys(),
            unit: "keys",
        });
    }
    let mut bytes = ByteCount(0);
    serde_json::to_writer(&mut bytes, record)?;
    if bytes.0 > config.max_record_bytes() {
        return Err(SessionError::TooLarge {
            size: bytes.0,
            limit: config.max_record_bytes(),
            unit: "bytes",
        });
    }
    Ok(())
}

/// What the response must do with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    /// Leave the browser's cookie as it is.
    Keep,
    /// Send this token.
    Set(String),
    /// Expire the cookie.
    Remove,
}

/// Where the request came from, recorded when a session is created.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Peer address.
    pub ip: Option<std::net::IpAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// One pending change to a key, kept so it can be re-applied onto a fresher copy when
/// another request saved first.
#[derive(Clone)]
enum Change {
    Set(Value),
    Remove,
}

/// The loaded session: its token and id, and the record as last read from or written to
/// the store.
struct Live {
    token: SessionToken,
    id: SessionId,
    record: Arc<SessionRecord>,
}

/// This request's unsaved changes, each numbered so that a save only forgets the changes
/// it actually wrote (another clone of the session may add some while it runs).
#[derive(Clone, Default)]
struct Pending {
    clear_all: Option<u64>,
    changes: BTreeMap<String, (u64, Change)>,
    last: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.clear_all.is_none() && self.changes.is_empty()
    }

    fn push(&mut self, key: &str, change: Change) {
        self.last += 1;
        self.changes.insert(key.to_string(), (self.last, change));
    }

    fn value(&self, key: &str, stored: Option<&SessionRecord>) -> Option<Value> {
        match self.changes.get(key) {
            Some((_, Change::Set(value))) => Some(value.clone()),
            Some((_, Change::Remove)) => None,
            None if self.clear_all.is_some() => None,
            None => stored?.data.get(key).cloned(),
        }
    }

    /// Applies the changes onto `data`.
    fn apply(&self, data: &mut Map<String, Value>) {
        if self.clear_all.is_some() {
            data.clear();
        }
        for (key, (_, change)) in &self.changes {
            match change {
                Change::Set(value) => {
                    data.insert(key.clone(), value.clone());
                }
                Change::Remove => {
                    data.remove(key);
                }
            }
        }
    }

    /// Forgets the changes numbered up to `written` (they are in the store now).
    fn forget_up_to(&mut self, written: u64) {
        self.changes.retain(|_, (number, _)| *number > written);
        self.clear_all = self.clear_all.filter(|number| *number > written);
    }
}

struct State {
    /// When the record was read: this request's clock for the expiry, touch and
    /// user-cache checks, so a request reads the clock once.
    loaded_at: Timestamp,
    live: Option<Live>,
    pending: Pending,
    cookie: CookieChange,
}

impl State {
    fn record(&self) -> Option<&SessionRecord> {
        self.live.as_ref().map(|live| &*live.record)
    }

    /// A new token now holds `record` in the store, with the changes up to `written`:
    /// it is the live session, and the browser must get `cookie`.
    fn adopt(&mut self, token: SessionToken, cookie: String, record: SessionRecord, written: u64) {
        self.cookie = CookieChange::Set(cookie);
        self.live = Some(Live {
            id: token.id(),
            token,
            record: Arc::new(record),
        });
        self.pending.forget_up_to(written);
    }

    /// The session vanished from the store (logout elsewhere, expiry): pending writes are
    /// dropped rather than re-creating it.
    fn mark_gone(&mut self, incoming_cookie_present: bool) {
        if self.live.take().is_some() || incoming_cookie_present {
            self.cookie = CookieChange::Remove;
        }
        self.pending = Pending::default();
    }
}

/// The outcome of reading the incoming token's record.
enum Loaded {
    Live(Live),
    Dead,
}

/// What every session of one layer shares, behind one pointer: a request's session costs
/// one reference-count increment for all of it.
pub(crate) struct SessionContext {
    pub(crate) storage: Arc<dyn SessionStorage>,
    pub(crate) config: Arc<SessionConfig>,
    /// Asked before a new session is stored.
    pub(crate) admission: Option<Arc<dyn NewSessionPolicy>>,
    /// The session cookie's name.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) cookie_name: Arc<str>,
}

impl SessionContext {
    pub(crate) fn new(storage: Arc<dyn SessionStorage>, config: Arc<SessionConfig>) -> Self {
        SessionContext {
            cookie_name: config.cookie_name().into(),
            storage,
            config,
            admission: None,
        }
    }
}

struct Inner {
    context: Arc<SessionContext>,
    client: ClientInfo,
    /// The session the request's token names (the cookie's, or the bearer token's), if
    /// the storage could read it.
    incoming: Option<CookieSession>,
    /// Whether the request sent a session token at all (a cookie, or a bearer token).
    incoming_cookie_present: bool,
    /// Whether the token travels as `Authorization: Bearer` rather than in a cookie.
    bearer: AtomicBool,
    /// Whether [`Session::use_bearer_token`] asked for the token in the answer.
    token_asked: AtomicBool,
    /// A bearer request whose token is no session token (a personal access token): it
    /// never creates a session, whose token nobody would get, unless a login asks for
    /// one ([`Session::use_bearer_token`]).
    detached: AtomicBool,
    /// Set (under the state lock) once the record has been read; read without the lock.
    loaded: AtomicBool,
    /// Held only for short synchronous sections, never across an await.
    state: Mutex<State>,
    /// Serializes this request's writes to the store (saves, rotations, deletes).
    writer: tokio::sync::Mutex<()>,
}

/// One request's session. Cheap to clone; all clones share state.
///
/// Nothing is read from the store until a method needs the record, and nothing is written
/// unless data changed or the idle expiry is due for a refresh. Key-level changes are saved
/// with compare-and-swap at the end of the request by the layer ([`Session::commit`]); when
/// another request saved first, the changes are re-applied onto the fresh copy, so writers
/// of different keys never lose each other's updates.
///
/// ```no_run
/// # async fn handler(session: latchkey::Session) -> Result<(), latchkey::SessionError> {
/// session.insert("theme", "dark").await?;
/// let visits = session
///     .update("visits", |old| serde_json::json!(old.and_then(|v| v.as_i64()).unwrap_or(0) + 1))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl Session {
    /// A session for one request; `cookie_value` is the session cookie if the browser sent one.
    pub fn new(
        store: Arc<dyn SessionStore>,
        config: Arc<SessionConfig>,
        cookie_value: Option<&str>,
        client: ClientInfo,
    ) -> Self {
        Self::with_storage(Arc::new(ServerSide(store)), config, cookie_value, client)
    }

    /// A session for one request over any [`SessionStorage`] (the encrypted cookie store,
    /// say).
    pub fn with_storage(
        storage: Arc<dyn SessionStorage>,
        config: Arc<SessionConfig>,
        cookie_value: Option<&str>,
        client: ClientInfo,
    ) -> Self {
        let context = Arc::new(SessionContext::new(storage, config));
        Self::with_context(context, cookie_value.map(str::as_bytes), client, false)
    }

    /// A session for one request of a layer whose sessions share `context`; `token` is
    /// the session cookie's value, or with `bearer` the `Authorization: Bearer` token.
    pub(crate) fn with_context(
        context: Arc<SessionContext>,
        token: Option<&[u8]>,
        client: ClientInfo,
        bearer: bool,
    ) -> Self {
        let detached =
            bearer && token.is_some_and(|token| SessionToken::parse_bytes(token).is_none());
        let state = State {
            loaded_at: Timestamp(0),
            live: None,
            pending: Pending::default(),
            cookie: CookieChange::Keep,
        };
        let incoming = token.and_then(|value| context.storage.open_cookie(value));
        Session {
            inner: Arc::new(Inner {
                context,
                client,
                incoming,
                incoming_cookie_present: token.is_some(),
                bearer: AtomicBool::new(bearer),
                token_asked: AtomicBool::new(false),
                detached: AtomicBool::new(detached),
                loaded: AtomicBool::new(false),
                state: Mutex::new(state),
                writer: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The session settings in force.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.context.config
    }

    /// Where the request came from (peer address, user agent).
    pub fn client(&self) -> &ClientInfo {
        &self.inner.client
    }

    /// Where this session is stored.
    pub fn storage(&self) -> &Arc<dyn SessionStorage> {
        &self.inner.context.storage
    }

    /// Whether this session's token travels as `Authorization: Bearer` (it came so, or
    /// [`Session::use_bearer_token`] asked): no cookie is ever sent for it.
    pub fn is_bearer(&self) -> bool {
        self.inner.bearer.load(Ordering::Relaxed)
    }

    /// Hands this session's token to the client in the answer rather than in a cookie
    /// (a login asked for a bearer session): after this, the response sets no session
    /// cookie, and [`Session::bearer_token`] gives the token once a login wrote it.
    pub fn use_bearer_token(&self) {
        self.inner.bearer.store(true, Ordering::Relaxed);
        self.inner.token_asked.store(true, Ordering::Relaxed);
        self.inner.detached.store(false, Ordering::Relaxed);
    }

    /// The token a bearer session's client must send from now on: the new one when this
    /// request gave the session one (a login, a token rotation), or the session's own
    /// when [`Session::use_bearer_token`] asked for it; `None` otherwise, and for cookie
    /// sessions.
    pub fn bearer_token(&self) -> Option<String> {
        if !self.is_bearer() {
            return None;
        }
        let state = self.state();
        match (&state.cookie, &state.live) {
            (CookieChange::Set(token), _) => Some(token.clone()),
            (_, Some(live)) if self.inner.token_asked.load(Ordering::Relaxed) => {
                Some(live.token.encode())
            }
            _ => None,
        }
    }

    /// Whether this request may store a new session: not a bearer request whose token is
    /// no session token, unless a login asked for a session token.
    fn may_create(&self) -> bool {
        !self.inner.detached.load(Ordering::Relaxed)
    }

    /// What this session shares with the other sessions of its layer.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn context(&self) -> &SessionContext {
        &self.inner.context
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state, once the incoming token's record has been read (the store is read
    /// once, outside the state lock; the lock is held only by the returned guard).
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        if self.inner.loaded.load(Ordering::Acquire) {
            return Ok(self.state());
        }
        let now = Timestamp::now();
        let Some(cookie) = &self.inner.incoming else {
            if self.inner.incoming_cookie_present {
                tracing::debug!("malformed session cookie ignored");
            }
            return Ok(self.install(Loaded::Dead, now));
        };
        let answer = self.inner.context.storage.load(cookie).await;
        let outcome = Self::outcome(cookie.token.clone(), cookie.id, answer, now)?;
        Ok(self.install(outcome, now))
    }

    /// Reads the incoming token's record once.
    async fn ensure_loaded(&self) -> Result<(), SessionError> {
        self.loaded().await.map(drop)
    }

    /// What the store's answer for `id` means at `now`. A corrupt record counts as no
    /// session (logged); other store errors fail the request.
    fn outcome(
        token: SessionToken,
        id: SessionId,
        answer: StoreAnswer,
        now: Timestamp,
    ) -> Result<Loaded, SessionError> {
        let record = match answer {
            Ok(record) => record,
            Err(StoreError::Corrupt(error)) => {
                tracing::warn!(session = ?id, %error, "corrupt session record treated as no session");
                None
            }
            Err(error) => return Err(error.into()),
        };
        Ok(match record {
            Some(record) if !record.is_expired(now) => Loaded::Live(Live { token, id, record }),
            Some(_) => Loaded::Dead,
            None => {
                tracing::debug!(session = ?id, "unknown session token");
                Loaded::Dead
            }
        })
    }

    /// Keeps what was read at `now` and returns the locked state. Another clone of the
    /// session may have read it meanwhile: the first one counts.
    fn install(&self, loaded: Loaded, now: Timestamp) -> MutexGuard<'_, State> {
        let mut state = self.state();
        if !self.inner.loaded.load(Ordering::Acquire) {
            self.inner.loaded.store(true, Ordering::Release);
            state.loaded_at = now;
            match loaded {
                Loaded::Live(live) => state.live = Some(live),
                Loaded::Dead if self.inner.incoming_cookie_present => {
                    state.cookie = CookieChange::Remove
                }
                Loaded::Dead => {}
            }
        }
        state
    }

    /// Loads if needed, then reads the state.
    async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, SessionError> {
        Ok(f(&*self.loaded().await?))
    }

    /// The stored record and the time it was read (this request's clock).
    pub(crate) async fn record_read_at(
        &self,
    ) -> Result<(Option<Arc<SessionRecord>>, Timestamp), SessionError> {
        self.read(|state| {
            let record = state.live.as_ref().map(|live| live.record.clone());
            (record, state.loaded_at)
        })
        .await
    }

    /// Whether a live session exists (loads it if needed).
    pub async fn exists(&self) -> Result<bool, SessionError> {
        self.read(|state| state.live.is_some()).await
    }

    /// The session's id, if it exists.
    pub async fn id(&self) -> Result<Option<SessionId>, SessionError> {
        self.read(|state| state.live.as_ref().map(|live| live.id))
            .await
    }

    /// The stored record (without this request's unsaved changes).
    pub async fn record(&self) -> Result<Option<Arc<SessionRecord>>, SessionError> {
        self.read(|state| state.live.as_ref().map(|live| live.record.clone()))
            .await
    }

    /// Who is logged in, and how.
    pub async fn auth(&self) -> Result<Option<AuthInfo>, SessionError> {
        self.read(|state| state.record().and_then(|record| record.auth.clone()))
            .await
    }

    /// The raw JSON value under `key`, including this request's unsaved changes.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.read(|state| state.pending.value(key, state.record()))
            .await
    }

    /// The value under `key`, deserialized.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        match self.get_value(key).await? {
            Some(value) => Ok(Some(serde_json::from_value(value)?)),
            None => Ok(None),
        }
    }

    /// Sets `key`; saved at the end of the request (a new session is created if needed).
    /// [`SessionError::TooLarge`], and nothing changes, if the session would then be over
    /// [`SessionConfig`]'s limits.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value)?;
        let mut state = self.loaded().await?;
        let mut next = match state.record() {
            Some(record) => record.clone(),
            None => self.new_record(state.loaded_at, Map::new()),
        };
        state.pending.apply(&mut next.data);
        next.data.insert(key.to_string(), value);
        check_limits(&self.inner.context.config, &next)?;
        if let Some(value) = next.data.remove(key) {
            state.pending.push(key, Change::Set(value));
        }
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.ensure_loaded().await?;
        let mut state = self.state();
        let old = state.pending.value(key, state.record());
        if state.live.is_some() {
            state.pending.push(key, Change::Remove);
        } else {
            // Nothing stored to remove: forget the key without creating a session.
            state.pending.changes.remove(key);
        }
        Ok(old)
    }

    /// Removes every key (the login state is kept; use logout to end the session).
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.ensure_loaded().await?;
        let mut state = self.state();
        state.pending.changes.clear();
        if state.live.is_some() {
            state.pending.last += 1;
            state.pending.clear_all = Some(state.pending.last);
        }
        Ok(())
    }

    /// Atomically replaces `key` with `f(current value)` and saves at once, together with
    /// any other pending changes. Under concurrency `f` runs again on the fresh value until
    /// the compare-and-swap succeeds, so 100 concurrent increments give exactly 100.
    /// Returns the value that was stored.
    pub async fn update<F>(&self, key: &str, f: F) -> Result<Value, SessionError>
    where
        F: Fn(Option<&Value>) -> Value + Send + Sync,
    {
        self.ensure_loaded().await?;
        let _writer = self.inner.writer.lock().await;
        let mut stored = None;
        self.write_changes(|data| {
            let value = f(data.get(key));
            data.insert(key.to_string(), value.clone());
            stored = Some(value);
        })
        .await?;
        stored.ok_or(SessionError::Store(StoreError::NotFound))
    }

    /// Saves pending changes, or refreshes the idle expiry when it is due, and says what
    /// the response must do with the cookie. The session layer calls this once the handler
    /// has answered; handlers rarely need it.
    pub async fn commit(&self) -> Result<CookieChange, SessionError> {
        if let Some(cookie) = self.settled() {
            return Ok(cookie);
        }
        let _writer = self.inner.writer.lock().await;
        let has_changes = !self.state().pending.is_empty();
        if has_changes {
            self.write_changes(|_| {}).await?;
        } else {
            self.touch_if_due().await?;
        }
        Ok(self.state().cookie.clone())
    }

    /// The cookie change, if committing needs no store write: nothing loaded, or nothing
    /// changed and the idle expiry not yet due for a refresh (as of when the record was
    /// read).
    pub(crate) fn settled(&self) -> Option<CookieChange> {
        let state = self.state();
        let quiet = !self.inner.loaded.load(Ordering::Acquire)
            || (state.pending.is_empty()
                && state
                    .record()
                    .is_none_or(|record| !self.touch_due(record, state.loaded_at)));
        quiet.then(|| state.cookie.clone())
    }

    /// What the response must do with the cookie, as things stand.
    pub async fn cookie_change(&self) -> CookieChange {
        self.cookie_state()
    }

    pub(crate) fn cookie_state(&self) -> CookieChange {
        self.state().cookie.clone()
    }

    fn touch_due(&self, record: &SessionRecord, now: Timestamp) -> bool {
        now.since(record.last_active_at) >= self.inner.context.config.touch_interval()
    }

    /// Refreshes the idle expiry of an unchanged session once the touch interval has
    /// passed. Losing a race is fine: whoever won refreshed it.
    async fn touch_if_due(&self) -> Result<(), SessionError> {
        let now = Timestamp::now();
        let (token, current, mut next) = {
            let state = self.state();
            let Some(live) = state.live.as_ref() else {
                return Ok(());
            };
            if !self.touch_due(&live.record, now) {
                return Ok(());
            }
            (
                live.token.clone(),
                live.record.clone(),
                (*live.record).clone(),
            )
        };
        self.stamp_activity(&mut next, now);
        let storage = &self.inner.context.storage;
        match storage.save(&token, &next, current.version).await {
            Ok(cookie) => {
                let mut state = self.state();
                let id = token.id();
                if let Some(live) = state.live.as_mut().filter(|live| live.id == id) {
                    live.record = Arc::new(next);
                    if let Some(cookie) = cookie {
                        state.cookie = CookieChange::Set(cookie);
                    }
                }
            }
            Err(StoreError::VersionConflict | StoreError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    fn stamp_activity(&self, record: &mut SessionRecord, now: Timestamp) {
        record.version += 1;
        record.last_active_at = now;
        record.idle_expires_at = now.plus(self.inner.context.config.idle_timeout());
    }

    fn new_record(&self, now: Timestamp, data: Map<String, Value>) -> SessionRecord {
        let client = &self.inner.client;
        SessionRecord {
            version: 1,
            auth: None,
            data,
            created_at: now,
            last_active_at: now,
            idle_expires_at: now.plus(self.inner.context.config.idle_timeout()),
            absolute_expires_at: now.plus(self.inner.context.config.absolute_timeout()),
            client_ip: client.ip.map(|ip| ip.to_string()),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }

    /// A snapshot of what a write starts from: the live session (if any) and the pending
    /// changes.
    fn snapshot(&self) -> (Option<(SessionToken, Arc<SessionRecord>)>, Pending) {
        let state = self.state();
        let live = state
            .live
            .as_ref()
            .map(|live| (live.token.clone(), live.record.clone()));
        (live, state.pending.clone())
    }

    /// Writes the pending changes plus `extra` with compare-and-swap, re-reading and
    /// re-applying on every lost race. Creates the session if there is none. The caller
    /// holds the writer lock.
    async fn write_changes(
        &self,
        mut extra: impl FnMut(&mut Map<String, Value>),
    ) -> Result<(), SessionError> {
        let storage = &self.inner.context.storage;
        let max_attempts = self.inner.context.config.max_write_attempts();
        for attempt in 0..max_attempts {
            let now = Timestamp::now();
            let (live, pending) = self.snapshot();
            let Some((token, current)) = live else {
                if !self.may_create() {
                    tracing::debug!("a bearer request without a session wrote to one: not stored");
                    self.state().pending = Pending::default();
                    return Ok(());
                }
                self.admit_new_session().await?;
                let mut data = Map::new();
                pending.apply(&mut data);
                extra(&mut data);
                let record = self.new_record(now, data);
                check_limits(&self.inner.context.config, &record)?;
                let token = SessionToken::generate();
                match storage.create(&token, &record).await {
                    Ok(cookie) => {
                        self.state().adopt(token, cookie, record, pending.last);
                        return Ok(());
                    }
                    Err(StoreError::AlreadyExists) => continue,
                    Err(error) => return Err(error.into()),
                }
            };
            let mut next = (*current).clone();
            pending.apply(&mut next.data);
            extra(&mut next.data);
            self.stamp_activity(&mut next, now);
            check_limits(&self.inner.context.config, &next)?;
            match storage.save(&token, &next, current.version).await {
                Ok(cookie) => {
                    let mut state = self.state();
                    if let Some(live) = state.live.as_mut() {
                        live.record = Arc::new(next);
                    }
                    if let Some(cookie) = cookie {
                        state.cookie = CookieChange::Set(cookie);
                    }
                    state.pending.forget_up_to(pending.last);
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => {
                    if !self.reload_after_conflict(&token).await? {
                        return Ok(());
                    }
                    backoff(attempt).await;
                }
                Err(StoreError::NotFound) => {
                    tracing::debug!(session = ?token.id(), "session ended while a request was writing to it; changes dropped");
                    self.state().mark_gone(self.inner.incoming_cookie_present);
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(SessionError::Contended(max_attempts))
    }

    /// After a lost race: fetch the winner's copy (`true`), or notice the session is gone
    /// (`false`).
    async fn reload_after_conflict(&self, token: &SessionToken) -> Result<bool, SessionError> {
        let cookie = CookieSession {
            token: token.clone(),
            id: token.id(),
            carried: None,
        };
        let fresh = self.inner.context.storage.load(&cookie).await?;
        let mut state = self.state();
        match (fresh, state.live.as_mut()) {
            (Some(fresh), Some(live)) if !fresh.is_expired(Timestamp::now()) => {
                live.record = fresh;
                Ok(true)
            }
            _ => {
                state.mark_gone(self.inner.incoming_cookie_present);
                Ok(false)
            }
        }
    }

    /// Gives the session a new token in one atomic store step (the old token is dead at
    /// once), applying `change` to the record. Creates the session if there is none.
    async fn rotate_with(
        &self,
        change: impl Fn(&mut SessionRecord, Timestamp),
    ) -> Result<(), SessionError> {
        self.ensure_loaded().await?;
        let _writer = self.inner.writer.lock().await;
        let storage = &self.inner.context.storage;
        let max_attempts = self.inner.context.config.max_write_attempts();
        for attempt in 0..max_attempts {
            let now = Timestamp::now();
            let token = SessionToken::generate();
            let (live, pending) = self.snapshot();
            let result = match &live {
                Some((old, current)) => {
                    let mut next = (**current).clone();
                    pending.apply(&mut next.data);
                    change(&mut next, now);
                    self.stamp_activity(&mut next, now);
                    storage
                        .rotate(old, current, &token, &next)
                        .await
                        .map(|cookie| (cookie, next))
                }
                None => {
                    if !self.may_create() {
                        tracing::debug!("a bearer request without a session logged in: not stored");
                        self.state().pending = Pending::default();
                        return Ok(());
                    }
                    self.admit_new_session().await?;
                    let mut data = Map::new();
                    pending.apply(&mut data);
                    let mut record = self.new_record(now, data);
                    change(&mut record, now);
                    storage
                        .create(&token, &record)
                        .await
                        .map(|cookie| (cookie, record))
                }
            };
            match result {
                Ok((cookie, record)) => {
                    self.state().adopt(token, cookie, record, pending.last);
                    return Ok(());
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(StoreError::VersionConflict) => {
                    if let Some((old, _)) = live {
                        self.reload_after_conflict(&old).await?;
                    }
                    backoff(attempt).await;
                }
                Err(StoreError::NotFound) => {
                    // Ended under us: start a fresh session instead.
                    self.state().live = None;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(SessionError::Contended(max_attempts))
    }

    /// Asks the layer's [`NewSessionPolicy`], if any, whether this request may store a new
    /// session.
    async fn admit_new_session(&self) -> Result<(), SessionError> {
        let Some(policy) = &self.inner.context.admission else {
            return Ok(());
        };
        match policy.admit(&self.inner.client).await? {
            None => Ok(()),
            Some(wait) => {
                // Anyone can cause this: logged within a budget (`audit_refusal!`'s).
                static REFUSALS: LogBudget = LogBudget::new(5, 50);
                if let Some(dropped) = REFUSALS.admit() {
                    tracing::warn!(target: "latchkey::audit", event = "new_session_refused", dropped, ip = ?self.inner.client.ip, retry_after = wait.as_secs(), "new_session_refused");
                }
                Err(SessionError::Refused(wait))
            }
        }
    }

    /// Issues a new token for the same session (use after any privilege change).
    pub async fn cycle_token(&self) -> Result<(), SessionError> {
        self.rotate_with(|_, _| {}).await
    }

    /// Records a login of `user_id` proven as `how` says and rotates the token (no
    /// session fixation). Data of an anonymous session is kept; data of a session that
    /// belonged to another user is dropped. The absolute expiry restarts at login.
    /// Applications log in through the auth floor's gate ([`crate::auth::AuthSession::sign_in`]),
    /// which decides whether a proof is a complete login.
    pub async fn log_in(
        &self,
        user_id: &str,
        credential_version: i64,
        how: Authentication,
    ) -> Result<(), SessionError> {
        let absolute = self.inner.context.config.absolute_timeout();
        self.rotate_with(|record, now| {
            if record.user_id().is_some_and(|current| current != user_id) {
                record.data.clear();
            }
            record.auth = Some(AuthInfo::new(user_id, now, credential_version, how.clone()));
            record.absolute_expires_at = now.plus(absolute);
        })
        .await
    }

    /// Deletes the session from the store and expires the cookie. Returns the record that
    /// was deleted, if there was one.
    pub async fn destroy(&self) -> Result<Option<SessionRecord>, SessionError> {
        self.ensure_loaded().await?;
        let _writer = self.inner.writer.lock().await;
        let live = {
            let mut state = self.state();
            let live = state.live.take();
            state.pending = Pending::default();
            if self.inner.incoming_cookie_present || live.is_some() {
                state.cookie = CookieChange::Remove;
            }
            live
        };
        match live {
            Some(live) => {
                self.inner
                    .context
                    .storage
                    .delete(&live.token, &live.record)
                    .await?;
                Ok(Some(Arc::unwrap_or_clone(live.record)))
            }
            None => Ok(None),
        }
    }
}

/// A short random pause after a lost race, growing with the attempt number, so writers
/// stop colliding in lock-step.
async fn backoff(attempt: u32) {
    if attempt < 2 {
        tokio::task::yield_now().await;
        return;
    }
    let mut random = [0u8; 2];
    random_bytes(&mut random);
    let ceiling_micros = 50u64 << attempt.min(8);
    let micros = u64::from(u16::from_le_bytes(random)) % ceiling_micros;
    tokio::time::sleep(Duration::from_micros(micros)).await;
}
