//! Second factors: TOTP (RFC 6238) and single-use recovery codes, behind the
//! [`SecondFactorStore`] trait with SQL implementations ([`SecondFactors`]).
//!
//! * The TOTP secret is stored sealed under the server key ([`SecretBox`]), as raw bytes
//!   that export as standard base32, so it can be moved in from or out to another system.
//! * A code is accepted for a time step (±1 step of clock skew) only if that step is
//!   later than the last one accepted for the user, in one conditional `UPDATE`: a code
//!   never counts twice, also when two requests race with it.
//! * Recovery codes (ten, 50 random bits each) are stored as HMACs under the server key
//!   and used up by one `DELETE`: of racing uses of one code, one wins. Confirming TOTP
//!   or regenerating replaces them all.

#[cfg(all(feature = "passkeys", any(feature = "sqlite", feature = "postgres")))]
pub mod passkeys;
pub mod totp;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::secret_box::SecretBox;
use crate::time::Timestamp;
use async_trait::async_trait;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use hmac::{Hmac, Mac};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sha2::Sha256;
pub use totp::Totp;

crate::store_error::store_error!(
    /// Why a second-factor store failed.
    FactorStoreError,
    "second-factor store"
);

/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;

/// What a user has enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactorStatus {
    /// A confirmed TOTP secret.
    pub totp: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
}

impl FactorStatus {
    /// Whether a login needs a second step.
    pub fn has_second_factor(&self) -> bool {
        self.totp
    }
}

/// A TOTP secret just made, not yet confirmed: what the enrolment page shows.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret in base32.
    pub secret: String,
    /// The `otpauth://` URI (for the QR code).
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(<redacted>)")
    }
}

/// Where second factors live.
#[async_trait]
pub trait SecondFactorStore: Send + Sync + 'static {
    /// Starts TOTP enrolment for `user_id`: a new secret, stored unconfirmed (replacing
    /// an unconfirmed one), labelled `account` at `issuer`. `None` when TOTP is already
    /// enabled (remove it first).
    async fn begin_totp(
        &self,
        user_id: i64,
        issuer: &str,
        account: &str,
    ) -> Result<Option<TotpEnrolment>, FactorStoreError>;
    /// Enables the unconfirmed secret if `code` is right for it at `now`, and answers the
    /// user's new recovery codes (the old ones are gone); `None` for a wrong code or no
    /// enrolment under way.
    async fn confirm_totp(
        &self,
        user_id: i64,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, FactorStoreError>;
    /// Whether `code` is right for the user's enabled secret at `now`, for a time step
    /// not used before (which it then uses up).
    async fn verify_totp(
        &self,
        user_id: i64,
        code: &str,
        now: Timestamp,
    ) -> Result<bool, FactorStoreError>;
    /// Uses up recovery code `code` of `user_id`; `false` if it is not one of theirs (or
    /// was used).
    async fn use_recovery_code(&self, user_id: i64, code: &str) -> Result<bool, FactorStoreError>;
    /// Replaces the user's recovery codes with new ones, which it answers.
    async fn regenerate_recovery_codes(
        &self,
        user_id: i64,
    ) -> Result<Vec<String>, FactorStoreError>;
    /// Removes the user's TOTP secret and recovery codes; whether there was a secret.
    async fn remove_all(&self, user_id: i64) -> Result<bool, FactorStoreError>;
    /// What the user has enabled.
    async fn status(&self, user_id: i64) -> Result<FactorStatus, FactorStoreError>;
}

