//! Wiring: stores, the router, the cleanup task and graceful shutdown.

use crate::backend::Backend as Stores;
use crate::config::{load_secret_key, ServeArgs, SessionStoreKind};
use crate::data_api;
use crate::factors::second_factor::ServerFactors;
use crate::web::bearer_throttle::BearerThrottle;
use crate::web::connections;
use crate::web::forwarded::TrustedProxies;
use crate::web::headers;
use crate::web::state::{
    ApiTokens, AppState, ForwardAuth, MailFlows, PasskeyFlows, Provider, Providers, Shared,
    TokenLifetimes, MAIL_REQUESTS_IN_FLIGHT,
};
use crate::web::submission::limited;
use crate::web::templates::Templates;
use crate::web::throttling::{ClientAddress, NewSessionCap};
use anyhow::bail;
use anyhow::Context;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use latchkey::access_token::store::SqliteAccessTokens;
use latchkey::access_token::TokenLifetime;
use latchkey::csrf::CsrfKey;
use latchkey::factors::passkeys::{PasskeyStore, Url, WebauthnBuilder};
use latchkey::factors::SecondFactors;
use latchkey::mail::outbox::{Outbox, OutboxPolicy, OutboxWorker, SqliteOutbox};
use latchkey::mail::{LogMailer, MailSeal};
use latchkey::oidc::github::GithubProvider;
use latchkey::oidc::identities::SqliteIdentityStore;
use latchkey::oidc::{IdentityProvider, OidcProvider};
use latchkey::remember::RememberStore;
use latchkey::store::{CachedStore, CookieStore, MemoryStore, StoreRevocations};
use latchkey::throttle::Throttle;
use latchkey::user::tokens::{EmailTokens, TokenStore};
use latchkey::{AuthLayer, AuthService, SessionService};
use latchkey::{
    Authenticator, PasswordBackend, PasswordHasher, PasswordPolicy, SessionLayer, SessionStore,
    Timestamp, User, UserStore,
};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::util::MapResponse;
use tower::Layer;

/// Most sessions the in-process cache holds.
const SESSION_CACHE_CAPACITY: u64 = 100_000;

/// Sessions deleted per cleanup statement.
const CLEANUP_BATCH: u32 = 500;

/// The whole server: pages and JSON API on the same paths, behind the session layer
/// (which carries the user loader) and the security headers. Served as one service per
/// connection ([`App::for_peer`]), not as a `Router` with layers: that cost a boxed clone,
/// a second route lookup and two request extensions (the peer address and the body limit)
/// on every request.
#[derive(Clone)]
pub struct App {
    sessions: SessionService<BearerThrottle<AuthService<Router, User>>>,
    hsts: bool,
    proxies: TrustedProxies,
}

impl App {
    /// The service for one connection from `peer`: every request carries the client's
    /// address (the peer, or behind a trusted proxy the client it forwards for) as
    /// axum's `ConnectInfo`, which sessions (the address of "your sessions", the cap on
    /// new sessions) and throttling (`ClientIp`) read.
    pub fn for_peer(&self, peer: SocketAddr) -> Connection {
        ClientAddress::new(self.service(), peer, self.proxies.clone())
    }

    /// The service with no peer address (for driving the server in process).
    pub fn service(&self) -> Secured {
        let add: fn(Response) -> Response = if self.hsts {
            |response| headers::secure(response, true)
        } else {
            |response| headers::secure(response, false)
        };
        MapResponse::new(self.sessions.clone(), add)
    }
}

/// The served routes behind the session layer, with the security headers added to every
/// answer.
pub type Secured = MapResponse<
    SessionService<BearerThrottle<AuthService<Router, User>>>,
    fn(Response) -> Response,
>;

/// [`Secured`] for one connection: its requests carry the client's address.
pub type Connection = ClientAddress<Secured>;

