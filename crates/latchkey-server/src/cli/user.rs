//! `latchkey user …`: add, list, passwd, import, disable.

use crate::backend::Backend;
use crate::config::{load_secret_key, DatabaseArgs, SessionStoreArgs, SessionStoreKind};
use anyhow::{bail, Context};
use clap::Subcommand;
use latchkey::auth::credentials::{end_for, Holders};
use latchkey::session::{ServerSide, SessionStorage};
use latchkey::{CredentialEvent, NewUser, User, UserStore};
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
        #[command(flatten)]
        sessions: SessionStoreArgs,
    },
    /// Import users with their existing password hashes (Werkzeug, Django, passlib,
    /// bcrypt, argon2) from a JSON Lines or .csv file with username, email and
    /// password_hash; all rows or none.
    Import {
        /// The file: `.csv` with a header line, anything else JSON Lines.
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Disable a user; ends all of the user's sessions.
    Disable {
        /// Username or email.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        sessions: SessionStoreArgs,
    },
    /// Mark a user's email address verified (as if they had followed the mailed link).
    Verify {
        /// Username or email.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Put a user in a group, or take them out (`group add NAME GROUP`, `group remove
    /// NAME GROUP`): what access rules let in. Every server process sees the change at
    /// its next request.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show a user's second factors and passkeys.
    Mfa {
        /// Username or email.
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove a user's second factors and passkeys (a lost phone): logins ask for the
    /// password only. Ends the user's sessions and mails them a notice.
    MfaReset {
        /// Username or email.
        name: String,
        /// The URL users reach the server at, for the notice's link.
        #[arg(
            long,
            env = "LATCHKEY_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        sessions: SessionStoreArgs,
    },
}

/// `latchkey user group …`.
#[derive(Subcommand)]
pub enum GroupCommand {
    /// Put a user in a group.
    Add {
        /// Username or email.
        name: String,
        /// The group (1 to 64 letters, digits, `-`, `_` or `.`).
        group: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Take a user out of a group.
    Remove {
        /// Username or email.
        name: String,
        /// The group.
        group: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Runs one group command.
async fn run_group(command: GroupCommand) -> anyhow::Result<()> {
    let (name, group, database, adding) = match command {
        GroupCommand::Add {
            name,
            group,
            database,
        } => (name, group, database, true),
        GroupCommand::Remove {
            name,
            group,
            database,
        } => (name, group, database, false),
    };
    let Some(group) = latchkey::user::groups::group_name(&group) else {
        bail!("{group:?} is no group name: 1 to 64 letters, digits, -, _ or .");
    };
    let backend = Backend::open(&database).await?;
    let user = find_user(&*backend.users, &name).await?;
    let groups = backend.groups();
    let changed = if adding {
        groups.add(user.id, group).await?
    } else {
        groups.remove(user.id, group).await?
    };
    let (event, done, unchanged) = if adding {
        ("group_added", "added to", "already in")
    } else {
        ("group_removed", "removed from", "was not in")
    };
    if changed {
        tracing::info!(target: "latchkey::audit", event, user_id = user.id, group, "{event}");
        println!("{} {done} {group}", user.username);
    } else {
        println!("{} {unchanged} {group}", user.username);
    }
    Ok(())
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
            let users = Backend::open(&database).await?.users;
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
            let backend = Backend::open(&database).await?;
            let (identities, groups) = (backend.identities(), backend.groups());
            println!(
                "{:>6}  {:<24} {:<32} {:<8} {:<16} GROUPS",
                "ID", "USERNAME", "EMAIL", "STATUS", "PROVIDERS"
            );
            let or_dash = |names: Vec<String>| {
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(",")
                }
            };
            for user in backend.users.list().await? {
                let providers: Vec<String> = identities
                    .for_user(user.id)
                    .await?
                    .into_iter()
                    .map(|identity| identity.provider)
                    .collect();
                println!(
                    "{:>6}  {:<24} {:<32} {:<8} {:<16} {}",
                    user.id,
                    user.username,
                    user.email.as_deref().unwrap_or("-"),
                    if user.disabled { "disabled" } else { "active" },
                    or_dash(providers),
                    or_dash(groups.groups_of(user.id).await?),
                );
            }
        }
        UserCommand::Group(command) => run_group(command).await?,
        UserCommand::Passwd {
            name,
            password_stdin,
            database,
            sessions,
        } => {
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &name).await?;
            let hash = new_password_hash(&database, password_stdin).await?;
            let user = backend.users.set_password_hash(user.id, &hash).await?;
            let ended = end_credentials(
                &backend,
                &database,
                &sessions,
                &user,
                CredentialEvent::PasswordSetByAdmin,
            )
            .await?;
            println!("password changed for {}; {ended}", user.username);
        }
        UserCommand::Import { file, database } => {
            let backend = Backend::open(&database).await?;
            crate::cli::import::import(&backend, &file).await?;
        }
        UserCommand::Disable {
            name,
            database,
            sessions,
        } => {
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &name).await?;
            let user = backend.users.set_disabled(user.id, true).await?;
            let ended = end_credentials(
                &backend,
                &database,
                &sessions,
                &user,
                CredentialEvent::Disabled,
            )
            .await?;
            println!("disabled {}; {ended}", user.username);
        }
        UserCommand::Verify { name, database } => {
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &name).await?;
            let Some(email) = user.email.as_deref() else {
                bail!("{} has no email address to verify", user.username);
            };
            backend
                .users
                .mark_email_verified(user.id, email)
                .await?
                .with_context(|| format!("{} changed address meanwhile", user.username))?;
            tracing::info!(target: "latchkey::audit", event = "email_verified_by_admin", user_id = user.id, "email_verified_by_admin");
            println!("verified {} <{email}>", user.username);
        }
        UserCommand::Mfa { name, database } => {
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &name).await?;
            let factors = backend.second_factors(&load_secret_key(&database)?.keys[0]);
            let status = factors.status(user.id).await?;
            let passkeys = backend.passkeys().list(user.id).await?;
            println!(
                "{}: totp {}, {} recovery code(s) left, {} passkey(s)",
                user.username,
                if status.totp { "on" } else { "off" },
                status.recovery_codes_left,
                passkeys.len()
            );
            for passkey in passkeys {
                println!("  passkey {}: {}", passkey.id, passkey.name);
            }
        }
        UserCommand::MfaReset {
            name,
            public_url,
            database,
            sessions,
        } => {
            let backend = Backend::open(&database).await?;
            let user = find_user(&*backend.users, &name).await?;
            let factors = backend.second_factors(&load_secret_key(&database)?.keys[0]);
            let mut removed = factors.remove_all(user.id).await?;
            let passkeys = backend.passkeys();
            for passkey in passkeys.list(user.id).await? {
                removed |= passkeys.delete(user.id, passkey.id).await?;
            }
            tracing::warn!(target: "latchkey::audit", event = "second_factors_reset_by_admin", user_id = user.id, removed, "second_factors_reset_by_admin");
            let ended = end_credentials(
                &backend,
                &database,
                &sessions,
                &user,
                CredentialEvent::SecondFactorsReset,
            )
            .await?;
            queue_notice(&backend, &public_url, &user).await?;
            println!(
                "{}: second factors {}; {ended}",
                user.username,
                if removed {
                    "removed"
                } else {
                    "were not set up"
                }
            );
        }
    }
    Ok(())
}

