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

use crate::web::json::{ApiError, HandlerError};
use crate::web::submission::{SameSite, SameSiteJson};
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey::axum::RequireLogin;
use latchkey::{Session, User};
use serde_json::{Map, Value};

/// Most keys one session may hold through this API.
pub const MAX_KEYS: usize = 256;
/// Prefix of the session keys this API owns (it never touches the others).
const PREFIX: &str = "app:";

/// The session key a write to `key` goes to, after the checks every write shares (the
/// cross-site one is the handlers' [`SameSite`] and [`SameSiteJson`]): a valid key name,
/// and room in the session for a new key.
async fn writable_key(session: &Session, key: &str) -> Result<String, Response> {
    let valid = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !valid {
        let message = "keys are 1-64 characters of A-Z, a-z, 0-9, _ and -";
        return Err(ApiError::invalid("key", message).into_response());
    }
    let key = format!("{PREFIX}{key}");
    let record = session
        .record()
        .await
        .map_err(|error| latchkey::AuthError::from(error).into_response())?;
    if let Some(record) = record {
        let held = record
            .data
            .keys()
            .filter(|name| name.starts_with(PREFIX))
            .count();
        if held >= MAX_KEYS && !record.data.contains_key(&key) {
            let message = format!("a session holds at most {MAX_KEYS} keys");
            return Err(ApiError::invalid("key", message).into_response());
        }
    }
    Ok(key)
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
    RequireLogin(_): RequireLogin<User>,
    session: Session,
    Path(key): Path<String>,
    SameSiteJson(value): SameSiteJson<Value>,
) -> Result<Response, HandlerError> {
    let key = match writable_key(&session, &key).await {
        Ok(key) => key,
        Err(refused) => return Ok(refused),
    };
    session
        .insert(&key, value)
        .await
        .map_err(latchkey::AuthError::from)?;
    Ok(Json(serde_json::json!({ "stored": key.trim_start_matches(PREFIX) })).into_response())
}

/// `POST /api/session/data/{key}/increment`
pub async fn increment(
    RequireLogin(_): RequireLogin<User>,
    session: Session,
    Path(key): Path<String>,
    _same_site: SameSite,
) -> Result<Response, HandlerError> {
    let key = match writable_key(&session, &key).await {
        Ok(key) => key,
        Err(refused) => return Ok(refused),
    };
    let count = session
        .update(&key, |old| {
            Value::from(old.and_then(Value::as_i64).unwrap_or(0).saturating_add(1))
        })
        .await
        .map_err(latchkey::AuthError::from)?;
    Ok(Json(serde_json::json!({ "count": count })).into_response())
}
