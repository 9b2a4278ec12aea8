//! The encrypted cookie store: the whole session travels in the cookie, sealed with
//! XChaCha20-Poly1305, so the server keeps no session state, only a small revocation
//! record per logged-out session until the session would have expired.
//!
//! Cookie value: base64url of `format (1 byte) | key id (4) | nonce (24) | ciphertext`,
//! where the plaintext is the 32-byte session token followed by the record as JSON.
//! Several keys can be configured: the first seals, every one opens, so a new key is
//! rolled in first and an old one removed once its cookies have expired.
//!
//! What a cookie cannot do, and what replaces it:
//! * A copied cookie stays decryptable, so logging out (and any token rotation of a
//!   logged-in session) writes a revocation record keyed by the session id into the
//!   revocation store, which every load of a logged-in cookie checks. Password changes
//!   and disabled users are caught by the credential version in the cookie.
//! * A user's sessions cannot be listed or revoked one by one from the server: they live
//!   in browsers. `list_for_user` sees only the current request's session.
//! * Two requests racing on one session each send a cookie back; the browser keeps the
//!   last. Use a server-side store where concurrent writes must merge.

// The per-request jar is driven by the session layer (feature `axum`).
#![cfg_attr(not(feature = "axum"), allow(dead_code))]

use crate::session::{
    SessionId, SessionRecord, SessionStore, SessionToken, StoreError, TOKEN_BYTES,
};
use crate::time::Timestamp;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest cookie value sealed (browsers keep at least 4096 bytes per cookie, name and
/// attributes included).
pub const MAX_COOKIE_VALUE_BYTES: usize = 4000;
/// Shortest secret accepted for a cookie key.
pub const MIN_SECRET_BYTES: usize = 32;

const FORMAT: u8 = 1;
const KEY_ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 1 + KEY_ID_BYTES + NONCE_BYTES;
/// Binds ciphertexts to this use, so no other sealed value opens as a session.
const ASSOCIATED_DATA: &[u8] = b"latchkey session cookie v1";

struct CookieKey {
    id: [u8; KEY_ID_BYTES],
    cipher: XChaCha20Poly1305,
}

impl CookieKey {
    /// Derives the cipher key and its public id from a secret (domain-separated SHA-256).
    fn derive(secret: &[u8]) -> CookieKey {
        let key = Sha256::new()
            .chain_update(b"latchkey cookie key\0")
            .chain_update(secret)
            .finalize();
        let id_hash = Sha256::new()
            .chain_update(b"latchkey cookie key id\0")
            .chain_update(secret)
            .finalize();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&id_hash[..KEY_ID_BYTES]);
        CookieKey {
            id,
            cipher: XChaCha20Poly1305::new(&key),
        }
    }
}

/// Seals sessions into cookies and opens them again. Give it to
/// [`crate::SessionLayer::with_cookie_store`].
#[derive(Clone)]
pub struct CookieStore {
    keys: Arc<[CookieKey]>,
    revocations: Option<Arc<dyn SessionStore>>,
}

impl std::fmt::Debug for CookieStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieStore")
            .field("keys", &self.keys.len())
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

