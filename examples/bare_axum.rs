//! The ceiling for the benchmarks: the login server's JSON routes in plain axum, with no
//! sessions, no users and no password check. `bench/run.sh` measures latchkey against it.
//!
//! `cargo run --release --example bare_axum` (binds `LATCHKEY_BIND`, default
//! 127.0.0.1:8090). `GET /home` greets `LATCHKEY_BENCH_USERNAME` (default `foo`): the
//! benchmark gives it the name of the user it logs in to latchkey, so both servers send
//! the same bytes.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// `Hello, <name>`, made once.
static GREETING: OnceLock<String> = OnceLock::new();

async fn home() -> Json<Value> {
    Json(json!({ "message": GREETING.get().map_or("Hello, foo", String::as_str) }))
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
    let name = std::env::var("LATCHKEY_BENCH_USERNAME").unwrap_or_else(|_| "foo".into());
    GREETING.get_or_init(|| format!("Hello, {name}"));
    let bind = std::env::var("LATCHKEY_BIND").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, app()).await
}
