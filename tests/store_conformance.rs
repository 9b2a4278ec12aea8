//! Every store latchkey ships passes the one conformance suite.

use latchkey::store::{
    conformance, open_postgres, open_sqlite, MemoryStore, PostgresStore, RedisStore, SqliteStore,
};
use latchkey::SessionStore;
use std::sync::Arc;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_suite() {
    conformance::run_all(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    conformance::run_all(Arc::new(SqliteStore::new(pool))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_in_memory_store_passes_the_suite() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    conformance::run_all(Arc::new(SqliteStore::new(pool))).await;
}

#[tokio::test]
async fn sqlite_corrupt_record_is_an_error_not_a_panic() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let store = SqliteStore::new(pool.clone());
    conformance::corrupt_record_is_an_error(&store, |id, _| async move {
        sqlx::query("UPDATE sessions SET record = '{not json' WHERE id = ?")
            .bind(id.to_hex())
            .execute(&pool)
            .await
            .expect("corrupt the record");
    })
    .await;
}

#[tokio::test]
async fn memory_store_hides_then_sweeps_expired_sessions() {
    let store = MemoryStore::new();
    let id = conformance::new_id();
    let mut record = conformance::sample_record(None);
    record.idle_expires_at = latchkey::Timestamp::now().plus(std::time::Duration::from_millis(200));
    store.create(&id, &record).await.expect("create");
    assert!(store.load(&id).await.expect("load").is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        store.load(&id).await.expect("load").is_none(),
        "expired session returned"
    );
    assert_eq!(store.len(), 1, "not swept yet");
    let swept = store
        .delete_expired(latchkey::Timestamp::now(), 100)
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    assert!(store.is_empty(), "expired entry still held after a sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_suite() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    conformance::run_all(Arc::new(PostgresStore::new(pool))).await;
}

#[tokio::test]
async fn postgres_corrupt_record_is_an_error_not_a_panic() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    let store = PostgresStore::new(pool.clone());
    conformance::corrupt_record_is_an_error(&store, |id, _| async move {
        sqlx::query("UPDATE sessions SET record = '{not json' WHERE id = $1")
            .bind(id.to_hex())
            .execute(&pool)
            .await
            .expect("corrupt the record");
    })
    .await;
}

/// A Redis store under a prefix of its own, so runs never see each other's keys.
async fn redis_store() -> Option<RedisStore> {
    let url = common::service_url("LATCHKEY_TEST_REDIS")?;
    let prefix = format!("latchkey-test-{}", &conformance::new_id().to_hex()[..12]);
    let store = RedisStore::open(&url).await.expect("Redis reachable");
    Some(store.with_prefix(&prefix).expect("prefix"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_passes_the_suite() {
    let Some(store) = redis_store().await else {
        return;
    };
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn redis_corrupt_record_is_an_error_not_a_panic() {
    let Some(store) = redis_store().await else {
        return;
    };
    let url = common::service_url("LATCHKEY_TEST_REDIS").expect("url");
    let key_of = |id: &latchkey::SessionId| store.session_key(id);
    conformance::corrupt_record_is_an_error(&store, |id, _| {
        let key = key_of(&id);
        async move {
            let client = redis::Client::open(url).expect("client");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg("r")
                .arg("{not json")
                .query_async(&mut connection)
                .await
                .expect("corrupt the record");
        }
    })
    .await;
}

#[tokio::test]
async fn redis_sessions_expire_natively() {
    let Some(store) = redis_store().await else {
        return;
    };
    let id = conformance::new_id();
    let user = format!("expiring-{}", &id.to_hex()[..8]);
    let mut record = conformance::sample_record(Some(&user));
    record.idle_expires_at = latchkey::Timestamp::now().plus(std::time::Duration::from_millis(300));
    store.create(&id, &record).await.expect("create");
    assert!(store.load(&id).await.expect("load").is_some());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(
        store.load(&id).await.expect("load").is_none(),
        "Redis kept a session past its expiry"
    );
    assert!(
        store.list_for_user(&user).await.expect("list").is_empty(),
        "an expired session is still listed"
    );
}