impl CookieStore {
    /// A store sealing with the first of `secrets` and opening with any of them. Each
    /// secret must be at least 32 bytes of random data.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Result<CookieStore, StoreError> {
        if secrets.is_empty() {
            return Err(StoreError::Unavailable(
                "the cookie store needs a key".into(),
            ));
        }
        if let Some(short) = secrets
            .iter()
            .find(|secret| secret.as_ref().len() < MIN_SECRET_BYTES)
        {
            return Err(StoreError::Unavailable(
                format!(
                    "cookie keys must be at least {MIN_SECRET_BYTES} bytes (one has {})",
                    short.as_ref().len()
                )
                .into(),
            ));
        }
        Ok(CookieStore {
            keys: secrets
                .iter()
                .map(|secret| CookieKey::derive(secret.as_ref()))
                .collect(),
            revocations: None,
        })
    }

    /// Where revocation records of logged-out sessions live. Use a store every server
    /// process shares (the database or Redis); without one, a copied cookie of a
    /// logged-out session stays usable until it expires or the user's credentials
    /// change.
    pub fn with_revocations(mut self, store: Arc<dyn SessionStore>) -> CookieStore {
        self.revocations = Some(store);
        self
    }

    /// The cookie value holding `token` and `record`; [`StoreError::TooLarge`] when it
    /// would not fit in a cookie.
    pub fn seal(&self, token: &SessionToken, record: &SessionRecord) -> Result<String, StoreError> {
        let json =
            serde_json::to_vec(record).map_err(|error| StoreError::Corrupt(Box::new(error)))?;
        let mut plaintext = Vec::with_capacity(TOKEN_BYTES + json.len());
        plaintext.extend_from_slice(token.as_bytes());
        plaintext.extend_from_slice(&json);
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_BYTES];
        crate::session::random_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: ASSOCIATED_DATA,
                },
            )
            .map_err(|_| StoreError::Corrupt("session could not be encrypted".into()))?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + sealed.len());
        bytes.push(FORMAT);
        bytes.extend_from_slice(&key.id);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        let value = URL_SAFE_NO_PAD.encode(bytes);
        if value.len() > MAX_COOKIE_VALUE_BYTES {
            return Err(StoreError::TooLarge {
                size: value.len(),
                limit: MAX_COOKIE_VALUE_BYTES,
            });
        }
        Ok(value)
    }

    /// The token and record in a cookie value; `None` for anything that is not a cookie
    /// sealed by one of the keys (tampered, truncated, retired key, other format).
    pub fn open(&self, value: &str) -> Option<(SessionToken, SessionRecord)> {
        if value.len() > MAX_COOKIE_VALUE_BYTES {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() < HEADER_BYTES + TOKEN_BYTES || bytes[0] != FORMAT {
            return None;
        }
        let key_id = &bytes[1..1 + KEY_ID_BYTES];
        let key = self.keys.iter().find(|key| key.id == key_id)?;
        let plaintext = key
            .cipher
            .decrypt(
                XNonce::from_slice(&bytes[1 + KEY_ID_BYTES..HEADER_BYTES]),
                Payload {
                    msg: &bytes[HEADER_BYTES..],
                    aad: ASSOCIATED_DATA,
                },
            )
            .ok()?;
        let (token, json) = plaintext.split_at_checked(TOKEN_BYTES)?;
        let token = SessionToken::from_bytes(token.try_into().ok()?);
        let record = serde_json::from_slice(json).ok()?;
        Some((token, record))
    }

    /// The per-request store over the session in `cookie` (if it opens), and the token
    /// the session layer should treat as the incoming cookie.
    pub(crate) fn jar(&self, cookie: Option<&str>) -> (Arc<CookieJar>, Option<String>) {
        let opened = cookie.and_then(|value| self.open(value));
        let token = opened.as_ref().map(|(token, _)| token.encode());
        let (incoming, entry) = match opened {
            Some((token, record)) => (Some(token.clone()), Some((token.id(), Arc::new(record)))),
            None => (None, None),
        };
        let jar = CookieJar {
            store: self.clone(),
            state: Mutex::new(JarState {
                entry,
                incoming,
                written: false,
                removed: false,
            }),
        };
        (Arc::new(jar), token)
    }
}

/// How long a per-user revocation marker is kept: longer than any session can live
/// (remember-me restores are new logins, so they are not affected by old markers).
const USER_MARKER_LIFETIME: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

/// Where the revocation store keeps the per-user marker of `user_id`.
fn user_marker_id(user_id: &str) -> SessionId {
    let digest: [u8; TOKEN_BYTES] = Sha256::new()
        .chain_update(b"latchkey revoked user\0")
        .chain_update(user_id.as_bytes())
        .finalize()
        .into();
    SessionToken::from_bytes(digest).id()
}

/// Whether a per-user marker ends the session `id` that logged in at `authenticated_at`.
fn revoked_by(marker: &SessionRecord, id: &SessionId, authenticated_at: Timestamp) -> bool {
    let before = marker
        .data
        .get("revoked_before")
        .and_then(serde_json::Value::as_i64);
    let keep = marker.data.get("keep").and_then(serde_json::Value::as_str);
    match before {
        Some(before) => authenticated_at.as_millis() < before && keep != Some(id.to_hex().as_str()),
        // A marker that does not say when is corrupt: refuse rather than guess.
        None => true,
    }
}

