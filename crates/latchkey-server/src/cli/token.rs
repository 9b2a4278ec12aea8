//! `latchkey token …`: the administrator makes, lists and revokes personal access
//! tokens (the token is printed once, on standard output, and never again).

use crate::backend::Backend;
use crate::cli::user::find_user;
use crate::config::DatabaseArgs;
use crate::web::for_people::rfc3339;
use crate::web::state::ApiTokens;
use anyhow::{bail, Context};
use clap::Subcommand;
use latchkey::access_token::{self, IssueError, NewAccessToken, TokenLifetime};
use latchkey::{Timestamp, UserStore};
use std::time::Duration;

/// Personal access tokens.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token for a user and print it (once).
    Create {
        /// The user (username or email).
        user: String,
        /// What to call it.
        #[arg(long)]
        name: String,
        /// A scope (`read`, `write`; repeatable; default `read`).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// How long it lives (e.g. 30d, 1y), or `never`.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List live tokens, of every user or of one.
    List {
        /// Only this user's tokens (username or email).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke one token by id, or every token of a user.
    Revoke {
        /// The token id (as `token list` shows it).
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// Revoke all tokens of this user instead.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `30d`, `1y`… as a lifetime; `never` as none.
fn lifetime(text: &str) -> anyhow::Result<Option<Duration>> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text).with_context(|| {
        format!("--expires-in {text:?}: a duration such as 30d or 1y, or never")
    })?;
    Ok(Some(duration))
}

/// Runs one token command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            name,
            scopes,
            expires_in,
            database,
        } => {
            let lifetime = lifetime(&expires_in)?;
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &user).await?;
            let scopes = if scopes.is_empty() {
                vec!["read".to_string()]
            } else {
                scopes
            };
            // The administrator may make any lifetime, never expiring included.
            let rules = TokenLifetime {
                max: Duration::MAX,
                allow_none: true,
                ..TokenLifetime::default()
            };
            let new = NewAccessToken {
                user_id: user.id.to_string(),
                name,
                scopes,
                lifetime: Some(lifetime),
            };
            let store = backend.access_tokens();
            let issued = access_token::issue(
                store.as_ref(),
                &ApiTokens::scopes(),
                &rules,
                new,
                Timestamp::now(),
            )
            .await;
            let (token, record) = match issued {
                Ok(issued) => issued,
                Err(IssueError::Invalid { field, message }) => bail!("{field}: {message}"),
                Err(IssueError::Store(error)) => return Err(error.into()),
            };
            eprintln!(
                "token {} for {} ({}), expires {}; it is shown only now:",
                record.id,
                user.username,
                record.scopes.join(" "),
                record
                    .expires_at
                    .map(rfc3339)
                    .unwrap_or_else(|| "never".into())
            );
            println!("{}", token.expose());
            Ok(())
        }
        TokenCommand::List { user, database } => {
            let backend = Backend::open(&database).await?;
            let owner = match user {
                Some(name) => Some(find_user(&*backend.users, &name).await?.id.to_string()),
                None => None,
            };
            let tokens = backend
                .access_tokens()
                .list(owner.as_deref(), Timestamp::now())
                .await?;
            let users = backend.users.list().await?;
            println!(
                "{:<24}  {:<16} {:<20} {:<14} {:<11} {:<20} {:<20}",
                "ID", "USER", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED"
            );
            for token in tokens {
                let username = users
                    .iter()
                    .find(|user| user.id.to_string() == token.user_id)
                    .map_or(token.user_id.as_str(), |user| user.username.as_str());
                println!(
                    "{:<24}  {:<16} {:<20} {:<14} {:<11} {:<20} {:<20}",
                    token.id,
                    username,
                    token.name,
                    token.prefix,
                    token.scopes.join(","),
                    token
                        .expires_at
                        .map(rfc3339)
                        .unwrap_or_else(|| "never".into()),
                    token
                        .last_used_at
                        .map(rfc3339)
                        .unwrap_or_else(|| "-".into()),
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { id, user, database } => {
            let backend = Backend::open(&database).await?;
            let store = backend.access_tokens();
            match (id, user) {
                (Some(id), _) => {
                    if !access_token::revoke(store.as_ref(), &id, None).await? {
                        bail!("no live token with id {id:?}");
                    }
                    println!("token {id} revoked");
                }
                (None, Some(name)) => {
                    let user = find_user(&*backend.users, &name).await?;
                    let revoked = store
                        .revoke_for_user(&user.id.to_string(), Timestamp::now())
                        .await?;
                    println!("{revoked} token(s) of {} revoked", user.username);
                }
                (None, None) => bail!("give a token id or --user"),
            }
            Ok(())
        }
    }
}
