//! The `SessionStore` trait every store implements, and its typed errors.

use super::record::SessionRecord;
use super::token::SessionId;
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// A boxed error from a store's backend (driver, network, decoder).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed, one variant per cause, so callers can react: the
/// layer answers 503 for [`StoreError::Unavailable`] and treats [`StoreError::Corrupt`]
/// as "no session".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session with that id (it was deleted, expired or never existed).
    #[error("session not found")]
    NotFound,
    /// The stored version is not the one the write expected: someone else wrote first.
    #[error("session was changed by another request")]
    VersionConflict,
    /// `create` or `rotate` named an id that is already taken.
    #[error("session id already exists")]
    AlreadyExists,
    /// The backend could not be reached or failed.
    #[error("session store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The stored bytes do not decode into a record.
    #[error("corrupt session record: {0}")]
    Corrupt(#[source] BoxError),
    /// The record is bigger than the store accepts.
    #[error("session record too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Encoded size of the record.
        size: usize,
        /// The store's limit.
        limit: usize,
    },
}

/// What [`SessionStore::load`] answers.
pub type Loaded = Result<Option<Arc<SessionRecord>>, StoreError>;

/// Where sessions live. Implemented by the memory and SQLite stores, and shaped for
/// PostgreSQL, Redis, cache tiers and fan-out.
///
/// Rules every implementation follows (the [`crate::store::conformance`] suite checks them):
/// * writes never re-create a session that is gone: `save` and `rotate` answer
///   [`StoreError::NotFound`] instead of inserting;
/// * `save` and `rotate` only succeed when the stored version equals `expected_version`,
///   otherwise [`StoreError::VersionConflict`];
/// * `rotate` is one atomic step: after it the old id is gone and the new id holds the
///   record;
/// * `load` may return expired records; the session layer checks expiry.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The record stored under `id`, if any. Shared, so an in-memory store hands out its
    /// copy without cloning it.
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError>;

    /// Stores a new record; [`StoreError::AlreadyExists`] if `id` is taken.
    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError>;

    /// Replaces the record under `id` if its stored version is `expected_version`.
    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Moves the session from `old_id` to `new_id` with the new `record`, if the stored
    /// version is `expected_version`, in one atomic step.
    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the session; `true` if it existed.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Every session of the user, expired or not, in no particular order.
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError>;

    /// Deletes every session of the user except `keep`; returns how many were deleted.
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError>;

    /// Deletes up to `limit` sessions that expired before `now`; returns how many.
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
}

/// Decides whether a request may store a new session: the session layer asks it before
/// every `create`, so a client cannot fill the store (for example a cap per client
/// address, as `latchkey serve` sets with its throttle counters). Reads and writes of
/// existing sessions are never asked about.
#[async_trait]
pub trait NewSessionPolicy: Send + Sync + 'static {
    /// `None` to allow a new session for `client`, or how long it should wait.
    async fn admit(
        &self,
        client: &super::ClientInfo,
    ) -> Result<Option<std::time::Duration>, StoreError>;
}