/// The user whose username or email is `name`.
pub async fn find_user(users: &dyn UserStore, name: &str) -> anyhow::Result<User> {
    users
        .find_by_login(name)
        .await?
        .with_context(|| format!("no user named {name:?}"))
}

/// Ends what the credential table says `event` ends for `user`, where the command line
/// can reach it (database, Redis, mirrors); says how. Sessions it cannot reach (another
/// process's memory, cookies) end on their next request: the user's credential version
/// moved on, and every request compares it.
async fn end_credentials(
    backend: &Backend,
    database: &DatabaseArgs,
    sessions: &SessionStoreArgs,
    user: &User,
    event: CredentialEvent,
) -> anyhow::Result<String> {
    let tokens = backend.email_tokens(&load_secret_key(database)?.keys[0]);
    let access_tokens = backend.access_tokens();
    let storage = match sessions.session_store {
        SessionStoreKind::Memory | SessionStoreKind::Cookie => None,
        _ => Some(ServerSide(backend.reachable_session_store(sessions).await?)),
    };
    let holders = Holders {
        users: Some(backend.users.as_ref()),
        sessions: storage
            .as_ref()
            .map(|storage| storage as &dyn SessionStorage),
        remembered: Some(backend.remember.as_ref()),
        mailed: Some(tokens.as_ref()),
        access_tokens: Some(access_tokens.as_ref()),
    };
    let ended = end_for(&holders, event, &user.id.to_string(), None).await?;
    let sessions_said = match storage {
        None => format!(
            "{} sessions end on their next request (credential version changed)",
            sessions.session_store
        ),
        Some(_) => format!("{} session(s) ended", ended.sessions),
    };
    Ok(format!(
        "{sessions_said}, {} remembered device(s) forgotten, {} mailed link(s) revoked, \
         {} access token(s) revoked",
        ended.remembered_devices, ended.mailed, ended.access_tokens
    ))
}

/// Queues the notice that the admin removed `user`'s second factors to their address
/// (a running server's outbox worker sends it).
async fn queue_notice(backend: &Backend, public_url: &str, user: &User) -> anyhow::Result<()> {
    let Some(to) = user.email.as_deref() else {
        return Ok(());
    };
    let templates = crate::web::templates::Templates::new(None);
    let notice = crate::notices::Notice::SecondFactorsResetByAdmin;
    let public_url = public_url.trim_end_matches('/');
    let mail = crate::notices::notice_mail(&templates, public_url, to, notice, None)?;
    backend.outbox.enqueue(&mail).await?;
    Ok(())
}

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
