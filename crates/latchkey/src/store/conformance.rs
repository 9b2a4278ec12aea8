//! The store conformance suite: one set of checks every [`SessionStore`] must pass.
//!
//! A store author runs it from a test:
//!
//! ```no_run
//! # async fn check() {
//! let store = std::sync::Arc::new(latchkey::store::MemoryStore::new());
//! latchkey::store::conformance::run_all(store).await;
//! # }
//! ```
//!
//! Each check uses fresh random ids and user ids, so the checks can share one store (and
//! a store that already holds data). A failed check panics with a message naming it.

use crate::session::{
    AuthInfo, ClientInfo, Session, SessionConfig, SessionError, SessionId, SessionRecord,
    SessionStore, SessionToken, StoreError, DEFAULT_MAX_RECORD_BYTES,
};
use crate::time::Timestamp;
use serde_json::{json, Map};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn SessionStore>) {
    create_and_load(&*store).await;
    create_refuses_taken_id(&*store).await;
    save_is_compare_and_swap(&*store).await;
    save_never_resurrects(&*store).await;
    rotate_is_atomic(&*store).await;
    delete_reports_existence(&*store).await;
    per_user_listing_and_revocation(&*store).await;
    delete_expired_removes_only_expired(&*store).await;
    concurrent_increments_are_not_lost(store.clone()).await;
    concurrent_loads_see_their_own_session_and_every_finished_write(store.clone()).await;
    session_expiry_is_enforced(store.clone()).await;
    concurrent_session_writes_merge(store.clone()).await;
    logout_wins_over_in_flight_write(store.clone()).await;
    oversized_session_data_is_refused(store.clone()).await;
}

/// Corrupt bytes in the store are an error, never a panic, and never a session:
/// `corrupt` must overwrite the stored record of the given session (created here for
/// `user_id`) with bytes that do not decode. Loading and listing then answer
/// [`StoreError::Corrupt`], and the session can still be deleted.
pub async fn corrupt_record_is_an_error<F, Fut>(store: &dyn SessionStore, corrupt: F)
where
    F: FnOnce(SessionId, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let id = new_id();
    let user = random_user();
    store
        .create(&id, &sample_record(Some(&user)))
        .await
        .expect("create");
    corrupt(id, user.clone()).await;
    assert!(
        matches!(store.load(&id).await, Err(StoreError::Corrupt(_))),
        "corrupt record: load must answer Corrupt"
    );
    assert!(
        matches!(
            store.list_for_user(&user).await,
            Err(StoreError::Corrupt(_))
        ),
        "corrupt record: list_for_user must answer Corrupt"
    );
    assert!(
        store.delete(&id).await.expect("delete a corrupt record"),
        "corrupt record: delete must still work"
    );
}

/// The record under `id`, as an owned value.
async fn loaded(store: &dyn SessionStore, id: &SessionId) -> Option<SessionRecord> {
    store
        .load(id)
        .await
        .expect("load")
        .map(|record| (*record).clone())
}

