//! The database the server and the CLI run on, chosen by the scheme of
//! `--database-url`: `sqlite://…` (the default) or `postgres://…`. Either way the same
//! three tables hold users, sessions and remember-me tokens.

use crate::config::{
    redact, DatabaseArgs, DatabasePooler, MirrorFailurePolicy, SessionStoreArgs, SessionStoreKind,
};
use anyhow::{anyhow, bail, Context};
use latchkey::access_token::store::{PostgresAccessTokens, SqliteAccessTokens};
use latchkey::access_token::AccessTokenStore;
use latchkey::factors::passkeys::{PasskeyStore, SqlPasskeys};
use latchkey::factors::{SecondFactorStore, SecondFactors};
use latchkey::mail::outbox::{Outbox, PostgresOutbox, SqliteOutbox};
use latchkey::oidc::identities::{IdentityStore, PostgresIdentityStore, SqliteIdentityStore};
use latchkey::remember::{PostgresRememberStore, RememberStore, SqliteRememberStore};
use latchkey::store::{
    migrate_postgres, open_postgres, open_sqlite, transaction_pooler_sign, ChangeFeed, FanOutStore,
    MemoryStore, MirrorFailure, PgHandle, PgPooling, PoolerSign, PostgresStore, RedisStore,
    SqliteStore,
};
use latchkey::throttle::{
    MemoryThrottleStore, PostgresThrottleStore, RedisThrottleStore, SqliteThrottleStore,
    ThrottleStore,
};
use latchkey::user::groups::{GroupStore, SqlGroups};
use latchkey::user::tokens::{EmailTokens, TokenStore};
use latchkey::{PostgresUserStore, SessionStore, SqliteUserStore, UserStore};
use std::sync::Arc;
use std::time::Duration;

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
            .map_err(|error| pooler_advice(database, error))
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
            if let Err(error) = migrate_postgres(migrate_url).await {
                let through_pgbouncer = transaction_pooler_sign(&error).is_some();
                let error = anyhow::Error::new(error).context(format!(
                    "cannot migrate the database at --database-migrate-url {}",
                    redact(migrate_url)
                ));
                if through_pgbouncer {
                    return Err(error.context(
                        "--database-migrate-url goes through PgBouncer: migrations hold an \
                         advisory lock and prepare named statements, so it must name \
                         PostgreSQL itself",
                    ));
                }
                return Err(error);
            }
            Ok(PgHandle::connect(url, pooling).await?)
        }
        (None, PgPooling::Direct) => Ok(PgHandle::from(open_postgres(url).await?)),
        (None, PgPooling::Transaction) => bail!(
            "--database-pooler transaction needs --database-migrate-url: migrations hold an \
             advisory lock and prepare named statements, which need a direct connection"
        ),
    }
}

/// `error` told as what it shows, when it shows that `--database-url` goes through
/// PgBouncer while `--database-pooler` says nothing is in between (which otherwise stops
/// with `prepared statement "sqlx_s_1" already exists`).
fn pooler_advice(database: &DatabaseArgs, error: anyhow::Error) -> anyhow::Error {
    if database.database_pooler != DatabasePooler::None {
        return error;
    }
    let Some(sign) = error.chain().find_map(transaction_pooler_sign) else {
        return error;
    };
    let said = error.root_cause().to_string();
    match sign {
        PoolerSign::SharedStatements => anyhow!(
            "--database-url reaches PostgreSQL through a transaction-pooling PgBouncer, which \
             shares server connections between clients, so named prepared statements collide \
             ({said}): start with --database-pooler transaction, and --database-migrate-url \
             naming PostgreSQL itself (migrations need a direct connection)"
        ),
        PoolerSign::StartupParameter => anyhow!(
            "--database-url reaches PostgreSQL through PgBouncer ({said}): behind a \
             transaction-pooling PgBouncer, start with --database-pooler transaction, and \
             --database-migrate-url naming PostgreSQL itself (migrations need a direct \
             connection); behind a session-pooling one, set `ignore_startup_parameters = \
             extra_float_digits` in pgbouncer.ini"
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

    /// The users' groups.
    pub fn groups(&self) -> Arc<dyn GroupStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(SqlGroups::new(pool.clone())),
            Pool::Postgres(pool) => Arc::new(SqlGroups::new(pool.clone())),
        }
    }

    /// The users' personal access tokens.
    pub fn access_tokens(&self) -> Arc<dyn AccessTokenStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(SqliteAccessTokens::new(pool.clone())),
            Pool::Postgres(pool) => Arc::new(PostgresAccessTokens::new(pool.clone())),
        }
    }

    /// The identities of users at other providers.
    pub fn identities(&self) -> Arc<dyn IdentityStore> {
        match &self.pool {
            Pool::Sqlite(pool) => Arc::new(SqliteIdentityStore::new(pool.clone())),
            Pool::Postgres(pool) => Arc::new(PostgresIdentityStore::new(pool.clone())),
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

/// How long the command line waits for a Redis Cluster that is failing over (a master
/// down, its replica not yet promoted: Redis's default `cluster-node-timeout` is 15 s,
/// plus the election) before it gives up and says so. The server does not wait: a
/// request meeting a failover answers 503, the next one finds the new topology.
pub const CLI_FAILOVER_PATIENCE: Duration = Duration::from_secs(30);

/// The Redis store at `url`, its keys under `prefix`; on a cluster, waiting out a
/// failover for up to `patience` ([`RedisStore::open_patient`]).
async fn open_redis(url: &str, prefix: &str, patience: Duration) -> anyhow::Result<RedisStore> {
    RedisStore::open_patient(url, patience)
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
        self.open_store_patient(kind, args, Duration::ZERO).await
    }

    /// [`Backend::open_store`], waiting out a Redis Cluster failover for up to `patience`.
    async fn open_store_patient(
        &self,
        kind: &SessionStoreKind,
        args: &SessionStoreArgs,
        patience: Duration,
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
            SessionStoreKind::Redis(url) => {
                Arc::new(open_redis(url, &args.redis_prefix, patience).await?)
            }
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
            SessionStoreKind::Redis(url) => Some(Arc::new(
                open_redis(url, &args.redis_prefix, Duration::ZERO).await?,
            )),
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
                open_redis(url, &args.redis_prefix, Duration::ZERO).await?,
            )),
        })
    }

    /// The session store as the CLI sees it: refused when the sessions live where a
    /// separate process cannot reach them; a Redis Cluster failing over is waited for
    /// ([`CLI_FAILOVER_PATIENCE`]).
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
        self.session_store_patient(args, CLI_FAILOVER_PATIENCE)
            .await
    }

    /// The server-side session store the flags describe: the master, fanned out to the
    /// mirrors if there are any.
    pub async fn session_store(
        &self,
        args: &SessionStoreArgs,
    ) -> anyhow::Result<Arc<dyn SessionStore>> {
        self.session_store_patient(args, Duration::ZERO).await
    }

    /// [`Backend::session_store`], waiting out a Redis Cluster failover for up to
    /// `patience`.
    async fn session_store_patient(
        &self,
        args: &SessionStoreArgs,
        patience: Duration,
    ) -> anyhow::Result<Arc<dyn SessionStore>> {
        let master = self
            .open_store_patient(&args.session_store, args, patience)
            .await?;
        if args.session_mirrors.is_empty() {
            return Ok(master);
        }
        let mut mirrors = Vec::new();
        for mirror in &args.session_mirrors {
            if *mirror == args.session_store {
                bail!("--session-mirror {mirror} is the --session-store itself");
            }
            mirrors.push(self.open_store_patient(mirror, args, patience).await?);
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
