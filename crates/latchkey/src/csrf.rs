//! CSRF protection: form tokens that need no stored session, and a cross-site check
//! (Fetch Metadata, then `Origin`) for every state-changing request.
//!
//! A form token is an HMAC-SHA256, under the server's [`CsrfKey`], of what ties the form
//! to one browser:
//! * a stored session's id, when there is one: the token changes with every login and
//!   token rotation, and is worthless in any other session;
//! * otherwise a random value of the browser's own, kept in a cookie of its own
//!   ([`BrowserNonce`]): OWASP's signed double-submit cookie. An anonymous visitor who
//!   only looks at pages costs the server nothing.
//!
//! A logged-in session accepts only its session-bound token; a session that is not
//! logged in (or none) also accepts the browser-bound one. Another browser's token, a
//! token of another session and a token made with another key are refused.
//!
//! ```
//! # async fn demo() -> Result<(), latchkey::SessionError> {
//! use latchkey::csrf::{BrowserNonce, CsrfKey};
//! # let session = latchkey::Session::new(
//! #     std::sync::Arc::new(latchkey::store::MemoryStore::new()),
//! #     std::sync::Arc::new(latchkey::SessionConfig::insecure_for_local_development()),
//! #     None,
//! #     Default::default(),
//! # );
//! let key = CsrfKey::derive(b"the server's secret key, 32 bytes or more");
//! let browser = BrowserNonce::generate(); // sent back in the `csrf` cookie
//! let token = key.form_token(&session, &browser).await?;
//! assert!(key.verify(&session, Some(&browser), Some(&token)).await?);
//! assert!(!key.verify(&session, Some(&BrowserNonce::generate()), Some(&token)).await?);
//! assert!(session.record().await?.is_none()); // nothing was stored
//! # Ok(()) }
//! ```

use crate::bytes::random_bytes;
use crate::session::{Session, SessionError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// Name of the hidden form field that carries the token.
pub const CSRF_FIELD: &str = "csrf_token";

/// Bytes of a [`BrowserNonce`] and of a form token.
const TOKEN_BYTES: usize = 32;

/// The name of the cookie that holds a browser's [`BrowserNonce`]: `__Host-csrf` over
/// https (`secure`), `csrf` otherwise.
pub fn browser_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-csrf"
    } else {
        "csrf"
    }
}

/// The key form tokens are made with. Every process that serves the same site needs the
/// same key (derive it from the secret the deployment already shares); a form made
/// under another key is refused.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// The key derived from a server secret (HMAC-SHA256 of a fixed label under it), so
    /// the secret itself is never used for anything else here.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"latchkey csrf key v1");
        CsrfKey(mac.finalize().into_bytes().into())
    }

    /// A random key for this process only: forms do not survive a restart, and another
    /// process refuses them.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        random_bytes(&mut key);
        CsrfKey(key)
    }

    fn mac(&self, binding: Binding<'_>) -> [u8; TOKEN_BYTES] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        match binding {
            Binding::Session(id) => {
                mac.update(b"session\0");
                mac.update(id);
            }
            Binding::Browser(nonce) => {
                mac.update(b"browser\0");
                mac.update(&nonce.0);
            }
        }
        mac.finalize().into_bytes().into()
    }

    /// The token to put in a form shown to this request: bound to the session if one is
    /// stored, to `browser` otherwise. Reads the session (no write).
    pub async fn form_token(
        &self,
        session: &Session,
        browser: &BrowserNonce,
    ) -> Result<String, SessionError> {
        let binding = match session.id().await? {
            Some(id) => self.mac(Binding::Session(&id.0)),
            None => self.mac(Binding::Browser(browser)),
        };
        Ok(URL_SAFE_NO_PAD.encode(binding))
    }

    /// Whether `submitted` is a token this request may use: the session-bound one, or,
    /// while nobody is logged in, the one bound to the browser's own `browser` value.
    /// Compared in constant time.
    pub async fn verify(
        &self,
        session: &Session,
        browser: Option<&BrowserNonce>,
        submitted: Option<&str>,
    ) -> Result<bool, SessionError> {
        let Some(submitted) = submitted.and_then(decode_token) else {
            return Ok(false);
        };
        let (id, logged_in) = (session.id().await?, session.auth().await?.is_some());
        let mut accepted = subtle::Choice::from(0);
        if let Some(id) = id {
            accepted |= self.mac(Binding::Session(&id.0)).ct_eq(&submitted);
        }
        if let (false, Some(browser)) = (logged_in, browser) {
            accepted |= self.mac(Binding::Browser(browser)).ct_eq(&submitted);
        }
        Ok(bool::from(accepted))
    }
}

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(<redacted>)")
    }
}

