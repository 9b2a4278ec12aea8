//! CSRF protection: a per-session synchronizer token for HTML forms, and a cross-site
//! check (Fetch Metadata, then `Origin`) for every state-changing request.

use crate::session::{random_bytes, Session, SessionError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// Session key the token is kept under. Login drops it, so every login gets a new one.
pub const CSRF_SESSION_KEY: &str = "_csrf";
/// Name of the hidden form field (and of the `X-CSRF-Token` header's twin) that carries it.
pub const CSRF_FIELD: &str = "csrf_token";

/// The session's CSRF token, created (and saved with the session) on first use. Put it
/// in every form as `<input type="hidden" name="csrf_token" value="…">`.
pub async fn csrf_token(session: &Session) -> Result<String, SessionError> {
    if let Some(token) = session.get::<String>(CSRF_SESSION_KEY).await? {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    session.insert(CSRF_SESSION_KEY, &token).await?;
    Ok(token)
}

/// Whether `submitted` is the session's token (constant-time). A session without a
/// token accepts nothing.
pub async fn verify_csrf_token(
    session: &Session,
    submitted: Option<&str>,
) -> Result<bool, SessionError> {
    let (Some(expected), Some(submitted)) =
        (session.get::<String>(CSRF_SESSION_KEY).await?, submitted)
    else {
        return Ok(false);
    };
    Ok(expected.len() == submitted.len()
        && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())))
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
    use crate::session::ClientInfo;
    use crate::store::MemoryStore;
    use crate::SessionConfig;
    use std::sync::Arc;

    fn session() -> Session {
        Session::new(
            Arc::new(MemoryStore::new()),
            Arc::new(SessionConfig::default()),
            None,
            ClientInfo::default(),
        )
    }

    #[tokio::test]
    async fn token_is_stable_per_session_and_verified_in_constant_time() {
        let session = session();
        assert!(!verify_csrf_token(&session, Some("anything"))
            .await
            .expect("verify"));
        let token = csrf_token(&session).await.expect("token");
        assert_eq!(token.len(), 43);
        assert_eq!(csrf_token(&session).await.expect("token"), token);
        assert!(verify_csrf_token(&session, Some(&token))
            .await
            .expect("verify"));
        assert!(!verify_csrf_token(&session, None).await.expect("verify"));
        assert!(!verify_csrf_token(&session, Some(&token[..42]))
            .await
            .expect("verify"));
        let mut wrong = token.clone().into_bytes();
        wrong[0] ^= 1;
        let wrong = String::from_utf8(wrong).expect("ascii");
        assert!(!verify_csrf_token(&session, Some(&wrong))
            .await
            .expect("verify"));
        assert_ne!(csrf_token(&self::session()).await.expect("token"), token);
    }

    #[tokio::test]
    async fn login_gives_a_new_token() {
        let session = session();
        let before = csrf_token(&session).await.expect("token");
        session
            .log_in("7", crate::AuthMethod::Password, 1)
            .await
            .expect("login");
        assert!(!verify_csrf_token(&session, Some(&before))
            .await
            .expect("verify"));
        assert_ne!(csrf_token(&session).await.expect("token"), before);
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
