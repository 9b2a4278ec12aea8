//! `latchkey user import FILE`: users with their existing password hashes from another
//! system, in JSON Lines or CSV (`username`, `email`, `password_hash`). Every row is
//! checked first (name, email, a hash format latchkey can verify, no duplicates in the
//! file or the database); one bad row means nothing is imported and every bad row is
//! reported with its line number. The users then log in with their old passwords, and
//! their hashes become argon2id at that first login.

use crate::backend::Backend;
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use latchkey::user::{login_key, username_skeleton, validate_email, validate_username};
use latchkey::{NewUser, UserStore};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// One user as a file describes it.
#[derive(Debug, Deserialize)]
struct ImportRow {
    username: String,
    #[serde(default)]
    email: Option<String>,
    password_hash: String,
}

/// A row that cannot be imported: its line in the file and why.
#[derive(Debug)]
struct Rejection {
    line: usize,
    reason: String,
}

/// Reads, checks and imports `file`; all rows or none.
pub async fn import(backend: &Backend, file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let csv = file
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
    let rows = if csv {
        read_csv(&text)
    } else {
        read_json_lines(&text)
    };
    let progress = progress_bar(rows.len() as u64);
    let existing: HashSet<String> = backend
        .users
        .list()
        .await?
        .into_iter()
        .flat_map(|user| unique_keys(&user.username, user.email.as_deref()))
        .collect();
    let mut seen = HashSet::new();
    let mut users = Vec::new();
    let mut lines = Vec::new();
    let mut rejected = Vec::new();
    for (line, row) in rows {
        progress.inc(1);
        match row.and_then(|row| check(row, &existing, &mut seen)) {
            Ok(user) => {
                users.push(user);
                lines.push(line);
            }
            Err(reason) => rejected.push(Rejection { line, reason }),
        }
    }
    progress.finish_and_clear();
    if !rejected.is_empty() {
        report(&rejected, users.len() + rejected.len());
        bail!("nothing imported from {}", file.display());
    }
    let count = users.len();
    match backend.users.create_many(users).await {
        Ok(_) => {
            println!("imported {count} user(s) from {}", file.display());
            Ok(())
        }
        Err((index, error)) => {
            let line = lines.get(index).copied().unwrap_or(0);
            bail!(
                "line {line}: {error}; nothing imported from {}",
                file.display()
            )
        }
    }
}

/// The rows of a JSON Lines file with their line numbers (blank lines skipped).
fn read_json_lines(text: &str) -> Vec<(usize, Result<ImportRow, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let row = serde_json::from_str(line).map_err(|error| format!("not a user: {error}"));
            (index + 1, row)
        })
        .collect()
}

/// The rows of a CSV file with a header line, with the line each starts on.
fn read_csv(text: &str) -> Vec<(usize, Result<ImportRow, String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(error) => return vec![(1, Err(format!("no header line: {error}")))],
    };
    let line_of = |position: Option<&csv::Position>| position.map_or(0, |at| at.line() as usize);
    reader
        .records()
        .map(|record| match record {
            Ok(record) => (
                line_of(record.position()),
                record
                    .deserialize(Some(&headers))
                    .map_err(|error| format!("not a user: {error}")),
            ),
            Err(error) => (
                line_of(error.position()),
                Err(format!("not a user: {error}")),
            ),
        })
        .collect()
}

/// What must be unique of a user, as the user store compares it: the username's
/// confusable skeleton, then the email's login key (each tagged with its kind).
fn unique_keys(username: &str, email: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("name {}", username_skeleton(username))];
    keys.extend(email.map(|email| format!("email {}", login_key(email))));
    keys
}

/// The user a row makes, or why it cannot be imported.
fn check(
    row: ImportRow,
    existing: &HashSet<String>,
    seen: &mut HashSet<String>,
) -> Result<NewUser, String> {
    let username = validate_username(&row.username).map_err(|error| error.to_string())?;
    let email = match row.email.as_deref().map(str::trim) {
        Some(email) if !email.is_empty() => {
            Some(validate_email(email).map_err(|error| error.to_string())?)
        }
        _ => None,
    };
    latchkey::password::check_stored_hash(&row.password_hash)
        .map_err(|error| format!("password_hash: {error}"))?;
    let shown = std::iter::once(&username).chain(email.as_ref());
    for (key, shown) in unique_keys(&username, email.as_deref())
        .into_iter()
        .zip(shown)
    {
        if existing.contains(&key) {
            return Err(format!(
                "{shown:?} (or a look-alike) is already taken in the database"
            ));
        }
        if !seen.insert(key) {
            return Err(format!(
                "{shown:?} (or a look-alike) appears more than once in the file"
            ));
        }
    }
    NewUser::new(&username, email.as_deref(), row.password_hash).map_err(|error| error.to_string())
}

fn report(rejected: &[Rejection], total: usize) {
    eprintln!("rejected {} of {total} row(s):", rejected.len());
    for rejection in rejected {
        eprintln!("  line {}: {}", rejection.line, rejection.reason);
    }
}

/// A progress bar on stderr for large files (hidden when stderr is not a terminal).
fn progress_bar(rows: u64) -> ProgressBar {
    if rows < 1000 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("checking {bar:40} {pos}/{len} rows ({eta})") {
        bar.set_style(style);
    }
    bar
}
