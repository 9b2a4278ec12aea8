//! The cache tier and fan-out: both pass the conformance suite over real stores; the
//! cache loads a cold session once for a stampede and never hides a lost race; fan-out
//! reads the master, writes every mirror, repairs a mirror that missed writes, and
//! treats a failed mirror as its policy says.

use latchkey::store::conformance::{self, CountingStore};
use latchkey::store::{
    open_postgres, open_sqlite, CachedStore, Change, ChangeFeed, FanOutStore, MemoryStore,
    MirrorFailure, PostgresStore, RedisStore, SqliteStore,
};
use latchkey::{SessionId, SessionRecord, SessionStore, StoreError, Timestamp};
use std::sync::Arc;
use std::time::Duration;

mod common;

fn cached(inner: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
    Arc::new(CachedStore::new(inner, Duration::from_secs(1), 10_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_memory_and_sqlite_stores_pass_the_suite() {
    conformance::run_all(cached(Arc::new(MemoryStore::new()))).await;
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    conformance::run_all(cached(Arc::new(SqliteStore::new(pool)))).await;
}

/// `store` written by "another process" (directly, as the command line would) while a
/// cache with an hour's TTL fronts it here: with the store's change feed the cache sees
/// each change at once; without it, it would serve the old record for the hour.
async fn another_process_changes_reach_the_cache<S>(store: S)
where
    S: SessionStore + ChangeFeed + Clone + 'static,
{
    let hour = Duration::from_secs(3600);
    let followed =
        CachedStore::with_feed(Arc::new(store.clone()), hour, 1000, Arc::new(store.clone()));
    let plain = CachedStore::new(Arc::new(store.clone()), hour, 1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !followed.feed_is_live() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id = conformance::new_id();
    let record = conformance::sample_record(Some("42"));
    store.create(&id, &record).await.expect("create");
    for cache in [&followed, &plain] {
        let loaded = cache.load(&id).await.expect("load").expect("session");
        assert_eq!(loaded.version, record.version);
    }

    let newer = SessionRecord {
        version: record.version + 1,
        ..record.clone()
    };
    store
        .save(&id, &newer, record.version)
        .await
        .expect("save elsewhere");
    let version = |cache: &CachedStore| {
        let cache = cache.clone();
        async move {
            cache
                .load(&id)
                .await
                .expect("load")
                .map(|record| record.version)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while version(&followed).await != Some(newer.version) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        version(&plain).await,
        Some(record.version),
        "a cache without the feed still serves the old record (so the cache is in use)"
    );

    store.delete(&id).await.expect("delete elsewhere");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while version(&followed).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the logout never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A heartbeat sent through the feed comes back on a subscription (amid whatever other
/// tests' sessions are doing).
async fn heartbeats_come_back(feed: &dyn ChangeFeed) {
    let mut changes = feed.subscribe().await.expect("subscribe");
    feed.heartbeat().await.expect("heartbeat");
    let heard = tokio::time::timeout(Duration::from_secs(2), async {
        while changes.next_change().await.expect("subscription") != Change::Heartbeat {}
    })
    .await;
    assert!(heard.is_ok(), "the heartbeat never came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_redis_heartbeats_come_back() {
    if let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") {
        let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
        heartbeats_come_back(&PostgresStore::new(pool)).await;
    }
    if let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") {
        heartbeats_come_back(&RedisStore::open(&url).await.expect("Redis reachable")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_changes_from_another_process_reach_the_cache() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    another_process_changes_reach_the_cache(PostgresStore::new(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_changes_reach_the_cache_through_the_listen_url() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    let Some(direct) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let unheard = PostgresStore::new(pool.clone());
    assert!(!unheard.can_listen(), "a transaction pooler cannot LISTEN");
    assert!(unheard.subscribe().await.is_err());
    let store = PostgresStore::new(pool).with_listen_url(&direct);
    heartbeats_come_back(&store).await;
    another_process_changes_reach_the_cache(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_changes_from_another_process_reach_the_cache() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let prefix = format!("latchkey-feed-{}", &conformance::new_id().to_hex()[..12]);
    let redis = RedisStore::open(&url).await.expect("Redis reachable");
    another_process_changes_reach_the_cache(redis.with_prefix(&prefix).expect("prefix")).await;
}

/// `store` behind a cache that follows its own change feed.
fn followed<S>(store: S) -> Arc<dyn SessionStore>
where
    S: SessionStore + ChangeFeed + Clone + 'static,
{
    let feed = Arc::new(store.clone());
    Arc::new(CachedStore::with_feed(
        Arc::new(store),
        Duration::from_secs(60),
        10_000,
        feed,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_postgres_and_redis_stores_with_feeds_pass_the_suite() {
    if let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") {
        let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
        conformance::run_all(followed(PostgresStore::new(pool))).await;
    }
    if let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") {
        let prefix = format!("latchkey-feed-{}", &conformance::new_id().to_hex()[..12]);
        let redis = RedisStore::open(&url).await.expect("Redis reachable");
        conformance::run_all(followed(redis.with_prefix(&prefix).expect("prefix"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_redis_store_passes_the_suite() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let prefix = format!("latchkey-cache-{}", &conformance::new_id().to_hex()[..12]);
    let redis = RedisStore::open(&url).await.expect("Redis reachable");
    conformance::run_all(cached(Arc::new(
        redis.with_prefix(&prefix).expect("prefix"),
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stampede_on_a_cold_session_loads_it_once() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store = cached(counting.clone());
    let id = conformance::new_id();
    counting
        .create(&id, &conformance::sample_record(Some("7")))
        .await
        .expect("create");
    let loads = (0..64).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.load(&id).await })
    });
    for load in loads {
        assert!(load.await.expect("task").expect("load").is_some());
    }
    assert_eq!(counting.loads(), 1, "64 concurrent reads, one store load");
}

#[tokio::test]
async fn a_stale_cached_version_cannot_lose_a_write() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let process_a = cached(shared.clone());
    let process_b = cached(shared);
    let id = conformance::new_id();
    let record = conformance::sample_record(None);
    process_a.create(&id, &record).await.expect("create");
    let seen_by_b = process_b.load(&id).await.expect("load").expect("found");

    // A writes; B still holds version 1 in its cache and tries to write on top of it.
    let mut from_a = record.clone();
    from_a.version = 2;
    from_a.data.insert("a".into(), true.into());
    process_a.save(&id, &from_a, 1).await.expect("save");
    let mut from_b = (*seen_by_b).clone();
    from_b.version = 2;
    assert!(matches!(
        process_b.save(&id, &from_b, 1).await,
        Err(StoreError::VersionConflict)
    ));
    // The conflict evicted B's entry: B now reads A's write.
    let reloaded = process_b.load(&id).await.expect("load").expect("found");
    assert_eq!(reloaded.version, 2);
    assert!(reloaded.data.contains_key("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_over_memory_and_sqlite_passes_the_suite() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let store = FanOutStore::new(
        Arc::new(MemoryStore::new()),
        vec![Arc::new(SqliteStore::new(pool))],
        MirrorFailure::Fail,
    );
    conformance::run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn fan_out_writes_every_mirror_and_repairs_one_that_missed_writes() {
    let master = Arc::new(MemoryStore::new());
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let mirror = Arc::new(SqliteStore::new(pool));
    let store = FanOutStore::new(master.clone(), vec![mirror.clone()], MirrorFailure::Log);
    let id = conformance::new_id();
    let mut record = conformance::sample_record(Some("42"));
    store.create(&id, &record).await.expect("create");
    assert_eq!(
        mirror
            .load(&id)
            .await
            .expect("load")
            .expect("mirrored")
            .version,
        1
    );

    // The mirror loses the session (say it was down and restarted empty)...
    mirror.delete(&id).await.expect("delete");
    record.version = 2;
    record.data.insert("after".into(), 1.into());
    store.save(&id, &record, 1).await.expect("save");
    // ...and the next write puts the master's record back.
    let repaired = mirror.load(&id).await.expect("load").expect("repaired");
    assert_eq!(repaired.version, 2);
    assert_eq!(repaired.data.get("after"), Some(&1.into()));

    // Reads come from the master only.
    master.delete(&id).await.expect("delete");
    assert!(store.load(&id).await.expect("load").is_none());

    // Rotation and delete reach the mirror too.
    let id = conformance::new_id();
    let fresh = conformance::new_id();
    store
        .create(&id, &conformance::sample_record(None))
        .await
        .expect("create");
    let mut rotated = conformance::sample_record(None);
    rotated.version = 2;
    store
        .rotate(&id, &fresh, &rotated, 1)
        .await
        .expect("rotate");
    assert!(mirror.load(&id).await.expect("load").is_none());
    assert!(mirror.load(&fresh).await.expect("load").is_some());
    assert!(store.delete(&fresh).await.expect("delete"));
    assert!(mirror.load(&fresh).await.expect("load").is_none());
}

#[tokio::test]
async fn a_failed_mirror_is_logged_or_fails_the_write_as_configured() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    pool.close().await; // a mirror that is down
    let down: Arc<dyn SessionStore> = Arc::new(SqliteStore::new(pool));
    for (policy, should_fail) in [(MirrorFailure::Log, false), (MirrorFailure::Fail, true)] {
        let master = Arc::new(MemoryStore::new());
        let store = FanOutStore::new(master.clone(), vec![down.clone()], policy);
        let id = conformance::new_id();
        let created = store.create(&id, &conformance::sample_record(None)).await;
        assert_eq!(created.is_err(), should_fail, "{policy:?}: {created:?}");
        if should_fail {
            assert!(matches!(created, Err(StoreError::Unavailable(_))));
        }
        assert!(
            master.load(&id).await.expect("load").is_some(),
            "{policy:?}: the master keeps the write"
        );
    }
}

/// A mirror in front of which a logout lands on the master just before every mirror
/// save: the race between a request's write and a logout, made certain.
struct LogoutRacesMirror {
    master: Arc<dyn SessionStore>,
    mirror: Arc<dyn SessionStore>,
}

#[async_trait::async_trait]
impl SessionStore for LogoutRacesMirror {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.mirror.load(id).await
    }
    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.mirror.create(id, record).await
    }
    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.master.delete(id).await?;
        self.mirror.delete(id).await?;
        self.mirror.save(id, record, expected).await
    }
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        record: &SessionRecord,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.mirror.rotate(old, new, record, expected).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.mirror.delete(id).await
    }
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        self.mirror.list_for_user(user_id).await
    }
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.mirror.delete_for_user(user_id, keep).await
    }
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.mirror.delete_expired(now, limit).await
    }
}

#[tokio::test]
async fn a_mirror_repair_never_brings_back_a_logged_out_session() {
    let master: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let mirror: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let racing = Arc::new(LogoutRacesMirror {
        master: master.clone(),
        mirror: mirror.clone(),
    });
    let store = FanOutStore::new(master.clone(), vec![racing], MirrorFailure::Fail);
    let id = conformance::new_id();
    let mut record = conformance::sample_record(Some("9"));
    store.create(&id, &record).await.expect("create");
    record.version = 2;
    // The master takes the write, the logout lands, the mirror save finds nothing.
    store
        .save(&id, &record, 1)
        .await
        .expect("the master's write stands");
    assert!(
        master.load(&id).await.expect("load").is_none(),
        "logged out"
    );
    assert!(
        mirror.load(&id).await.expect("load").is_none(),
        "the mirror re-created a logged-out session"
    );
}

/// On a Redis Cluster the feed is sharded pub/sub: heartbeats reach every shard's
/// subscription, another process's writes reach the cache, and a cache following the
/// feed passes the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_feed_follows_every_shard() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS_CLUSTER") else {
        return;
    };
    let open = || async {
        let prefix = format!("latchkey-feed-{}", &conformance::new_id().to_hex()[..12]);
        RedisStore::open(&url)
            .await
            .expect("Redis Cluster reachable")
            .with_prefix(&prefix)
            .expect("prefix")
    };
    heartbeats_come_back(&open().await).await;
    another_process_changes_reach_the_cache(open().await).await;
    conformance::run_all(followed(open().await)).await;
}
