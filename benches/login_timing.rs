//! Does a failed login's time tell whether the account exists? Each case fails a login
//! through `PasswordBackend::authenticate` at the server's default argon2id cost, in
//! interleaved rounds; the medians are reported as ratios to an unknown name's, measured
//! in the same run. Cases: a wrong password for a user with a current hash, a disabled
//! user, and a wrong password for users whose stored hash has other parameters (every
//! legacy format latchkey imports, and argon2 with other costs). "alone" is what the
//! stored hash's own verification costs, which is all such a failure cost before the
//! backend matched it to an unknown name's (issue 15, item 7: 2.5 ms against 64 ms).
//!
//! `cargo bench --bench login_timing [-- ROUNDS]` (default 15)

use latchkey::store::open_sqlite;
use latchkey::{
    AuthBackend, HashParams, NewUser, PasswordBackend, PasswordCredentials, PasswordHasher,
    SqliteUserStore, UserStore,
};
use std::time::{Duration, Instant};

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(15);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = open_sqlite("sqlite::memory:").await.expect("open");
        let users = SqliteUserStore::new(pool);
        let hasher = PasswordHasher::new(HashParams::default()).expect("hasher");
        let backend = PasswordBackend::new(users.clone(), hasher.clone());
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/legacy_hashes.json")).expect("json");
        // (case, login, stored hash for the "alone" figure)
        let mut cases: Vec<(String, String, Option<String>)> =
            vec![("unknown name".into(), "nobody".into(), None)];
        let current = hasher.hash("the right password").await.expect("hash");
        users
            .create(NewUser::new("current", None, current).expect("user"))
            .await
            .expect("create");
        cases.push((
            "wrong password, current hash".into(),
            "current".into(),
            None,
        ));
        let disabled = hasher.hash("the right password").await.expect("hash");
        let user = users
            .create(NewUser::new("disabled", None, disabled).expect("user"))
            .await
            .expect("create");
        users.set_disabled(user.id, true).await.expect("disable");
        cases.push(("disabled user".into(), "disabled".into(), None));
        let mut seen = std::collections::HashSet::new();
        for (index, row) in data["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .enumerate()
        {
            let format = row["format"].as_str().expect("format").to_string();
            if !seen.insert(format.clone()) {
                continue;
            }
            let hash = row["hash"].as_str().expect("hash").to_string();
            let login = format!("legacy{index}");
            users
                .create(NewUser::new(&login, None, hash.clone()).expect("user"))
                .await
                .expect("create");
            cases.push((format!("wrong password, {format}"), login, Some(hash)));
        }
        let mut times = vec![Vec::new(); cases.len()];
        let mut alone = vec![Vec::new(); cases.len()];
        for round in 0..rounds {
            for offset in 0..cases.len() {
                let index = (round + offset) % cases.len();
                let (_, login, stored) = &cases[index];
                let started = Instant::now();
                let user = backend
                    .authenticate(PasswordCredentials::new(login, "not the password"))
                    .await
                    .expect("authenticate");
                times[index].push(started.elapsed());
                assert!(user.is_none());
                if let Some(stored) = stored {
                    let started = Instant::now();
                    let _ = hasher.verify("not the password", stored).await;
                    alone[index].push(started.elapsed());
                }
            }
        }
        let reference = median(&mut times[0]).as_secs_f64();
        println!(
            "{:<44} {:>10} {:>8} {:>14}",
            "case", "median", "ratio", "alone (ratio)"
        );
        for (index, (case, _, _)) in cases.iter().enumerate() {
            let time = median(&mut times[index]);
            let before = if alone[index].is_empty() {
                "-".to_string()
            } else {
                let time = median(&mut alone[index]);
                format!(
                    "{:.1} ms ({:.2})",
                    time.as_secs_f64() * 1e3,
                    time.as_secs_f64() / reference
                )
            };
            println!(
                "{case:<44} {:>7.1} ms {:>8.2} {before:>14}",
                time.as_secs_f64() * 1e3,
                time.as_secs_f64() / reference
            );
        }
    });
}
