//! PostgreSQL through a transaction-pooling PgBouncer (`.ci/pgbouncer.sh`, whose server
//! pool is 4 connections): a burst of 200 concurrent mixed operations from a client pool
//! of 16 shares those 4 server connections, so a statement whose Parse and Bind reached
//! different server connections, or a named prepared statement left behind on one, would
//! fail here ("prepared statement … does not exist" / "already exists").

mod common;

use latchkey::remember::{PostgresRememberStore, RememberRecord, RememberStore};
use latchkey::store::conformance::{new_id, sample_record};
use latchkey::store::PostgresStore;
use latchkey::throttle::{PostgresThrottleStore, ThrottleStore};
use latchkey::{NewUser, PostgresUserStore, SessionStore, Timestamp, UserStore};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_mixed_operations_through_pgbouncer() {
    let Some(pool) = common::pgbouncer().await else {
        return;
    };
    let sessions = PostgresStore::new(pool.clone());
    let users = PostgresUserStore::new(pool.clone());
    let throttle = PostgresThrottleStore::new(pool.clone());
    let remember = PostgresRememberStore::new(pool);
    let run = &new_id().to_hex()[..10];
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..200 {
        let (sessions, users, throttle, remember) = (
            sessions.clone(),
            users.clone(),
            throttle.clone(),
            remember.clone(),
        );
        let name = format!("burst{run}x{index}");
        tasks.spawn(async move {
            match index % 4 {
                // A session's life: each step reads what the one before wrote.
                0 => {
                    let id = new_id();
                    let mut record = sample_record(Some(&name));
                    sessions.create(&id, &record).await.expect("create");
                    let loaded = sessions.load(&id).await.expect("load").expect("found");
                    assert_eq!(loaded.version, record.version);
                    record.version += 1;
                    sessions
                        .save(&id, &record, record.version - 1)
                        .await
                        .expect("save");
                    assert!(sessions.delete(&id).await.expect("delete"));
                    assert!(sessions.load(&id).await.expect("load").is_none());
                }
                // A sign-up, then a login finds the user; the name is then taken.
                1 => {
                    let user = users
                        .create(NewUser::new(&name, None, "x".into()).expect("user"))
                        .await
                        .expect("create user");
                    let found = users.find_by_login(&name).await.expect("find");
                    assert_eq!(found.map(|found| found.id), Some(user.id));
                    let again = users
                        .create(NewUser::new(&name, None, "x".into()).expect("user"))
                        .await;
                    assert!(again.is_err(), "a taken name was accepted");
                }
                // Throttle counting.
                2 => {
                    let window = Duration::from_secs(60);
                    let now = Timestamp::now();
                    for expected in 1..=3 {
                        let counter = throttle.record(&name, window, now).await.expect("record");
                        assert_eq!(counter.count, expected);
                    }
                    throttle.clear(&name).await.expect("clear");
                }
                // A remember-me token, found and rotated.
                _ => {
                    let now = Timestamp::now();
                    let record = RememberRecord {
                        series: name.clone(),
                        validator_hash: [1; 32],
                        previous_hash: None,
                        previous_valid_until: None,
                        user_id: name.clone(),
                        created_at: now,
                        last_used_at: now,
                        expires_at: now.plus(Duration::from_secs(3600)),
                    };
                    remember.insert(&record).await.expect("insert");
                    assert!(remember.find(&name).await.expect("find").is_some());
                    let rotated = remember
                        .rotate(&name, &[1; 32], &[2; 32], now, now)
                        .await
                        .expect("rotate");
                    assert!(rotated);
                    assert!(remember.delete(&name).await.expect("delete"));
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("an operation failed");
    }
}
