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

use super::revocations::{Revocations, UserMarker};
use crate::session::{
    CookieSession, Loaded, SessionId, SessionRecord, SessionStorage, SessionToken, StoreError,
    TOKEN_BYTES,
};
use crate::time::Timestamp;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest cookie value sealed (browsers keep at least 4096 bytes per cookie, name and
/// attributes included).
pub const MAX_COOKIE_VALUE_BYTES: usize = 4000;
/// Shortest secret accepted for a cookie key.
pub const MIN_SECRET_BYTES: usize = 32;

const FORMAT: u8 = 1;
const KEY_ID_BYTES: usize = 4;
const NONCE_BYTES: usize = 24;
const HEADER_BYTES: usize = 1 + KEY_ID_BYTES + NONCE_BYTES;
/// Binds ciphertexts to this use, so no other sealed value opens as a session.
const ASSOCIATED_DATA: &[u8] = b"latchkey session cookie v1";

struct CookieKey {
    id: [u8; KEY_ID_BYTES],
    cipher: XChaCha20Poly1305,
    /// Keys the per-user revocation markers (see [`UserMarker`]).
    markers: [u8; 32],
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
        let markers = Sha256::new()
            .chain_update(b"latchkey revocation marker key\0")
            .chain_update(secret)
            .finalize()
            .into();
        CookieKey {
            id,
            cipher: XChaCha20Poly1305::new(&key),
            markers,
        }
    }

    /// Where this key files the revocation marker of `user_id`.
    fn user_marker(&self, user_id: &str) -> UserMarker {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.markers)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(user_id.as_bytes());
        UserMarker(mac.finalize().into_bytes().into())
    }
}

/// Seals sessions into cookies and opens them again: a [`SessionStorage`] like any other
/// (`SessionLayer::with_storage(cookie_store, config)`).
#[derive(Clone)]
pub struct CookieStore {
    keys: Arc<[CookieKey]>,
    revocations: Option<Arc<dyn Revocations>>,
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

    /// Where revocations of logged-out sessions live (for example
    /// [`super::StoreRevocations`] over the database or Redis every server process
    /// shares); without them, a copied cookie of a logged-out session stays usable until
    /// it expires or the user's credentials change.
    pub fn with_revocations(mut self, revocations: impl Revocations) -> CookieStore {
        self.revocations = Some(Arc::new(revocations));
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
        crate::bytes::random_bytes(&mut nonce);
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
}

/// How long a per-user revocation marker is kept: longer than any session can live
/// (remember-me restores are new logins, so they are not affected by old markers).
const USER_MARKER_LIFETIME: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

impl CookieStore {
    /// Records that the logged-in session `id` (holding `record`) ended, until its
    /// absolute expiry: a copy of the cookie refreshed by its own requests can outlive
    /// this copy's idle expiry, never the absolute one. Anonymous sessions carry nothing
    /// worth revoking.
    async fn revoke(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let (Some(revocations), Some(_)) = (&self.revocations, &record.auth) else {
            return Ok(());
        };
        revocations
            .revoke_session(id, record.absolute_expires_at)
            .await
    }
}

/// The encrypted cookie store as session storage: every write seals the whole session
/// into the cookie value it answers. Compare-and-swap holds within a request only (the
/// browser keeps whichever cookie came last), so `save` always succeeds.
#[async_trait]
impl SessionStorage for CookieStore {
    fn open_cookie(&self, value: &[u8]) -> Option<CookieSession> {
        let (token, record) = self.open(std::str::from_utf8(value).ok()?)?;
        Some(CookieSession {
            id: token.id(),
            token,
            carried: Some(Arc::new(record)),
        })
    }

    async fn load(&self, cookie: &CookieSession) -> Loaded {
        let Some(record) = cookie.carried.clone() else {
            return Ok(None);
        };
        if let (Some(revocations), Some(auth)) = (&self.revocations, &record.auth) {
            let id = cookie.id;
            if revocations.session_revoked(&id).await? {
                return Ok(None);
            }
            // Markers are filed under every configured key, so a key roll-over keeps them.
            for key in self.keys.iter() {
                let marker = key.user_marker(&auth.user_id);
                if revocations
                    .user_revoked(&marker, &id, auth.authenticated_at)
                    .await?
                {
                    return Ok(None);
                }
            }
        }
        Ok(Some(record))
    }

    async fn create(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError> {
        self.seal(token, record)
    }

    async fn save(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
        _expected_version: u64,
    ) -> Result<Option<String>, StoreError> {
        self.seal(token, record).map(Some)
    }

    async fn rotate(
        &self,
        old: &SessionToken,
        current: &SessionRecord,
        new: &SessionToken,
        record: &SessionRecord,
    ) -> Result<String, StoreError> {
        // Sealed first: a session too large for a cookie revokes nothing.
        let sealed = self.seal(new, record)?;
        // A copy of the old cookie must not keep a logged-in session alive.
        self.revoke(&old.id(), current).await?;
        Ok(sealed)
    }

    async fn delete(
        &self,
        token: &SessionToken,
        record: &SessionRecord,
    ) -> Result<bool, StoreError> {
        self.revoke(&token.id(), record).await?;
        Ok(true)
    }

    /// Other sessions live in other browsers: out of reach.
    async fn load_by_id(&self, _id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(None)
    }

    /// Other sessions live in other browsers: out of reach.
    async fn delete_by_id(&self, _id: &SessionId) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Other sessions live in other browsers: none can be listed.
    async fn list_for_user(
        &self,
        _user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        Ok(Vec::new())
    }

    /// Other browsers' cookies are out of reach, so this leaves a per-user marker in
    /// the revocations: every session of the user that logged in before now, except
    /// `keep`, is refused from then on. How many that ends is unknown: 0.
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let Some(revocations) = &self.revocations else {
            return Err(StoreError::Unavailable(
                "the cookie store needs revocations to end a user's sessions".into(),
            ));
        };
        let now = Timestamp::now();
        let until = now.plus(USER_MARKER_LIFETIME);
        for key in self.keys.iter() {
            revocations
                .revoke_user(&key.user_marker(user_id), now, keep, until)
                .await?;
        }
        Ok(0)
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
            auth: Some(crate::session::AuthInfo::new(
                user,
                now,
                1,
                crate::session::Authentication {
                    methods: vec!["password".into()],
                    fresh: true,
                    multi_factor: false,
                },
            )),
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
