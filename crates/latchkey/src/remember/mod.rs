//! Remember-me: per-device tokens that restore a login after the browser dropped its
//! session cookie.
//!
//! The cookie holds `series.validator` (16 and 32 random bytes, base64url). Stores keep
//! the series and only the SHA-256 of the validator. Each use rotates the validator with
//! compare-and-swap; the previous one stays valid for a short grace window so parallel
//! requests carrying the old cookie are not mistaken for theft. A validator reused after
//! that is theft: every remember token and session of the user is revoked.

use crate::bytes::random_bytes;
use crate::time::Timestamp;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;

crate::store_error::store_error!(
    /// Why a remember-me store failed.
    RememberStoreError,
    "remember-me store"
);

/// How long "Stay logged in" lasts when the application does not say (30 days).
pub const DEFAULT_REMEMBER_DAYS: u32 = 30;
/// Longest remember-me lifetime accepted (ASVS: re-authenticate at least every 30 days).
pub const MAX_REMEMBER_DAYS: u32 = 30;
/// How long the previous validator keeps working after a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(60);

/// A stored remember-me token (one device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberRecord {
    /// Public part of the cookie, the lookup key (base64url of 16 random bytes).
    pub series: String,
    /// SHA-256 of the current validator.
    pub validator_hash: [u8; 32],
    /// SHA-256 of the validator before the last rotation, accepted until
    /// `previous_valid_until`.
    pub previous_hash: Option<[u8; 32]>,
    /// End of the grace window for `previous_hash`.
    pub previous_valid_until: Option<Timestamp>,
    /// The user it logs in.
    pub user_id: String,
    /// When the user ticked "Stay logged in".
    pub created_at: Timestamp,
    /// Last time it restored a session.
    pub last_used_at: Timestamp,
    /// Fixed at creation: using the token never extends it.
    pub expires_at: Timestamp,
}

/// Where remember-me tokens live.
#[async_trait]
pub trait RememberStore: Send + Sync + 'static {
    /// Stores a new token; [`RememberStoreError::AlreadyExists`] if the series is taken.
    async fn insert(&self, record: &RememberRecord) -> Result<(), RememberStoreError>;
    /// The token with this series.
    async fn find(&self, series: &str) -> Result<Option<RememberRecord>, RememberStoreError>;
    /// Replaces the validator hash if it is still `expected` (compare-and-swap), keeping
    /// `expected` as the previous hash until `grace_until`; `false` if another request
    /// rotated first or the token is gone.
    async fn rotate(
        &self,
        series: &str,
        expected: &[u8; 32],
        new_hash: &[u8; 32],
        grace_until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, RememberStoreError>;
    /// Deletes one token; `true` if it existed.
    async fn delete(&self, series: &str) -> Result<bool, RememberStoreError>;
    /// Deletes every token of the user; returns how many.
    async fn delete_for_user(&self, user_id: &str) -> Result<u64, RememberStoreError>;
    /// Deletes up to `limit` expired tokens; returns how many.
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, RememberStoreError>;
}

/// A shared store is a store.
#[async_trait]
impl<S: RememberStore + ?Sized> RememberStore for Arc<S> {
    async fn insert(&self, record: &RememberRecord) -> Result<(), RememberStoreError> {
        (**self).insert(record).await
    }
    async fn find(&self, series: &str) -> Result<Option<RememberRecord>, RememberStoreError> {
        (**self).find(series).await
    }
    async fn rotate(
        &self,
        series: &str,
        expected: &[u8; 32],
        new_hash: &[u8; 32],
        grace_until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, RememberStoreError> {
        (**self)
            .rotate(series, expected, new_hash, grace_until, now)
            .await
    }
    async fn delete(&self, series: &str) -> Result<bool, RememberStoreError> {
        (**self).delete(series).await
    }
    async fn delete_for_user(&self, user_id: &str) -> Result<u64, RememberStoreError> {
        (**self).delete_for_user(user_id).await
    }
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, RememberStoreError> {
        (**self).delete_expired(now, limit).await
    }
}

/// The secret half of a cookie, and its hash.
pub(crate) struct Validator {
    pub(crate) text: String,
    pub(crate) hash: [u8; 32],
}

impl Validator {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 32];
        random_bytes(&mut bytes);
        Self::from_text(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn from_text(text: String) -> Self {
        let hash = Sha256::digest(text.as_bytes()).into();
        Validator { text, hash }
    }

    /// Whether this validator's hash is `hash` (constant time).
    pub(crate) fn matches(&self, hash: &[u8; 32]) -> bool {
        bool::from(self.hash.ct_eq(hash))
    }
}

/// A new series id.
pub(crate) fn new_series() -> String {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The cookie value for a series and validator.
pub(crate) fn cookie_value(series: &str, validator: &Validator) -> String {
    format!("{series}.{}", validator.text)
}

/// Splits a cookie value into series and validator; `None` if it is malformed.
pub(crate) fn parse_cookie(value: &str) -> Option<(String, Validator)> {
    let (series, validator) = value.split_once('.')?;
    let well_formed = |part: &str, bytes: usize| {
        URL_SAFE_NO_PAD
            .decode(part)
            .is_ok_and(|decoded| decoded.len() == bytes)
    };
    (well_formed(series, 16) && well_formed(validator, 32)).then(|| {
        (
            series.to_string(),
            Validator::from_text(validator.to_string()),
        )
    })
}

/// Remember-me tokens in this process's memory.
#[derive(Clone, Default)]
pub struct MemoryRememberStore {
    tokens: Arc<Mutex<HashMap<String, RememberRecord>>>,
}

impl MemoryRememberStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tokens(&self) -> MutexGuard<'_, HashMap<String, RememberRecord>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl RememberStore for MemoryRememberStore {
    async fn insert(&self, record: &RememberRecord) -> Result<(), RememberStoreError> {
        let mut tokens = self.tokens();
        if tokens.contains_key(&record.series) {
            return Err(RememberStoreError::AlreadyExists);
        }
        tokens.insert(record.series.clone(), record.clone());
        Ok(())
    }

    async fn find(&self, series: &str) -> Result<Option<RememberRecord>, RememberStoreError> {
        Ok(self.tokens().get(series).cloned())
    }

    async fn rotate(
        &self,
        series: &str,
        expected: &[u8; 32],
        new_hash: &[u8; 32],
        grace_until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, RememberStoreError> {
        let mut tokens = self.tokens();
        match tokens.get_mut(series) {
            Some(record) if record.validator_hash == *expected => {
                record.previous_hash = Some(*expected);
                record.previous_valid_until = Some(grace_until);
                record.validator_hash = *new_hash;
                record.last_used_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, series: &str) -> Result<bool, RememberStoreError> {
        Ok(self.tokens().remove(series).is_some())
    }

    async fn delete_for_user(&self, user_id: &str) -> Result<u64, RememberStoreError> {
        let mut tokens = self.tokens();
        let before = tokens.len();
        tokens.retain(|_, record| record.user_id != user_id);
        Ok((before - tokens.len()) as u64)
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, RememberStoreError> {
        let mut tokens = self.tokens();
        let expired: Vec<String> = tokens
            .values()
            .filter(|record| record.expires_at <= now)
            .map(|record| record.series.clone())
            .take(limit as usize)
            .collect();
        for series in &expired {
            tokens.remove(series);
        }
        Ok(expired.len() as u64)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

#[cfg(feature = "postgres")]
pub use sql::PostgresRememberStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteRememberStore;
