//! Security notices: the mails a user cannot turn off, sent after a change to their
//! account (a password, an address, a second factor, a lockout, a new remembered
//! device). Every capability that makes such a change sends its notice from here.

use crate::web::state::AppState;
use crate::web::templates::Templates;
use crate::web::throttling::ClientIp;
use latchkey::mail::Mail;
use latchkey::{AuthSession, CredentialEvent, User};
use minijinja::context;

/// What a security notice is about.
#[derive(Debug, Clone, Copy)]
pub enum Notice {
    /// The password was changed from the account.
    PasswordChanged,
    /// The password was set from a reset link.
    PasswordReset,
    /// The account moved to another address (sent to the old one).
    EmailChanged,
    /// A new device signed in and will be remembered.
    NewRememberedDevice,
    /// Failed logins locked the account for a while.
    LockedOut,
    /// A second factor (an authenticator app) was added.
    SecondFactorAdded,
    /// The second factors were removed.
    SecondFactorRemoved,
    /// A passkey was added.
    PasskeyAdded,
    /// A passkey was removed.
    PasskeyRemoved,
    /// The admin removed every second factor and passkey.
    SecondFactorsResetByAdmin,
    /// Another identity provider was connected to the account.
    ProviderConnected,
    /// Another identity provider was disconnected from the account.
    ProviderDisconnected,
}

impl Notice {
    /// The subject and the sentence of the notice.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Notice::PasswordChanged => (
                "Your password was changed",
                "The password of your account was changed.",
            ),
            Notice::PasswordReset => (
                "Your password was reset",
                "The password of your account was set from a reset link sent to this address. Every session and remembered device was logged out.",
            ),
            Notice::EmailChanged => (
                "Your email address was changed",
                "Your account no longer uses this address.",
            ),
            Notice::NewRememberedDevice => (
                "A new device signed in",
                "Someone signed in to your account with your password and asked to stay logged in on that device.",
            ),
            Notice::LockedOut => (
                "Failed logins on your account",
                "Several wrong passwords were tried for your account, so logins are paused for a while.",
            ),
            Notice::SecondFactorAdded => (
                "Two-step login turned on",
                "An authenticator app was added to your account: logins now ask for its code. Every other session was logged out.",
            ),
            Notice::PasskeyAdded => (
                "A passkey was added",
                "A passkey was added to your account: it signs in on its own, and counts as a second factor. Every other session was logged out.",
            ),
            Notice::PasskeyRemoved => (
                "A passkey was removed",
                "A passkey was removed from your account. Every other session was logged out.",
            ),
            Notice::SecondFactorsResetByAdmin => (
                "Two-step login was reset",
                "An administrator removed the authenticator app, recovery codes and passkeys of your account. Every session and remembered device was logged out.",
            ),
            Notice::ProviderConnected => (
                "A sign-in provider was connected",
                "Another identity provider was connected to your account: it can now sign you in.",
            ),
            Notice::ProviderDisconnected => (
                "A sign-in provider was disconnected",
                "An identity provider was disconnected from your account: it no longer signs you in.",
            ),
            Notice::SecondFactorRemoved => (
                "Two-step login turned off",
                "The authenticator app and recovery codes were removed from your account. Every other session was logged out.",
            ),
        }
    }
}

impl Notice {
    /// The credential change it reports, if it reports one.
    fn event(self) -> Option<CredentialEvent> {
        Some(match self {
            Notice::PasswordChanged => CredentialEvent::PasswordChanged,
            Notice::PasswordReset => CredentialEvent::PasswordReset,
            Notice::EmailChanged => CredentialEvent::EmailChanged,
            Notice::SecondFactorAdded | Notice::PasskeyAdded => CredentialEvent::SecondFactorAdded,
            Notice::SecondFactorRemoved | Notice::PasskeyRemoved => {
                CredentialEvent::SecondFactorRemoved
            }
            Notice::SecondFactorsResetByAdmin => CredentialEvent::SecondFactorsReset,
            Notice::ProviderConnected => CredentialEvent::ProviderConnected,
            Notice::ProviderDisconnected => CredentialEvent::ProviderDisconnected,
            Notice::NewRememberedDevice | Notice::LockedOut => return None,
        })
    }

    /// Whether the change it reports kept the user's personal access tokens (the
    /// credential table's column): the notice then lists them.
    fn keeps_tokens(self) -> bool {
        self.event()
            .is_some_and(|event| !event.ends().access_tokens)
    }
}

/// The line of a notice about the user's tokens that still work (by their first
/// characters, never their names, which the user chose), if they have any.
async fn tokens_still_working(app: &AppState, user: &User) -> Option<String> {
    let tokens = app
        .tokens
        .store
        .list(Some(&user.id.to_string()), latchkey::Timestamp::now())
        .await
        .map_err(|error| tracing::warn!(%error, "tokens not listed for a notice"))
        .ok()?;
    if tokens.is_empty() {
        return None;
    }
    let prefixes: Vec<String> = tokens
        .iter()
        .map(|token| format!("{}…", token.prefix))
        .collect();
    Some(format!(
        "Your API tokens still work: {}. Revoke any you do not know at {}/account/tokens.",
        prefixes.join(", "),
        app.mail.public_url
    ))
}

/// The mail of `notice` to `to` (with a detail line, if any), its link to the login
/// page of the site at `public_url`. No mail holds text a user chose (a name), which a
/// mail client could turn into a link.
pub fn notice_mail(
    templates: &Templates,
    public_url: &str,
    to: &str,
    notice: Notice,
    detail: Option<String>,
) -> Result<Mail, minijinja::Error> {
    let (subject, sentence) = notice.words();
    templates.render_mail(
        "notice",
        to,
        context! {
            subject => subject,
            sentence => sentence,
            detail => detail,
            link => format!("{public_url}/login"),
        },
    )
}

/// Queues `notice` to `to` about `user` (with a detail line, if any) and wakes the
/// worker. Notices cannot be turned off. A failure is logged: the change it reports
/// has already happened.
pub async fn notify(
    app: &AppState,
    user: &User,
    to: Option<&str>,
    notice: Notice,
    detail: Option<String>,
) {
    let Some(to) = to else {
        return;
    };
    let tokens = match notice.keeps_tokens() {
        true => tokens_still_working(app, user).await,
        false => None,
    };
    let detail = match (detail, tokens) {
        (Some(detail), Some(tokens)) => Some(format!("{detail}\n{tokens}")),
        (detail, tokens) => detail.or(tokens),
    };
    let mail =
        notice_mail(&app.templates, &app.mail.public_url, to, notice, detail).map_err(|error| {
            tracing::error!(%error, "mail template failed");
            error
        });
    let queued = match mail {
        Ok(mail) => app
            .mail
            .outbox
            .enqueue(&mail)
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match queued {
        Ok(_) => {
            app.mail.worker.wake();
            tracing::info!(target: "latchkey::audit", event = "notice_queued", user_id = user.id, notice = ?notice, "notice_queued");
        }
        Err(error) => {
            tracing::error!(%error, user_id = user.id, ?notice, "security notice not queued");
        }
    }
}

/// Mails the "new device" notice when a login of this request remembered the device.
pub async fn notify_if_device_remembered(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    ip: ClientIp,
) {
    if auth.remembered_device() {
        let detail = ip.0.map(|address| format!("It connected from {address}."));
        notify(
            app,
            user,
            user.email.as_deref(),
            Notice::NewRememberedDevice,
            detail,
        )
        .await;
    }
}
