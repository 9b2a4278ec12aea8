//! Every throttle counter store counts the same way: increments within a window, a new
//! window after it, clearing, sweeping stale counters, and no lost counts when many
//! requests record at once.

use latchkey::store::{open_postgres, open_sqlite, RedisStore};
use latchkey::throttle::{
    Account, Admission, MemoryThrottleStore, PostgresThrottleStore, RedisThrottleStore,
    SqliteThrottleStore, Throttle, ThrottlePolicy, ThrottleStore, ThrottleStoreError,
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

    // A take-back belongs to its window: one of the window that is over takes nothing
    // from the one that started over.
    store.release(&contested, now).await.expect("release");
    let counter = store.get(&contested, window, later).await.expect("get");
    assert_eq!(counter.map(|counter| counter.count), Some(1));
    // Taking attempts back: one at a time, never below zero.
    store.release(&contested, later).await.expect("release");
    store.release(&contested, later).await.expect("release");
    let counter = store.get(&contested, window, later).await.expect("get");
    assert_eq!(counter.map(|counter| counter.count), Some(0));
    store
        .release(&key("absent"), later)
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

/// An ACL user of its own on the test Redis, and a throttle counting through it under a
/// prefix of its own. Tests make some of its keys read-only: Redis then refuses its
/// writes there (NOPERM), as a read-only replica or a Redis out of memory would, while
/// other tests on the same Redis go on.
struct RefusingRedis {
    admin: redis::aio::MultiplexedConnection,
    user: String,
    prefix: String,
    throttle: Throttle,
}

impl RefusingRedis {
    /// `None` without the test Redis; the throttle allows a burst of `ip_burst`
    /// failures per address.
    async fn open(ip_burst: u32) -> Option<RefusingRedis> {
        let url = common::service_url("LATCHKEY_TEST_REDIS")?;
        let client = redis::Client::open(url.as_str()).expect("Redis URL");
        let mut admin = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis reachable");
        let (user, password) = (key("throttle-writer"), key("password"));
        let _: () = redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER",
                    &user,
                    "on",
                    &format!(">{password}"),
                    "~*",
                    "&*",
                    "+@all",
                ][..],
            )
            .query_async(&mut admin)
            .await
            .expect("ACL SETUSER");
        let mut store_url = reqwest::Url::parse(&url).expect("Redis URL");
        store_url.set_username(&user).expect("user in the URL");
        store_url
            .set_password(Some(&password))
            .expect("password in the URL");
        let prefix = key("stranded");
        let redis = RedisStore::open(store_url.as_str())
            .await
            .expect("Redis as the test user")
            .with_prefix(&prefix)
            .expect("prefix");
        let policy = ThrottlePolicy {
            ip_burst,
            ..Default::default()
        };
        let throttle = Throttle::new(Arc::new(RedisThrottleStore::new(redis)), policy);
        Some(RefusingRedis {
            admin,
            user,
            prefix,
            throttle,
        })
    }

    /// Lets the throttle write only its counters whose keys start with one of
    /// `writable` (`b:` for the addresses' bursts, `pu:` for accounts' checks in
    /// flight…); it still reads them all.
    async fn writable(&mut self, writable: &[&str]) {
        let patterns: Vec<String> = writable
            .iter()
            .map(|start| format!("~{}:t:{{{start}*", self.prefix))
            .collect();
        let mut command = redis::cmd("ACL");
        command.arg(&["SETUSER", &self.user, "resetkeys", "%R~*"][..]);
        command.arg(patterns);
        let _: () = command
            .query_async(&mut self.admin)
            .await
            .expect("ACL SETUSER");
    }

    /// Lets the throttle write every counter again.
    async fn writes_all(&mut self) {
        self.writable(&[""]).await;
    }

    async fn reserve(&self, account: &str) -> Admission {
        self.try_reserve(account).await.expect("reserve")
    }

    async fn try_reserve(&self, account: &str) -> Result<Admission, ThrottleStoreError> {
        let ip = "192.0.2.7".parse().ok();
        self.throttle.reserve(Account::User(account), ip).await
    }

    /// With a burst of 3: three wrong passwords from the address are checked and the
    /// fourth refused, so the burst counts failures, no more and no fewer.
    async fn counts_exactly_a_burst_of_failures(&self) {
        for account in ["bob", "cy", "di"] {
            let Admission::Admitted(reservation) = self.reserve(account).await else {
                panic!("a wrong password for {account} was refused within the burst");
            };
            self.throttle.failed(reservation).await.expect("counted");
        }
        assert!(
            matches!(self.reserve("eve").await, Admission::Refused(_)),
            "a fourth failure within the minute is refused"
        );
    }

    async fn remove(mut self) {
        let _: () = redis::cmd("ACL")
            .arg(&["DELUSER", &self.user][..])
            .query_async(&mut self.admin)
            .await
            .expect("ACL DELUSER");
    }
}

