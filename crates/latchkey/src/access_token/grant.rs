//! Making, checking and revoking personal access tokens: the rules every caller (the
//! account endpoints, the command line, the auth floor's bearer check) shares.

use super::store::{AccessTokenRecord, AccessTokenStore, AccessTokenStoreError};
use super::{AccessToken, TokenFormatError};
use crate::bytes::{lower_hex, random_bytes};
use crate::time::Timestamp;
use std::time::Duration;

/// A use is recorded at most this often per token.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Longest token name.
pub const MAX_NAME_CHARS: usize = 100;

/// The scopes tokens may carry and which of them a request needs. The server's are
/// [`TokenScopes::read_write`]; an application names its own with [`TokenScopes::new`].
#[derive(Clone, Debug)]
pub struct TokenScopes {
    known: Vec<String>,
    /// The scopes, any one of which lets a request with this method and path through.
    needed: fn(method: &str, path: &str) -> &'static [&'static str],
}

impl TokenScopes {
    /// `read` (safe methods: GET, HEAD, OPTIONS) and `write` (every method).
    pub fn read_write() -> Self {
        TokenScopes {
            known: vec!["read".into(), "write".into()],
            needed: |method, _| match method {
                "GET" | "HEAD" | "OPTIONS" => &["read", "write"],
                _ => &["write"],
            },
        }
    }

    /// The scopes `known`, and `needed`: for a request's method and path, the scopes any
    /// one of which lets it through (empty: no token may).
    pub fn new(known: &[&str], needed: fn(&str, &str) -> &'static [&'static str]) -> Self {
        TokenScopes {
            known: known.iter().map(|scope| scope.to_string()).collect(),
            needed,
        }
    }

    /// The scopes a token may carry.
    pub fn known(&self) -> &[String] {
        &self.known
    }

    /// Whether a token with `scopes` may make a request with `method` to `path`.
    pub fn allows(&self, scopes: &[String], method: &str, path: &str) -> bool {
        (self.needed)(method, path)
            .iter()
            .any(|needed| scopes.iter().any(|scope| scope == needed))
    }
}

/// How long tokens live.
#[derive(Clone, Debug)]
pub struct TokenLifetime {
    /// When none is asked for (90 days).
    pub default: Duration,
    /// The longest that may be asked for.
    pub max: Duration,
    /// Whether a token may be made without an expiry (the administrator's choice).
    pub allow_none: bool,
}

impl Default for TokenLifetime {
    fn default() -> Self {
        TokenLifetime {
            default: Duration::from_secs(90 * 86_400),
            max: Duration::from_secs(366 * 86_400),
            allow_none: false,
        }
    }
}

/// What a new token is asked to be.
#[derive(Clone, Debug)]
pub struct NewAccessToken {
    /// Its owner.
    pub user_id: String,
    /// What the owner calls it (1 to 100 characters).
    pub name: String,
    /// Its scopes (at least one, each known).
    pub scopes: Vec<String>,
    /// How long it lives: `None` the default, `Some(None)` for ever (where allowed).
    pub lifetime: Option<Option<Duration>>,
}

/// Why a token was not made: the field at fault and a sentence for people, or the store.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The request is not acceptable; nothing was stored.
    #[error("{message}")]
    Invalid {
        /// `name`, `scopes` or `expires_in_days`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] AccessTokenStoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> IssueError {
    IssueError::Invalid {
        field,
        message: message.into(),
    }
}

/// Makes a token as `new` asks, within `scopes` and `lifetime`, and stores its hash: the
/// token (to show once) and its record.
pub async fn issue(
    store: &dyn AccessTokenStore,
    scopes: &TokenScopes,
    lifetime: &TokenLifetime,
    new: NewAccessToken,
    now: Timestamp,
) -> Result<(AccessToken, AccessTokenRecord), IssueError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("a token needs a name of 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "a token's name has no control characters"));
    }
    let mut asked: Vec<String> = new.scopes.clone();
    asked.sort();
    asked.dedup();
    if asked.is_empty() {
        return Err(invalid(
            "scopes",
            format!(
                "a token needs at least one scope of {}",
                scopes.known().join(", ")
            ),
        ));
    }
    if let Some(unknown) = asked.iter().find(|scope| !scopes.known().contains(scope)) {
        return Err(invalid(
            "scopes",
            format!(
                "unknown scope {unknown:?}: the scopes are {}",
                scopes.known().join(", ")
            ),
        ));
    }
    let expires_at = match new.lifetime {
        None => Some(now.plus(lifetime.default.min(lifetime.max))),
        Some(None) if lifetime.allow_none => None,
        Some(None) => {
            return Err(invalid(
                "expires_in_days",
                "every token expires here: ask for a number of days",
            ))
        }
        Some(Some(asked)) if asked.is_zero() || asked > lifetime.max => {
            return Err(invalid(
                "expires_in_days",
                format!(
                    "a token lives 1 to {} days",
                    lifetime.max.as_secs() / 86_400
                ),
            ))
        }
        Some(Some(asked)) => Some(now.plus(asked)),
    };
    let token = AccessToken::generate();
    let mut id = [0u8; 12];
    random_bytes(&mut id);
    let record = AccessTokenRecord {
        id: lower_hex(&id),
        user_id: new.user_id,
        name: name.to_string(),
        prefix: token.shown().to_string(),
        scopes: asked,
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    store.insert(&record, &token.hash()).await?;
    audit!(info, "access_token_created", user_id = %record.user_id, token = %record.id, scopes = %record.scopes.join(" "));
    Ok((token, record))
}

