//! The gate through the public API: every proof a way in can hand it × an account with no
//! second factor, with TOTP, with a passkey, on a real SQLite user store. The server's
//! `tests/gate.rs` replays the ways in that end in a request over HTTP; this one holds
//! every row, the passkey sign-in and remember-me included, and the second step.

use latchkey::store::{open_sqlite, MemoryStore};
use latchkey::{
    AuthError, AuthSession, Authenticator, Evidence, HashParams, NewUser, PasswordBackend,
    PasswordHasher, Proof, Refusal, SecondFactorSource, SecondStepFor, Session, SessionConfig,
    SignIn, SqliteUserStore, User, UserStore,
};
use std::sync::Arc;

/// Which second factors each user has: by username, as the test set them up.
struct Factors(Vec<(String, Vec<String>)>);

#[async_trait::async_trait]
impl SecondFactorSource for Factors {
    async fn second_factors(&self, user_id: &str) -> Result<Vec<String>, AuthError> {
        Ok(self
            .0
            .iter()
            .find(|(id, _)| id == user_id)
            .map(|(_, factors)| factors.clone())
            .unwrap_or_default())
    }
}

async fn fresh_session(authenticator: &Authenticator<User>) -> AuthSession<User> {
    let session = Session::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SessionConfig::insecure_for_local_development()),
        None,
        Default::default(),
    );
    authenticator.session(session)
}

