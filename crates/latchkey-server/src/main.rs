//! `latchkey`: a ready-to-run login server and its admin CLI, built only on the
//! `latchkey` library's public API.

use latchkey_server::app;
use latchkey_server::cli::{
    mail as mail_cli, session as session_cli, token as token_cli, user as user_cli,
};

use clap::{Parser, Subcommand};
use latchkey_server::config::ServeArgs;
use std::process::ExitCode;

/// Login server and admin tool.
#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, which is what a bare `latchkey` runs.
    #[command(flatten)]
    serve: ServeArgs,
}

// Made once per run: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(user_cli::UserCommand),
    /// List and revoke sessions (database session store).
    #[command(subcommand)]
    Session(session_cli::SessionCommand),
    /// Make, list and revoke personal access tokens.
    #[command(subcommand)]
    Token(token_cli::TokenCommand),
    /// Send a test mail; look into the mail outbox.
    #[command(subcommand)]
    Mail(mail_cli::MailCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => app::serve(cli.serve).await,
            Some(Command::Serve(args)) => app::serve(args).await,
            Some(Command::User(command)) => user_cli::run(command).await,
            Some(Command::Session(command)) => session_cli::run(command).await,
            Some(Command::Token(command)) => token_cli::run(command).await,
            Some(Command::Mail(command)) => mail_cli::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
