//! Personal access tokens: make, list and revoke a user's own, in the terms both the
//! page and the JSON endpoints answer in.

use crate::web::for_people::rfc3339;
use crate::web::state::{ApiTokens, AppState};
use latchkey::access_token::{self, AccessTokenRecord, IssueError, NewAccessToken};
use latchkey::{AuthError, Timestamp, User};
use serde::Serialize;
use std::time::Duration;

/// One of the user's live tokens, as the page and `GET /account/tokens` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its id (what revoking takes).
    pub id: String,
    /// What its owner called it.
    pub name: String,
    /// Its first characters (`lk_` and eight more): enough to recognise it.
    pub prefix: String,
    /// What it may do: `read` (safe methods), `write`.
    pub scopes: Vec<String>,
    /// When it was made (RFC 3339, UTC).
    pub created_at: String,
    /// When it stops working (RFC 3339, UTC); `null`: never.
    pub expires_at: Option<String>,
    /// When it was last used, to the minute (RFC 3339, UTC); `null`: never.
    pub last_used_at: Option<String>,
}

impl From<AccessTokenRecord> for TokenView {
    fn from(record: AccessTokenRecord) -> Self {
        TokenView {
            id: record.id,
            name: record.name,
            prefix: record.prefix,
            scopes: record.scopes,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            last_used_at: record.last_used_at.map(rfc3339),
        }
    }
}

/// A token just made: the only time its text is shown (its `Debug` hides it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Its id.
    pub id: String,
    /// The token: shown once, never again.
    pub token: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it stops working (RFC 3339, UTC); `null`: never.
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("token", &"<shown once>")
            .field("name", &self.name)
            .finish()
    }
}

/// What a new token is asked to be.
pub struct TokenRequest {
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Days it lives (`None`: the default).
    pub expires_in_days: Option<u32>,
    /// Whether it never expires (where the administrator allows it).
    pub never_expires: bool,
}

/// The user's live tokens, newest first.
pub async fn tokens(app: &AppState, user: &User) -> Result<Vec<TokenView>, AuthError> {
    let records = app
        .tokens
        .store
        .list(Some(&user.id.to_string()), Timestamp::now())
        .await?;
    Ok(records.into_iter().map(TokenView::from).collect())
}

/// Makes a token for `user` as `request` asks: the token, or the field at fault and why.
pub async fn create(
    app: &AppState,
    user: &User,
    request: TokenRequest,
) -> Result<Result<CreatedToken, (&'static str, String)>, AuthError> {
    let lifetime = if request.never_expires {
        Some(None)
    } else {
        request
            .expires_in_days
            .map(|days| Some(Duration::from_secs(u64::from(days) * 86_400)))
    };
    let new = NewAccessToken {
        user_id: user.id.to_string(),
        name: request.name,
        scopes: request.scopes,
        lifetime,
    };
    let issued = access_token::issue(
        app.tokens.store.as_ref(),
        &ApiTokens::scopes(),
        &app.tokens.lifetime,
        new,
        Timestamp::now(),
    )
    .await;
    match issued {
        Ok((token, record)) => Ok(Ok(CreatedToken {
            id: record.id,
            token: token.expose().to_string(),
            name: record.name,
            scopes: record.scopes,
            expires_at: record.expires_at.map(rfc3339),
        })),
        Err(IssueError::Invalid { field, message }) => Ok(Err((field, message))),
        Err(IssueError::Store(error)) => Err(error.into()),
    }
}

/// Revokes the user's token `id`; whether they had such a live token.
pub async fn revoke(app: &AppState, user: &User, id: &str) -> Result<bool, AuthError> {
    Ok(access_token::revoke(app.tokens.store.as_ref(), id, Some(&user.id.to_string())).await?)
}
