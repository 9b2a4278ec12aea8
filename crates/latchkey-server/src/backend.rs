//! The database the server and the CLI run on, chosen by the scheme of
//! `--database-url`: `sqlite://…` (the default) or `postgres://…`. Either way the same
//! three tables hold users, sessions and remember-me tokens.

use crate::config::DatabaseArgs;
use anyhow::{bail, Context};
use latchkey::remember::{PostgresRememberStore, RememberStore, SqliteRememberStore};
use latchkey::store::{open_postgres, open_sqlite, PostgresStore, SqliteStore};
use latchkey::{PostgresUserStore, SessionStore, SqliteUserStore, UserStore};
use std::sync::Arc;

/// The stores kept in the database.
#[derive(Clone)]
pub struct Backend {
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Remember-me tokens.
    pub remember: Arc<dyn RememberStore>,
    /// The `sessions` table (used when `--session-store database`).
    pub sessions: Arc<dyn SessionStore>,
}

impl Backend {
    /// Opens the database at `--database-url`, creating a SQLite file if missing and
    /// applying migrations.
    pub async fn open(database: &DatabaseArgs) -> anyhow::Result<Backend> {
        let url = &database.database_url;
        let opened = if url.starts_with("sqlite:") {
            let pool = open_sqlite(url).await;
            pool.map(|pool| Backend {
                users: Arc::new(SqliteUserStore::new(pool.clone())),
                remember: Arc::new(SqliteRememberStore::new(pool.clone())),
                sessions: Arc::new(SqliteStore::new(pool)),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = open_postgres(url).await;
            pool.map(|pool| Backend {
                users: Arc::new(PostgresUserStore::new(pool.clone())),
                remember: Arc::new(PostgresRememberStore::new(pool.clone())),
                sessions: Arc::new(PostgresStore::new(pool)),
            })
        } else {
            bail!("--database-url must start with sqlite: or postgres:// (got {url:?})");
        };
        opened.with_context(|| format!("cannot open database {}", redact(url)))
    }
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
