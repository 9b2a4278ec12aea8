//! What PgBouncer's transaction pooling mode costs: a session save (one `UPDATE`) and a
//! user look-up (one `SELECT`), one at a time (latency) and from 16 tasks at once
//! (throughput), on a direct pool (named, cached statements: one round trip each), on
//! a pool in transaction-pooler mode straight to PostgreSQL (`BEGIN`, Parse, Bind,
//! `COMMIT`: four round trips, the protocol's cost alone) and on one through the
//! PgBouncer at `LATCHKEY_TEST_PGBOUNCER` (the pooler's hop too). PostgreSQL at
//! `LATCHKEY_TEST_POSTGRES`.
//!
//! `cargo bench --bench postgres_pooler [-- N]` (default 2000 operations per figure)

use latchkey::store::conformance::{new_id, sample_record};
use latchkey::store::{migrate_postgres, PgHandle, PgPooling, PostgresStore};
use latchkey::{NewUser, PostgresUserStore, SessionStore, UserStore};
use std::sync::Arc;
use std::time::Instant;

/// Operations per task when 16 run at once.
const TASKS: usize = 16;

fn main() {
    let count = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(2000);
    let Ok(direct) = std::env::var("LATCHKEY_TEST_POSTGRES") else {
        println!("LATCHKEY_TEST_POSTGRES is not set: nothing to measure");
        return;
    };
    let bouncer = std::env::var("LATCHKEY_TEST_PGBOUNCER").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        migrate_postgres(&direct).await.expect("migrate");
        let mut setups = vec![
            ("direct", direct.clone(), PgPooling::Direct),
            (
                "pooler mode, straight to PostgreSQL",
                direct.clone(),
                PgPooling::Transaction,
            ),
        ];
        if let Some(bouncer) = bouncer {
            setups.push(("pooler mode through PgBouncer", bouncer, PgPooling::Transaction));
        }
        println!("{count} operations per figure; µs per operation one at a time, operations/s from {TASKS} tasks");
        for (name, url, pooling) in setups {
            let handle = PgHandle::connect(&url, pooling).await.expect("connect");
            measure(name, handle, count).await;
        }
    });
}

async fn measure(name: &str, handle: PgHandle, count: usize) {
    let sessions = Arc::new(PostgresStore::new(handle.clone()));
    let users = Arc::new(PostgresUserStore::new(handle));
    let user = users
        .create(
            NewUser::new(
                &format!("bench{}", &new_id().to_hex()[..12]),
                None,
                "x".into(),
            )
            .expect("user"),
        )
        .await
        .expect("create user");
    let id = new_id();
    let mut record = sample_record(Some("bench"));
    sessions.create(&id, &record).await.expect("create");
    // Warm-up (statement caches, pool connections).
    for _ in 0..100 {
        users.find_by_id(user.id).await.expect("find");
    }

    let started = Instant::now();
    for _ in 0..count {
        record.version += 1;
        sessions
            .save(&id, &record, record.version - 1)
            .await
            .expect("save");
    }
    let save_us = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    let started = Instant::now();
    for _ in 0..count {
        users.find_by_id(user.id).await.expect("find");
    }
    let find_us = started.elapsed().as_secs_f64() * 1e6 / count as f64;

    // Throughput: 16 tasks, each saving its own session and looking the user up.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (sessions, users) = (sessions.clone(), users.clone());
        tasks.spawn(async move {
            let id = new_id();
            let mut record = sample_record(Some("bench"));
            sessions.create(&id, &record).await.expect("create");
            for _ in 0..count / TASKS {
                record.version += 1;
                sessions
                    .save(&id, &record, record.version - 1)
                    .await
                    .expect("save");
                users.find_by_id(user.id).await.expect("find");
            }
            sessions.delete(&id).await.expect("delete");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let per_second = (count / TASKS * TASKS * 2) as f64 / started.elapsed().as_secs_f64();
    sessions.delete(&id).await.expect("delete");
    println!(
        "{name:>36}: save {save_us:7.1} µs, find user {find_us:7.1} µs; \
         concurrent {per_second:8.0} operations/s"
    );
}
