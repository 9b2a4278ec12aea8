//! Throttling of failed logins and of sign-ups, with counters in a shared store so that
//! every server process counts the same attempts.
//!
//! * **Per account** (a known user by id, whichever of their names was typed; an unknown
//!   name as typed, lower-cased and hashed, in the same fixed room): the first [`ThrottlePolicy::free_failures`]
//!   failures cost nothing; after that each failure locks the account for twice as long
//!   as the one before (1 s, 2 s, 4 s … up to [`ThrottlePolicy::max_lockout`]). With the
//!   defaults at most 5 + 10 + 3 = 18 failures fit in an hour (ASVS 2.2.1 allows 100).
//!   A success clears the account's counter.
//! * **Per client IP**: a burst limit (failures per minute) and an hourly cap, so one
//!   address cannot spray passwords over many accounts.
//! * **Sign-ups per IP**: an hourly cap.
//!
//! A throttled request is refused *before* the password is checked, so a correct
//! password during a lockout is refused too, and answered with how long to wait. An
//! account admits only as many checks at a time as it has failures left before a
//! lockout ([`Throttle::reserve`]); the others wait for a slot. So a burst of wrong
//! passwords sent at once gets exactly the allowance checked, not one check per request
//! that read the counters before any failure was recorded, and right passwords sent at
//! once are served, not refused: only failures earn a refusal. A count the store
//! refused to take back (a full disk, a Redis refusing writes) is no attempt either: the
//! process remembers it as stranded until its window ends ([`Stranded`]).

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

use crate::time::Timestamp;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

crate::store_error::store_error!(
    /// Why a throttle store failed.
    ThrottleStoreError,
    "throttle store"
);

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
    ) -> Result<Counter, ThrottleStoreError> {
        self.record_if(key, window, now, u32::MAX)
            .await?
            .ok_or_else(|| ThrottleStoreError::Corrupt("throttle counter beyond u32::MAX".into()))
    }
    /// Counts one attempt under `key` at `now` (a window older than `window` starts over
    /// at 1), but only if the counter holds at most `seen` attempts (an absent counter or one whose
    /// window is over holds 0): a compare-and-count, so of attempts racing on what they
    /// all read, one gets in. The counter after the attempt, or `None` when it had moved.
    async fn record_if(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
        seen: u32,
    ) -> Result<Option<Counter>, ThrottleStoreError>;
    /// Takes back one attempt counted under `key` in the window that started at
    /// `first_at` (never below zero): a reservation that was refused, or did not end in
    /// a failure. Nothing when the counter has started over since: a take-back belongs
    /// to the window its attempt was counted in.
    async fn release(&self, key: &str, first_at: Timestamp) -> Result<(), ThrottleStoreError>;
    /// The counter under `key`, unless absent or its window is over.
    async fn get(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<Counter>, ThrottleStoreError>;
    /// Forgets the counter under `key`.
    async fn clear(&self, key: &str) -> Result<(), ThrottleStoreError>;
    /// Deletes up to `limit` counters whose last attempt is before `before`.
    async fn delete_stale(&self, before: Timestamp, limit: u32) -> Result<u64, ThrottleStoreError>;
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
    /// Mails asked for (reset links, sign-in codes, verification resends) per address
    /// per hour.
    pub mails_per_address_hourly: u32,
    /// Mails asked for from one IP per hour.
    pub mails_per_ip_hourly: u32,
    /// Mailed codes typed per address per hour (ten wrong ones also burn the token).
    pub codes_per_address_hourly: u32,
    /// Mailed codes typed from one IP per hour.
    pub codes_per_ip_hourly: u32,
    /// Refused bearer tokens (unknown, malformed, expired, revoked) from one IP per
    /// hour; past it every bearer request from there waits.
    pub refused_tokens_hourly: u32,
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
            mails_per_address_hourly: 5,
            mails_per_ip_hourly: 30,
            codes_per_address_hourly: 20,
            codes_per_ip_hourly: 60,
            refused_tokens_hourly: 50,
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
    /// The counts this process took in advance that the store refused to take back, by
    /// key: no attempts, though the store holds them.
    stranded: Arc<Mutex<HashMap<String, Stranded>>>,
}

