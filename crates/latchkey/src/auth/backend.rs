//! The one trait auth stands on, in axum-login's shape: a backend says which user some
//! credentials prove and loads a user by id. [`PasswordBackend`] is latchkey's own, over
//! a [`UserStore`] and a [`PasswordHasher`].

use super::AuthError;
use crate::password::{PasswordError, PasswordHasher, MAX_PASSWORD_BYTES};
use crate::user::{AuthUser, User, UserStore, UserStoreError};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// Where users come from and how they prove who they are. Implement it for your own user
/// table (`examples/microdot_login.rs` does) and give it to [`super::Authenticator::new`];
/// the same value checks credentials at login.
///
/// The user type's [`AuthUser::credential_version`] ties sessions to credentials: a
/// session that recorded an older version ends on its next use.
#[async_trait]
pub trait AuthBackend: Send + Sync + 'static {
    /// The user type handlers get.
    type User: AuthUser;
    /// What a login submits (a login name and password, a one-time code, …).
    type Credentials: Send + 'static;

    /// The user `credentials` prove, `None` if they prove nobody. Should cost the same
    /// whether or not the user exists, so timing does not tell who has an account.
    async fn authenticate(
        &self,
        credentials: Self::Credentials,
    ) -> Result<Option<Self::User>, AuthError>;

    /// The user with this id (what the session recorded at login), `None` if gone.
    async fn get_user(&self, user_id: &str) -> Result<Option<Self::User>, UserStoreError>;
}

/// A shared backend is a backend.
#[async_trait]
impl<B: AuthBackend> AuthBackend for Arc<B> {
    type User = B::User;
    type Credentials = B::Credentials;

    async fn authenticate(
        &self,
        credentials: Self::Credentials,
    ) -> Result<Option<Self::User>, AuthError> {
        (**self).authenticate(credentials).await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<Self::User>, UserStoreError> {
        (**self).get_user(user_id).await
    }
}

/// What the authenticator needs of a backend: loading users (credentials stay with the
/// application, so one authenticator type serves every kind of credentials).
#[async_trait]
pub(crate) trait LoadUser<U>: Send + Sync + 'static {
    async fn get_user(&self, user_id: &str) -> Result<Option<U>, UserStoreError>;
}

#[async_trait]
impl<B: AuthBackend> LoadUser<B::User> for B {
    async fn get_user(&self, user_id: &str) -> Result<Option<B::User>, UserStoreError> {
        AuthBackend::get_user(self, user_id).await
    }
}

/// What the authenticator keeps of its backend to check credentials of type `C` (so that
/// [`super::AuthSession::authenticate`] reaches the backend the authenticator was built on).
#[async_trait]
pub(crate) trait CheckCredentials<U, C>: Send + Sync + 'static {
    async fn check(&self, credentials: C) -> Result<Option<U>, AuthError>;
}

#[async_trait]
impl<B: AuthBackend> CheckCredentials<B::User, B::Credentials> for B {
    async fn check(&self, credentials: B::Credentials) -> Result<Option<B::User>, AuthError> {
        self.authenticate(credentials).await
    }
}

/// A login name (username or email, any letter case) and a password.
#[derive(Clone)]
pub struct PasswordCredentials {
    /// The username or the email.
    pub login: String,
    /// The password as typed.
    pub password: String,
}

