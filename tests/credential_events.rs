//! The credential table, every event × everything it may end, against real SQLite
//! stores: the caller's session, another session, a remembered device, a mailed link of
//! each purpose, a personal access token, and the credential version (a login waiting for its second factor is
//! stamped with it, so a moved version ends it). The expected rows are written out here,
//! apart from the table they check.

use latchkey::access_token::store::SqliteAccessTokens;
use latchkey::access_token::{self, NewAccessToken, TokenLifetime, TokenScopes};
use latchkey::auth::credentials::{end_for, Holders};
use latchkey::remember::{RememberRecord, RememberStore, SqliteRememberStore};
use latchkey::session::ServerSide;
use latchkey::store::conformance::{new_id, sample_record};
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::user::tokens::{EmailTokens, TokenPurpose};
use latchkey::{CredentialEvent, NewUser, SessionStore, SqliteUserStore, Timestamp, UserStore};
use std::sync::Arc;
use std::time::Duration;

use TokenPurpose::{ChangeEmail, ResetPassword, SignIn, VerifyEmail};

/// One expected row: whether the caller's session survives, which mailed purposes
/// survive, and whether the user's personal access tokens survive. Every event ends
/// every other session, every remembered device, and moves the credential version on.
fn expected(event: CredentialEvent) -> (bool, &'static [TokenPurpose], bool) {
    use CredentialEvent::*;
    match event {
        PasswordChanged => (true, &[VerifyEmail], true),
        PasswordReset | PasswordSetByAdmin | Disabled => (false, &[], false),
        EmailChanged => (true, &[], true),
        // Someone else proved the mailbox: the tokens of who held the account end.
        MailboxClaimed => (true, &[], false),
        SecondFactorAdded | SecondFactorRemoved => (true, &[VerifyEmail], true),
        ProviderConnected | ProviderDisconnected => (true, &[VerifyEmail], true),
        SecondFactorsReset => (false, &[], false),
    }
}

#[tokio::test]
async fn every_credential_event_ends_what_its_row_says() {
    for event in CredentialEvent::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("table.db").display());
        let pool = open_sqlite(&url).await.expect("open");
        let users = SqliteUserStore::new(pool.clone());
        let sessions: Arc<dyn SessionStore> = Arc::new(SqliteStore::new(pool.clone()));
        let remembered = SqliteRememberStore::new(pool.clone());
        let tokens = EmailTokens::new(pool.clone(), b"table secret");
        let user = users
            .create(
                NewUser::new("ada", Some("ada@example.com"), "$argon2id$v=19$x".into())
                    .expect("user"),
            )
            .await
            .expect("create");
        let user_id = user.id.to_string();
        let (caller, other) = (new_id(), new_id());
        for id in [&caller, &other] {
            sessions
                .create(id, &sample_record(Some(&user_id)))
                .await
                .expect("session");
        }
        let now = Timestamp::now();
        remembered
            .insert(&RememberRecord {
                series: format!("series-{}", event.as_str()),
                validator_hash: [7; 32],
                previous_hash: None,
                previous_valid_until: None,
                user_id: user_id.clone(),
                created_at: now,
                last_used_at: now,
                expires_at: now.plus(Duration::from_secs(3600)),
            })
            .await
            .expect("remember");
        let mut links = Vec::new();
        for purpose in [ResetPassword, SignIn, ChangeEmail, VerifyEmail] {
            let issued = tokens
                .issue(
                    purpose,
                    user.id,
                    "ada@example.com",
                    Duration::from_secs(600),
                    false,
                )
                .await
                .expect("issue");
            links.push((purpose, issued.token));
        }
        let access_tokens = SqliteAccessTokens::new(pool.clone());
        let (api_token, _) = access_token::issue(
            &access_tokens,
            &TokenScopes::read_write(),
            &TokenLifetime::default(),
            NewAccessToken {
                user_id: user_id.clone(),
                name: "script".into(),
                scopes: vec!["read".into()],
                lifetime: None,
            },
            now,
        )
        .await
        .expect("token");
        // What the change itself does before it calls the table.
        let changed = match event {
            CredentialEvent::PasswordChanged
            | CredentialEvent::PasswordReset
            | CredentialEvent::PasswordSetByAdmin => users
                .set_password_hash(user.id, "$argon2id$v=19$y")
                .await
                .expect("password"),
            CredentialEvent::Disabled => users.set_disabled(user.id, true).await.expect("disable"),
            _ => user.clone(),
        };

        let storage = ServerSide(sessions.clone());
        let holders = Holders {
            users: Some(&users),
            sessions: Some(&storage),
            remembered: Some(&remembered),
            mailed: Some(&tokens),
            access_tokens: Some(&access_tokens),
        };
        let ended = end_for(&holders, event, &user_id, Some(&caller))
            .await
            .expect("end");

        let (caller_survives, surviving, tokens_survive) = expected(event);
        let checked = access_token::check(&access_tokens, api_token.expose(), Timestamp::now())
            .await
            .expect("check");
        assert_eq!(
            checked.is_ok(),
            tokens_survive,
            "{event:?}: the personal access token ({checked:?})"
        );
        assert_eq!(ended.access_tokens, u64::from(!tokens_survive));
        assert_eq!(
            sessions.load(&caller).await.expect("load").is_some(),
            caller_survives,
            "{event:?}: the caller's session"
        );
        assert!(
            sessions.load(&other).await.expect("load").is_none(),
            "{event:?}: another session"
        );
        assert_eq!(
            remembered
                .find(&format!("series-{}", event.as_str()))
                .await
                .expect("find"),
            None,
            "{event:?}: the remembered device"
        );
        for (purpose, token) in &links {
            let live = tokens.peek(*purpose, token).await.expect("peek").is_some();
            assert_eq!(
                live,
                surviving.contains(purpose),
                "{event:?}: the mailed {purpose:?} link"
            );
        }
        let now_user = users
            .find_by_id(user.id)
            .await
            .expect("find")
            .expect("the user");
        assert!(
            now_user.credential_version > user.credential_version,
            "{event:?}: the credential version moved on (waiting logins end)"
        );
        assert!(now_user.credential_version >= changed.credential_version);
        assert_eq!(
            ended.sessions,
            if caller_survives { 1 } else { 2 },
            "{event:?}: sessions counted"
        );
        assert_eq!(ended.remembered_devices, 1);
        assert_eq!(ended.mailed as usize, 4 - surviving.len());
    }
}
