//! The identity store (who is linked to whom at other providers) behaves the same on
//! SQLite and PostgreSQL: an identity is its issuer and subject; one per user and
//! provider; a sign-in records the provider's latest address; unlinking is per provider.

mod common;

use latchkey::oidc::identities::{
    Identity, IdentityStore, IdentityStoreError, PostgresIdentityStore, SqliteIdentityStore,
};
use latchkey::store::{open_postgres, open_sqlite};
use latchkey::{NewUser, PostgresUserStore, SqliteUserStore, Timestamp, UserStore};

fn identity(issuer: &str, subject: &str, provider: &str, user_id: i64) -> Identity {
    let now = Timestamp::now();
    Identity {
        issuer: issuer.into(),
        subject: subject.into(),
        provider: provider.into(),
        user_id,
        email: Some(format!("{subject}@example.com")),
        email_verified: true,
        linked_at: now,
        last_used_at: now,
    }
}

/// A name no other run of this test used (PostgreSQL's tables are shared).
fn unique(stem: &str) -> String {
    let mut bytes = [0u8; 6];
    latchkey::bytes::random_bytes(&mut bytes);
    format!("{stem}{}", latchkey::bytes::lower_hex(&bytes))
}

async fn identities_behave(users: &dyn UserStore, identities: &dyn IdentityStore) {
    let ada = users
        .create(NewUser::without_password(&unique("ada"), None).expect("user"))
        .await
        .expect("create");
    assert!(
        !ada.has_password(),
        "an account made by a provider has no password"
    );
    let bob = users
        .create(NewUser::without_password(&unique("bob"), None).expect("user"))
        .await
        .expect("create");
    let issuer = format!("https://{}.example.com", unique("idp"));
    let subject = unique("sub");
    assert_eq!(
        identities.find(&issuer, &subject).await.expect("find"),
        None
    );

    let linked = identity(&issuer, &subject, "corp", ada.id);
    identities.link(&linked).await.expect("link");
    let found = identities
        .find(&issuer, &subject)
        .await
        .expect("find")
        .expect("linked");
    assert_eq!(found.user_id, ada.id);
    assert_eq!(found.provider, "corp");
    // The same subject at another issuer is another identity.
    assert_eq!(
        identities
            .find(&format!("{issuer}/other"), &subject)
            .await
            .expect("find"),
        None
    );

    // An identity links to one user; a user has one identity per provider.
    assert!(matches!(
        identities
            .link(&identity(&issuer, &subject, "corp", bob.id))
            .await,
        Err(IdentityStoreError::AlreadyExists)
    ));
    assert!(matches!(
        identities
            .link(&identity(&issuer, &unique("sub"), "corp", ada.id))
            .await,
        Err(IdentityStoreError::AlreadyExists)
    ));
    identities
        .link(&identity(
            "https://other.example.com",
            &unique("sub"),
            "other",
            ada.id,
        ))
        .await
        .expect("a second provider");

    // A sign-in records the address the provider gives now.
    let later = Timestamp::now().plus(std::time::Duration::from_secs(60));
    identities
        .used(&issuer, &subject, Some("new@example.com"), false, later)
        .await
        .expect("used");
    let found = identities
        .find(&issuer, &subject)
        .await
        .expect("find")
        .expect("linked");
    assert_eq!(found.email.as_deref(), Some("new@example.com"));
    assert!(!found.email_verified);
    assert_eq!(found.last_used_at, later);

    let providers: Vec<String> = identities
        .for_user(ada.id)
        .await
        .expect("list")
        .into_iter()
        .map(|identity| identity.provider)
        .collect();
    assert_eq!(providers, ["corp", "other"]);
    assert!(identities.for_user(bob.id).await.expect("list").is_empty());

    assert!(identities.unlink(ada.id, "corp").await.expect("unlink"));
    assert!(!identities.unlink(ada.id, "corp").await.expect("again"));
    assert_eq!(
        identities.find(&issuer, &subject).await.expect("find"),
        None
    );
    assert_eq!(identities.for_user(ada.id).await.expect("list").len(), 1);
}

#[tokio::test]
async fn sqlite_identities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("identities.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    identities_behave(
        &SqliteUserStore::new(pool.clone()),
        &SqliteIdentityStore::new(pool),
    )
    .await;
}

#[tokio::test]
async fn postgres_identities() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    identities_behave(
        &PostgresUserStore::new(pool.clone()),
        &PostgresIdentityStore::new(pool),
    )
    .await;
}
