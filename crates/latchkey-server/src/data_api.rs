//! `--enable-session-data-api`: a small JSON API over the logged-in user's session data,
//! for single-page apps that keep state server-side (and for the multi-process tests,
//! which race writes through it). Off by default.
//!
//! * `GET  /api/session/data` → every value set here, as one object;
//! * `PUT  /api/session/data/{key}` with a JSON body → stores it;
//! * `POST /api/session/data/{key}/increment` → adds one atomically, returns the count.
//!
//! Keys are 1–64 characters of `A-Z a-z 0-9 _ -`, a session holds at most
//! [`MAX_KEYS`] of them, and every write is a compare-and-swap in the store, so
//! concurrent writers in any number of processes lose nothing.

use crate::api::{ApiError, HandlerError, JsonBody};
use crate::app::AppState;
use crate::pages::refuse_cross_site;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey::axum::RequireLogin;
use latchkey::{Session, User};
use serde_json::{Map, Value};

/// Most keys one session may hold through this API.
pub const MAX_KEYS: usize = 256;
/// Prefix of the session keys this API owns (it never touches the others).
const PREFIX: &str = "app:";

fn session_key(key: &str) -> Result<String, ApiError> {
    let valid = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(format!("{PREFIX}{key}"))
    } else {
        Err(ApiError::invalid(
            "key",
            "keys are 1-64 characters of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// Refuses a new key when the session already holds [`MAX_KEYS`].
async fn check_room(session: &Session, key: &str) -> Result<(), HandlerError> {
    let record = session.record().await.map_err(latchkey::AuthError::from)?;
    let Some(record) = record else { return Ok(()) };
    let held = record
        .data
        .keys()
        .filter(|name| name.starts_with(PREFIX))
        .count();
    if held >= MAX_KEYS && !record.data.contains_key(key) {
        return Err(
            ApiError::invalid("key", format!("a session holds at most {MAX_KEYS} keys")).into(),
        );
    }
    Ok(())
}

/// `GET /api/session/data`
pub async fn read_all(
    RequireLogin(_): RequireLogin<User>,
    session: Session,
) -> Result<Json<Value>, HandlerError> {
    let record = session.record().await.map_err(latchkey::AuthError::from)?;
    let values: Map<String, Value> = record
        .iter()
        .flat_map(|record| record.data.iter())
        .filter_map(|(name, value)| Some((name.strip_prefix(PREFIX)?.to_string(), value.clone())))
        .collect();
    Ok(Json(Value::Object(values)))
}

/// `PUT /api/session/data/{key}`
pub async fn put(
    State(app): State<AppState>,
    headers: HeaderMap,
    RequireLogin(_): RequireLogin<User>,
    session: Session,
    Path(key): Path<String>,
    JsonBody(value): JsonBody<Value>,
) -> Result<Response, HandlerError> {
    if let Some(refused) = refuse_cross_site(&app, &headers) {
        return Ok(refused);
    }
    let key = session_key(&key)?;
    check_room(&session, &key).await?;
    session
        .insert(&key, value)
        .await
        .map_err(latchkey::AuthError::from)?;
    Ok(Json(serde_json::json!({ "stored": key.trim_start_matches(PREFIX) })).into_response())
}

/// `POST /api/session/data/{key}/increment`
pub async fn increment(
    State(app): State<AppState>,
    headers: HeaderMap,
    RequireLogin(_): RequireLogin<User>,
    session: Session,
    Path(key): Path<String>,
) -> Result<Response, HandlerError> {
    if let Some(refused) = refuse_cross_site(&app, &headers) {
        return Ok(refused);
    }
    let key = session_key(&key)?;
    check_room(&session, &key).await?;
    let count = session
        .update(&key, |old| {
            Value::from(old.and_then(Value::as_i64).unwrap_or(0).saturating_add(1))
        })
        .await
        .map_err(latchkey::AuthError::from)?;
    Ok(Json(serde_json::json!({ "count": count })).into_response())
}
