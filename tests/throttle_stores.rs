//! Every throttle counter store counts the same way: increments within a window, a new
//! window after it, clearing, sweeping stale counters, and no lost counts when many
//! requests record at once.

use latchkey::store::{open_postgres, open_sqlite, RedisStore};
use latchkey::throttle::{
    MemoryThrottleStore, PostgresThrottleStore, RedisThrottleStore, SqliteThrottleStore,
    ThrottleStore,
};
use latchkey::Timestamp;
use std::sync::Arc;
use std::time::Duration;

mod common;

fn key(stem: &str) -> String {
    format!(
        "{stem}-{}",
        &latchkey::SessionToken::generate().id().to_hex()[..12]
    )
}

async fn counts_like_a_throttle_store(store: Arc<dyn ThrottleStore>) {
    let window = Duration::from_secs(60);
    let start = Timestamp::now();
    let counted = key("counted");
    for expected in 1..=3 {
        let counter = store
            .record(
                &counted,
                window,
                start.plus(Duration::from_millis(expected)),
            )
            .await
            .expect("record");
        assert_eq!(counter.count, expected as u32);
        assert_eq!(counter.first_at, start.plus(Duration::from_millis(1)));
    }
    let seen = store
        .get(&counted, window, start.plus(Duration::from_secs(30)))
        .await
        .expect("get");
    assert_eq!(seen.map(|counter| counter.count), Some(3));
    // After the window the counter is over, and the next attempt starts a new one.
    let later = start.plus(Duration::from_secs(61));
    assert_eq!(store.get(&counted, window, later).await.expect("get"), None);
    let counter = store.record(&counted, window, later).await.expect("record");
    assert_eq!((counter.count, counter.first_at), (1, later));

    store.clear(&counted).await.expect("clear");
    assert_eq!(store.get(&counted, window, later).await.expect("get"), None);

    // 50 attempts at once: 50 counted.
    let racing = key("racing");
    let attempts = (0..50).map(|_| {
        let (store, racing) = (store.clone(), racing.clone());
        tokio::spawn(async move { store.record(&racing, window, Timestamp::now()).await })
    });
    for attempt in attempts {
        attempt.await.expect("task").expect("record");
    }
    let counter = store
        .get(&racing, window, Timestamp::now())
        .await
        .expect("get");
    assert_eq!(counter.map(|counter| counter.count), Some(50));

    // Compare-and-count: 50 attempts that all read 0 at once; one gets in.
    let contested = key("contested");
    let attempts = (0..50).map(|_| {
        let (store, contested) = (store.clone(), contested.clone());
        tokio::spawn(async move {
            store
                .record_if(&contested, window, Timestamp::now(), 0)
                .await
        })
    });
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.expect("task").expect("record_if").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    // What it read still holds: counted; a stale read: not.
    let now = Timestamp::now();
    let counter = store
        .record_if(&contested, window, now, 1)
        .await
        .expect("record_if");
    assert_eq!(counter.map(|counter| counter.count), Some(2));
    assert_eq!(
        store
            .record_if(&contested, window, now, 1)
            .await
            .expect("record_if"),
        None
    );
    // A counter whose window is over holds 0.
    let later = now.plus(Duration::from_secs(61));
    let counter = store
        .record_if(&contested, window, later, 0)
        .await
        .expect("record_if");
    assert_eq!(
        counter.map(|counter| (counter.count, counter.first_at)),
        Some((1, later))
    );

    // Taking attempts back: one at a time, never below zero.
    store.release(&contested).await.expect("release");
    store.release(&contested).await.expect("release");
    let counter = store.get(&contested, window, later).await.expect("get");
    assert_eq!(counter.map(|counter| counter.count), Some(0));
    store
        .release(&key("absent"))
        .await
        .expect("release of nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_and_sqlite_throttle_stores() {
    counts_like_a_throttle_store(Arc::new(MemoryThrottleStore::new())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = open_sqlite(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .expect("open");
    let store = SqliteThrottleStore::new(pool);
    counts_like_a_throttle_store(Arc::new(store.clone())).await;
    // Stale counters are swept in bounded batches.
    let old = Timestamp(Timestamp::now().as_millis() - 10_000);
    for _ in 0..3 {
        store
            .record(&key("stale"), Duration::from_secs(1), old)
            .await
            .expect("record");
    }
    assert_eq!(
        store
            .delete_stale(Timestamp::now(), 2)
            .await
            .expect("sweep"),
        2
    );
    assert!(
        store
            .delete_stale(Timestamp::now(), 10)
            .await
            .expect("sweep")
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_throttle_store() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    counts_like_a_throttle_store(Arc::new(PostgresThrottleStore::new(pool))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_throttle_store() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    counts_like_a_throttle_store(Arc::new(PostgresThrottleStore::new(pool))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_throttle_store() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let redis = RedisStore::open(&url).await.expect("Redis reachable");
    counts_like_a_throttle_store(Arc::new(RedisThrottleStore::new(redis))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_throttle_store() {
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS_CLUSTER") else {
        return;
    };
    let redis = RedisStore::open(&url)
        .await
        .expect("Redis Cluster reachable");
    counts_like_a_throttle_store(Arc::new(RedisThrottleStore::new(redis))).await;
}

/// Sets the Redis ACL user `user` to reach every key read-write, or read-only (its
/// writes then fail with NOPERM: a store that reads but cannot write, as a full disk or
/// a demoted primary leaves one).
async fn set_writable(admin: &mut redis::aio::MultiplexedConnection, user: &str, writable: bool) {
    let keys = if writable { "~*" } else { "%R~*" };
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", user, "resetkeys", keys][..])
        .query_async(admin)
        .await
        .expect("ACL SETUSER");
}

/// The attack on the throttle's bookkeeping: a store that fails between a password
/// check's reservation and its settling (here Redis refusing the store's writes, by
/// ACL, on the shared server). Eight right passwords settled while it refuses would
/// leave eight counts behind, and throttle the address and the account for attempts
/// that were never failures. Instead the counts it could not take back are owed and
/// paid at the next reservation once it writes again: the address is still admitted,
/// and then counts exactly its burst of failures, no more and no fewer.
#[tokio::test]
async fn counts_a_failing_store_could_not_take_back_are_paid_later() {
    use latchkey::throttle::{Account, Admission, Throttle, ThrottlePolicy};
    let Some(url) = common::service_url("LATCHKEY_TEST_REDIS") else {
        return;
    };
    let admin_client = redis::Client::open(url.as_str()).expect("Redis URL");
    let mut admin = admin_client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis reachable");
    let user = key("throttle-writer");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", ">pw", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let store_url = url.replacen("redis://", &format!("redis://{user}:pw@"), 1);
    let redis = RedisStore::open(&store_url)
        .await
        .expect("Redis as the test user")
        .with_prefix(&key("owed"))
        .expect("prefix");
    let policy = ThrottlePolicy {
        ip_burst: 3,
        ..ThrottlePolicy::default()
    };
    let throttle = Throttle::new(Arc::new(RedisThrottleStore::new(redis)), policy);
    let ip = Some("192.0.2.7".parse().expect("address"));
    let reserve = |account: &'static str| {
        let throttle = throttle.clone();
        async move {
            throttle
                .reserve(Account::User(account), ip)
                .await
                .expect("reserve")
        }
    };

    for round in 0..8 {
        let Admission::Admitted(reservation) = reserve("ada").await else {
            panic!("right password {round} refused: counts of earlier rounds were left behind");
        };
        set_writable(&mut admin, &user, false).await;
        assert!(
            throttle.succeeded(reservation).await.is_err(),
            "the store refused writes, so clearing the account's failures failed"
        );
        set_writable(&mut admin, &user, true).await;
    }
    // While it refuses writes nothing is admitted or paid; once it writes, all is.
    let Admission::Admitted(reservation) = reserve("ada").await else {
        panic!("the counts owed were not paid");
    };
    set_writable(&mut admin, &user, false).await;
    assert!(throttle.reserve(Account::User("ada"), ip).await.is_err());
    throttle.abandon(reservation).await;
    set_writable(&mut admin, &user, true).await;

    // The address's burst counts failures exactly: three are checked, the fourth waits.
    for account in ["bob", "cy", "di"] {
        let Admission::Admitted(reservation) = reserve(account).await else {
            panic!("wrong password for {account} refused within the burst");
        };
        throttle.failed(reservation).await.expect("failure counted");
    }
    assert!(
        matches!(reserve("eve").await, Admission::Refused(_)),
        "a fourth failure within the minute is refused"
    );
    let _: () = redis::cmd("ACL")
        .arg(&["DELUSER", &user][..])
        .query_async(&mut admin)
        .await
        .expect("ACL DELUSER");
}
