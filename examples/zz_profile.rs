#[path = "../benches/common/mod.rs"]
mod common;
use axum::body::Body;
use axum::http::Request;
use latchkey::store::MemoryStore;
use std::sync::Arc;
use tower::ServiceExt;
fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (app, cookie) = common::logged_in_app(Arc::new(MemoryStore::new())).await;
        let app = if std::env::var("BARE").is_ok() {
            common::bare_app()
        } else {
            app
        };
        let n: usize = std::env::var("N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20000);
        for _ in 0..n {
            let req = Request::get("/home")
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(req).await.unwrap();
            assert_eq!(response.status(), 200);
        }
    });
}
