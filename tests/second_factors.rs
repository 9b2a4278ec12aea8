//! The second-factor store on SQLite and PostgreSQL: TOTP enrolment is confirmed only by
//! a right code; a code counts once (never a code of a step already used, also under
//! racing requests); ±1 step of skew; recovery codes work once each (20 concurrent uses
//! of one: exactly one wins) and are replaced together; the secret is sealed (not in the
//! database, and not opened by another server key), exports as base32 and imports back.

mod common;

use latchkey::factors::{SecondFactorStore, SecondFactors, Totp, RECOVERY_CODES};
use latchkey::store::{open_postgres, open_sqlite};
use latchkey::{NewUser, Timestamp, UserStore};
use std::sync::Arc;

const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

/// `now` plus `steps` TOTP steps.
fn at(now: Timestamp, steps: i64) -> Timestamp {
    Timestamp(now.as_millis() + steps * 30_000)
}

fn seconds(time: Timestamp) -> u64 {
    u64::try_from(time.as_millis() / 1000).expect("after the epoch")
}

async fn suite(
    factors: Arc<dyn SecondFactorStore>,
    other_key: Arc<dyn SecondFactorStore>,
    user_id: i64,
) -> String {
    let now = Timestamp::now();
    assert!(!factors.status(user_id).await.expect("status").totp);
    let first = factors
        .begin_totp(user_id, "latchkey", "ada@example.com")
        .await
        .expect("begin")
        .expect("new");
    // Starting again before confirming replaces the secret.
    let setup = factors
        .begin_totp(user_id, "latchkey", "ada@example.com")
        .await
        .expect("begin")
        .expect("new");
    assert_ne!(first.secret, setup.secret);
    assert!(
        setup
            .otpauth_uri
            .starts_with("otpauth://totp/latchkey:ada%40example.com?secret="),
        "{}",
        setup.otpauth_uri
    );
    let app = Totp::from_base32(&setup.secret, "latchkey", "ada").expect("base32 imports");
    let old = Totp::from_base32(&first.secret, "latchkey", "ada").expect("base32");

    assert_eq!(
        factors
            .confirm_totp(user_id, &old.code_at(seconds(now)), now)
            .await
            .expect("confirm"),
        None,
        "the replaced secret"
    );
    assert!(
        !factors
            .verify_totp(user_id, &app.code_at(seconds(now)), now)
            .await
            .expect("verify"),
        "not on before it is confirmed"
    );
    // Confirmed with the previous step's code (skew).
    let codes = factors
        .confirm_totp(user_id, &app.code_at(seconds(at(now, -1))), now)
        .await
        .expect("confirm")
        .expect("right code");
    assert_eq!(codes.len(), RECOVERY_CODES);
    let status = factors.status(user_id).await.expect("status");
    assert!(status.totp && status.has_second_factor());
    assert_eq!(status.recovery_codes_left, 10);
    assert_eq!(
        factors
            .begin_totp(user_id, "latchkey", "ada")
            .await
            .expect("begin"),
        None,
        "already on"
    );

    // Each step counts once, and never one before the last used.
    let current = app.code_at(seconds(now));
    assert!(factors
        .verify_totp(user_id, &current, now)
        .await
        .expect("verify"));
    assert!(
        !factors
            .verify_totp(user_id, &current, now)
            .await
            .expect("verify"),
        "the same code twice"
    );
    assert!(!factors
        .verify_totp(user_id, &app.code_at(seconds(at(now, -1))), now)
        .await
        .expect("verify"));
    assert!(
        !factors
            .verify_totp(user_id, &app.code_at(seconds(at(now, 2))), now)
            .await
            .expect("verify"),
        "beyond the skew"
    );
    // Racing requests with the next step's code: one wins.
    let next = app.code_at(seconds(at(now, 1)));
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let (factors, next) = (factors.clone(), next.clone());
            tokio::spawn(async move {
                factors
                    .verify_totp(user_id, &next, now)
                    .await
                    .expect("verify")
            })
        })
        .collect();
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.expect("racer"));
    }
    assert_eq!(wins, 1);
    assert!(
        !other_key
            .verify_totp(user_id, &app.code_at(seconds(at(now, 1))), at(now, 2))
            .await
            .is_ok_and(|ok| ok),
        "another server key opens nothing"
    );

    // Recovery codes: once each, in any case and spacing; twenty racing uses, one wins.
    let typed = codes[0].to_uppercase().replace('-', " ");
    assert!(factors
        .use_recovery_code(user_id, &typed)
        .await
        .expect("use"));
    assert!(
        !factors
            .use_recovery_code(user_id, &codes[0])
            .await
            .expect("use"),
        "used"
    );
    assert!(
        !factors
            .use_recovery_code(user_id + 1, &codes[1])
            .await
            .expect("use"),
        "another user's"
    );
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let (factors, code) = (factors.clone(), codes[1].clone());
            tokio::spawn(async move {
                factors
                    .use_recovery_code(user_id, &code)
                    .await
                    .expect("use")
            })
        })
        .collect();
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.expect("racer"));
    }
    assert_eq!(wins, 1);
    assert_eq!(
        factors
            .status(user_id)
            .await
            .expect("status")
            .recovery_codes_left,
        8
    );
    let fresh = factors
        .regenerate_recovery_codes(user_id)
        .await
        .expect("regenerate");
    assert!(
        !factors
            .use_recovery_code(user_id, &codes[2])
            .await
            .expect("use"),
        "old codes die"
    );
    assert!(factors
        .use_recovery_code(user_id, &fresh[0])
        .await
        .expect("use"));

    assert!(factors.remove_all(user_id).await.expect("remove"));
    assert_eq!(
        factors.status(user_id).await.expect("status"),
        Default::default()
    );
    assert!(!factors
        .use_recovery_code(user_id, &fresh[1])
        .await
        .expect("use"));
    assert!(!factors.remove_all(user_id).await.expect("remove"));
    setup.secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_second_factors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("factors.db");
    let pool = open_sqlite(&format!("sqlite://{}", file.display()))
        .await
        .expect("open");
    let users = latchkey::SqliteUserStore::new(pool.clone());
    let user = users
        .create(NewUser::new("ada", None, "x".into()).expect("user"))
        .await
        .expect("create");
    let factors = Arc::new(SecondFactors::new(pool.clone(), SECRET));
    // A secret left enabled, to look for in the files.
    let other = users
        .create(NewUser::new("bea", None, "x".into()).expect("user"))
        .await
        .expect("create");
    let kept = factors
        .begin_totp(other.id, "latchkey", "bea")
        .await
        .expect("begin")
        .expect("new");
    let other_key = Arc::new(SecondFactors::new(
        pool.clone(),
        b"another secret of thirty-two bytes!!",
    ));
    let removed = suite(factors, other_key, user.id).await;
    pool.close().await;
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        bytes.extend(std::fs::read(format!("{}{suffix}", file.display())).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&kept.secret, &removed] {
        assert!(
            !text.contains(secret.as_str()),
            "a TOTP secret in the clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_second_factors() {
    let Some(url) = common::service_url("LATCHKEY_TEST_POSTGRES") else {
        return;
    };
    let pool = open_postgres(&url).await.expect("PostgreSQL reachable");
    postgres_second_factors_on(pool.into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbouncer_second_factors() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    postgres_second_factors_on(pool).await;
}

/// The second-factor suite on PostgreSQL through `pool`.
async fn postgres_second_factors_on(pool: latchkey::store::PgHandle) {
    let users = latchkey::PostgresUserStore::new(pool.clone());
    let name = format!(
        "mfa{}",
        &latchkey::SessionToken::generate().id().to_hex()[..12]
    );
    let user = users
        .create(NewUser::new(&name, None, "x".into()).expect("user"))
        .await
        .expect("create");
    let factors = Arc::new(SecondFactors::new(pool.clone(), SECRET));
    let other_key = Arc::new(SecondFactors::new(
        pool,
        b"another secret of thirty-two bytes!!",
    ));
    suite(factors, other_key, user.id).await;
}
