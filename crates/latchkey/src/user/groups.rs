//! The groups a user belongs to (`user_groups`): names that access rules let in, kept
//! as their members' rows and read at every use, so a change reaches every process at
//! once.

use crate::sql_error::map_sqlx;
use async_trait::async_trait;

crate::store_error::store_error!(
    /// Why a group store failed.
    GroupStoreError,
    "group store"
);

/// Longest group name.
pub const MAX_GROUP_CHARS: usize = 64;

/// `name` if it can be a group's: 1 to 64 letters, digits, `-`, `_` or `.` (what access
/// rules and the `Remote-Groups` header, comma-separated, can carry unambiguously).
pub fn group_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GROUP_CHARS
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    ok.then_some(name)
}

/// Where users' groups are kept.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// The groups of `user_id`, by name.
    async fn groups_of(&self, user_id: i64) -> Result<Vec<String>, GroupStoreError>;
    /// Puts `user_id` in `group`; whether they were not in it yet.
    async fn add(&self, user_id: i64, group: &str) -> Result<bool, GroupStoreError>;
    /// Takes `user_id` out of `group`; whether they were in it.
    async fn remove(&self, user_id: i64, group: &str) -> Result<bool, GroupStoreError>;
}

/// Groups in SQL (the `user_groups` table).
#[derive(Debug, Clone)]
pub struct SqlGroups<P> {
    pool: P,
}

impl<P> SqlGroups<P> {
    /// Groups in `pool`'s database.
    pub fn new(pool: P) -> Self {
        SqlGroups { pool }
    }
}

/// The SQL of a group store, in one dialect; parameters in the order given.
struct GroupStatements {
    /// user_id → name
    groups_of: &'static str,
    /// user_id, name (nothing if there already)
    add: &'static str,
    /// user_id, name
    remove: &'static str,
}

macro_rules! sql_groups {
    ($pool:ty, $sql:expr) => {
        impl SqlGroups<$pool> {
            /// Runs `statement` (add or remove) for `user_id` and `group`: whether a row
            /// changed.
            async fn change(
                &self,
                statement: &'static str,
                user_id: i64,
                group: &str,
            ) -> Result<bool, GroupStoreError> {
                let done = sqlx::query(statement)
                    .bind(user_id)
                    .bind(group)
                    .execute(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl GroupStore for SqlGroups<$pool> {
            async fn groups_of(&self, user_id: i64) -> Result<Vec<String>, GroupStoreError> {
                let rows: Vec<(String,)> = sqlx::query_as($sql.groups_of)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_sqlx)?;
                Ok(rows.into_iter().map(|(name,)| name).collect())
            }

            async fn add(&self, user_id: i64, group: &str) -> Result<bool, GroupStoreError> {
                self.change($sql.add, user_id, group).await
            }

            async fn remove(&self, user_id: i64, group: &str) -> Result<bool, GroupStoreError> {
                self.change($sql.remove, user_id, group).await
            }
        }
    };
}

#[cfg(feature = "sqlite")]
const SQLITE: GroupStatements = GroupStatements {
    groups_of: "SELECT name FROM user_groups WHERE user_id = ?1 ORDER BY name",
    add: "INSERT INTO user_groups (user_id, name) VALUES (?1, ?2) \
          ON CONFLICT (user_id, name) DO NOTHING",
    remove: "DELETE FROM user_groups WHERE user_id = ?1 AND name = ?2",
};

#[cfg(feature = "sqlite")]
sql_groups!(sqlx::SqlitePool, SQLITE);

#[cfg(feature = "postgres")]
const POSTGRES: GroupStatements = GroupStatements {
    groups_of: "SELECT name FROM user_groups WHERE user_id = $1 ORDER BY name",
    add: "INSERT INTO user_groups (user_id, name) VALUES ($1, $2) \
          ON CONFLICT (user_id, name) DO NOTHING",
    remove: "DELETE FROM user_groups WHERE user_id = $1 AND name = $2",
};

#[cfg(feature = "postgres")]
sql_groups!(crate::pg::PgHandle, POSTGRES);

#[cfg(test)]
mod tests {
    use super::group_name;

    #[test]
    fn group_names_are_plain_words() {
        for good in ["admins", "ops-eu", "team_2", "a.b"] {
            assert_eq!(group_name(good), Some(good));
        }
        let long = "x".repeat(MAX + 1);
        for bad in ["", "two words", "a,b", "ünï", "\u{202e}x", long.as_str()] {
            assert_eq!(group_name(bad), None, "{bad:?}");
        }
    }

    const MAX: usize = super::MAX_GROUP_CHARS;
}
