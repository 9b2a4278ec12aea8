//! The ceiling for the benchmarks: the login server's JSON routes in plain axum, with no
//! sessions, no users and no password check. `bench/run.sh` measures latchkey against it.
//!
//! `cargo run --release --example bare_axum` (binds `LATCHKEY_BIND`, default
//! 127.0.0.1:8090).

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

async fn home() -> Json<Value> {
    Json(json!({ "message": "Hello, foo" }))
}

async fn login(Json(_): Json<Value>) -> Json<Value> {
    Json(json!({ "message": "Logged in" }))
}

/// The same routes as the login server's JSON API, answering at once.
pub fn app() -> Router {
    Router::new()
        .route("/home", get(home).post(home))
        .route("/login", post(login))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, app()).await
}
