//! The session-store logic shared by the SQL stores. Only the statements differ between
//! dialects (placeholders), so each store names its [`Statements`] and the pool it runs
//! them on, and [`sql_session_store!`] writes the one implementation for both.

/// The SQL a session store runs, in one dialect. Parameters are bound in the order the
/// comments give.
pub(crate) struct Statements {
    /// id → record
    pub load: &'static str,
    /// id, user_id, version, expires_at, record
    pub insert: &'static str,
    /// new id, user_id, version, expires_at, record, old id, expected version
    pub replace: &'static str,
    /// id → 1 if the row exists
    pub exists: &'static str,
    /// id
    pub delete: &'static str,
    /// user_id → id, record
    pub list_for_user: &'static str,
    /// user_id, id to keep (or NULL)
    pub delete_for_user: &'static str,
    /// now, limit
    pub delete_expired: &'static str,
}

pub(crate) use crate::sql_error::map_sqlx;

/// Implements [`crate::session::SessionStore`] for `$store` (a struct with a `pool` field, a
/// `load_fast` method, which may answer a load without a pooled query of its own, and a
/// `sweep_expired` method, which runs `delete_expired_rows` its own way) with the statements
/// `$sql`. Saves are conditional `UPDATE`s on the version; a rotation
/// re-keys the row in the same statement, so the old token is dead the moment the new
/// one exists; nothing ever upserts.
macro_rules! sql_session_store {
    ($store:ty, $sql:expr) => {
        impl $store {
            /// Deletes up to `limit` sessions expired at `now`; how many.
            async fn delete_expired_rows(
                &self,
                now: $crate::time::Timestamp,
                limit: u32,
            ) -> Result<u64, sqlx::Error> {
                let done = sqlx::query($sql.delete_expired)
                    .bind(now.as_millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn replace(
                &self,
                old_id: &$crate::session::SessionId,
                new_id: &$crate::session::SessionId,
                record: &$crate::session::SessionRecord,
                expected_version: u64,
            ) -> Result<(), $crate::session::StoreError> {
                use $crate::store::{codec::encode_record, sql::map_sqlx};
                let done = sqlx::query($sql.replace)
                    .bind(new_id.to_hex())
                    .bind(record.user_id())
                    .bind(record.version as i64)
                    .bind(record.expires_at().as_millis())
                    .bind(encode_record(record)?)
                    .bind(old_id.to_hex())
                    .bind(expected_version as i64)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                // Why no row matched: the session is gone, or its version moved on.
                let exists = sqlx::query($sql.exists)
                    .bind(old_id.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Err(match exists {
                    Some(_) => $crate::session::StoreError::VersionConflict,
                    None => $crate::session::StoreError::NotFound,
                })
            }
        }

        #[async_trait::async_trait]
        impl $crate::session::SessionStore for $store {
            async fn load(
                &self,
                id: &$crate::session::SessionId,
            ) -> Result<
                Option<std::sync::Arc<$crate::session::SessionRecord>>,
                $crate::session::StoreError,
            > {
                use $crate::store::{codec::decode_stored, sql::map_sqlx};
                if let Some(loaded) = self.load_fast(id).await {
                    return loaded;
                }
                let text: Option<String> = sqlx::query_scalar($sql.load)
                    .bind(id.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                decode_stored(text)
            }

            async fn create(
                &self,
                id: &$crate::session::SessionId,
                record: &$crate::session::SessionRecord,
            ) -> Result<(), $crate::session::StoreError> {
                use $crate::store::{codec::encode_record, sql::map_sqlx};
                sqlx::query($sql.insert)
                    .bind(id.to_hex())
                    .bind(record.user_id())
                    .bind(record.version as i64)
                    .bind(record.expires_at().as_millis())
                    .bind(encode_record(record)?)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(())
            }

            async fn save(
                &self,
                id: &$crate::session::SessionId,
                record: &$crate::session::SessionRecord,
                expected_version: u64,
            ) -> Result<(), $crate::session::StoreError> {
                self.replace(id, id, record, expected_version).await
            }

            async fn rotate(
                &self,
                old_id: &$crate::session::SessionId,
                new_id: &$crate::session::SessionId,
                record: &$crate::session::SessionRecord,
                expected_version: u64,
            ) -> Result<(), $crate::session::StoreError> {
                self.replace(old_id, new_id, record, expected_version).await
            }

            async fn delete(
                &self,
                id: &$crate::session::SessionId,
            ) -> Result<bool, $crate::session::StoreError> {
                let done = sqlx::query($sql.delete)
                    .bind(id.to_hex())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::sql::map_sqlx)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_for_user(
                &self,
                user_id: &str,
            ) -> Result<
                Vec<($crate::session::SessionId, $crate::session::SessionRecord)>,
                $crate::session::StoreError,
            > {
                use sqlx::Row;
                use $crate::store::{
                    codec::{decode_id, decode_record},
                    sql::map_sqlx,
                };
                let rows = sqlx::query($sql.list_for_user)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                rows.iter()
                    .map(|row| {
                        let id: String = row.try_get("id").map_err(map_sqlx)?;
                        let text: String = row.try_get("record").map_err(map_sqlx)?;
                        Ok((decode_id(&id)?, decode_record(&text)?))
                    })
                    .collect()
            }

            async fn delete_for_user(
                &self,
                user_id: &str,
                keep: Option<&$crate::session::SessionId>,
            ) -> Result<u64, $crate::session::StoreError> {
                let done = sqlx::query($sql.delete_for_user)
                    .bind(user_id)
                    .bind(keep.map($crate::session::SessionId::to_hex))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::sql::map_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn delete_expired(
                &self,
                now: $crate::time::Timestamp,
                limit: u32,
            ) -> Result<u64, $crate::session::StoreError> {
                self.sweep_expired(now, limit).await
            }
        }
    };
}

pub(crate) use sql_session_store;
