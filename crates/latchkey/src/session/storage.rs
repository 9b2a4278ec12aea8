//! What a session layer stores sessions in, and what it puts in the cookie: the trait
//! the session handle works on. A server-side [`SessionStore`] is one (the cookie holds
//! the token, the store its SHA-256); the encrypted cookie store is another (the cookie
//! holds the session itself). The session handle makes the tokens; the storage says what
//! the browser must keep.

use super::record::SessionRecord;
use super::store::{Loaded, SessionStore, StoreError};
use super::token::{SessionId, SessionToken};
use async_trait::async_trait;
use std::sync::Arc;

/// A session as the request's cookie names it.
#[derive(Clone)]
pub struct CookieSession {
    /// The token the cookie holds.
    pub token: SessionToken,
    /// Its id (the SHA-256 of the token), computed once.
    pub id: SessionId,
    /// The session itself, for a storage that keeps it in the cookie (`None` for a
    /// server-side store, which is asked by id).
    pub carried: Option<Arc<SessionRecord>>,
}

/// Where sessions live and what the browser keeps of them. The rules are the
/// [`SessionStore`]'s (compare-and-swap on the version, no upserts, atomic rotation);
/// what is new is that `create`, `save` and `rotate` answer what goes in the cookie.
#[async_trait]
pub trait SessionStorage: Send + Sync + 'static {
    /// Reads a session cookie's value: its token (and session, if it carries one);
    /// `None` for anything this storage did not write (tampered, truncated, other format).
    fn open_cookie(&self, value: &[u8]) -> Option<CookieSession>;

    /// The live record of the session `cookie` names, if any (expired ones may be
    /// returned: the session layer checks expiry).
    async fn load(&self, cookie: &CookieSession) -> Loaded;

    /// Stores a new session under `token`; the cookie value to send.
    /// [`StoreError::AlreadyExists`] if the token is taken.
    async fn create(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError>;

    /// Replaces the session under `token` if its stored version is `expected_version`;
    /// a new cookie value when the browser's must change.
    async fn save(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<Option<String>, StoreError>;

    /// Moves the session from `old` (holding `current`) to `new` with `record`, if the
    /// stored version is `current.version`, in one step: the old token is dead at once.
    /// The cookie value to send.
    async fn rotate(
        &self,
        old: &SessionToken,
        current: &SessionRecord,
        new: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError>;

    /// Ends the session under `token` (holding `record`); `true` if it existed.
    async fn delete(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
    ) -> Result<bool, StoreError>;

    /// The record of the session `id` (another of the user's sessions), if this storage
    /// can see it: a server-side store can, the cookie store cannot (`None`).
    async fn load_by_id(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError>;

    /// Ends the session `id` (another of the user's sessions); `false` if gone or out of
    /// reach.
    async fn delete_by_id(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Every session of the user this storage can list (the cookie store: none).
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError>;

    /// Ends every session of the user except `keep`; how many (0 when unknown).
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError>;
}

/// A server-side [`SessionStore`] as session storage: the cookie holds the token (43
/// base64url characters), the store keeps the session under its SHA-256.
pub struct ServerSide(pub Arc<dyn SessionStore>);

#[async_trait]
impl SessionStorage for ServerSide {
    fn open_cookie(&self, value: &[u8]) -> Option<CookieSession> {
        SessionToken::parse_bytes(value).map(|token| CookieSession {
            id: token.id(),
            token,
            carried: None,
        })
    }

    async fn load(&self, cookie: &CookieSession) -> Loaded {
        self.0.load(&cookie.id).await
    }

    async fn create(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError> {
        self.0.create(&token.id(), record).await?;
        Ok(token.encode())
    }

    async fn save(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<Option<String>, StoreError> {
        self.0.save(&token.id(), record, expected_version).await?;
        Ok(None)
    }

    async fn rotate(
        &self,
        old: &SessionToken,
        current: &SessionRecord,
        new: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError> {
        self.0
            .rotate(&old.id(), &new.id(), record, current.version)
            .await?;
        Ok(new.encode())
    }

    async fn delete(
        &self,
        token: &SessionToken,
        _record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        self.0.delete(&token.id()).await
    }

    async fn load_by_id(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.0.load(id).await
    }

    async fn delete_by_id(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.0.delete(id).await
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        self.0.list_for_user(user_id).await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.0.delete_for_user(user_id, keep).await
    }
}
