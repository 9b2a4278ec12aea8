//! Single-use tokens for the mail flows (verifying an address, resetting a password,
//! signing in by link or code, changing the address): 32 random bytes for the link, of
//! which only the SHA-256 is stored, with purpose, user, target address and expiry, and
//! for sign-in a 6-digit code stored as an HMAC under a server key.
//!
//! * A token is used at most once: redeeming deletes its row in one statement, so of two
//!   requests racing for one token exactly one wins.
//! * Issuing a token of a purpose for a user deletes that user's older ones of the same
//!   purpose (an older reset link dies when a newer one is sent).
//! * Ten wrong codes burn the token.
//! * [`EmailTokens::peek`] reads without consuming: a page opened from a link (or by a
//!   mail scanner prefetching it) only shows a form; the form's POST redeems.

use crate::mail::{Mail, MailSeal};
use crate::session::SessionToken;
use crate::store_error::StoreFailure;
use crate::time::Timestamp;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub use super::TokenPurpose;

crate::store_error::store_error!(
    /// Why a mailed-token store failed.
    TokenStoreError,
    "mailed-token store"
);

/// Wrong codes after which a token is burnt.
pub const MAX_CODE_ATTEMPTS: u32 = 10;

/// A token just issued: what goes in the mail, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// For the link: 43 base64url characters.
    pub token: String,
    /// The 6-digit code, when one was asked for.
    pub code: Option<String>,
}

impl IssuedToken {
    /// A new random token (and a 6-digit code if `with_code`), not yet stored: build the
    /// mail from it, then store both with [`TokenStore::issue_with_mail`].
    pub fn generate(with_code: bool) -> Self {
        IssuedToken {
            token: SessionToken::generate().encode(),
            code: with_code.then(six_digits),
        }
    }

    /// The SHA-256 the database keeps in place of the token (64 hex characters).
    fn id_hash(&self) -> Result<String, TokenStoreError> {
        SessionToken::parse(&self.token)
            .map(|token| token.id().to_hex())
            .ok_or_else(|| TokenStoreError::Corrupt("an issued token that does not parse".into()))
    }
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedToken(<redacted>)")
    }
}

/// Whose token it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// The user.
    pub user_id: i64,
    /// The address the token was sent to.
    pub email: String,
}

/// How a code attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// The right code: the token is used up.
    Redeemed(TokenOwner),
    /// A wrong code; this many attempts are left.
    Wrong(u32),
    /// No live token for that address (none sent, expired, used, or burnt by wrong codes).
    NoToken,
}

/// Where mail-flow tokens live (the `email_tokens` table), with the key their codes
/// are bound under.
#[derive(Clone)]
pub struct EmailTokens<P> {
    pool: P,
    code_key: [u8; 32],
    seal: MailSeal,
}

impl<P> std::fmt::Debug for EmailTokens<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailTokens(..)")
    }
}

impl<P> EmailTokens<P> {
    /// Tokens in `pool`'s database; codes are stored as HMACs under a key derived from
    /// `secret` (the server's secret key), so a copy of the database cannot try all
    /// million codes offline, and the mails that carry tokens are queued sealed under
    /// the same secret ([`MailSeal`]; give the outbox worker `MailSeal::new(secret)`),
    /// so the raw token is in no database file.
    pub fn new(pool: P, secret: &[u8]) -> Self {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
        mac.update(b"latchkey email token codes v1");
        EmailTokens {
            pool,
            code_key: mac.finalize().into_bytes().into(),
            seal: MailSeal::new(secret),
        }
    }

    fn code_mac(&self, id_hash: &str, code: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.code_key)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(id_hash.as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        crate::bytes::lower_hex(&mac.finalize().into_bytes())
    }
}

/// HMAC takes keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    unreachable!("HMAC-SHA256 accepts keys of any length")
}

/// Six uniformly random digits.
fn six_digits() -> String {
    six_digits_from(|| {
        let mut bytes = [0u8; 4];
        crate::bytes::random_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    })
}

/// Six digits from the first of `next`'s words that [`code_from_word`] accepts.
fn six_digits_from(mut next: impl FnMut() -> u32) -> String {
    loop {
        if let Some(code) = code_from_word(next()) {
            return code;
        }
    }
}

