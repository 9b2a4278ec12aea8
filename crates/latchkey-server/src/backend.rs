//! The database the server and the CLI run on, chosen by the scheme of
//! `--database-url`: `sqlite://…` (the default) or `postgres://…`. Either way the same
//! three tables hold users, sessions and remember-me tokens.

use crate::config::{
    redact, DatabaseArgs, DatabasePooler, MirrorFailurePolicy, SessionStoreArgs, SessionStoreKind,
};
use anyhow::{bail, Context};
use latchkey::factors::passkeys::{PasskeyStore, SqlPasskeys};
use latchkey::factors::{SecondFactorStore, SecondFactors};
use latchkey::mail::outbox::{Outbox, PostgresOutbox, SqliteOutbox};
use latchkey::remember::{PostgresRememberStore, RememberStore, SqliteRememberStore};
use latchkey::store::{
    migrate_postgres, open_postgres, open_sqlite, ChangeFeed, FanOutStore, MemoryStore,
    MirrorFailure, PgHandle, PgPooling, PostgresStore, RedisStore, SqliteStore,
};
use latchkey::throttle::{
    MemoryThrottleStore, PostgresThrottleStore, RedisThrottleStore, SqliteThrottleStore,
    ThrottleStore,
};
use latchkey::user::tokens::{EmailTokens, TokenStore};
use latchkey::{PostgresUserStore, SessionStore, SqliteUserStore, UserStore};
use std::sync::Arc;

/// The stores kept in the database.
#[derive(Clone)]
pub struct Backend {
    /// Throttle counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Remember-me tokens.
    pub remember: Arc<dyn RememberStore>,
    /// The `sessions` table (used when `--session-store database`).
    pub sessions: Arc<dyn SessionStore>,
    /// Announcements of changes to the `sessions` table (PostgreSQL only, and not
    /// through a transaction pooler without `--database-listen-url`).
    pub sessions_feed: Option<Arc<dyn ChangeFeed>>,
    /// Why a PostgreSQL database has no [`Backend::sessions_feed`].
    pub sessions_feed_missing: Option<&'static str>,
    /// Mail waiting to be sent.
    pub outbox: Arc<dyn Outbox>,
    /// The database's pool, for the stores that need the server's key.
    pool: Pool,
}

/// The pool of the database, whichever it is.
#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(PgHandle),
}

impl Backend {
    /// Opens the database at `--database-url`, creating a SQLite file if missing and
    /// applying migrations.
    pub async fn open(database: &DatabaseArgs) -> anyhow::Result<Backend> {
        let url = &database.database_url;
        // Users stored before names were normalised get their normalised keys and
        // skeletons before anyone can sign up beside them.
        let opened: anyhow::Result<Backend> = if url.starts_with("sqlite:") {
            if database.database_pooler != DatabasePooler::None
                || database.database_migrate_url.is_some()
                || database.database_listen_url.is_some()
            {
                bail!(
                    "--database-pooler, --database-migrate-url and --database-listen-url are \
                     for PostgreSQL; --database-url is SQLite"
                );
            }
            async {
                let pool = open_sqlite(url).await?;
                let users = SqliteUserStore::new(pool.clone());
                users.rekey_legacy_users().await?;
                Ok(Backend {
                    throttle: Arc::new(SqliteThrottleStore::new(pool.clone())),
                    users: Arc::new(users),
                    remember: Arc::new(SqliteRememberStore::new(pool.clone())),
                    outbox: Arc::new(SqliteOutbox::new(pool.clone())),
                    sessions: Arc::new(SqliteStore::new(pool.clone())),
                    pool: Pool::Sqlite(pool),
                    sessions_feed: None,
                    sessions_feed_missing: None,
                })
            }
            .await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            async {
                let pool = open_postgres_handle(database).await?;
                let users = PostgresUserStore::new(pool.clone());
                users.rekey_legacy_users().await?;
                let mut sessions = PostgresStore::new(pool.clone());
                if let Some(listen) = &database.database_listen_url {
                    sessions = sessions.with_listen_url(listen);
                }
                let (sessions_feed, sessions_feed_missing) = if sessions.can_listen() {
                    (
                        Some(Arc::new(sessions.clone()) as Arc<dyn ChangeFeed>),
                        None,
                    )
                } else {
                    (
                        None,
                        Some(
                            "--database-pooler transaction without --database-listen-url: \
                             a transaction pooler cannot LISTEN",
                        ),
                    )
                };
                Ok(Backend {
                    throttle: Arc::new(PostgresThrottleStore::new(pool.clone())),
                    users: Arc::new(users),
                    remember: Arc::new(PostgresRememberStore::new(pool.clone())),
                    outbox: Arc::new(PostgresOutbox::new(pool.clone())),
                    sessions: Arc::new(sessions),
                    sessions_feed,
                    sessions_feed_missing,
                    pool: Pool::Postgres(pool),
                })
            }
            .await
        } else {
            bail!("--database-url must start with sqlite: or postgres:// (got {url:?})");
        };
        opened.with_context(|| format!("cannot open database {}", redact(url)))
    }
}

