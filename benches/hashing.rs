//! What hashing alone allows: argon2id verifications per second at the OWASP parameters
//! (m=19456 KiB, t=2, p=1) on one core, the ceiling for `POST /login` in `bench/run.sh`
//! (whose server is pinned to one core too).
//!
//! `cargo bench --bench hashing [-- SECONDS]` (default 10 s)

use latchkey::{HashParams, PasswordHasher};
use std::time::{Duration, Instant};

fn main() {
    // `cargo bench` passes `--bench` too; the first number is the duration.
    let seconds = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<u64>().ok())
        .unwrap_or(10);
    #[cfg(target_os = "linux")]
    // SAFETY: `set` is a plain bit set owned by this frame; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hasher = PasswordHasher::new(HashParams::default()).expect("hasher");
        let hash = hasher
            .hash("correct horse battery staple")
            .await
            .expect("hash");
        let started = Instant::now();
        let mut done = 0u32;
        while started.elapsed() < Duration::from_secs(seconds) {
            assert!(hasher
                .verify("correct horse battery staple", &hash)
                .await
                .expect("verify"));
            done += 1;
        }
        let per_second = f64::from(done) / started.elapsed().as_secs_f64();
        println!("argon2id m=19456 t=2 p=1 on one core: {per_second:.1} verifications/s");
    });
}
