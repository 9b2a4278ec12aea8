//! `latchkey session …`: list and revoke sessions kept in the database store.

use crate::backend::Backend;
use crate::cli::user::find_user;
use crate::config::{DatabaseArgs, SessionStoreArgs};
use crate::web::for_people::rfc3339;
use anyhow::bail;
use clap::Subcommand;
use latchkey::{AuthUser, SessionId, Timestamp, User, UserStore};

/// Session administration (the server-side store named by --session-store).
#[derive(Subcommand)]
pub enum SessionCommand {
    /// List live sessions, of every user or of one.
    List {
        /// Only this user's sessions (username or email).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        sessions: SessionStoreArgs,
    },
    /// Revoke one session by id, or every session (and remembered device) of a user.
    Revoke {
        /// The session id (64 hex characters, as `session list` shows it).
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// Revoke all sessions of this user instead.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        sessions: SessionStoreArgs,
    },
}

/// Runs one session command.
pub async fn run(command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::List {
            user,
            database,
            sessions,
        } => {
            let backend = Backend::open(&database).await?;
            let users = backend.users.clone();
            let sessions = backend.reachable_session_store(&sessions).await?;
            let selected: Vec<User> = match user {
                Some(name) => vec![find_user(&*users, &name).await?],
                None => users.list().await?,
            };
            let now = Timestamp::now();
            println!(
                "{:<64}  {:<16} {:<20} {:<20} {:<15}",
                "ID", "USER", "CREATED", "LAST ACTIVE", "IP"
            );
            for user in selected {
                let mut listed = sessions.list_for_user(&user.user_id()).await?;
                listed.retain(|(_, record)| !record.is_expired(now));
                listed.sort_by_key(|(_, record)| std::cmp::Reverse(record.last_active_at));
                for (id, record) in listed {
                    println!(
                        "{:<64}  {:<16} {:<20} {:<20} {:<15}",
                        id.to_hex(),
                        user.username,
                        rfc3339(record.created_at),
                        rfc3339(record.last_active_at),
                        record.client_ip.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        SessionCommand::Revoke {
            id,
            user,
            database,
            sessions,
        } => {
            let backend = Backend::open(&database).await?;
            let Backend {
                users, remember, ..
            } = backend.clone();
            let sessions = backend.reachable_session_store(&sessions).await?;
            if let Some(name) = user {
                let user = find_user(&*users, &name).await?;
                let user_id = user.user_id();
                let ended = sessions.delete_for_user(&user_id, None).await?;
                let forgotten = remember.delete_for_user(&user_id).await?;
                println!(
                    "revoked {ended} session(s) and {forgotten} remembered device(s) of {}",
                    user.username
                );
            } else if let Some(id) = id {
                let Some(session_id) = SessionId::from_hex(&id) else {
                    bail!("{id:?} is not a session id (64 hex characters)");
                };
                if !sessions.delete(&session_id).await? {
                    bail!("no session {id}");
                }
                println!("revoked session {id}");
            }
        }
    }
    Ok(())
}
