//! What a second-factor check costs: `SecondFactorStore::verify_totp` (read the sealed
//! secret, open it, compute the codes of three steps, one conditional `UPDATE` that uses
//! the step) against its parts measured in the same run: one store round trip (a user
//! read by id) and the TOTP computation alone (three steps, constant-time compare). On a
//! SQLite file, one tokio worker; medians of interleaved rounds.
//!
//! `cargo bench --bench second_factor [-- ROUNDS]` (default 2000)

use latchkey::factors::{SecondFactorStore, SecondFactors, Totp};
use latchkey::store::open_sqlite;
use latchkey::{NewUser, SqliteUserStore, Timestamp, UserStore};
use std::time::{Duration, Instant};

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<i64>().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let pool = open_sqlite(&url).await.expect("open");
        let users = SqliteUserStore::new(pool.clone());
        let user = users
            .create(NewUser::new("ada", None, "x".into()).expect("user"))
            .await
            .expect("create");
        let factors = SecondFactors::new(pool, b"a bench secret of at least thirty-two bytes");
        let setup = factors
            .begin_totp(user.id, "latchkey", "ada")
            .await
            .expect("begin")
            .expect("new");
        let app = Totp::from_base32(&setup.secret, "latchkey", "ada").expect("secret");
        let start = Timestamp::now();
        let seconds = |time: Timestamp| u64::try_from(time.as_millis() / 1000).expect("time");
        factors
            .confirm_totp(user.id, &app.code_at(seconds(start)), start)
            .await
            .expect("confirm")
            .expect("right");
        let (mut verify, mut read, mut compute) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            // Each check is one step later: a step counts once.
            let now = Timestamp(start.as_millis() + round * 30_000);
            let code = app.code_at(seconds(now));
            let began = Instant::now();
            assert!(factors
                .verify_totp(user.id, &code, now)
                .await
                .expect("verify"));
            verify.push(began.elapsed());
            let began = Instant::now();
            users
                .find_by_id(user.id)
                .await
                .expect("read")
                .expect("user");
            read.push(began.elapsed());
            let began = Instant::now();
            assert!(app.matching_step(&code, seconds(now), None).is_some());
            compute.push(began.elapsed());
        }
        let (verify, read, compute) =
            (median(&mut verify), median(&mut read), median(&mut compute));
        let micros = |time: Duration| time.as_secs_f64() * 1e6;
        println!("{rounds} rounds, medians (SQLite file, one worker)");
        println!("verify_totp                 {:>8.1} µs", micros(verify));
        println!("one store read (user by id) {:>8.1} µs", micros(read));
        println!("TOTP computation alone      {:>8.1} µs", micros(compute));
        println!(
            "verify / (read + computation): {:.2}",
            verify.as_secs_f64() / (read + compute).as_secs_f64()
        );
    });
}
