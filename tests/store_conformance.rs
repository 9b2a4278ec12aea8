//! Every store latchkey ships passes the one conformance suite.

use latchkey::store::{
    conformance, open_postgres, open_sqlite, MemoryStore, PostgresStore, SqliteStore,
};
use latchkey::{SessionStore, StoreError};
use std::sync::Arc;

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
    let id = conformance::new_id();
    store
        .create(&id, &conformance::sample_record(Some("7")))
        .await
        .expect("create");
    sqlx::query("UPDATE sessions SET record = '{not json'")
        .execute(&pool)
        .await
        .expect("corrupt the record");
    assert!(matches!(store.load(&id).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.list_for_user("7").await,
        Err(StoreError::Corrupt(_))
    ));
    // Deleting a corrupt record still works.
    assert!(store.delete(&id).await.expect("delete"));
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

/// The URL of a real service from `variable`; `None` (with a printed line) when it is
/// not set, a failure when `LATCHKEY_REQUIRE_SERVICES` says it must be there.
fn service_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("LATCHKEY_REQUIRE_SERVICES").is_err(),
                "{variable} must be set when LATCHKEY_REQUIRE_SERVICES is"
            );
            println!("skipped: {variable} is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_suite() {
    let Some(url) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    conformance::run_all(Arc::new(PostgresStore::new(pool))).await;
}

#[tokio::test]
async fn postgres_corrupt_record_is_an_error_not_a_panic() {
    let Some(url) = service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    let store = PostgresStore::new(pool.clone());
    let id = conformance::new_id();
    let user = format!("corrupt-{}", &id.to_hex()[..12]);
    store
        .create(&id, &conformance::sample_record(Some(&user)))
        .await
        .expect("create");
    sqlx::query("UPDATE sessions SET record = '{not json' WHERE id = $1")
        .bind(id.to_hex())
        .execute(&pool)
        .await
        .expect("corrupt the record");
    assert!(matches!(store.load(&id).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.list_for_user(&user).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.delete(&id).await.expect("delete"));
}
