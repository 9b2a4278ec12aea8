//! Command-line and environment configuration, checked before anything starts.

use crate::web::connections::{default_max_connections, ConnectionLimits};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use latchkey::mail::{LogMailer, Mailer, SmtpMailer};
use latchkey::{HashParams, PasswordHasher, PasswordPolicy, SessionConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where sessions are kept: `memory`, `database`, `cookie`, a `redis://` URL or a
/// `redis-cluster://host:port[,host:port…]` list of a Redis Cluster's seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreKind {
    /// In this process's memory (lost on restart).
    Memory,
    /// In the database given by `--database-url` (survives restarts).
    Database,
    /// In Redis at this URL (one server, or a cluster by `redis-cluster://` seeds).
    Redis(String),
    /// Encrypted in the cookie itself, with revocation records in the database.
    Cookie,
}

impl std::str::FromStr for SessionStoreKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "memory" => Ok(SessionStoreKind::Memory),
            "database" => Ok(SessionStoreKind::Database),
            "cookie" => Ok(SessionStoreKind::Cookie),
            url if ["redis://", "rediss://", "redis-cluster://"]
                .iter()
                .any(|scheme| url.starts_with(scheme)) =>
            {
                Ok(SessionStoreKind::Redis(url.to_string()))
            }
            other => Err(format!(
                "{other:?} is not a session store: use memory, database, cookie, a redis:// URL \
                 or redis-cluster://host:port[,host:port...]"
            )),
        }
    }
}

impl std::fmt::Display for SessionStoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionStoreKind::Memory => f.write_str("memory"),
            SessionStoreKind::Database => f.write_str("database"),
            SessionStoreKind::Redis(url) => f.write_str(&redact(url)),
            SessionStoreKind::Cookie => f.write_str("cookie"),
        }
    }
}

/// What a failed mirror write does (see `--session-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MirrorFailurePolicy {
    /// Log a warning; the request succeeds on the master's write.
    Log,
    /// Log an error and answer 503.
    Fail,
}

/// Where sessions live: shared by `serve` and the commands that end sessions.
#[derive(Args, Debug, Clone)]
pub struct SessionStoreArgs {
    /// Where sessions are kept: memory, database (the --database-url database), cookie
    /// (encrypted in the cookie), a redis:// URL or a Redis Cluster's seed nodes
    /// (redis-cluster://host:port[,host:port...]).
    #[arg(long, env = "LATCHKEY_SESSION_STORE", default_value = "database")]
    pub session_store: SessionStoreKind,
    /// Also write every session to this store (database, redis:// or redis-cluster://); reads stay
    /// on --session-store. Repeatable.
    #[arg(long = "session-mirror", value_name = "STORE")]
    pub session_mirrors: Vec<SessionStoreKind>,
    /// What a failed mirror write does.
    #[arg(long, env = "LATCHKEY_MIRROR_FAILURE", value_enum, default_value_t = MirrorFailurePolicy::Log)]
    pub mirror_failure: MirrorFailurePolicy,
    /// Prefix of every Redis key (sessions, per-user indexes, throttle counters) and of
    /// the change channel: one per deployment sharing a Redis server.
    #[arg(long, env = "LATCHKEY_REDIS_PREFIX", default_value = "latchkey")]
    pub redis_prefix: String,
    /// Most sessions a memory session store holds (then it evicts anonymous sessions,
    /// and refuses new ones with 503 when all are logged in). Default: a quarter of the
    /// available memory (MemAvailable, or the cgroup's memory.max when lower) at 556
    /// bytes per session, within 10,000 to 50 million.
    #[arg(long, env = "LATCHKEY_MEMORY_STORE_CAPACITY", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_store_capacity: Option<u64>,
}

/// Database and password-hashing options shared by `serve` and the user commands.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Database URL; the SQLite file is created if missing.
    #[arg(
        long,
        env = "LATCHKEY_DATABASE_URL",
        default_value = "sqlite://latchkey.db"
    )]
    pub database_url: String,
    /// What stands between latchkey and PostgreSQL at --database-url: `none` (a direct
    /// connection or a session-pooling PgBouncer) or `transaction` (a transaction-pooling
    /// PgBouncer: every statement then runs unprepared in its own transaction).
    #[arg(
        long,
        env = "LATCHKEY_DATABASE_POOLER",
        value_enum,
        default_value_t = DatabasePooler::None
    )]
    pub database_pooler: DatabasePooler,
    /// A direct PostgreSQL URL that migrations run on (they hold an advisory lock and
    /// prepare named statements); needed with --database-pooler transaction. Default:
    /// --database-url.
    #[arg(long, env = "LATCHKEY_DATABASE_MIGRATE_URL")]
    pub database_migrate_url: Option<String>,
    /// A direct PostgreSQL URL the session cache LISTENs on for other processes' changes.
    /// Default: --database-url, unless it is a transaction pooler, which cannot LISTEN:
    /// then the cache keeps entries for its TTL.
    #[arg(long, env = "LATCHKEY_DATABASE_LISTEN_URL")]
    pub database_listen_url: Option<String>,
    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(long, env = "LATCHKEY_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "LATCHKEY_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// Minimum password length in characters for new passwords.
    #[arg(long, env = "LATCHKEY_MIN_PASSWORD_LENGTH", default_value_t = 12)]
    pub min_password_length: usize,
    /// Lowest zxcvbn strength score (0-4) for new passwords; 3 refuses anything guessable
    /// in under about 10^10 tries (common passwords, words or names with digits,
    /// sequences, keyboard rows); 0 turns the check off.
    #[arg(long, env = "LATCHKEY_MIN_PASSWORD_STRENGTH", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(0..=4))]
    pub min_password_strength: u8,
}

