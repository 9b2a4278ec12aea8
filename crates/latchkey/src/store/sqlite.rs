//! SQLite session store (sqlx): WAL mode, embedded migrations, compare-and-swap saves.

use super::codec::decode_stored;
use super::sql::{sql_session_store, Statements};
use crate::session::{SessionId, SessionRecord, StoreError};
use crate::time::Timestamp;
use rusqlite::{OpenFlags, OptionalExtension};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opens (creating the file if missing) the SQLite database at `url`, in WAL mode, and
/// applies latchkey's migrations (users and sessions tables).
///
/// `sqlite://latchkey.db` is a file beside the working directory; `sqlite::memory:` is a
/// private in-memory database (one connection, so every query sees the same data).
pub async fn open_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = SqliteConnectOptions::from_str(url)
        .map_err(unavailable)?
        .create_if_missing(true)
        .journal_mode(if in_memory {
            SqliteJournalMode::Memory
        } else {
            SqliteJournalMode::Wal
        })
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // The WAL is checkpointed every WAL_CHECKPOINT_PAGES pages written and cut back
        // to JOURNAL_SIZE_LIMIT bytes after a checkpoint, so it cannot grow without bound.
        .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string());
    if !in_memory {
        private_database_file(options.get_filename())?;
        let reserve = DiskReserve::beside(options.get_filename());
        if let Err(error) = reserve.fill() {
            tracing::warn!(%error, file = %reserve.path.display(), "cannot create the disk reserve");
        }
    }
    let mut pool = SqlitePoolOptions::new().acquire_timeout(Duration::from_secs(10));
    if in_memory {
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    } else {
        pool = pool.max_connections(8);
    }
    let pool = pool.connect_with(options).await.map_err(unavailable)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    Ok(pool)
}

/// Creates the database file `path` readable by its owner only (0600) if it is missing:
/// it holds password hashes, emails and sessions. SQLite would create it 0644, and
/// gives the WAL and shared-memory files it makes beside it the database file's mode,
/// so those are 0600 too. Warns when an existing one can be read by other users.
fn private_database_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.as_os_str().to_os_string();
                file.push(suffix);
                warn_if_others_can_read(Path::new(&file));
            }
            Ok(())
        }
        Err(error) => Err(unavailable(error)),
    }
}

/// Logs a warning when `file` exists and its group or other users have any access to it.
#[cfg(unix)]
fn warn_if_others_can_read(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(file) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                mode = %format!("{mode:o}"),
                "the database file can be read by other users of this machine (it holds \
                 password hashes, emails and sessions): chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_file: &Path) {}

/// Pages written to the WAL before it is checkpointed (SQLite's default is 1000: 4 MiB).
const WAL_CHECKPOINT_PAGES: u32 = 500;
/// Bytes the WAL is cut back to after a checkpoint; with checkpoints every
/// [`WAL_CHECKPOINT_PAGES`] pages the WAL stays under it.
pub const JOURNAL_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// Bytes of the reserve file kept beside the database (see [`DiskReserve`]).
pub const DISK_RESERVE_BYTES: u64 = 2 * 1024 * 1024;

/// A file of [`DISK_RESERVE_BYTES`] zeros beside the database (`<database>-reserve`),
/// deleted to make room when the disk is full: a `DELETE` needs WAL space, so without
/// it the expiry sweep fails with "database or disk is full" and nothing ever frees the
/// space. The sweep deletes it, deletes the expired sessions, checkpoints the WAL back
/// to nothing, and writes the reserve again once there is room.
#[derive(Debug)]
struct DiskReserve {
    path: PathBuf,
}

impl DiskReserve {
    fn beside(database: &Path) -> DiskReserve {
        let mut path = database.as_os_str().to_os_string();
        path.push("-reserve");
        DiskReserve { path: path.into() }
    }

    /// Writes the reserve if it is missing or short (real zeros: a sparse file would
    /// hold no space); a partial one is removed again.
    fn fill(&self) -> std::io::Result<()> {
        use std::io::Write;
        let size = std::fs::metadata(&self.path).map_or(0, |metadata| metadata.len());
        if size >= DISK_RESERVE_BYTES {
            return Ok(());
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&self.path).and_then(|mut file| {
            let zeros = vec![0u8; 64 * 1024];
            for _ in 0..DISK_RESERVE_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        written
    }

    /// Deletes the reserve; `true` if there was one to free.
    fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// Whether SQLite failed for want of disk space (`SQLITE_FULL`).
fn is_disk_full(error: &sqlx::Error) -> bool {
    const SQLITE_FULL: &str = "13";
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some(SQLITE_FULL)
                || db.message().contains("database or disk is full")
        }
        _ => false,
    }
}

/// Sessions in a SQLite database: table `sessions`, keyed by the hex SHA-256 of the
/// token, indexed by user and by expiry. Saves are `UPDATE … WHERE version = ?`; nothing
/// ever upserts, so a session deleted by a logout stays deleted.
///
/// Loads from a database file run on the calling thread over a few read-only
/// connections of its own (a primary-key read from SQLite's page cache takes
/// microseconds; sqlx would hand it to a connection's worker thread and back). WAL mode
/// lets them read while another connection writes; a load that finds the database busy
/// or cannot open a connection goes through the pool instead, as does every load of an
/// in-memory database (which other connections cannot see). Writes always go through
/// the pool.
///
/// The expiry sweep survives a full disk: it frees the [`DiskReserve`] that
/// [`open_sqlite`] keeps beside a database file when SQLite answers "disk full", then
/// deletes, and after any sweep that deleted something checkpoints the WAL down to
/// nothing (`wal_checkpoint(TRUNCATE)`).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    readers: Arc<InlineReaders>,
    reserve: Arc<DiskReserve>,
}

impl SqliteStore {
    /// A store over a pool opened with [`open_sqlite`].
    pub fn new(pool: SqlitePool) -> Self {
        let reserve = DiskReserve::beside(pool.connect_options().get_filename());
        SqliteStore {
            pool,
            readers: Arc::default(),
            reserve: Arc::new(reserve),
        }
    }

    /// The expiry sweep (see the type's documentation).
    async fn sweep_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let deleted = match self.delete_expired_rows(now, limit).await {
            Err(error) if is_disk_full(&error) && self.reserve.release() => {
                tracing::warn!(
                    file = %self.reserve.path.display(),
                    "disk full: the reserve file was deleted to make room for the expiry sweep"
                );
                // The WAL's pages go into the database first (the room the reserve
                // left), so the WAL starts over and the DELETE has space to write to.
                self.checkpoint().await;
                self.delete_expired_rows(now, limit).await
            }
            other => other,
        };
        let deleted = deleted.map_err(super::sql::map_sqlx)?;
        if deleted > 0 {
            self.checkpoint().await;
        }
        if self.is_file_backed().await {
            if let Err(error) = self.reserve.fill() {
                tracing::warn!(%error, "the disk reserve cannot be written again yet");
            }
        }
        Ok(deleted)
    }

    /// Copies the WAL into the database and empties it (`wal_checkpoint(TRUNCATE)`);
    /// a failure is logged (the next sweep tries again).
    async fn checkpoint(&self) {
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(%error, "WAL checkpoint after the expiry sweep failed");
        }
    }

    /// Whether the database is a file (not in memory), as SQLite itself says.
    async fn is_file_backed(&self) -> bool {
        self.readers
            .file
            .get_or_try_init(|| main_database_file(&self.pool))
            .await
            .is_ok_and(|file| file.is_some())
    }

    /// The pool (shared with the user store).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The session under `id` read on this thread, or `None` to go through the pool.
    async fn load_fast(
        &self,
        id: &SessionId,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        let text = self
            .readers
            .read(&self.pool, |connection| read_record(connection, id))
            .await?;
        Some(decode_stored(text))
    }
}

