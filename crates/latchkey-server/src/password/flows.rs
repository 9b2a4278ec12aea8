//! The password change: its use case.

use crate::credentials;
use crate::notices::{self, Notice};
use crate::web::state::AppState;
use crate::web::throttling::{throttled, Attempt, ClientIp};
use latchkey::throttle::{self};
use latchkey::{AuthError, AuthSession, CredentialEvent, PasswordError, User};
use std::time::Duration;

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
/// current password (an account without one sets its first) under the same throttle as logins (per account and address: a
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
        // An account another provider made has no password yet: its fresh login (at
        // that provider) is what lets it set one.
        if !user.has_password() {
            return Ok(Some(()));
        }
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
    notices::notify(
        app,
        &updated,
        updated.email.as_deref(),
        Notice::PasswordChanged,
        None,
    )
    .await;
    Ok(())
}