impl DatabaseArgs {
    /// The password hasher these options describe.
    pub fn hasher(&self) -> anyhow::Result<PasswordHasher> {
        PasswordHasher::new(HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: 1,
        })
        .context("invalid argon2 parameters")
    }

    /// The password policy: length and strength.
    pub fn policy(&self) -> PasswordPolicy {
        PasswordPolicy {
            min_chars: self.min_password_length,
            min_strength: self.min_password_strength,
            ..PasswordPolicy::default()
        }
    }

    /// The SQLite file behind the URL, if it names one.
    pub fn database_file(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
    }
}

/// What stands between latchkey and PostgreSQL (`--database-pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatabasePooler {
    /// Nothing, or a pooler in session mode: named, cached prepared statements.
    None,
    /// PgBouncer (or alike) in transaction pooling mode.
    Transaction,
}

/// Where mail goes: `serve` and `latchkey mail`.
#[derive(Args, Debug, Clone)]
pub struct MailArgs {
    /// The SMTP server: smtp://host:port (plain, for a relay on loopback),
    /// smtp://host:port?tls=starttls, smtps://host:port; a user as smtp://user@host,
    /// whose password comes from LATCHKEY_SMTP_PASSWORD or --smtp-password-file (a
    /// password in a URL on the command line is readable by every local user, and
    /// warned about). Without it, mail is written to the log in full.
    #[arg(long, env = "LATCHKEY_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// A file whose first line is the SMTP password of the user in --smtp-url.
    #[arg(long, env = "LATCHKEY_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    /// The sender of every mail.
    #[arg(
        long,
        env = "LATCHKEY_MAIL_FROM",
        default_value = "latchkey <noreply@localhost>"
    )]
    pub mail_from: String,
    /// Refuse password logins until the user's email is verified (sign-up then needs
    /// an email); the refusal offers to send the link again.
    #[arg(long, env = "LATCHKEY_REQUIRE_VERIFIED_EMAIL")]
    pub require_verified_email: bool,
    /// Log the user in once a password is set from a reset link (off: they log in with
    /// the new password).
    #[arg(long, env = "LATCHKEY_RESET_LOGS_IN")]
    pub reset_logs_in: bool,
    /// How long a password reset link stays valid.
    #[arg(long, env = "LATCHKEY_RESET_TOKEN_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub reset_token_ttl: Duration,
    /// How long an email verification (or email change) link stays valid.
    #[arg(long, env = "LATCHKEY_VERIFY_TOKEN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub verify_token_ttl: Duration,
    /// How long a sign-in link and code stay valid.
    #[arg(long, env = "LATCHKEY_SIGN_IN_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub sign_in_token_ttl: Duration,
}

impl MailArgs {
    /// The mailer these options name: SMTP, or the log without `--smtp-url`.
    pub fn mailer(&self) -> anyhow::Result<Arc<dyn Mailer>> {
        let Some(url) = &self.smtp_url else {
            return Ok(Arc::new(LogMailer));
        };
        if url_has_password(url) && on_command_line("--smtp-url") {
            tracing::warn!(
                "the SMTP password stands in --smtp-url on the command line, where every \
                 local user can read it; set LATCHKEY_SMTP_PASSWORD or \
                 --smtp-password-file instead"
            );
        }
        let password = std::env::var("LATCHKEY_SMTP_PASSWORD").ok();
        let url = with_smtp_password(url, self.smtp_password_file.as_deref(), password)?;
        Ok(Arc::new(
            SmtpMailer::new(&url, &self.mail_from)
                .with_context(|| format!("--smtp-url {}", redact(&url)))?,
        ))
    }

    /// Where mail goes, for the start-up log (credentials hidden).
    pub fn describe(&self) -> String {
        match &self.smtp_url {
            Some(url) => format!("SMTP at {}", redact(url)),
            None => "the log (no --smtp-url)".into(),
        }
    }
}