impl Throttle {
    /// Throttling with `policy`, counting in `store`.
    pub fn new(store: Arc<dyn ThrottleStore>, policy: ThrottlePolicy) -> Self {
        Throttle {
            store,
            policy: Arc::new(policy),
            stranded: Arc::default(),
        }
    }

    /// The store (for the background sweep of stale counters).
    pub fn store(&self) -> &Arc<dyn ThrottleStore> {
        &self.store
    }

    /// Reserves a password check for `account` from `ip`, before the password is
    /// verified. The addresses' counters count the attempt at once. The account admits
    /// at most as many checks at a time as failures it has left before a lockout (the
    /// free failures less those made, at least one): an attempt beyond that waits for a
    /// check in flight to end (at most [`SLOT_WAIT`]), then looks again. So of a burst
    /// of wrong passwords sent at once exactly the allowance is checked and the rest
    /// refused by the lockout those failures start, while right passwords sent at once
    /// are all served, a few at a time. Settle what comes back with
    /// [`Throttle::failed`], [`Throttle::succeeded`] or [`Throttle::abandon`].
    pub async fn reserve(
        &self,
        account: Account<'_>,
        ip: Option<IpAddr>,
    ) -> Result<Admission, ThrottleStoreError> {
        let account = account.key();
        let mut ip_counts = Vec::new();
        let admitted = self.admit(&account, ip, &mut ip_counts).await;
        // Whatever did not end in a reservation takes its addresses' counts back: a
        // refusal, a busy account, and a store that failed half way.
        let admission = match admitted {
            Ok(Admit::Slot(in_flight)) => {
                return Ok(Admission::Admitted(Reservation {
                    account,
                    in_flight,
                    ip_counts,
                }))
            }
            Ok(Admit::Refused(wait)) => Ok(Admission::Refused(wait)),
            Ok(Admit::Busy) => Ok(Admission::Busy),
            Err(error) => Err(error),
        };
        self.take_back(ip_counts).await;
        admission
    }

