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

/// Garbles a record behind the store's back: `corrupt_record_is_an_error` on `url`.
async fn sqlite_corrupt_record_is_an_error(url: &str) {
    let pool = open_sqlite(url).await.expect("open");
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
async fn sqlite_corrupt_record_is_an_error_not_a_panic() {
    sqlite_corrupt_record_is_an_error("sqlite::memory:").await;
    // A file: loads take the store's own read-only connections.
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_corrupt_record_is_an_error(&format!(
        "sqlite://{}",
        dir.path().join("sessions.db").display()
    ))
    .await;
}

/// Loads from a database file run on the calling thread: after the first, they neither
/// wait for a pool connection nor miss a write the pool just committed.
#[tokio::test]
async fn sqlite_file_loads_do_not_wait_for_the_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    let store = SqliteStore::new(pool.clone());
    let id = conformance::new_id();
    let record = conformance::sample_record(Some("7"));
    store.create(&id, &record).await.expect("create");
    // The first load asks the pool which file the database is.
    assert!(store.load(&id).await.expect("first load").is_some());

    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.expect("acquire"));
    }
    let loaded = tokio::time::timeout(std::time::Duration::from_secs(2), store.load(&id))
        .await
        .expect("the load waited for the busy pool")
        .expect("load")
        .expect("session");
    assert_eq!(*loaded, record);
    let unknown = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        store.load(&conformance::new_id()),
    )
    .await
    .expect("the load waited for the busy pool")
    .expect("load");
    assert!(unknown.is_none());
    drop(held);

    let newer = latchkey::SessionRecord {
        version: record.version + 1,
        ..record.clone()
    };
    store.save(&id, &newer, record.version).await.expect("save");
    let loaded = store.load(&id).await.expect("load").expect("session");
    assert_eq!(
        loaded.version, newer.version,
        "a committed write is seen at once"
    );
}

/// `?mode=memory` keeps the database in memory even though the URL names a file: loads
/// must read that database, not a file of the same name.
#[tokio::test]
async fn sqlite_in_memory_url_naming_a_file_never_reads_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sessions.db");
    let on_disk = SqliteStore::new(
        open_sqlite(&format!("sqlite://{}", file.display()))
            .await
            .expect("open file"),
    );
    let id = conformance::new_id();
    on_disk
        .create(&id, &conformance::sample_record(Some("1")))
        .await
        .expect("create in the file");
    let in_memory = SqliteStore::new(
        open_sqlite(&format!("sqlite://{}?mode=memory", file.display()))
            .await
            .expect("open in memory"),
    );
    assert!(
        in_memory.load(&id).await.expect("load").is_none(),
        "read the file instead of the in-memory database"
    );
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
    let _serial = SESSIONS_TABLE.lock().await;
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    conformance::run_all(Arc::new(PostgresStore::new(pool))).await;
}

/// Held by the PostgreSQL suites (direct and through PgBouncer), which share the
/// `sessions` table: two expiry sweeps at once can each stop early on rows the other
/// deleted.
static SESSIONS_TABLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_store_passes_the_suite() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    let _serial = SESSIONS_TABLE.lock().await;
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

/// Runs `command` on the Redis at `url` over a connection of its own (to write what
/// no store would).
async fn raw_redis(url: &str, command: &redis::Cmd) {
    let client = redis::Client::open(url).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = command
        .query_async(&mut connection)
        .await
        .expect("raw Redis command");
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
            raw_redis(&url, redis::cmd("HSET").arg(&key).arg("r").arg("{not json")).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_one_unreadable_key_fails_only_its_own_loads() {
    let Some(store) = redis_store().await else {
        return;
    };
    let url = common::service_url("LATCHKEY_TEST_REDIS").expect("url");
    let (broken, good) = (conformance::new_id(), conformance::new_id());
    let record = conformance::sample_record(None);
    store.create(&good, &record).await.expect("create");
    // A plain string where a session hash belongs: HGET answers WRONGTYPE.
    raw_redis(
        &url,
        redis::cmd("SET")
            .arg(store.session_key(&broken))
            .arg("not a session"),
    )
    .await;
    let store = Arc::new(store);
    let loads: Vec<_> = (0..100)
        .map(|n| {
            let store = store.clone();
            let id = if n % 2 == 0 { broken } else { good };
            tokio::spawn(async move { (id == broken, store.load(&id).await) })
        })
        .collect();
    for load in loads {
        match load.await.expect("load task") {
            (true, loaded) => assert!(
                matches!(loaded, Err(latchkey::StoreError::Corrupt(_))),
                "the broken key: {loaded:?}"
            ),
            (false, loaded) => assert_eq!(
                loaded.expect("the good session loads").as_deref(),
                Some(&record)
            ),
        }
    }
}
