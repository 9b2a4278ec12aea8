//! `PasswordBackend::authenticate` costs exactly one password verification whatever the outcome, so an
//! unknown or disabled user cannot be told apart from a wrong password by timing.

use latchkey::store::open_sqlite;
use latchkey::{
    AuthBackend, HashParams, NewUser, PasswordBackend, PasswordCredentials, PasswordHasher,
    SqliteUserStore, UserStore,
};

#[tokio::test]
async fn every_outcome_costs_one_verification() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool);
    let hasher = PasswordHasher::new(HashParams::insecure_fast()).expect("hasher");
    let password = "imbluedabadeedabadaa";
    for name in ["grover", "oscar"] {
        let hash = hasher.hash(password).await.expect("hash");
        let email = format!("{name}@example.com");
        users
            .create(NewUser::new(name, Some(&email), hash).expect("user"))
            .await
            .expect("create");
    }
    let oscar = users
        .find_by_login("oscar")
        .await
        .expect("find")
        .expect("oscar");
    users.set_disabled(oscar.id, true).await.expect("disable");

    let cases = [
        ("grover", password, true),
        ("GROVER@example.com", password, true),
        ("grover", "wrong password", false),
        ("nobody", password, false),
        ("oscar", password, false),
    ];
    for (login, attempt, succeeds) in cases {
        let before = hasher.verifications();
        let user = backend(&users, &hasher)
            .authenticate(PasswordCredentials::new(login, attempt))
            .await
            .expect("authenticate");
        assert_eq!(user.is_some(), succeeds, "{login}");
        assert_eq!(
            hasher.verifications() - before,
            1,
            "{login}: exactly one verification"
        );
    }

    // A password far over the limit is refused before any lookup or hashing.
    let before = hasher.verifications();
    let huge = "x".repeat(1 << 20);
    assert!(backend(&users, &hasher)
        .authenticate(PasswordCredentials::new("grover", &huge))
        .await
        .expect("ok")
        .is_none());
    assert_eq!(hasher.verifications(), before);
}

/// ASVS 2.1.2's boundary, in bytes: a 4096-byte password (1,024 four-byte characters)
/// is looked up and verified, and logs in when it is right; one byte more is refused
/// before any lookup or hashing, even when its first 4096 bytes are the right password.
#[tokio::test]
async fn the_limit_is_4096_bytes_exactly() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool);
    let hasher = PasswordHasher::new(HashParams::insecure_fast()).expect("hasher");
    let longest = "🔑".repeat(1024);
    assert_eq!(longest.len(), 4096);
    // Stored past the sign-up policy (128 characters), as an import or another
    // application's policy could.
    let hash = hasher
        .hash(&longest)
        .await
        .expect("a 4096-byte password hashes");
    users
        .create(NewUser::new("kim", None, hash).expect("user"))
        .await
        .expect("create");
    let one_more = format!("{longest}x");
    let cases = [
        (longest.clone(), true, 1),
        (format!("{}🔒", &longest[..4092]), false, 1),
        (one_more.clone(), false, 0),
    ];
    for (password, succeeds, verifications) in cases {
        let before = hasher.verifications();
        let user = backend(&users, &hasher)
            .authenticate(PasswordCredentials::new("kim", &password))
            .await
            .expect("authenticate");
        assert_eq!(user.is_some(), succeeds, "{} bytes", password.len());
        assert_eq!(
            hasher.verifications() - before,
            verifications,
            "{} bytes: verifications",
            password.len()
        );
    }
    assert!(
        hasher.hash(&one_more).await.is_err(),
        "4097 bytes are not hashed"
    );
}

/// latchkey's password backend over `users`, checking with `hasher` (whose verification
/// counter the tests read).
fn backend(users: &SqliteUserStore, hasher: &PasswordHasher) -> PasswordBackend<SqliteUserStore> {
    PasswordBackend::new(users.clone(), hasher.clone())
}