#[tokio::test]
async fn every_proof_passes_the_gate_for_every_kind_of_account() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = Arc::new(SqliteUserStore::new(pool));
    let mut factors = Vec::new();
    let mut accounts = Vec::new();
    for (name, has) in [
        ("none", vec![]),
        ("totp", vec!["totp", "recovery_code"]),
        ("passkey", vec!["passkey"]),
    ] {
        let user = users
            .create(NewUser::new(name, None, "$argon2id$v=19$x".into()).expect("user"))
            .await
            .expect("create");
        factors.push((
            user.id.to_string(),
            has.iter().map(|m| m.to_string()).collect(),
        ));
        accounts.push((user, !has.is_empty()));
    }
    let authenticator = Authenticator::new(PasswordBackend::new(
        users.clone(),
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ))
    .with_second_factors(Factors(factors));
    let proofs = [
        Proof::password(),
        Proof::mailed_code(),
        Proof::mailed_link(),
        Proof::password_reset(),
        Proof::delegated("corp"),
        Proof::passkey(),
        Proof::remembered(),
        Proof::api_token(),
    ];
    for proof in &proofs {
        for (user, has_second_factor) in &accounts {
            let auth = fresh_session(&authenticator).await;
            let answer = auth.sign_in(user, proof.clone(), None).await.expect("gate");
            let one_factor = !matches!(
                proof.evidence(),
                Evidence::MultiFactor | Evidence::Remembered | Evidence::Token
            );
            let cell = format!("{} × {}", proof.method(), user.username);
            if *has_second_factor && one_factor {
                let SignIn::Pending { methods } = answer else {
                    panic!("{cell}: held for the second step, got {answer:?}");
                };
                assert!(!methods.is_empty(), "{cell}");
                assert_eq!(
                    auth.current_user().await.expect("user"),
                    None,
                    "{cell}: nobody in"
                );
                // A second factor completes it, recording both methods.
                let second = if user.username == "passkey" {
                    Proof::passkey()
                } else {
                    Proof::totp()
                };
                let done = auth
                    .continue_sign_in(&user.id.to_string(), second.clone())
                    .await
                    .expect("second step");
                assert!(matches!(done, SignIn::LoggedIn(_)), "{cell}: {done:?}");
                let info = auth.auth_info().await.expect("info").expect("logged in");
                assert_eq!(info.methods, [proof.method(), second.method()], "{cell}");
                assert!(info.multi_factor, "{cell}");
                assert_eq!(
                    info.fresh,
                    matches!(proof.evidence(), Evidence::Knowledge | Evidence::Delegated)
                        || second.evidence() == Evidence::MultiFactor,
                    "{cell}"
                );
            } else {
                assert!(matches!(answer, SignIn::LoggedIn(_)), "{cell}: {answer:?}");
                let info = auth.auth_info().await.expect("info").expect("logged in");
                assert_eq!(info.methods, [proof.method()], "{cell}");
                assert_eq!(
                    info.fresh,
                    matches!(
                        proof.evidence(),
                        Evidence::Knowledge | Evidence::MultiFactor | Evidence::Delegated
                    ),
                    "{cell}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_second_factor_alone_is_no_way_in_and_a_waiting_login_dies_with_a_credential_change() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = Arc::new(SqliteUserStore::new(pool));
    let user = users
        .create(NewUser::new("ada", None, "$argon2id$v=19$x".into()).expect("user"))
        .await
        .expect("create");
    let authenticator = Authenticator::new(PasswordBackend::new(
        users.clone(),
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ))
    .with_user_cache(std::time::Duration::ZERO)
    .with_second_factors(Factors(vec![(user.id.to_string(), vec!["totp".into()])]));
    let auth = fresh_session(&authenticator).await;
    let answer = auth
        .sign_in(&user, Proof::totp(), None)
        .await
        .expect("gate");
    assert!(
        matches!(answer, SignIn::Refused(Refusal::NotAWayIn)),
        "{answer:?}"
    );
    assert!(matches!(
        auth.continue_sign_in(&user.id.to_string(), Proof::totp())
            .await
            .expect("gate"),
        SignIn::Refused(Refusal::NothingPending)
    ));

    // The password passes, then the password changes elsewhere: the waiting login is
    // stamped with the old credential version and ends.
    assert!(matches!(
        auth.sign_in(&user, Proof::password(), None)
            .await
            .expect("gate"),
        SignIn::Pending { .. }
    ));
    users
        .set_password_hash(user.id, "$argon2id$v=19$y")
        .await
        .expect("change");
    let answer = auth
        .continue_sign_in(&user.id.to_string(), Proof::totp())
        .await
        .expect("gate");
    assert!(
        matches!(answer, SignIn::Refused(Refusal::CredentialsChanged)),
        "{answer:?}"
    );
    assert_eq!(auth.current_user().await.expect("user"), None);

    // A disabled user is refused whatever the proof.
    let disabled = users.set_disabled(user.id, true).await.expect("disable");
    for proof in [
        Proof::password(),
        Proof::passkey(),
        Proof::remembered(),
        Proof::api_token(),
    ] {
        let answer = auth.sign_in(&disabled, proof, None).await.expect("gate");
        assert!(
            matches!(answer, SignIn::Refused(Refusal::Inactive)),
            "{answer:?}"
        );
    }
}

#[tokio::test]
async fn a_login_without_its_second_factor_steps_up_through_the_gate() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = Arc::new(SqliteUserStore::new(pool));
    let mut factors = Vec::new();
    let mut accounts = Vec::new();
    for (name, has) in [("totp", "totp"), ("passkey", "passkey")] {
        let user = users
            .create(NewUser::new(name, None, "$argon2id$v=19$x".into()).expect("user"))
            .await
            .expect("create");
        factors.push((user.id.to_string(), vec![has.to_string()]));
        accounts.push(user);
    }
    let authenticator = Authenticator::new(PasswordBackend::new(
        users.clone(),
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ))
    .with_second_factors(Factors(factors));
    for user in &accounts {
        let cell = &user.username;
        let id = user.id.to_string();
        // A remembered device restores a login without its second factor.
        let auth = fresh_session(&authenticator).await;
        let answer = auth
            .sign_in(user, Proof::remembered(), None)
            .await
            .expect("gate");
        assert!(matches!(answer, SignIn::LoggedIn(_)), "{cell}: {answer:?}");
        assert!(!auth.has_second_factor().await.expect("info"), "{cell}");
        assert_eq!(
            auth.second_step_user().await.expect("user"),
            Some(SecondStepFor::StepUp(user.id.to_string())),
            "{cell}: the second step is for the logged-in user"
        );
        let token_before = auth.session().id().await.expect("id");

        // Only a second factor steps up: a password, a mailbox or a token does not.
        for proof in [Proof::password(), Proof::mailed_code(), Proof::api_token()] {
            let answer = auth.continue_sign_in(&id, proof).await.expect("gate");
            assert!(
                matches!(answer, SignIn::Refused(Refusal::NothingPending)),
                "{cell}: {answer:?}"
            );
        }
        let second = if cell == "passkey" {
            Proof::passkey()
        } else {
            Proof::totp()
        };
        let answer = auth
            .continue_sign_in(&id, second.clone())
            .await
            .expect("gate");
        assert!(matches!(answer, SignIn::LoggedIn(_)), "{cell}: {answer:?}");
        let info = auth.auth_info().await.expect("info").expect("logged in");
        assert_eq!(info.methods, ["remember_me", second.method()], "{cell}");
        assert!(info.multi_factor, "{cell}");
        assert_eq!(
            info.fresh,
            second.evidence() == Evidence::MultiFactor,
            "{cell}: a code after a remembered login is not a fresh login"
        );
        assert_ne!(
            auth.session().id().await.expect("id"),
            token_before,
            "{cell}: a new token for the stronger login"
        );
        // Done: nothing more to step up to.
        assert_eq!(auth.second_step_user().await.expect("user"), None, "{cell}");
        let again = auth.continue_sign_in(&id, second).await.expect("gate");
        assert!(
            matches!(again, SignIn::Refused(Refusal::NothingPending)),
            "{cell}: {again:?}"
        );
    }

    // Nobody logged in: nothing to step up.
    let auth = fresh_session(&authenticator).await;
    assert_eq!(auth.second_step_user().await.expect("user"), None);
    assert!(matches!(
        auth.continue_sign_in(&accounts[0].id.to_string(), Proof::totp())
            .await
            .expect("gate"),
        SignIn::Refused(Refusal::NothingPending)
    ));

    // A second factor checked for one user completes nobody else's step: not the
    // logged-in user's step up, not another user's login that waits in the session.
    let (totp, passkey) = (&accounts[0], &accounts[1]);
    let auth = fresh_session(&authenticator).await;
    auth.sign_in(totp, Proof::remembered(), None)
        .await
        .expect("gate");
    let answer = auth
        .continue_sign_in(&passkey.id.to_string(), Proof::passkey())
        .await
        .expect("gate");
    assert!(
        matches!(answer, SignIn::Refused(Refusal::NothingPending)),
        "{answer:?}"
    );
    assert!(!auth.has_second_factor().await.expect("info"));
    // The passkey user's password login waits in the logged-in session; a code checked
    // for the logged-in user neither completes it nor steps its own login up.
    assert!(matches!(
        auth.sign_in(passkey, Proof::password(), None)
            .await
            .expect("gate"),
        SignIn::Pending { .. }
    ));
    assert_eq!(
        auth.second_step_user().await.expect("user"),
        Some(SecondStepFor::WaitingLogin(passkey.id.to_string())),
        "the waiting login's user, not the logged-in one"
    );
    let answer = auth
        .continue_sign_in(&totp.id.to_string(), Proof::totp())
        .await
        .expect("gate");
    assert!(
        matches!(answer, SignIn::Refused(Refusal::NothingPending)),
        "{answer:?}"
    );
    assert_eq!(
        auth.auth_info()
            .await
            .expect("info")
            .map(|info| info.user_id),
        Some(totp.id.to_string()),
        "still the remembered login, not stepped up, not the waiting one"
    );
    assert!(!auth.has_second_factor().await.expect("info"));

    // A user disabled since the remembered login: the session ends, no step up.
    let auth = fresh_session(&authenticator).await;
    auth.sign_in(&accounts[0], Proof::remembered(), None)
        .await
        .expect("gate");
    users
        .set_disabled(accounts[0].id, true)
        .await
        .expect("disable");
    authenticator.forget_user(&accounts[0].id.to_string());
    // The next request over the same session.
    let auth = authenticator.session(auth.session().clone());
    let answer = auth
        .continue_sign_in(&accounts[0].id.to_string(), Proof::totp())
        .await
        .expect("gate");
    assert!(
        matches!(answer, SignIn::Refused(Refusal::NothingPending)),
        "{answer:?}"
    );
    assert_eq!(auth.current_user().await.expect("user"), None);
}
