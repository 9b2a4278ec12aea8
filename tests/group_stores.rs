//! The group store (issue 28: the groups access rules let in) behaves the same on SQLite
//! and PostgreSQL: adding is idempotent and says whether it changed anything, removing
//! likewise, groups are listed by name, and one user's groups are theirs alone.

mod common;

use latchkey::store::{open_postgres, open_sqlite};
use latchkey::user::groups::{GroupStore, SqlGroups};
use latchkey::{NewUser, PostgresUserStore, SqliteUserStore, UserStore};

/// A name no other run of this test used (PostgreSQL's tables are shared).
fn unique(stem: &str) -> String {
    let mut bytes = [0u8; 6];
    latchkey::bytes::random_bytes(&mut bytes);
    format!("{stem}{}", latchkey::bytes::lower_hex(&bytes))
}

async fn groups_behave(users: &dyn UserStore, groups: &dyn GroupStore) {
    let ada = users
        .create(NewUser::without_password(&unique("ada"), None).expect("user"))
        .await
        .expect("create");
    let bob = users
        .create(NewUser::without_password(&unique("bob"), None).expect("user"))
        .await
        .expect("create");
    assert!(groups.groups_of(ada.id).await.expect("list").is_empty());

    assert!(groups.add(ada.id, "ops").await.expect("add"), "new");
    assert!(
        !groups.add(ada.id, "ops").await.expect("add"),
        "already in it"
    );
    assert!(groups.add(ada.id, "admins").await.expect("add"));
    assert_eq!(
        groups.groups_of(ada.id).await.expect("list"),
        ["admins", "ops"],
        "by name"
    );
    assert!(
        groups.groups_of(bob.id).await.expect("list").is_empty(),
        "ada's groups are hers"
    );

    assert!(
        groups.remove(ada.id, "admins").await.expect("remove"),
        "was in it"
    );
    assert!(
        !groups.remove(ada.id, "admins").await.expect("remove"),
        "not any more"
    );
    assert!(
        !groups.remove(bob.id, "ops").await.expect("remove"),
        "bob never was"
    );
    assert_eq!(groups.groups_of(ada.id).await.expect("list"), ["ops"]);
}

#[tokio::test]
async fn sqlite_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("groups.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    groups_behave(&SqliteUserStore::new(pool.clone()), &SqlGroups::new(pool)).await;
}

#[tokio::test]
async fn postgres_groups() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    groups_behave(
        &PostgresUserStore::new(pool.clone()),
        &SqlGroups::new(latchkey::store::PgHandle::from(pool)),
    )
    .await;
}