/// Below this, every code is `value % 1_000_000` of exactly 4,294 words.
const CODE_WORDS: u32 = 4_294_000_000;

/// The code for one random word, or `None` for a word of the top sliver (the 967,296
/// words from [`CODE_WORDS`] up), which would make codes below 967,296 more likely:
/// the caller draws again.
fn code_from_word(value: u32) -> Option<String> {
    (value < CODE_WORDS).then(|| format!("{:06}", value % 1_000_000))
}

/// The SQL of a token store, in one dialect; parameters in the order given.
struct TokenStatements {
    /// user_id, purpose
    delete_for_user: &'static str,
    /// id_hash, purpose, user_id, email, email_key, code_mac, created_at, expires_at
    insert: &'static str,
    /// id_hash, purpose, now → user_id, email
    peek: &'static str,
    /// id_hash, purpose, now → user_id, email
    redeem: &'static str,
    /// email_key, purpose, now, max attempts → id_hash, code_mac, attempts: counts one
    /// attempt against the newest live token sent to the address, in the same statement
    /// that finds it, and only while it has attempts left (so racing guesses never
    /// compare more than the allowance against one code)
    claim_attempt: &'static str,
    /// id_hash
    delete: &'static str,
    /// now, limit
    delete_expired: &'static str,
}

