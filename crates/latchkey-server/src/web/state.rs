//! What every handler shares: the server's state, built once per process.

use crate::web::forwarded::TrustedProxies;
use crate::web::templates::Templates;
use latchkey::access_rules::AccessRules;
use latchkey::access_token::{AccessTokenStore, TokenLifetime, TokenScopes};
use latchkey::csrf::CsrfKey;
use latchkey::factors::passkeys::{PasskeyStore, Webauthn};
use latchkey::factors::SecondFactorStore;
use latchkey::mail::outbox::{Outbox, OutboxWorker};
use latchkey::mail::MailSeal;
use latchkey::oidc::identities::IdentityStore;
use latchkey::oidc::IdentityProvider;
use latchkey::throttle::Throttle;
use latchkey::user::groups::GroupStore;
use latchkey::user::tokens::TokenStore;
use latchkey::{PasswordBackend, PasswordPolicy, UserStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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

    /// The fields, for as long as the process lives (for tasks spawned with a part).
    pub fn shared(self) -> &'static Shared {
        self.0
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
    /// The users' second factors (TOTP secrets, recovery codes).
    pub factors: Arc<dyn SecondFactorStore>,
    /// Passkeys, unless the public URL has no host name to be their relying party.
    pub passkeys: Option<PasskeyFlows>,
    /// What the mail flows (reset, verification, sign-in by mail, email change,
    /// notices) need.
    pub mail: MailFlows,
    /// Sign-in with other identity providers.
    pub providers: Providers,
    /// Personal access tokens: where they are kept, and how long they live.
    pub tokens: ApiTokens,
    /// Forward authentication for the apps behind a proxy (`--access-rules`).
    pub forward: Option<ForwardAuth>,
    /// Users' groups.
    pub groups: Arc<dyn GroupStore>,
}

/// Forward authentication: the access rules in force, replaced whole when the file is
/// read again (SIGHUP).
pub struct ForwardAuth {
    /// The rules file.
    pub file: std::path::PathBuf,
    rules: std::sync::RwLock<Arc<AccessRules>>,
}

impl ForwardAuth {
    /// Forward authentication with `rules`, read from `file`.
    pub fn new(file: std::path::PathBuf, rules: AccessRules) -> Self {
        ForwardAuth {
            file,
            rules: std::sync::RwLock::new(Arc::new(rules)),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<AccessRules> {
        self.rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again: the new rules take over, or the old ones stay and the
    /// reason is answered (line and cause).
    pub fn reload(&self) -> Result<usize, String> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|error| format!("{}: {error}", self.file.display()))?;
        let rules = AccessRules::parse(&text)
            .map_err(|error| format!("{}: {error}", self.file.display()))?;
        let count = rules.rules().len();
        *self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(rules);
        Ok(count)
    }
}

/// Personal access tokens (the same store the authenticator checks bearer tokens in).
pub struct ApiTokens {
    /// Where they are kept.
    pub store: Arc<dyn AccessTokenStore>,
    /// How long they live (`--max-token-lifetime`, `--allow-tokens-without-expiry`).
    pub lifetime: TokenLifetime,
    /// Whether a login may hand out a bearer session (`?session=token`): only with a
    /// server-side session store.
    pub bearer_sessions: bool,
}

impl ApiTokens {
    /// The scopes the server's tokens carry: `read` (safe methods) and `write`.
    pub fn scopes() -> TokenScopes {
        TokenScopes::read_write()
    }
}

/// Sign-in with other identity providers (`--oidc-provider`).
pub struct Providers {
    /// The configured providers, in the order given.
    pub list: Vec<Provider>,
    /// Who is linked to whom.
    pub identities: Arc<dyn IdentityStore>,
}

/// One configured provider.
pub struct Provider {
    /// Its client (an OpenID Connect one discovered at start, or GitHub's).
    pub client: IdentityProvider,
    /// The words of its button.
    pub label: String,
}

impl Providers {
    /// The provider configured as `name`.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.list
            .iter()
            .find(|provider| provider.client.name() == name)
    }
}

/// What passkeys need: the relying party and where passkeys live.
pub struct PasskeyFlows {
    /// The WebAuthn relying party (id and origin from `--public-url`).
    pub webauthn: Webauthn,
    /// The users' passkeys.
    pub store: Arc<dyn PasskeyStore>,
}

/// What the mail flows need.
pub struct MailFlows {
    /// The single-use tokens the mails carry.
    pub tokens: Arc<dyn TokenStore>,
    /// Where notices are queued.
    pub outbox: Arc<dyn Outbox>,
    /// What notices are sealed with before they are queued.
    pub seal: MailSeal,
    /// The worker that sends the outbox, woken when a mail is queued.
    pub worker: OutboxWorker,
    /// The public URL links in mails start with (no trailing slash).
    pub public_url: String,
    /// How long each kind of link is valid.
    pub lifetimes: TokenLifetimes,
    /// Password logins wait for a verified email.
    pub require_verified_email: bool,
    /// A password reset from a link logs the user in.
    pub reset_logs_in: bool,
    /// Bounds the mail requests being worked on after their answer went out.
    pub background: Arc<Semaphore>,
}

/// How long each kind of mailed link is valid.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    /// Password reset.
    pub reset: Duration,
    /// Email verification and email change.
    pub verify: Duration,
    /// Sign-in by link or code.
    pub sign_in: Duration,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        TokenLifetimes {
            reset: Duration::from_secs(30 * 60),
            verify: Duration::from_secs(24 * 3600),
            sign_in: Duration::from_secs(15 * 60),
        }
    }
}

/// Mail requests (reset, sign-in, resend) worked on at once after their 202 went out;
/// beyond it the request is answered 503, known address or not.
pub const MAIL_REQUESTS_IN_FLIGHT: usize = 256;