/// Options of `latchkey serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LATCHKEY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub sessions: SessionStoreArgs,
    #[command(flatten)]
    pub mail: MailArgs,
    /// Cache sessions in this process for at most this long. With PostgreSQL
    /// (`database` on a postgres:// URL) or Redis sessions, a change made by any process
    /// evicts the entry as soon as the store announces it (NOTIFY, PUBLISH), so the TTL
    /// only bounds memory (e.g. 10m); with SQLite, another process's logout is seen here
    /// up to the TTL later, so keep it short (e.g. 1s). Off by default.
    #[arg(long, env = "LATCHKEY_SESSION_CACHE", value_parser = humantime::parse_duration)]
    pub session_cache: Option<Duration>,
    /// The URL users reach the server at (default http://localhost:PORT on a loopback
    /// --bind, http://<bind> otherwise); https makes cookies `Secure` with the `__Host-`
    /// prefix.
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Allow a plain-http public URL on a non-loopback address.
    #[arg(long, env = "LATCHKEY_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    /// Sessions end after this long without a request (e.g. 30m, 90s).
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// A password login counts as fresh (changing the password, ending other sessions)
    /// for this long; after it the password is asked again.
    #[arg(long, env = "LATCHKEY_FRESH_LOGIN_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub fresh_login_window: Duration,
    /// How long a login whose password passed waits for its second factor.
    #[arg(long, env = "LATCHKEY_SECOND_FACTOR_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub second_factor_timeout: Duration,
    /// Sessions end this long after login, active or not.
    #[arg(long, env = "LATCHKEY_ABSOLUTE_TIMEOUT", default_value = "12h", value_parser = humantime::parse_duration)]
    pub absolute_timeout: Duration,
    /// A folder of templates that replace the embedded ones of the same name
    /// (base.html, login.html, …).
    #[arg(long, env = "LATCHKEY_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Send the session cookie to this domain and every host under it (the login host
    /// must be one of them): one login for every app behind the proxy, and a logout
    /// ends it on all of them. The secure cookie is then `__Secure-id`, not `__Host-id`.
    #[arg(long, env = "LATCHKEY_COOKIE_DOMAIN", value_name = "DOMAIN")]
    pub cookie_domain: Option<String>,
    /// Forward authentication: the access rules (TOML) for the apps behind nginx, Caddy
    /// or Traefik, which ask `/auth/nginx` or `/auth/forward` (from a --trusted-proxy).
    /// Checked at start; read again on SIGHUP (a bad file keeps the old rules).
    #[arg(long, env = "LATCHKEY_ACCESS_RULES", value_name = "FILE")]
    pub access_rules: Option<PathBuf>,
    /// A reverse proxy whose forwarding header is believed (repeatable); requests from
    /// anyone else are counted under their own address.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Sign-in with another identity provider over OpenID Connect, as NAME=ISSUER_URL
    /// (repeatable; `github`, `google`, `microsoft`, `gitlab` and `apple` need no URL;
    /// `github` is GitHub's OAuth 2, github.com or an Enterprise Server's URL;
    /// `microsoft` is the multi-tenant `common` issuer, or `microsoft=…/TENANT/v2.0`). The client id and secret
    /// come from LATCHKEY_OIDC_<NAME>_CLIENT_ID and LATCHKEY_OIDC_<NAME>_CLIENT_SECRET,
    /// the button's words from LATCHKEY_OIDC_<NAME>_LABEL; the redirect URI to register
    /// is {--public-url}/login/oidc/NAME/callback (logged at start).
    #[arg(
        long = "oidc-provider",
        env = "LATCHKEY_OIDC_PROVIDERS",
        value_delimiter = ',',
        value_name = "NAME=ISSUER_URL"
    )]
    pub oidc_providers: Vec<String>,
    /// The header the trusted proxies write: x-forwarded-for or forwarded (RFC 7239).
    /// Read from the right, past trusted proxies only; anything else is ignored.
    #[arg(
        long,
        env = "LATCHKEY_FORWARDED_HEADER",
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: crate::web::forwarded::ForwardedHeader,
    /// Failed logins per account before lockouts start (then 1 s, 2 s, 4 s … 15 min).
    #[arg(long, env = "LATCHKEY_LOGIN_FREE_FAILURES", default_value_t = 5)]
    pub login_free_failures: u32,
    /// Failed logins allowed from one IP per minute.
    #[arg(long, env = "LATCHKEY_LOGIN_IP_BURST", default_value_t = 30)]
    pub login_ip_burst: u32,
    /// Failed logins allowed from one IP per hour.
    #[arg(long, env = "LATCHKEY_LOGIN_IP_HOURLY", default_value_t = 300)]
    pub login_ip_hourly: u32,
    /// Sign-up attempts allowed from one IP per hour.
    #[arg(long, env = "LATCHKEY_SIGNUPS_PER_IP_HOURLY", default_value_t = 20)]
    pub signups_per_ip_hourly: u32,
    /// Mails (reset links, sign-in codes, verification resends) asked for per address
    /// per hour, whether or not an account uses it.
    #[arg(
        long,
        env = "LATCHKEY_MAIL_REQUESTS_PER_ADDRESS_HOURLY",
        default_value_t = 5
    )]
    pub mail_requests_per_address_hourly: u32,
    /// Mails asked for from one IP per hour.
    #[arg(
        long,
        env = "LATCHKEY_MAIL_REQUESTS_PER_IP_HOURLY",
        default_value_t = 30
    )]
    pub mail_requests_per_ip_hourly: u32,
    /// Mailed sign-in codes typed per address per hour (ten wrong ones also burn the code).
    #[arg(long, env = "LATCHKEY_CODES_PER_ADDRESS_HOURLY", default_value_t = 20)]
    pub codes_per_address_hourly: u32,
    /// Mailed sign-in codes typed from one IP per hour.
    #[arg(long, env = "LATCHKEY_CODES_PER_IP_HOURLY", default_value_t = 60)]
    pub codes_per_ip_hourly: u32,
    /// New stored sessions (logins, and notices to visitors without a session) allowed
    /// from one IP per hour; beyond it 429.
    #[arg(
        long,
        env = "LATCHKEY_NEW_SESSIONS_PER_IP_HOURLY",
        default_value_t = 1000
    )]
    pub new_sessions_per_ip_hourly: u32,
    /// Refused bearer tokens (unknown, mistyped, expired, revoked) allowed from one IP
    /// per hour; beyond it every bearer request from there gets 429.
    #[arg(
        long,
        env = "LATCHKEY_REFUSED_TOKENS_PER_IP_HOURLY",
        default_value_t = 50
    )]
    pub refused_tokens_per_ip_hourly: u32,
    /// The longest a personal access token may live (e.g. 90d, 1y); tokens made without
    /// a lifetime live 90 days, or this if shorter.
    #[arg(long, env = "LATCHKEY_MAX_TOKEN_LIFETIME", default_value = "1y", value_parser = humantime::parse_duration)]
    pub max_token_lifetime: Duration,
    /// Let users make personal access tokens that never expire.
    #[arg(long, env = "LATCHKEY_ALLOW_TOKENS_WITHOUT_EXPIRY")]
    pub allow_tokens_without_expiry: bool,
    /// Serve the session data JSON API (/api/session/data) to logged-in users.
    #[arg(long, env = "LATCHKEY_ENABLE_SESSION_DATA_API")]
    pub enable_session_data_api: bool,
    /// A client must send a request's headers within this long of its first byte, or
    /// the connection is closed.
    #[arg(long, env = "LATCHKEY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// A client must send a request's whole body within this long of its headers, or
    /// the answer is 408 and the connection is closed.
    #[arg(long, env = "LATCHKEY_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request (or an answer the client does not read)
    /// for this long is closed.
    #[arg(long, env = "LATCHKEY_CONNECTION_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub connection_idle_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed at once.
    /// Default: the process's open-file limit (soft RLIMIT_NOFILE) less 128 descriptors
    /// kept for the stores and files, at least 16.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest session record in bytes (its JSON, as stored); a write beyond it is
    /// refused with 413 and changes nothing.
    #[arg(long, env = "LATCHKEY_MAX_SESSION_BYTES", default_value_t = latchkey::session::DEFAULT_MAX_RECORD_BYTES)]
    pub max_session_bytes: usize,
    /// Most keys a session's data may hold; a write beyond it is refused with 413.
    #[arg(long, env = "LATCHKEY_MAX_SESSION_KEYS", default_value_t = latchkey::session::DEFAULT_MAX_KEYS)]
    pub max_session_keys: usize,
    /// How often expired sessions are swept from the store.
    #[arg(long, env = "LATCHKEY_CLEANUP_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub cleanup_interval: Duration,
}