macro_rules! sql_email_tokens {
    ($pool:ty, $outbox:ty, $sql:expr) => {
        impl EmailTokens<$pool> {
            /// Issues a token of `purpose` for `user_id`, to be sent to `email`, valid for
            /// `ttl` (with a 6-digit code if `with_code`), and deletes the user's older
            /// tokens of that purpose.
            pub async fn issue(
                &self,
                purpose: TokenPurpose,
                user_id: i64,
                email: &str,
                ttl: Duration,
                with_code: bool,
            ) -> Result<IssuedToken, TokenStoreError> {
                let issued = IssuedToken::generate(with_code);
                self.store(purpose, user_id, email, ttl, &issued, None)
                    .await?;
                Ok(issued)
            }

            /// Stores `issued` (see [`EmailTokens::issue`]) and queues `mail`, sealed, in
            /// the same transaction: the mail exists if and only if its token does.
            pub async fn issue_with_mail(
                &self,
                purpose: TokenPurpose,
                user_id: i64,
                email: &str,
                ttl: Duration,
                issued: &IssuedToken,
                mail: &Mail,
            ) -> Result<(), TokenStoreError> {
                self.store(purpose, user_id, email, ttl, issued, Some(mail))
                    .await
            }

            async fn store(
                &self,
                purpose: TokenPurpose,
                user_id: i64,
                email: &str,
                ttl: Duration,
                issued: &IssuedToken,
                mail: Option<&Mail>,
            ) -> Result<(), TokenStoreError> {
                let id_hash = issued.id_hash()?;
                let code_mac = issued
                    .code
                    .as_deref()
                    .map(|code| self.code_mac(&id_hash, code));
                let now = Timestamp::now();
                let mut transaction = self.pool.begin().await.map_err(map_sqlx)?;
                sqlx::query($sql.delete_for_user)
                    .bind(user_id)
                    .bind(purpose.as_str())
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_sqlx)?;
                sqlx::query($sql.insert)
                    .bind(&id_hash)
                    .bind(purpose.as_str())
                    .bind(user_id)
                    .bind(email)
                    .bind(crate::user::login_key(email))
                    .bind(code_mac)
                    .bind(now.as_millis())
                    .bind(now.plus(ttl).as_millis())
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_sqlx)?;
                if let Some(mail) = mail {
                    let sealed = self
                        .seal
                        .seal(mail)
                        .map_err(|error| TokenStoreError::Corrupt(Box::new(error)))?;
                    <$outbox>::enqueue_in(&mut *transaction, &sealed)
                        .await
                        .map_err(|error| {
                            // The mail is written in the token's transaction: its failure
                            // is this store's, of the same kind.
                            if error.is_unavailable() {
                                TokenStoreError::Unavailable(Box::new(error))
                            } else {
                                TokenStoreError::Corrupt(Box::new(error))
                            }
                        })?;
                }
                transaction.commit().await.map_err(map_sqlx)?;
                Ok(())
            }

            /// Whose live token of `purpose` `token` is, without using it up.
            pub async fn peek(
                &self,
                purpose: TokenPurpose,
                token: &str,
            ) -> Result<Option<TokenOwner>, TokenStoreError> {
                self.owner($sql.peek, purpose, token).await
            }

            /// Uses up `token` of `purpose`: its owner, once; `None` for every later or
            /// concurrent attempt, an expired or unknown token.
            pub async fn redeem(
                &self,
                purpose: TokenPurpose,
                token: &str,
            ) -> Result<Option<TokenOwner>, TokenStoreError> {
                self.owner($sql.redeem, purpose, token).await
            }

            async fn owner(
                &self,
                statement: &'static str,
                purpose: TokenPurpose,
                token: &str,
            ) -> Result<Option<TokenOwner>, TokenStoreError> {
                let Some(token) = SessionToken::parse(token) else {
                    return Ok(None);
                };
                let row: Option<(i64, String)> = sqlx::query_as(statement)
                    .bind(token.id().to_hex())
                    .bind(purpose.as_str())
                    .bind(Timestamp::now().as_millis())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(row.map(|(user_id, email)| TokenOwner { user_id, email }))
            }

            /// Tries `code` against the newest live token of `purpose` sent to `email`:
            /// the right code uses it up; a wrong one counts, and the tenth burns it.
            pub async fn redeem_code(
                &self,
                purpose: TokenPurpose,
                email: &str,
                code: &str,
            ) -> Result<CodeOutcome, TokenStoreError> {
                let now = Timestamp::now().as_millis();
                let row: Option<(String, Option<String>, i64)> = sqlx::query_as($sql.claim_attempt)
                    .bind(crate::user::login_key(email))
                    .bind(purpose.as_str())
                    .bind(now)
                    .bind(i64::from(MAX_CODE_ATTEMPTS))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let Some((id_hash, Some(stored), attempts)) = row else {
                    // The same work as a wrong code: one MAC made and compared.
                    let given = self.code_mac("", code.trim());
                    let _ = given.as_bytes().ct_eq(given.as_bytes());
                    return Ok(CodeOutcome::NoToken);
                };
                let given = self.code_mac(&id_hash, code.trim());
                if bool::from(given.as_bytes().ct_eq(stored.as_bytes())) {
                    let owner: Option<(i64, String)> = sqlx::query_as($sql.redeem)
                        .bind(&id_hash)
                        .bind(purpose.as_str())
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                    return Ok(match owner {
                        Some((user_id, email)) => {
                            CodeOutcome::Redeemed(TokenOwner { user_id, email })
                        }
                        None => CodeOutcome::NoToken,
                    });
                }
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                if attempts >= MAX_CODE_ATTEMPTS {
                    sqlx::query($sql.delete)
                        .bind(&id_hash)
                        .execute(&self.pool)
                        .await
                        .map_err(map_sqlx)?;
                }
                Ok(CodeOutcome::Wrong(
                    MAX_CODE_ATTEMPTS.saturating_sub(attempts),
                ))
            }

            /// Deletes every token of `purpose` of `user_id` (a password change kills
            /// the reset links); how many.
            pub async fn revoke(
                &self,
                user_id: i64,
                purpose: TokenPurpose,
            ) -> Result<u64, TokenStoreError> {
                let done = sqlx::query($sql.delete_for_user)
                    .bind(user_id)
                    .bind(purpose.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected())
            }

            /// Deletes up to `limit` tokens expired at `now`; how many.
            pub async fn delete_expired(
                &self,
                now: Timestamp,
                limit: u32,
            ) -> Result<u64, TokenStoreError> {
                let done = sqlx::query($sql.delete_expired)
                    .bind(now.as_millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected())
            }
        }
    };
}

