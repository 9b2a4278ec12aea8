//! One table of what each credential change ends, and the one function that ends it.
//!
//! Every credential event (a password changed, reset or set by the admin, an account
//! disabled, an address changed or claimed by its mailbox, a second factor added or
//! removed, another identity provider connected or disconnected) calls [`end_for`], which reads the event's row of [`CredentialEvent::ends`]
//! and ends exactly that: sessions (all, or all but the one that made the change),
//! remembered devices, mailed links and codes by purpose, personal access tokens; and it moves the user's
//! credential version on, which ends on their next use the sessions no store could
//! list (cookie sessions, another process's memory) and every login that waits for a
//! second factor (they are stamped with the version).

use super::AuthError;
use crate::access_token::AccessTokenStore;
use crate::remember::RememberStore;
use crate::session::{SessionId, SessionStorage};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::user::tokens::TokenStore;
use crate::user::{TokenPurpose, User, UserStore};

/// A change to how a user gets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialEvent {
    /// The user changed their password (from a session of theirs).
    PasswordChanged,
    /// A password was set from a mailed reset link.
    PasswordReset,
    /// The admin set the password (`latchkey user passwd`).
    PasswordSetByAdmin,
    /// The account was disabled.
    Disabled,
    /// The account moved to another address (its confirmation link was followed).
    EmailChanged,
    /// A mailed sign-in reached an account whose address was never verified: the
    /// mailbox's owner claims the account, and whoever signed up with the address before
    /// is shut out (the password they set stops working).
    MailboxClaimed,
    /// A second factor (an authenticator, a passkey) was added.
    SecondFactorAdded,
    /// A second factor was removed.
    SecondFactorRemoved,
    /// The admin removed every second factor (`latchkey user mfa-reset`).
    SecondFactorsReset,
    /// The user connected another identity provider to the account (a new way in).
    ProviderConnected,
    /// The user disconnected an identity provider (a way in removed).
    ProviderDisconnected,
}

/// Which of the user's sessions an event ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionsEnded {
    /// Every one.
    All,
    /// Every one but the session that made the change (it carries on, re-stamped).
    AllButCaller,
}

/// One row of the table: what an event ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// The user's sessions.
    pub sessions: SessionsEnded,
    /// Every remembered device.
    pub remembered_devices: bool,
    /// Mailed links and codes of these purposes.
    pub mailed: &'static [TokenPurpose],
    /// Every personal access token: where every session ends (a reset, the admin's
    /// password or disable, the admin's second-factor reset) and where the mailbox's
    /// owner claims the account. A change the user makes from a session keeps them.
    pub access_tokens: bool,
    /// Whether [`end_for`] moves the credential version on (`false` where the change
    /// itself already did: a new password hash, a disable).
    pub bumps_version: bool,
}

/// Every purpose of a mailed link or code.
const EVERY_MAILED: &[TokenPurpose] = &[
    TokenPurpose::ResetPassword,
    TokenPurpose::SignIn,
    TokenPurpose::ChangeEmail,
    TokenPurpose::VerifyEmail,
];

/// The mailed links that get someone in or move the account: a verification link for the
/// address the account has harms nothing and survives.
const MAILED_WAYS_IN: &[TokenPurpose] = &[
    TokenPurpose::ResetPassword,
    TokenPurpose::SignIn,
    TokenPurpose::ChangeEmail,
];

impl CredentialEvent {
    /// Every event, for tables and tests.
    pub const ALL: [CredentialEvent; 11] = [
        CredentialEvent::PasswordChanged,
        CredentialEvent::PasswordReset,
        CredentialEvent::PasswordSetByAdmin,
        CredentialEvent::Disabled,
        CredentialEvent::EmailChanged,
        CredentialEvent::MailboxClaimed,
        CredentialEvent::SecondFactorAdded,
        CredentialEvent::SecondFactorRemoved,
        CredentialEvent::SecondFactorsReset,
        CredentialEvent::ProviderConnected,
        CredentialEvent::ProviderDisconnected,
    ];

