//! Ports for the processes tests start, and waiting until such a process listens. Which
//! range serves what is the allocation on `free_address` in `common/mod.rs`; this file
//! is also part of the root package's `tests/mail_outbox.rs` and `benches/mail_outbox.rs`
//! (for `tests/common/smtp.rs`).

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The shared Redis Cluster `.ci/run` starts (`.ci/redis-cluster.sh`, its default).
pub const CI_CLUSTER_NODES: RangeInclusive<u16> = 10_000..=11_999;
/// PgBouncer (`.ci/pgbouncer.sh`): the shared one and the tests' private ones.
pub const PGBOUNCER: RangeInclusive<u16> = 12_000..=12_999;
/// The private Redis Clusters of `faults.rs` (`.ci/redis-cluster.sh --ports`).
pub const PRIVATE_CLUSTER_NODES: RangeInclusive<u16> = 13_000..=14_999;
/// A Redis Cluster node's bus port is its port plus this.
pub const CLUSTER_BUS_OFFSET: u16 = 10_000;
/// `free_address`: `latchkey serve`, chromedriver, private redis-servers.
pub const SERVERS: RangeInclusive<u16> = 25_000..=29_999;
/// SMTP sinks (`tests/common/smtp.rs`).
pub const SMTP: RangeInclusive<u16> = 30_000..=31_999;
/// OpenID providers (`tests/common/oidc.rs`).
pub const OIDC: RangeInclusive<u16> = 32_000..=32_699;

const fn bus(nodes: &RangeInclusive<u16>) -> RangeInclusive<u16> {
    (*nodes.start() + CLUSTER_BUS_OFFSET)..=(*nodes.end() + CLUSTER_BUS_OFFSET)
}

/// Every range, bus ports included, for the check below and the kernel's.
const ALL: [(&str, RangeInclusive<u16>); 9] = [
    ("CI cluster nodes", CI_CLUSTER_NODES),
    ("CI cluster buses", bus(&CI_CLUSTER_NODES)),
    ("PgBouncer", PGBOUNCER),
    ("private cluster nodes", PRIVATE_CLUSTER_NODES),
    ("private cluster buses", bus(&PRIVATE_CLUSTER_NODES)),
    ("servers", SERVERS),
    ("SMTP sinks", SMTP),
    ("OpenID providers", OIDC),
    // `.ci/run`'s schemathesis server.
    ("schemathesis", 18_080..=18_080),
];

const fn overlap(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> bool {
    *a.start() <= *b.end() && *b.start() <= *a.end()
}

// No two ranges share a port.
const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        let mut j = i + 1;
        while j < ALL.len() {
            assert!(!overlap(&ALL[i].1, &ALL[j].1), "two port ranges overlap");
            j += 1;
        }
        i += 1;
    }
};

/// Fails when the kernel hands out ports of one of the ranges to outgoing connections
/// (`net.ipv4.ip_local_port_range`): such a port can be taken between the moment a test
/// finds it free and the moment its process binds it.
fn check_ephemeral_range() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
            return;
        };
        let bounds: Vec<u16> = text
            .split_whitespace()
            .filter_map(|bound| bound.parse().ok())
            .collect();
        let [low, high] = bounds[..] else {
            panic!("unreadable ip_local_port_range: {text:?}");
        };
        for (name, range) in &ALL {
            assert!(
                !overlap(range, &(low..=high)),
                "the kernel's ephemeral ports ({low}-{high}, net.ipv4.ip_local_port_range) \
                 overlap the tests' {name} ({}-{}): move one of them (common/mod.rs)",
                range.start(),
                range.end()
            );
        }
    });
}

/// A port of `range` that nothing listens on and that this copy of the helper has not
/// handed out before. Each process starts at its own place in the range, so that test
/// processes running side by side rarely try the same ports.
pub fn free_port_in(range: &RangeInclusive<u16>, next: &AtomicU32) -> u16 {
    check_ephemeral_range();
    let first = u32::from(*range.start());
    let len = u32::from(*range.end()) - first + 1;
    let start = std::process::id().wrapping_mul(2_654_435_761) % len;
    for _ in 0..len {
        let offset = (start + next.fetch_add(1, Ordering::Relaxed)) % len;
        let port = (first + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {}-{}", range.start(), range.end());
}

/// Why a process did not come to listen.
#[derive(Debug)]
pub enum NotListening {
    /// It exited (its status).
    Died(ExitStatus),
    /// It still runs, but did not listen in time.
    TimedOut,
}

/// Waits until `child` itself listens on `port`, at most `timeout`: an error as soon as
/// it has exited. Where `/proc` tells which process holds a listening socket, a
/// listener of another process on that port does not count.
pub fn wait_until_listening(
    child: &mut Child,
    port: u16,
    timeout: Duration,
) -> Result<(), NotListening> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotListening::Died(status));
        }
        let listening = match listeners_of(child.id(), port) {
            Some(owned) => owned,
            None => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        };
        if listening {
            // It may have died right after: a listener of a dead process does not count.
            return match child.try_wait() {
                Ok(Some(status)) => Err(NotListening::Died(status)),
                _ => Ok(()),
            };
        }
        if Instant::now() >= deadline {
            return Err(NotListening::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` holds a socket listening on TCP `port`; `None` where `/proc`
/// cannot tell (not Linux).
pub fn listeners_of(pid: u32, port: u16) -> Option<bool> {
    let listening = listening_inodes(port)?;
    let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(descriptors.flatten().any(|entry| {
        std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| {
                let target = target.to_string_lossy().into_owned();
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|inode| listening.contains(&inode))
    }))
}

/// The inodes of the sockets listening on TCP `port` (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut inodes = HashSet::new();
    let mut read = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local address, remote address, state (0A: LISTEN), …, inode (10th).
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let local_port = fields[1]
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                if let Ok(inode) = fields[9].parse() {
                    inodes.insert(inode);
                }
            }
        }
    }
    read.then_some(inodes)
}

/// Whether a process's output says its port was taken.
pub fn says_port_taken(output: &str) -> bool {
    let output = output.to_ascii_lowercase();
    output.contains("address already in use")
        || output.contains("address in use")
        || output.contains("port not available")
}

/// The last `limit` bytes of `text` (a child's output for a failure message).
pub fn tail(text: &str, limit: usize) -> &str {
    let mut start = text.len().saturating_sub(limit);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
