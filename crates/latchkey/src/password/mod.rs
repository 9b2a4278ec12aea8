//! Password hashing with argon2id, run off the async workers with bounded concurrency,
//! plus the length policy checked before any hashing.

pub mod legacy;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Longest password (in bytes) that is ever handed to the hasher; longer input is refused
/// before any work, so a huge password cannot tie up a core.
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// Why hashing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_BYTES`].
    #[error("password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// The stored hash is not a PHC string this hasher understands.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// The argon2 parameters are invalid.
    #[error("invalid argon2 parameters: {0}")]
    InvalidParams(String),
    /// The hashing task could not run (runtime shutting down).
    #[error("password hashing task failed")]
    TaskFailed,
    /// The stored hash asks for more work than is safe to spend (a huge iteration count
    /// or memory size); refused before any hashing.
    #[error("stored password hash refused: {0}")]
    UnsafeHash(String),
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's argon2id recommendation: m=19456 KiB, t=2, p=1.
    fn default() -> Self {
        HashParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Cheap parameters for tests only (m=64 KiB, t=1): never use them in production.
    pub fn insecure_fast() -> Self {
        HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords as argon2id PHC strings (`$argon2id$v=19$m=…`).
///
/// Work runs on tokio's blocking pool, at most `available cores` at a time, so a flood of
/// logins queues instead of starving other requests.
///
/// ```
/// # tokio_test_block_on(async {
/// use latchkey::{HashParams, PasswordHasher};
/// let hasher = PasswordHasher::new(HashParams::insecure_fast()).unwrap();
/// let hash = hasher.hash("correct horse battery staple").await.unwrap();
/// assert!(hasher.verify("correct horse battery staple", &hash).await.unwrap());
/// assert!(!hasher.verify("wrong", &hash).await.unwrap());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: HashParams,
    verifications: AtomicU64,
    argon2: Arc<Argon2<'static>>,
    permits: Semaphore,
    pool: HashingPool,
    dummy_hash: String,
}

/// A hashing job for the pool.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash: as many as there are cores, at the lowest scheduling
/// priority ([`lower_priority`]), so that a flood of logins slows other logins, not
/// ordinary requests (the async workers keep their normal priority). They end when the
/// hasher is dropped.
struct HashingPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

/// Lowers the calling (hashing) thread's priority as far as it goes: on Linux the
/// `SCHED_IDLE` policy, which any ordinary thread that wakes up preempts at once (with
/// nice 19 a request's wake-up could still wait behind a hash: `GET /home` p99 doubled
/// during a login flood); elsewhere the lowest priority of the normal policy.
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority};
    #[cfg(target_os = "linux")]
    let lowered = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    )
    .or_else(|_| set_current_thread_priority(ThreadPriority::Min));
    #[cfg(not(target_os = "linux"))]
    let lowered = set_current_thread_priority(ThreadPriority::Min);
    if let Err(error) = lowered {
        tracing::debug!(?error, "cannot lower the hashing thread's priority");
    }
}

impl HashingPool {
    fn new(threads: usize) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("latchkey-hash-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job drops its reply (the caller gets
                            // TaskFailed); the thread goes on serving.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        HashingPool {
            jobs: std::sync::Mutex::new(sender),
        }
    }

    /// Queues `job`; `false` if no thread can take it.
    fn submit(&self, job: Job) -> bool {
        match self.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(_) => false,
        }
    }
}

