//! Criterion micro-benchmarks of the per-request hot path: parse the cookie token,
//! hash it, load the record from the store and decide whether a touch is due; and the
//! whole router in process, against a bare handler.

mod common;

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use latchkey::store::{conformance, open_sqlite, MemoryStore, SqliteStore};
use latchkey::{Session, SessionConfig, SessionStore, SessionToken};
use std::sync::Arc;
use tower::ServiceExt;

fn stored_session(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>) -> String {
    let token = SessionToken::generate();
    runtime
        .block_on(store.create(&token.id(), &conformance::sample_record(Some("1"))))
        .expect("create");
    token.encode()
}

fn bench_store(
    c: &mut Criterion,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    store: Arc<dyn SessionStore>,
) {
    let cookie = stored_session(runtime, &store);
    let config = Arc::new(SessionConfig::insecure_for_local_development());
    c.bench_function(&format!("read session + touch decision ({name})"), |b| {
        b.to_async(runtime).iter(|| async {
            let session = Session::new(
                store.clone(),
                config.clone(),
                Some(&cookie),
                Default::default(),
            );
            assert!(session.auth().await.expect("auth").is_some());
            session.commit().await.expect("commit");
        })
    });
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    c.bench_function("token parse + sha256", |b| {
        let cookie = SessionToken::generate().encode();
        b.iter(|| SessionToken::parse(std::hint::black_box(&cookie)).map(|token| token.id()))
    });
    bench_store(c, "memory", &runtime, Arc::new(MemoryStore::new()));
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let pool = runtime.block_on(open_sqlite(&url)).expect("open");
    bench_store(c, "sqlite", &runtime, Arc::new(SqliteStore::new(pool)));
}

/// Whole router, in process: bare handler against the session layer + login guard.
fn router_oneshot(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bare = common::bare_app();
    let (app, cookie) = runtime.block_on(common::logged_in_app(Arc::new(MemoryStore::new())));
    let request = |cookie: &str| {
        Request::get("/home")
            .header("cookie", cookie)
            .body(Body::empty())
            .expect("request")
    };
    c.bench_function("GET /home in process (bare handler)", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare
                .clone()
                .oneshot(request("x=1"))
                .await
                .expect("response");
            assert_eq!(response.status(), 200);
        })
    });
    c.bench_function("GET /home in process (latchkey, memory store)", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = app
                .clone()
                .oneshot(request(&cookie))
                .await
                .expect("response");
            assert_eq!(response.status(), 200);
        })
    });
}

criterion_group!(benches, hot_path, router_oneshot);
criterion_main!(benches);
