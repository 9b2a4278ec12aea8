//! What auth knows of one request: its authenticator, the remember-me cookie the browser
//! sent and what the response must do with it, and the user once resolved.

use super::Authenticator;
use crate::access_token::{AccessTokenRecord, TokenRefusal};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the response must do with the remember-me cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RememberCookie {
    /// Send this value (`series.validator`), kept by the browser for `max_age`.
    Set { value: String, max_age: Duration },
    /// Expire the cookie.
    Remove,
}

/// A personal access token a request came with, and what it asks to do (the scopes are
/// checked against the method and path).
pub(crate) struct BearerAccessToken {
    pub text: String,
    pub method: String,
    pub path: String,
}

/// One request's auth state, shared by its [`super::AuthSession`]s, its guards and the
/// [`super::AuthLayer`] that answers it.
pub(crate) struct RequestAuth<U> {
    pub(crate) authenticator: Authenticator<U>,
    /// The remember-me cookie the browser sent, if any.
    remember_in: Option<String>,
    /// The personal access token the request came with, if any (then it has no session).
    pub(crate) access_token: Option<BearerAccessToken>,
    state: Mutex<State<U>>,
}

struct State<U> {
    /// What the response must do with the remember-me cookie.
    remember_out: Option<RememberCookie>,
    /// The logged-in user (`Some(None)`: nobody), once resolved or changed; shared with
    /// the authenticator's user cache.
    user: Option<Option<Arc<U>>>,
    /// A login of this request remembered the device (a new remember-me token).
    device_remembered: bool,
    /// The access token that logged this request in, once checked.
    token: Option<Arc<AccessTokenRecord>>,
    /// Why the request's bearer credential (an access token, a session token) was
    /// refused, if it was.
    bearer_refusal: Option<TokenRefusal>,
}

impl<U: Clone> RequestAuth<U> {
    pub(crate) fn new(authenticator: Authenticator<U>, remember_in: Option<String>) -> Self {
        Self::with_access_token(authenticator, remember_in, None)
    }

    pub(crate) fn with_access_token(
        authenticator: Authenticator<U>,
        remember_in: Option<String>,
        access_token: Option<BearerAccessToken>,
    ) -> Self {
        RequestAuth {
            authenticator,
            remember_in,
            access_token,
            state: Mutex::new(State {
                remember_out: None,
                user: None,
                device_remembered: false,
                token: None,
                bearer_refusal: None,
            }),
        }
    }

    /// The access token that logged this request in, once checked.
    pub(crate) fn token(&self) -> Option<Arc<AccessTokenRecord>> {
        self.state().token.clone()
    }

    /// Records the access token that logged this request in.
    pub(crate) fn set_token(&self, record: AccessTokenRecord) {
        self.state().token = Some(Arc::new(record));
    }

    /// Why the request's bearer credential was refused, if it was.
    pub(crate) fn bearer_refusal(&self) -> Option<TokenRefusal> {
        self.state().bearer_refusal
    }

    /// Records why the request's bearer credential was refused.
    pub(crate) fn refuse_bearer(&self, refusal: TokenRefusal) {
        self.state().bearer_refusal = Some(refusal);
    }

    fn state(&self) -> MutexGuard<'_, State<U>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The remember-me cookie the browser sent.
    pub(crate) fn remember_cookie_in(&self) -> Option<&str> {
        self.remember_in.as_deref()
    }

    /// Tells the response what to do with the remember-me cookie. Removing a cookie the
    /// browser did not send only undoes one this response was going to set.
    pub(crate) fn set_remember_cookie(&self, change: RememberCookie) {
        let mut state = self.state();
        if change == RememberCookie::Remove && self.remember_in.is_none() {
            if matches!(state.remember_out, Some(RememberCookie::Set { .. })) {
                state.remember_out = Some(RememberCookie::Remove);
            }
            return;
        }
        state.remember_out = Some(change);
    }

    /// What the response must do with the remember-me cookie.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    /// Records that a login of this request remembered the device.
    pub(crate) fn note_device_remembered(&self) {
        self.state().device_remembered = true;
    }

    /// Whether a login of this request remembered the device.
    pub(crate) fn device_remembered(&self) -> bool {
        self.state().device_remembered
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn remember_cookie_out(&self) -> Option<RememberCookie> {
        self.state().remember_out.clone()
    }

    /// The user, if this request resolved it already (`Some(None)`: nobody logged in).
    pub(crate) fn known_user(&self) -> Option<Option<Arc<U>>> {
        self.state().user.clone()
    }

    /// Records who is logged in now (after a login, logout or lookup).
    pub(crate) fn know_user(&self, user: Option<Arc<U>>) {
        self.state().user = Some(user);
    }

    /// Forgets the resolved user: the next read resolves it again.
    pub(crate) fn forget_known_user(&self) {
        self.state().user = None;
    }
}
