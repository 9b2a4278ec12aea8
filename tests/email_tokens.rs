//! Mail-flow tokens in SQLite and PostgreSQL: peeking uses nothing up, redeeming works
//! once (also under 20 concurrent redemptions), a newer token of a purpose kills the
//! older one, revocation and expiry end them, ten wrong codes burn one, malformed
//! tokens are no token, and neither the raw token nor the code reaches the database.

mod common;

use latchkey::store::{open_postgres, open_sqlite};
use latchkey::user::tokens::{CodeOutcome, EmailTokens, TokenOwner, TokenPurpose};
use latchkey::{NewUser, UserStore};
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(600);
const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

/// Runs the whole suite on `tokens` for the user `user_id` whose address is `email`.
macro_rules! token_suite {
    ($tokens:expr, $user_id:expr, $email:expr) => {{
        let tokens = $tokens;
        let (user_id, email): (i64, &str) = ($user_id, $email);
        let owner = TokenOwner {
            user_id,
            email: email.to_string(),
        };
        use TokenPurpose::*;

        // Peek twice, redeem once.
        let issued = tokens
            .issue(ResetPassword, user_id, email, TTL, false)
            .await
            .expect("issue");
        assert_eq!(issued.token.len(), 43);
        assert_eq!(issued.code, None);
        for _ in 0..2 {
            assert_eq!(
                tokens
                    .peek(ResetPassword, &issued.token)
                    .await
                    .expect("peek"),
                Some(owner.clone())
            );
        }
        assert_eq!(
            tokens.peek(SignIn, &issued.token).await.expect("peek"),
            None,
            "another purpose"
        );
        assert_eq!(
            tokens
                .redeem(ResetPassword, &issued.token)
                .await
                .expect("redeem"),
            Some(owner.clone())
        );
        assert_eq!(
            tokens
                .redeem(ResetPassword, &issued.token)
                .await
                .expect("redeem"),
            None
        );
        assert_eq!(
            tokens
                .peek(ResetPassword, &issued.token)
                .await
                .expect("peek"),
            None
        );

        // 20 concurrent redemptions: one wins.
        let issued = tokens
            .issue(VerifyEmail, user_id, email, TTL, false)
            .await
            .expect("issue");
        let shared = Arc::new(tokens.clone());
        let racers = (0..20).map(|_| {
            let (tokens, token) = (shared.clone(), issued.token.clone());
            tokio::spawn(async move { tokens.redeem(VerifyEmail, &token).await })
        });
        let mut winners = 0;
        for racer in racers {
            if racer.await.expect("task").expect("redeem").is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);

        // A newer token of a purpose kills the older one, not another purpose's.
        let older = tokens
            .issue(ResetPassword, user_id, email, TTL, false)
            .await
            .expect("issue");
        let other = tokens
            .issue(VerifyEmail, user_id, email, TTL, false)
            .await
            .expect("issue");
        let newer = tokens
            .issue(ResetPassword, user_id, email, TTL, false)
            .await
            .expect("issue");
        assert_eq!(
            tokens
                .redeem(ResetPassword, &older.token)
                .await
                .expect("redeem"),
            None
        );
        assert!(tokens
            .peek(VerifyEmail, &other.token)
            .await
            .expect("peek")
            .is_some());
        // A password change revokes every reset token.
        assert_eq!(
            tokens.revoke(user_id, ResetPassword).await.expect("revoke"),
            1
        );
        assert_eq!(
            tokens
                .redeem(ResetPassword, &newer.token)
                .await
                .expect("redeem"),
            None
        );

        // Expired tokens are no tokens, and the sweep removes them.
        let expired = tokens
            .issue(ChangeEmail, user_id, email, Duration::ZERO, false)
            .await
            .expect("issue");
        assert_eq!(
            tokens
                .redeem(ChangeEmail, &expired.token)
                .await
                .expect("redeem"),
            None
        );
        assert!(
            tokens
                .delete_expired(latchkey::Timestamp::now(), 100)
                .await
                .expect("sweep")
                >= 1
        );

        // Malformed tokens are simply no token.
        for junk in [
            "",
            "short",
            &"A".repeat(43),
            &"é".repeat(43),
            &"x".repeat(10_000),
        ] {
            assert_eq!(tokens.redeem(SignIn, junk).await.expect("redeem"), None);
        }

        // Codes: wrong ones count down; the right one redeems, once.
        let issued = tokens
            .issue(SignIn, user_id, email, TTL, true)
            .await
            .expect("issue");
        let code = issued.code.clone().expect("a code");
        assert_eq!(code.len(), 6);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        assert_eq!(
            tokens
                .redeem_code(SignIn, email, wrong)
                .await
                .expect("code"),
            CodeOutcome::Wrong(9)
        );
        assert_eq!(
            tokens
                .redeem_code(SignIn, &email.to_uppercase(), &format!(" {code} "))
                .await
                .expect("code"),
            CodeOutcome::Redeemed(owner.clone()),
            "the address in any case, the code with spaces"
        );
        assert_eq!(
            tokens
                .redeem_code(SignIn, email, &code)
                .await
                .expect("code"),
            CodeOutcome::NoToken
        );
        // Ten wrong codes burn the token: the right one no longer works, nor the link.
        let issued = tokens
            .issue(SignIn, user_id, email, TTL, true)
            .await
            .expect("issue");
        let code = issued.code.clone().expect("a code");
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for left in (0..10).rev() {
            assert_eq!(
                tokens
                    .redeem_code(SignIn, email, wrong)
                    .await
                    .expect("code"),
                CodeOutcome::Wrong(left)
            );
        }
        assert_eq!(
            tokens
                .redeem_code(SignIn, email, &code)
                .await
                .expect("code"),
            CodeOutcome::NoToken
        );
        assert_eq!(
            tokens.redeem(SignIn, &issued.token).await.expect("redeem"),
            None
        );
        issued
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_email_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens.db");
    let pool = open_sqlite(&format!("sqlite://{}", file.display()))
        .await
        .expect("open");
    let users = latchkey::SqliteUserStore::new(pool.clone());
    let user = users
        .create(NewUser::new("tina", Some("tina@example.com"), "x".into()).expect("user"))
        .await
        .expect("create");
    let tokens = EmailTokens::new(pool.clone(), SECRET);
    // One more live token and its code, to look for in the files.
    let live = tokens
        .issue(TokenPurpose::SignIn, user.id, "tina@example.com", TTL, true)
        .await
        .expect("issue");
    let last = token_suite!(tokens, user.id, "tina@example.com");
    pool.close().await;
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", file.display());
        bytes.extend(std::fs::read(path).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&live.token, &last.token] {
        assert!(
            !text.contains(secret.as_str()),
            "a raw token is in the database file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_email_tokens() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    postgres_email_tokens_on(pool.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_email_tokens() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    postgres_email_tokens_on(pool).await;
}

/// The token suite on PostgreSQL through `pool`.
async fn postgres_email_tokens_on(pool: latchkey::store::PgHandle) {
    let users = latchkey::PostgresUserStore::new(pool.clone());
    let name = format!(
        "tok{}",
        &latchkey::SessionToken::generate().id().to_hex()[..12]
    );
    let email = format!("{name}@example.com");
    let user = users
        .create(NewUser::new(&name, Some(&email), "x".into()).expect("user"))
        .await
        .expect("create");
    token_suite!(EmailTokens::new(pool, SECRET), user.id, &email);
}