/// The attack on the throttle's bookkeeping: a store that refuses writes between a
/// password check's reservation and its settling. Eight right passwords settled while
/// it refuses would leave eight counts behind, and throttle the address and the account
/// for attempts that were never failures. They are stranded instead: the address is
/// still admitted, and counts exactly its burst of failures once the store writes again.
#[tokio::test]
async fn counts_a_store_refused_to_take_back_are_no_attempts() {
    let Some(mut redis) = RefusingRedis::open(3).await else {
        return;
    };
    for round in 0..8 {
        let Admission::Admitted(reservation) = redis.reserve("ada").await else {
            panic!("right password {round} refused: counts of earlier rounds were left behind");
        };
        redis.writable(&[]).await;
        assert!(
            redis.throttle.succeeded(reservation).await.is_err(),
            "the store refused writes, so clearing the account's failures failed"
        );
        redis.writes_all().await;
    }
    // Nothing is admitted while it refuses writes.
    redis.writable(&[]).await;
    assert!(redis.try_reserve("ada").await.is_err());
    redis.writes_all().await;
    redis.counts_exactly_a_burst_of_failures().await;
    redis.remove().await;
}

/// A reservation the store fails half way through (the address counted, the account's
/// check slot refused) takes back what it counted: three such failures leave the
/// address its whole burst.
#[tokio::test]
async fn a_reservation_that_fails_half_way_takes_back_what_it_counted() {
    let Some(mut redis) = RefusingRedis::open(3).await else {
        return;
    };
    redis.writable(&["b:", "h:"]).await;
    for _ in 0..3 {
        assert!(
            redis.try_reserve("ada").await.is_err(),
            "the slot could not be counted"
        );
    }
    redis.writes_all().await;
    redis.counts_exactly_a_burst_of_failures().await;
    redis.remove().await;
}

/// A wrong password whose failure the store refused to count keeps its check slot: the
/// account's checks stay bounded while failures cannot be counted (six slots, as many
/// as failures left before a lockout, then 503s for as long as the slots last).
#[tokio::test]
async fn an_uncounted_failure_keeps_its_slot() {
    let Some(mut redis) = RefusingRedis::open(30).await else {
        return;
    };
    for attempt in 0..6 {
        let Admission::Admitted(reservation) = redis.reserve("ada").await else {
            panic!("attempt {attempt} refused within the account's allowance");
        };
        // The account's failure counter refuses; the slots and addresses still write.
        redis.writable(&["pu:", "b:", "h:"]).await;
        assert!(redis.throttle.failed(reservation).await.is_err());
        redis.writes_all().await;
    }
    let busy = tokio::time::timeout(Duration::from_secs(30), redis.reserve("ada")).await;
    assert!(
        matches!(busy, Ok(Admission::Busy)),
        "a seventh check waits for a slot that never frees, and is answered busy: {busy:?}"
    );
    redis.remove().await;
}