/// The server's routes (see [`App`]): auth (with its authenticator) inside the session
/// layer.
pub fn router(
    state: AppState,
    sessions: SessionLayer,
    authenticator: Authenticator<User>,
    data_api: bool,
    hsts: bool,
) -> App {
    let mut routes = Router::new();
    if data_api {
        routes = routes
            .route("/api/session/data", get(data_api::read_all))
            .route("/api/session/data/{key}", put(limited(data_api::put)))
            .route(
                "/api/session/data/{key}/increment",
                post(limited(data_api::increment)),
            );
    }
    let routes = routes
        .route("/style.css", get(headers::stylesheet))
        .route("/app.js", get(headers::script))
        .route("/openapi.json", get(crate::openapi::document))
        .merge(crate::login::routes())
        .merge(crate::account::routes())
        .merge(crate::sessions::routes())
        .merge(crate::password::routes())
        .merge(crate::mail::routes())
        .merge(crate::factors::routes())
        .merge(crate::providers::routes())
        .merge(crate::tokens::routes())
        .merge(if state.forward.is_some() {
            crate::forward::routes()
        } else {
            Router::new()
        })
        .fallback(crate::web::fallback::not_found)
        .method_not_allowed_fallback(crate::web::fallback::method_not_allowed);
    App {
        sessions: sessions
            .with_new_session_policy(NewSessionCap(state.throttle.clone()))
            .layer(BearerThrottle::new(
                state.throttle.clone(),
                AuthLayer::new(authenticator).layer(routes.with_state(state)),
            )),
        hsts,
        proxies: state.proxies.clone(),
    }
}

/// Forward authentication from `--access-rules`, its file checked now: a bad file stops
/// the start with its line and reason.
fn forward_auth(args: &ServeArgs) -> anyhow::Result<Option<ForwardAuth>> {
    let Some(file) = &args.access_rules else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read --access-rules {}", file.display()))?;
    let rules = latchkey::access_rules::AccessRules::parse(&text)
        .map_err(|error| anyhow::anyhow!("--access-rules {}: {error}", file.display()))?;
    if args.trusted_proxies.is_empty() {
        tracing::warn!(
            "--access-rules without --trusted-proxy: no proxy may ask /auth/nginx or /auth/forward"
        );
    }
    tracing::info!(file = %file.display(), rules = rules.rules().len(), "access rules loaded");
    Ok(Some(ForwardAuth::new(file.clone(), rules)))
}