/// The URL of a real service for a test from the environment `variable`: `None`, with a
/// printed line, when it is not set (the test should return early), and a panic when
/// `LATCHKEY_REQUIRE_SERVICES` is set, so CI cannot skip what it must run.
pub fn service_url(variable: &str) -> Option<String> {
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

/// A fresh random id.
pub fn new_id() -> SessionId {
    SessionToken::generate().id()
}

fn random_user() -> String {
    format!("user-{}", &new_id().to_hex()[..16])
}

/// A live record (expires in an hour), optionally logged in as `user_id`.
pub fn sample_record(user_id: Option<&str>) -> SessionRecord {
    let now = Timestamp::now();
    let mut data = Map::new();
    data.insert("greeting".into(), json!("hello"));
    SessionRecord {
        version: 1,
        auth: user_id.map(|user_id| {
            AuthInfo::new(
                user_id,
                now,
                1,
                crate::session::Authentication {
                    methods: vec!["password".into()],
                    fresh: true,
                    multi_factor: false,
                },
            )
        }),
        data,
        created_at: now,
        last_active_at: now,
        idle_expires_at: now.plus(Duration::from_secs(3600)),
        absolute_expires_at: now.plus(Duration::from_secs(7200)),
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("conformance".into()),
    }
}

fn bumped(record: &SessionRecord) -> SessionRecord {
    let mut next = record.clone();
    next.version += 1;
    next
}

/// A record survives a create/load round trip unchanged; an unknown id loads as `None`.
pub async fn create_and_load(store: &dyn SessionStore) {
    let id = new_id();
    let record = sample_record(Some(&random_user()));
    store.create(&id, &record).await.expect("create");
    let loaded = loaded(store, &id).await;
    assert_eq!(
        loaded.as_ref(),
        Some(&record),
        "create_and_load: round trip"
    );
    assert!(
        store.load(&new_id()).await.expect("load unknown").is_none(),
        "create_and_load: unknown id must load as None"
    );
}

/// `create` on a taken id fails with `AlreadyExists` and leaves the record alone.
pub async fn create_refuses_taken_id(store: &dyn SessionStore) {
    let id = new_id();
    let record = sample_record(None);
    store.create(&id, &record).await.expect("create");
    let mut other = sample_record(None);
    other.data.insert("intruder".into(), json!(true));
    assert!(
        matches!(
            store.create(&id, &other).await,
            Err(StoreError::AlreadyExists)
        ),
        "create_refuses_taken_id: second create must fail"
    );
    assert_eq!(loaded(store, &id).await, Some(record));
}

/// `save` succeeds only with the current version.
pub async fn save_is_compare_and_swap(store: &dyn SessionStore) {
    let id = new_id();
    let record = sample_record(None);
    store.create(&id, &record).await.expect("create");
    let mut next = bumped(&record);
    next.data.insert("step".into(), json!(2));
    store
        .save(&id, &next, 1)
        .await
        .expect("save with current version");
    assert_eq!(loaded(store, &id).await, Some(next.clone()));
    let mut stale = bumped(&record);
    stale.data.insert("step".into(), json!("stale"));
    assert!(
        matches!(
            store.save(&id, &stale, 1).await,
            Err(StoreError::VersionConflict)
        ),
        "save_is_compare_and_swap: stale version must conflict"
    );
    assert_eq!(
        loaded(store, &id).await,
        Some(next),
        "save_is_compare_and_swap: a conflicting save changes nothing"
    );
}

/// `save` on a missing id is `NotFound` and creates nothing (no upserts).
pub async fn save_never_resurrects(store: &dyn SessionStore) {
    let id = new_id();
    let record = sample_record(None);
    assert!(
        matches!(
            store.save(&id, &bumped(&record), 1).await,
            Err(StoreError::NotFound)
        ),
        "save_never_resurrects: save of unknown id"
    );
    store.create(&id, &record).await.expect("create");
    assert!(store.delete(&id).await.expect("delete"));
    assert!(
        matches!(
            store.save(&id, &bumped(&record), 1).await,
            Err(StoreError::NotFound)
        ),
        "save_never_resurrects: save after delete"
    );
    assert!(loaded(store, &id).await.is_none());
}

/// `rotate` moves the record to the new id at once, and checks the version.
pub async fn rotate_is_atomic(store: &dyn SessionStore) {
    let old_id = new_id();
    let new_id_ = new_id();
    let user = random_user();
    let record = sample_record(Some(&user));
    store.create(&old_id, &record).await.expect("create");

    assert!(
        matches!(
            store.rotate(&old_id, &new_id_, &bumped(&record), 7).await,
            Err(StoreError::VersionConflict)
        ),
        "rotate_is_atomic: wrong version must conflict"
    );
    assert!(loaded(store, &new_id_).await.is_none());

    let taken = new_id();
    store
        .create(&taken, &sample_record(None))
        .await
        .expect("create");
    assert!(
        matches!(
            store.rotate(&old_id, &taken, &bumped(&record), 1).await,
            Err(StoreError::AlreadyExists)
        ),
        "rotate_is_atomic: rotating onto a taken id must fail"
    );
    assert_eq!(loaded(store, &old_id).await, Some(record.clone()));

    let next = bumped(&record);
    store
        .rotate(&old_id, &new_id_, &next, 1)
        .await
        .expect("rotate");
    assert!(
        loaded(store, &old_id).await.is_none(),
        "rotate_is_atomic: old id must be dead"
    );
    assert_eq!(loaded(store, &new_id_).await, Some(next));
    let listed: Vec<SessionId> = store
        .list_for_user(&user)
        .await
        .expect("list")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        listed,
        vec![new_id_],
        "rotate_is_atomic: user index follows"
    );
    assert!(
        matches!(
            store.rotate(&old_id, &new_id(), &bumped(&record), 1).await,
            Err(StoreError::NotFound)
        ),
        "rotate_is_atomic: rotating a dead id"
    );
}

/// `delete` says whether something was deleted.
pub async fn delete_reports_existence(store: &dyn SessionStore) {
    let id = new_id();
    store
        .create(&id, &sample_record(None))
        .await
        .expect("create");
    assert!(store.delete(&id).await.expect("delete"));
    assert!(!store.delete(&id).await.expect("delete again"));
}