/// One `--oidc-provider`, read with its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProviderConfig {
    /// What the provider discovers and signs in with.
    pub settings: latchkey::oidc::ProviderSettings,
    /// The button's words ("Sign in with LABEL").
    pub label: String,
}

/// The issuers of the named providers that need no URL.
const KNOWN_ISSUERS: [(&str, &str); 5] = [
    ("github", latchkey::oidc::github::GITHUB_ISSUER),
    // Any work, school or personal account: the multi-tenant issuer, each token checked
    // against its own tenant.
    ("microsoft", "https://login.microsoftonline.com/common/v2.0"),
    ("google", "https://accounts.google.com"),
    ("gitlab", "https://gitlab.com"),
    ("apple", "https://appleid.apple.com"),
];

/// `NAME=ISSUER_URL` (or a known NAME alone) and its environment: the client id and
/// secret (never on the command line), the label. `env` reads a variable.
pub fn oidc_provider(
    arg: &str,
    public_url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<OidcProviderConfig> {
    let (name, issuer) = match arg.split_once('=') {
        Some((name, issuer)) => (name.trim(), issuer.trim().to_string()),
        None => {
            let name = arg.trim();
            let Some((_, issuer)) = KNOWN_ISSUERS.iter().find(|(known, _)| *known == name) else {
                bail!(
                    "--oidc-provider {arg:?}: give NAME=ISSUER_URL (only github, google, \
                     microsoft, gitlab and apple need no URL)"
                );
            };
            (name, (*issuer).to_string())
        }
    };
    let valid_name = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if !valid_name {
        bail!("--oidc-provider {arg:?}: the name is 1-32 of a-z, 0-9 and -");
    }
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        bail!("--oidc-provider {arg:?}: the issuer is an http(s) URL");
    }
    let variable = |what: &str| {
        format!(
            "LATCHKEY_OIDC_{}_{what}",
            name.to_ascii_uppercase().replace('-', "_")
        )
    };
    let client_id = env(&variable("CLIENT_ID"))
        .filter(|value| !value.is_empty())
        .with_context(|| {
            format!(
                "--oidc-provider {name}: set {} (and {})",
                variable("CLIENT_ID"),
                variable("CLIENT_SECRET")
            )
        })?;
    let client_secret = env(&variable("CLIENT_SECRET")).filter(|value| !value.is_empty());
    let label = env(&variable("LABEL"))
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| name.to_string());
    Ok(OidcProviderConfig {
        settings: latchkey::oidc::ProviderSettings {
            name: name.to_string(),
            issuer,
            client_id,
            client_secret,
            redirect_url: format!(
                "{}/login/oidc/{name}/callback",
                public_url.trim_end_matches('/')
            ),
        },
        label,
    })
}

