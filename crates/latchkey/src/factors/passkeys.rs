//! Passkeys (WebAuthn, on `webauthn-rs`; feature `passkeys`): where a user's passkeys
//! live ([`PasskeyStore`], [`SqlPasskeys`] on SQLite and PostgreSQL) and the user handle
//! authenticators keep (random per user, so it tells nothing about the account). The
//! ceremonies themselves are `webauthn_rs::Webauthn`'s (re-exported here): the server
//! keeps their state in the server-side session, never in a cookie, and after each sign-in
//! [`PasskeyStore::record_use`] stores the new sign counter and backup flags as
//! webauthn-rs advises.

use crate::time::Timestamp;
use async_trait::async_trait;
pub use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, CredentialID, DiscoverableAuthentication,
    DiscoverableKey, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, WebauthnError,
};
pub use webauthn_rs::{Webauthn, WebauthnBuilder};

crate::store_error::store_error!(
    /// Why a passkey store failed.
    PasskeyStoreError,
    "passkey store"
);

/// One of a user's passkeys.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// Its id (for renaming and deleting).
    pub id: i64,
    /// The name the user gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last signed in.
    pub last_used_at: Option<Timestamp>,
    /// The credential (public key, counter, backup flags).
    pub passkey: Passkey,
}

/// Where passkeys live.
#[async_trait]
pub trait PasskeyStore: Send + Sync + 'static {
    /// The user's handle, made (randomly) on first use.
    async fn user_handle(&self, user_id: i64) -> Result<Uuid, PasskeyStoreError>;
    /// The user whose handle this is.
    async fn user_of_handle(&self, handle: Uuid) -> Result<Option<i64>, PasskeyStoreError>;
    /// Stores a newly registered passkey named `name`; its id.
    async fn add(
        &self,
        user_id: i64,
        name: &str,
        passkey: &Passkey,
    ) -> Result<i64, PasskeyStoreError>;
    /// The user's passkeys, oldest first.
    async fn list(&self, user_id: i64) -> Result<Vec<StoredPasskey>, PasskeyStoreError>;
    /// Renames passkey `id` of the user; `false` if it is not theirs.
    async fn rename(&self, user_id: i64, id: i64, name: &str) -> Result<bool, PasskeyStoreError>;
    /// Deletes passkey `id` of the user; `false` if it is not theirs.
    async fn delete(&self, user_id: i64, id: i64) -> Result<bool, PasskeyStoreError>;
    /// After a sign-in with one of the user's passkeys: stores its new counter and backup
    /// state and when it was used; `false` if the credential is not the user's.
    async fn record_use(
        &self,
        user_id: i64,
        result: &AuthenticationResult,
    ) -> Result<bool, PasskeyStoreError>;
}

/// Passkeys in SQL (the `passkey_users` and `passkeys` tables).
#[derive(Debug, Clone)]
pub struct SqlPasskeys<P> {
    pool: P,
}

impl<P> SqlPasskeys<P> {
    /// Passkeys in `pool`'s database.
    pub fn new(pool: P) -> Self {
        SqlPasskeys { pool }
    }
}

/// The text a credential id is stored under (base64url).
fn cred_key(id: &CredentialID) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_ref())
}

fn corrupt(error: impl std::error::Error + Send + Sync + 'static) -> PasskeyStoreError {
    PasskeyStoreError::Corrupt(Box::new(error))
}

/// The SQL of a passkey store, in one dialect; parameters in the order given.
struct PasskeyStatements {
    /// user_id → handle
    handle: &'static str,
    /// user_id, handle (ignored if the user has one)
    insert_handle: &'static str,
    /// handle → user_id
    user_of_handle: &'static str,
    /// user_id, cred_id, name, credential, created_at → id
    add: &'static str,
    /// user_id → id, name, credential, created_at, last_used_at
    list: &'static str,
    /// name, user_id, id
    rename: &'static str,
    /// user_id, id
    delete: &'static str,
    /// user_id, cred_id → credential
    credential: &'static str,
    /// credential, now, user_id, cred_id
    record_use: &'static str,
}

