//! Personal access tokens through the public API: the store behaves the same on SQLite
//! and PostgreSQL (only the hash is kept, a use is written at most once a minute,
//! revocation is per owner), and an axum app with the layers takes
//! `Authorization: Bearer lk_…` through the gate for what the token's scopes allow.

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use latchkey::access_token::store::{PostgresAccessTokens, SqliteAccessTokens};
use latchkey::access_token::{
    self, AccessTokenStore, IssueError, NewAccessToken, TokenLifetime, TokenRefusal, TokenScopes,
};
use latchkey::auth::RefusedBearer;
use latchkey::axum::RequireLogin;
use latchkey::store::{open_postgres, open_sqlite, MemoryStore};
use latchkey::{
    AuthLayer, Authenticator, HashParams, NewUser, PasswordBackend, PasswordHasher,
    PostgresUserStore, SessionConfig, SessionLayer, SqliteUserStore, Timestamp, User, UserStore,
};
use std::time::Duration;
use tower::ServiceExt;

/// A name no other run of this test used (PostgreSQL's tables are shared).
fn unique(stem: &str) -> String {
    let mut bytes = [0u8; 6];
    latchkey::bytes::random_bytes(&mut bytes);
    format!("{stem}{}", latchkey::bytes::lower_hex(&bytes))
}

fn new_token(user_id: &str, scopes: &[&str], lifetime: Option<Option<Duration>>) -> NewAccessToken {
    NewAccessToken {
        user_id: user_id.to_string(),
        name: "ci".into(),
        scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
        lifetime,
    }
}

async fn tokens_behave(users: &dyn UserStore, tokens: &dyn AccessTokenStore) {
    let ada = users
        .create(NewUser::new(&unique("ada"), None, "$argon2id$v=19$x".into()).expect("user"))
        .await
        .expect("create");
    let bob = users
        .create(NewUser::new(&unique("bob"), None, "$argon2id$v=19$x".into()).expect("user"))
        .await
        .expect("create");
    let (ada_id, bob_id) = (ada.id.to_string(), bob.id.to_string());
    let scopes = TokenScopes::read_write();
    let lifetime = TokenLifetime::default();
    let now = Timestamp::now();

    let (token, record) = access_token::issue(
        tokens,
        &scopes,
        &lifetime,
        new_token(&ada_id, &["read"], None),
        now,
    )
    .await
    .expect("issue");
    assert_eq!(record.prefix, token.expose()[..11]);
    assert_eq!(
        record.expires_at,
        Some(now.plus(Duration::from_secs(90 * 86_400))),
        "90 days by default"
    );
    // Only the hash is stored: the token's text is found by it, and nowhere else.
    let found = tokens
        .find(&token.hash())
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(found.id, record.id);
    assert_eq!(found.last_used_at, None);

    // A use is recorded once; another within the minute writes nothing.
    let checked = access_token::check(tokens, token.expose(), now)
        .await
        .expect("check");
    assert_eq!(checked.map(|record| record.id), Ok(record.id.clone()));
    let used = tokens
        .find(&token.hash())
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(used.last_used_at, Some(now));
    let soon = now.plus(Duration::from_secs(30));
    access_token::check(tokens, token.expose(), soon)
        .await
        .expect("check")
        .expect("live");
    let still = tokens
        .find(&token.hash())
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(still.last_used_at, Some(now), "no write within the minute");
    let later = now.plus(Duration::from_secs(61));
    access_token::check(tokens, token.expose(), later)
        .await
        .expect("check")
        .expect("live");
    let moved = tokens
        .find(&token.hash())
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(moved.last_used_at, Some(later));

    // Expiry, and bad requests that store nothing.
    let past_expiry = now.plus(Duration::from_secs(91 * 86_400));
    assert_eq!(
        access_token::check(tokens, token.expose(), past_expiry)
            .await
            .expect("check"),
        Err(TokenRefusal::Expired)
    );
    for (bad, field) in [
        (new_token(&ada_id, &[], None), "scopes"),
        (new_token(&ada_id, &["admin"], None), "scopes"),
        (new_token(&ada_id, &["read"], Some(None)), "expires_in_days"),
        (
            new_token(
                &ada_id,
                &["read"],
                Some(Some(Duration::from_secs(400 * 86_400))),
            ),
            "expires_in_days",
        ),
        (
            NewAccessToken {
                name: " ".into(),
                ..new_token(&ada_id, &["read"], None)
            },
            "name",
        ),
    ] {
        match access_token::issue(tokens, &scopes, &lifetime, bad, now).await {
            Err(IssueError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected a refusal of {field}, got {other:?}"),
        }
    }
    assert_eq!(
        tokens.list(Some(&ada_id), now).await.expect("list").len(),
        1
    );

    // Revocation is per owner: bob cannot revoke ada's token; ada can, once.
    assert!(!access_token::revoke(tokens, &record.id, Some(&bob_id))
        .await
        .expect("revoke"));
    assert!(access_token::revoke(tokens, &record.id, Some(&ada_id))
        .await
        .expect("revoke"));
    assert!(!access_token::revoke(tokens, &record.id, Some(&ada_id))
        .await
        .expect("again"));
    assert_eq!(
        access_token::check(tokens, token.expose(), now)
            .await
            .expect("check"),
        Err(TokenRefusal::Revoked)
    );
    assert!(tokens
        .list(Some(&ada_id), now)
        .await
        .expect("list")
        .is_empty());

    // Every token of a user at once (what the credential table calls).
    for _ in 0..2 {
        access_token::issue(
            tokens,
            &scopes,
            &lifetime,
            new_token(&bob_id, &["write"], None),
            now,
        )
        .await
        .expect("issue");
    }
    assert_eq!(
        tokens.revoke_for_user(&bob_id, now).await.expect("revoke"),
        2
    );
    assert!(tokens
        .list(Some(&bob_id), now)
        .await
        .expect("list")
        .is_empty());
    let unknown = latchkey::access_token::AccessToken::generate();
    assert_eq!(
        access_token::check(tokens, unknown.expose(), now)
            .await
            .expect("check"),
        Err(TokenRefusal::Unknown)
    );
}

#[tokio::test]
async fn sqlite_access_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let pool = open_sqlite(&url).await.expect("open");
    tokens_behave(
        &SqliteUserStore::new(pool.clone()),
        &SqliteAccessTokens::new(pool),
    )
    .await;
}