/// What a token is bound to.
enum Binding<'a> {
    Session(&'a [u8; 32]),
    Browser(&'a BrowserNonce),
}

/// A token in its form-field shape, decoded; `None` for anything else.
fn decode_token(text: &str) -> Option<[u8; TOKEN_BYTES]> {
    let mut bytes = [0u8; TOKEN_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
        Ok(TOKEN_BYTES) => Some(bytes),
        _ => None,
    }
}

/// A browser's own random value for the signed double-submit cookie: 32 bytes from the
/// OS CSPRNG, kept in the [`browser_cookie_name`] cookie (43 base64url characters).
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserNonce([u8; TOKEN_BYTES]);

impl BrowserNonce {
    /// A new random value.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        random_bytes(&mut bytes);
        BrowserNonce(bytes)
    }

    /// The value of a cookie, if it is one (43 canonical base64url characters).
    pub fn parse(cookie_value: &str) -> Option<Self> {
        (cookie_value.len() == 43)
            .then(|| decode_token(cookie_value))
            .flatten()
            .map(BrowserNonce)
    }

    /// The cookie form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for BrowserNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrowserNonce(<redacted>)")
    }
}

/// What the request's headers say about where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrigin {
    /// Sent by a page of this site (or typed by the user).
    SameOrigin,
    /// Sent by another site: refuse any state change.
    CrossSite,
    /// No browser headers at all (curl, server-to-server): CSRF needs a browser, so
    /// this is allowed, but HTML forms still need the token.
    Unknown,
}