impl ServeArgs {
    /// The `--oidc-provider`s with their environment; a name given twice is refused.
    pub fn oidc_providers(&self) -> anyhow::Result<Vec<OidcProviderConfig>> {
        let public_url = self.public_url();
        let mut providers: Vec<OidcProviderConfig> = Vec::new();
        for arg in &self.oidc_providers {
            let provider = oidc_provider(arg, &public_url, |name| std::env::var(name).ok())?;
            if providers
                .iter()
                .any(|known| known.settings.name == provider.settings.name)
            {
                bail!("--oidc-provider {}: given twice", provider.settings.name);
            }
            providers.push(provider);
        }
        Ok(providers)
    }

    /// The public URL in force.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            // A loopback address is `localhost` to browsers: a host name, so passkeys
            // (whose relying party must be one) work in the default run.
            if self.bind.ip().is_loopback() {
                format!("http://localhost:{}", self.bind.port())
            } else {
                format!("http://{}", self.bind)
            }
        })
    }

    /// Checks the combination of options; returns whether cookies must be `Secure`.
    pub fn check(&self) -> anyhow::Result<bool> {
        let public_url = self.public_url();
        let secure = if public_url.starts_with("https://") {
            true
        } else if public_url.starts_with("http://") {
            false
        } else {
            bail!("--public-url must start with http:// or https:// (got {public_url:?})");
        };
        if !secure && !self.bind.ip().is_loopback() && !self.allow_insecure_http {
            bail!(
                "refusing to serve plain http on non-loopback address {}: session cookies would \
                 travel unencrypted. Put TLS in front and pass --public-url https://…, or pass \
                 --allow-insecure-http",
                self.bind
            );
        }
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            bail!("--idle-timeout and --absolute-timeout must be longer than zero");
        }
        if let Some(domain) = &self.cookie_domain {
            check_cookie_domain(domain, &public_url)?;
        }
        if self.header_read_timeout.is_zero()
            || self.body_read_timeout.is_zero()
            || self.connection_idle_timeout.is_zero()
        {
            bail!(
                "--header-read-timeout, --body-read-timeout and --connection-idle-timeout \
                 must be longer than zero"
            );
        }
        if self.max_connections == Some(0) {
            bail!("--max-connections must be at least 1");
        }
        Ok(secure)
    }

    /// The throttling limits from these options.
    pub fn throttle_policy(&self) -> latchkey::throttle::ThrottlePolicy {
        latchkey::throttle::ThrottlePolicy {
            free_failures: self.login_free_failures,
            ip_burst: self.login_ip_burst,
            ip_hourly: self.login_ip_hourly,
            signups_hourly: self.signups_per_ip_hourly,
            new_sessions_hourly: self.new_sessions_per_ip_hourly,
            mails_per_address_hourly: self.mail_requests_per_address_hourly,
            mails_per_ip_hourly: self.mail_requests_per_ip_hourly,
            codes_per_address_hourly: self.codes_per_address_hourly,
            codes_per_ip_hourly: self.codes_per_ip_hourly,
            refused_tokens_hourly: self.refused_tokens_per_ip_hourly,
            ..Default::default()
        }
    }

    /// How long personal access tokens live, from these options.
    pub fn token_lifetime(&self) -> latchkey::access_token::TokenLifetime {
        latchkey::access_token::TokenLifetime {
            max: self.max_token_lifetime,
            allow_none: self.allow_tokens_without_expiry,
            ..Default::default()
        }
    }

    /// The connection limits from these options (see [`crate::web::connections`]), and the
    /// open-file limit the default `--max-connections` was derived from, if it was.
    pub fn connection_limits(&self, hsts: bool) -> (ConnectionLimits, Option<u64>) {
        let (max_connections, file_limit) = match self.max_connections {
            Some(max) => (max, None),
            None => {
                let (max, file_limit) = default_max_connections();
                (max, Some(file_limit))
            }
        };
        let limits = ConnectionLimits {
            header_read: self.header_read_timeout,
            body_read: self.body_read_timeout,
            idle: self.connection_idle_timeout,
            max_connections,
            hsts,
        };
        (limits, file_limit)
    }

    /// Session settings from these options.
    pub fn session_config(&self, secure: bool) -> SessionConfig {
        let config = SessionConfig::default()
            .with_secure(secure)
            .with_idle_timeout(self.idle_timeout)
            .with_absolute_timeout(self.absolute_timeout)
            .with_max_record_bytes(self.max_session_bytes)
            .with_max_keys(self.max_session_keys)
            .with_bearer_tokens(true);
        match &self.cookie_domain {
            Some(domain) => config.with_cookie_domain(domain.to_ascii_lowercase()),
            None => config,
        }
    }
}