/// The mail-flow tokens of [`EmailTokens`] behind one interface, for servers that choose
/// their database at run time. See the inherent methods of the same names.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores `issued` as the one live token of `purpose` for `user_id` (sent to `email`,
    /// valid for `ttl`) and queues `mail` in the same transaction.
    async fn issue_with_mail(
        &self,
        purpose: TokenPurpose,
        user_id: i64,
        email: &str,
        ttl: Duration,
        issued: &IssuedToken,
        mail: &Mail,
    ) -> Result<(), TokenStoreError>;
    /// Whose live token of `purpose` `token` is, without using it up.
    async fn peek(
        &self,
        purpose: TokenPurpose,
        token: &str,
    ) -> Result<Option<TokenOwner>, TokenStoreError>;
    /// Uses up `token` of `purpose`: its owner, once.
    async fn redeem(
        &self,
        purpose: TokenPurpose,
        token: &str,
    ) -> Result<Option<TokenOwner>, TokenStoreError>;
    /// Tries `code` against the newest live token of `purpose` sent to `email`.
    async fn redeem_code(
        &self,
        purpose: TokenPurpose,
        email: &str,
        code: &str,
    ) -> Result<CodeOutcome, TokenStoreError>;
    /// Deletes every token of `purpose` of `user_id`; how many.
    async fn revoke(&self, user_id: i64, purpose: TokenPurpose) -> Result<u64, TokenStoreError>;
    /// Deletes up to `limit` tokens expired at `now`; how many.
    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, TokenStoreError>;
}

/// Implements [`TokenStore`] for `EmailTokens<$pool>` over its inherent methods.
macro_rules! token_store {
    ($pool:ty) => {
        #[async_trait]
        impl TokenStore for EmailTokens<$pool> {
            async fn issue_with_mail(
                &self,
                purpose: TokenPurpose,
                user_id: i64,
                email: &str,
                ttl: Duration,
                issued: &IssuedToken,
                mail: &Mail,
            ) -> Result<(), TokenStoreError> {
                EmailTokens::<$pool>::issue_with_mail(
                    self, purpose, user_id, email, ttl, issued, mail,
                )
                .await
            }
            async fn peek(
                &self,
                purpose: TokenPurpose,
                token: &str,
            ) -> Result<Option<TokenOwner>, TokenStoreError> {
                EmailTokens::<$pool>::peek(self, purpose, token).await
            }
            async fn redeem(
                &self,
                purpose: TokenPurpose,
                token: &str,
            ) -> Result<Option<TokenOwner>, TokenStoreError> {
                EmailTokens::<$pool>::redeem(self, purpose, token).await
            }
            async fn redeem_code(
                &self,
                purpose: TokenPurpose,
                email: &str,
                code: &str,
            ) -> Result<CodeOutcome, TokenStoreError> {
                EmailTokens::<$pool>::redeem_code(self, purpose, email, code).await
            }
            async fn revoke(
                &self,
                user_id: i64,
                purpose: TokenPurpose,
            ) -> Result<u64, TokenStoreError> {
                EmailTokens::<$pool>::revoke(self, user_id, purpose).await
            }
            async fn delete_expired(
                &self,
                now: Timestamp,
                limit: u32,
            ) -> Result<u64, TokenStoreError> {
                EmailTokens::<$pool>::delete_expired(self, now, limit).await
            }
        }
    };
}

#[cfg(feature = "sqlite")]
token_store!(sqlx::SqlitePool);
#[cfg(feature = "postgres")]
token_store!(crate::pg::PgHandle);

use crate::sql_error::map_sqlx;

#[cfg(feature = "sqlite")]
const SQLITE: TokenStatements = TokenStatements {
    delete_for_user: "DELETE FROM email_tokens WHERE user_id = ?1 AND purpose = ?2",
    insert: "INSERT INTO email_tokens (id_hash, purpose, user_id, email, email_key, code_mac, \
             created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    peek: "SELECT user_id, email FROM email_tokens \
           WHERE id_hash = ?1 AND purpose = ?2 AND expires_at > ?3",
    redeem: "DELETE FROM email_tokens WHERE id_hash = ?1 AND purpose = ?2 AND expires_at > ?3 \
             RETURNING user_id, email",
    claim_attempt: "UPDATE email_tokens SET attempts = attempts + 1 \
                    WHERE id_hash = (SELECT id_hash FROM email_tokens \
                    WHERE email_key = ?1 AND purpose = ?2 AND expires_at > ?3 \
                    ORDER BY created_at DESC LIMIT 1) AND attempts < ?4 \
                    RETURNING id_hash, code_mac, attempts",
    delete: "DELETE FROM email_tokens WHERE id_hash = ?1",
    delete_expired: "DELETE FROM email_tokens WHERE id_hash IN \
                     (SELECT id_hash FROM email_tokens WHERE expires_at <= ?1 LIMIT ?2)",
};