/// Classifies a request from its `Sec-Fetch-Site` and `Origin` headers against the
/// site's own origin (`https://login.example.com`).
///
/// ```
/// use latchkey::csrf::{request_origin, RequestOrigin};
/// let origin = "https://login.example.com";
/// assert_eq!(request_origin(Some("cross-site"), None, origin), RequestOrigin::CrossSite);
/// assert_eq!(request_origin(None, Some("https://evil.example"), origin), RequestOrigin::CrossSite);
/// assert_eq!(request_origin(Some("same-origin"), Some(origin), origin), RequestOrigin::SameOrigin);
/// assert_eq!(request_origin(None, None, origin), RequestOrigin::Unknown);
/// ```
pub fn request_origin(
    sec_fetch_site: Option<&str>,
    origin: Option<&str>,
    site_origin: &str,
) -> RequestOrigin {
    match sec_fetch_site.map(str::trim) {
        Some("same-origin") | Some("none") => return RequestOrigin::SameOrigin,
        // Sibling subdomains are not trusted.
        Some("cross-site") | Some("same-site") => return RequestOrigin::CrossSite,
        _ => {}
    }
    match origin.map(str::trim) {
        Some(origin) if origin.eq_ignore_ascii_case(site_origin.trim_end_matches('/')) => {
            RequestOrigin::SameOrigin
        }
        // Includes `Origin: null` (sandboxed frames, some redirects).
        Some(_) => RequestOrigin::CrossSite,
        None => RequestOrigin::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ClientInfo, CookieChange};
    use crate::store::MemoryStore;
    use crate::SessionConfig;
    use std::sync::Arc;

    fn store_and_session() -> (MemoryStore, Session) {
        let store = MemoryStore::new();
        let session = Session::new(
            Arc::new(store.clone()),
            Arc::new(SessionConfig::insecure_for_local_development()),
            None,
            ClientInfo::default(),
        );
        (store, session)
    }

    fn flipped(token: &str, position: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ascii")
    }

    #[tokio::test]
    async fn an_anonymous_form_is_bound_to_its_browser_and_stores_nothing() {
        let (store, session) = store_and_session();
        let key = CsrfKey::derive(&[7; 32]);
        let browser = BrowserNonce::generate();
        let token = key.form_token(&session, &browser).await.expect("token");
        assert_eq!(token.len(), 43);
        assert_eq!(
            key.form_token(&session, &browser).await.expect("token"),
            token
        );
        let verify = |browser: Option<&BrowserNonce>, submitted: Option<&str>| {
            let (key, session) = (&key, &session);
            let (browser, submitted) = (browser.cloned(), submitted.map(str::to_string));
            async move {
                key.verify(session, browser.as_ref(), submitted.as_deref())
                    .await
                    .expect("verify")
            }
        };
        assert!(verify(Some(&browser), Some(&token)).await);
        // Another browser's cookie, no cookie, no token, a changed or cut token.
        assert!(!verify(Some(&BrowserNonce::generate()), Some(&token)).await);
        assert!(!verify(None, Some(&token)).await);
        assert!(!verify(Some(&browser), None).await);
        assert!(!verify(Some(&browser), Some(&token[..42])).await);
        for position in [0, 21, 41] {
            assert!(!verify(Some(&browser), Some(&flipped(&token, position))).await);
        }
        // The cookie value itself is not a token.
        assert!(!verify(Some(&browser), Some(&browser.encode())).await);
        // Another key's token.
        let other_key = CsrfKey::derive(&[8; 32]);
        let foreign = other_key
            .form_token(&session, &browser)
            .await
            .expect("token");
        assert!(!verify(Some(&browser), Some(&foreign)).await);
        // Looking and checking stored nothing.
        assert!(store.is_empty());
        assert_eq!(session.commit().await.expect("commit"), CookieChange::Keep);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_login_needs_the_token_of_its_own_session() {
        let (_store, session) = store_and_session();
        let key = CsrfKey::generate();
        let browser = BrowserNonce::generate();
        let anonymous = key.form_token(&session, &browser).await.expect("token");
        session
            .log_in("7", 1, crate::Authentication::default())
            .await
            .expect("login");
        // Logged in: the browser-bound token no longer counts.
        assert!(!key
            .verify(&session, Some(&browser), Some(&anonymous))
            .await
            .expect("verify"));
        let bound = key.form_token(&session, &browser).await.expect("token");
        assert_ne!(bound, anonymous);
        assert!(key
            .verify(&session, Some(&browser), Some(&bound))
            .await
            .expect("verify"));
        // A new token for the session (a second login) makes the old form worthless.
        session.cycle_token().await.expect("cycle");
        assert!(!key
            .verify(&session, Some(&browser), Some(&bound))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn an_anonymous_session_takes_both_tokens() {
        let (_store, session) = store_and_session();
        let key = CsrfKey::generate();
        let browser = BrowserNonce::generate();
        let before = key.form_token(&session, &browser).await.expect("token");
        session.insert("theme", "dark").await.expect("insert");
        session.commit().await.expect("commit");
        let bound = key.form_token(&session, &browser).await.expect("token");
        assert_ne!(bound, before);
        for token in [&before, &bound] {
            assert!(key
                .verify(&session, Some(&browser), Some(token))
                .await
                .expect("verify"));
        }
    }

    #[test]
    fn browser_nonces_parse_only_their_own_shape() {
        let nonce = BrowserNonce::generate();
        assert_eq!(BrowserNonce::parse(&nonce.encode()), Some(nonce.clone()));
        assert_ne!(BrowserNonce::generate(), nonce);
        for bad in [
            "",
            "short",
            &"A".repeat(44),
            &"=".repeat(43),
            &"é".repeat(21),
        ] {
            assert_eq!(BrowserNonce::parse(bad), None, "{bad}");
        }
        assert_eq!(browser_cookie_name(true), "__Host-csrf");
        assert_eq!(browser_cookie_name(false), "csrf");
    }

    #[test]
    fn origins_are_classified() {
        let site = "https://login.example.com";
        let cases = [
            (Some("same-origin"), None, RequestOrigin::SameOrigin),
            (Some("none"), None, RequestOrigin::SameOrigin),
            (Some("same-site"), Some(site), RequestOrigin::CrossSite),
            (Some("cross-site"), Some(site), RequestOrigin::CrossSite),
            (
                None,
                Some("https://login.example.com"),
                RequestOrigin::SameOrigin,
            ),
            (
                None,
                Some("https://LOGIN.example.com"),
                RequestOrigin::SameOrigin,
            ),
            (
                None,
                Some("https://login.example.com.evil.example"),
                RequestOrigin::CrossSite,
            ),
            (
                None,
                Some("http://login.example.com"),
                RequestOrigin::CrossSite,
            ),
            (None, Some("null"), RequestOrigin::CrossSite),
            (None, None, RequestOrigin::Unknown),
            (Some("garbage"), None, RequestOrigin::Unknown),
        ];
        for (fetch_site, origin, expected) in cases {
            assert_eq!(
                request_origin(fetch_site, origin, site),
                expected,
                "{fetch_site:?} {origin:?}"
            );
        }
    }
}