/// Refuses a `--cookie-domain` that is no host name, or that the login host (the public
/// URL's) is not in: browsers would drop such a cookie, and nobody could log in.
fn check_cookie_domain(domain: &str, public_url: &str) -> anyhow::Result<()> {
    let domain = domain.to_ascii_lowercase();
    let is_name = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    if !is_name {
        bail!("--cookie-domain {domain:?} is not a domain name (like example.com)");
    }
    let host = url::Url::parse(public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host != domain && !host.ends_with(&format!(".{domain}")) {
        bail!(
            "--cookie-domain {domain} does not hold the login host {host:?} (--public-url): \
             browsers would refuse the session cookie"
        );
    }
    Ok(())
}

/// Minimum length of a secret key.
const MIN_SECRET_BYTES: usize = 32;

/// The server's secret keys, newest first, and where they came from.
pub struct SecretKeys {
    /// The keys; the first signs and encrypts, every one verifies and decrypts.
    pub keys: Vec<Vec<u8>>,
    /// `LATCHKEY_SECRET_KEY`, the key file's path, or "generated for this process".
    pub source: String,
    /// Whether the keys survive a restart (and are shared by processes that read them).
    pub persistent: bool,
}

/// The server's secret keys: `LATCHKEY_SECRET_KEY` if set (several keys separated by
/// commas, newest first, to roll a key over), else the key file beside the database
/// (created with 32 random bytes and mode 0600 on first run; one key per line). Any
/// other database gets a key that lives as long as the process.
pub fn load_secret_key(database: &DatabaseArgs) -> anyhow::Result<SecretKeys> {
    if let Ok(text) = std::env::var("LATCHKEY_SECRET_KEY") {
        let keys: Vec<Vec<u8>> = text
            .split(',')
            .map(|key| key.trim().as_bytes().to_vec())
            .collect();
        if keys.iter().any(|key| key.len() < MIN_SECRET_BYTES) {
            bail!("each key in LATCHKEY_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes long");
        }
        return Ok(SecretKeys {
            keys,
            source: "LATCHKEY_SECRET_KEY".to_string(),
            persistent: true,
        });
    }
    let Some(database_file) = database.database_file() else {
        let mut key = vec![0u8; MIN_SECRET_BYTES];
        latchkey::bytes::random_bytes(&mut key);
        return Ok(SecretKeys {
            keys: vec![key],
            source: "generated for this process".to_string(),
            persistent: false,
        });
    };
    let path = key_path(&database_file);
    Ok(SecretKeys {
        keys: read_or_create_key(&path)?,
        source: path.display().to_string(),
        persistent: true,
    })
}

fn key_path(database_file: &Path) -> PathBuf {
    let mut name = database_file
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".key");
    database_file.with_file_name(name)
}