impl PasswordHasher {
    /// A hasher with the given argon2id parameters. Computes one throw-away hash (for
    /// [`PasswordHasher::verify_dummy`]), so it takes as long as one hash.
    pub fn new(params: HashParams) -> Result<Self, PasswordError> {
        let argon2_params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|error| PasswordError::InvalidParams(error.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params);
        // A hash of a random password, made once, so the first unknown-user login costs
        // the same single verification as every later one.
        let mut random = [0u8; 24];
        crate::bytes::random_bytes(&mut random);
        let dummy_hash = argon2
            .hash_password(&random, &SaltString::generate(&mut OsRng))
            .map_err(|error| PasswordError::InvalidParams(error.to_string()))?
            .to_string();
        let cores = std::thread::available_parallelism()
            .map(|cores| cores.get())
            .unwrap_or(1);
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                params,
                verifications: AtomicU64::new(0),
                argon2: Arc::new(argon2),
                permits: Semaphore::new(cores),
                pool: HashingPool::new(cores),
                dummy_hash,
            }),
        })
    }

    /// How many password verifications this hasher has run (real and dummy): a metric,
    /// and the way tests prove that every login attempt costs exactly one.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.inner.params
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::TaskFailed)?;
        let argon2 = self.inner.argon2.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The receiver is gone only if the request was cancelled.
            let _ = done.send(work(&argon2));
        });
        if !self.inner.pool.submit(job) {
            return Err(PasswordError::TaskFailed);
        }
        result.await.map_err(|_| PasswordError::TaskFailed)
    }

    /// [`PasswordPolicy::check_for`] on the hashing threads: the strength estimate of a
    /// long password costs milliseconds (`cargo bench --bench password_policy`), which
    /// would otherwise hold up an async worker. The outer error is the pool's, the
    /// inner one the policy's verdict.
    pub async fn check_new_password(
        &self,
        policy: PasswordPolicy,
        password: &str,
        user_inputs: &[&str],
    ) -> Result<Result<(), PolicyError>, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(Err(PolicyError::TooLong(policy.max_chars)));
        }
        let password = password.to_string();
        let user_inputs: Vec<String> = user_inputs.iter().map(|input| input.to_string()).collect();
        self.run_blocking(move |_| {
            let user_inputs: Vec<&str> = user_inputs.iter().map(String::as_str).collect();
            policy.check_for(&password, &user_inputs)
        })
        .await
    }

    /// Hashes `password` with a fresh 16-byte salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let password = password.to_string();
        self.run_blocking(move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| PasswordError::InvalidParams(error.to_string()))
        })
        .await?
    }

    /// Whether `password` matches the stored `hash`: latchkey's argon2id, or any format
    /// [`legacy`] reads (Werkzeug, Django, passlib, bcrypt, other argon2 parameters).
    /// The parameters stored in the hash are used, after checking they are not
    /// hostile; comparisons are constant-time.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let legacy = legacy::parse(hash)?;
        let password = password.to_string();
        let hash = legacy::argon2_phc(hash).to_string();
        if legacy.is_none() {
            let parsed = PasswordHash::new(&hash).map_err(|_| PasswordError::MalformedHash)?;
            legacy::argon2_params(&parsed)?;
        }
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        self.run_blocking(move |argon2| match legacy {
            Some(legacy) => Ok(legacy.verify(password.as_bytes())),
            None => match PasswordHash::new(&hash) {
                Ok(parsed) => Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok()),
                Err(_) => Err(PasswordError::MalformedHash),
            },
        })
        .await?
    }

    /// Spends one verification against a throw-away hash and returns `false`: call it
    /// when the user does not exist, so that case takes as long as a wrong password.
    pub async fn verify_dummy(&self, password: &str) -> Result<bool, PasswordError> {
        self.verify(password, &self.inner.dummy_hash)
            .await
            .map(|_| false)
    }

    /// Whether `hash` was made with other parameters than this hasher's (re-hash it after
    /// the next successful login).
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            // Legacy formats, Django's argon2 prefix, anything unreadable.
            return true;
        };
        let Ok(params) = legacy::argon2_params(&parsed) else {
            return true;
        };
        parsed.algorithm.as_str() != "argon2id"
            || params.m_cost() != self.inner.params.memory_kib
            || params.t_cost() != self.inner.params.iterations
            || params.p_cost() != self.inner.params.parallelism
    }
}

