//! Throttling of failed logins and of sign-ups, with counters in a shared store so that
//! every server process counts the same attempts.
//!
//! * **Per account** (the login name as typed, lower-cased and hashed, so an unknown
//!   name is counted exactly like a known one): the first [`ThrottlePolicy::free_failures`]
//!   failures cost nothing; after that each failure locks the account for twice as long
//!   as the one before (1 s, 2 s, 4 s … up to [`ThrottlePolicy::max_lockout`]). With the
//!   defaults at most 5 + 10 + 3 = 18 failures fit in an hour (ASVS 2.2.1 allows 100).
//!   A success clears the account's counter.
//! * **Per client IP**: a burst limit (failures per minute) and an hourly cap, so one
//!   address cannot spray passwords over many accounts.
//! * **Sign-ups per IP**: an hourly cap.
//!
//! A throttled request is refused *before* the password is checked, so a correct
//! password during a lockout is refused too, and answered with how long to wait.

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use memory::MemoryThrottleStore;
#[cfg(feature = "redis")]
pub use redis::RedisThrottleStore;
#[cfg(feature = "postgres")]
pub use sql::PostgresThrottleStore;
#[cfg(feature = "sqlite")]
pub use sql::SqliteThrottleStore;

use crate::session::StoreError;
use crate::time::Timestamp;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Attempts counted under one key within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Attempts since the window started.
    pub count: u32,
    /// When the window started (the first attempt counted).
    pub first_at: Timestamp,
    /// The latest attempt.
    pub last_at: Timestamp,
}