fn read_or_create_key(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::io::Write;
    if path.exists() {
        warn_if_others_can_read(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read secret key file {}", path.display()))?;
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let key = URL_SAFE_NO_PAD
                .decode(line)
                .with_context(|| format!("secret key file {} is not base64url", path.display()))?;
            if key.len() < MIN_SECRET_BYTES {
                bail!(
                    "secret key file {} holds a key of fewer than {MIN_SECRET_BYTES} bytes",
                    path.display()
                );
            }
            keys.push(key);
        }
        if keys.is_empty() {
            bail!("secret key file {} holds no key", path.display());
        }
        return Ok(keys);
    }
    let mut key = vec![0u8; MIN_SECRET_BYTES];
    latchkey::bytes::random_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create secret key file {}", path.display()))?;
    writeln!(file, "{}", URL_SAFE_NO_PAD.encode(&key))?;
    file.sync_all()?;
    Ok(vec![key])
}

/// Logs a warning when the key file `path` can be read by other users of the machine
/// (whoever reads it can forge forms and, with the cookie store, sessions).
#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = %format!("{mode:o}"),
                "the secret key file can be read by other users of this machine: chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_path: &Path) {}

/// `url` with the SMTP password from `file` (its first line) or `from_env` put in, when
/// either is given; an error when the URL names no user, or holds a password too.
fn with_smtp_password(
    url: &str,
    file: Option<&Path>,
    from_env: Option<String>,
) -> anyhow::Result<String> {
    let password = match (file, from_env) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--smtp-password-file {}", file.display()))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        (None, Some(password)) => password,
        (None, None) => return Ok(url.to_string()),
    };
    if password.is_empty() {
        bail!("the SMTP password (LATCHKEY_SMTP_PASSWORD or --smtp-password-file) is empty");
    }
    let mut parsed = url::Url::parse(url)
        .map_err(|error| anyhow::anyhow!("--smtp-url {}: {error}", redact(url)))?;
    if parsed.username().is_empty() {
        bail!("an SMTP password is set but --smtp-url names no user: write smtp://user@host");
    }
    if parsed.password().is_some() {
        bail!("the SMTP password is given twice: in --smtp-url and in LATCHKEY_SMTP_PASSWORD or --smtp-password-file");
    }
    parsed
        .set_password(Some(&password))
        .map_err(|()| anyhow::anyhow!("--smtp-url {} cannot carry a password", redact(url)))?;
    Ok(parsed.into())
}

/// Whether `url` carries a password (`scheme://user:password@host`).
fn url_has_password(url: &str) -> bool {
    redact(url) != url
}

/// Whether the option `flag` was given on this process's command line (rather than in
/// the environment).
fn on_command_line(flag: &str) -> bool {
    let with_value = format!("{flag}=");
    std::env::args().any(|arg| arg == flag || arg.starts_with(&with_value))
}

