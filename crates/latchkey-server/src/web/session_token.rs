//! Bearer sessions: a JSON login with `?session=token` answers the session's token in
//! its body (`session_token`) and sets no cookie; the client sends it back as
//! `Authorization: Bearer <token>`. The same holds for the steps that complete such a
//! login (the second factor, a mailed code or link).

use crate::web::json::ApiError;
use crate::web::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey::{AuthError, AuthSession, Session, User};

/// `?session=token` (or `?session=cookie`, the default) on a login: where the session's
/// token goes. Asking for a token makes the request's session a bearer one; an unknown
/// value is a 400, and so is a token on a server whose sessions live in the encrypted
/// cookie (whose value changes at every write, so a client holding it would fall behind).
pub struct SessionDelivery;

impl FromRequestParts<AppState> for SessionDelivery {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let asked = pairs
            .into_iter()
            .find(|(name, _)| name == "session")
            .map(|(_, value)| value);
        match asked.as_deref() {
            None | Some("cookie") => Ok(SessionDelivery),
            Some("token") if !app.tokens.bearer_sessions => Err(ApiError::invalid(
                "session",
                "this server keeps sessions in cookies (--session-store cookie): no session token",
            )
            .into_response()),
            Some("token") => {
                if let Some(session) = parts.extensions.get::<Session>() {
                    session.use_bearer_token();
                }
                Ok(SessionDelivery)
            }
            Some(_) => Err(ApiError::invalid(
                "session",
                "session is `cookie` (the default) or `token`",
            )
            .into_response()),
        }
    }
}

/// The token a bearer session's client must send from now on, when this request gave it
/// one (a login, or a login waiting for its second step, which is stored now so that
/// it has a token); `None` for cookie sessions.
pub async fn new_session_token(auth: &AuthSession<User>) -> Result<Option<String>, AuthError> {
    let session = auth.session();
    if !session.is_bearer() {
        return Ok(None);
    }
    session.commit().await?;
    Ok(session.bearer_token())
}

/// The 200 of a complete login: `{"message": "Logged in"}`, with `session_token` for a
/// bearer session.
pub async fn logged_in(auth: &AuthSession<User>) -> Result<Response, AuthError> {
    let mut body = serde_json::json!({ "message": "Logged in" });
    if let Some(token) = new_session_token(auth).await? {
        body["session_token"] = token.into();
    }
    Ok(crate::web::headers::json(StatusCode::OK, &body))
}
