//! Criterion micro-benchmarks of the per-request hot path: parse the cookie token,
//! hash it, load the record from the store and decide whether a touch is due.

use criterion::{criterion_group, criterion_main, Criterion};
use latchkey::store::{conformance, open_sqlite, MemoryStore, SqliteStore};
use latchkey::{Session, SessionConfig, SessionStore, SessionToken};
use std::sync::Arc;

fn stored_session(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>) -> String {
    let token = SessionToken::generate();
    runtime
        .block_on(store.create(&token.id(), &conformance::sample_record(Some("1"))))
        .expect("create");
    token.encode()
}

fn bench_store(c: &mut Criterion, name: &str, runtime: &tokio::runtime::Runtime, store: Arc<dyn SessionStore>) {
    let cookie = stored_session(runtime, &store);
    let config = Arc::new(SessionConfig::default());
    c.bench_function(&format!("read session + touch decision ({name})"), |b| {
        b.to_async(runtime).iter(|| async {
            let session = Session::new(store.clone(), config.clone(), Some(&cookie), Default::default());
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

criterion_group!(benches, hot_path);
criterion_main!(benches);