    /// The table: what this event ends.
    pub const fn ends(self) -> Ends {
        use CredentialEvent::*;
        use SessionsEnded::*;
        let (sessions, mailed, bumps_version) = match self {
            PasswordChanged => (AllButCaller, MAILED_WAYS_IN, false),
            PasswordReset | PasswordSetByAdmin | Disabled => (All, EVERY_MAILED, false),
            EmailChanged | MailboxClaimed => (AllButCaller, EVERY_MAILED, true),
            SecondFactorAdded | SecondFactorRemoved | ProviderConnected | ProviderDisconnected => {
                (AllButCaller, MAILED_WAYS_IN, true)
            }
            SecondFactorsReset => (All, EVERY_MAILED, true),
        };
        Ends {
            sessions,
            remembered_devices: true,
            mailed,
            bumps_version,
            access_tokens: matches!(sessions, All) || matches!(self, MailboxClaimed),
        }
    }

    /// Its name in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialEvent::PasswordChanged => "password_changed",
            CredentialEvent::PasswordReset => "password_reset",
            CredentialEvent::PasswordSetByAdmin => "password_set_by_admin",
            CredentialEvent::Disabled => "disabled",
            CredentialEvent::EmailChanged => "email_changed",
            CredentialEvent::MailboxClaimed => "mailbox_claimed",
            CredentialEvent::SecondFactorAdded => "second_factor_added",
            CredentialEvent::SecondFactorRemoved => "second_factor_removed",
            CredentialEvent::SecondFactorsReset => "second_factors_reset",
            CredentialEvent::ProviderConnected => "provider_connected",
            CredentialEvent::ProviderDisconnected => "provider_disconnected",
        }
    }
}

/// Where a user's sessions, devices and mailed links are kept: what [`end_for`] reaches.
/// A server has them all; the admin's command line may lack the sessions (a memory or
/// cookie store: those sessions end on their next request, by the credential version).
#[derive(Default)]
pub struct Holders<'a> {
    /// latchkey's user store, which moves the credential version on (an application
    /// with its own user type bumps its version itself).
    pub users: Option<&'a dyn UserStore>,
    /// The session storage, if reachable.
    pub sessions: Option<&'a dyn SessionStorage>,
    /// The remember-me tokens, if enabled.
    pub remembered: Option<&'a dyn RememberStore>,
    /// The personal access tokens, if enabled.
    pub access_tokens: Option<&'a dyn AccessTokenStore>,
    /// The mailed links and codes, if the mail flows are on (latchkey's own users,
    /// whose ids are numbers; they live in a database).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub mailed: Option<&'a dyn TokenStore>,
}

/// What [`end_for`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The user as they are now, when [`end_for`] moved their credential version on.
    pub user: Option<User>,
    /// Sessions deleted from the storage (0 where it cannot list them).
    pub sessions: u64,
    /// Remembered devices forgotten.
    pub remembered_devices: u64,
    /// Mailed links and codes revoked.
    pub mailed: u64,
    /// Personal access tokens revoked.
    pub access_tokens: u64,
}

/// Ends what `event` ends for the user `user_id` (after the change), keeping `caller`'s
/// session where the table says the caller carries on: the one function every
/// credential event calls.
pub async fn end_for(
    holders: &Holders<'_>,
    event: CredentialEvent,
    user_id: &str,
    caller: Option<&SessionId>,
) -> Result<Ended, AuthError> {
    let ends = event.ends();
    let numeric_id = user_id.parse::<i64>().ok();
    let user = match (ends.bumps_version, holders.users, numeric_id) {
        (true, Some(users), Some(id)) => Some(users.bump_credential_version(id).await?),
        _ => None,
    };
    let user_id = user_id.to_string();
    let keep = match ends.sessions {
        SessionsEnded::All => None,
        SessionsEnded::AllButCaller => caller,
    };
    let sessions = match holders.sessions {
        Some(storage) => storage.delete_for_user(&user_id, keep).await?,
        None => 0,
    };
    let remembered_devices = match (ends.remembered_devices, holders.remembered) {
        (true, Some(store)) => store.delete_for_user(&user_id).await?,
        _ => 0,
    };
    #[allow(unused_mut)]
    let mut mailed = 0;
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if let (Some(tokens), Some(id)) = (holders.mailed, numeric_id) {
        for purpose in ends.mailed {
            mailed += tokens.revoke(id, *purpose).await?;
        }
    }
    let access_tokens = match (ends.access_tokens, holders.access_tokens) {
        (true, Some(store)) => {
            store
                .revoke_for_user(&user_id, crate::time::Timestamp::now())
                .await?
        }
        _ => 0,
    };
    audit!(info, "credentials_changed", user_id = %user_id, change = event.as_str(), sessions, remembered_devices, mailed, access_tokens);
    Ok(Ended {
        user,
        sessions,
        remembered_devices,
        mailed,
        access_tokens,
    })
}