/// The file the pool's connections have open as their main database, asked of SQLite
/// itself (so an in-memory database is never mistaken for a file of the same name);
/// `None` for an in-memory or temporary database.
async fn main_database_file(pool: &SqlitePool) -> Result<Option<PathBuf>, sqlx::Error> {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await?;
    Ok((!file.is_empty()).then(|| PathBuf::from(file)))
}

/// Most idle read-only connections kept.
const MAX_IDLE_READERS: usize = 8;

/// Read-only connections to a pool's database file, each used by one read at a time on
/// the request's own thread: a point read without the pool's worker thread and its
/// hand-offs (what a session load and an access token check are on every request).
#[derive(Default)]
pub(crate) struct InlineReaders {
    /// The database file, found on the first read.
    file: tokio::sync::OnceCell<Option<PathBuf>>,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl std::fmt::Debug for InlineReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReaders")
            .field("file", &self.file.get())
            .finish()
    }
}

impl InlineReaders {
    fn open(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
        let connection = rusqlite::Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never wait for a lock on this thread: a busy database is the pool's job.
        connection.busy_timeout(Duration::ZERO)?;
        Ok(connection)
    }

    /// What `read` answers on a read-only connection to `pool`'s database file, or
    /// `None` when the caller must go through the pool: an in-memory database, or a
    /// read that failed (busy, say; logged).
    pub(crate) async fn read<T>(
        &self,
        pool: &SqlitePool,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let file = self
            .file
            .get_or_try_init(|| main_database_file(pool))
            .await
            .ok()?
            .as_deref()?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => Self::open(file).ok()?,
        };
        let answer = read(&connection);
        // A connection that failed is dropped rather than reused.
        match answer {
            Ok(answer) => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(connection);
                }
                Some(answer)
            }
            Err(error) => {
                tracing::debug!(%error, "inline read failed; using the pool");
                None
            }
        }
    }
}

fn read_record(
    connection: &rusqlite::Connection,
    id: &SessionId,
) -> rusqlite::Result<Option<String>> {
    let mut statement = connection.prepare_cached(STATEMENTS.load)?;
    statement
        .query_row([id.to_hex()], |row| row.get(0))
        .optional()
}

/// The SQLite dialect of the session statements.
const STATEMENTS: Statements = Statements {
    load: "SELECT record FROM sessions WHERE id = ?",
    insert:
        "INSERT INTO sessions (id, user_id, version, expires_at, record) VALUES (?, ?, ?, ?, ?)",
    replace: "UPDATE sessions SET id = ?, user_id = ?, version = ?, expires_at = ?, record = ? \
              WHERE id = ? AND version = ?",
    exists: "SELECT 1 FROM sessions WHERE id = ?",
    delete: "DELETE FROM sessions WHERE id = ?",
    list_for_user: "SELECT id, record FROM sessions WHERE user_id = ?",
    delete_for_user: "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?",
    delete_expired: "DELETE FROM sessions WHERE id IN \
                     (SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?)",
};

sql_session_store!(SqliteStore, STATEMENTS);

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}