/// What the response must do with an encrypted session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// The cookie the browser has is still right.
    Unchanged,
    /// Send this sealed value.
    Sealed(String),
    /// Expire the cookie.
    Removed,
}

struct JarState {
    /// The session as this request last read or wrote it.
    entry: Option<(SessionId, Arc<SessionRecord>)>,
    /// The token in the incoming cookie.
    incoming: Option<SessionToken>,
    /// Whether the request wrote the session (the cookie must be sealed again).
    written: bool,
    /// Whether the request deleted the session.
    removed: bool,
}

/// One request's view of a cookie-held session, behind the [`SessionStore`] trait so the
/// session handle works on it unchanged. Writes are kept until the response, which
/// seals the record under the token the session ends up with.
pub(crate) struct CookieJar {
    store: CookieStore,
    state: Mutex<JarState>,
}

impl CookieJar {
    fn state(&self) -> MutexGuard<'_, JarState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the response must send, given the token the session layer is about to set
    /// (`new_token`, after a login or rotation) or the incoming one.
    pub(crate) fn outgoing(&self, new_token: Option<&str>) -> Result<Outgoing, StoreError> {
        let state = self.state();
        match &state.entry {
            None if state.removed => Ok(Outgoing::Removed),
            Some((id, record)) if state.written => {
                let token = new_token
                    .and_then(SessionToken::parse)
                    .or_else(|| state.incoming.clone())
                    .filter(|token| token.id() == *id)
                    .ok_or_else(|| StoreError::Corrupt("no token for the cookie session".into()))?;
                self.store.seal(&token, record).map(Outgoing::Sealed)
            }
            _ => Ok(Outgoing::Unchanged),
        }
    }

    /// Keeps `record` as the session under `id`, if it will fit in a cookie.
    fn put(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let json =
            serde_json::to_vec(record).map_err(|error| StoreError::Corrupt(Box::new(error)))?;
        let sealed_bytes = HEADER_BYTES + TOKEN_BYTES + json.len() + TAG_BYTES;
        let size = sealed_bytes.div_ceil(3) * 4;
        if size > MAX_COOKIE_VALUE_BYTES {
            return Err(StoreError::TooLarge {
                size,
                limit: MAX_COOKIE_VALUE_BYTES,
            });
        }
        let mut state = self.state();
        state.entry = Some((*id, Arc::new(record.clone())));
        state.written = true;
        state.removed = false;
        Ok(())
    }