/// Second factors in SQL (the `totp_secrets` and `recovery_codes` tables), with the keys
/// derived from the server's secret that seal TOTP secrets and bind recovery codes.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Clone)]
pub struct SecondFactors<P> {
    pool: P,
    sealed_box: SecretBox,
    code_key: [u8; 32],
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<P> std::fmt::Debug for SecondFactors<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecondFactors(..)")
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<P> SecondFactors<P> {
    /// Second factors in `pool`'s database, under keys derived from `secret` (the
    /// server's secret key; every process sharing the database needs the same).
    pub fn new(pool: P, secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of any length"));
        mac.update(b"latchkey recovery codes v1");
        SecondFactors {
            pool,
            sealed_box: SecretBox::new(secret, "totp"),
            code_key: mac.finalize().into_bytes().into(),
        }
    }

    /// What a recovery code is stored as: an HMAC over the user and the code as typed,
    /// lower-cased without spaces or dashes, look-alikes read as Crockford does.
    fn code_mac(&self, user_id: i64, code: &str) -> String {
        let normal: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'o' => '0',
                'i' | 'l' => '1',
                other => other,
            })
            .collect();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.code_key)
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of any length"));
        mac.update(user_id.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(normal.as_bytes());
        crate::bytes::lower_hex(&mac.finalize().into_bytes())
    }

    /// The sealing context of `user_id`'s secret: a sealed secret moved to another user
    /// does not open.
    fn context(user_id: i64) -> Vec<u8> {
        format!("user {user_id}").into_bytes()
    }

    /// The user's secret from its sealed form; a secret that does not open (another
    /// server key) is `Corrupt`.
    fn open_secret(&self, user_id: i64, sealed: &str) -> Result<Vec<u8>, FactorStoreError> {
        self.sealed_box
            .open(sealed, &Self::context(user_id))
            .ok_or_else(|| {
                FactorStoreError::Corrupt(
                    "a TOTP secret that does not open with this server's key".into(),
                )
            })
    }

    fn totp(&self, user_id: i64, sealed: &str) -> Result<Totp, FactorStoreError> {
        Totp::new(self.open_secret(user_id, sealed)?, "latchkey", "user")
            .map_err(|error| FactorStoreError::Corrupt(Box::new(error)))
    }
}

/// Ten new recovery codes: `xxxxx-xxxxx`, 50 random bits each, in Crockford's base32
/// (no i, l, o or u; what is typed for them is read as 1, 1, 0).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            crate::bytes::random_bytes(&mut bytes);
            let letters: String = bytes
                .iter()
                .map(|byte| char::from(ALPHABET[usize::from(byte % 32)]))
                .collect();
            format!("{}-{}", &letters[..5], &letters[5..])
        })
        .collect()
}

/// Seconds since the epoch of `now` (0 before it).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn unix_seconds(now: Timestamp) -> u64 {
    u64::try_from(now.as_millis() / 1000).unwrap_or(0)
}

