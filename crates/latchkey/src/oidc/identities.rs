//! Identities at other providers: who a provider says a user is, as the issuer and the
//! subject it gives (never an email address, which a provider may let its users change:
//! the nOAuth takeovers). Kept in the `identities` table (SQLite and PostgreSQL), one per
//! user and provider, with the address the provider last gave and whether it verified it.

use crate::time::Timestamp;
use async_trait::async_trait;

crate::store_error::store_error!(
    /// Why an identity store failed.
    IdentityStoreError,
    "identity store"
);

/// One identity at a provider, linked to a local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's issuer (`iss`), exactly as its discovery document says.
    pub issuer: String,
    /// The provider's subject (`sub`): stable and unique within the issuer.
    pub subject: String,
    /// The name the server configured the provider under (`google`, `corp`, …).
    pub provider: String,
    /// The local user.
    pub user_id: i64,
    /// The address the provider gave last, if any.
    pub email: Option<String>,
    /// Whether the provider said it verified that address.
    pub email_verified: bool,
    /// When the identity was linked.
    pub linked_at: Timestamp,
    /// When it was last used to sign in.
    pub last_used_at: Timestamp,
}

/// Where identities are kept.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// The identity `subject` at `issuer`, if linked.
    async fn find(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Identity>, IdentityStoreError>;
    /// Links `identity`; [`IdentityStoreError::AlreadyExists`] when the issuer and
    /// subject are linked already, or the user has an identity at that provider.
    async fn link(&self, identity: &Identity) -> Result<(), IdentityStoreError>;
    /// Records a sign-in with the identity: when, and the address the provider gave now.
    async fn used(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
        email_verified: bool,
        now: Timestamp,
    ) -> Result<(), IdentityStoreError>;
    /// The identities of a user, by provider name.
    async fn for_user(&self, user_id: i64) -> Result<Vec<Identity>, IdentityStoreError>;
    /// Unlinks the user's identity at `provider`; whether there was one.
    async fn unlink(&self, user_id: i64, provider: &str) -> Result<bool, IdentityStoreError>;
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The SQL an identity store runs, in one dialect; parameters in the order given.
struct IdentityStatements {
    /// issuer, subject
    find: &'static str,
    /// issuer, subject, provider, user_id, email, email_verified, linked_at, last_used_at
    link: &'static str,
    /// email, email_verified, last_used_at, issuer, subject
    used: &'static str,
    /// user_id
    for_user: &'static str,
    /// user_id, provider
    unlink: &'static str,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A row's columns as an identity.
fn decode<R: sqlx::Row>(row: &R) -> Result<Identity, IdentityStoreError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let column = |error: sqlx::Error| IdentityStoreError::Corrupt(Box::new(error));
    Ok(Identity {
        issuer: row.try_get("issuer").map_err(column)?,
        subject: row.try_get("subject").map_err(column)?,
        provider: row.try_get("provider").map_err(column)?,
        user_id: row.try_get("user_id").map_err(column)?,
        email: row.try_get("email").map_err(column)?,
        email_verified: row.try_get("email_verified").map_err(column)?,
        linked_at: Timestamp(row.try_get("linked_at").map_err(column)?),
        last_used_at: Timestamp(row.try_get("last_used_at").map_err(column)?),
    })
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Implements [`IdentityStore`] for `$store` (a struct with a `pool` field) with the
/// statements `$sql`.
macro_rules! sql_identity_store {
    ($store:ty, $sql:expr) => {
        #[async_trait]
        impl IdentityStore for $store {
            async fn find(
                &self,
                issuer: &str,
                subject: &str,
            ) -> Result<Option<Identity>, IdentityStoreError> {
                let row = sqlx::query($sql.find)
                    .bind(issuer)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                row.as_ref().map(decode).transpose()
            }

            async fn link(&self, identity: &Identity) -> Result<(), IdentityStoreError> {
                sqlx::query($sql.link)
                    .bind(&identity.issuer)
                    .bind(&identity.subject)
                    .bind(&identity.provider)
                    .bind(identity.user_id)
                    .bind(&identity.email)
                    .bind(identity.email_verified)
                    .bind(identity.linked_at.as_millis())
                    .bind(identity.last_used_at.as_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(())
            }

            async fn used(
                &self,
                issuer: &str,
                subject: &str,
                email: Option<&str>,
                email_verified: bool,
                now: Timestamp,
            ) -> Result<(), IdentityStoreError> {
                sqlx::query($sql.used)
                    .bind(email)
                    .bind(email_verified)
                    .bind(now.as_millis())
                    .bind(issuer)
                    .bind(subject)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(())
            }

            async fn for_user(&self, user_id: i64) -> Result<Vec<Identity>, IdentityStoreError> {
                let rows = sqlx::query($sql.for_user)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                rows.iter().map(decode).collect()
            }

            async fn unlink(
                &self,
                user_id: i64,
                provider: &str,
            ) -> Result<bool, IdentityStoreError> {
                let done = sqlx::query($sql.unlink)
                    .bind(user_id)
                    .bind(provider)
                    .execute(&self.pool)
                    .await
                    .map_err(crate::sql_error::map_sqlx)?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteIdentityStore;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use sqlx::sqlite::SqlitePool;

    /// Identities in the `identities` table of a database opened with
    /// [`crate::store::open_sqlite`].
    #[derive(Clone, Debug)]
    pub struct SqliteIdentityStore {
        pool: SqlitePool,
    }

    impl SqliteIdentityStore {
        /// A store over `pool`.
        pub fn new(pool: SqlitePool) -> Self {
            SqliteIdentityStore { pool }
        }
    }

    const STATEMENTS: IdentityStatements = IdentityStatements {
        find: "SELECT * FROM identities WHERE issuer = ? AND subject = ?",
        link: "INSERT INTO identities (issuer, subject, provider, user_id, email, \
               email_verified, linked_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        used: "UPDATE identities SET email = ?, email_verified = ?, last_used_at = ? \
               WHERE issuer = ? AND subject = ?",
        for_user: "SELECT * FROM identities WHERE user_id = ? ORDER BY provider",
        unlink: "DELETE FROM identities WHERE user_id = ? AND provider = ?",
    };

    sql_identity_store!(SqliteIdentityStore, STATEMENTS);
}

#[cfg(feature = "postgres")]
pub use postgres::PostgresIdentityStore;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::pg::PgHandle;

    /// Identities in the `identities` table of a database opened with
    /// [`crate::store::open_postgres`] or [`PgHandle::connect`].
    #[derive(Clone, Debug)]
    pub struct PostgresIdentityStore {
        pool: PgHandle,
    }

    impl PostgresIdentityStore {
        /// A store over `pool`: a [`sqlx::PgPool`] (direct) or a [`PgHandle`].
        pub fn new(pool: impl Into<PgHandle>) -> Self {
            PostgresIdentityStore { pool: pool.into() }
        }
    }

    const STATEMENTS: IdentityStatements = IdentityStatements {
        find: "SELECT * FROM identities WHERE issuer = $1 AND subject = $2",
        link: "INSERT INTO identities (issuer, subject, provider, user_id, email, \
               email_verified, linked_at, last_used_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        used: "UPDATE identities SET email = $1, email_verified = $2, last_used_at = $3 \
               WHERE issuer = $4 AND subject = $5",
        for_user: "SELECT * FROM identities WHERE user_id = $1 ORDER BY provider",
        unlink: "DELETE FROM identities WHERE user_id = $1 AND provider = $2",
    };

    sql_identity_store!(PostgresIdentityStore, STATEMENTS);
}
