//! latchkey's user and remember-me stores behave the same on SQLite and PostgreSQL.

use latchkey::remember::{
    PostgresRememberStore, RememberRecord, RememberStore, RememberStoreError, SqliteRememberStore,
};
use latchkey::store::{open_postgres, open_sqlite};
use latchkey::{
    AuthBackend, HashParams, NewUser, PasswordBackend, PasswordHasher, PostgresUserStore,
    SqliteUserStore, Timestamp, UserStore, UserStoreError,
};
use std::time::Duration;

mod common;

/// A name no earlier run used (PostgreSQL keeps its rows between runs).
fn unique(stem: &str) -> String {
    format!(
        "{stem}{}",
        &latchkey::SessionToken::generate().id().to_hex()[..10]
    )
}

async fn users_behave<S: UserStore + Clone>(users: &S) {
    let loader = PasswordBackend::new(
        users.clone(),
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    );
    let name = unique("Alice");
    let email = format!("{}@example.com", unique("alice"));
    let alice = users
        .create(NewUser::new(&name, Some(&email), "hash-1".into()).expect("valid"))
        .await
        .expect("create");
    assert_eq!(alice.username, name);
    assert_eq!(alice.credential_version, 1);
    assert!(!alice.disabled);

    // Names are unique case-insensitively; emails are unique.
    let taken = users
        .create(NewUser::new(&name.to_uppercase(), None, "h".into()).expect("valid"))
        .await;
    assert!(
        matches!(taken, Err(UserStoreError::UsernameTaken(_))),
        "{taken:?}"
    );
    let taken = users
        .create(
            NewUser::new(&unique("bob"), Some(&email.to_uppercase()), "h".into()).expect("valid"),
        )
        .await;
    assert!(
        matches!(taken, Err(UserStoreError::EmailTaken(_))),
        "{taken:?}"
    );

    // Login by username (any case) or by email.
    for login in [name.clone(), name.to_lowercase(), email.clone()] {
        let found = users
            .find_by_login(&login)
            .await
            .expect("find")
            .expect("found");
        assert_eq!(found.id, alice.id, "login {login}");
    }
    assert!(users
        .find_by_login(&unique("nobody"))
        .await
        .expect("find")
        .is_none());

    // A password change and a disable each bump the credential version.
    let changed = users
        .set_password_hash(alice.id, "hash-2")
        .await
        .expect("passwd");
    assert_eq!(changed.password_hash(), "hash-2");
    assert_eq!(changed.credential_version, 2);
    let disabled = users.set_disabled(alice.id, true).await.expect("disable");
    assert!(disabled.disabled);
    assert_eq!(disabled.credential_version, 3);
    assert!(matches!(
        users.set_disabled(i64::MAX, true).await,
        Err(UserStoreError::NotFound)
    ));

    // The backend loads users by their id string and ignores ids that are not numbers.
    let loaded = loader
        .get_user(&alice.id.to_string())
        .await
        .expect("load")
        .expect("found");
    assert!(loaded.disabled);
    assert!(loader
        .get_user("not-a-number")
        .await
        .expect("load")
        .is_none());
    assert!(users
        .list()
        .await
        .expect("list")
        .iter()
        .any(|user| user.id == alice.id));

    // Email changes and verification: a verification counts only for the address the
    // user has now; a taken address is refused and changes nothing.
    assert!(alice.email_verified_at.is_none());
    let verified = users
        .mark_email_verified(alice.id, &email.to_uppercase())
        .await
        .expect("verify")
        .expect("still the user's address");
    assert!(verified.email_verified_at.is_some());
    let moved_to = format!("{}@example.com", unique("moved"));
    let moved = users
        .set_email(alice.id, &moved_to, false)
        .await
        .expect("move");
    assert_eq!(moved.email.as_deref(), Some(moved_to.as_str()));
    assert!(
        moved.email_verified_at.is_none(),
        "a new address starts unverified"
    );
    assert_eq!(
        moved.credential_version, verified.credential_version,
        "sessions stay"
    );
    assert!(
        users
            .mark_email_verified(alice.id, &email)
            .await
            .expect("verify")
            .is_none(),
        "a link to the old address verifies nothing"
    );
    let other_email = format!("{}@example.com", unique("other"));
    users
        .create(NewUser::new(&unique("Other"), Some(&other_email), "h".into()).expect("valid"))
        .await
        .expect("create");
    assert!(matches!(
        users.set_email(alice.id, &other_email, true).await,
        Err(UserStoreError::EmailTaken(_))
    ));
    let found = users
        .find_by_login(&moved_to)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, alice.id);
    assert!(matches!(
        users.set_email(i64::MAX, &unique("x"), true).await,
        Err(UserStoreError::NotFound)
    ));
}

