//! The passkey store on SQLite and PostgreSQL, with a credential a real registration made
//! (headless Chromium's virtual authenticator, `tests/data/passkey.json`): a user's
//! handle is random and stable and leads back to the user; passkeys are listed, renamed
//! and deleted only by their owner; one credential cannot be registered twice. (Sign-ins,
//! which `record_use` stores, are exercised in the browser test.)

mod common;

use latchkey::factors::passkeys::{Passkey, PasskeyStore, SqlPasskeys};
use latchkey::store::{open_postgres, open_sqlite};
use latchkey::{NewUser, UserStore};

/// Held by the PostgreSQL suites, which empty the one `passkeys` table.
static PASSKEY_TABLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn passkey() -> Passkey {
    serde_json::from_str(include_str!("data/passkey.json")).expect("a passkey")
}

async fn suite(store: &dyn PasskeyStore, ada: i64, bea: i64) {
    let handle = store.user_handle(ada).await.expect("handle");
    assert_eq!(
        store.user_handle(ada).await.expect("handle"),
        handle,
        "stable"
    );
    assert_ne!(store.user_handle(bea).await.expect("handle"), handle);
    assert_eq!(store.user_of_handle(handle).await.expect("user"), Some(ada));
    assert_eq!(
        store
            .user_of_handle(latchkey::factors::passkeys::Uuid::nil())
            .await
            .expect("user"),
        None
    );

    assert!(store.list(ada).await.expect("list").is_empty());
    let id = store.add(ada, "laptop", &passkey()).await.expect("add");
    assert!(
        store.add(bea, "stolen", &passkey()).await.is_err(),
        "one credential, one owner"
    );
    let listed = store.list(ada).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].name.as_str()), (id, "laptop"));
    assert_eq!(listed[0].passkey.cred_id(), passkey().cred_id());
    assert!(listed[0].last_used_at.is_none());
    assert!(store.list(bea).await.expect("list").is_empty());

    assert!(
        !store.rename(bea, id, "mine now").await.expect("rename"),
        "not bea's"
    );
    assert!(store.rename(ada, id, "work laptop").await.expect("rename"));
    assert_eq!(store.list(ada).await.expect("list")[0].name, "work laptop");
    assert!(!store.delete(bea, id).await.expect("delete"), "not bea's");
    assert!(store.delete(ada, id).await.expect("delete"));
    assert!(store.list(ada).await.expect("list").is_empty());
    assert!(!store.delete(ada, id).await.expect("delete"));
}

#[tokio::test]
async fn sqlite_passkeys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("passkeys.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    let users = latchkey::SqliteUserStore::new(pool.clone());
    let ada = users
        .create(NewUser::new("ada", None, "x".into()).expect("user"))
        .await
        .expect("create");
    let bea = users
        .create(NewUser::new("bea", None, "x".into()).expect("user"))
        .await
        .expect("create");
    suite(&SqlPasskeys::new(pool), ada.id, bea.id).await;
}

#[tokio::test]
async fn postgres_passkeys() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    postgres_passkeys_on(pool.into()).await;
}

#[tokio::test]
async fn pgbouncer_passkeys() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    postgres_passkeys_on(pool).await;
}

/// The passkey suite on PostgreSQL through `pool`.
async fn postgres_passkeys_on(pool: latchkey::store::PgHandle) {
    // The fixture's credential id is unique across the table: start from none.
    // (Only one test, direct or through PgBouncer, may run at a time: they share a lock.)
    let _serial = PASSKEY_TABLE.lock().await;
    sqlx::query("DELETE FROM passkeys")
        .execute(&pool)
        .await
        .expect("clean");
    let users = latchkey::PostgresUserStore::new(pool.clone());
    let suffix = &latchkey::SessionToken::generate().id().to_hex()[..12];
    let ada = users
        .create(NewUser::new(&format!("pka{suffix}"), None, "x".into()).expect("user"))
        .await
        .expect("create");
    let bea = users
        .create(NewUser::new(&format!("pkb{suffix}"), None, "x".into()).expect("user"))
        .await
        .expect("create");
    suite(&SqlPasskeys::new(pool), ada.id, bea.id).await;
}