    /// Writes a revocation record for a logged-in session, kept until the session's
    /// absolute expiry: a copy of the cookie refreshed by its own requests can outlive
    /// this copy's idle expiry, never the absolute one.
    async fn revoke(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let (Some(revocations), Some(_)) = (&self.store.revocations, &record.auth) else {
            return Ok(());
        };
        let tombstone = SessionRecord {
            auth: None,
            data: Default::default(),
            client_ip: None,
            user_agent: None,
            idle_expires_at: record.absolute_expires_at,
            ..record.clone()
        };
        match revocations.create(id, &tombstone).await {
            Ok(()) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn current(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        match &self.state().entry {
            Some((current, record)) if current == id => Some(record.clone()),
            _ => None,
        }
    }
}

#[async_trait]
impl SessionStore for CookieJar {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let Some(record) = self.current(id) else {
            return Ok(None);
        };
        if let (Some(revocations), Some(auth)) = (&self.store.revocations, &record.auth) {
            if revocations.load(id).await?.is_some() {
                return Ok(None);
            }
            let marker = revocations.load(&user_marker_id(&auth.user_id)).await?;
            if marker.is_some_and(|marker| revoked_by(&marker, id, auth.authenticated_at)) {
                return Ok(None);
            }
        }
        Ok(Some(record))
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        if self.current(id).is_some() {
            return Err(StoreError::AlreadyExists);
        }
        self.put(id, record)
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let current = self.current(id).ok_or(StoreError::NotFound)?;
        if current.version != expected_version {
            return Err(StoreError::VersionConflict);
        }
        self.put(id, record)
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let current = self.current(old_id).ok_or(StoreError::NotFound)?;
        if current.version != expected_version {
            return Err(StoreError::VersionConflict);
        }
        // A copy of the old cookie must not keep a logged-in session alive.
        self.revoke(old_id, &current).await?;
        self.put(new_id, record)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let Some(current) = self.current(id) else {
            return Ok(false);
        };
        self.revoke(id, &current).await?;
        let mut state = self.state();
        state.entry = None;
        state.written = false;
        state.removed = true;
        Ok(true)
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        let state = self.state();
        Ok(state
            .entry
            .iter()
            .filter(|(_, record)| record.user_id() == Some(user_id))
            .map(|(id, record)| (*id, (**record).clone()))
            .collect())
    }

    /// Other browsers' cookies are out of reach, so this leaves a per-user marker in
    /// the revocation store: every session of the user that logged in before now,
    /// except `keep`, is refused from then on. How many that ends is unknown: 0.
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let Some(revocations) = &self.store.revocations else {
            return Err(StoreError::Unavailable(
                "the cookie store needs a revocation store to end a user's sessions".into(),
            ));
        };
        let id = user_marker_id(user_id);
        let now = Timestamp::now();
        let mut data = serde_json::Map::new();
        data.insert("revoked_before".into(), now.as_millis().into());
        data.insert("keep".into(), keep.map(SessionId::to_hex).into());
        let mut marker = SessionRecord {
            version: 1,
            auth: None,
            data,
            created_at: now,
            last_active_at: now,
            idle_expires_at: now.plus(USER_MARKER_LIFETIME),
            absolute_expires_at: now.plus(USER_MARKER_LIFETIME),
            client_ip: None,
            user_agent: None,
        };
        for _ in 0..8 {
            let written = match revocations.load(&id).await? {
                None => revocations.create(&id, &marker).await,
                Some(current) => {
                    marker.version = current.version + 1;
                    revocations.save(&id, &marker, current.version).await
                }
            };
            match written {
                Err(
                    StoreError::AlreadyExists | StoreError::VersionConflict | StoreError::NotFound,
                ) => {}
                other => return other.map(|()| 0),
            }
        }
        Err(StoreError::Unavailable(
            "revocation marker kept changing".into(),
        ))
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        match &self.store.revocations {
            Some(revocations) => revocations.delete_expired(now, limit).await,
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(user: &str) -> SessionRecord {
        let now = Timestamp::now();
        SessionRecord {
            version: 3,
            auth: Some(crate::AuthInfo {
                user_id: user.into(),
                authenticated_at: now,
                method: crate::AuthMethod::Password,
                credential_version: 1,
            }),
            data: Default::default(),
            created_at: now,
            last_active_at: now,
            idle_expires_at: now.plus(std::time::Duration::from_secs(60)),
            absolute_expires_at: now.plus(std::time::Duration::from_secs(600)),
            client_ip: Some("192.0.2.1".into()),
            user_agent: None,
        }
    }

    proptest! {
        /// Whatever a session holds, sealing then opening gives it back, under the
        /// same token; any single flipped byte makes the cookie unreadable.
        #[test]
        fn sealed_sessions_round_trip(
            token in any::<[u8; TOKEN_BYTES]>(),
            entries in proptest::collection::btree_map("[a-z]{1,8}", ".{0,40}", 0..8),
            flip in any::<prop::sample::Index>(),
        ) {
            let store = CookieStore::new(&[b"a property test key, 32 bytes long".as_slice()]).expect("key");
            let token = SessionToken::from_bytes(token);
            let mut record = record("7");
            for (key, value) in entries {
                record.data.insert(key, value.into());
            }
            let sealed = store.seal(&token, &record).expect("seal");
            let (opened_token, opened) = store.open(&sealed).expect("open");
            prop_assert!(opened_token == token);
            prop_assert_eq!(&opened, &record);
            prop_assert!(SessionToken::parse(&token.encode()) == Some(token));

            let mut bytes = sealed.into_bytes();
            let at = flip.index(bytes.len());
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).expect("ascii");
            prop_assert!(store.open(&tampered).is_none());
        }
    }
}
