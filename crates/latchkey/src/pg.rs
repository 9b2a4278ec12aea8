//! The PostgreSQL handle every PostgreSQL store runs its statements on: straight to the
//! server, or through a transaction-pooling PgBouncer.
//!
//! Behind a transaction pooler, a client's consecutive messages may reach different
//! server connections: each time the server reports itself idle (a `ReadyForQuery`
//! outside a transaction) the pooler may hand the server connection to another client.
//! sqlx sends a statement as Parse/Describe/Sync, waits, then Bind/Execute/Sync, so the
//! Bind can land where the Parse never happened; and a named prepared statement
//! (`sqlx_s_N`) stays behind on a server connection that other clients then share. So in
//! [`PgPooling::Transaction`] mode every statement runs inside an explicit
//! transaction (which pins one server connection from `BEGIN` to `COMMIT`) as the
//! unnamed statement, which nothing outlives. In [`PgPooling::Direct`] mode the handle is
//! the pool: named, cached statements, no extra round trip.

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow, PgStatement,
    PgTypeInfo,
};
use sqlx::{Describe, Either, Execute, Executor, Postgres};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::time::Duration;

use crate::session::StoreError;

/// How latchkey's connections reach PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgPooling {
    /// Straight to PostgreSQL (or through a session-pooling PgBouncer): named prepared
    /// statements, cached per connection.
    #[default]
    Direct,
    /// Through a transaction-pooling PgBouncer: every statement runs in an explicit
    /// transaction, unprepared (the unnamed statement). Costs `BEGIN` and `COMMIT` and a
    /// separate Parse round trip per statement (PERFORMANCE.md).
    Transaction,
}

/// A PostgreSQL connection pool and how it reaches the server. Statements run on `&`
/// it (it implements [`sqlx::Executor`]); transactions start with [`PgHandle::begin`].
/// A bare [`PgPool`] converts into a direct handle.
#[derive(Clone, Debug)]
pub struct PgHandle {
    pool: PgPool,
    pooling: PgPooling,
}

impl PgHandle {
    /// A handle over `pool`, whose connections reach PostgreSQL as `pooling` says.
    pub fn new(pool: PgPool, pooling: PgPooling) -> Self {
        PgHandle { pool, pooling }
    }

    /// Connects a pool of up to 16 connections to `url` (no migrations: see
    /// [`migrate_postgres`] and [`crate::store::open_postgres`]). Behind a transaction pooler
    /// the connections keep no statement cache and do not send `extra_float_digits`,
    /// which PgBouncer refuses unless told to ignore it.
    pub async fn connect(url: &str, pooling: PgPooling) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        if pooling == PgPooling::Transaction {
            options = options.statement_cache_capacity(0).extra_float_digits(None);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        Ok(PgHandle::new(pool, pooling))
    }

    /// The pool. Statements run on it directly bypass the handle: behind a transaction
    /// pooler, run them on the handle.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How the pool reaches PostgreSQL.
    pub fn pooling(&self) -> PgPooling {
        self.pooling
    }

    /// Whether statements must stay unnamed and inside transactions.
    fn unnamed(&self) -> bool {
        self.pooling == PgPooling::Transaction
    }

    /// Starts a transaction; its statements run on `&mut *transaction`.
    pub async fn begin(&self) -> Result<PgTransaction, sqlx::Error> {
        Ok(PgTransaction(PgTransactionConnection {
            transaction: self.pool.begin().await?,
            unnamed: self.unnamed(),
        }))
    }
}

impl From<PgPool> for PgHandle {
    /// A direct handle (no pooler in between).
    fn from(pool: PgPool) -> Self {
        PgHandle::new(pool, PgPooling::Direct)
    }
}

/// Applies latchkey's migrations to the database at `url` over one connection of its
/// own, closed afterwards. It must be a direct connection: sqlx's migrator holds a
/// session advisory lock and prepares named statements.
pub async fn migrate_postgres(url: &str) -> Result<(), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    let migrated = run_migrations(&pool).await;
    pool.close().await;
    migrated
}

/// Applies latchkey's migrations over `pool`, whose connections reach PostgreSQL
/// directly.
pub(crate) async fn run_migrations(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations/postgres")
        .run(pool)
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))
}

/// How a connection made for [`PgPooling::Direct`] shows that it went through PgBouncer
/// instead of straight to PostgreSQL (see [`transaction_pooler_sign`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolerSign {
    /// A named prepared statement of sqlx's (`sqlx_s_N`) already exists on the server
    /// connection (SQLSTATE 42P05), or one prepared a moment ago is gone (26000): the
    /// server connection is shared with other clients, as a transaction pooler shares
    /// it.
    SharedStatements,
    /// PgBouncer refused a startup parameter sqlx sends (`unsupported startup parameter:
    /// extra_float_digits`): a PgBouncer in either pooling mode without
    /// `ignore_startup_parameters`.
    StartupParameter,
}

