//! The second-factor use cases: the second step of a login the gate left waiting in the
//! session (a TOTP or recovery code completes it, under a failure counter of its own that
//! no password clears); enrolling, confirming and removing TOTP; regenerating recovery
//! codes; and the gate's view of which second factors a user has. The JSON API and the
//! pages both call these.

use crate::credentials;
use crate::notices::{self, Notice};
use crate::web::state::AppState;
use crate::web::throttling::{throttled, Attempt, ClientIp};
use latchkey::factors::{FactorStatus, TotpEnrolment};
use latchkey::throttle;
use latchkey::{
    AuthError, AuthSession, CredentialEvent, Proof, SecondFactorSource, SecondStepFor, SignIn,
    Timestamp, User,
};
use std::time::Duration;

/// The second factors a user has, as `POST /login` and `GET /account` list them:
/// `totp`, `recovery_code`, `passkey`.
pub fn methods(status: FactorStatus, passkeys: usize) -> Vec<&'static str> {
    let mut methods = Vec::new();
    if status.totp {
        methods.push("totp");
    }
    if status.recovery_codes_left > 0 {
        methods.push("recovery_code");
    }
    if passkeys > 0 {
        methods.push("passkey");
    }
    methods
}

/// What the user has enabled of TOTP and recovery codes.
pub async fn status(app: &AppState, user_id: i64) -> Result<FactorStatus, AuthError> {
    Ok(app.factors.status(user_id).await?)
}

/// Every second factor of the user: TOTP and recovery codes, and how many passkeys.
pub async fn enabled(app: &AppState, user_id: i64) -> Result<(FactorStatus, usize), AuthError> {
    let passkeys = match &app.passkeys {
        Some(flows) => flows.store.list(user_id).await?.len(),
        None => 0,
    };
    Ok((status(app, user_id).await?, passkeys))
}

/// The gate's source of which second factors a user has: the server's factor and
/// passkey stores.
pub struct ServerFactors(pub AppState);

#[async_trait::async_trait]
impl SecondFactorSource for ServerFactors {
    async fn second_factors(&self, user_id: &str) -> Result<Vec<String>, AuthError> {
        let Ok(id) = user_id.parse::<i64>() else {
            return Ok(Vec::new());
        };
        let app = &self.0;
        let passkeys = match &app.passkeys {
            Some(flows) => flows.store.list(id).await?.len(),
            None => 0,
        };
        let status = app.factors.status(id).await?;
        Ok(methods(status, passkeys)
            .into_iter()
            .map(str::to_owned)
            .collect())
    }
}

/// How the second step of a login ended.
pub enum SecondStep {
    /// Logged in.
    LoggedIn(User),
    /// No login waits for a second factor here (none, it expired, or the account's
    /// credentials changed since its first step).
    NothingPending,
    /// A wrong (or already used) code.
    Wrong,
    /// Too many wrong codes for this account or address; try after this long.
    Throttled(Duration),
}

/// The user a second factor would serve in this session: whose login waits for it (and
/// has not expired), or the logged-in user whose login lacks one and who has one to give
/// (a step up, as a `two_factor` access rule asks).
pub async fn second_step_user(
    app: &AppState,
    auth: &AuthSession<User>,
) -> Result<Option<i64>, AuthError> {
    let Some(step) = auth.second_step_user().await? else {
        return Ok(None);
    };
    // A waiting login was held because the user has a second factor; a step up needs one.
    if let SecondStepFor::StepUp(user_id) = &step {
        if ServerFactors(*app)
            .second_factors(user_id)
            .await?
            .is_empty()
        {
            return Ok(None);
        }
    }
    Ok(step.user_id().parse::<i64>().ok())
}

/// Completes the pending login with `code`: a TOTP code (a time step not used before)
/// or a recovery code (used up).
pub async fn complete(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    code: &str,
) -> Result<SecondStep, AuthError> {
    let factors = &app.factors;
    complete_with(app, ip, auth, |user_id| async move {
        let totp =
            code.trim().len() <= 8 && factors.verify_totp(user_id, code, Timestamp::now()).await?;
        if totp {
            return Ok(Some(Proof::totp()));
        }
        let recovery = factors.use_recovery_code(user_id, code).await?;
        Ok(recovery.then(Proof::recovery_code))
    })
    .await
}