impl PasswordCredentials {
    /// Credentials from a login form or JSON body.
    pub fn new(login: impl Into<String>, password: impl Into<String>) -> Self {
        PasswordCredentials {
            login: login.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for PasswordCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCredentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// latchkey's own backend: users of a [`UserStore`] (SQLite, PostgreSQL) with argon2id
/// password hashes (legacy formats verify and are upgraded at the first login).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = latchkey::store::open_sqlite("sqlite::memory:").await?;
/// use latchkey::{AuthBackend, HashParams, PasswordBackend, PasswordCredentials, PasswordHasher};
/// let backend = PasswordBackend::new(
///     latchkey::SqliteUserStore::new(pool),
///     PasswordHasher::new(HashParams::default())?,
/// );
/// let user = backend
///     .authenticate(PasswordCredentials::new("foo", "correct horse battery"))
///     .await?;
/// # Ok(()) }
/// ```
pub struct PasswordBackend<S> {
    users: S,
    hasher: PasswordHasher,
}

impl<S: UserStore> PasswordBackend<S> {
    /// The backend over `users`, checking passwords with `hasher`.
    pub fn new(users: S, hasher: PasswordHasher) -> Self {
        PasswordBackend { users, hasher }
    }

    /// The user store.
    pub fn users(&self) -> &S {
        &self.users
    }

    /// The password hasher.
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The password check of [`AuthBackend::authenticate`] for a user the caller has
    /// already looked up (`None`: no such user), so that a login that needs the user
    /// first (to count its attempts under the account) looks it up once. Unknown and
    /// disabled users cost one password verification too, and a user whose stored hash
    /// has other parameters one more at the hasher's own, so every failure costs at least
    /// what an unknown name's does (`benches/login_timing.rs`). The user only if the
    /// password matches and the account is enabled.
    pub async fn check_password(
        &self,
        found: Option<User>,
        password: &str,
    ) -> Result<Option<User>, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        // No such user, or one without a password: the same time as a wrong password.
        let Some(user) = found.filter(User::has_password) else {
            self.hasher.verify_dummy(password).await?;
            return Ok(None);
        };
        // Whether the work so far cost one verification at the hasher's own parameters.
        let (matches, cost_matched) = match self.hasher.verify(password, user.password_hash()).await
        {
            Ok(matches) => (matches, !self.hasher.needs_rehash(user.password_hash())),
            Err(error @ (PasswordError::MalformedHash | PasswordError::UnsafeHash(_))) => {
                tracing::error!(user_id = user.id, %error, "stored password hash unusable: login refused");
                // Spend the same time as any other failure.
                self.hasher.verify_dummy(password).await?;
                (false, true)
            }
            Err(error) => return Err(error.into()),
        };
        if !matches || user.disabled {
            if !cost_matched {
                // A hash with other parameters (imported, or older than a cost change)
                // verifies in its own time, often far less than ours: one more
                // verification at our parameters, so this failure costs what an
                // unknown name's does, and timing tells no one the account exists.
                self.hasher.verify_dummy(password).await?;
            }
            return Ok(None);
        }
        // A success with such a hash spends the same again on the upgrade's new hash.
        Ok(Some(self.upgrade_hash(user, password).await?))
    }

    /// After a successful login with a hash made elsewhere or with weaker parameters:
    /// stores an argon2id hash of the same password instead. The credential version does
    /// not change (it is the same password), so no session ends. A failed upgrade is
    /// logged and the login goes on; the next login tries again.
    async fn upgrade_hash(&self, mut user: User, password: &str) -> Result<User, AuthError> {
        if !self.hasher.needs_rehash(user.password_hash()) {
            return Ok(user);
        }
        let upgraded = self.hasher.hash(password).await?;
        match self
            .users
            .upgrade_password_hash(user.id, user.password_hash(), &upgraded)
            .await
        {
            Ok(true) => {
                audit!(info, "password_hash_upgraded", user_id = user.id);
                user.password_hash = upgraded.into();
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(user_id = user.id, %error, "password hash upgrade failed"),
        }
        Ok(user)
    }
}

#[async_trait]
impl<S: UserStore> AuthBackend for PasswordBackend<S> {
    type User = User;
    type Credentials = PasswordCredentials;

    /// Looks the login up once and checks the password with
    /// [`PasswordBackend::check_password`] (over-long passwords are refused before the
    /// lookup).
    async fn authenticate(
        &self,
        credentials: PasswordCredentials,
    ) -> Result<Option<User>, AuthError> {
        let PasswordCredentials { login, password } = credentials;
        if password.len() > MAX_PASSWORD_BYTES {
            // Refused before any lookup or hashing, whoever the user is.
            return Ok(None);
        }
        let found = self.users.find_by_login(&login).await?;
        self.check_password(found, &password).await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, UserStoreError> {
        match user_id.parse::<i64>() {
            Ok(id) => self.users.find_by_id(id).await,
            Err(_) => Ok(None),
        }
    }
}
