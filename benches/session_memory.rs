//! Resident memory per idle in-memory session: fills a `MemoryStore` with 100,000
//! logged-in sessions shaped like the login server's (auth, a CSRF token, client IP and a
//! browser user agent), two per user, and prints the growth of the process's resident
//! set per session. Linux only (reads /proc/self/statm).
//!
//! `cargo bench --bench session_memory` (target: ≤ 400 bytes per session).

use latchkey::store::MemoryStore;
use latchkey::{AuthInfo, SessionRecord, SessionStore, SessionToken, Timestamp};
use serde_json::{json, Map};
use std::time::Duration;

const SESSIONS: usize = 100_000;
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1",
];

/// Resident bytes of this process.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn record(index: usize) -> SessionRecord {
    let now = Timestamp::now();
    let mut data = Map::new();
    data.insert("_csrf".into(), json!(SessionToken::generate().encode()));
    SessionRecord {
        version: 2,
        auth: Some(AuthInfo::new(
            &(index / 2).to_string(),
            now,
            1,
            latchkey::Authentication {
                methods: vec!["password".into()],
                fresh: true,
                multi_factor: false,
            },
        )),
        data,
        created_at: now,
        last_active_at: now,
        idle_expires_at: now.plus(Duration::from_secs(1800)),
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        client_ip: Some(format!("203.0.{}.{}", index % 250, index % 200)),
        user_agent: Some(USER_AGENTS[index % USER_AGENTS.len()].to_string()),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    // Ids and records are made before measuring, so only what the store keeps counts.
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|index| (SessionToken::generate().id(), record(index)))
        .collect();
    let before = resident_bytes();
    runtime.block_on(async {
        for (id, record) in &sessions {
            store.create(id, record).await.expect("create");
        }
    });
    let after = resident_bytes();
    let per_session = (after.saturating_sub(before)) as f64 / SESSIONS as f64;
    println!(
        "{SESSIONS} idle logged-in sessions in the memory store: {:.1} MiB resident, {per_session:.0} bytes per session",
        (after - before) as f64 / (1024.0 * 1024.0)
    );
    // Reading a session keeps it decoded until the store's next sweep.
    runtime.block_on(async {
        for (id, _) in &sessions {
            store.load(id).await.expect("load").expect("session");
        }
    });
    let in_use = (resident_bytes().saturating_sub(before)) as f64 / SESSIONS as f64;
    println!("after every session was read once (kept decoded until the next sweep): {in_use:.0} bytes per session");
}
