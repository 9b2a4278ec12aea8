//! Logging users in and out on top of a [`Session`], and checking credentials.
//!
//! Auth is a floor of its own above the session: [`AuthLayer`] (inside the
//! [`crate::session::SessionLayer`]) gives each request its [`Authenticator`], reads and writes the
//! remember-me cookie, and keeps the request's user once resolved; [`AuthSession`] and the
//! guards in `latchkey::axum` are the handlers' view of it. The session only stores the
//! login record ([`crate::session::AuthInfo`]) that auth writes.

#[cfg(feature = "axum")]
mod layer;

#[cfg(feature = "axum")]
pub use layer::{remember_cookie_name, AuthFuture, AuthLayer, AuthService, RefusedBearer};
pub(crate) use request::{BearerAccessToken, RememberCookie, RequestAuth};

mod backend;
pub mod credentials;
mod gate;
mod request;

pub use backend::{AuthBackend, PasswordBackend, PasswordCredentials};
use backend::{CheckCredentials, LoadUser};
use credentials::{CredentialEvent, Ended, Holders, SessionsEnded};
pub use gate::{
    Evidence, Proof, Refusal, SecondFactorSource, SecondStepFor, SignIn, DEFAULT_SECOND_STEP_WITHIN,
};
use gate::{GateSettings, PendingLogin, Verdict, PENDING_KEY};

use crate::access_token::{self, AccessTokenRecord, AccessTokenStore, TokenRefusal, TokenScopes};
use crate::password::PasswordError;
use crate::remember::{
    cookie_value as remember_cookie_value, new_series, parse_cookie as parse_remember_cookie,
    RememberRecord, RememberStore, Validator, MAX_REMEMBER_DAYS, ROTATION_GRACE,
};
use crate::session::{AuthInfo, Authentication, Session, SessionError, SessionId};
use crate::store_error::StoreFailure;
use crate::time::Timestamp;
use crate::user::{AuthUser, UserStoreError};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The session could not be read or written.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The user store failed.
    #[error(transparent)]
    Users(#[from] UserStoreError),
    /// Hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A store that holds no sessions failed (remember-me, second factors, passkeys,
    /// mailed tokens, the outbox, the throttle): its own error says which.
    #[error("{0}")]
    Store(Box<dyn StoreFailure>),
    /// [`AuthSession::authenticate`] was given credentials of a type the authenticator's
    /// backend does not take (a programming error: the type's name).
    #[error("the authenticator's backend does not take {0}")]
    WrongCredentials(&'static str),
}

/// A session store's error is a session error.
impl From<crate::session::StoreError> for AuthError {
    fn from(error: crate::session::StoreError) -> Self {
        AuthError::Session(SessionError::from(error))
    }
}

/// Every store family's error ([`crate::store_error`]) is an auth error.
impl<E: StoreFailure> From<E> for AuthError {
    fn from(error: E) -> Self {
        AuthError::Store(Box::new(error))
    }
}

impl AuthError {
    /// Whether a backing service is down (answer 503 rather than 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            AuthError::Session(error) => error.is_unavailable(),
            AuthError::Users(UserStoreError::Unavailable(_)) => true,
            AuthError::Store(error) => error.is_unavailable(),
            _ => false,
        }
    }
}

/// Shared auth settings and the user loader. Give it to the router with
/// [`AuthLayer::new`] (inside the session layer) and extract [`AuthSession`] in handlers.
/// Cloning it is one reference-count increment.
///
/// Loaded users are cached for a short time (default 2 seconds), so a read of the
/// current user normally costs no query; a password change or disable made by another
/// process is seen within that time. Call [`Authenticator::forget_user`] after changing a
/// user in this process.
pub struct Authenticator<U> {
    inner: Arc<AuthenticatorInner<U>>,
}

struct AuthenticatorInner<U> {
    backend: Box<dyn LoadUser<U>>,
    /// The same backend as an `Arc<dyn CheckCredentials<U, B::Credentials>>`, for
    /// [`AuthSession::authenticate`] to find by the credentials' type.
    credentials: Box<dyn Any + Send + Sync>,
    users: UserCache<U>,
    unauthorized_message: String,
    fresh_within: Option<Duration>,
    second_factor_within: Option<Duration>,
    login_url: String,
    remember: Option<Box<dyn RememberStore>>,
    remember_grace: Duration,
    gate: GateSettings,
    access_tokens: Option<AccessTokens>,
}

/// Where personal access tokens are checked, and the scopes they may carry.
struct AccessTokens {
    store: Box<dyn AccessTokenStore>,
    scopes: TokenScopes,
}

impl<U> Clone for Authenticator<U> {
    fn clone(&self) -> Self {
        Authenticator {
            inner: self.inner.clone(),
        }
    }
}