/// Sessions are listed and revoked per user; anonymous sessions become listed once a
/// save logs them in.
pub async fn per_user_listing_and_revocation(store: &dyn SessionStore) {
    let alice = random_user();
    let bob = random_user();
    let alice_ids: Vec<SessionId> = (0..3).map(|_| new_id()).collect();
    for id in &alice_ids {
        store
            .create(id, &sample_record(Some(&alice)))
            .await
            .expect("create");
    }
    let bob_id = new_id();
    let anonymous = sample_record(None);
    store.create(&bob_id, &anonymous).await.expect("create");
    assert!(store.list_for_user(&bob).await.expect("list").is_empty());
    let mut logged_in = bumped(&anonymous);
    logged_in.auth = sample_record(Some(&bob)).auth;
    store.save(&bob_id, &logged_in, 1).await.expect("save");
    assert_eq!(store.list_for_user(&bob).await.expect("list").len(), 1);

    let mut listed: Vec<SessionId> = store
        .list_for_user(&alice)
        .await
        .expect("list")
        .into_iter()
        .map(|(id, record)| {
            assert_eq!(record.user_id(), Some(alice.as_str()));
            id
        })
        .collect();
    listed.sort();
    let mut expected = alice_ids.clone();
    expected.sort();
    assert_eq!(
        listed, expected,
        "per_user_listing: all of alice's sessions"
    );

    let deleted = store
        .delete_for_user(&alice, Some(&alice_ids[0]))
        .await
        .expect("delete others");
    assert_eq!(deleted, 2, "per_user_listing: revoke all others");
    assert!(loaded(store, &alice_ids[0]).await.is_some());
    assert!(loaded(store, &alice_ids[1]).await.is_none());
    assert_eq!(store.delete_for_user(&alice, None).await.expect("all"), 1);
    assert!(store.list_for_user(&alice).await.expect("list").is_empty());
    assert!(
        loaded(store, &bob_id).await.is_some(),
        "per_user_listing: other users untouched"
    );
}

/// `delete_expired` removes expired sessions in bounded batches and keeps live ones.
pub async fn delete_expired_removes_only_expired(store: &dyn SessionStore) {
    let past = Timestamp::now().plus(Duration::ZERO);
    let expired_ids: Vec<SessionId> = (0..5).map(|_| new_id()).collect();
    for id in &expired_ids {
        let mut record = sample_record(None);
        record.idle_expires_at = Timestamp(past.as_millis() - 1_000);
        store.create(id, &record).await.expect("create");
    }
    let live = new_id();
    store
        .create(&live, &sample_record(None))
        .await
        .expect("create");
    let now = Timestamp::now();
    let first = store.delete_expired(now, 2).await.expect("delete_expired");
    assert!(first <= 2, "delete_expired: limit respected ({first})");
    while store.delete_expired(now, 2).await.expect("delete_expired") > 0 {}
    for id in &expired_ids {
        assert!(
            loaded(store, id).await.is_none(),
            "delete_expired: expired session still there"
        );
    }
    assert!(
        loaded(store, &live).await.is_some(),
        "delete_expired: live session removed"
    );
}

/// 50 concurrent compare-and-swap increments through the raw store API give exactly 50.
pub async fn concurrent_increments_are_not_lost(store: Arc<dyn SessionStore>) {
    let id = new_id();
    let mut record = sample_record(None);
    record.data.insert("counter".into(), json!(0));
    store.create(&id, &record).await.expect("create");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let current = loaded(&*store, &id).await.expect("exists");
                    let mut next = bumped(&current);
                    let count = current.data["counter"].as_i64().unwrap_or(0);
                    next.data.insert("counter".into(), json!(count + 1));
                    match store.save(&id, &next, current.version).await {
                        Ok(()) => break,
                        Err(StoreError::VersionConflict) => tokio::task::yield_now().await,
                        Err(error) => panic!("concurrent increments: {error}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let record = loaded(&*store, &id).await.expect("exists");
    assert_eq!(record.data["counter"], json!(50), "concurrent increments");
    assert_eq!(record.version, 51);
}

/// Many loads at once (of many sessions, some twice, some unknown; a store may answer
/// them together) each get their own session; a load started after a write finished
/// sees that write.
pub async fn concurrent_loads_see_their_own_session_and_every_finished_write(
    store: Arc<dyn SessionStore>,
) {
    let mut sessions = Vec::new();
    for n in 0..20 {
        let id = new_id();
        let mut record = sample_record(Some(&random_user()));
        record.data.insert("n".into(), json!(n));
        store.create(&id, &record).await.expect("create");
        sessions.push((id, Some(record)));
    }
    sessions.extend((0..5).map(|_| (new_id(), None)));
    let sessions = Arc::new(sessions);
    let loads: Vec<_> = (0..200)
        .map(|n| {
            let (store, sessions) = (store.clone(), sessions.clone());
            tokio::spawn(async move {
                let (id, expected) = &sessions[n % sessions.len()];
                assert_eq!(
                    loaded(&*store, id).await.as_ref(),
                    expected.as_ref(),
                    "concurrent loads: load {n} got another session's record"
                );
            })
        })
        .collect();
    for load in loads {
        load.await.expect("load task");
    }
    let (id, record) = (sessions[0].0, sessions[0].1.clone().expect("created"));
    let mut current = record;
    for _ in 0..10 {
        let next = bumped(&current);
        store.save(&id, &next, current.version).await.expect("save");
        let readers: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { loaded(&*store, &id).await.map(|r| r.version) })
            })
            .collect();
        for reader in readers {
            assert_eq!(
                reader.await.expect("reader"),
                Some(next.version),
                "concurrent loads: a load after a save must see it"
            );
        }
        current = next;
    }
    store.delete(&id).await.expect("delete");
    assert_eq!(
        loaded(&*store, &id).await,
        None,
        "concurrent loads: a load after a delete must miss"
    );
}