fn token(user_id: &str, expires_at: Timestamp) -> RememberRecord {
    let now = Timestamp::now();
    RememberRecord {
        series: unique("series-"),
        validator_hash: [1; 32],
        previous_hash: None,
        previous_valid_until: None,
        user_id: user_id.to_string(),
        created_at: now,
        last_used_at: now,
        expires_at,
    }
}

async fn remember_tokens_behave(store: &dyn RememberStore) {
    let user = unique("user-");
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    let record = token(&user, later);
    store.insert(&record).await.expect("insert");
    assert!(matches!(
        store.insert(&record).await,
        Err(RememberStoreError::AlreadyExists)
    ));
    assert_eq!(
        store.find(&record.series).await.expect("find"),
        Some(record.clone())
    );

    // Rotation is compare-and-swap on the current hash and keeps the old one for grace.
    let grace = Timestamp::now().plus(Duration::from_secs(60));
    let now = Timestamp::now();
    assert!(store
        .rotate(&record.series, &[1; 32], &[2; 32], grace, now)
        .await
        .expect("rotate"));
    assert!(!store
        .rotate(&record.series, &[1; 32], &[3; 32], grace, now)
        .await
        .expect("rotate"));
    let rotated = store
        .find(&record.series)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(rotated.validator_hash, [2; 32]);
    assert_eq!(rotated.previous_hash, Some([1; 32]));
    assert_eq!(rotated.previous_valid_until, Some(grace));

    // Per-user deletion, single deletion and bounded expiry sweeps.
    let second = token(&user, later);
    store.insert(&second).await.expect("insert");
    assert_eq!(store.delete_for_user(&user).await.expect("delete"), 2);
    assert!(store.find(&second.series).await.expect("find").is_none());
    let single = token(&user, later);
    store.insert(&single).await.expect("insert");
    assert!(store.delete(&single.series).await.expect("delete"));
    assert!(!store.delete(&single.series).await.expect("delete"));

    let past = Timestamp::now();
    let expired: Vec<RememberRecord> = (0..3).map(|_| token(&user, past)).collect();
    for record in &expired {
        store.insert(record).await.expect("insert");
    }
    let live = token(&user, later);
    store.insert(&live).await.expect("insert");
    let sweep_time = past.plus(Duration::from_millis(1));
    let first = store.delete_expired(sweep_time, 2).await.expect("sweep");
    assert!(first <= 2, "limit respected");
    while store.delete_expired(sweep_time, 2).await.expect("sweep") > 0 {}
    for record in &expired {
        assert!(store.find(&record.series).await.expect("find").is_none());
    }
    assert!(store.find(&live.series).await.expect("find").is_some());
}

#[tokio::test]
async fn sqlite_user_and_remember_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    let users = SqliteUserStore::new(pool.clone());
    users_behave(&users).await;
    remember_tokens_behave(&SqliteRememberStore::new(pool)).await;
}

/// Held by the PostgreSQL tests (direct and through PgBouncer), which share the tables:
/// two expiry sweeps at once can each stop early on rows the other deleted.
static POSTGRES_TABLES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn postgres_user_and_remember_stores() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let _serial = POSTGRES_TABLES.lock().await;
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    let users = PostgresUserStore::new(pool.clone());
    users_behave(&users).await;
    remember_tokens_behave(&PostgresRememberStore::new(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_user_and_remember_stores() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    let _serial = POSTGRES_TABLES.lock().await;
    let users = PostgresUserStore::new(pool.clone());
    users_behave(&users).await;
    remember_tokens_behave(&PostgresRememberStore::new(pool)).await;
}