impl<U: AuthUser> Authenticator<U> {
    /// An authenticator over `backend`: it loads the users of sessions (the user loader
    /// of Flask-Login and Microdot), and checks credentials at login through
    /// [`AuthSession::authenticate`], then [`AuthSession::login`].
    pub fn new<B: AuthBackend<User = U>>(backend: B) -> Self {
        let backend = Arc::new(backend);
        let credentials: Arc<dyn CheckCredentials<U, B::Credentials>> = backend.clone();
        Authenticator {
            inner: Arc::new(AuthenticatorInner {
                backend: Box::new(backend),
                credentials: Box::new(credentials),
                users: UserCache::new(Duration::from_secs(2)),
                unauthorized_message: "login required".to_string(),
                fresh_within: None,
                second_factor_within: None,
                login_url: "/login".to_string(),
                remember: None,
                remember_grace: ROTATION_GRACE,
                gate: GateSettings::default(),
                access_tokens: None,
            }),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut AuthenticatorInner<U>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => tracing::warn!("Authenticator settings changed after it was shared: ignored"),
        }
        self
    }

    /// Caches loaded users for `ttl` (zero disables the cache).
    pub fn with_user_cache(self, ttl: Duration) -> Self {
        self.configure(|inner| inner.users = UserCache::new(ttl))
    }

    /// The `error` text of the 401 answer to requests that need a login.
    pub fn with_unauthorized_message(self, message: &str) -> Self {
        self.configure(|inner| inner.unauthorized_message = message.to_string())
    }

    /// A password login only counts as fresh for this long (default: the whole session).
    pub fn with_fresh_within(self, window: Duration) -> Self {
        self.configure(|inner| inner.fresh_within = Some(window))
    }

    /// A login completed with a second factor only satisfies
    /// `latchkey::axum::RequireSecondFactor` for this long (default: the whole session).
    pub fn with_second_factor_within(self, window: Duration) -> Self {
        self.configure(|inner| inner.second_factor_within = Some(window))
    }

    /// Where browsers that need to log in are sent (default `/login`), with `?next=`
    /// the page they asked for.
    pub fn with_login_url(self, url: &str) -> Self {
        self.configure(|inner| inner.login_url = url.to_string())
    }

    /// Enables remember-me ("Stay logged in") with tokens kept in `store`.
    pub fn with_remember_store(self, store: impl RememberStore) -> Self {
        self.configure(|inner| inner.remember = Some(Box::new(store)))
    }

    /// How long a rotated-away remember-me validator still works, so that parallel
    /// requests carrying it are not taken for theft (default 60 s).
    pub fn with_remember_grace(self, grace: Duration) -> Self {
        self.configure(|inner| inner.remember_grace = grace)
    }

    /// Where the gate learns which second factors a user has: a one-factor proof of a
    /// user who has any waits for one of them (see [`AuthSession::sign_in`]).
    pub fn with_second_factors(self, source: impl SecondFactorSource) -> Self {
        self.configure(|inner| inner.gate.second_factors = Some(Box::new(source)))
    }

    /// Whether the gate refuses users whose email address is not verified (default no).
    pub fn with_verified_email_required(self, required: bool) -> Self {
        self.configure(|inner| inner.gate.require_verified_email = required)
    }

    /// How long a login may wait for its second factor (default
    /// [`DEFAULT_SECOND_STEP_WITHIN`]).
    pub fn with_second_step_within(self, window: Duration) -> Self {
        self.configure(|inner| inner.gate.second_step_within = window)
    }

    /// Lets requests log in with a personal access token (`Authorization: Bearer lk_…`)
    /// kept in `store`, through the gate (method `api_token`, never fresh), for what its
    /// `scopes` allow. The session layer must carry bearer tokens
    /// ([`crate::SessionConfig::with_bearer_tokens`]). Nothing is cached: a revoked or
    /// expired token is refused at once, in every process.
    pub fn with_access_tokens(self, store: impl AccessTokenStore, scopes: TokenScopes) -> Self {
        self.configure(|inner| {
            inner.access_tokens = Some(AccessTokens {
                store: Box::new(store),
                scopes,
            })
        })
    }

    /// The access token store, if access tokens are enabled.
    pub fn access_token_store(&self) -> Option<&dyn AccessTokenStore> {
        self.inner
            .access_tokens
            .as_ref()
            .map(|tokens| tokens.store.as_ref())
    }

    /// The scopes access tokens may carry, if access tokens are enabled.
    pub fn token_scopes(&self) -> Option<&TokenScopes> {
        self.inner
            .access_tokens
            .as_ref()
            .map(|tokens| &tokens.scopes)
    }

    /// How long a login waits in its session for the second step.
    pub fn second_step_window(&self) -> Duration {
        self.inner.gate.second_step_within
    }

    /// The remember-me token store, if remember-me is enabled.
    pub fn remember_store(&self) -> Option<&dyn RememberStore> {
        self.inner.remember.as_deref()
    }

    /// The login page URL.
    pub fn login_url(&self) -> &str {
        &self.inner.login_url
    }

    /// The 401 message.
    pub fn unauthorized_message(&self) -> &str {
        &self.inner.unauthorized_message
    }

    /// Drops a cached user (call after changing it in this process).
    pub fn forget_user(&self, user_id: &str) {
        self.inner.users.remove(user_id);
    }

    async fn load_user(&self, user_id: &str) -> Result<Option<Arc<U>>, UserStoreError> {
        self.load_user_at(user_id, Timestamp::now()).await
    }