/// Checks that a stored hash (from an import, say) is one latchkey can verify: a PHC
/// argon2 string or a [`legacy`] format, with parameters within the caps.
pub fn check_stored_hash(stored: &str) -> Result<(), PasswordError> {
    if legacy::parse(stored)?.is_none() {
        let parsed = PasswordHash::new(legacy::argon2_phc(stored))
            .map_err(|_| PasswordError::MalformedHash)?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(PasswordError::MalformedHash);
        }
        legacy::argon2_params(&parsed)?;
    }
    Ok(())
}

/// Rules for new passwords: a length counted in Unicode characters, and a strength
/// estimate (zxcvbn: common passwords, words, names, keyboard patterns, sequences,
/// repeats, dates); no composition rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters accepted (default 12).
    pub min_chars: usize,
    /// Most characters accepted (default 128).
    pub max_chars: usize,
    /// Lowest zxcvbn score accepted, 0–4 (default 3: about 10^10 guesses or more, out of
    /// reach of an offline attack on a slow hash). 0 turns the strength check off.
    pub min_strength: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_chars: 12,
            max_chars: 128,
            min_strength: 3,
        }
    }
}

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer characters than the policy's minimum.
    #[error("password must be at least {0} characters")]
    TooShort(usize),
    /// More characters than the policy's maximum.
    #[error("password must be at most {0} characters")]
    TooLong(usize),
    /// Among the first guesses of an attacker (a common password, a sequence, a word or
    /// name with digits, the user's own name…); holds zxcvbn's explanation and advice.
    #[error("this password is too easy to guess: {0}")]
    TooGuessable(String),
}

/// zxcvbn's explanation of a weak password, as one sentence or two.
fn weakness(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(feedback) = feedback {
        parts.extend(feedback.warning().map(|warning| warning.to_string()));
        parts.extend(feedback.suggestions().iter().map(ToString::to_string));
    }
    if parts.is_empty() {
        parts.push("choose a longer or less predictable one.".to_string());
    }
    parts.join(" ")
}

impl PasswordPolicy {
    /// Checks a new password: its length in characters (never bytes; nothing is
    /// truncated or normalised), then its strength. No composition rules. Oversized
    /// input is refused before any counting.
    pub fn check(&self, password: &str) -> Result<(), PolicyError> {
        self.check_for(password, &[])
    }

