//! What every handler shares: the server's state, built once per process.

use crate::forwarded::TrustedProxies;
use crate::templates::Templates;
use latchkey::csrf::CsrfKey;
use latchkey::throttle::Throttle;
use latchkey::{PasswordBackend, PasswordPolicy, UserStore};
use std::sync::Arc;

/// Largest request body accepted (JSON and forms).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share. It lives as long as the process (a server builds it once),
/// so extracting it copies a reference: no reference counting per request, which showed
/// up in profiles as the atomic increment and decrement of an `Arc`.
#[derive(Clone, Copy)]
pub struct AppState(&'static Shared);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        self.0
    }
}

impl AppState {
    /// The state over `shared`, kept for the rest of the process.
    pub fn new(shared: Shared) -> Self {
        AppState(Box::leak(Box::new(shared)))
    }
}

/// The server's auth backend: latchkey's users with passwords.
pub type Backend = PasswordBackend<Arc<dyn UserStore>>;

/// The fields of [`AppState`].
pub struct Shared {
    /// The users and their passwords, through latchkey's one auth backend trait (the
    /// authenticator loads users through the same value).
    pub backend: Arc<Backend>,
    /// Rules for new passwords.
    pub policy: PasswordPolicy,
    /// The HTML templates.
    pub templates: Templates,
    /// `scheme://host[:port]` of the public URL, for cross-site checks.
    pub public_origin: String,
    /// Failed-login and sign-up throttling, counted in the session store's backend.
    pub throttle: Throttle,
    /// The reverse proxies whose forwarding header is believed.
    pub proxies: TrustedProxies,
    /// The key of the forms' CSRF tokens.
    pub csrf: CsrfKey,
}