/// The SQL of a factor store, in one dialect; parameters in the order given.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct FactorStatements {
    /// user_id → secret_sealed, confirmed_at, last_step
    totp: &'static str,
    /// user_id, secret_sealed, now (replaces an unconfirmed row only)
    begin_totp: &'static str,
    /// now, step, user_id (only while unconfirmed)
    confirm_totp: &'static str,
    /// step, user_id, step (only a confirmed secret, only a later step)
    use_step: &'static str,
    /// user_id
    delete_codes: &'static str,
    /// user_id, code_mac
    insert_code: &'static str,
    /// user_id, code_mac
    use_code: &'static str,
    /// user_id
    delete_totp: &'static str,
    /// user_id → count
    count_codes: &'static str,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_second_factors {
    ($pool:ty, $sql:expr) => {
        impl SecondFactors<$pool> {
            async fn replace_codes(
                &self,
                connection: &mut <$pool as PoolDatabase>::Connection,
                user_id: i64,
            ) -> Result<Vec<String>, FactorStoreError> {
                sqlx::query($sql.delete_codes)
                    .bind(user_id)
                    .execute(&mut *connection)
                    .await
                    .map_err(map_sqlx)?;
                let codes = new_recovery_codes();
                for code in &codes {
                    sqlx::query($sql.insert_code)
                        .bind(user_id)
                        .bind(self.code_mac(user_id, code))
                        .execute(&mut *connection)
                        .await
                        .map_err(map_sqlx)?;
                }
                Ok(codes)
            }

            async fn stored_totp(
                &self,
                user_id: i64,
            ) -> Result<Option<(String, Option<i64>, i64)>, FactorStoreError> {
                Ok(sqlx::query_as($sql.totp)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?)
            }
        }

        #[async_trait]
        impl SecondFactorStore for SecondFactors<$pool> {
            async fn begin_totp(
                &self,
                user_id: i64,
                issuer: &str,
                account: &str,
            ) -> Result<Option<TotpEnrolment>, FactorStoreError> {
                let secret = Totp::generate_secret();
                let totp = Totp::new(secret.clone(), issuer, account)
                    .map_err(|error| FactorStoreError::Corrupt(Box::new(error)))?;
                let sealed = self
                    .sealed_box
                    .seal(&secret, &Self::context(user_id))
                    .ok_or_else(|| {
                        FactorStoreError::Corrupt("the TOTP secret could not be sealed".into())
                    })?;
                let done = sqlx::query($sql.begin_totp)
                    .bind(user_id)
                    .bind(sealed)
                    .bind(Timestamp::now().as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok((done.rows_affected() == 1).then(|| TotpEnrolment {
                    secret: totp.secret_base32(),
                    otpauth_uri: totp.otpauth_uri(),
                }))
            }

            async fn confirm_totp(
                &self,
                user_id: i64,
                code: &str,
                now: Timestamp,
            ) -> Result<Option<Vec<String>>, FactorStoreError> {
                let Some((sealed, None, _)) = self.stored_totp(user_id).await? else {
                    return Ok(None);
                };
                let totp = self.totp(user_id, &sealed)?;
                let Some(step) = totp.matching_step(code, unix_seconds(now), None) else {
                    return Ok(None);
                };
                let mut transaction = self.pool.begin().await.map_err(map_sqlx)?;
                let confirmed = sqlx::query($sql.confirm_totp)
                    .bind(now.as_millis())
                    .bind(i64::try_from(step).unwrap_or(i64::MAX))
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_sqlx)?;
                if confirmed.rows_affected() != 1 {
                    return Ok(None);
                }
                let codes = self.replace_codes(&mut transaction, user_id).await?;
                transaction.commit().await.map_err(map_sqlx)?;
                Ok(Some(codes))
            }

            async fn verify_totp(
                &self,
                user_id: i64,
                code: &str,
                now: Timestamp,
            ) -> Result<bool, FactorStoreError> {
                let Some((sealed, Some(_), last_step)) = self.stored_totp(user_id).await? else {
                    return Ok(false);
                };
                let totp = self.totp(user_id, &sealed)?;
                let after = u64::try_from(last_step).ok();
                let Some(step) = totp.matching_step(code, unix_seconds(now), after) else {
                    return Ok(false);
                };
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                let used = sqlx::query($sql.use_step)
                    .bind(step)
                    .bind(user_id)
                    .bind(step)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(used.rows_affected() == 1)
            }

            async fn use_recovery_code(
                &self,
                user_id: i64,
                code: &str,
            ) -> Result<bool, FactorStoreError> {
                let used = sqlx::query($sql.use_code)
                    .bind(user_id)
                    .bind(self.code_mac(user_id, code))
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(used.rows_affected() == 1)
            }

            async fn regenerate_recovery_codes(
                &self,
                user_id: i64,
            ) -> Result<Vec<String>, FactorStoreError> {
                let mut transaction = self.pool.begin().await.map_err(map_sqlx)?;
                let codes = self.replace_codes(&mut transaction, user_id).await?;
                transaction.commit().await.map_err(map_sqlx)?;
                Ok(codes)
            }

            async fn remove_all(&self, user_id: i64) -> Result<bool, FactorStoreError> {
                let mut transaction = self.pool.begin().await.map_err(map_sqlx)?;
                sqlx::query($sql.delete_codes)
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_sqlx)?;
                let removed = sqlx::query($sql.delete_totp)
                    .bind(user_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(map_sqlx)?;
                transaction.commit().await.map_err(map_sqlx)?;
                Ok(removed.rows_affected() > 0)
            }

            async fn status(&self, user_id: i64) -> Result<FactorStatus, FactorStoreError> {
                let totp = matches!(self.stored_totp(user_id).await?, Some((_, Some(_), _)));
                let (left,): (i64,) = sqlx::query_as($sql.count_codes)
                    .bind(user_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(FactorStatus {
                    totp,
                    recovery_codes_left: u32::try_from(left).unwrap_or(0),
                })
            }
        }
    };
}

