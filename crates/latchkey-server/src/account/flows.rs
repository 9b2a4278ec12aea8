//! The account: what `/account` shows.

use crate::factors::second_factor;
use crate::web::state::AppState;
use latchkey::{AuthError, User};
use serde::Serialize;

/// What `GET /account` shows of the logged-in user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// The username as entered at sign-up.
    pub username: String,
    /// The email, if one was given.
    pub email: Option<String>,
    /// Whether the email was proven to belong to the user.
    pub email_verified: bool,
    /// When the account was created (RFC 3339, UTC).
    pub created_at: String,
    /// The second factors enabled: `totp`, `recovery_code`, `passkey`.
    pub second_factors: Vec<&'static str>,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
    /// The groups the user belongs to (what access rules let in).
    pub groups: Vec<String>,
}

/// The account of `user`.
pub async fn account(app: &AppState, user: &User) -> Result<Account, AuthError> {
    let (factors, passkeys) = second_factor::enabled(app, user.id).await?;
    Ok(Account {
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified: user.email_verified_at.is_some(),
        created_at: crate::web::for_people::rfc3339(user.created_at),
        second_factors: second_factor::methods(factors, passkeys),
        recovery_codes_left: factors.recovery_codes_left,
        groups: app.groups.groups_of(user.id).await?,
    })
}
