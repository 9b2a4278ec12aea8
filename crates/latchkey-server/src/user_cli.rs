//! `latchkey user …`: add, list, passwd, disable.

use crate::config::DatabaseArgs;
use anyhow::{bail, Context};
use clap::Subcommand;
use latchkey::remember::{RememberStore, SqliteRememberStore};
use latchkey::store::{open_sqlite, SqliteStore};
use latchkey::{NewUser, SessionStore, SqliteUserStore, User, UserStore};
use std::io::BufRead;

/// User administration.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (prompts for the password unless --password-stdin).
    Add {
        /// Username.
        name: String,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Change a user's password; ends all of the user's sessions.
    Passwd {
        /// Username or email.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Disable a user; ends all of the user's sessions.
    Disable {
        /// Username or email.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Runs one user command.
pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            email,
            password_stdin,
            database,
        } => {
            let users = open_users(&database).await?.0;
            let password = read_new_password(password_stdin)?;
            database
                .policy()
                .check(&password)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            let hash = database.hasher()?.hash(&password).await?;
            let user = users
                .create(NewUser::new(&name, email.as_deref(), hash)?)
                .await?;
            println!("created user {} (id {})", user.username, user.id);
        }
        UserCommand::List { database } => {
            let users = open_users(&database).await?.0;
            println!(
                "{:>6}  {:<24} {:<32} {:<8}",
                "ID", "USERNAME", "EMAIL", "STATUS"
            );
            for user in users.list().await? {
                println!(
                    "{:>6}  {:<24} {:<32} {:<8}",
                    user.id,
                    user.username,
                    user.email.as_deref().unwrap_or("-"),
                    if user.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            database,
        } => {
            let (users, sessions) = open_users(&database).await?;
            let user = find_user(&users, &name).await?;
            let hash = new_password_hash(&database, password_stdin).await?;
            let user = users.set_password_hash(user.id, &hash).await?;
            let ended = end_sessions(&sessions, &user).await?;
            println!(
                "password changed for {}; {ended} session(s) ended",
                user.username
            );
        }
        UserCommand::Disable { name, database } => {
            let (users, sessions) = open_users(&database).await?;
            let user = find_user(&users, &name).await?;
            let user = users.set_disabled(user.id, true).await?;
            let ended = end_sessions(&sessions, &user).await?;
            println!("disabled {}; {ended} session(s) ended", user.username);
        }
    }
    Ok(())
}

/// Opens the database: its users and its session store.
pub async fn open_users(database: &DatabaseArgs) -> anyhow::Result<(SqliteUserStore, SqliteStore)> {
    let pool = open_sqlite(&database.database_url)
        .await
        .with_context(|| format!("cannot open database {}", database.database_url))?;
    Ok((SqliteUserStore::new(pool.clone()), SqliteStore::new(pool)))
}

/// The user named `name` (username or email), or a clear error.
pub async fn find_user(users: &SqliteUserStore, name: &str) -> anyhow::Result<User> {
    users
        .find_by_login(name)
        .await?
        .with_context(|| format!("no user named {name:?}"))
}

/// Deletes the user's sessions and remember-me tokens from the database now. Sessions
/// held elsewhere (a server's memory store) end on their next request, because the
/// user's credential version changed.
async fn end_sessions(sessions: &SqliteStore, user: &User) -> anyhow::Result<u64> {
    let user_id = latchkey::AuthUser::user_id(user);
    SqliteRememberStore::new(sessions.pool().clone())
        .delete_for_user(&user_id)
        .await?;
    Ok(sessions.delete_for_user(&user_id, None).await?)
}

/// Reads a new password, checks it against the policy and hashes it.
async fn new_password_hash(database: &DatabaseArgs, from_stdin: bool) -> anyhow::Result<String> {
    let password = read_new_password(from_stdin)?;
    database
        .policy()
        .check(&password)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(database.hasher()?.hash(&password).await?)
}

fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let password = rpassword::prompt_password("Password: ")?;
    let confirmation = rpassword::prompt_password("Repeat password: ")?;
    if password != confirmation {
        bail!("passwords do not match");
    }
    Ok(password)
}