/// Revokes the token `id` (only `user_id`'s, when given); whether one not yet revoked
/// was.
pub async fn revoke(
    store: &dyn AccessTokenStore,
    id: &str,
    user_id: Option<&str>,
) -> Result<bool, AccessTokenStoreError> {
    let revoked = store.revoke(id, user_id, Timestamp::now()).await?;
    if revoked {
        audit!(info, "access_token_revoked", token = %id);
    }
    Ok(revoked)
}

/// Why a bearer access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// It has no token's shape, or its checksum is wrong.
    Malformed(TokenFormatError),
    /// No token has it (a guess, or one deleted with its user).
    Unknown,
    /// It expired.
    Expired,
    /// It was revoked.
    Revoked,
    /// The gate refused its owner (disabled or gone, or an address not verified where
    /// one must be).
    OwnerRefused,
    /// Its scopes do not allow this request.
    Scope,
}

impl TokenRefusal {
    /// Its name in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRefusal::Malformed(_) => "malformed",
            TokenRefusal::Unknown => "unknown",
            TokenRefusal::Expired => "expired",
            TokenRefusal::Revoked => "revoked",
            TokenRefusal::OwnerRefused => "owner_refused",
            TokenRefusal::Scope => "scope",
        }
    }

    /// Whether the token itself is no good (malformed, unknown, expired, revoked): what
    /// a throttle of guesses counts. A good token used beyond its scopes, or whose
    /// owner is refused, is no guess.
    pub fn is_bad_token(self) -> bool {
        !matches!(self, TokenRefusal::OwnerRefused | TokenRefusal::Scope)
    }
}

impl AccessTokenRecord {
    /// Why the token cannot be used at `now` (revoked, expired), if it cannot.
    pub fn refusal_at(&self, now: Timestamp) -> Option<TokenRefusal> {
        if self.revoked_at.is_some() {
            Some(TokenRefusal::Revoked)
        } else if !self.is_live(now) {
            Some(TokenRefusal::Expired)
        } else {
            None
        }
    }
}

/// The token whose text is `text`, revoked and expired ones included: one parse (a
/// typo is refused by its checksum, with no lookup), one SHA-256, one lookup.
pub async fn find(
    store: &dyn AccessTokenStore,
    text: &str,
) -> Result<Result<AccessTokenRecord, TokenRefusal>, AccessTokenStoreError> {
    let token = match AccessToken::parse(text) {
        Ok(token) => token,
        Err(error) => return Ok(Err(TokenRefusal::Malformed(error))),
    };
    Ok(store
        .find(&token.hash())
        .await?
        .ok_or(TokenRefusal::Unknown))
}

/// Records a use of the accepted token `record` at `now`, unless one was recorded within
/// [`LAST_USED_EVERY`]: no write on most requests. A failed write is logged, never the
/// request's failure.
pub async fn record_use(store: &dyn AccessTokenStore, record: &AccessTokenRecord, now: Timestamp) {
    let recent = now.minus(LAST_USED_EVERY);
    if record.last_used_at.is_some_and(|used| used > recent) {
        return;
    }
    if let Err(error) = store.touch(&record.id, now, recent).await {
        tracing::warn!(%error, token = %record.id, "a token's last use was not recorded");
    }
}

/// Why [`find_live`] refused a token, with its record when there is one (a revoked or
/// expired token's, for the audit).
#[derive(Debug)]
pub struct NotLive {
    /// Why.
    pub refusal: TokenRefusal,
    /// The token's record, unless the text named none.
    pub record: Option<AccessTokenRecord>,
}

/// The token whose text is `text`, if it is live at `now` ([`find`], then neither
/// revoked nor expired). Its use is not recorded: [`record_use`] once it is accepted.
pub async fn find_live(
    store: &dyn AccessTokenStore,
    text: &str,
    now: Timestamp,
) -> Result<Result<AccessTokenRecord, NotLive>, AccessTokenStoreError> {
    Ok(match find(store, text).await? {
        Err(refusal) => Err(NotLive {
            refusal,
            record: None,
        }),
        Ok(record) => match record.refusal_at(now) {
            Some(refusal) => Err(NotLive {
                refusal,
                record: Some(record),
            }),
            None => Ok(record),
        },
    })
}

/// The token `text` at `now`, for an application that checks tokens itself: its record
/// if it is live (its use recorded), why not otherwise. The auth layer does the same
/// with the gate and the scopes between [`find_live`] and [`record_use`].
pub async fn check(
    store: &dyn AccessTokenStore,
    text: &str,
    now: Timestamp,
) -> Result<Result<AccessTokenRecord, TokenRefusal>, AccessTokenStoreError> {
    let record = match find_live(store, text, now).await? {
        Ok(record) => record,
        Err(not_live) => return Ok(Err(not_live.refusal)),
    };
    record_use(store, &record, now).await;
    Ok(Ok(record))
}
