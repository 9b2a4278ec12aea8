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

/// A store on the Redis Cluster (`LATCHKEY_TEST_REDIS_CLUSTER`, started by
/// `.ci/redis-cluster.sh`) under a prefix of its own.
async fn cluster_store() -> Option<RedisStore> {
    let url = common::service_url("LATCHKEY_TEST_REDIS_CLUSTER")?;
    let prefix = format!("latchkey-test-{}", &conformance::new_id().to_hex()[..12]);
    let store = RedisStore::open(&url)
        .await
        .expect("Redis Cluster reachable");
    assert!(store.is_cluster());
    Some(store.with_prefix(&prefix).expect("prefix"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_store_passes_the_suite() {
    let Some(store) = cluster_store().await else {
        return;
    };
    conformance::run_all(Arc::new(store)).await;
}

/// The masters of the cluster at `url` and the slot ranges each serves, and a connection
/// to one of its nodes for `keyslot`.
async fn cluster_masters(
    url: &str,
) -> (
    Vec<(String, Vec<(u16, u16)>)>,
    redis::aio::MultiplexedConnection,
) {
    let seed = url
        .trim_start_matches("redis-cluster://")
        .split(',')
        .next()
        .expect("a seed");
    let client = redis::Client::open(format!("redis://{seed}")).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection)
        .await
        .expect("CLUSTER SLOTS");
    let mut masters: Vec<(String, Vec<(u16, u16)>)> = Vec::new();
    for range in slots {
        let redis::Value::Array(fields) = range else {
            panic!("a slot range")
        };
        let (start, end): (u16, u16) = (
            redis::from_redis_value_ref(&fields[0]).expect("start"),
            redis::from_redis_value_ref(&fields[1]).expect("end"),
        );
        let redis::Value::Array(node) = &fields[2] else {
            panic!("a node")
        };
        let port: u16 = redis::from_redis_value_ref(&node[1]).expect("port");
        let address = format!("127.0.0.1:{port}");
        match masters.iter_mut().find(|(a, _)| *a == address) {
            Some((_, ranges)) => ranges.push((start, end)),
            None => masters.push((address, vec![(start, end)])),
        }
    }
    (masters, connection)
}

/// One user's sessions land on every shard, and listing and ending them all works
/// across shards (the per-user index is one key; each session is on its own slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_user_sessions_span_shards() {
    let Some(store) = cluster_store().await else {
        return;
    };
    let url = common::service_url("LATCHKEY_TEST_REDIS_CLUSTER").expect("url");
    let (masters, mut connection) = cluster_masters(&url).await;
    assert_eq!(masters.len(), 3, "a cluster of three masters: {masters:?}");
    let user = format!("spread-{}", &conformance::new_id().to_hex()[..8]);
    let record = conformance::sample_record(Some(&user));
    let ids: Vec<_> = (0..30).map(|_| conformance::new_id()).collect();
    for id in &ids {
        store.create(id, &record).await.expect("create");
    }
    let mut shards = std::collections::HashSet::new();
    for id in &ids {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(store.session_key(id))
            .query_async(&mut connection)
            .await
            .expect("CLUSTER KEYSLOT");
        let shard = masters
            .iter()
            .position(|(_, ranges)| ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .expect("a master serves every slot");
        shards.insert(shard);
    }
    assert_eq!(shards.len(), 3, "30 sessions all landed on {shards:?}");
    assert_eq!(store.list_for_user(&user).await.expect("list").len(), 30);
    let kept = ids[0];
    assert_eq!(
        store
            .delete_for_user(&user, Some(&kept))
            .await
            .expect("log out everywhere else"),
        29
    );
    for id in &ids[1..] {
        assert!(store.load(id).await.expect("load").is_none());
    }
    assert!(store.load(&kept).await.expect("load").is_some());
}