/// Completes the pending login (or steps a login up) with the second factor `check`
/// verifies for its user
/// (`None` for a wrong one), through the gate. Checks are counted per account under the
/// second-factor counter (free failures, then lockouts, as for passwords; no password
/// clears it) and per address.
pub async fn complete_with<F, Fut>(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    check: F,
) -> Result<SecondStep, AuthError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Proof>, AuthError>>,
{
    let Some(user_id) = second_step_user(app, auth).await? else {
        return Ok(SecondStep::NothingPending);
    };
    let id = user_id.to_string();
    let account = throttle::Account::SecondFactor(&id);
    let proof = match throttled(app, account, ip, check(user_id)).await? {
        Attempt::Passed(proof) => proof,
        Attempt::Failed { .. } => {
            tracing::warn!(target: "latchkey::audit", event = "second_factor_failed", user_id, ip = ?ip.0, "second_factor_failed");
            return Ok(SecondStep::Wrong);
        }
        Attempt::Throttled(wait) => {
            latchkey::audit_refusal!("second_factor_throttled", user_id, ip = ?ip.0, retry_after = wait.as_secs());
            return Ok(SecondStep::Throttled(wait));
        }
    };
    let recovery = proof.method() == Proof::recovery_code().method();
    let user = match auth.continue_sign_in(&id, proof).await? {
        SignIn::LoggedIn(user) => user,
        SignIn::Pending { .. } | SignIn::Refused(_) => return Ok(SecondStep::NothingPending),
    };
    notices::notify_if_device_remembered(app, auth, &user, ip).await;
    if recovery {
        let left = status(app, user.id).await?.recovery_codes_left;
        tracing::info!(target: "latchkey::audit", event = "recovery_code_used", user_id = user.id, left, "recovery_code_used");
    }
    Ok(SecondStep::LoggedIn(user))
}

/// Starts TOTP enrolment for `user` (freshly logged in); `None` when TOTP is already on.
pub async fn begin_totp(app: &AppState, user: &User) -> Result<Option<TotpEnrolment>, AuthError> {
    let account = user.email.as_deref().unwrap_or(&user.username);
    Ok(app.factors.begin_totp(user.id, "latchkey", account).await?)
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
        .await?;
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
/// the second-factor counter; ends what the credential table says and mails a notice.
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
        let right = factors.verify_totp(user.id, code, Timestamp::now()).await?
            || factors.use_recovery_code(user.id, code).await?;
        Ok::<_, AuthError>(right.then_some(()))
    };
    match throttled(app, throttle::Account::SecondFactor(&id), ip, check).await? {
        Attempt::Passed(()) => {}
        Attempt::Failed { .. } => return Ok(CodeCheck::Wrong),
        Attempt::Throttled(wait) => return Ok(CodeCheck::Throttled(wait)),
    }
    factors.remove_all(user.id).await?;
    factor_changed(app, auth, user, Notice::SecondFactorRemoved).await?;
    Ok(CodeCheck::Right)
}

/// New recovery codes for `user` (freshly logged in); the old ones stop working.
pub async fn regenerate_recovery_codes(
    app: &AppState,
    user: &User,
) -> Result<Vec<String>, AuthError> {
    let codes = app.factors.regenerate_recovery_codes(user.id).await?;
    tracing::info!(target: "latchkey::audit", event = "recovery_codes_regenerated", user_id = user.id, "recovery_codes_regenerated");
    Ok(codes)
}

/// After a factor was added or removed: what the credential table says ends (the user's
/// other sessions, remembered devices, waiting logins, mailed ways in), a notice goes
/// out.
pub async fn factor_changed(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    notice: Notice,
) -> Result<(), AuthError> {
    let event = match notice {
        Notice::SecondFactorRemoved | Notice::PasskeyRemoved => {
            CredentialEvent::SecondFactorRemoved
        }
        _ => CredentialEvent::SecondFactorAdded,
    };
    let user = credentials::changed(app, auth, user, event).await?;
    notices::notify(app, &user, user.email.as_deref(), notice, None).await;
    Ok(())
}