    /// The user, from the cache if it was loaded less than its time to live before `now`.
    /// Shared with the cache (and the request's memo): no copy of the user is made.
    async fn load_user_at(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Option<Arc<U>>, UserStoreError> {
        if let Some(user) = self.inner.users.get(user_id, now) {
            return Ok(Some(user));
        }
        let user = self.inner.backend.get_user(user_id).await?.map(Arc::new);
        if let Some(user) = &user {
            self.inner.users.insert(user_id, user.clone(), now);
        }
        Ok(user)
    }

    /// The gate's verdict on `proofs` (first to last) for `user`; nothing is written.
    async fn judge(&self, user: &U, proofs: &[(&str, Evidence)]) -> Result<Verdict, AuthError> {
        self.inner
            .gate
            .judge(
                &user.user_id(),
                user.is_active(),
                user.email_verified(),
                proofs,
            )
            .await
    }

    /// The auth view of one request's session, outside [`AuthLayer`] (tests, background
    /// tasks): no remember-me cookie is read or written.
    pub fn session(&self, session: Session) -> AuthSession<U> {
        AuthSession {
            session,
            request: Arc::new(RequestAuth::new(self.clone(), None)),
        }
    }
}

/// Most users held by the user cache; past it the cache starts over.
const USER_CACHE_CAPACITY: usize = 100_000;

/// Users loaded in the last `ttl`, keyed by user id. Times are the requests' own clock
/// readings (a request reads the clock once); an entry from the future (the wall clock
/// went back) counts as stale.
struct UserCache<U> {
    ttl: Duration,
    /// Keyed by the ids of existing accounts, which a client cannot mint at will (sign-up
    /// is throttled), so a fast hash with a per-process random seed serves: SipHash was
    /// a tenth of a cached read.
    entries: RwLock<HashMap<String, (Arc<U>, Timestamp), foldhash::fast::RandomState>>,
}

impl<U: Clone> UserCache<U> {
    fn new(ttl: Duration) -> Self {
        UserCache {
            ttl,
            entries: RwLock::default(),
        }
    }

    fn fresh(&self, loaded_at: Timestamp, now: Timestamp) -> bool {
        loaded_at <= now && now.since(loaded_at) < self.ttl
    }

    fn get(&self, user_id: &str, now: Timestamp) -> Option<Arc<U>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (user, loaded_at) = entries.get(user_id)?;
        self.fresh(*loaded_at, now).then(|| user.clone())
    }

    fn insert(&self, user_id: &str, user: Arc<U>, now: Timestamp) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= USER_CACHE_CAPACITY {
            entries.retain(|_, (_, loaded_at)| self.fresh(*loaded_at, now));
            if entries.len() >= USER_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(user_id.to_string(), (user, now));
    }

    fn remove(&self, user_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.remove(user_id);
    }
}

/// A request's login state: who is logged in, log in, log out.
///
/// ```no_run
/// # async fn handler(auth: latchkey::AuthSession<latchkey::User>, user: latchkey::User)
/// # -> Result<(), latchkey::AuthError> {
/// auth.login(&user).await?;            // new session token, fresh login
/// let me = auth.current_user().await?;  // Some(user)
/// auth.logout().await?;                // session deleted from the store
/// # Ok(()) }
/// ```
///
/// The user is resolved at most once per request: later calls (and the guards) reuse it,
/// and `login`, `logout` and `password_changed` keep it current.
pub struct AuthSession<U> {
    session: Session,
    request: Arc<RequestAuth<U>>,
}

impl<U: AuthUser> AuthSession<U> {
    /// The view of a request's session and its auth state (the extractor's).
    #[cfg(feature = "axum")]
    pub(crate) fn from_request(session: Session, request: Arc<RequestAuth<U>>) -> Self {
        AuthSession { session, request }
    }

    /// The underlying session (for application data).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The authenticator in force.
    pub fn authenticator(&self) -> &Authenticator<U> {
        &self.request.authenticator
    }

    /// Whether the request came with a bearer credential (a personal access token or a
    /// bearer session) rather than a cookie: no ambient credential, so no CSRF check is
    /// needed, and nothing that changes how one gets in is allowed.
    pub fn is_bearer(&self) -> bool {
        self.session.is_bearer() || self.request.access_token.is_some()
    }

    /// The personal access token this request is logged in with, once
    /// [`AuthSession::current_user`] (or a guard) checked it.
    pub fn access_token(&self) -> Option<Arc<AccessTokenRecord>> {
        self.request.token()
    }

    /// Why the request's bearer credential was refused, once checked.
    pub fn bearer_refusal(&self) -> Option<TokenRefusal> {
        self.request.bearer_refusal()
    }

