//! Where the encrypted cookie store records sessions that ended before their cookies
//! did: a logged-out session (its id), and "every session of this user that logged in
//! before then" (a per-user marker). A small trait of its own, so a deployment can keep
//! them wherever its servers share state; [`StoreRevocations`] keeps them in a session
//! store (the database or Redis), as records that expire on their own.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// A user's place in the revocation store: an HMAC of the user id under a key derived
/// from the cookie store's secret, so no client can compute it (and none can present a
/// token that lands on it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserMarker(pub(crate) [u8; 32]);

impl std::fmt::Debug for UserMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserMarker(<keyed>)")
    }
}

/// Revocations of cookie-held sessions.
#[async_trait]
pub trait Revocations: Send + Sync + 'static {
    /// Records that the session `id` ended; it must stay refused until `until` (when
    /// its cookie would have expired anyway).
    async fn revoke_session(&self, id: &SessionId, until: Timestamp) -> Result<(), StoreError>;

    /// Whether the session `id` was revoked.
    async fn session_revoked(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Records that every session of the user behind `user` that logged in before
    /// `before`, except `keep`, ended; kept until `until`.
    async fn revoke_user(
        &self,
        user: &UserMarker,
        before: Timestamp,
        keep: Option<&SessionId>,
        until: Timestamp,
    ) -> Result<(), StoreError>;

    /// Whether a [`Revocations::revoke_user`] of `user` ends the session `id` that logged
    /// in at `authenticated_at`.
    async fn user_revoked(
        &self,
        user: &UserMarker,
        id: &SessionId,
        authenticated_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Deletes up to `limit` revocations that expired before `now`; returns how many.
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
}

/// Revocations kept in a [`SessionStore`] every server process shares: a tombstone
/// record under a revoked session's id, and a marker record under the user's keyed id,
/// each expiring when it no longer matters (swept with the store's expired sessions).
#[derive(Clone)]
pub struct StoreRevocations {
    store: Arc<dyn SessionStore>,
}

impl StoreRevocations {
    /// Revocations in `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        StoreRevocations { store }
    }
}

/// A record that holds nothing but its lifetime and `data`.
fn record_until(
    now: Timestamp,
    until: Timestamp,
    data: serde_json::Map<String, serde_json::Value>,
) -> SessionRecord {
    SessionRecord {
        version: 1,
        auth: None,
        data,
        created_at: now,
        last_active_at: now,
        idle_expires_at: until,
        absolute_expires_at: until,
        client_ip: None,
        user_agent: None,
    }
}

#[async_trait]
impl Revocations for StoreRevocations {
    async fn revoke_session(&self, id: &SessionId, until: Timestamp) -> Result<(), StoreError> {
        let tombstone = record_until(Timestamp::now(), until, Default::default());
        match self.store.create(id, &tombstone).await {
            Ok(()) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn session_revoked(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.store.load(id).await?.is_some())
    }

    async fn revoke_user(
        &self,
        user: &UserMarker,
        before: Timestamp,
        keep: Option<&SessionId>,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        let id = SessionId(user.0);
        let mut data = serde_json::Map::new();
        data.insert("revoked_before".into(), before.as_millis().into());
        data.insert("keep".into(), keep.map(SessionId::to_hex).into());
        let mut marker = record_until(Timestamp::now(), until, data);
        for _ in 0..8 {
            let written = match self.store.load(&id).await? {
                None => self.store.create(&id, &marker).await,
                Some(current) => {
                    marker.version = current.version + 1;
                    self.store.save(&id, &marker, current.version).await
                }
            };
            match written {
                Err(
                    StoreError::AlreadyExists | StoreError::VersionConflict | StoreError::NotFound,
                ) => {}
                other => return other,
            }
        }
        Err(StoreError::Unavailable(
            "revocation marker kept changing".into(),
        ))
    }

    async fn user_revoked(
        &self,
        user: &UserMarker,
        id: &SessionId,
        authenticated_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(marker) = self.store.load(&SessionId(user.0)).await? else {
            return Ok(false);
        };
        let before = marker
            .data
            .get("revoked_before")
            .and_then(serde_json::Value::as_i64);
        let keep = marker.data.get("keep").and_then(serde_json::Value::as_str);
        Ok(match before {
            Some(before) => {
                authenticated_at.as_millis() < before && keep != Some(id.to_hex().as_str())
            }
            // A marker that does not say when is corrupt: refuse rather than guess.
            None => true,
        })
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.store.delete_expired(now, limit).await
    }
}
