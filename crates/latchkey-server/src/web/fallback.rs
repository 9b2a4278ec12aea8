//! Unknown paths and methods: a page for browsers, JSON otherwise.

use crate::web::json::ApiError;
use crate::web::page::error_page;
use crate::web::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey::axum::wants_html;

/// Unknown paths: the "no page here" page for browsers, a JSON 404 otherwise.
pub async fn not_found(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return error_page(&app, StatusCode::NOT_FOUND, "There is no page here.");
    }
    ApiError::new(StatusCode::NOT_FOUND, "not found").into_response()
}

/// Known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