    /// Checks `credentials` with the backend the authenticator was built on
    /// ([`AuthBackend::authenticate`]): the user they prove, `None` if they prove nobody.
    /// Nobody is logged in yet: hand the user to [`AuthSession::login`] (or
    /// [`AuthSession::sign_in`] with the proof the credentials are).
    pub async fn authenticate<C: Send + 'static>(
        &self,
        credentials: C,
    ) -> Result<Option<U>, AuthError> {
        let backend = &self.request.authenticator.inner.credentials;
        match backend.downcast_ref::<Arc<dyn CheckCredentials<U, C>>>() {
            Some(backend) => backend.check(credentials).await,
            None => Err(AuthError::WrongCredentials(std::any::type_name::<C>())),
        }
    }

    /// Logs `user` in after a password check, through the gate
    /// ([`AuthSession::sign_in`] with [`Proof::password`]).
    pub async fn login(&self, user: &U) -> Result<SignIn<U>, AuthError> {
        self.sign_in(user, Proof::password(), None).await
    }

    /// Logs `user` in after a password check and, once the login is complete, remembers
    /// this device for `days` (1 to 30; "Stay logged in" is 30): when the browser comes
    /// back without its session cookie, the remember-me cookie starts a new, non-fresh
    /// session.
    pub async fn login_remembered(&self, user: &U, days: u32) -> Result<SignIn<U>, AuthError> {
        self.sign_in(user, Proof::password(), Some(days)).await
    }

    /// The gate: every way in calls it once its own secret checked out. A complete login
    /// rotates the session token (no fixation), records every method used and, with
    /// `remember_days`, remembers the device. A user who has a second factor and gave a
    /// one-factor proof gets [`SignIn::Pending`]: the login waits in this session,
    /// stamped with the user's credential version, until [`AuthSession::continue_sign_in`]
    /// completes it. Disabled users, and unverified addresses where the authenticator
    /// requires them verified, are refused.
    pub async fn sign_in(
        &self,
        user: &U,
        proof: Proof,
        remember_days: Option<u32>,
    ) -> Result<SignIn<U>, AuthError> {
        let proofs = [(proof.method(), proof.evidence())];
        let verdict = self.request.authenticator.judge(user, &proofs).await?;
        match verdict {
            Verdict::Complete(how) => {
                self.complete(user, how, remember_days).await?;
                Ok(SignIn::LoggedIn(user.clone()))
            }
            Verdict::Pending(methods) => {
                let pending = PendingLogin {
                    user_id: user.user_id(),
                    credential_version: user.credential_version(),
                    at: Timestamp::now().as_millis(),
                    proofs: vec![(proof.method().to_string(), proof.evidence())],
                    remember_days,
                };
                self.session.insert(PENDING_KEY, pending).await?;
                audit!(info, "second_factor_pending", user_id = %user.user_id(), method = proof.method());
                Ok(SignIn::Pending { methods })
            }
            Verdict::Refused(refusal) => {
                audit!(info, "login_refused", user_id = %user.user_id(), method = proof.method(), reason = ?refusal);
                Ok(SignIn::Refused(refusal))
            }
        }
    }

    /// The id of the user whose login waits in this session for a second factor, if one
    /// does and it has not expired.
    pub async fn pending_sign_in(&self) -> Result<Option<String>, AuthError> {
        Ok(self.live_pending().await?.map(|pending| pending.user_id))
    }

    async fn live_pending(&self) -> Result<Option<PendingLogin>, AuthError> {
        let pending: Option<PendingLogin> = self.session.get(PENDING_KEY).await?;
        let within = self.request.authenticator.inner.gate.second_step_within;
        match pending {
            Some(pending) if pending.is_live(Timestamp::now(), within) => Ok(Some(pending)),
            Some(_) => {
                self.session.remove(PENDING_KEY).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Whose second step this session can take: the user whose login waits for it
    /// ([`SecondStepFor::WaitingLogin`], see [`AuthSession::pending_sign_in`]), else the
    /// logged-in user whose login lacks one (remembered, completed before they set one
    /// up, or older than the second-factor window), for a step up
    /// ([`SecondStepFor::StepUp`]). `None` for a personal access token.
    pub async fn second_step_user(&self) -> Result<Option<SecondStepFor>, AuthError> {
        if let Some(user_id) = self.pending_sign_in().await? {
            return Ok(Some(SecondStepFor::WaitingLogin(user_id)));
        }
        if self.request.access_token.is_some() || self.has_second_factor().await? {
            return Ok(None);
        }
        let user = self.current_user().await?;
        Ok(user.map(|user| SecondStepFor::StepUp(user.user_id())))
    }

    /// Completes the second step of `user_id` with `proof`, a second factor the caller
    /// verified for that user ([`AuthSession::second_step_user`]), through the gate. Only
    /// `user_id`'s step is completed: a login of someone else that started meanwhile, or a
    /// logged-in user other than `user_id`, gets [`Refusal::NothingPending`].
    ///
    /// A login waiting in this session ends whatever the answer; it is refused when the
    /// user's credentials changed since its first step. With no login waiting, a
    /// logged-in session that lacks a second factor steps up: the gate judges the
    /// session's methods (a restored login, [`Evidence::Remembered`]) and `proof`, and the
    /// login is written again, with a new token (fresh only if `proof` is a passkey).
    pub async fn continue_sign_in(
        &self,
        user_id: &str,
        proof: Proof,
    ) -> Result<SignIn<U>, AuthError> {
        let Some(pending) = self.live_pending().await? else {
            return self.step_up(user_id, proof).await;
        };
        if pending.user_id != user_id {
            audit!(warn, "second_step_for_another_user", user_id = %user_id, waiting = %pending.user_id);
            return Ok(SignIn::Refused(Refusal::NothingPending));
        }
        self.session.remove(PENDING_KEY).await?;
        let authenticator = &self.request.authenticator;
        authenticator.forget_user(&pending.user_id);
        let Some(user) = authenticator.load_user(&pending.user_id).await? else {
            return Ok(SignIn::Refused(Refusal::Inactive));
        };
        if user.credential_version() != pending.credential_version {
            audit!(info, "login_refused", user_id = %pending.user_id, method = proof.method(), reason = ?Refusal::CredentialsChanged);
            return Ok(SignIn::Refused(Refusal::CredentialsChanged));
        }
        let proofs: Vec<(&str, Evidence)> = pending
            .proofs
            .iter()
            .map(|(method, evidence)| (method.as_str(), *evidence))
            .chain(std::iter::once((proof.method(), proof.evidence())))
            .collect();
        match authenticator.judge(&user, &proofs).await? {
            Verdict::Complete(how) => {
                self.complete(&user, how, pending.remember_days).await?;
                Ok(SignIn::LoggedIn(Arc::unwrap_or_clone(user)))
            }
            // A second factor that does not complete the login is no second factor.
            Verdict::Pending(_) => Ok(SignIn::Refused(Refusal::NotAWayIn)),
            Verdict::Refused(refusal) => Ok(SignIn::Refused(refusal)),
        }
    }

    /// The step up of [`AuthSession::continue_sign_in`]: only a second factor, only for
    /// `user_id`'s session (never a personal access token) whose login lacks one.
    async fn step_up(&self, user_id: &str, proof: Proof) -> Result<SignIn<U>, AuthError> {
        let nothing = Ok(SignIn::Refused(Refusal::NothingPending));
        let second_factor = matches!(
            proof.evidence(),
            Evidence::SecondFactor | Evidence::MultiFactor
        );
        if !second_factor || self.request.access_token.is_some() {
            return nothing;
        }
        let Some(auth) = self.session.auth().await? else {
            return nothing;
        };
        if self.has_second_factor().await? {
            return nothing;
        }
        let Some(user) = self.current_user().await? else {
            return nothing;
        };
        if user.user_id() != user_id {
            audit!(warn, "second_step_for_another_user", user_id = %user_id, logged_in = %user.user_id());
            return nothing;
        }
        // The methods so far (a factor used again is listed once), then the new one.
        let proofs: Vec<(&str, Evidence)> = auth
            .methods
            .iter()
            .filter(|method| method.as_str() != proof.method())
            .map(|method| (method.as_str(), Evidence::Remembered))
            .chain(std::iter::once((proof.method(), proof.evidence())))
            .collect();
        match self.request.authenticator.judge(&user, &proofs).await? {
            Verdict::Complete(how) => {
                audit!(info, "second_factor_step_up", user_id = %user.user_id(), method = proof.method());
                self.complete(&user, how, None).await?;
                Ok(SignIn::LoggedIn(user))
            }
            Verdict::Pending(_) => Ok(SignIn::Refused(Refusal::NotAWayIn)),
            Verdict::Refused(refusal) => Ok(SignIn::Refused(refusal)),
        }
    }

    /// Writes a complete login the gate allowed.
    async fn complete(
        &self,
        user: &U,
        how: Authentication,
        remember_days: Option<u32>,
    ) -> Result<(), AuthError> {
        let methods = how.methods.join("+");
        self.session.remove(PENDING_KEY).await?;
        self.session
            .log_in(&user.user_id(), user.credential_version(), how)
            .await?;
        self.request.know_user(Some(Arc::new(user.clone())));
        audit!(info, "login", user_id = %user.user_id(), methods = %methods);
        // A bearer session's client keeps its own token: no device cookie to remember.
        if let Some(days) = remember_days.filter(|_| !self.session.is_bearer()) {
            self.remember_device(user, days).await?;
        }
        Ok(())
    }

    /// Whether a login of this request remembered the device (a new remember-me token
    /// goes out with the answer): what a "new device" notice is about.
    pub fn remembered_device(&self) -> bool {
        self.request.device_remembered()
    }

    /// After `user`'s password changed from this session (their credential version moved
    /// on): [`AuthSession::credentials_changed`] with
    /// [`CredentialEvent::PasswordChanged`] and the stores this session reaches.
    pub async fn password_changed(&self, user: &U) -> Result<(), AuthError> {
        self.credentials_changed(user, CredentialEvent::PasswordChanged, Holders::default())
            .await
            .map(|_| ())
    }

    /// After a credential change of `user` (as the change left them): ends what the one
    /// table says `event` ends ([`credentials::end_for`]), in this session's storage and
    /// remember-me store and in the stores `more` names (the user store to move the
    /// credential version on, the mailed links), and keeps this session's login where it
    /// is the user's own and the table keeps the caller.
    pub async fn credentials_changed(
        &self,
        user: &U,
        event: CredentialEvent,
        more: Holders<'_>,
    ) -> Result<Ended, AuthError> {
        let user_id = user.user_id();
        let own_session = match self.session.auth().await? {
            Some(info) if info.user_id == user_id => self.session.id().await?,
            _ => None,
        };
        let holders = Holders {
            sessions: Some(self.session.storage().as_ref()),
            remembered: self.request.authenticator.remember_store(),
            access_tokens: self.request.authenticator.access_token_store(),
            ..more
        };
        let ended = credentials::end_for(&holders, event, &user_id, own_session.as_ref()).await?;
        let authenticator = &self.request.authenticator;
        authenticator.forget_user(&user_id);
        if own_session.is_some() && event.ends().sessions == SessionsEnded::AllButCaller {
            // The version the change left (moved on once more by the table, if it did).
            let version = match &ended.user {
                Some(changed) => changed.credential_version,
                None => user.credential_version(),
            };
            self.renew_login(&user_id, version).await?;
            // Every remembered device was forgotten, this one's too.
            if authenticator.remember_store().is_some() {
                self.request.set_remember_cookie(RememberCookie::Remove);
            }
        } else if own_session.is_some() {
            self.request.know_user(None);
        }
        Ok(ended)
    }

    /// Keeps this session's login, with the same methods, for `user_id` at credential
    /// version `version`, under a new token.
    async fn renew_login(&self, user_id: &str, version: i64) -> Result<(), AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(());
        };
        if auth.user_id != user_id {
            return Ok(());
        }
        let how = Authentication {
            methods: auth.methods,
            fresh: auth.fresh,
            multi_factor: auth.multi_factor,
        };
        self.session.log_in(user_id, version, how).await?;
        // Resolved again on its next read, at the new version.
        self.request.forget_known_user();
        Ok(())
    }

    /// Remembers this device for `user` (just logged in) for `days` (1 to 30).
    async fn remember_device(&self, user: &U, days: u32) -> Result<(), AuthError> {
        let Some(store) = self.request.authenticator.remember_store() else {
            tracing::warn!("remember-me asked for but no remember store is configured");
            return Ok(());
        };
        let now = crate::time::Timestamp::now();
        let lifetime = Duration::from_secs(u64::from(days.clamp(1, MAX_REMEMBER_DAYS)) * 86_400);
        let validator = Validator::generate();
        let record = RememberRecord {
            series: new_series(),
            validator_hash: validator.hash,
            previous_hash: None,
            previous_valid_until: None,
            user_id: user.user_id(),
            created_at: now,
            last_used_at: now,
            expires_at: now.plus(lifetime),
        };
        store.insert(&record).await?;
        audit!(info, "remember_me_issued", user_id = %record.user_id, days = days.clamp(1, MAX_REMEMBER_DAYS));
        self.request.set_remember_cookie(RememberCookie::Set {
            value: remember_cookie_value(&record.series, &validator),
            max_age: lifetime,
        });
        self.request.note_device_remembered();
        Ok(())
    }

    /// Ends the session (deleted from the store, cookie expired) and forgets this
    /// device's remember-me token. Returns the id of the user who was logged in, if any.
    pub async fn logout(&self) -> Result<Option<String>, AuthError> {
        self.forget_this_device().await?;
        let record = self.session.destroy().await?;
        self.request.know_user(None);
        let user_id = record.and_then(|record| record.auth.map(|auth| auth.user_id));
        if let Some(user_id) = &user_id {
            audit!(info, "logout", user_id = %user_id);
        }
        Ok(user_id)
    }

    /// Deletes the remember-me token the browser sent and expires its cookie.
    async fn forget_this_device(&self) -> Result<(), AuthError> {
        let Some(cookie) = self.request.remember_cookie_in() else {
            return Ok(());
        };
        if let (Some(store), Some((series, _))) = (
            self.request.authenticator.remember_store(),
            parse_remember_cookie(cookie),
        ) {
            store.delete(&series).await?;
        }
        self.request.set_remember_cookie(RememberCookie::Remove);
        Ok(())
    }

    /// The logged-in user, through the user loader. A session whose user is gone,
    /// disabled, or whose credentials changed since login is ended and gives `None`.
    pub async fn current_user(&self) -> Result<Option<U>, AuthError> {
        self.request.current_user(&self.session).await
    }

    /// How the current session authenticated, if logged in.
    pub async fn auth_info(&self) -> Result<Option<AuthInfo>, AuthError> {
        Ok(self.session.auth().await?)
    }

    /// Whether the login was completed with a second factor (within the authenticator's
    /// window, if set).
    pub async fn has_second_factor(&self) -> Result<bool, AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(false);
        };
        let recent = match self.request.authenticator.inner.second_factor_within {
            Some(window) => crate::time::Timestamp::now().since(auth.authenticated_at) <= window,
            None => true,
        };
        Ok(auth.multi_factor && recent)
    }

    /// Whether the login is fresh: the person proved presence in this session (a password
    /// or a passkey), within the fresh window if one is set.
    pub async fn is_fresh(&self) -> Result<bool, AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(false);
        };
        let recent = match self.request.authenticator.inner.fresh_within {
            Some(window) => crate::time::Timestamp::now().since(auth.authenticated_at) <= window,
            None => true,
        };
        Ok(auth.fresh && recent)
    }

    /// The logged-in user's live sessions, newest first (empty when not logged in).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(Vec::new());
        };
        let current = self.session.id().await?;
        let now = crate::time::Timestamp::now();
        let mut listed = self.session.storage().list_for_user(&auth.user_id).await?;
        // A storage that cannot list its sessions (the cookie store) still has this one.
        if let (Some(id), Some(record)) = (current, self.session.record().await?) {
            if !listed.iter().any(|(listed, _)| *listed == id) {
                listed.push((id, (*record).clone()));
            }
        }
        let mut sessions: Vec<SessionInfo> = listed
            .into_iter()
            .filter(|(_, record)| !record.is_expired(now))
            .map(|(id, record)| SessionInfo {
                current: Some(id) == current,
                id,
                created_at: record.created_at,
                last_active_at: record.last_active_at,
                methods: record.auth.map(|auth| auth.methods).unwrap_or_default(),
                client_ip: record.client_ip,
                user_agent: record.user_agent,
            })
            .collect();
        sessions.sort_by_key(|session| std::cmp::Reverse(session.last_active_at));
        Ok(sessions)
    }

    /// Ends one of the logged-in user's sessions; `false` if `id` is not one of theirs.
    /// Revoking the current session is a logout.
    pub async fn revoke_session(&self, id: &SessionId) -> Result<bool, AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(false);
        };
        if self.session.id().await? == Some(*id) {
            self.logout().await?;
            return Ok(true);
        }
        let store = self.session.storage();
        let owned = store
            .load_by_id(id)
            .await?
            .is_some_and(|record| record.user_id() == Some(auth.user_id.as_str()));
        if !owned {
            return Ok(false);
        }
        let deleted = store.delete_by_id(id).await?;
        audit!(info, "session_revoked", user_id = %auth.user_id, session = %id.to_hex());
        Ok(deleted)
    }

    /// Ends every session of the logged-in user except this one; returns how many.
    pub async fn revoke_other_sessions(&self) -> Result<u64, AuthError> {
        let Some(auth) = self.session.auth().await? else {
            return Ok(0);
        };
        let current = self.session.id().await?;
        let ended = self
            .session
            .storage()
            .delete_for_user(&auth.user_id, current.as_ref())
            .await?;
        audit!(info, "other_sessions_revoked", user_id = %auth.user_id, ended);
        Ok(ended)
    }
}