/// Whether `error` (or an error it was caused by) shows that a connection set up for
/// [`PgPooling::Direct`] reaches PostgreSQL through PgBouncer (see [`PoolerSign`]).
/// Behind a transaction pooler, connect with [`PgPooling::Transaction`] and migrate with
/// [`migrate_postgres`] over a direct URL.
pub fn transaction_pooler_sign(error: &(dyn std::error::Error + 'static)) -> Option<PoolerSign> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(sqlx::Error::Database(database)) = error.downcast_ref::<sqlx::Error>() {
            let message = database.message();
            let code = database.code();
            let statement = message.contains("prepared statement \"sqlx_s_");
            if statement && matches!(code.as_deref(), Some("42P05") | Some("26000")) {
                return Some(PoolerSign::SharedStatements);
            }
            if message.starts_with("unsupported startup parameter") {
                return Some(PoolerSign::StartupParameter);
            }
        }
        next = error.source();
    }
    None
}

/// A transaction begun by [`PgHandle::begin`]: statements run on `&mut *transaction`;
/// dropped without [`commit`](PgTransaction::commit), it rolls back.
#[derive(Debug)]
pub struct PgTransaction(PgTransactionConnection);

/// The connection of an open [`PgTransaction`], which statements run on.
#[derive(Debug)]
pub struct PgTransactionConnection {
    transaction: sqlx::Transaction<'static, Postgres>,
    unnamed: bool,
}

impl PgTransaction {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.0.transaction.commit().await
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.0.transaction.rollback().await
    }
}

impl Deref for PgTransaction {
    type Target = PgTransactionConnection;

    fn deref(&self) -> &PgTransactionConnection {
        &self.0
    }
}

impl DerefMut for PgTransaction {
    fn deref_mut(&mut self) -> &mut PgTransactionConnection {
        &mut self.0
    }
}

/// A statement, kept out of the connection's named (prepared, cached) statements when
/// `unnamed`.
struct Statement<E> {
    query: E,
    unnamed: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Statement<E> {
    fn sql(&self) -> &'q str {
        self.query.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.query.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        !self.unnamed && self.query.persistent()
    }
}

/// Refused behind a transaction pooler: a prepared statement would outlive the
/// transaction that pins its server connection.
fn no_prepared_statements() -> sqlx::Error {
    sqlx::Error::Configuration(
        "prepared statements cannot be kept behind a transaction pooler".into(),
    )
}

impl<'p> Executor<'p> for &'_ PgHandle {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.unnamed() {
            return self.pool.fetch_many(query);
        }
        let pool = self.pool.clone();
        // The results are gathered before COMMIT (latchkey's are a few rows), so the
        // transaction ends before the caller reads them.
        let results = async move {
            let mut transaction = pool.begin().await?;
            let statement = Statement {
                query,
                unnamed: true,
            };
            let ran: Result<Vec<_>, sqlx::Error> = (&mut *transaction)
                .fetch_many(statement)
                .try_collect()
                .await;
            finish(transaction, ran).await
        };
        Box::pin(
            stream::once(results)
                .map_ok(|results| stream::iter(results.into_iter().map(Ok)))
                .try_flatten(),
        )
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.unnamed() {
            return self.pool.fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut transaction = pool.begin().await?;
            let statement = Statement {
                query,
                unnamed: true,
            };
            let ran = (&mut *transaction).fetch_optional(statement).await;
            finish(transaction, ran).await
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>> {
        if self.unnamed() {
            return Box::pin(async { Err(no_prepared_statements()) });
        }
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>> {
        if self.unnamed() {
            return Box::pin(async { Err(no_prepared_statements()) });
        }
        self.pool.describe(sql)
    }
}

/// Commits `transaction` after the statement succeeded, rolls it back after it failed
/// (the statement's error is the one answered).
async fn finish<T>(
    transaction: sqlx::Transaction<'static, Postgres>,
    ran: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    match ran {
        Ok(value) => {
            transaction.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = transaction.rollback().await {
                tracing::debug!(%rollback, "rollback after a failed statement failed");
            }
            Err(error)
        }
    }
}

impl<'c> Executor<'c> for &'c mut PgTransactionConnection {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let unnamed = self.unnamed;
        (&mut *self.transaction).fetch_many(Statement { query, unnamed })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let unnamed = self.unnamed;
        (&mut *self.transaction).fetch_optional(Statement { query, unnamed })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        if self.unnamed {
            return Box::pin(async { Err(no_prepared_statements()) });
        }
        (&mut *self.transaction).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        if self.unnamed {
            return Box::pin(async { Err(no_prepared_statements()) });
        }
        (&mut *self.transaction).describe(sql)
    }
}
