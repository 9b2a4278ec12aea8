//! Credential changes made through the server: each one ends what the library's one
//! table ([`latchkey::CredentialEvent::ends`]) says, in every store the server has, and
//! the session that made the change (the user's own) carries on where the table says so.

use crate::web::state::AppState;
use latchkey::auth::credentials::Holders;
use latchkey::{AuthError, AuthSession, CredentialEvent, User};

/// Ends what `event` ends for `user` (as the change left them), through
/// [`AuthSession::credentials_changed`] with the server's user store and mailed links;
/// answers the user as they are now (credential version moved on).
pub async fn changed(
    app: &AppState,
    auth: &AuthSession<User>,
    user: &User,
    event: CredentialEvent,
) -> Result<User, AuthError> {
    let users = app.backend.users();
    let more = Holders {
        users: Some(users.as_ref()),
        mailed: Some(app.mail.tokens.as_ref()),
        ..Holders::default()
    };
    let ended = auth.credentials_changed(user, event, more).await?;
    // Without a bump by the table, the change itself moved the version on.
    Ok(ended.user.unwrap_or_else(|| user.clone()))
}