impl<U: AuthUser> RequestAuth<U> {
    /// The logged-in user of `session` (this request's), resolved once per request.
    pub(crate) async fn current_user(&self, session: &Session) -> Result<Option<U>, AuthError> {
        let user = match self.known_user() {
            Some(known) => known,
            None => {
                let user = self.resolve_user(session).await?;
                self.know_user(user.clone());
                user
            }
        };
        Ok(user.map(Arc::unwrap_or_clone))
    }

    /// The logged-in user, through the user loader. A session whose user is gone,
    /// disabled, or whose credentials changed since login is ended and gives `None`.
    async fn resolve_user(&self, session: &Session) -> Result<Option<Arc<U>>, AuthError> {
        if let Some(token) = &self.access_token {
            return Box::pin(self.resolve_access_token(token)).await;
        }
        let (record, now) = session.record_read_at().await?;
        let Some(auth) = record.as_ref().and_then(|record| record.auth.as_ref()) else {
            if session.is_bearer() {
                if record.is_none() {
                    self.refuse_bearer(TokenRefusal::Unknown);
                    audit_refused_bearer("bearer_session_refused", "unknown", None);
                }
                return Ok(None);
            }
            // Boxed, as are the other rare paths: the common future stays small.
            return Box::pin(self.restore_from_remember_cookie(session)).await;
        };
        let mut user = self.authenticator.load_user_at(&auth.user_id, now).await?;
        // A session newer than the cached user means another process changed the
        // user's credentials after this one cached it: read the user again.
        if user
            .as_ref()
            .is_some_and(|user| user.credential_version() < auth.credential_version)
        {
            self.authenticator.inner.users.remove(&auth.user_id);
            user = Box::pin(self.authenticator.load_user(&auth.user_id)).await?;
        }
        match user {
            Some(user)
                if user.is_active() && user.credential_version() == auth.credential_version =>
            {
                Ok(Some(user))
            }
            _ => {
                audit!(info, "session_ended_credentials_changed", user_id = %auth.user_id);
                Box::pin(session.destroy()).await?;
                Ok(None)
            }
        }
    }

