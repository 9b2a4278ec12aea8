//! The passkey use cases (WebAuthn, on webauthn-rs through `latchkey::factors::passkeys`):
//! registering one after a fresh login, listing, renaming and deleting them, signing in
//! with a passkey alone (discoverable credentials: no name typed), and a passkey as the
//! second factor of a password login. Every ceremony's state waits in the server-side
//! session between its two requests, never in a cookie. Relying-party id and origin come
//! from `--public-url` (it needs a host name: `http://localhost:PORT` works).

use crate::factors::second_factor::{self, SecondStep};
use crate::notices::Notice;
use crate::web::state::{AppState, PasskeyFlows};
use crate::web::throttling::ClientIp;
use latchkey::factors::passkeys::{
    CredentialID, DiscoverableAuthentication, DiscoverableKey, PasskeyAuthentication,
    PasskeyRegistration, PasskeyStoreError, PublicKeyCredential, RegisterPublicKeyCredential,
    StoredPasskey,
};
use latchkey::{AuthError, AuthSession, Proof, SignIn, User};
use serde_json::Value;

const REGISTRATION_KEY: &str = "latchkey.passkey_registration";
const SIGN_IN_KEY: &str = "latchkey.passkey_sign_in";
const SECOND_FACTOR_KEY: &str = "latchkey.passkey_second_factor";