macro_rules! sql_passkeys {
    ($pool:ty, $sql:expr) => {
        #[async_trait]
        impl PasskeyStore for SqlPasskeys<$pool> {
            async fn user_handle(&self, user_id: i64) -> Result<Uuid, PasskeyStoreError> {
                let mut bytes = [0u8; 16];
                crate::bytes::random_bytes(&mut bytes);
                sqlx::query($sql.insert_handle)
                    .bind(user_id)
                    .bind(Uuid::from_bytes(bytes).to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let (handle,): (String,) = sqlx::query_as($sql.handle)
                    .bind(user_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Uuid::parse_str(&handle).map_err(corrupt)
            }

            async fn user_of_handle(&self, handle: Uuid) -> Result<Option<i64>, PasskeyStoreError> {
                let row: Option<(i64,)> = sqlx::query_as($sql.user_of_handle)
                    .bind(handle.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(row.map(|(user_id,)| user_id))
            }

            async fn add(
                &self,
                user_id: i64,
                name: &str,
                passkey: &Passkey,
            ) -> Result<i64, PasskeyStoreError> {
                let credential = serde_json::to_string(passkey).map_err(corrupt)?;
                let (id,): (i64,) = sqlx::query_as($sql.add)
                    .bind(user_id)
                    .bind(cred_key(passkey.cred_id()))
                    .bind(name)
                    .bind(credential)
                    .bind(Timestamp::now().as_millis())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(id)
            }

            async fn list(&self, user_id: i64) -> Result<Vec<StoredPasskey>, PasskeyStoreError> {
                let rows: Vec<(i64, String, String, i64, Option<i64>)> = sqlx::query_as($sql.list)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                rows.into_iter()
                    .map(|(id, name, credential, created_at, last_used_at)| {
                        Ok(StoredPasskey {
                            id,
                            name,
                            created_at: Timestamp(created_at),
                            last_used_at: last_used_at.map(Timestamp),
                            passkey: serde_json::from_str(&credential).map_err(corrupt)?,
                        })
                    })
                    .collect()
            }

            async fn rename(
                &self,
                user_id: i64,
                id: i64,
                name: &str,
            ) -> Result<bool, PasskeyStoreError> {
                let done = sqlx::query($sql.rename)
                    .bind(name)
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete(&self, user_id: i64, id: i64) -> Result<bool, PasskeyStoreError> {
                let done = sqlx::query($sql.delete)
                    .bind(user_id)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_use(
                &self,
                user_id: i64,
                result: &AuthenticationResult,
            ) -> Result<bool, PasskeyStoreError> {
                let key = cred_key(result.cred_id());
                let row: Option<(String,)> = sqlx::query_as($sql.credential)
                    .bind(user_id)
                    .bind(&key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                let Some((credential,)) = row else {
                    return Ok(false);
                };
                let mut passkey: Passkey = serde_json::from_str(&credential).map_err(corrupt)?;
                // The counter and backup state as webauthn-rs advises.
                passkey.update_credential(result);
                let credential = serde_json::to_string(&passkey).map_err(corrupt)?;
                let done = sqlx::query($sql.record_use)
                    .bind(credential)
                    .bind(Timestamp::now().as_millis())
                    .bind(user_id)
                    .bind(&key)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

use crate::sql_error::map_sqlx;

#[cfg(feature = "sqlite")]
const SQLITE: PasskeyStatements = PasskeyStatements {
    handle: "SELECT handle FROM passkey_users WHERE user_id = ?1",
    insert_handle: "INSERT INTO passkey_users (user_id, handle) VALUES (?1, ?2) \
                    ON CONFLICT (user_id) DO NOTHING",
    user_of_handle: "SELECT user_id FROM passkey_users WHERE handle = ?1",
    add: "INSERT INTO passkeys (user_id, cred_id, name, credential, created_at) \
          VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    list: "SELECT id, name, credential, created_at, last_used_at FROM passkeys \
           WHERE user_id = ?1 ORDER BY id",
    rename: "UPDATE passkeys SET name = ?1 WHERE user_id = ?2 AND id = ?3",
    delete: "DELETE FROM passkeys WHERE user_id = ?1 AND id = ?2",
    credential: "SELECT credential FROM passkeys WHERE user_id = ?1 AND cred_id = ?2",
    record_use: "UPDATE passkeys SET credential = ?1, last_used_at = ?2 \
                 WHERE user_id = ?3 AND cred_id = ?4",
};

#[cfg(feature = "sqlite")]
sql_passkeys!(sqlx::SqlitePool, SQLITE);

#[cfg(feature = "postgres")]
const POSTGRES: PasskeyStatements = PasskeyStatements {
    handle: "SELECT handle FROM passkey_users WHERE user_id = $1",
    insert_handle: "INSERT INTO passkey_users (user_id, handle) VALUES ($1, $2) \
                    ON CONFLICT (user_id) DO NOTHING",
    user_of_handle: "SELECT user_id FROM passkey_users WHERE handle = $1",
    add: "INSERT INTO passkeys (user_id, cred_id, name, credential, created_at) \
          VALUES ($1, $2, $3, $4, $5) RETURNING id",
    list: "SELECT id, name, credential, created_at, last_used_at FROM passkeys \
           WHERE user_id = $1 ORDER BY id",
    rename: "UPDATE passkeys SET name = $1 WHERE user_id = $2 AND id = $3",
    delete: "DELETE FROM passkeys WHERE user_id = $1 AND id = $2",
    credential: "SELECT credential FROM passkeys WHERE user_id = $1 AND cred_id = $2",
    record_use: "UPDATE passkeys SET credential = $1, last_used_at = $2 \
                 WHERE user_id = $3 AND cred_id = $4",
};

#[cfg(feature = "postgres")]
sql_passkeys!(crate::pg::PgHandle, POSTGRES);
