//! Session cookie and expiry settings.

use std::time::Duration;

/// How sessions behave: cookie attributes, idle and absolute expiry, touch throttling.
///
/// Secure by default: cookies are `Secure` with the `__Host-` prefix, so they only travel
/// over https. Plain http (local development) has to be asked for by name.
///
/// ```
/// use latchkey::SessionConfig;
/// use std::time::Duration;
/// let config = SessionConfig::default().with_idle_timeout(Duration::from_secs(15 * 60));
/// assert_eq!(config.cookie_name(), "__Host-id");
/// assert!(config.secure());
/// let local = SessionConfig::insecure_for_local_development();
/// assert_eq!(local.cookie_name(), "id");
/// ```
#[derive(Debug, Clone)]
pub struct SessionConfig {
    secure: bool,
    cookie_base_name: String,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    touch_interval: Option<Duration>,
    max_write_attempts: u32,
    max_record_bytes: usize,
    max_keys: usize,
    bearer_tokens: bool,
    cookie_domain: Option<String>,
}

/// Default of [`SessionConfig::max_record_bytes`]: 64 KiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;
/// Default of [`SessionConfig::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 1024;

impl Default for SessionConfig {
    /// 30 minutes idle, 12 hours absolute, cookie `__Host-id` (`Secure`: https only),
    /// records of at most 64 KiB and 1024 keys.
    fn default() -> Self {
        SessionConfig {
            secure: true,
            cookie_base_name: "id".to_string(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            touch_interval: None,
            max_write_attempts: 200,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_keys: DEFAULT_MAX_KEYS,
            bearer_tokens: false,
            cookie_domain: None,
        }
    }
}

impl SessionConfig {
    /// The defaults over plain http, for a server on `http://localhost` during
    /// development: cookies without `Secure` or the `__Host-` prefix. Never in
    /// production: the cookies would travel in the clear.
    pub fn insecure_for_local_development() -> Self {
        SessionConfig::default().with_secure(false)
    }

    /// Whether cookies are `Secure` with the `__Host-` prefix (the default). Only a server
    /// reached over plain http turns it off.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Cookie name without the `__Host-` prefix (default `id`).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_base_name = name.into();
        self
    }

    /// How long a session lives without requests (default 30 minutes).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session lives after login or creation, active or not (default 12 hours).
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// A read-only request only writes the store to extend the idle expiry once this much
    /// time has passed since the last write (default: a fifth of the idle timeout).
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = Some(interval);
        self
    }

    /// How many times a save that lost a compare-and-swap race is re-applied before the
    /// request fails with [`crate::SessionError::Contended`] (default 200).
    pub fn with_max_write_attempts(mut self, attempts: u32) -> Self {
        self.max_write_attempts = attempts.max(1);
        self
    }

    /// Largest session record, in bytes of its JSON encoding (what the stores keep): a
    /// write that would make the record bigger fails with [`crate::SessionError::TooLarge`]
    /// and changes nothing, whatever the store.
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Most keys a session's data may hold; beyond it a write fails with
    /// [`crate::SessionError::TooLarge`] and changes nothing.
    pub fn with_max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Whether a session may travel as `Authorization: Bearer <token>` instead of a
    /// cookie (default no): for apps and scripts without a cookie jar. A request that
    /// sends both is refused (400); a bearer session never gets a cookie, and a
    /// handler hands out its token with [`crate::Session::use_bearer_token`] and
    /// [`crate::Session::bearer_token`]. Only server-side stores can carry bearer
    /// sessions (the encrypted cookie store's value changes at every write).
    pub fn with_bearer_tokens(mut self, allowed: bool) -> Self {
        self.bearer_tokens = allowed;
        self
    }

    /// Whether sessions may travel as bearer tokens.
    pub fn bearer_tokens(&self) -> bool {
        self.bearer_tokens
    }

    /// Whether cookies are `Secure` with the `__Host-` prefix.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Sends the session cookie to `domain` and every host under it (`Domain=`), so one
    /// login serves every app of the domain (forward authentication), and a logout ends
    /// it for all of them at once. The secure cookie is then `__Secure-id`: the
    /// `__Host-` prefix forbids a domain. Without it (the default) the cookie is the
    /// login host's alone. Other cookies (remember-me, CSRF) stay the host's.
    pub fn with_cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.cookie_domain = Some(domain.into());
        self
    }

    /// The domain the session cookie is sent to, if not the host alone.
    pub fn cookie_domain(&self) -> Option<&str> {
        self.cookie_domain.as_deref()
    }

    /// The session cookie's name as sent: `__Host-id` when secure, `__Secure-id` when
    /// secure for a whole domain, `id` otherwise.
    pub fn cookie_name(&self) -> String {
        match (self.secure, &self.cookie_domain) {
            (true, None) => format!("__Host-{}", self.cookie_base_name),
            (true, Some(_)) => format!("__Secure-{}", self.cookie_base_name),
            (false, _) => self.cookie_base_name.clone(),
        }
    }

    /// The session cookie holding `value`: the site's attributes
    /// ([`SessionConfig::build_cookie`]) and the domain, if one is set.
    pub fn session_cookie(&self, value: String) -> cookie::Cookie<'static> {
        let mut cookie = self.build_cookie(&self.cookie_name(), value);
        if let Some(domain) = &self.cookie_domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    /// A cookie with the attributes every cookie of this site gets: `HttpOnly`,
    /// `SameSite=Lax`, `Path=/`, and `Secure` when [`SessionConfig::secure`]. The session
    /// cookie is one; auth's remember-me cookie and the CSRF cookie use the same.
    pub fn build_cookie(&self, name: &str, value: String) -> cookie::Cookie<'static> {
        site_cookie(name, value, self.secure)
    }

    /// Idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Absolute timeout.
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }

    /// Minimum time between two idle-expiry refreshes of an unchanged session.
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval.unwrap_or(self.idle_timeout / 5)
    }

    /// Maximum attempts for one compare-and-swap save.
    pub fn max_write_attempts(&self) -> u32 {
        self.max_write_attempts
    }

    /// Largest session record, in encoded bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Most keys in a session's data.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}

/// A cookie with the site's attributes: `HttpOnly`, `SameSite=Lax`, `Path=/`, and
/// `Secure` when `secure` (what [`SessionConfig::build_cookie`] gives).
pub(crate) fn site_cookie(name: &str, value: String, secure: bool) -> cookie::Cookie<'static> {
    cookie::Cookie::build((name.to_string(), value))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .secure(secure)
        .build()
}