/// The connection a pool's transactions run statements on, so the macro can name it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
trait PoolDatabase {
    type Connection;
}

#[cfg(feature = "sqlite")]
impl PoolDatabase for sqlx::SqlitePool {
    type Connection = sqlx::SqliteConnection;
}

#[cfg(feature = "postgres")]
impl PoolDatabase for crate::pg::PgHandle {
    type Connection = crate::pg::PgTransactionConnection;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::sql_error::map_sqlx;

#[cfg(feature = "sqlite")]
const SQLITE: FactorStatements = FactorStatements {
    totp: "SELECT secret_sealed, confirmed_at, last_step FROM totp_secrets WHERE user_id = ?1",
    begin_totp:
        "INSERT INTO totp_secrets (user_id, secret_sealed, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
                 created_at = excluded.created_at WHERE totp_secrets.confirmed_at IS NULL",
    confirm_totp: "UPDATE totp_secrets SET confirmed_at = ?1, last_step = ?2 \
                   WHERE user_id = ?3 AND confirmed_at IS NULL",
    use_step: "UPDATE totp_secrets SET last_step = ?1 \
               WHERE user_id = ?2 AND confirmed_at IS NOT NULL AND last_step < ?3",
    delete_codes: "DELETE FROM recovery_codes WHERE user_id = ?1",
    insert_code: "INSERT INTO recovery_codes (user_id, code_mac) VALUES (?1, ?2)",
    use_code: "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_mac = ?2",
    delete_totp: "DELETE FROM totp_secrets WHERE user_id = ?1",
    count_codes: "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1",
};

#[cfg(feature = "sqlite")]
sql_second_factors!(sqlx::SqlitePool, SQLITE);

#[cfg(feature = "postgres")]
const POSTGRES: FactorStatements = FactorStatements {
    totp: "SELECT secret_sealed, confirmed_at, last_step FROM totp_secrets WHERE user_id = $1",
    begin_totp:
        "INSERT INTO totp_secrets (user_id, secret_sealed, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
                 created_at = excluded.created_at WHERE totp_secrets.confirmed_at IS NULL",
    confirm_totp: "UPDATE totp_secrets SET confirmed_at = $1, last_step = $2 \
                   WHERE user_id = $3 AND confirmed_at IS NULL",
    use_step: "UPDATE totp_secrets SET last_step = $1 \
               WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $3",
    delete_codes: "DELETE FROM recovery_codes WHERE user_id = $1",
    insert_code: "INSERT INTO recovery_codes (user_id, code_mac) VALUES ($1, $2)",
    use_code: "DELETE FROM recovery_codes WHERE user_id = $1 AND code_mac = $2",
    delete_totp: "DELETE FROM totp_secrets WHERE user_id = $1",
    count_codes: "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1",
};

#[cfg(feature = "postgres")]
sql_second_factors!(crate::pg::PgHandle, POSTGRES);

#[cfg(test)]
mod tests {
    use super::new_recovery_codes;

    #[test]
    fn recovery_codes_are_ten_distinct_and_readable() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        for code in codes {
            assert_eq!(code.len(), 11);
            assert_eq!(&code[5..6], "-");
            assert!(!code.contains(['o', 'l', 'i', 'u']));
        }
    }
}