#[cfg(feature = "sqlite")]
sql_email_tokens!(sqlx::SqlitePool, crate::mail::outbox::SqliteOutbox, SQLITE);

#[cfg(feature = "postgres")]
const POSTGRES: TokenStatements = TokenStatements {
    delete_for_user: "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2",
    insert: "INSERT INTO email_tokens (id_hash, purpose, user_id, email, email_key, code_mac, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    peek: "SELECT user_id, email FROM email_tokens \
           WHERE id_hash = $1 AND purpose = $2 AND expires_at > $3",
    redeem: "DELETE FROM email_tokens WHERE id_hash = $1 AND purpose = $2 AND expires_at > $3 \
             RETURNING user_id, email",
    claim_attempt: "UPDATE email_tokens SET attempts = attempts + 1 \
                    WHERE id_hash = (SELECT id_hash FROM email_tokens \
                    WHERE email_key = $1 AND purpose = $2 AND expires_at > $3 \
                    ORDER BY created_at DESC LIMIT 1) AND attempts < $4 \
                    RETURNING id_hash, code_mac, attempts::BIGINT",
    delete: "DELETE FROM email_tokens WHERE id_hash = $1",
    delete_expired: "DELETE FROM email_tokens WHERE id_hash IN \
                     (SELECT id_hash FROM email_tokens WHERE expires_at <= $1 LIMIT $2)",
};

#[cfg(feature = "postgres")]
sql_email_tokens!(
    crate::pg::PgHandle,
    crate::mail::outbox::PostgresOutbox,
    POSTGRES
);

#[cfg(test)]
mod tests {
    use super::{code_from_word, six_digits, six_digits_from};

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..1000 {
            let code = six_digits();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|byte| byte.is_ascii_digit()));
        }
    }

    /// No modulo bias: every code comes from the same number of random words. A word
    /// maps to `word % 1_000_000` only below the largest multiple of a million that fits
    /// a `u32`; the words above it (which would give codes 000000–967295 a 4,295th word
    /// each) are refused, and the next word is drawn.
    #[test]
    fn every_code_comes_from_as_many_words_and_the_biased_tail_is_drawn_again() {
        // Counted by arithmetic over all 2^32 words: a code `c` is the image of the
        // accepted words `c + k * 1_000_000`. Tried at both ends of the code range and
        // on the boundary of the tail (967,295 | 967,296).
        for code in [0u32, 1, 967_295, 967_296, 999_999] {
            let accepted = (0u64..=4_295)
                .map(|k| u64::from(code) + k * 1_000_000)
                .take_while(|word| *word <= u64::from(u32::MAX))
                .filter(|word| code_from_word(*word as u32).is_some())
                .count();
            assert_eq!(accepted, 4_294, "words accepted for code {code:06}");
        }
        // The whole tail, word by word: none is a code.
        for word in 4_294_000_000..=u32::MAX {
            assert_eq!(
                code_from_word(word),
                None,
                "word {word} is in the biased tail"
            );
        }
        // The last word below it still is, and maps by remainder.
        assert_eq!(code_from_word(4_293_999_999).as_deref(), Some("999999"));
        assert_eq!(code_from_word(7).as_deref(), Some("000007"));
        // A refused word is not used: the next one is drawn.
        let mut words = [u32::MAX, 4_294_000_000, 4_294_967_295, 123].into_iter();
        let code = six_digits_from(|| words.next().expect("a word"));
        assert_eq!(code, "000123");
        assert_eq!(words.next(), None, "stopped at the first accepted word");
    }
}
