//! The second-factor use cases: a login that passed the password step of a user with a
//! second factor waits in the session as a **pending** login (not logged in; expires
//! after `--second-factor-timeout`, by default [`PENDING_LIFETIME`]) until a TOTP or recovery code completes it; enrolling,
//! confirming and removing TOTP; regenerating recovery codes. The JSON API and the pages
//! both call these.

use crate::mail_flows::{self, Notice};
use crate::state::AppState;
use crate::throttling::{throttled, Attempt, ClientIp};
use latchkey::factors::{FactorStatus, TotpEnrolment};
use latchkey::remember::DEFAULT_REMEMBER_DAYS;
use latchkey::throttle;
use latchkey::{AuthError, AuthMethod, AuthSession, SecondFactor, SessionError, Timestamp, User};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a login may wait for its second factor, unless configured otherwise.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The session key of a pending login.
const PENDING_KEY: &str = "latchkey.pending_login";

/// A login that passed its password and waits for the second factor.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    user_id: i64,
    /// When the password step passed (milliseconds since the epoch).
    at: i64,
    /// "Stay logged in" was asked for: applied once the second factor passed.
    remember: bool,
}

/// The second factors a user has, as `POST /login` and `GET /account` list them:
/// `totp`, `recovery_code`, `passkey`.
pub fn methods(status: FactorStatus, passkeys: usize) -> Vec<&'static str> {
    let mut methods = Vec::new();
    if status.totp {
        methods.push(SecondFactor::Totp.as_str());
    }
    if status.recovery_codes_left > 0 {
        methods.push(SecondFactor::RecoveryCode.as_str());
    }
    if passkeys > 0 {
        methods.push(SecondFactor::Passkey.as_str());
    }
    methods
}

/// What the user has enabled of TOTP and recovery codes.
pub async fn status(app: &AppState, user_id: i64) -> Result<FactorStatus, AuthError> {
    Ok(app
        .factors
        .status(user_id)
        .await
        .map_err(SessionError::from)?)
}

/// Every second factor of the user: TOTP and recovery codes, and how many passkeys.
pub async fn enabled(app: &AppState, user_id: i64) -> Result<(FactorStatus, usize), AuthError> {
    let passkeys = match &app.passkeys {
        Some(flows) => flows
            .store
            .list(user_id)
            .await
            .map_err(SessionError::from)?
            .len(),
        None => 0,
    };
    Ok((status(app, user_id).await?, passkeys))
}

/// Puts `user`'s login (its password passed) on hold for the second factor.
pub async fn hold(auth: &AuthSession<User>, user: &User, remember: bool) -> Result<(), AuthError> {
    let pending = PendingLogin {
        user_id: user.id,
        at: Timestamp::now().as_millis(),
        remember,
    };
    auth.session().insert(PENDING_KEY, pending).await?;
    tracing::info!(target: "latchkey::audit", event = "second_factor_pending", user_id = user.id, "second_factor_pending");
    Ok(())
}

/// How the second step of a login ended.
pub enum SecondStep {
    /// Logged in.
    LoggedIn(User),
    /// No login waits for a second factor here (none, or it expired).
    NothingPending,
    /// A wrong (or already used) code.
    Wrong,
    /// Too many wrong codes for this account or address; try after this long.
    Throttled(Duration),
}

/// The user whose login waits for its second factor in this session, if one does and
/// it has not expired.
pub async fn pending_user(
    app: &AppState,
    auth: &AuthSession<User>,
) -> Result<Option<i64>, AuthError> {
    Ok(live_pending(app, auth)
        .await?
        .map(|pending| pending.user_id))
}