/// The PostgreSQL pool `database` describes, migrated: over `--database-migrate-url`
/// when given, else over the pool itself, which a transaction pooler cannot do.
async fn open_postgres_handle(database: &DatabaseArgs) -> anyhow::Result<PgHandle> {
    let url = &database.database_url;
    let pooling = match database.database_pooler {
        DatabasePooler::None => PgPooling::Direct,
        DatabasePooler::Transaction => PgPooling::Transaction,
    };
    match (&database.database_migrate_url, pooling) {
        (Some(migrate_url), _) => {
            migrate_postgres(migrate_url).await.with_context(|| {
                format!(
                    "cannot migrate the database at --database-migrate-url {}",
                    redact(migrate_url)
                )
            })?;
            Ok(PgHandle::connect(url, pooling).await?)
        }
        (None, PgPooling::Direct) => Ok(PgHandle::from(open_postgres(url).await?)),
        (None, PgPooling::Transaction) => bail!(
            "--database-pooler transaction needs --database-migrate-url: migrations hold an \
             advisory lock and prepare named statements, which need a direct connection"
        ),
    }
}

impl Backend {
    /// The users' second factors, sealed and bound under keys derived from `secret`.
    pub fn second_factors(&self, secret: &[u8]) -> Arc<dyn SecondFactorStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(SecondFactors::new(pool.clone(), secret)),
            Pool::Postgres(pool) => Arc::new(SecondFactors::new(pool.clone(), secret)),
        }
    }

    /// The users' passkeys.
    pub fn passkeys(&self) -> Arc<dyn PasskeyStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(SqlPasskeys::new(pool.clone())),
            Pool::Postgres(pool) => Arc::new(SqlPasskeys::new(pool.clone())),
        }
    }

    /// The mail flows' tokens, their codes bound under a key derived from `secret`.
    pub fn email_tokens(&self, secret: &[u8]) -> Arc<dyn TokenStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(EmailTokens::new(pool.clone(), secret)),
            Pool::Postgres(pool) => Arc::new(EmailTokens::new(pool.clone(), secret)),
        }
    }
}

/// The Redis store at `url`, its keys under `prefix`.
async fn open_redis(url: &str, prefix: &str) -> anyhow::Result<RedisStore> {
    RedisStore::open(url)
        .await
        .with_context(|| format!("cannot connect to Redis at {}", redact(url)))?
        .with_prefix(prefix)
        .context("--redis-prefix")
}