    /// [`PasswordPolicy::check`], also refusing a password built from `user_inputs` (the
    /// username and email being signed up with, say).
    pub fn check_for(&self, password: &str, user_inputs: &[&str]) -> Result<(), PolicyError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PolicyError::TooLong(self.max_chars));
        }
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(PolicyError::TooShort(self.min_chars));
        }
        if chars > self.max_chars {
            return Err(PolicyError::TooLong(self.max_chars));
        }
        if self.min_strength == 0 {
            return Ok(());
        }
        let estimate = zxcvbn::zxcvbn(password, user_inputs);
        if u8::from(estimate.score()) < self.min_strength {
            return Err(PolicyError::TooGuessable(weakness(estimate.feedback())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::new(HashParams::insecure_fast()).expect("params")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_under_sched_idle() {
        let pool = HashingPool::new(1);
        let (reply, policy) = std::sync::mpsc::channel();
        assert!(pool.submit(Box::new(move || {
            let _ = reply.send(thread_priority::thread_schedule_policy());
        })));
        let policy = policy
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the job ran")
            .expect("policy");
        assert_eq!(
            policy,
            thread_priority::ThreadSchedulePolicy::Normal(
                thread_priority::NormalThreadSchedulePolicy::Idle
            )
        );
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let hasher = fast();
        let first = hasher.hash("meep meep meep").await.expect("hash");
        let second = hasher.hash("meep meep meep").await.expect("hash");
        assert!(first.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{first}");
        assert_ne!(first, second, "same password, different salts");
        assert!(hasher
            .verify("meep meep meep", &first)
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("beep beep beep", &first)
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("meep meep mee", &first)
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn default_params_are_owasp() {
        let hasher = PasswordHasher::new(HashParams::default()).expect("params");
        let hash = hasher.hash("a long enough password").await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hasher.needs_rehash(&hash));
        assert!(fast().needs_rehash(&hash));
    }

    #[tokio::test]
    async fn oversized_and_malformed_inputs_are_errors() {
        let hasher = fast();
        let huge = "x".repeat(1 << 20);
        assert!(matches!(
            hasher.hash(&huge).await,
            Err(PasswordError::TooLong)
        ));
        let hash = hasher.hash("password1234").await.expect("hash");
        assert!(matches!(
            hasher.verify(&huge, &hash).await,
            Err(PasswordError::TooLong)
        ));
        assert!(matches!(
            hasher.verify("password1234", "not a hash").await,
            Err(PasswordError::MalformedHash)
        ));
        assert!(matches!(
            hasher.verify_dummy(&huge).await,
            Err(PasswordError::TooLong)
        ));
        assert!(!hasher.verify_dummy("password1234").await.expect("dummy"));
    }

    #[test]
    fn policy_counts_characters_not_bytes() {
        // Lengths only: the strength check would refuse the repeats.
        let policy = PasswordPolicy {
            min_strength: 0,
            ..PasswordPolicy::default()
        };
        assert_eq!(policy.check("elevenchars"), Err(PolicyError::TooShort(12)));
        assert_eq!(policy.check("twelve chars"), Ok(()));
        assert_eq!(policy.check(&"🔑".repeat(12)), Ok(()));
        assert_eq!(
            policy.check(&"🔑".repeat(11)),
            Err(PolicyError::TooShort(12))
        );
        assert_eq!(policy.check(&"ab".repeat(64)), Ok(()));
        assert_eq!(
            policy.check(&"a".repeat(129)),
            Err(PolicyError::TooLong(128))
        );
    }

    #[test]
    fn guessable_passwords_are_refused_with_the_reason() {
        let policy = PasswordPolicy::default();
        for (weak, reason) in [
            (
                "123456789012",
                "Sequences like abc or 6543 are easy to guess.",
            ),
            ("qwerty123456", "This is a very common password."),
            ("QWERTY123456", "Capitalization doesn't help very much."),
            ("passwordpassword", "Repeats like"),
            ("1qaz2wsx3edc", "This is a very common password."),
        ] {
            match policy.check(weak) {
                Err(PolicyError::TooGuessable(why)) => {
                    assert!(why.contains(reason), "{weak}: {why}")
                }
                other => panic!("{weak}: {other:?}"),
            }
        }
        assert_eq!(policy.check("leave me alone, please"), Ok(()));
        assert!(matches!(
            policy.check_for("grover.monster", &["grover.monster", "grover@example.com"]),
            Err(PolicyError::TooGuessable(_))
        ));
        let lenient = PasswordPolicy {
            min_strength: 0,
            ..PasswordPolicy::default()
        };
        assert_eq!(lenient.check("123456789012"), Ok(()));
    }

    #[tokio::test]
    async fn new_passwords_are_checked_on_the_hashing_threads() {
        let hasher = fast();
        let policy = PasswordPolicy::default();
        let check = |password: &'static str, inputs: &'static [&'static str]| {
            hasher.check_new_password(policy, password, inputs)
        };
        assert!(matches!(
            check("123456789012", &[]).await,
            Ok(Err(PolicyError::TooGuessable(_)))
        ));
        assert!(matches!(
            check("grover.monster", &["grover.monster"]).await,
            Ok(Err(PolicyError::TooGuessable(_)))
        ));
        assert_eq!(
            check("leave me alone, please", &[]).await.ok(),
            Some(Ok(()))
        );
        let huge = "x".repeat(1 << 20);
        assert!(matches!(
            hasher.check_new_password(policy, &huge, &[]).await,
            Ok(Err(PolicyError::TooLong(128)))
        ));
    }

    #[test]
    fn a_mebibyte_password_is_refused_without_counting_it() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check(&"a".repeat(1 << 20)),
            Err(PolicyError::TooLong(128))
        );
    }
}