    /// The owner of the personal access token `token`, through the gate, if the token is
    /// live and its scopes allow the request (its use then recorded, at most once a
    /// minute); why not is recorded and audited, with the token and its owner when known.
    async fn resolve_access_token(
        &self,
        token: &BearerAccessToken,
    ) -> Result<Option<Arc<U>>, AuthError> {
        let Some(tokens) = &self.authenticator.inner.access_tokens else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let refuse = |refusal: TokenRefusal, record: Option<&AccessTokenRecord>| {
            self.refuse_bearer(refusal);
            audit_refused_bearer("access_token_refused", refusal.as_str(), record);
            Ok(None)
        };
        let record = match access_token::find_live(tokens.store.as_ref(), &token.text, now).await? {
            Ok(record) => record,
            Err(not_live) => return refuse(not_live.refusal, not_live.record.as_ref()),
        };
        let user = self
            .authenticator
            .load_user_at(&record.user_id, now)
            .await?;
        let proof = Proof::api_token();
        let verdict = match &user {
            Some(user) => {
                self.authenticator
                    .judge(user, &[(proof.method(), proof.evidence())])
                    .await?
            }
            None => Verdict::Refused(Refusal::Inactive),
        };
        let (Some(user), Verdict::Complete(_)) = (user, verdict) else {
            return refuse(TokenRefusal::OwnerRefused, Some(&record));
        };
        if !tokens
            .scopes
            .allows(&record.scopes, &token.method, &token.path)
        {
            return refuse(TokenRefusal::Scope, Some(&record));
        }
        access_token::record_use(tokens.store.as_ref(), &record, now).await;
        self.set_token(record);
        Ok(Some(user))
    }

