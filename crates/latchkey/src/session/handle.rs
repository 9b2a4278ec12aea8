//! `Session`: one request's view of its session, loaded lazily and saved with
//! compare-and-swap.

use super::config::SessionConfig;
use super::record::{AuthInfo, AuthMethod, SessionRecord};
use super::store::{SessionStore, StoreError};
use super::token::{random_bytes, SessionId, SessionToken};
use crate::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

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
}

impl SessionError {
    /// Whether the failure is the store being down (or overloaded): worth a 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SessionError::Store(StoreError::Unavailable(_)) | SessionError::Contended(_)
        )
    }
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

/// The loaded session: its id and the record as last read from or written to the store.
struct Live {
    id: SessionId,
    record: Arc<SessionRecord>,
}

struct State {
    incoming: Option<SessionToken>,
    incoming_cookie_present: bool,
    loaded: bool,
    live: Option<Live>,
    clear_all: bool,
    changes: BTreeMap<String, Change>,
    cookie: CookieChange,
}

impl State {
    fn has_changes(&self) -> bool {
        self.clear_all || !self.changes.is_empty()
    }

    fn value(&self, key: &str) -> Option<Value> {
        match self.changes.get(key) {
            Some(Change::Set(value)) => Some(value.clone()),
            Some(Change::Remove) => None,
            None if self.clear_all => None,
            None => self.live.as_ref()?.record.data.get(key).cloned(),
        }
    }

    /// Applies the pending key-level changes onto `data`.
    fn apply_changes(&self, data: &mut Map<String, Value>) {
        if self.clear_all {
            data.clear();
        }
        for (key, change) in &self.changes {
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

    fn forget_changes(&mut self) {
        self.clear_all = false;
        self.changes.clear();
    }

    /// A new token now holds `record` in the store: it is the live session, all pending
    /// changes are in it, and the browser must get the token.
    fn adopt(&mut self, token: &SessionToken, id: SessionId, record: SessionRecord) {
        self.cookie = CookieChange::Set(token.encode());
        self.live = Some(Live {
            id,
            record: Arc::new(record),
        });
        self.forget_changes();
    }

    /// The session vanished from the store (logout elsewhere, expiry): pending writes are
    /// dropped rather than re-creating it.
    fn mark_gone(&mut self) {
        if self.live.take().is_some() || self.incoming_cookie_present {
            self.cookie = CookieChange::Remove;
        }
        self.forget_changes();
    }
}

struct Inner {
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
    client: ClientInfo,
    state: Mutex<State>,
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
        let state = State {
            incoming: cookie_value.and_then(SessionToken::parse),
            incoming_cookie_present: cookie_value.is_some(),
            loaded: false,
            live: None,
            clear_all: false,
            changes: BTreeMap::new(),
            cookie: CookieChange::Keep,
        };
        Session {
            inner: Arc::new(Inner {
                store,
                config,
                client,
                state: Mutex::new(state),
            }),
        }
    }

    /// The session settings in force.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store behind this session.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    async fn loaded_state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.inner.state.lock().await;
        if !state.loaded {
            self.load_into(&mut state).await?;
        }
        Ok(state)
    }

    async fn load_into(&self, state: &mut State) -> Result<(), SessionError> {
        let Some(token) = state.incoming.clone() else {
            state.loaded = true;
            if state.incoming_cookie_present {
                tracing::debug!("malformed session cookie ignored");
                state.cookie = CookieChange::Remove;
            }
            return Ok(());
        };
        let id = token.id();
        let record = match self.inner.store.load(&id).await {
            Ok(record) => record,
            Err(StoreError::Corrupt(error)) => {
                tracing::warn!(session = ?id, %error, "corrupt session record treated as no session");
                None
            }
            Err(error) => return Err(error.into()),
        };
        state.loaded = true;
        match record {
            Some(record) if !record.is_expired(Timestamp::now()) => {
                state.live = Some(Live { id, record });
            }
            Some(_) => {
                // Expired: the cleanup task or the store's own expiry removes it.
                state.cookie = CookieChange::Remove;
            }
            None => {
                tracing::debug!(session = ?id, "unknown session token");
                state.cookie = CookieChange::Remove;
            }
        }
        Ok(())
    }

    /// Whether a live session exists (loads it if needed).
    pub async fn exists(&self) -> Result<bool, SessionError> {
        Ok(self.loaded_state().await?.live.is_some())
    }

    /// The session's id, if it exists.
    pub async fn id(&self) -> Result<Option<SessionId>, SessionError> {
        Ok(self.loaded_state().await?.live.as_ref().map(|live| live.id))
    }