/// Where throttle counters live. Every operation is atomic, so processes sharing the
/// store count together.
#[async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// Counts one attempt under `key` at `now`: a window older than `window` starts
    /// over at 1. Returns the counter after the attempt.
    async fn record(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Counter, StoreError>;
    /// The counter under `key`, unless absent or its window is over.
    async fn get(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<Counter>, StoreError>;
    /// Forgets the counter under `key`.
    async fn clear(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes up to `limit` counters whose last attempt is before `before`.
    async fn delete_stale(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
}

/// The limits. The defaults follow the OWASP cheat sheets and ASVS 2.2.1.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failed logins per account before the lockouts start.
    pub free_failures: u32,
    /// The longest lockout after one failure.
    pub max_lockout: Duration,
    /// How long an account's failures are remembered.
    pub account_window: Duration,
    /// Failed logins from one IP per minute.
    pub ip_burst: u32,
    /// Failed logins from one IP per hour.
    pub ip_hourly: u32,
    /// Sign-up attempts from one IP per hour.
    pub signups_hourly: u32,
    /// New stored sessions (logins, flash messages of visitors without one) from one IP
    /// per hour.
    pub new_sessions_hourly: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures: 5,
            max_lockout: Duration::from_secs(15 * 60),
            account_window: HOUR,
            ip_burst: 30,
            ip_hourly: 300,
            signups_hourly: 20,
            new_sessions_hourly: 1000,
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse; the client may try again after this long (`Retry-After`).
    Wait(Duration),
}

/// Applies a [`ThrottlePolicy`] over a [`ThrottleStore`].
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn ThrottleStore>,
    policy: Arc<ThrottlePolicy>,
}

impl Throttle {
    /// Throttling with `policy`, counting in `store`.
    pub fn new(store: Arc<dyn ThrottleStore>, policy: ThrottlePolicy) -> Self {
        Throttle {
            store,
            policy: Arc::new(policy),
        }
    }

    /// The store (for the background sweep of stale counters).
    pub fn store(&self) -> &Arc<dyn ThrottleStore> {
        &self.store
    }

    /// May a login as `login` from `ip` be checked now?
    pub async fn check_login(
        &self,
        login: &str,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, StoreError> {
        let now = Timestamp::now();
        let policy = &self.policy;
        let mut wait = Duration::ZERO;
        if let Some(counter) = self
            .store
            .get(&account_key(login), policy.account_window, now)
            .await?
        {
            if let Some(lockout) = self.lockout(counter.count) {
                wait = wait.max(counter.last_at.plus(lockout).since(now));
            }
        }
        if let Some(ip) = ip {
            for (key, window, limit) in self.ip_limits(ip) {
                if let Some(counter) = self.store.get(&key, window, now).await? {
                    if counter.count >= limit {
                        wait = wait.max(counter.first_at.plus(window).since(now));
                    }
                }
            }
        }
        Ok(verdict(wait))
    }

    /// Counts a failed login as `login` from `ip`.
    pub async fn login_failed(&self, login: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.store
            .record(&account_key(login), self.policy.account_window, now)
            .await?;
        if let Some(ip) = ip {
            for (key, window, _) in self.ip_limits(ip) {
                self.store.record(&key, window, now).await?;
            }
        }
        Ok(())
    }

    /// Clears the account's failures after a successful login.
    pub async fn login_succeeded(&self, login: &str) -> Result<(), StoreError> {
        self.store.clear(&account_key(login)).await
    }

    /// Counts a sign-up attempt from `ip`; refuses it past the hourly cap.
    pub async fn sign_up(&self, ip: Option<IpAddr>) -> Result<Verdict, StoreError> {
        self.hourly_per_ip("s", ip, self.policy.signups_hourly)
            .await
    }

    /// Counts a new stored session for `ip`; refuses it past the hourly cap.
    pub async fn new_session(&self, ip: Option<IpAddr>) -> Result<Verdict, StoreError> {
        self.hourly_per_ip("n", ip, self.policy.new_sessions_hourly)
            .await
    }

    /// Counts one attempt of the kind `prefix` from `ip` (none without an address) and
    /// refuses it once more than `limit` came within the hour.
    async fn hourly_per_ip(
        &self,
        prefix: &str,
        ip: Option<IpAddr>,
        limit: u32,
    ) -> Result<Verdict, StoreError> {
        let Some(ip) = ip else {
            return Ok(Verdict::Allow);
        };
        let now = Timestamp::now();
        let key = format!("{prefix}:{}", ip_text(ip));
        let counter = self.store.record(&key, HOUR, now).await?;
        Ok(if counter.count > limit {
            verdict(counter.first_at.plus(HOUR).since(now))
        } else {
            Verdict::Allow
        })
    }

    /// The lockout after `failures` failures, if any.
    fn lockout(&self, failures: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(self.policy.free_failures)?;
        if beyond == 0 {
            return None;
        }
        let doubling = 1u64.checked_shl(beyond - 1).unwrap_or(u64::MAX);
        Some(Duration::from_secs(doubling).min(self.policy.max_lockout))
    }

    fn ip_limits(&self, ip: IpAddr) -> [(String, Duration, u32); 2] {
        let ip = ip_text(ip);
        [
            (format!("b:{ip}"), MINUTE, self.policy.ip_burst),
            (format!("h:{ip}"), HOUR, self.policy.ip_hourly),
        ]
    }
}

fn verdict(wait: Duration) -> Verdict {
    if wait.is_zero() {
        Verdict::Allow
    } else {
        // Whole seconds, rounded up, as Retry-After counts.
        Verdict::Wait(Duration::from_secs(wait.as_millis().div_ceil(1000) as u64))
    }
}

/// An account's counter key: a hash of the login as the user store compares it, so any
/// string an attacker sends takes the same fixed room, known account or not.
fn account_key(login: &str) -> String {
    format!("a:{}", login_digest_hex(login, 16))
}

/// A short, stable tag of a login name as typed (the first bytes of the same digest the
/// counters use), for logs that must not hold the name itself: people type their
/// password into it by mistake.
pub fn account_tag(login: &str) -> String {
    login_digest_hex(login, 6)
}

/// The first `bytes` of SHA-256 of the login key, in hex.
fn login_digest_hex(login: &str, bytes: usize) -> String {
    let digest = Sha256::digest(crate::user::login_key(login).as_bytes());
    crate::session::lower_hex(&digest[..bytes.min(32)])
}

/// An IP as counted: IPv6 addresses by their /64, which one client usually holds whole.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(
            Arc::new(MemoryThrottleStore::new()),
            ThrottlePolicy::default(),
        )
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let throttle = throttle();
        let lockouts: Vec<Option<u64>> = (4..=17)
            .map(|failures| throttle.lockout(failures).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            lockouts,
            [
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(64),
                Some(128),
                Some(256),
                Some(512),
                Some(900),
                Some(900)
            ]
            .to_vec()
        );
        assert_eq!(throttle.lockout(u32::MAX), Some(Duration::from_secs(900)));
    }

    #[test]
    fn at_most_eighteen_failures_fit_in_an_hour() {
        // Fail as fast as the lockouts allow, for an hour.
        let throttle = throttle();
        let (mut failures, mut clock) = (0u32, Duration::ZERO);
        while clock < HOUR {
            failures += 1;
            clock += throttle
                .lockout(failures)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1));
        }
        assert!(failures <= 18, "{failures} failures in an hour");
    }

    #[test]
    fn unknown_and_known_names_share_the_key_space() {
        assert_eq!(account_key("Alice "), account_key("alice"));
        assert_ne!(account_key("alice"), account_key("bob"));
        assert_eq!(
            account_key(&"x".repeat(100_000)).len(),
            account_key("a").len()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(ip_text(a), ip_text(b));
        let mapped: IpAddr = "::ffff:192.0.2.1"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(ip_text(mapped), "192.0.2.1");
    }
}
