//! Sign-in with other identity providers: what an identity the provider vouched for
//! means here. An identity is its issuer and subject, never an address:
//!
//! * linked already: that user signs in, through the gate (a second factor is asked
//!   like after a password);
//! * new, with an address the provider verified that no account uses: a new account,
//!   without a password, its address verified as the provider said;
//! * new, with an address an account uses: linked only when the provider verified the
//!   address **and** the account had verified it too; otherwise no session, and the
//!   person is told to sign in and connect the provider from the account page (a
//!   provider that does not verify addresses, or a squatter's unverified account, gets
//!   nobody's account);
//! * new, with no verified address: a new account without an address (an unverified
//!   address would let its owner's later sign-up find it taken).
//!
//! Connecting from the account page links the identity to the user who asked, whatever
//! its address; disconnecting is refused while it is the account's last way in.

use crate::credentials;
use crate::notices::{self, Notice};
use crate::web::state::AppState;
use latchkey::oidc::identities::{Identity, IdentityStoreError};
use latchkey::oidc::VerifiedIdentity;
use latchkey::user::validate_username;
use latchkey::{
    AuthError, AuthSession, CredentialEvent, NewUser, Proof, SignIn, Timestamp, User,
    UserStoreError,
};

/// What an identity the provider vouched for came to.
#[derive(Debug)]
pub enum Arrival {
    /// Logged in: go on to `next`.
    LoggedIn {
        /// Where the sign-in was going.
        next: Option<String>,
    },
    /// The account has a second factor: the login waits for it.
    SecondFactorRequired {
        /// Where the sign-in was going.
        next: Option<String>,
    },
    /// Connected to the logged-in user's account.
    Connected,
    /// Nobody was logged in or connected; the sentence says why, for the person.
    Refused(String),
}

/// What a person reads when the address belongs to an account the provider may not
/// claim.
fn address_taken(provider: &str) -> String {
    format!(
        "An account already uses this address: sign in to it, then connect {provider} from your account page."
    )
}

/// Resolves `identity` (just verified by its provider) for the browser of `auth`.
pub async fn arrive(
    app: &AppState,
    auth: &AuthSession<User>,
    identity: VerifiedIdentity,
) -> Result<Arrival, AuthError> {
    let identities = &app.providers.identities;
    let linked = identities.find(&identity.issuer, &identity.subject).await?;
    if let Some(connect_for) = identity.connect_for.clone() {
        return connect(app, auth, identity, &connect_for, linked).await;
    }
    let users = app.backend.users();
    let user = match linked {
        Some(linked) => {
            identities
                .used(
                    &identity.issuer,
                    &identity.subject,
                    identity.email.as_deref(),
                    identity.email_verified,
                    Timestamp::now(),
                )
                .await?;
            match users.find_by_id(linked.user_id).await? {
                Some(user) => user,
                None => return Ok(Arrival::Refused("This account no longer exists.".into())),
            }
        }
        None => match first_arrival(app, &identity).await? {
            Ok(user) => user,
            Err(refusal) => return Ok(Arrival::Refused(refusal)),
        },
    };
    let next = identity.next;
    Ok(
        match auth
            .sign_in(&user, Proof::delegated(&identity.provider), None)
            .await?
        {
            SignIn::LoggedIn(_) => Arrival::LoggedIn { next },
            SignIn::Pending { .. } => Arrival::SecondFactorRequired { next },
            SignIn::Refused(why) => Arrival::Refused(match why {
                latchkey::Refusal::Inactive => "This account is disabled.".into(),
                latchkey::Refusal::EmailUnverified => {
                    "Please verify your email address first: follow the link we mailed you.".into()
                }
                _ => "The sign-in could not be completed.".into(),
            }),
        },
    )
}

/// An identity seen for the first time: the account it links to or creates, or why
/// neither.
async fn first_arrival(
    app: &AppState,
    identity: &VerifiedIdentity,
) -> Result<Result<User, String>, AuthError> {
    let users = app.backend.users();
    let verified_email = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
        .and_then(|email| latchkey::user::validate_email(email).ok());
    if let Some(email) = identity.email.as_deref() {
        if let Some(owner) = users.find_by_login(email).await? {
            // Only the account's own address counts (a username can look like one).
            let same_address = owner
                .email
                .as_deref()
                .is_some_and(|own| own.eq_ignore_ascii_case(email));
            if same_address {
                if verified_email.is_some() && owner.email_verified_at.is_some() {
                    link(app, identity, owner.id).await?;
                    notices::notify(
                        app,
                        &owner,
                        owner.email.as_deref(),
                        Notice::ProviderConnected,
                        Some(format!("Provider: {}.", identity.provider)),
                    )
                    .await;
                    return Ok(Ok(owner));
                }
                return Ok(Err(address_taken(&identity.provider)));
            }
        }
    }
    let user = create_account(app, identity, verified_email.as_deref()).await?;
    link(app, identity, user.id).await?;
    Ok(Ok(user))
}