    /// The steps of [`Throttle::reserve`]: the addresses' counters (each count taken is
    /// pushed to `ip_counts`), then a slot among the account's checks.
    async fn admit(
        &self,
        account: &str,
        ip: Option<IpAddr>,
        ip_counts: &mut Vec<Taken>,
    ) -> Result<Admit, ThrottleStoreError> {
        // Per address: a plain count; past the limit the attempt is refused and taken
        // back, so the counters hold checked attempts only.
        if let Some(ip) = ip {
            let now = Timestamp::now();
            for (key, window, limit) in self.ip_limits(ip) {
                // Read before the store counts, so that no count stranded after it is
                // taken from what it answers.
                let stranded = self.stranded_under(&key);
                let counter = self.store.record(&key, window, now).await?;
                let attempts = counter
                    .count
                    .saturating_sub(Stranded::held(stranded, counter));
                ip_counts.push(Taken::counted(key, counter, window));
                if attempts > limit {
                    return Ok(Admit::Refused(rounded(
                        counter.first_at.plus(window).since(now),
                    )));
                }
            }
        }
        // Per account: failures are counted when they happen; checks in flight take a
        // slot each, and there are only as many slots as failures left.
        let in_flight = format!("p{account}");
        let waiting_since = tokio::time::Instant::now();
        let arrived = Timestamp::now();
        let mut pause = SLOT_POLL_FIRST;
        loop {
            // One read of the account's failures serves the refusal and the allowance.
            let now = Timestamp::now();
            let window = self.policy.account_window;
            let failures = self.store.get(account, window, now).await?;
            if let Some(wait) = self.refusal(failures, now, arrived) {
                return Ok(Admit::Refused(wait));
            }
            let failures_before = failures.map_or(0, |counter| counter.count);
            if let Some(slot) = self.take_slot(account, &in_flight, failures_before).await? {
                return Ok(Admit::Slot(slot));
            }
            if waiting_since.elapsed() + pause > SLOT_WAIT {
                return Ok(Admit::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SLOT_POLL_MAX);
        }
    }

    /// Takes one of the account's check slots (counted under `in_flight`), if one is
    /// free: counted first (up to the allowance `failures_before`, read just before,
    /// allows), then checked against the failures as they stand after it was taken, so
    /// a failure settled in between is never missed.
    async fn take_slot(
        &self,
        account: &str,
        in_flight: &str,
        failures_before: u32,
    ) -> Result<Option<Taken>, ThrottleStoreError> {
        let allowance = self.in_flight_allowance(failures_before);
        let now = Timestamp::now();
        // Read before the store counts. The compare-and-count allows for the stranded
        // counts of a window that may still run; if that admits too many, the check below,
        // on the window the store counted in, takes the slot back.
        let stranded = self.stranded_under(in_flight);
        let maybe_held = stranded
            .filter(|counts| counts.until > now)
            .map_or(0, |counts| counts.count);
        let Some(counter) = self
            .store
            .record_if(
                in_flight,
                SLOT_WINDOW,
                now,
                (allowance - 1).saturating_add(maybe_held),
            )
            .await?
        else {
            return Ok(None);
        };
        let slot = Taken::counted(in_flight.to_owned(), counter, SLOT_WINDOW);
        let failures_after = match self.account_failures(account).await {
            Ok(failures) => failures,
            Err(error) => {
                self.take_back([slot]).await;
                return Err(error);
            }
        };
        let in_flight_now = counter
            .count
            .saturating_sub(Stranded::held(stranded, counter));
        if in_flight_now > self.in_flight_allowance(failures_after) {
            self.take_back([slot]).await;
            return Ok(None);
        }
        Ok(Some(slot))
    }

    /// The account's failures within its window.
    async fn account_failures(&self, account: &str) -> Result<u32, ThrottleStoreError> {
        let counter = self
            .store
            .get(account, self.policy.account_window, Timestamp::now())
            .await?;
        Ok(counter.map_or(0, |counter| counter.count))
    }

    /// Whether the account whose failure counter is `failures` refuses, at `now`, an
    /// attempt that arrived at `arrived`, and for how long: while it is locked, and also
    /// once a lockout started after the attempt arrived (however slowly it looks, an
    /// attempt that waited through the failures of its own burst is never checked after
    /// them).
    fn refusal(
        &self,
        failures: Option<Counter>,
        now: Timestamp,
        arrived: Timestamp,
    ) -> Option<Duration> {
        let counter = failures?;
        if let Some(wait) = self.locked_for(counter, now) {
            return Some(wait);
        }
        let locked_while_waiting =
            counter.count > self.policy.free_failures && counter.last_at >= arrived;
        locked_while_waiting.then_some(Duration::from_secs(1))
    }

    /// Checks an account may have in flight after `failures`: the failures left before
    /// the next lockout, and one once the lockouts have started.
    fn in_flight_allowance(&self, failures: u32) -> u32 {
        self.policy
            .free_failures
            .saturating_add(1)
            .saturating_sub(failures)
            .max(1)
    }

    /// The password check of `reservation` failed: the failure is counted. Answers the
    /// lockout this failure starts when it is the first one past the free failures (the
    /// moment to tell the account's owner), `None` otherwise.
    pub async fn failed(
        &self,
        reservation: Reservation,
    ) -> Result<Option<Duration>, ThrottleStoreError> {
        let window = self.policy.account_window;
        // A failure the store did not count keeps its slot until the slot's window ends,
        // so the account's checks stay bounded while failures cannot be counted. The
        // addresses' counts stay: they count failures.
        let counter = self
            .store
            .record(&reservation.account, window, Timestamp::now())
            .await?;
        self.take_back([reservation.in_flight]).await;
        Ok(
            if counter.count == self.policy.free_failures.saturating_add(1) {
                self.lockout(counter.count)
            } else {
                None
            },
        )
    }

    /// The password check of `reservation` succeeded: the account's failures are
    /// forgotten, and the addresses' counters (which count failures) take it back.
    pub async fn succeeded(&self, reservation: Reservation) -> Result<(), ThrottleStoreError> {
        let cleared = self.store.clear(&reservation.account).await;
        self.take_back(reservation.counts()).await;
        cleared
    }

    /// The check of `reservation` did not happen (a backing service failed): every
    /// counter takes it back.
    pub async fn abandon(&self, reservation: Reservation) {
        self.take_back(reservation.counts()).await;
    }

    /// Takes back each count in `counts`, in its window. A count the store refused to
    /// take back is stranded ([`Stranded`]). After a failure whose outcome is unknown (a
    /// lost connection, a timeout) that count may be back already, so it is left as
    /// counted (the safe side), and the rest are not tried (a store that does not answer
    /// answers slowly): they are stranded.
    async fn take_back(&self, counts: impl IntoIterator<Item = Taken>) {
        let mut counts = counts.into_iter();
        while let Some(taken) = counts.next() {
            let Err(error) = self.store.release(&taken.key, taken.first_at).await else {
                continue;
            };
            let refused = refused_before_writing(&error);
            tracing::warn!(%error, refused, "a throttle count was not taken back: stranded if refused, else left counted");
            if refused {
                self.strand(taken);
            } else {
                counts.for_each(|untried| self.strand(untried));
                return;
            }
        }
    }

    /// Remembers `taken` as stranded. When [`MAX_STRANDED_KEYS`] keys are remembered
    /// already (after forgetting those whose windows are over), a new key is left as
    /// counted: the safe side.
    fn strand(&self, taken: Taken) {
        let mut stranded = self.stranded_counts();
        if stranded.len() >= MAX_STRANDED_KEYS {
            let now = Timestamp::now();
            stranded.retain(|_, counts| counts.until > now);
            if stranded.len() >= MAX_STRANDED_KEYS && !stranded.contains_key(&taken.key) {
                return;
            }
        }
        let none_yet = Stranded {
            first_at: taken.first_at,
            until: taken.until,
            count: 0,
        };
        let counts = stranded.entry(taken.key).or_insert(none_yet);
        if taken.first_at > counts.first_at {
            // The key's counter started over: the earlier window's counts are gone.
            *counts = none_yet;
        }
        if taken.first_at == counts.first_at {
            counts.count = counts.count.saturating_add(1);
        }
    }

    /// The counts stranded under `key`, if any.
    fn stranded_under(&self, key: &str) -> Option<Stranded> {
        self.stranded_counts().get(key).copied()
    }

    /// The stranded counts (a poisoned lock still holds a whole map: every change to it
    /// is made under one lock by code that cannot panic half way).
    fn stranded_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stranded>> {
        self.stranded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `counter`'s account is locked at `now`, if it is.
    fn locked_for(&self, counter: Counter, now: Timestamp) -> Option<Duration> {
        let lockout = self.lockout(counter.count)?;
        let wait = counter.last_at.plus(lockout).since(now);
        (!wait.is_zero()).then(|| rounded(wait))
    }

    /// Counts a sign-up attempt from `ip`; refuses it past the hourly cap.
    pub async fn sign_up(&self, ip: Option<IpAddr>) -> Result<Verdict, ThrottleStoreError> {
        self.hourly_per_ip("s", ip, self.policy.signups_hourly)
            .await
    }

    /// Counts a new stored session for `ip`; refuses it past the hourly cap.
    pub async fn new_session(&self, ip: Option<IpAddr>) -> Result<Verdict, ThrottleStoreError> {
        self.hourly_per_ip("n", ip, self.policy.new_sessions_hourly)
            .await
    }

    /// Counts a request for mail (a reset link, a sign-in code, a verification resend)
    /// to `address` from `ip`; refuses it past either hourly cap. Counted whether or not
    /// the address belongs to anyone, so the answer says nothing about that.
    pub async fn mail_request(
        &self,
        address: &str,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, ThrottleStoreError> {
        let per_address = (
            format!("ma:{}", login_digest_hex(address, 16)),
            self.policy.mails_per_address_hourly,
        );
        self.hourly_per_key_and_ip(per_address, "mi", ip, self.policy.mails_per_ip_hourly)
            .await
    }

    /// Counts a request of the account `user_id` for mail to `address` (an email change
    /// asks to mail a new address) from `ip`: per account as well as per address and
    /// per client, under the same hourly caps as [`Throttle::mail_request`].
    pub async fn account_mail_request(
        &self,
        user_id: &str,
        address: &str,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, ThrottleStoreError> {
        let now = Timestamp::now();
        let key = format!("mu:{}", login_digest_hex(&format!("user\0{user_id}"), 16));
        let counter = self.store.record(&key, HOUR, now).await?;
        let by_account = (counter.count > self.policy.mails_per_address_hourly)
            .then(|| rounded(counter.first_at.plus(HOUR).since(now)));
        let by_address = match self.mail_request(address, ip).await? {
            Verdict::Wait(wait) => Some(wait),
            Verdict::Allow => None,
        };
        Ok(match by_account.max(by_address) {
            Some(wait) => Verdict::Wait(wait),
            None => Verdict::Allow,
        })
    }

    /// Counts a mailed code typed for `address` from `ip`; refuses it past either hourly
    /// cap (before the code is checked, so a refused guess is never tried).
    pub async fn code_attempt(
        &self,
        address: &str,
        ip: Option<IpAddr>,
    ) -> Result<Verdict, ThrottleStoreError> {
        let per_address = (
            format!("ca:{}", login_digest_hex(address, 16)),
            self.policy.codes_per_address_hourly,
        );
        self.hourly_per_key_and_ip(per_address, "ci", ip, self.policy.codes_per_ip_hourly)
            .await
    }

    /// Counts a refused bearer token from `ip` (a guess, or a token that no longer
    /// works), in the store every process shares; once this refusal used up the
    /// policy's hourly allowance, how long bearer requests from `ip` should wait.
    pub async fn bearer_refused(&self, ip: Option<IpAddr>) -> Result<Verdict, ThrottleStoreError> {
        let allowance = self.policy.refused_tokens_hourly;
        self.hourly_per_ip("b", ip, allowance.saturating_sub(1))
            .await
    }

    /// Counts one attempt under `key` (limit `key_limit`) and under `ip_prefix` for
    /// `ip` (limit `ip_limit`), each within the hour; the longer wait if either is over.
    async fn hourly_per_key_and_ip(
        &self,
        (key, key_limit): (String, u32),
        ip_prefix: &str,
        ip: Option<IpAddr>,
        ip_limit: u32,
    ) -> Result<Verdict, ThrottleStoreError> {
        let now = Timestamp::now();
        let counter = self.store.record(&key, HOUR, now).await?;
        let by_key =
            (counter.count > key_limit).then(|| rounded(counter.first_at.plus(HOUR).since(now)));
        let by_ip = match self.hourly_per_ip(ip_prefix, ip, ip_limit).await? {
            Verdict::Wait(wait) => Some(wait),
            Verdict::Allow => None,
        };
        Ok(match by_key.max(by_ip) {
            Some(wait) => Verdict::Wait(wait),
            None => Verdict::Allow,
        })
    }

    /// Counts one attempt of the kind `prefix` from `ip` (none without an address) and
    /// refuses it once more than `limit` came within the hour.
    async fn hourly_per_ip(
        &self,
        prefix: &str,
        ip: Option<IpAddr>,
        limit: u32,
    ) -> Result<Verdict, ThrottleStoreError> {
        let Some(ip) = ip else {
            return Ok(Verdict::Allow);
        };
        let now = Timestamp::now();
        let mut longest = None;
        for (room, rooms_limit) in ip_rooms(ip, limit) {
            let counter = self
                .store
                .record(&format!("{prefix}:{room}"), HOUR, now)
                .await?;
            if counter.count > rooms_limit {
                longest = longest.max(Some(rounded(counter.first_at.plus(HOUR).since(now))));
            }
        }
        Ok(longest.map_or(Verdict::Allow, Verdict::Wait))
    }

    /// Counters untouched since before the returned time are past every window (the
    /// background sweep deletes them): an hour, or the account window if longer.
    pub fn stale_before(&self, now: Timestamp) -> Timestamp {
        let longest = HOUR.max(self.policy.account_window);
        Timestamp(now.as_millis().saturating_sub(longest.as_millis() as i64))
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

    fn ip_limits(&self, ip: IpAddr) -> Vec<(String, Duration, u32)> {
        let mut limits = Vec::with_capacity(4);
        for (room, burst) in ip_rooms(ip, self.policy.ip_burst) {
            limits.push((format!("b:{room}"), MINUTE, burst));
        }
        for (room, hourly) in ip_rooms(ip, self.policy.ip_hourly) {
            limits.push((format!("h:{room}"), HOUR, hourly));
        }
        limits
    }
}

/// A wait in whole seconds, rounded up, as `Retry-After` counts (at least 1).
fn rounded(wait: Duration) -> Duration {
    Duration::from_secs((wait.as_millis().div_ceil(1000) as u64).max(1))
}

/// Whose failed logins an attempt counts under.
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    /// A known user, by id: one counter whichever of their names (username or email,
    /// any case) was typed.
    User(&'a str),
    /// A login name no user has, as typed (compared as the user store compares it).
    Unknown(&'a str),
    /// A known user's second-factor codes, by user id: a counter of its own, so that no
    /// right password ever clears the failures of the codes.
    SecondFactor(&'a str),
}

impl Account<'_> {
    /// The counter's key: a hash, so any string an attacker sends takes the same fixed
    /// room, known account or not.
    fn key(self) -> String {
        match self {
            Account::User(id) => {
                let digest = Sha256::digest(format!("user\0{id}").as_bytes());
                format!("u:{}", crate::bytes::lower_hex(&digest[..16]))
            }
            Account::Unknown(login) => format!("a:{}", login_digest_hex(login, 16)),
            Account::SecondFactor(id) => {
                let digest = Sha256::digest(format!("second factor\0{id}").as_bytes());
                format!("f:{}", crate::bytes::lower_hex(&digest[..16]))
            }
        }
    }
}

/// Whether a password check may go ahead.
#[derive(Debug)]
#[must_use = "a reservation must be settled"]
pub enum Admission {
    /// Go ahead, and settle the reservation with the outcome.
    Admitted(Reservation),
    /// Refused before checking; the client may try again after this long.
    Refused(Duration),
    /// No failure refused it, but the account's checks in flight stayed at the
    /// allowance for [`SLOT_WAIT`]: the service is busy (503), not the client throttled.
    Busy,
}

/// A password check counted in advance by [`Throttle::reserve`].
#[derive(Debug)]
pub struct Reservation {
    /// The account's failure counter.
    account: String,
    /// The slot this reservation holds among the account's checks in flight.
    in_flight: Taken,
    /// The attempt as the addresses' counters counted it.
    ip_counts: Vec<Taken>,
}

impl Reservation {
    /// Every count the reservation took: its slot and the addresses' counts.
    fn counts(self) -> impl Iterator<Item = Taken> {
        std::iter::once(self.in_flight).chain(self.ip_counts)
    }
}

/// How [`Throttle::admit`] ended.
enum Admit {
    /// A slot among the account's checks, taken.
    Slot(Taken),
    /// Refused; try again after this long.
    Refused(Duration),
    /// No slot came free within [`SLOT_WAIT`].
    Busy,
}

/// One attempt counted in advance under `key`, to be taken back.
#[derive(Debug)]
struct Taken {
    key: String,
    /// When the window it was counted in started.
    first_at: Timestamp,
    /// When that window ends.
    until: Timestamp,
}

impl Taken {
    /// The attempt a store counted under `key` as `counter`, in windows of `window`.
    fn counted(key: String, counter: Counter, window: Duration) -> Self {
        Taken {
            key,
            first_at: counter.first_at,
            until: counter.first_at.plus(window),
        }
    }
}

/// Counts under one key that the store holds but that are no attempts: the process took
/// them in advance (for a check that was then refused, or did not fail) and the store
/// refused to take them back (a full disk, a Redis that refuses writes). The process
/// does not count them while the store's counter is in the window they were counted
/// in; other processes sharing the store do (the safe side). Forgotten once a newer
/// window's counts are stranded under the key, or when the map is full and their
/// window is over.
#[derive(Debug, Clone, Copy)]
struct Stranded {
    /// The window they were counted in: a counter that started over holds none of them.
    first_at: Timestamp,
    /// When that window ends.
    until: Timestamp,
    count: u32,
}

impl Stranded {
    /// How many of `stranded` the store's `counter` holds: all of them while it is in
    /// their window, none after.
    fn held(stranded: Option<Stranded>, counter: Counter) -> u32 {
        stranded
            .filter(|counts| counts.first_at == counter.first_at)
            .map_or(0, |counts| counts.count)
    }
}

/// The most keys with stranded counts a process remembers (a full disk during an attack
/// from many addresses must not fill the memory instead).
const MAX_STRANDED_KEYS: usize = 10_000;

/// Whether the store answered `error` by refusing the write for want of room or right,
/// so that it surely wrote nothing (a full disk, a read-only database, a Redis out of
/// memory or refusing writes), rather than by losing the connection or the time, or
/// failing in a way after which the write may have happened.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(unused_variables)
)]
fn refused_before_writing(error: &ThrottleStoreError) -> bool {
    let ThrottleStoreError::Unavailable(source) = error else {
        return false;
    };
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if let Some(error) = source.downcast_ref::<sqlx::Error>() {
        return crate::sql_error::refused_before_writing(error);
    }
    #[cfg(feature = "redis")]
    if let Some(error) = source.downcast_ref::<::redis::RedisError>() {
        return crate::store::redis_refused_before_writing(error);
    }
    false
}

/// How long [`Throttle::reserve`] waits for one of the account's check slots.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);
/// The first pause before looking for a slot again; it doubles up to [`SLOT_POLL_MAX`].
const SLOT_POLL_FIRST: Duration = Duration::from_millis(10);
const SLOT_POLL_MAX: Duration = Duration::from_millis(160);
/// How long a slot counts if its holder never settles (a process that died mid-check).
const SLOT_WINDOW: Duration = Duration::from_secs(60);

/// A short, stable tag of a login name as typed (the first bytes of the same digest the
/// counters use), for logs that must not hold the name itself: people type their
/// password into it by mistake.
pub fn account_tag(login: &str) -> String {
    login_digest_hex(login, 6)
}

/// The first `bytes` of SHA-256 of the login key, in hex.
fn login_digest_hex(login: &str, bytes: usize) -> String {
    let digest = Sha256::digest(crate::user::login_key(login).as_bytes());
    crate::bytes::lower_hex(&digest[..bytes.min(32)])
}

/// How many times a /64's limit an IPv6 /48 may use: one site usually holds a /48,
/// and an attacker who holds one has 65,536 /64s to spread over.
const IPV6_48_FACTOR: u32 = 8;

/// The rooms an address is counted in, each with its limit given the per-client
/// `limit`: an IPv4 address alone; an IPv6 address in its /64 (`limit`) and its /48
/// ([`IPV6_48_FACTOR`] × `limit`).
fn ip_rooms(ip: IpAddr, limit: u32) -> Vec<(String, u32)> {
    let mut rooms = vec![(ip_text(ip), limit)];
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_none() {
            let segments = v6.segments();
            let site = format!("{:x}:{:x}:{:x}::/48", segments[0], segments[1], segments[2]);
            rooms.push((site, limit.saturating_mul(IPV6_48_FACTOR)));
        }
    }
    rooms
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
        fn key(login: &str) -> String {
            Account::Unknown(login).key()
        }
        let long = "x".repeat(100_000);
        assert_eq!(key("Alice "), key("alice"));
        assert_ne!(key("alice"), key("bob"));
        assert_eq!(key(&long).len(), key("a").len());
        // A user's counter is theirs, whatever name was typed.
        assert_ne!(Account::User("7").key(), key("7"));
        assert_eq!(Account::User("7").key().len(), key("a").len());
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
        assert_eq!(ip_rooms(mapped, 3), vec![("192.0.2.1".to_string(), 3)]);
        assert_eq!(
            ip_rooms(a, 3),
            vec![
                ("2001:db8:1:2::/64".to_string(), 3),
                ("2001:db8:1::/48".to_string(), 3 * IPV6_48_FACTOR)
            ]
        );
    }

    #[tokio::test]
    async fn a_48_is_capped_however_many_64s_it_spreads_over() {
        let throttle = throttle();
        let limit = ThrottlePolicy::default().mails_per_ip_hourly;
        let mut allowed = 0;
        for n in 0..(limit * IPV6_48_FACTOR + 50) {
            // A new /64 (and a new address) every time, all in 2001:db8:7::/48.
            let ip: IpAddr = format!("2001:db8:7:{n:x}::1")
                .parse()
                .unwrap_or(IpAddr::from([0u8; 16]));
            let address = format!("new{n}@example.com");
            if matches!(
                throttle.mail_request(&address, Some(ip)).await,
                Ok(Verdict::Allow)
            ) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, limit * IPV6_48_FACTOR);
    }

    /// `attempts` simultaneous checks of one account, each taking `check` and ending
    /// as `right` says: how many were checked, and how many of those passed.
    async fn simultaneous(
        attempts: usize,
        check: Duration,
        right: fn(usize) -> bool,
    ) -> (usize, usize) {
        let throttle = throttle();
        let tasks: Vec<_> = (0..attempts)
            .map(|n| {
                let throttle = throttle.clone();
                tokio::spawn(async move {
                    match throttle.reserve(Account::User("7"), None).await {
                        Ok(Admission::Admitted(reservation)) => {
                            tokio::time::sleep(check).await;
                            if right(n) {
                                throttle.succeeded(reservation).await.map(|()| (1, 1))
                            } else {
                                throttle.failed(reservation).await.map(|_| (1, 0))
                            }
                        }
                        Ok(_) => Ok((0, 0)),
                        Err(error) => Err(error),
                    }
                })
            })
            .collect();
        let mut totals = (0, 0);
        for task in tasks {
            let (checked, passed) = task.await.expect("task").expect("store");
            totals = (totals.0 + checked, totals.1 + passed);
        }
        totals
    }

    #[tokio::test]
    async fn a_burst_of_wrong_passwords_gets_exactly_the_allowance_checked() {
        // The right one comes last: it is refused like the rest beyond the allowance.
        let (checked, passed) = simultaneous(40, Duration::from_millis(300), |n| n == 39).await;
        assert_eq!((checked, passed), (6, 0));
    }

    #[tokio::test]
    async fn right_passwords_sent_at_once_are_all_checked() {
        let (checked, passed) = simultaneous(32, Duration::from_millis(20), |_| true).await;
        assert_eq!((checked, passed), (32, 32));
    }

    #[test]
    fn counters_go_stale_after_the_longest_window() {
        let throttle = throttle();
        let now = Timestamp(10 * 3600 * 1000);
        assert_eq!(throttle.stale_before(now), Timestamp(9 * 3600 * 1000));
    }
}