async fn live_pending(
    app: &AppState,
    auth: &AuthSession<User>,
) -> Result<Option<PendingLogin>, AuthError> {
    let pending: Option<PendingLogin> = auth.session().get(PENDING_KEY).await?;
    match pending {
        Some(pending)
            if Timestamp::now().since(Timestamp(pending.at)) <= app.second_factor_timeout =>
        {
            Ok(Some(pending))
        }
        Some(_) => {
            auth.session().remove(PENDING_KEY).await?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Completes the pending login with `code`: a TOTP code (a time step not used before)
/// or a recovery code (used up), checked under the same throttle as passwords.
pub async fn complete(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    code: &str,
) -> Result<SecondStep, AuthError> {
    let factors = &app.factors;
    complete_with(app, ip, auth, |user_id| async move {
        let totp = code.trim().len() <= 8
            && factors
                .verify_totp(user_id, code, Timestamp::now())
                .await
                .map_err(SessionError::from)?;
        if totp {
            return Ok(Some(SecondFactor::Totp));
        }
        let recovery = factors
            .use_recovery_code(user_id, code)
            .await
            .map_err(SessionError::from)?;
        Ok(recovery.then_some(SecondFactor::RecoveryCode))
    })
    .await
}

/// Completes the pending login with the second factor `check` finds for its user (`None`
/// for a wrong one), checked under the same throttle as passwords; applies remember-me
/// if the password step asked for it.
pub async fn complete_with<F, Fut>(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    check: F,
) -> Result<SecondStep, AuthError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Option<SecondFactor>, AuthError>>,
{
    let Some(pending) = live_pending(app, auth).await? else {
        return Ok(SecondStep::NothingPending);
    };
    let id = pending.user_id.to_string();
    let factor = match throttled(
        app,
        throttle::Account::User(&id),
        ip,
        check(pending.user_id),
    )
    .await?
    {
        Attempt::Passed(factor) => factor,
        Attempt::Failed { .. } => {
            tracing::warn!(target: "latchkey::audit", event = "second_factor_failed", user_id = pending.user_id, ip = ?ip.0, "second_factor_failed");
            return Ok(SecondStep::Wrong);
        }
        Attempt::Throttled(wait) => {
            latchkey::audit_refusal!("second_factor_throttled", user_id = pending.user_id, ip = ?ip.0, retry_after = wait.as_secs());
            return Ok(SecondStep::Throttled(wait));
        }
    };
    let user = match app.backend.users().find_by_id(pending.user_id).await? {
        Some(user) if !user.disabled => user,
        _ => {
            auth.session().remove(PENDING_KEY).await?;
            return Ok(SecondStep::NothingPending);
        }
    };
    auth.session().remove(PENDING_KEY).await?;
    auth.login_with_second_factor(&user, AuthMethod::Password, Some(factor))
        .await?;
    if pending.remember {
        auth.remember_device(&user, DEFAULT_REMEMBER_DAYS).await?;
        let detail = ip.0.map(|address| format!("It connected from {address}."));
        mail_flows::notify(
            app,
            &user,
            user.email.as_deref(),
            Notice::NewRememberedDevice,
            detail,
        )
        .await;
    }
    if factor == SecondFactor::RecoveryCode {
        let left = status(app, user.id).await?.recovery_codes_left;
        tracing::info!(target: "latchkey::audit", event = "recovery_code_used", user_id = user.id, left, "recovery_code_used");
    }
    Ok(SecondStep::LoggedIn(user))
}

/// Starts TOTP enrolment for `user` (freshly logged in); `None` when TOTP is already on.
pub async fn begin_totp(app: &AppState, user: &User) -> Result<Option<TotpEnrolment>, AuthError> {
    let account = user.email.as_deref().unwrap_or(&user.username);
    Ok(app
        .factors
        .begin_totp(user.id, "latchkey", account)
        .await
        .map_err(SessionError::from)?)
}

/// Enables TOTP for `user` with a code from the new secret: answers the recovery codes
/// (shown once), ends the user's other sessions and mails a notice. `None` for a wrong
/// code (or no enrolment under way).
pub async fn confirm_totp(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    code: &str,
) -> Result<Option<Vec<String>>, AuthError> {
    let codes = app
        .factors
        .confirm_totp(user.id, code, Timestamp::now())
        .await
        .map_err(SessionError::from)?;
    if codes.is_some() {
        factor_changed(app, auth, user, Notice::SecondFactorAdded).await?;
    }
    Ok(codes)
}

/// How a code that guards a change was taken.
pub enum CodeCheck {
    /// Right: the change was made.
    Right,
    /// Wrong (or already used): nothing changed.
    Wrong,
    /// Too many wrong codes for this account or address; try after this long.
    Throttled(Duration),
}

/// Removes `user`'s second factors if `code` (TOTP or recovery) is right, checked under
/// the password throttle; ends the user's other sessions and mails a notice.
pub async fn remove(
    app: &AppState,
    auth: &AuthSession<User>,
    ip: ClientIp,
    user: &User,
    code: &str,
) -> Result<CodeCheck, AuthError> {
    let id = user.id.to_string();
    let factors = &app.factors;
    let check = async {
        let right = factors
            .verify_totp(user.id, code, Timestamp::now())
            .await
            .map_err(SessionError::from)?
            || factors
                .use_recovery_code(user.id, code)
                .await
                .map_err(SessionError::from)?;
        Ok::<_, AuthError>(right.then_some(()))
    };
    match throttled(app, throttle::Account::User(&id), ip, check).await? {
        Attempt::Passed(()) => {}
        Attempt::Failed { .. } => return Ok(CodeCheck::Wrong),
        Attempt::Throttled(wait) => return Ok(CodeCheck::Throttled(wait)),
    }
    factors
        .remove_all(user.id)
        .await
        .map_err(SessionError::from)?;
    factor_changed(app, auth, user, Notice::SecondFactorRemoved).await?;
    Ok(CodeCheck::Right)
}

/// New recovery codes for `user` (freshly logged in); the old ones stop working.
pub async fn regenerate_recovery_codes(
    app: &AppState,
    user: &User,
) -> Result<Vec<String>, AuthError> {
    let codes = app
        .factors
        .regenerate_recovery_codes(user.id)
        .await
        .map_err(SessionError::from)?;
    tracing::info!(target: "latchkey::audit", event = "recovery_codes_regenerated", user_id = user.id, "recovery_codes_regenerated");
    Ok(codes)
}

/// After a factor was added or removed: the user's other sessions end, a notice goes out.
pub async fn factor_changed(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    notice: Notice,
) -> Result<(), AuthError> {
    let ended = auth.revoke_other_sessions().await?;
    tracing::info!(target: "latchkey::audit", event = "second_factor_changed", user_id = user.id, ?notice, other_sessions_ended = ended, "second_factor_changed");
    mail_flows::notify(app, user, user.email.as_deref(), notice, None).await;
    Ok(())
}