    /// Starts a session from the remember-me cookie, if there is a valid one: the token
    /// is rotated, the new session is not fresh. A reused old validator is theft: every
    /// remember token and session of the user is revoked.
    async fn restore_from_remember_cookie(
        &self,
        session: &Session,
    ) -> Result<Option<Arc<U>>, AuthError> {
        let (Some(store), Some(cookie)) = (
            self.authenticator.remember_store(),
            self.remember_cookie_in(),
        ) else {
            return Ok(None);
        };
        let forget = || self.set_remember_cookie(RememberCookie::Remove);
        let Some((series, validator)) = parse_remember_cookie(cookie) else {
            forget();
            return Ok(None);
        };
        let Some(record) = store.find(&series).await? else {
            forget();
            return Ok(None);
        };
        let now = crate::time::Timestamp::now();
        if record.expires_at <= now {
            store.delete(&series).await?;
            forget();
            return Ok(None);
        }
        if validator.matches(&record.validator_hash) {
            let next = Validator::generate();
            let grace_until = now.plus(self.authenticator.inner.remember_grace);
            let rotated = store
                .rotate(
                    &series,
                    &record.validator_hash,
                    &next.hash,
                    grace_until,
                    now,
                )
                .await?;
            // Losing the rotation race means a parallel request with the same cookie
            // rotated first; its response carries the new cookie.
            if rotated {
                self.set_remember_cookie(RememberCookie::Set {
                    value: remember_cookie_value(&series, &next),
                    max_age: record.expires_at.since(now),
                });
            }
        } else {
            let in_grace = record
                .previous_hash
                .is_some_and(|hash| validator.matches(&hash))
                && record.previous_valid_until.is_some_and(|until| now < until);
            if !in_grace {
                audit!(warn, "remember_token_theft", user_id = %record.user_id);
                store.delete_for_user(&record.user_id).await?;
                session
                    .storage()
                    .delete_for_user(&record.user_id, None)
                    .await?;
                forget();
                return Ok(None);
            }
        }
        let user = self.authenticator.load_user(&record.user_id).await?;
        let proof = Proof::remembered();
        let verdict = match &user {
            Some(user) => {
                self.authenticator
                    .judge(user, &[(proof.method(), proof.evidence())])
                    .await?
            }
            None => Verdict::Refused(Refusal::Inactive),
        };
        match (user, verdict) {
            (Some(user), Verdict::Complete(how)) => {
                session
                    .log_in(&record.user_id, user.credential_version(), how)
                    .await?;
                audit!(info, "remember_me_login", user_id = %record.user_id);
                Ok(Some(user))
            }
            _ => {
                store.delete(&series).await?;
                forget();
                Ok(None)
            }
        }
    }
}