    /// The stored record (without this request's unsaved changes).
    pub async fn record(&self) -> Result<Option<Arc<SessionRecord>>, SessionError> {
        Ok(self
            .loaded_state()
            .await?
            .live
            .as_ref()
            .map(|live| live.record.clone()))
    }

    /// Who is logged in, and how.
    pub async fn auth(&self) -> Result<Option<AuthInfo>, SessionError> {
        Ok(self
            .loaded_state()
            .await?
            .live
            .as_ref()
            .and_then(|live| live.record.auth.clone()))
    }

    /// The raw JSON value under `key`, including this request's unsaved changes.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        Ok(self.loaded_state().await?.value(key))
    }

    /// The value under `key`, deserialized.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        match self.get_value(key).await? {
            Some(value) => Ok(Some(serde_json::from_value(value)?)),
            None => Ok(None),
        }
    }

    /// Sets `key`; saved at the end of the request (a new session is created if needed).
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value)?;
        let mut state = self.loaded_state().await?;
        state.changes.insert(key.to_string(), Change::Set(value));
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, SessionError> {
        let mut state = self.loaded_state().await?;
        let old = state.value(key);
        if state.live.is_some() {
            state.changes.insert(key.to_string(), Change::Remove);
        } else {
            state.changes.remove(key);
        }
        Ok(old)
    }

    /// Removes every key (the login state is kept; use logout to end the session).
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.loaded_state().await?;
        state.changes.clear();
        state.clear_all = state.live.is_some();
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
        let mut state = self.loaded_state().await?;
        let key = key.to_string();
        let mut stored = None;
        self.write_changes(&mut state, |data| {
            let value = f(data.get(&key));
            data.insert(key.clone(), value.clone());
            stored = Some(value);
        })
        .await?;
        stored.ok_or(SessionError::Store(StoreError::NotFound))
    }

    /// Saves pending changes, or refreshes the idle expiry when it is due, and says what
    /// the response must do with the cookie. The session layer calls this once the handler
    /// has answered; handlers rarely need it.
    pub async fn commit(&self) -> Result<CookieChange, SessionError> {
        let mut state = self.inner.state.lock().await;
        if state.loaded {
            if state.has_changes() {
                self.write_changes(&mut state, |_| {}).await?;
            } else {
                self.touch_if_due(&mut state).await?;
            }
        }
        Ok(state.cookie.clone())
    }

    /// What the response must do with the cookie after [`Session::commit`].
    pub async fn cookie_change(&self) -> CookieChange {
        self.inner.state.lock().await.cookie.clone()
    }

    /// Refreshes the idle expiry of an unchanged session once the touch interval has
    /// passed. Losing a race is fine: whoever won refreshed it.
    async fn touch_if_due(&self, state: &mut State) -> Result<(), SessionError> {
        let Some(live) = state.live.as_mut() else {
            return Ok(());
        };
        let now = Timestamp::now();
        if now.since(live.record.last_active_at) < self.inner.config.touch_interval() {
            return Ok(());
        }
        let mut next = (*live.record).clone();
        self.stamp_activity(&mut next, now);
        match self
            .inner
            .store
            .save(&live.id, &next, live.record.version)
            .await
        {
            Ok(()) => live.record = Arc::new(next),
            Err(StoreError::VersionConflict | StoreError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    fn stamp_activity(&self, record: &mut SessionRecord, now: Timestamp) {
        record.version += 1;
        record.last_active_at = now;
        record.idle_expires_at = now.plus(self.inner.config.idle_timeout());
    }

    fn new_record(&self, now: Timestamp, data: Map<String, Value>) -> SessionRecord {
        let client = &self.inner.client;
        SessionRecord {
            version: 1,
            auth: None,
            data,
            created_at: now,
            last_active_at: now,
            idle_expires_at: now.plus(self.inner.config.idle_timeout()),
            absolute_expires_at: now.plus(self.inner.config.absolute_timeout()),
            client_ip: client.ip.map(|ip| ip.to_string()),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }

    /// Writes the pending changes plus `extra` with compare-and-swap, re-reading and
    /// re-applying on every lost race. Creates the session if there is none.
    async fn write_changes(
        &self,
        state: &mut State,
        mut extra: impl FnMut(&mut Map<String, Value>),
    ) -> Result<(), SessionError> {
        let store = &self.inner.store;
        let max_attempts = self.inner.config.max_write_attempts();
        for attempt in 0..max_attempts {
            let now = Timestamp::now();
            let Some(live) = state.live.as_ref() else {
                let mut data = Map::new();
                state.apply_changes(&mut data);
                extra(&mut data);
                let record = self.new_record(now, data);
                let token = SessionToken::generate();
                let id = token.id();
                match store.create(&id, &record).await {
                    Ok(()) => {
                        state.adopt(&token, id, record);
                        return Ok(());
                    }
                    Err(StoreError::AlreadyExists) => continue,
                    Err(error) => return Err(error.into()),
                }
            };
            let mut next = (*live.record).clone();
            state.apply_changes(&mut next.data);
            extra(&mut next.data);
            self.stamp_activity(&mut next, now);
            match store.save(&live.id, &next, live.record.version).await {
                Ok(()) => {
                    if let Some(live) = state.live.as_mut() {
                        live.record = Arc::new(next);
                    }
                    state.forget_changes();
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => {
                    self.reload_after_conflict(state).await?;
                    if state.live.is_none() {
                        return Ok(());
                    }
                    backoff(attempt).await;
                }
                Err(StoreError::NotFound) => {
                    tracing::debug!(session = ?live.id, "session ended while a request was writing to it; changes dropped");
                    state.mark_gone();
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(SessionError::Contended(max_attempts))
    }

    /// After a lost race: fetch the winner's copy, or notice the session is gone.
    async fn reload_after_conflict(&self, state: &mut State) -> Result<(), SessionError> {
        let Some(live) = state.live.as_mut() else {
            return Ok(());
        };
        match self.inner.store.load(&live.id).await? {
            Some(fresh) if !fresh.is_expired(Timestamp::now()) => {
                live.record = fresh;
            }
            _ => state.mark_gone(),
        }
        Ok(())
    }

    /// Gives the session a new token in one atomic store step (the old token is dead at
    /// once), applying `change` to the record. Creates the session if there is none.
    async fn rotate_with(
        &self,
        change: impl Fn(&mut SessionRecord, Timestamp),
    ) -> Result<(), SessionError> {
        let mut state = self.loaded_state().await?;
        let store = self.inner.store.clone();
        let max_attempts = self.inner.config.max_write_attempts();
        for attempt in 0..max_attempts {
            let now = Timestamp::now();
            let token = SessionToken::generate();
            let id = token.id();
            let result = match state.live.as_ref() {
                Some(live) => {
                    let mut next = (*live.record).clone();
                    state.apply_changes(&mut next.data);
                    change(&mut next, now);
                    self.stamp_activity(&mut next, now);
                    store
                        .rotate(&live.id, &id, &next, live.record.version)
                        .await
                        .map(|()| next)
                }
                None => {
                    let mut data = Map::new();
                    state.apply_changes(&mut data);
                    let mut record = self.new_record(now, data);
                    change(&mut record, now);
                    store.create(&id, &record).await.map(|()| record)
                }
            };
            match result {
                Ok(record) => {
                    state.adopt(&token, id, record);
                    return Ok(());
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(StoreError::VersionConflict) => {
                    self.reload_after_conflict(&mut state).await?;
                    backoff(attempt).await;
                }
                Err(StoreError::NotFound) => {
                    // Ended under us: start a fresh session instead.
                    state.live = None;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(SessionError::Contended(max_attempts))
    }

    /// Issues a new token for the same session (use after any privilege change).
    pub async fn cycle_token(&self) -> Result<(), SessionError> {
        self.rotate_with(|_, _| {}).await
    }

    /// Records a login and rotates the token (no session fixation). Data of an anonymous
    /// session is kept; data of a session that belonged to another user is dropped. The
    /// absolute expiry restarts at login.
    pub async fn log_in(
        &self,
        user_id: &str,
        method: AuthMethod,
        credential_version: i64,
    ) -> Result<(), SessionError> {
        let absolute = self.inner.config.absolute_timeout();
        self.rotate_with(|record, now| {
            if record.user_id().is_some_and(|current| current != user_id) {
                record.data.clear();
            }
            record.auth = Some(AuthInfo {
                user_id: user_id.to_string(),
                authenticated_at: now,
                method,
                credential_version,
            });
            record.absolute_expires_at = now.plus(absolute);
        })
        .await
    }

    /// Deletes the session from the store and expires the cookie. Returns the record that
    /// was deleted, if there was one.
    pub async fn destroy(&self) -> Result<Option<SessionRecord>, SessionError> {
        let mut state = self.loaded_state().await?;
        let live = state.live.take();
        state.forget_changes();
        if state.incoming_cookie_present || live.is_some() {
            state.cookie = CookieChange::Remove;
        }
        match live {
            Some(live) => {
                self.inner.store.delete(&live.id).await?;
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