/// Reads the access rules again at every SIGHUP; a bad file keeps the rules in force
/// (logged with its line and reason).
async fn reload_rules_on_sighup(forward: &'static ForwardAuth) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: the access rules are read at start only");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match forward.reload() {
                Ok(count) => tracing::info!(rules = count, "access rules read again"),
                Err(error) => {
                    tracing::error!(%error, "access rules not changed: the file was refused")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = forward;
}

/// The secret of [`in_memory_router`]'s tokens and sealed mail.
const IN_MEMORY_SECRET: &[u8] = b"in-memory router";

/// The whole router over a private in-memory SQLite database, memory sessions and cheap
/// hashing, with the default limits: for driving the server in process (fuzzing).
pub async fn in_memory_router() -> anyhow::Result<Router> {
    let pool = latchkey::store::open_sqlite("sqlite::memory:").await?;
    let users: Arc<dyn UserStore> = Arc::new(latchkey::SqliteUserStore::new(pool.clone()));
    let outbox: Arc<dyn Outbox> = Arc::new(SqliteOutbox::new(pool.clone()));
    let backend = Arc::new(PasswordBackend::new(
        users,
        PasswordHasher::new(latchkey::HashParams::insecure_fast())?,
    ));
    let state = AppState::new(Shared {
        backend: backend.clone(),
        policy: PasswordPolicy::default(),
        templates: Templates::new(None),
        public_origin: "http://localhost".into(),
        throttle: Throttle::new(
            Arc::new(latchkey::throttle::MemoryThrottleStore::new()),
            latchkey::throttle::ThrottlePolicy::default(),
        ),
        proxies: TrustedProxies::default(),
        csrf: CsrfKey::generate(),
        factors: Arc::new(SecondFactors::new(pool.clone(), IN_MEMORY_SECRET)),
        passkeys: passkey_flows(
            "http://localhost",
            Arc::new(latchkey::factors::passkeys::SqlPasskeys::new(pool.clone())),
        ),
        mail: MailFlows {
            tokens: Arc::new(EmailTokens::new(pool.clone(), IN_MEMORY_SECRET)),
            outbox: outbox.clone(),
            seal: MailSeal::new(IN_MEMORY_SECRET),
            worker: OutboxWorker::new(outbox, Arc::new(LogMailer), OutboxPolicy::default())
                .with_seal(MailSeal::new(IN_MEMORY_SECRET)),
            public_url: "http://localhost".into(),
            lifetimes: TokenLifetimes::default(),
            require_verified_email: false,
            reset_logs_in: false,
            background: Arc::new(Semaphore::new(MAIL_REQUESTS_IN_FLIGHT)),
        },
        providers: Providers {
            list: Vec::new(),
            identities: Arc::new(SqliteIdentityStore::new(pool.clone())),
        },
        tokens: ApiTokens {
            store: Arc::new(SqliteAccessTokens::new(pool.clone())),
            lifetime: TokenLifetime::default(),
            bearer_sessions: true,
        },
        forward: None,
        groups: Arc::new(latchkey::user::groups::SqlGroups::new(pool.clone())),
    });
    let sessions = SessionLayer::new(
        MemoryStore::new(),
        latchkey::SessionConfig::insecure_for_local_development().with_bearer_tokens(true),
    );
    let authenticator = Authenticator::new(backend)
        .with_second_factors(ServerFactors(state))
        .with_access_tokens(state.tokens.store.clone(), ApiTokens::scopes());
    let app = router(state, sessions, authenticator, true, false);
    Ok(Router::new().fallback_service(app.service()))
}

/// The `--oidc-provider`s, each discovered (its issuer checked); a provider that cannot
/// be discovered stops the start with its reason. Each one's redirect URI is logged:
/// it is what the provider must have registered.
async fn discover_providers(args: &ServeArgs, secret: &[u8]) -> anyhow::Result<Vec<Provider>> {
    let mut providers = Vec::new();
    for config in args.oidc_providers()? {
        let name = config.settings.name.clone();
        let issuer = config.settings.issuer.clone();
        // The name `github` is GitHub's OAuth 2 (github.com, or an Enterprise Server's
        // URL); every other name is an OpenID Connect provider, discovered now.
        let client = if name == "github" {
            IdentityProvider::Github(Box::new(
                GithubProvider::new(config.settings, secret)
                    .with_context(|| format!("--oidc-provider {name}"))?,
            ))
        } else {
            IdentityProvider::Oidc(Box::new(
                OidcProvider::discover(config.settings, secret)
                    .await
                    .with_context(|| {
                        format!("--oidc-provider {name}: discovery at {issuer} failed")
                    })?,
            ))
        };
        tracing::info!(provider = %name, issuer = %client.issuer(), redirect_uri = %client.redirect_url(), "sign-in with another provider: register this redirect URI there");
        providers.push(Provider {
            client,
            label: config.label,
        });
    }
    Ok(providers)
}

/// Passkeys for the site at `public_url` (its host is the relying-party id, its origin
/// the one browsers must report); off, with the reason logged, when the URL has no host
/// name (WebAuthn does not take IP addresses).
fn passkey_flows(public_url: &str, store: Arc<dyn PasskeyStore>) -> Option<PasskeyFlows> {
    let built = Url::parse(public_url)
        .map_err(|error| error.to_string())
        .and_then(|origin| {
            let host = origin
                .domain()
                .ok_or("the public URL has no host name (an IP address)")?;
            WebauthnBuilder::new(host, &origin)
                .and_then(|builder| builder.rp_name("latchkey").build())
                .map_err(|error| error.to_string())
        });
    match built {
        Ok(webauthn) => Some(PasskeyFlows { webauthn, store }),
        Err(why) => {
            tracing::info!(public_url, %why, "passkeys are off (use a --public-url with a host name, e.g. http://localhost:PORT)");
            None
        }
    }
}

/// `scheme://host[:port]` of a URL (its path dropped).
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let secure = args.check()?;
    let secrets = load_secret_key(&args.database)?;
    let fingerprint = Sha256::digest(&secrets.keys[0]);
    tracing::info!(
        source = %secrets.source,
        keys = secrets.keys.len(),
        fingerprint = %format!("{:02x}{:02x}{:02x}{:02x}", fingerprint[0], fingerprint[1], fingerprint[2], fingerprint[3]),
        "secret key loaded"
    );

    if !secrets.persistent {
        tracing::warn!(
            "the secret key is this process's own: forms it shows, codes it mails and the \
             mail it queues (sealed with it) are refused or lost by any other process and \
             after a restart; set LATCHKEY_SECRET_KEY when several processes serve"
        );
    }
    let backend = Stores::open(&args.database).await?;
    let throttle = Throttle::new(
        backend.throttle_store(&args.sessions).await?,
        args.throttle_policy(),
    );
    let users = Arc::new(PasswordBackend::new(
        backend.users.clone(),
        args.database.hasher()?,
    ));
    // Mail leaves from the outbox in the background, never on a request's path.
    let mailer = args.mail.mailer()?;
    tracing::info!(to = %args.mail.describe(), "mail goes to");
    let seal = MailSeal::new(&secrets.keys[0]);
    let worker = OutboxWorker::new(backend.outbox.clone(), mailer, OutboxPolicy::default())
        .with_seal(seal.clone());
    let public_url = args.public_url().trim_end_matches('/').to_string();
    let state = AppState::new(Shared {
        mail: MailFlows {
            tokens: backend.email_tokens(&secrets.keys[0]),
            outbox: backend.outbox.clone(),
            seal,
            worker: worker.clone(),
            public_url,
            lifetimes: TokenLifetimes {
                reset: args.mail.reset_token_ttl,
                verify: args.mail.verify_token_ttl,
                sign_in: args.mail.sign_in_token_ttl,
            },
            require_verified_email: args.mail.require_verified_email,
            reset_logs_in: args.mail.reset_logs_in,
            background: Arc::new(Semaphore::new(MAIL_REQUESTS_IN_FLIGHT)),
        },
        backend: users.clone(),
        policy: args.database.policy(),
        templates: Templates::new(args.templates.clone()),
        public_origin: origin_of(&args.public_url()),
        throttle: throttle.clone(),
        proxies: TrustedProxies {
            addresses: args.trusted_proxies.clone().into(),
            header: args.forwarded_header,
        },
        csrf: CsrfKey::derive(&secrets.keys[0]),
        factors: backend.second_factors(&secrets.keys[0]),
        passkeys: passkey_flows(&args.public_url(), backend.passkeys()),
        providers: Providers {
            list: discover_providers(&args, &secrets.keys[0]).await?,
            identities: backend.identities(),
        },
        tokens: ApiTokens {
            store: backend.access_tokens(),
            lifetime: args.token_lifetime(),
            bearer_sessions: args.sessions.session_store != SessionStoreKind::Cookie,
        },
        forward: forward_auth(&args)?,
        groups: backend.groups(),
    });
    if let Some(forward) = &state.shared().forward {
        tokio::spawn(reload_rules_on_sighup(forward));
    }
    let authenticator = Authenticator::new(users)
        .with_unauthorized_message("I can't let you do that")
        .with_fresh_within(args.fresh_login_window)
        .with_remember_store(backend.remember.clone())
        .with_second_factors(ServerFactors(state))
        .with_verified_email_required(args.mail.require_verified_email)
        .with_second_step_within(args.second_factor_timeout)
        .with_access_tokens(state.tokens.store.clone(), ApiTokens::scopes());
    let config = args.session_config(secure);
    // The store the sweeper cleans: the session store, or the cookie store's revocations.
    let (sessions, swept) = if args.sessions.session_store == SessionStoreKind::Cookie {
        if !args.sessions.session_mirrors.is_empty() || args.session_cache.is_some() {
            bail!("--session-store cookie takes no --session-mirror or --session-cache");
        }
        if !secrets.persistent {
            bail!(
                "--session-store cookie needs a key every process shares and that survives \
                 restarts: set LATCHKEY_SECRET_KEY (or use a SQLite database, whose key file \
                 is created beside it)"
            );
        }
        let cookies = CookieStore::new(&secrets.keys)?
            .with_revocations(StoreRevocations::new(backend.sessions.clone()));
        (
            SessionLayer::with_storage(cookies, config),
            backend.sessions.clone(),
        )
    } else {
        let store = backend.session_store(&args.sessions).await?;
        let served: Arc<dyn SessionStore> = match args.session_cache {
            Some(ttl) => match backend.session_feed(&args.sessions).await? {
                Some(feed) => Arc::new(CachedStore::with_feed(
                    store.clone(),
                    ttl,
                    SESSION_CACHE_CAPACITY,
                    feed,
                )),
                None => {
                    if let (SessionStoreKind::Database, Some(why)) =
                        (&args.sessions.session_store, backend.sessions_feed_missing)
                    {
                        tracing::warn!(
                            ttl = %humantime::format_duration(ttl),
                            "session cache without change notifications ({why}): another \
                             process's logout or change is seen here up to --session-cache \
                             later; keep it short"
                        );
                    }
                    Arc::new(CachedStore::new(store.clone(), ttl, SESSION_CACHE_CAPACITY))
                }
            },
            None => store.clone(),
        };
        (SessionLayer::from_arc(served, config), store)
    };
    let app = router(
        state,
        sessions,
        authenticator,
        args.enable_session_data_api,
        secure,
    );

    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until(async {
        let _ = worker_stopped.await;
    }));

    tokio::spawn(sweep_expired(
        swept,
        backend.remember,
        state.mail.tokens.clone(),
        throttle,
        args.cleanup_interval,
    ));

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        public_url = %args.public_url(),
        store = %args.sessions.session_store,
        mirrors = args.sessions.session_mirrors.len(),
        cache = ?args.session_cache,
        "latchkey listening"
    );
    let (limits, file_limit) = args.connection_limits(secure);
    tracing::info!(
        max_connections = limits.max_connections,
        why = %match file_limit {
            Some(files) => format!(
                "open-file limit {files} less {} descriptors for stores and files",
                crate::web::connections::DESCRIPTOR_HEADROOM
            ),
            None => "--max-connections".to_string(),
        },
        header_read_timeout = ?limits.header_read,
        body_read_timeout = ?limits.body_read,
        connection_idle_timeout = ?limits.idle,
        "connection limits"
    );
    connections::serve(
        listener,
        limits,
        move |peer| app.for_peer(peer),
        shutdown_signal(),
    )
    .await;
    finish_accepted_mail_requests(&state.mail.background).await;
    // The outbox worker finishes the sends under way (each within the SMTP timeout), so
    // no mail stays claimed by a process that is gone.
    let _ = stop_worker.send(());
    if tokio::time::timeout(MAIL_REQUESTS_DRAIN, worker)
        .await
        .is_err()
    {
        tracing::warn!("stopping with mail being sent: it goes out again when its lease ends");
    }
    tracing::info!("latchkey stopped");
    Ok(())
}

