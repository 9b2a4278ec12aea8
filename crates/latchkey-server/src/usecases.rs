//! The server's use cases, one function each: sign up, log in, log out, change the
//! password, list and revoke sessions, show the account. The JSON API and the HTML pages
//! both call these and never each other's handlers; each turns the outcome into its own
//! kind of answer.

use crate::credentials;
use crate::factors::second_factor;
use crate::mail::flows::{self as mail_flows, Notice};
use crate::web::state::AppState;
use crate::web::throttling::{throttled, Attempt, ClientIp};
use latchkey::remember::DEFAULT_REMEMBER_DAYS;
use latchkey::throttle::{self, account_tag, Verdict};
use latchkey::{
    AuthError, AuthSession, CredentialEvent, NewUser, PasswordError, Proof, Refusal, SessionError,
    SessionId, SignIn, User, UserStoreError,
};
use serde::Serialize;
use std::time::Duration;

/// Why a sign-up did not create a user.
pub enum SignUpError {
    /// A field breaks the rules: (field, message).
    Invalid(&'static str, String),
    /// The username or email is in use: "Username X is not available."
    Taken(String),
    /// Too many sign-ups from this address; try again after this long.
    Throttled(std::time::Duration),
    /// A backing service failed.
    Failed(AuthError),
}

impl From<AuthError> for SignUpError {
    fn from(error: AuthError) -> Self {
        SignUpError::Failed(error)
    }
}

/// Sign-up: checks the per-IP cap, validates the fields, hashes the password and
/// creates the user.
pub async fn sign_up(
    app: &AppState,
    ip: ClientIp,
    username: &str,
    email: Option<&str>,
    password: &str,
) -> Result<User, SignUpError> {
    let verdict = app
        .throttle
        .sign_up(ip.0)
        .await
        .map_err(|error| SignUpError::Failed(SessionError::from(error).into()))?;
    if let Verdict::Wait(wait) = verdict {
        latchkey::audit_refusal!("signup_throttled", ip = ?ip.0, retry_after = wait.as_secs());
        return Err(SignUpError::Throttled(wait));
    }
    let username = latchkey::user::validate_username(username)
        .map_err(|error| SignUpError::Invalid("username", error.to_string()))?;
    let email = match email.map(str::trim) {
        Some(email) if !email.is_empty() => Some(
            latchkey::user::validate_email(email)
                .map_err(|error| SignUpError::Invalid("email", error.to_string()))?,
        ),
        _ if app.mail.require_verified_email => {
            return Err(SignUpError::Invalid(
                "email",
                "An email address is required: it must be verified before logging in.".into(),
            ))
        }
        _ => None,
    };
    let user_inputs: Vec<&str> = std::iter::once(username.as_str())
        .chain(email.as_deref())
        .collect();
    app.backend
        .hasher()
        .check_new_password(app.policy, password, &user_inputs)
        .await
        .map_err(AuthError::from)?
        .map_err(|error| SignUpError::Invalid("password", error.to_string()))?;
    let hash = app
        .backend
        .hasher()
        .hash(password)
        .await
        .map_err(AuthError::from)?;
    let new_user = NewUser::new(&username, email.as_deref(), hash)
        .map_err(|error| SignUpError::Invalid("username", error.to_string()))?;
    match app.backend.users().create(new_user).await {
        Ok(user) => {
            tracing::info!(target: "latchkey::audit", event = "signup", user_id = user.id, "signup");
            // The account exists either way; a link that failed to queue can be asked
            // for again.
            if let Err(error) = mail_flows::send_verification(app, &user).await {
                tracing::warn!(%error, user_id = user.id, "verification mail not queued");
            }
            Ok(user)
        }
        Err(error @ (UserStoreError::UsernameTaken(_) | UserStoreError::EmailTaken(_))) => {
            Err(SignUpError::Taken(error.to_string()))
        }
        Err(error) => Err(SignUpError::Failed(error.into())),
    }
}

/// Checks a login's credentials under the throttle, counting failures under the account
/// whichever of its names was typed (unknown names under the name as typed); the user is
/// looked up once, for the counter's key and the password check both.
async fn check_credentials(
    app: &AppState,
    ip: ClientIp,
    login: &str,
    password: &str,
) -> Result<Attempt<User>, AuthError> {
    let known = app.backend.users().find_by_login(login).await?;
    let id = known.as_ref().map(|user| user.id.to_string());
    let account = match &id {
        Some(id) => throttle::Account::User(id),
        None => throttle::Account::Unknown(login),
    };
    // The user found above is the one checked: one lookup per login.
    let attempt = throttled(
        app,
        account,
        ip,
        app.backend.check_password(known.clone(), password),
    )
    .await?;
    match &attempt {
        Attempt::Throttled(wait) => {
            latchkey::audit_refusal!("login_throttled", account = %account_tag(login), ip = ?ip.0, retry_after = wait.as_secs());
        }
        Attempt::Failed { lockout_started } => {
            tracing::info!(target: "latchkey::audit", event = "login_failed", account = %account_tag(login), ip = ?ip.0, "login_failed");
            if let (Some(lockout), Some(user)) = (lockout_started, &known) {
                let detail = Some(format!(
                    "Logins are paused for {}; a reset link or a sign-in code by mail still works.",
                    humantime::format_duration(*lockout)
                ));
                mail_flows::notify(app, user, user.email.as_deref(), Notice::LockedOut, detail)
                    .await;
            }
        }
        Attempt::Passed(_) => {}
    }
    Ok(attempt)
}

/// How a login attempt ended.
pub enum LogIn {
    /// Logged in: the session has a new token.
    LoggedIn(User),
    /// Wrong name or password, or a disabled user (the same for every cause).
    Refused,
    /// The password was right but the email is not verified yet (and the server wants
    /// it verified): nothing was logged in.
    Unverified,
    /// Refused before checking; try again after this long.
    Throttled(Duration),
    /// The password was right and the user has a second factor: the login waits in the
    /// session for it (these methods complete it); nobody is logged in yet.
    SecondFactorRequired(Vec<String>),
}

/// Log-in: throttled credential check, then the gate: a new session token (and, with
/// `remember`, a remember-me token for [`DEFAULT_REMEMBER_DAYS`]), or the second step.
pub async fn log_in(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    login: &str,
    password: &str,
    remember: bool,
) -> Result<LogIn, AuthError> {
    let user = match check_credentials(app, ip, login, password).await? {
        Attempt::Passed(user) => user,
        Attempt::Failed { .. } => return Ok(LogIn::Refused),
        Attempt::Throttled(wait) => return Ok(LogIn::Throttled(wait)),
    };
    let remember = remember.then_some(DEFAULT_REMEMBER_DAYS);
    match auth.sign_in(&user, Proof::password(), remember).await? {
        SignIn::LoggedIn(user) => {
            mail_flows::notify_if_device_remembered(app, auth, &user, ip).await;
            Ok(LogIn::LoggedIn(user))
        }
        SignIn::Pending { methods } => Ok(LogIn::SecondFactorRequired(methods)),
        SignIn::Refused(Refusal::EmailUnverified) => Ok(LogIn::Unverified),
        SignIn::Refused(_) => Ok(LogIn::Refused),
    }
}

/// Log-out: ends the session and forgets this device; the id of whoever was logged in.
pub async fn log_out(auth: &AuthSession<User>) -> Result<Option<String>, AuthError> {
    auth.logout().await
}

/// Why a password change did not happen.
pub enum PasswordChangeError {
    /// The current password is wrong.
    WrongCurrent,
    /// Too many wrong current passwords for this account; try again after this long.
    Throttled(Duration),
    /// The new password breaks the policy (the message says how).
    Policy(String),
    /// A backing service failed.
    Failed(AuthError),
}

impl From<AuthError> for PasswordChangeError {
    fn from(error: AuthError) -> Self {
        PasswordChangeError::Failed(error)
    }
}

/// Password change for `user` (logged in freshly in `auth`, from `ip`): checks the
/// current password under the same throttle as logins (per account and address: a
/// stolen session is no password oracle), then the policy, stores the new hash, keeps
/// this session as a fresh login and ends every other session and remembered device.
pub async fn change_password(
    app: &AppState,
    auth: &AuthSession<User>,
    ip: ClientIp,
    user: &User,
    current: &str,
    new: &str,
) -> Result<(), PasswordChangeError> {
    let hasher = app.backend.hasher();
    let id = user.id.to_string();
    let check = async {
        match hasher.verify(current, user.password_hash()).await {
            Ok(true) => Ok(Some(())),
            Ok(false) | Err(PasswordError::TooLong) => Ok(None),
            Err(error) => Err(AuthError::from(error)),
        }
    };
    match throttled(app, throttle::Account::User(&id), ip, check).await? {
        Attempt::Passed(()) => {}
        Attempt::Failed { .. } => {
            tracing::warn!(target: "latchkey::audit", event = "password_change_refused", user_id = user.id, ip = ?ip.0, "password_change_refused");
            return Err(PasswordChangeError::WrongCurrent);
        }
        Attempt::Throttled(wait) => {
            latchkey::audit_refusal!("password_change_throttled", user_id = user.id, ip = ?ip.0, retry_after = wait.as_secs());
            return Err(PasswordChangeError::Throttled(wait));
        }
    }
    let user_inputs: Vec<&str> = std::iter::once(user.username.as_str())
        .chain(user.email.as_deref())
        .collect();
    hasher
        .check_new_password(app.policy, new, &user_inputs)
        .await
        .map_err(AuthError::from)?
        .map_err(|error| PasswordChangeError::Policy(error.to_string()))?;
    let hash = hasher.hash(new).await.map_err(AuthError::from)?;
    let updated = app
        .backend
        .users()
        .set_password_hash(user.id, &hash)
        .await
        .map_err(AuthError::from)?;
    let updated =
        credentials::changed(app, auth, &updated, CredentialEvent::PasswordChanged).await?;
    mail_flows::notify(
        app,
        &updated,
        updated.email.as_deref(),
        Notice::PasswordChanged,
        None,
    )
    .await;
    Ok(())
}

/// What `GET /account` shows of the logged-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// The username as entered at sign-up.
    pub username: String,
    /// The email, if one was given.
    pub email: Option<String>,
    /// Whether the email was proven to belong to the user.
    pub email_verified: bool,
    /// When the account was created (RFC 3339, UTC).
    pub created_at: String,
    /// The second factors enabled: `totp`, `recovery_code`, `passkey`.
    pub second_factors: Vec<&'static str>,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
}