#[tokio::test]
async fn postgres_access_tokens() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    tokens_behave(
        &PostgresUserStore::new(pool.clone()),
        &PostgresAccessTokens::new(pool),
    )
    .await;
}

#[tokio::test]
async fn an_app_with_the_layers_takes_bearer_tokens_for_what_their_scopes_allow() {
    let pool = open_sqlite("sqlite::memory:").await.expect("open");
    let users = SqliteUserStore::new(pool.clone());
    let ada = users
        .create(NewUser::new("ada", None, "$argon2id$v=19$x".into()).expect("user"))
        .await
        .expect("create");
    let tokens = SqliteAccessTokens::new(pool.clone());
    let scopes = TokenScopes::read_write();
    let lifetime = TokenLifetime::default();
    let owner = ada.id.to_string();
    let (read, _) = access_token::issue(
        &tokens,
        &scopes,
        &lifetime,
        new_token(&owner, &["read"], None),
        Timestamp::now(),
    )
    .await
    .expect("issue");
    let (write, _) = access_token::issue(
        &tokens,
        &scopes,
        &lifetime,
        new_token(&owner, &["write"], None),
        Timestamp::now(),
    )
    .await
    .expect("issue");
    let authenticator = Authenticator::new(PasswordBackend::new(
        users,
        PasswordHasher::new(HashParams::insecure_fast()).expect("hasher"),
    ))
    .with_access_tokens(tokens.clone(), TokenScopes::read_write());
    let app = Router::new()
        .route(
            "/home",
            get(|RequireLogin(user): RequireLogin<User>| async move { user.username })
                .post(|RequireLogin(user): RequireLogin<User>| async move { user.username }),
        )
        .layer(AuthLayer::new(authenticator))
        .layer(SessionLayer::new(
            MemoryStore::new(),
            SessionConfig::insecure_for_local_development().with_bearer_tokens(true),
        ));
    let call = |method: &str, bearer: &str| {
        let request = Request::builder()
            .method(method)
            .uri("/home")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request)
    };
    let answer = call("GET", read.expose()).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.headers().get("set-cookie").is_none());
    assert_eq!(
        call("POST", write.expose()).await.expect("answer").status(),
        StatusCode::OK
    );
    // A read token may not POST: 403, and the refusal is on the answer for a throttle.
    let refused = call("POST", read.expose()).await.expect("answer");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.extensions().get::<RefusedBearer>(),
        Some(&RefusedBearer(TokenRefusal::Scope))
    );
    // A guess: 401, never a redirect to a login page, and marked as refused.
    let guess = latchkey::access_token::AccessToken::generate();
    let unknown = call("GET", guess.expose()).await.expect("answer");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.extensions().get::<RefusedBearer>(),
        Some(&RefusedBearer(TokenRefusal::Unknown))
    );
    // A cookie with a bearer token: 400 before anything is looked up.
    let both = Request::builder()
        .uri("/home")
        .header("cookie", "id=whatever")
        .header("authorization", format!("Bearer {}", read.expose()))
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.clone().oneshot(both).await.expect("answer").status(),
        StatusCode::BAD_REQUEST
    );
}