impl Backend {
    /// The server-side store a `--session-store` / `--session-mirror` value names (Redis
    /// keys under `redis_prefix`).
    pub async fn open_store(
        &self,
        kind: &SessionStoreKind,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Arc<dyn SessionStore>> {
        Ok(match kind {
            SessionStoreKind::Memory => {
                let capacity = match args.memory_store_capacity {
                    Some(capacity) => {
                        tracing::info!(
                            capacity,
                            why = "--memory-store-capacity",
                            "memory session store"
                        );
                        usize::try_from(capacity).unwrap_or(usize::MAX)
                    }
                    None => {
                        let (capacity, why) = default_memory_store_capacity();
                        tracing::info!(capacity, why = %why, "memory session store");
                        capacity
                    }
                };
                Arc::new(MemoryStore::with_capacity(capacity))
            }
            SessionStoreKind::Database => self.sessions.clone(),
            SessionStoreKind::Redis(url) => Arc::new(open_redis(url, &args.redis_prefix).await?),
            SessionStoreKind::Cookie => {
                bail!("the cookie store keeps sessions in browsers: it cannot be a mirror or be reached from here")
            }
        })
    }

    /// Where the `--session-store` announces changes made by any process: PostgreSQL
    /// and Redis do; SQLite cannot, and memory needs no announcing.
    pub async fn session_feed(
        &self,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Option<Arc<dyn ChangeFeed>>> {
        Ok(match &args.session_store {
            SessionStoreKind::Database => self.sessions_feed.clone(),
            SessionStoreKind::Redis(url) => {
                Some(Arc::new(open_redis(url, &args.redis_prefix).await?))
            }
            SessionStoreKind::Memory | SessionStoreKind::Cookie => None,
        })
    }

    /// Where throttle counters go: beside the sessions, so processes sharing a session
    /// store share counters (memory sessions count in memory, cookies in the database).
    pub async fn throttle_store(
        &self,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Arc<dyn ThrottleStore>> {
        Ok(match &args.session_store {
            SessionStoreKind::Memory => Arc::new(MemoryThrottleStore::new()),
            SessionStoreKind::Database | SessionStoreKind::Cookie => self.throttle.clone(),
            SessionStoreKind::Redis(url) => Arc::new(RedisThrottleStore::new(
                open_redis(url, &args.redis_prefix).await?,
            )),
        })
    }

    /// The session store as the CLI sees it: refused when the sessions live where a
    /// separate process cannot reach them.
    pub async fn reachable_session_store(
        &self,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Arc<dyn SessionStore>> {
        if args.session_store == SessionStoreKind::Memory {
            bail!(
                "--session-store memory lives inside the server process, out of this command's \
                 reach; `latchkey user passwd` and `user disable` still end such sessions \
                 through the user's credential version"
            );
        }
        self.session_store(args).await
    }

    /// The server-side session store the flags describe: the master, fanned out to the
    /// mirrors if there are any.
    pub async fn session_store(
        &self,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Arc<dyn SessionStore>> {
        let master = self.open_store(&args.session_store, args).await?;
        if args.session_mirrors.is_empty() {
            return Ok(master);
        }
        let mut mirrors = Vec::new();
        for mirror in &args.session_mirrors {
            if *mirror == args.session_store {
                bail!("--session-mirror {mirror} is the --session-store itself");
            }
            mirrors.push(self.open_store(mirror, args).await?);
        }
        let on_failure = match args.mirror_failure {
            MirrorFailurePolicy::Log => MirrorFailure::Log,
            MirrorFailurePolicy::Fail => MirrorFailure::Fail,
        };
        Ok(Arc::new(FanOutStore::new(master, mirrors, on_failure)))
    }
}

/// Bytes the memory store's capacity allows per session: the largest measured (183 to
/// 556 bytes per session, 392 for a typical idle one; PERFORMANCE.md).
pub const MEMORY_BYTES_PER_SESSION: u64 = 556;

/// The fewest and most sessions the derived default capacity allows.
const MEMORY_CAPACITY_RANGE: (u64, u64) = (10_000, 50_000_000);

/// The default of `--memory-store-capacity`: a quarter of the memory this process may
/// use (`MemAvailable` from `/proc/meminfo`, or the cgroup's `memory.max` when lower)
/// divided by [`MEMORY_BYTES_PER_SESSION`], within 10,000 to 50 million; 1 million
/// where the memory cannot be read. Returns the capacity and why.
pub fn default_memory_store_capacity() -> (usize, String) {
    let available = read_meminfo_available();
    let cgroup = read_cgroup_memory_max();
    let (bytes, source) = match (available, cgroup) {
        (Some(available), Some(cgroup)) if cgroup < available => (cgroup, "cgroup memory.max"),
        (Some(available), _) => (available, "MemAvailable"),
        (None, Some(cgroup)) => (cgroup, "cgroup memory.max"),
        (None, None) => {
            return (
                1_000_000,
                "memory size unknown (no /proc/meminfo): 1,000,000".to_string(),
            )
        }
    };
    let (low, high) = MEMORY_CAPACITY_RANGE;
    let capacity = (bytes / 4 / MEMORY_BYTES_PER_SESSION).clamp(low, high);
    let why = format!(
        "a quarter of {source} ({} MiB) at {MEMORY_BYTES_PER_SESSION} bytes per session, \
         within {low}..={high}; set --memory-store-capacity to choose",
        bytes / (1024 * 1024)
    );
    (usize::try_from(capacity).unwrap_or(usize::MAX), why)
}

/// `MemAvailable` in bytes.
fn read_meminfo_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The cgroup (v2) memory limit in bytes, when one is set.
fn read_cgroup_memory_max() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()?
        .trim()
        .parse()
        .ok()
}