/// The account of `user`.
pub async fn account(app: &AppState, user: &User) -> Result<Account, AuthError> {
    let (factors, passkeys) = second_factor::enabled(app, user.id).await?;
    Ok(Account {
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified: user.email_verified_at.is_some(),
        created_at: crate::web::for_people::rfc3339(user.created_at),
        second_factors: second_factor::methods(factors, passkeys),
        recovery_codes_left: factors.recovery_codes_left,
    })
}

/// One of the user's sessions, as the sessions page and `GET /sessions` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session's id (SHA-256 of its token, 64 hex characters): what revoking takes.
    pub id: String,
    /// Whether it is the session of the request asking.
    pub current: bool,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When a request last refreshed it (RFC 3339, UTC).
    pub last_active_at: String,
    /// How its user logged in: the methods joined by `+` (`password+totp`).
    pub method: Option<String>,
    /// The client address when it was created.
    pub client_ip: Option<String>,
    /// The client's user agent when it was created.
    pub user_agent: Option<String>,
}

/// The logged-in user's live sessions, newest first.
pub async fn sessions(auth: &AuthSession<User>) -> Result<Vec<SessionView>, AuthError> {
    Ok(auth
        .sessions()
        .await?
        .into_iter()
        .map(|session| SessionView {
            id: session.id.to_hex(),
            current: session.current,
            created_at: crate::web::for_people::rfc3339(session.created_at),
            last_active_at: crate::web::for_people::rfc3339(session.last_active_at),
            method: (!session.methods.is_empty()).then(|| session.methods.join("+")),
            client_ip: session.client_ip,
            user_agent: session.user_agent,
        })
        .collect())
}

/// Ends one of the logged-in user's sessions (`id` as 64 hex characters); `false` when it
/// is not one of theirs or not an id at all. Revoking the current session is a logout.
pub async fn revoke_session(auth: &AuthSession<User>, id: &str) -> Result<bool, AuthError> {
    match SessionId::from_hex(id) {
        Some(id) => auth.revoke_session(&id).await,
        None => Ok(false),
    }
}

/// Ends every other session of the logged-in user; how many ended.
pub async fn revoke_other_sessions(auth: &AuthSession<User>) -> Result<u64, AuthError> {
    auth.revoke_other_sessions().await
}