/// Audits a refused bearer credential (`event`, with its `reason`, and the token and
/// its owner when the token was found), within a budget: anyone can send guesses.
fn audit_refused_bearer(event: &'static str, reason: &str, token: Option<&AccessTokenRecord>) {
    static REFUSALS: crate::log_budget::LogBudget = crate::log_budget::LogBudget::new(5, 50);
    if let Some(dropped) = REFUSALS.admit() {
        let (token, user_id) = match token {
            Some(record) => (record.id.as_str(), record.user_id.as_str()),
            None => ("", ""),
        };
        tracing::warn!(target: "latchkey::audit", event, dropped, reason, token, user_id, "{event}");
    }
}

/// One of a user's sessions, as shown on a "your sessions" page. Holds no secret: the
/// id is the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id (what [`AuthSession::revoke_session`] takes).
    pub id: SessionId,
    /// When it was created.
    pub created_at: crate::time::Timestamp,
    /// When a request last refreshed it.
    pub last_active_at: crate::time::Timestamp,
    /// How its user logged in (the methods, first to last; empty when nobody is).
    pub methods: Vec<String>,
    /// Client address at creation.
    pub client_ip: Option<String>,
    /// Client user agent at creation.
    pub user_agent: Option<String>,
    /// Whether it is the session of the request asking.
    pub current: bool,
}