fn session_for(store: &Arc<dyn SessionStore>, token: &SessionToken) -> Session {
    Session::new(
        store.clone(),
        Arc::new(SessionConfig::insecure_for_local_development()),
        Some(&token.encode()),
        ClientInfo::default(),
    )
}

/// A session past its idle or absolute expiry is "no session", and so is an unknown or
/// malformed token.
pub async fn session_expiry_is_enforced(store: Arc<dyn SessionStore>) {
    let now = Timestamp::now();
    let idle_token = SessionToken::generate();
    let mut idle = sample_record(Some(&random_user()));
    idle.idle_expires_at = Timestamp(now.as_millis() - 1);
    store.create(&idle_token.id(), &idle).await.expect("create");
    let absolute_token = SessionToken::generate();
    let mut absolute = sample_record(Some(&random_user()));
    absolute.absolute_expires_at = Timestamp(now.as_millis() - 1);
    store
        .create(&absolute_token.id(), &absolute)
        .await
        .expect("create");
    let live_token = SessionToken::generate();
    store
        .create(&live_token.id(), &sample_record(Some(&random_user())))
        .await
        .expect("create");

    for (name, token) in [("idle", &idle_token), ("absolute", &absolute_token)] {
        let session = session_for(&store, token);
        assert!(
            !session.exists().await.expect("exists"),
            "session_expiry: {name}-expired session must be no session"
        );
        assert!(session.auth().await.expect("auth").is_none());
    }
    assert!(session_for(&store, &live_token)
        .exists()
        .await
        .expect("exists"));
    let unknown = session_for(&store, &SessionToken::generate());
    assert!(!unknown.exists().await.expect("exists"));
    let malformed = Session::new(
        store.clone(),
        Arc::new(SessionConfig::insecure_for_local_development()),
        Some("not-a-token"),
        ClientInfo::default(),
    );
    assert!(!malformed.exists().await.expect("exists"));
}