/// Why a passkey ceremony did not succeed.
pub enum PasskeyError {
    /// Passkeys are off (the public URL has no host name).
    Off,
    /// No ceremony was started in this session (or it was used).
    NotStarted,
    /// The browser's answer did not check out (the message says why, for the log).
    Refused(String),
    /// The name breaks the rules (the reason, for a 400); nothing was stored.
    BadName(&'static str),
    /// A backing service failed.
    Failed(AuthError),
}

impl<E: Into<AuthError>> From<E> for PasskeyError {
    fn from(error: E) -> Self {
        PasskeyError::Failed(error.into())
    }
}

fn flows(app: &AppState) -> Result<&PasskeyFlows, PasskeyError> {
    app.passkeys.as_ref().ok_or(PasskeyError::Off)
}

fn store_error(error: PasskeyStoreError) -> PasskeyError {
    PasskeyError::Failed(error.into())
}

/// The user's passkeys.
pub async fn list(app: &AppState, user_id: i64) -> Result<Vec<StoredPasskey>, PasskeyError> {
    flows(app)?.store.list(user_id).await.map_err(store_error)
}

/// Options as a browser's `navigator.credentials` takes them, with the adjustments
/// passkeys need: a resident (discoverable) key, and a plain button flow rather than
/// autofill.
fn browser_options(options: impl serde::Serialize) -> Result<Value, PasskeyError> {
    let mut value =
        serde_json::to_value(options).map_err(|error| PasskeyError::Refused(error.to_string()))?;
    if let Some(selection) = value
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
    {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("mediation");
    }
    Ok(value)
}

/// Starts registering a passkey for `user` (freshly logged in): the options for
/// `navigator.credentials.create`.
pub async fn begin_registration(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
) -> Result<Value, PasskeyError> {
    let flows = flows(app)?;
    let handle = flows
        .store
        .user_handle(user.id)
        .await
        .map_err(store_error)?;
    let existing: Vec<CredentialID> = list(app, user.id)
        .await?
        .iter()
        .map(|stored| stored.passkey.cred_id().clone())
        .collect();
    let (options, state) = flows
        .webauthn
        .start_passkey_registration(handle, &user.username, &user.username, Some(existing))
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    auth.session().insert(REGISTRATION_KEY, state).await?;
    browser_options(options)
}

/// Finishes the registration `begin_registration` started, with the browser's answer:
/// stores the passkey as `name`, ends the user's other sessions, mails a notice.
pub async fn finish_registration(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    name: &str,
    credential: &RegisterPublicKeyCredential,
) -> Result<i64, PasskeyError> {
    let flows = flows(app)?;
    // Checked first: a refused name keeps the ceremony, so the browser can try again.
    let name = passkey_name(name)?;
    let state: Option<PasskeyRegistration> = auth.session().get(REGISTRATION_KEY).await?;
    let Some(state) = state else {
        return Err(PasskeyError::NotStarted);
    };
    auth.session().remove(REGISTRATION_KEY).await?;
    let passkey = flows
        .webauthn
        .finish_passkey_registration(credential, &state)
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    let id = flows
        .store
        .add(user.id, &name, &passkey)
        .await
        .map_err(store_error)?;
    second_factor::factor_changed(app, auth, user, Notice::PasskeyAdded).await?;
    Ok(id)
}

/// A passkey's name as stored: trimmed, at most 64 characters, "Passkey" if empty;
/// control, invisible and text-direction characters are refused (a name that reorders
/// or hides its text could pass for another on the account page and in mails).
fn passkey_name(name: &str) -> Result<String, PasskeyError> {
    let name = name.trim();
    if name.chars().count() > 64 {
        return Err(PasskeyError::BadName(
            "a passkey name is at most 64 characters",
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || latchkey::user::is_invisible_or_bidi_control(c))
    {
        return Err(PasskeyError::BadName(
            "a passkey name must not contain control, invisible or text-direction characters",
        ));
    }
    Ok(if name.is_empty() {
        "Passkey".to_string()
    } else {
        name.to_string()
    })
}

/// Renames one of the user's passkeys; `false` if it is not theirs.
pub async fn rename(
    app: &AppState,
    user: &User,
    id: i64,
    name: &str,
) -> Result<bool, PasskeyError> {
    flows(app)?
        .store
        .rename(user.id, id, &passkey_name(name)?)
        .await
        .map_err(store_error)
}

/// Deletes one of the user's passkeys (ends their other sessions, mails a notice);
/// `false` if it is not theirs.
pub async fn delete(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    id: i64,
) -> Result<bool, PasskeyError> {
    let deleted = flows(app)?
        .store
        .delete(user.id, id)
        .await
        .map_err(store_error)?;
    if deleted {
        second_factor::factor_changed(app, auth, user, Notice::PasskeyRemoved).await?;
    }
    Ok(deleted)
}

/// Starts a sign-in with a passkey alone: options for `navigator.credentials.get`
/// without a list of credentials (the authenticator offers the site's passkeys).
pub async fn begin_sign_in(
    app: &AppState,
    auth: &AuthSession<User>,
) -> Result<Value, PasskeyError> {
    let (options, state) = flows(app)?
        .webauthn
        .start_discoverable_authentication()
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    auth.session().insert(SIGN_IN_KEY, state).await?;
    browser_options(options)
}

/// Finishes a sign-in with a passkey alone: a user-verified passkey is two factors, so
/// the gate lets it in as a fresh, multi-factor login. [`PasskeyError::Refused`] when the
/// answer does not check out or the gate refuses the user.
pub async fn finish_sign_in(
    app: &AppState,
    auth: &AuthSession<User>,
    credential: &PublicKeyCredential,
) -> Result<User, PasskeyError> {
    let flows = flows(app)?;
    let state: Option<DiscoverableAuthentication> = auth.session().get(SIGN_IN_KEY).await?;
    let Some(state) = state else {
        return Err(PasskeyError::NotStarted);
    };
    auth.session().remove(SIGN_IN_KEY).await?;
    let (handle, _) = flows
        .webauthn
        .identify_discoverable_authentication(credential)
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    let Some(user_id) = flows
        .store
        .user_of_handle(handle)
        .await
        .map_err(store_error)?
    else {
        return Err(PasskeyError::Refused("no user has that handle".into()));
    };
    let keys: Vec<DiscoverableKey> = list(app, user_id)
        .await?
        .iter()
        .map(|stored| DiscoverableKey::from(&stored.passkey))
        .collect();
    let result = flows
        .webauthn
        .finish_discoverable_authentication(credential, state, &keys)
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    if !result.user_verified() {
        return Err(PasskeyError::Refused(
            "the authenticator did not verify the user".into(),
        ));
    }
    flows
        .store
        .record_use(user_id, &result)
        .await
        .map_err(store_error)?;
    let Some(user) = app.backend.users().find_by_id(user_id).await? else {
        return Err(PasskeyError::Refused("the user is gone".into()));
    };
    match auth.sign_in(&user, Proof::passkey(), None).await? {
        SignIn::LoggedIn(user) => Ok(user),
        SignIn::Pending { .. } => Err(PasskeyError::Refused(
            "the gate asked a passkey for more".into(),
        )),
        SignIn::Refused(why) => Err(PasskeyError::Refused(format!("the gate refused: {why:?}"))),
    }
}

/// Starts a passkey check for the login waiting for its second factor: options for
/// `navigator.credentials.get` listing that user's passkeys.
pub async fn begin_second_factor(
    app: &AppState,
    auth: &AuthSession<User>,
) -> Result<Value, PasskeyError> {
    let flows = flows(app)?;
    let Some(user_id) = second_factor::second_step_user(app, auth).await? else {
        return Err(PasskeyError::NotStarted);
    };
    let passkeys: Vec<_> = list(app, user_id)
        .await?
        .into_iter()
        .map(|stored| stored.passkey)
        .collect();
    let (options, state) = flows
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|error| PasskeyError::Refused(error.to_string()))?;
    auth.session().insert(SECOND_FACTOR_KEY, state).await?;
    browser_options(options)
}

/// Completes the waiting login with the browser's passkey answer.
pub async fn finish_second_factor(
    app: &AppState,
    ip: ClientIp,
    auth: &AuthSession<User>,
    credential: &PublicKeyCredential,
) -> Result<SecondStep, PasskeyError> {
    let flows = flows(app)?;
    let state: Option<PasskeyAuthentication> = auth.session().get(SECOND_FACTOR_KEY).await?;
    let Some(state) = state else {
        return Err(PasskeyError::NotStarted);
    };
    auth.session().remove(SECOND_FACTOR_KEY).await?;
    let step = second_factor::complete_with(app, ip, auth, |user_id| async move {
        let Ok(result) = flows
            .webauthn
            .finish_passkey_authentication(credential, &state)
        else {
            return Ok(None);
        };
        let recorded = flows.store.record_use(user_id, &result).await?;
        Ok((recorded && result.user_verified()).then(Proof::passkey))
    })
    .await?;
    Ok(step)
}
