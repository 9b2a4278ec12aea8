//! The mail flows' use cases: password reset, email verification, sign-in by link or
//! code, email change (their security notices are in [`crate::notices`]). The JSON API
//! and the pages both call these.
//!
//! A request for mail (a reset link, a sign-in code, a verification resend) is counted
//! by the throttle and answered before the address is even looked up: the lookup, the
//! token and its mail (one transaction) happen in a background task, so the answer and
//! its timing are the same whether the address belongs to an account or not. Links
//! lead to pages whose `GET` only shows a form (a mail scanner opening them uses
//! nothing up); the form's `POST` redeems the token, once.

use crate::credentials;
use crate::notices::{notify, Notice};
use crate::web::state::AppState;
use crate::web::throttling::ClientIp;
use latchkey::mail::outbox::OutboxError;
use latchkey::mail::Mail;
use latchkey::throttle::{account_tag, Verdict};
use latchkey::user::login_key;
use latchkey::user::tokens::{CodeOutcome, IssuedToken, TokenPurpose};
use latchkey::UserStoreError;
use latchkey::{AuthError, AuthSession, CredentialEvent, Proof, SignIn, User};
use minijinja::{context, Value};
use std::time::Duration;

/// How a request for mail was taken.
pub enum MailRequest {
    /// Taken: the mail goes out if the address belongs to an account (the answer is the
    /// same either way).
    Accepted,
    /// Too many requests for this address or from this client; try after this long.
    Throttled(Duration),
    /// Too many requests already being worked on; try again shortly.
    Busy,
    /// Not an address the mailer would send to (the reason, for a 400); nothing counted.
    NotAnAddress(&'static str),
}

/// Which mail a request asks for.
#[derive(Debug, Clone, Copy)]
pub enum Requested {
    /// A password reset link.
    PasswordReset,
    /// A sign-in link and code.
    SignIn,
    /// The email verification link again.
    Verification,
}

/// Takes a request for the mail `what` to `email` from `ip`: throttled per address and
/// per client, then worked on in the background (see the module comment).
pub async fn request_mail(
    app: &AppState,
    ip: ClientIp,
    email: &str,
    what: Requested,
) -> Result<MailRequest, AuthError> {
    let email = email.trim();
    match latchkey::user::validate_email(email) {
        Ok(_) => {}
        Err(UserStoreError::InvalidEmail(reason)) => return Ok(MailRequest::NotAnAddress(reason)),
        Err(error) => return Err(error.into()),
    }
    let verdict = app.throttle.mail_request(email, ip.0).await?;
    if let Verdict::Wait(wait) = verdict {
        latchkey::audit_refusal!("mail_request_throttled", account = %account_tag(email), ip = ?ip.0, retry_after = wait.as_secs());
        return Ok(MailRequest::Throttled(wait));
    }
    let Ok(permit) = app.mail.background.clone().try_acquire_owned() else {
        return Ok(MailRequest::Busy);
    };
    let (app, email) = (*app, email.to_string());
    tokio::spawn(async move {
        if let Err(error) = send_requested(&app, &email, what).await {
            tracing::warn!(%error, ?what, "a requested mail was not queued");
        }
        drop(permit);
    });
    Ok(MailRequest::Accepted)
}

/// The background half of [`request_mail`].
async fn send_requested(app: &AppState, email: &str, what: Requested) -> Result<(), AuthError> {
    let Some(user) = user_with_email(app, email).await? else {
        tracing::info!(target: "latchkey::audit", event = "mail_request_unknown", account = %account_tag(email), ?what, "mail_request_unknown");
        return Ok(());
    };
    match what {
        Requested::PasswordReset => {
            send_token(
                app,
                &user,
                email_of(&user),
                TokenPurpose::ResetPassword,
                "reset_password",
                "/password/reset",
            )
            .await
        }
        Requested::SignIn => {
            send_token(
                app,
                &user,
                email_of(&user),
                TokenPurpose::SignIn,
                "sign_in",
                "/login/email/confirm",
            )
            .await
        }
        Requested::Verification if user.email_verified_at.is_none() => {
            send_verification(app, &user).await
        }
        Requested::Verification => Ok(()),
    }
}

/// The enabled user whose email (not username) is `email`, compared as logins are.
async fn user_with_email(app: &AppState, email: &str) -> Result<Option<User>, AuthError> {
    let user = app.backend.users().find_by_login(email).await?;
    let key = login_key(email);
    Ok(user.filter(|user| {
        !user.disabled
            && user
                .email
                .as_deref()
                .is_some_and(|own| login_key(own) == key)
    }))
}

/// The user's address (users without one are never looked up by address).
fn email_of(user: &User) -> &str {
    user.email.as_deref().unwrap_or_default()
}

/// Sends the verification link to `user`'s address (after sign-up, or asked again).
pub async fn send_verification(app: &AppState, user: &User) -> Result<(), AuthError> {
    match user.email.as_deref() {
        Some(email) => {
            send_token(
                app,
                user,
                email,
                TokenPurpose::VerifyEmail,
                "verify_email",
                "/email/verify",
            )
            .await
        }
        None => Ok(()),
    }
}

/// Issues a token of `purpose` for `user` and queues the mail `template` makes of it
/// (a link to `path?token=…`, and a code for sign-in) to `to`, in one transaction;
/// wakes the outbox worker.
async fn send_token(
    app: &AppState,
    user: &User,
    to: &str,
    purpose: TokenPurpose,
    template: &str,
    path: &str,
) -> Result<(), AuthError> {
    let lifetimes = app.mail.lifetimes;
    let (ttl, with_code) = match purpose {
        TokenPurpose::ResetPassword => (lifetimes.reset, false),
        TokenPurpose::VerifyEmail | TokenPurpose::ChangeEmail => (lifetimes.verify, false),
        TokenPurpose::SignIn => (lifetimes.sign_in, true),
    };
    let issued = IssuedToken::generate(with_code);
    let link = format!("{}{path}?token={}", app.mail.public_url, issued.token);
    let mail = render_mail(
        app,
        template,
        to,
        context! {
            email => to,
            link => link,
            code => issued.code.clone(),
            valid_minutes => ttl.as_secs() / 60,
            valid_seconds => ttl.as_secs(),
        },
    )?;
    app.mail
        .tokens
        .issue_with_mail(purpose, user.id, to, ttl, &issued, &mail)
        .await?;
    app.mail.worker.wake();
    tracing::info!(target: "latchkey::audit", event = "mail_token_sent", user_id = user.id, purpose = purpose.as_str(), "mail_token_sent");
    Ok(())
}

/// A mail from the templates; a template that fails is a server fault (500).
fn render_mail(
    app: &AppState,
    template: &str,
    to: &str,
    context: Value,
) -> Result<Mail, AuthError> {
    app.templates
        .render_mail(template, to, context)
        .map_err(|error| {
            tracing::error!(%error, template, "mail template failed");
            AuthError::from(OutboxError::Corrupt(Box::new(error)))
        })
}

/// Whether a token from a link is live, without using it up (what the link's page
/// shows before its form is sent).
pub async fn token_is_live(
    app: &AppState,
    purpose: TokenPurpose,
    token: &str,
) -> Result<bool, AuthError> {
    Ok(app.mail.tokens.peek(purpose, token).await?.is_some())
}

/// Why a password was not set from a reset link.
pub enum ResetError {
    /// The link is unknown, used, expired or superseded by a newer one.
    InvalidToken,
    /// The new password breaks the policy (the message says how).
    Policy(String),
    /// A backing service failed.
    Failed(AuthError),
}

impl From<AuthError> for ResetError {
    fn from(error: AuthError) -> Self {
        ResetError::Failed(error)
    }
}

/// How a password reset ended.
pub enum Reset {
    /// The password is set; nobody was logged in.
    PasswordSet(User),
    /// The password is set and the user is logged in (`--reset-logs-in`).
    LoggedIn(User),
    /// The password is set and the login waits for one of these second factors
    /// (`--reset-logs-in` for a user who has one).
    SecondFactorRequired(Vec<String>),
}

/// Sets `password` for the owner of reset `token`: the policy first (a refused password
/// leaves the link usable), then the token is used up (of racing requests one wins),
/// the hash stored (the credential version moves on), the address the link went to
/// marked verified (the link proved it), what the credential table says a reset ends
/// ended, and a notice queued. Logs in through the gate (a mailbox proof: not fresh, and
/// the second step for a user with a second factor) only with `--reset-logs-in`.
pub async fn reset_password(
    app: &AppState,
    auth: &AuthSession<User>,
    token: &str,
    password: &str,
) -> Result<Reset, ResetError> {
    let tokens = &app.mail.tokens;
    let purpose = TokenPurpose::ResetPassword;
    let owner = tokens.peek(purpose, token).await.map_err(AuthError::from)?;
    let Some(owner) = owner else {
        return Err(ResetError::InvalidToken);
    };
    let users = app.backend.users();
    let user = match users
        .find_by_id(owner.user_id)
        .await
        .map_err(AuthError::from)?
    {
        Some(user) if !user.disabled => user,
        _ => return Err(ResetError::InvalidToken),
    };
    let user_inputs: Vec<&str> = std::iter::once(user.username.as_str())
        .chain(user.email.as_deref())
        .collect();
    let hasher = app.backend.hasher();
    hasher
        .check_new_password(app.policy, password, &user_inputs)
        .await
        .map_err(AuthError::from)?
        .map_err(|error| ResetError::Policy(error.to_string()))?;
    let redeemed = tokens
        .redeem(purpose, token)
        .await
        .map_err(AuthError::from)?;
    if redeemed.is_none() {
        return Err(ResetError::InvalidToken);
    }
    let hash = hasher.hash(password).await.map_err(AuthError::from)?;
    let updated = users
        .set_password_hash(user.id, &hash)
        .await
        .map_err(AuthError::from)?;
    // The link proved the address it went to, if the account still has it.
    let updated = users
        .mark_email_verified(user.id, &owner.email)
        .await
        .map_err(AuthError::from)?
        .unwrap_or(updated);
    let updated = credentials::changed(app, auth, &updated, CredentialEvent::PasswordReset).await?;
    tracing::info!(target: "latchkey::audit", event = "password_reset", user_id = user.id, "password_reset");
    notify(
        app,
        &updated,
        updated.email.as_deref(),
        Notice::PasswordReset,
        None,
    )
    .await;
    if !app.mail.reset_logs_in {
        return Ok(Reset::PasswordSet(updated));
    }
    Ok(
        match auth
            .sign_in(&updated, Proof::password_reset(), None)
            .await?
        {
            SignIn::LoggedIn(user) => Reset::LoggedIn(user),
            SignIn::Pending { methods } => Reset::SecondFactorRequired(methods),
            SignIn::Refused(_) => Reset::PasswordSet(updated),
        },
    )
}

/// Uses up verification `token`: the owner's email is verified if it is still the
/// address the link went to. `None` for a dead link.
pub async fn verify_email(
    app: &AppState,
    auth: &AuthSession<User>,
    token: &str,
) -> Result<Option<User>, AuthError> {
    let owner = app
        .mail
        .tokens
        .redeem(TokenPurpose::VerifyEmail, token)
        .await?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let verified = app
        .backend
        .users()
        .mark_email_verified(owner.user_id, &owner.email)
        .await?;
    if let Some(user) = &verified {
        auth.authenticator().forget_user(&user.id.to_string());
        tracing::info!(target: "latchkey::audit", event = "email_verified", user_id = user.id, "email_verified");
    }
    Ok(verified)
}

/// How a sign-in by mail ended.
pub enum MailSignIn {
    /// Logged in (not fresh: the mailbox was proven, not the password).
    LoggedIn(User),
    /// The mailbox is proven but the user has a second factor: the login waits in the
    /// session for one of these, as after a password.
    SecondFactorRequired(Vec<String>),
    /// A wrong, used or expired code or link (the same answer for each).
    Refused,
    /// Too many codes for this address or from this client; try after this long.
    Throttled(Duration),
}

/// Signs in with the `code` mailed to `email`: throttled per address and client before
/// the code is checked; ten wrong codes burn the token.
pub async fn sign_in_with_code(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    email: &str,
    code: &str,
) -> Result<MailSignIn, AuthError> {
    let email = email.trim();
    let verdict = app.throttle.code_attempt(email, ip.0).await?;
    if let Verdict::Wait(wait) = verdict {
        latchkey::audit_refusal!("sign_in_code_throttled", account = %account_tag(email), ip = ?ip.0, retry_after = wait.as_secs());
        return Ok(MailSignIn::Throttled(wait));
    }
    let outcome = app
        .mail
        .tokens
        .redeem_code(TokenPurpose::SignIn, email, code)
        .await?;
    match outcome {
        CodeOutcome::Redeemed(owner) => {
            log_in_owner(app, auth, owner.user_id, &owner.email, Proof::mailed_code()).await
        }
        CodeOutcome::Wrong(left) => {
            tracing::info!(target: "latchkey::audit", event = "sign_in_code_wrong", account = %account_tag(email), ip = ?ip.0, attempts_left = left, "sign_in_code_wrong");
            Ok(MailSignIn::Refused)
        }
        CodeOutcome::NoToken => {
            // The same work as a wrong code (one statement, one MAC compared, one audit
            // line), so the time does not tell whether the address has a live code.
            tracing::info!(target: "latchkey::audit", event = "sign_in_code_not_live", account = %account_tag(email), ip = ?ip.0, "sign_in_code_not_live");
            Ok(MailSignIn::Refused)
        }
    }
}

/// Signs in with the link's `token`.
pub async fn sign_in_with_link(
    app: &AppState,
    auth: &AuthSession<User>,
    token: &str,
) -> Result<MailSignIn, AuthError> {
    let owner = app.mail.tokens.redeem(TokenPurpose::SignIn, token).await?;
    match owner {
        Some(owner) => {
            log_in_owner(app, auth, owner.user_id, &owner.email, Proof::mailed_link()).await
        }
        None => Ok(MailSignIn::Refused),
    }
}

/// Hands the gate the owner of a redeemed sign-in token, if they are enabled and still
/// use the address it went to (which is verified by it). An address never verified
/// before is the mailbox's owner claiming the account: see [`claim_mailbox`].
async fn log_in_owner(
    app: &AppState,
    auth: &AuthSession<User>,
    user_id: i64,
    email: &str,
    proof: Proof,
) -> Result<MailSignIn, AuthError> {
    let users = app.backend.users();
    let Some(before) = users.find_by_id(user_id).await? else {
        return Ok(MailSignIn::Refused);
    };
    if before.disabled {
        return Ok(MailSignIn::Refused);
    }
    let Some(mut user) = users.mark_email_verified(user_id, email).await? else {
        return Ok(MailSignIn::Refused);
    };
    auth.authenticator().forget_user(&user.id.to_string());
    if before.email_verified_at.is_none() {
        user = claim_mailbox(app, auth, &user).await?;
    }
    Ok(match auth.sign_in(&user, proof, None).await? {
        SignIn::LoggedIn(user) => MailSignIn::LoggedIn(user),
        SignIn::Pending { methods } => MailSignIn::SecondFactorRequired(methods),
        SignIn::Refused(_) => MailSignIn::Refused,
    })
}

/// The owner of a mailbox proved it for an account whose address was never verified:
/// whoever signed up with the address before them (perhaps to squat it) is shut out.
/// The password set before stops working (a hash of a secret nobody knows replaces it:
/// a reset sets a new one), and the credential table ends every session, remembered
/// device and mailed link of the account.
async fn claim_mailbox(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
) -> Result<User, AuthError> {
    let mut secret = [0u8; 32];
    latchkey::bytes::random_bytes(&mut secret);
    let unknowable: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    let hash = app.backend.hasher().hash(&unknowable).await?;
    let user = app
        .backend
        .users()
        .set_password_hash(user.id, &hash)
        .await?;
    tracing::warn!(target: "latchkey::audit", event = "mailbox_claimed", user_id = user.id, "mailbox_claimed");
    credentials::changed(app, auth, &user, CredentialEvent::MailboxClaimed).await
}

/// Why an email change was not asked for or not made.
pub enum EmailChangeError {
    /// Not an address: the message says why.
    Invalid(String),
    /// The link is unknown, used or expired.
    InvalidToken,
    /// Another account uses the address.
    Taken(String),
    /// Too many requests for this account, address or client; try after this long.
    Throttled(Duration),
    /// A backing service failed.
    Failed(AuthError),
}

impl From<AuthError> for EmailChangeError {
    fn from(error: AuthError) -> Self {
        EmailChangeError::Failed(error)
    }
}

/// Asks to move `user` (freshly logged in, from `ip`) to `new_email`: throttled per
/// account, per address and per client like every mail request, then a confirmation
/// link goes to the new address; nothing changes until it is followed.
pub async fn request_email_change(
    app: &AppState,
    ip: ClientIp,
    user: &User,
    new_email: &str,
) -> Result<String, EmailChangeError> {
    let email = latchkey::user::validate_email(new_email.trim())
        .map_err(|error| EmailChangeError::Invalid(error.to_string()))?;
    let verdict = app
        .throttle
        .account_mail_request(&user.id.to_string(), &email, ip.0)
        .await
        .map_err(AuthError::from)?;
    if let Verdict::Wait(wait) = verdict {
        latchkey::audit_refusal!("email_change_throttled", user_id = user.id, ip = ?ip.0, retry_after = wait.as_secs());
        return Err(EmailChangeError::Throttled(wait));
    }
    send_token(
        app,
        user,
        &email,
        TokenPurpose::ChangeEmail,
        "change_email",
        "/account/email/confirm",
    )
    .await?;
    Ok(email)
}

/// Uses up email-change `token`: the owner's address becomes the one the link went to
/// (verified by it), and the old address gets a notice.
pub async fn confirm_email_change(
    app: &AppState,
    auth: &AuthSession<User>,
    token: &str,
) -> Result<User, EmailChangeError> {
    let owner = app
        .mail
        .tokens
        .redeem(TokenPurpose::ChangeEmail, token)
        .await
        .map_err(AuthError::from)?;
    let Some(owner) = owner else {
        return Err(EmailChangeError::InvalidToken);
    };
    let users = app.backend.users();
    let Some(before) = users
        .find_by_id(owner.user_id)
        .await
        .map_err(AuthError::from)?
    else {
        return Err(EmailChangeError::InvalidToken);
    };
    let after = match users.set_email(owner.user_id, &owner.email, true).await {
        Ok(user) => user,
        Err(UserStoreError::EmailTaken(email)) => {
            return Err(EmailChangeError::Taken(format!(
                "Email {email} is already registered."
            )))
        }
        Err(error) => return Err(EmailChangeError::Failed(error.into())),
    };
    let after = credentials::changed(app, auth, &after, CredentialEvent::EmailChanged).await?;
    tracing::info!(target: "latchkey::audit", event = "email_changed", user_id = after.id, "email_changed");
    if before.email.as_deref().map(login_key) != Some(login_key(&owner.email)) {
        let detail = Some(format!("It now uses {}.", owner.email));
        notify(
            app,
            &after,
            before.email.as_deref(),
            Notice::EmailChanged,
            detail,
        )
        .await;
    }
    Ok(after)
}
