//! Sign-up, login and logout: the use cases.

use crate::mail::flows as mail_flows;
use crate::notices::{self, Notice};
use crate::web::state::AppState;
use crate::web::throttling::{throttled, Attempt, ClientIp};
use latchkey::remember::DEFAULT_REMEMBER_DAYS;
use latchkey::throttle::{self, account_tag, Verdict};
use latchkey::{AuthError, AuthSession, NewUser, Proof, Refusal, SignIn, User, UserStoreError};
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
        .map_err(|error| SignUpError::Failed(error.into()))?;
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
                notices::notify(app, user, user.email.as_deref(), Notice::LockedOut, detail).await;
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
            notices::notify_if_device_remembered(app, auth, &user, ip).await;
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