/// 50 concurrent sessions (one per request) on one stored session, each inserting its
/// own key, then 50 concurrent `update` increments: nothing is lost.
pub async fn concurrent_session_writes_merge(store: Arc<dyn SessionStore>) {
    let token = SessionToken::generate();
    store
        .create(&token.id(), &sample_record(None))
        .await
        .expect("create");
    let writers: Vec<_> = (0..50)
        .map(|n| {
            let session = session_for(&store, &token);
            tokio::spawn(async move {
                session.insert(&format!("key-{n}"), n).await?;
                session.commit().await.map(|_| ())
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("task").expect("commit");
    }
    let incrementers: Vec<_> = (0..50)
        .map(|_| {
            let session = session_for(&store, &token);
            tokio::spawn(async move {
                session
                    .update("counter", |old| {
                        json!(old.and_then(|value| value.as_i64()).unwrap_or(0) + 1)
                    })
                    .await
            })
        })
        .collect();
    for incrementer in incrementers {
        incrementer.await.expect("task").expect("update");
    }
    let record = store
        .load(&token.id())
        .await
        .expect("load")
        .expect("exists");
    for n in 0..50 {
        assert_eq!(
            record.data.get(&format!("key-{n}")),
            Some(&json!(n)),
            "concurrent_session_writes: key-{n} lost"
        );
    }
    assert_eq!(record.data["counter"], json!(50), "concurrent updates");
}

/// A request that loaded the session before a logout cannot bring it back by saving.
pub async fn logout_wins_over_in_flight_write(store: Arc<dyn SessionStore>) {
    let token = SessionToken::generate();
    store
        .create(&token.id(), &sample_record(Some(&random_user())))
        .await
        .expect("create");
    let in_flight = session_for(&store, &token);
    assert!(in_flight.exists().await.expect("exists"));
    let logout = session_for(&store, &token);
    assert!(logout.destroy().await.expect("destroy").is_some());
    in_flight.insert("late", true).await.expect("insert");
    in_flight.commit().await.expect("commit");
    assert!(
        store.load(&token.id()).await.expect("load").is_none(),
        "logout_wins: a late write resurrected the session"
    );
}

/// The attack of 64 values of 60 KB in one session (a 3.8 MB record): the write that
/// would take the record past [`SessionConfig`]'s byte limit (64 KiB by default) fails
/// with [`SessionError::TooLarge`] and the store keeps the record it had; so does the
/// key past the key limit, and an `update` (saved at once) past either.
pub async fn oversized_session_data_is_refused(store: Arc<dyn SessionStore>) {
    let token = SessionToken::generate();
    store
        .create(&token.id(), &sample_record(Some(&random_user())))
        .await
        .expect("create");
    let value = "x".repeat(60_000);
    let session = session_for(&store, &token);
    session
        .insert("v0", &value)
        .await
        .expect("the first 60 KB fit");
    session.commit().await.expect("commit");
    let before = loaded(&*store, &token.id()).await.expect("exists");
    for n in 1..64 {
        let refused = session.insert(&format!("v{n}"), &value).await;
        assert!(
            matches!(refused, Err(SessionError::TooLarge { unit: "bytes", .. })),
            "oversized: insert {n} must be TooLarge, got {refused:?}"
        );
    }
    let refused = session.update("v1", |_| json!(value)).await;
    assert!(
        matches!(refused, Err(SessionError::TooLarge { unit: "bytes", .. })),
        "oversized: update must be TooLarge, got {refused:?}"
    );
    session.commit().await.expect("nothing left to write");
    let after = loaded(&*store, &token.id()).await.expect("exists");
    assert_eq!(
        after, before,
        "oversized: a refused write changed the record"
    );
    assert!(
        serde_json::to_string(&after).expect("encode").len() <= DEFAULT_MAX_RECORD_BYTES,
        "oversized: the stored record is over the limit"
    );

    let token = SessionToken::generate();
    let config = SessionConfig::insecure_for_local_development().with_max_keys(4);
    let session = Session::new(
        store.clone(),
        Arc::new(config),
        Some(&token.encode()),
        ClientInfo::default(),
    );
    for n in 0..4 {
        session.insert(&format!("k{n}"), n).await.expect("insert");
    }
    session
        .insert("k0", "replaced")
        .await
        .expect("a key it holds");
    let refused = session.insert("k4", 4).await;
    assert!(
        matches!(
            refused,
            Err(SessionError::TooLarge {
                unit: "keys",
                size: 5,
                limit: 4
            })
        ),
        "oversized: the 5th key must be TooLarge, got {refused:?}"
    );
    session.commit().await.expect("commit the 4 keys");
    let id = session.id().await.expect("id").expect("created");
    let stored = loaded(&*store, &id).await.expect("exists");
    assert_eq!(stored.data.len(), 4, "oversized: the 5th key was stored");
    assert_eq!(stored.data["k0"], json!("replaced"));
    let refused = session.update("k5", |_| json!(5)).await;
    assert!(
        matches!(refused, Err(SessionError::TooLarge { unit: "keys", .. })),
        "oversized: update of a 5th key must be TooLarge, got {refused:?}"
    );
    assert_eq!(loaded(&*store, &id).await.expect("exists"), stored);
}

/// Wraps a store and counts its loads and writes (create, save, rotate, delete), to
/// check how many store round trips a request costs.
pub struct CountingStore {
    inner: Arc<dyn SessionStore>,
    loads: AtomicUsize,
    writes: AtomicUsize,
}

impl CountingStore {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        CountingStore {
            inner,
            loads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
        }
    }

    /// Loads so far.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Writes so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.wrote();
        self.inner.create(id, record).await
    }
    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.wrote();
        self.inner.save(id, record, expected).await
    }
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        record: &SessionRecord,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.wrote();
        self.inner.rotate(old, new, record, expected).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.wrote();
        self.inner.delete(id).await
    }
    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        self.inner.list_for_user(user_id).await
    }
    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        self.inner.delete_for_user(user_id, keep).await
    }
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        self.inner.delete_expired(now, limit).await
    }
}