/// `url` without the password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_smtp_password_comes_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("smtp-password");
        std::fs::write(&file, "s3cret/with:odd@chars\nignored second line\n").expect("write");
        let url = with_smtp_password("smtps://mailer@mail.example:465", Some(&file), None)
            .expect("a URL with the password");
        assert_eq!(
            url,
            "smtps://mailer:s3cret%2Fwith%3Aodd%40chars@mail.example:465"
        );
        assert!(!redact(&url).contains("s3cret"));
        let url = with_smtp_password("smtp://mailer@relay:25", None, Some("pw".into()))
            .expect("from the environment");
        assert_eq!(url, "smtp://mailer:pw@relay:25");
        assert_eq!(
            with_smtp_password("smtp://relay:25", None, None).expect("untouched"),
            "smtp://relay:25"
        );
        // Refused, with a reason: no user to give it to, a password twice, an empty one.
        let refused = [
            with_smtp_password("smtp://relay:25", None, Some("pw".into())),
            with_smtp_password("smtp://u:old@relay:25", None, Some("pw".into())),
            with_smtp_password("smtp://u@relay:25", None, Some(String::new())),
            with_smtp_password("smtp://u@relay:25", Some(&dir.path().join("absent")), None),
        ];
        for outcome in refused {
            let error = format!("{:#}", outcome.expect_err("refused"));
            assert!(!error.is_empty() && !error.contains(":old@"), "{error}");
        }
        assert!(url_has_password("smtp://u:p@relay"));
        assert!(!url_has_password("smtp://u@relay"));
    }

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["latchkey"];
        argv.extend_from_slice(args);
        Wrapper::parse_from(argv).serve
    }

    #[test]
    fn oidc_providers_read_their_secrets_from_the_environment_only() {
        let env = |name: &str| match name {
            "LATCHKEY_OIDC_CORP_SSO_CLIENT_ID" => Some("the-id".to_string()),
            "LATCHKEY_OIDC_CORP_SSO_CLIENT_SECRET" => Some("the-secret".to_string()),
            "LATCHKEY_OIDC_CORP_SSO_LABEL" => Some("Corp".to_string()),
            "LATCHKEY_OIDC_GOOGLE_CLIENT_ID" => Some("g-id".to_string()),
            _ => None,
        };
        let corp = oidc_provider(
            "corp-sso=https://sso.example.com",
            "http://localhost:8080/",
            env,
        )
        .expect("corp");
        assert_eq!(corp.settings.issuer, "https://sso.example.com");
        assert_eq!(corp.settings.client_id, "the-id");
        assert_eq!(corp.settings.client_secret.as_deref(), Some("the-secret"));
        assert_eq!(
            corp.settings.redirect_url,
            "http://localhost:8080/login/oidc/corp-sso/callback"
        );
        assert_eq!(corp.label, "Corp");
        assert!(!format!("{:?}", corp.settings).contains("the-secret"));
        let github = oidc_provider("github", "https://id.example.com", |name| {
            (name == "LATCHKEY_OIDC_GITHUB_CLIENT_ID").then(|| "gh-id".to_string())
        })
        .expect("github");
        assert_eq!(github.settings.issuer, "https://github.com");
        let microsoft = oidc_provider("microsoft", "https://id.example.com", |name| {
            (name == "LATCHKEY_OIDC_MICROSOFT_CLIENT_ID").then(|| "ms-id".to_string())
        })
        .expect("microsoft");
        assert_eq!(
            microsoft.settings.issuer,
            "https://login.microsoftonline.com/common/v2.0"
        );
        assert_eq!(
            github.settings.redirect_url,
            "https://id.example.com/login/oidc/github/callback"
        );
        let google = oidc_provider("google", "https://id.example.com", env).expect("google");
        assert_eq!(google.settings.issuer, "https://accounts.google.com");
        assert_eq!(google.label, "google");
        assert_eq!(google.settings.client_secret, None);
        for (bad, why) in [
            ("unknown", "NAME=ISSUER_URL"),
            ("Corp=https://x", "a-z, 0-9"),
            ("corp=ftp://x", "http(s) URL"),
            ("other=https://x", "LATCHKEY_OIDC_OTHER_CLIENT_ID"),
        ] {
            let error = oidc_provider(bad, "http://localhost:8080", env)
                .expect_err(bad)
                .to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn https_public_url_means_secure_cookies() {
        let args = parse(&["--public-url", "https://login.example.com"]);
        assert!(args.check().expect("valid"));
        assert_eq!(args.session_config(true).cookie_name(), "__Host-id");
    }

    #[test]
    fn plain_http_on_a_public_address_is_refused() {
        assert!(parse(&["--bind", "0.0.0.0:8080"]).check().is_err());
        assert!(parse(&["--bind", "0.0.0.0:8080", "--allow-insecure-http"])
            .check()
            .is_ok());
        assert!(!parse(&[]).check().expect("loopback http is fine"));
        assert!(parse(&["--public-url", "ftp://x"]).check().is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.db.key");
        let first = read_or_create_key(&path).expect("create");
        let second = read_or_create_key(&path).expect("read");
        assert_eq!(first, second);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].len(), MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn session_stores_parse() {
        assert_eq!("memory".parse(), Ok(SessionStoreKind::Memory));
        assert_eq!("cookie".parse(), Ok(SessionStoreKind::Cookie));
        assert_eq!(
            "redis://127.0.0.1:6379".parse(),
            Ok(SessionStoreKind::Redis("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            "redis-cluster://127.0.0.1:7000,127.0.0.1:7001".parse(),
            Ok(SessionStoreKind::Redis(
                "redis-cluster://127.0.0.1:7000,127.0.0.1:7001".into()
            ))
        );
        assert!("mysql://x".parse::<SessionStoreKind>().is_err());
        let args = parse(&[
            "--session-store",
            "redis://h",
            "--session-mirror",
            "database",
        ]);
        assert_eq!(
            args.sessions.session_mirrors,
            vec![SessionStoreKind::Database]
        );
    }

    #[test]
    fn database_file_is_found_in_sqlite_urls() {
        let mut args = parse(&[]).database;
        assert_eq!(args.database_file(), Some(PathBuf::from("latchkey.db")));
        args.database_url = "sqlite:///tmp/x/app.db?mode=rwc".into();
        assert_eq!(args.database_file(), Some(PathBuf::from("/tmp/x/app.db")));
        args.database_url = "sqlite::memory:".into();
        assert_eq!(args.database_file(), None);
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://latchkey.db"), "sqlite://latchkey.db");
        assert_eq!(redact("redis://:pw@host"), "redis://:***@host");
    }
}