/// A new account for `identity`: a unique name from the provider's preferred name or
/// the address, no password, the address (if verified) marked verified.
async fn create_account(
    app: &AppState,
    identity: &VerifiedIdentity,
    verified_email: Option<&str>,
) -> Result<User, AuthError> {
    let users = app.backend.users();
    let stem = username_stem(identity);
    for attempt in 0..20u32 {
        let candidate = match attempt {
            0 => stem.clone(),
            1..=9 => format!("{stem}{}", attempt + 1),
            _ => format!("{stem}-{}", latchkey::bytes::lower_hex(&random4())),
        };
        let Ok(new_user) = NewUser::without_password(&candidate, verified_email) else {
            continue;
        };
        match users.create(new_user).await {
            Ok(user) => {
                let user = match verified_email {
                    // As the provider said: the address is verified from the start.
                    Some(email) => users
                        .mark_email_verified(user.id, email)
                        .await?
                        .unwrap_or(user),
                    None => user,
                };
                tracing::info!(target: "latchkey::audit", event = "account_created_by_provider", user_id = user.id, provider = %identity.provider, "account_created_by_provider");
                return Ok(user);
            }
            Err(UserStoreError::UsernameTaken(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(UserStoreError::Unavailable("no free username for a new account".into()).into())
}

/// Four random bytes, for a name suffix.
fn random4() -> [u8; 4] {
    let mut bytes = [0u8; 4];
    latchkey::bytes::random_bytes(&mut bytes);
    bytes
}

/// The name a new account starts from: the provider's preferred name or the address's
/// local part, as far as the username rules take it; `user` otherwise.
fn username_stem(identity: &VerifiedIdentity) -> String {
    let from_email = identity
        .email
        .as_deref()
        .and_then(|email| email.split('@').next());
    [identity.preferred_username.as_deref(), from_email]
        .into_iter()
        .flatten()
        .map(|name| {
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(48)
                .collect::<String>()
        })
        .find(|name| validate_username(name).is_ok())
        .unwrap_or_else(|| "user".to_string())
}

/// Links `identity` to the user `user_id`.
async fn link(app: &AppState, identity: &VerifiedIdentity, user_id: i64) -> Result<(), AuthError> {
    let now = Timestamp::now();
    app.providers
        .identities
        .link(&Identity {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            provider: identity.provider.clone(),
            user_id,
            email: identity.email.clone(),
            email_verified: identity.email_verified,
            linked_at: now,
            last_used_at: now,
        })
        .await?;
    tracing::info!(target: "latchkey::audit", event = "identity_linked", user_id, provider = %identity.provider, "identity_linked");
    Ok(())
}

/// Connects `identity` to the account of `connect_for`, who must still be the one
/// logged in here.
async fn connect(
    app: &AppState,
    auth: &AuthSession<User>,
    identity: VerifiedIdentity,
    connect_for: &str,
    linked: Option<Identity>,
) -> Result<Arrival, AuthError> {
    let Some(user) = auth.current_user().await? else {
        return Ok(Arrival::Refused(
            "Your session ended before the provider answered: log in and connect again.".into(),
        ));
    };
    if user.id.to_string() != connect_for {
        return Ok(Arrival::Refused(
            "This connection was started by another account.".into(),
        ));
    }
    match linked {
        Some(linked) if linked.user_id == user.id => return Ok(Arrival::Connected),
        Some(_) => {
            return Ok(Arrival::Refused(format!(
                "This {} account is connected to another account here.",
                identity.provider
            )))
        }
        None => {}
    }
    match link(app, &identity, user.id).await {
        Ok(()) => {}
        Err(AuthError::Store(error)) if !error.is_unavailable() => {
            return Ok(Arrival::Refused(format!(
                "Your account is already connected to {}: disconnect it first.",
                identity.provider
            )))
        }
        Err(error) => return Err(error),
    }
    let user = credentials::changed(app, auth, &user, CredentialEvent::ProviderConnected).await?;
    notices::notify(
        app,
        &user,
        user.email.as_deref(),
        Notice::ProviderConnected,
        Some(format!("Provider: {}.", identity.provider)),
    )
    .await;
    Ok(Arrival::Connected)
}

/// Why a disconnection was refused.
#[derive(Debug)]
pub enum DisconnectError {
    /// No identity at that provider.
    NotConnected,
    /// It is the account's last way in (no password, no passkey, no other provider).
    LastWayIn,
    /// A store failed.
    Failed(AuthError),
}

impl From<AuthError> for DisconnectError {
    fn from(error: AuthError) -> Self {
        DisconnectError::Failed(error)
    }
}

impl From<IdentityStoreError> for DisconnectError {
    fn from(error: IdentityStoreError) -> Self {
        DisconnectError::Failed(error.into())
    }
}

/// Disconnects `user`'s identity at `provider`, unless it is the last way in; the
/// credential table then ends what it says (the user's other sessions, among others).
pub async fn disconnect(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    provider: &str,
) -> Result<(), DisconnectError> {
    let identities = app.providers.identities.for_user(user.id).await?;
    if !identities
        .iter()
        .any(|identity| identity.provider == provider)
    {
        return Err(DisconnectError::NotConnected);
    }
    let other_providers = identities.len() > 1;
    let passkeys = match &app.passkeys {
        Some(flows) => !flows
            .store
            .list(user.id)
            .await
            .map_err(AuthError::from)?
            .is_empty(),
        None => false,
    };
    if !(user.has_password() || passkeys || other_providers) {
        return Err(DisconnectError::LastWayIn);
    }
    app.providers.identities.unlink(user.id, provider).await?;
    tracing::info!(target: "latchkey::audit", event = "identity_unlinked", user_id = user.id, provider, "identity_unlinked");
    let user = credentials::changed(app, auth, user, CredentialEvent::ProviderDisconnected).await?;
    notices::notify(
        app,
        &user,
        user.email.as_deref(),
        Notice::ProviderDisconnected,
        Some(format!("Provider: {provider}.")),
    )
    .await;
    Ok(())
}

/// The identities of `user`, by provider.
pub async fn identities(app: &AppState, user: &User) -> Result<Vec<Identity>, AuthError> {
    Ok(app.providers.identities.for_user(user.id).await?)
}