/// How long a graceful stop waits for the mail requests already answered 202.
const MAIL_REQUESTS_DRAIN: Duration = Duration::from_secs(30);

/// Waits (at most [`MAIL_REQUESTS_DRAIN`]) until every mail request already answered 202
/// has been worked on (its mail, if any, is then in the durable outbox), by taking back
/// every permit of `background`; logs what a timeout leaves undone.
async fn finish_accepted_mail_requests(background: &Semaphore) {
    let all = MAIL_REQUESTS_IN_FLIGHT as u32;
    let in_flight = MAIL_REQUESTS_IN_FLIGHT - background.available_permits();
    if in_flight == 0 {
        return;
    }
    tracing::info!(
        in_flight,
        "finishing accepted mail requests before stopping"
    );
    match tokio::time::timeout(MAIL_REQUESTS_DRAIN, background.acquire_many(all)).await {
        Ok(_) => tracing::info!(in_flight, "accepted mail requests finished"),
        Err(_) => tracing::warn!(
            left = MAIL_REQUESTS_IN_FLIGHT - background.available_permits(),
            "stopping with accepted mail requests unfinished: their mail is not sent"
        ),
    }
}

/// Deletes expired sessions, remember-me tokens and mailed tokens every `interval`, in batches of
/// [`CLEANUP_BATCH`] until none are left, so no statement holds the database for long.
async fn sweep_expired(
    store: Arc<dyn SessionStore>,
    remember: Arc<dyn RememberStore>,
    tokens: Arc<dyn TokenStore>,
    throttle: Throttle,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        sweep_in_batches("sessions", |now| store.delete_expired(now, CLEANUP_BATCH)).await;
        sweep_in_batches("remember-me tokens", |now| {
            remember.delete_expired(now, CLEANUP_BATCH)
        })
        .await;
        sweep_in_batches("mailed tokens", |now| {
            tokens.delete_expired(now, CLEANUP_BATCH)
        })
        .await;
        // Counters untouched for the longest window (an hour) count nothing any more:
        // anonymous requests for new addresses leave at most an hour's worth of rows.
        sweep_in_batches("throttle counters", |now| {
            throttle
                .store()
                .delete_stale(throttle.stale_before(now), CLEANUP_BATCH)
        })
        .await;
    }
}

/// Runs `delete` until a batch comes back short; logs the total or the failure.
async fn sweep_in_batches<F, Fut, E>(what: &str, delete: F)
where
    F: Fn(Timestamp) -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
    E: std::fmt::Display,
{
    let mut total = 0;
    loop {
        match delete(Timestamp::now()).await {
            Ok(deleted) => {
                total += deleted;
                if deleted < u64::from(CLEANUP_BATCH) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, what, "expiry sweep failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, what, "expired entries swept");
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
