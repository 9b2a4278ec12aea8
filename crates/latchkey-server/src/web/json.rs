//! What the JSON API answers with: error bodies, the JSON body extractor whose every
//! rejection is a JSON 4xx, the response schemas of the OpenAPI document, and the
//! cross-site check every state-changing JSON request passes. Shared by the JSON
//! handlers, the pages' JSON fallbacks and the session data API.

use crate::web::connections::BodyTimedOut;
use crate::web::headers;
use crate::web::state::AppState;
use crate::web::throttling::{too_many_message, with_retry_after};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey::csrf::{request_origin, RequestOrigin};
use latchkey::{AuthError, UserStoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// An error answer: a status and `{"error": message[, "field": name]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many(wait: std::time::Duration) -> Self {
        ApiError {
            retry_after: Some(wait),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait))
        }
    }

    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 403 naming the field at fault.
    pub fn forbidden_field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(StatusCode::FORBIDDEN, message)
        }
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => json!({ "error": self.message, "field": field }),
            None => json!({ "error": self.message }),
        };
        let response = headers::json(self.status, &body);
        match self.retry_after {
            Some(wait) => with_retry_after(response, wait),
            None => response,
        }
    }
}

/// Failures of the auth layer keep their own answer (503 when a store is down).
pub enum HandlerError {
    /// An answer of the API's own.
    Api(ApiError),
    /// A failure of the library (store or hashing).
    Auth(AuthError),
}

impl From<ApiError> for HandlerError {
    fn from(error: ApiError) -> Self {
        HandlerError::Api(error)
    }
}

impl From<AuthError> for HandlerError {
    fn from(error: AuthError) -> Self {
        HandlerError::Auth(error)
    }
}

impl From<UserStoreError> for HandlerError {
    fn from(error: UserStoreError) -> Self {
        HandlerError::Auth(AuthError::Users(error))
    }
}

impl From<latchkey::PasswordError> for HandlerError {
    fn from(error: latchkey::PasswordError) -> Self {
        HandlerError::Auth(AuthError::Password(error))
    }
}

impl IntoResponse for HandlerError {
    fn into_response(self) -> Response {
        match self {
            HandlerError::Api(error) => error.into_response(),
            HandlerError::Auth(error) => error.into_response(),
        }
    }
}

/// A JSON body whose every rejection (wrong content type, malformed JSON, wrong field
/// types, too large) is a JSON 4xx naming the problem.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match rejection.status() {
        // Well-formed JSON of the wrong shape is still a bad request here.
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        status => status,
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with Content-Type: application/json".to_string()
        }
        _ if body_timed_out(&rejection) => {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, rejection.body_text());
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "request body is larger than {} bytes",
                crate::web::state::MAX_BODY_BYTES
            )
        }
        _ => rejection.body_text(),
    };
    ApiError::new(status, message)
}

/// Whether reading the body failed because it did not arrive in time.
fn body_timed_out(rejection: &JsonRejection) -> bool {
    std::iter::successors(
        Some(rejection as &(dyn std::error::Error + 'static)),
        |error| error.source(),
    )
    .any(|error| error.is::<BodyTimedOut>())
}

/// `{"message": …}`: what a success says.
#[derive(Serialize, ToSchema)]
pub struct Message {
    /// For example `Hello, foo`.
    pub message: String,
}

/// `{"error": …, "field": …}`: what went wrong, and the field at fault when one is.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A sentence for people.
    pub error: String,
    /// The request field at fault, if any.
    pub field: Option<String>,
}

/// Refuses a JSON request sent by another site's page. A request with an
/// `Authorization: Bearer` header carries no ambient credential (the session layer
/// refuses one that also has the session cookie, and browsers never add a bearer token
/// on their own), and a page of another site cannot send that header without a CORS
/// preflight this server never answers: it passes.
pub fn refuse_cross_site(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    if has_bearer_token(headers) {
        return None;
    }
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|value: &header::HeaderValue| value.to_str().ok())
    };
    let origin = request_origin(
        header_text("sec-fetch-site"),
        header_text(header::ORIGIN.as_str()),
        &app.public_origin,
    );
    (origin == RequestOrigin::CrossSite).then(|| {
        latchkey::audit_refusal!("cross_site_refused");
        ApiError::forbidden("cross-site request refused").into_response()
    })
}

/// Whether the request has an `Authorization: Bearer …` header: the session layer's own
/// reading of it, so the two never disagree.
pub fn has_bearer_token(headers: &HeaderMap) -> bool {
    latchkey::session::authorization_bearer(headers).is_some()
}

/// Refuses a JSON request that is cross-site ([`refuse_cross_site`]) or whose body is
/// not JSON (415): a `Content-Type` other than JSON (`text/plain`, a form, multipart),
/// or a body sent with no `Content-Type` at all. A request with no body and no
/// `Content-Type` passes: the bodiless endpoints (`POST /logout`, say) need none. Every
/// state-changing JSON request passes here.
pub fn refuse_cross_site_or_not_json(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(refused) = refuse_cross_site(app, headers) {
        return Some(refused);
    }
    let acceptable = match headers.get(header::CONTENT_TYPE) {
        Some(content_type) => content_type.to_str().is_ok_and(is_json_media_type),
        None => !declares_a_body(headers),
    };
    (!acceptable).then(|| {
        let message = "expected a JSON body with Content-Type: application/json, or no body";
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response()
    })
}

/// `application/json` or `application/…+json`, parameters aside, in any letter case.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Whether the request says a body follows (a non-zero `Content-Length`, or chunks).
fn declares_a_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    #[test]
    fn only_json_media_types_are_json() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }
}
