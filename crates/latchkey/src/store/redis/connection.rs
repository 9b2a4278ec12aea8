//! The connection a Redis store sends its commands on: one Redis server (a
//! [`ConnectionManager`] that reconnects by itself) or a Redis Cluster (the redis
//! crate's cluster client, which follows `MOVED`/`ASK` and topology changes), and what
//! their errors mean to a session store.

use crate::session::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};
use std::time::{Duration, Instant};

/// How long a command may wait for a connection, and for its answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where a store's Redis lives, parsed from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// One server: `redis://host:port/db` (or `rediss://…`).
    Server(String),
    /// A cluster, by its seed nodes (`redis://host:port` each), from
    /// `redis-cluster://host:port[,host:port…]`.
    Cluster(Vec<String>),
}

impl Address {
    /// Reads `url`: `redis-cluster://[user:password@]host:port[,host:port…]` names a
    /// cluster by seed nodes (the credentials apply to every node); anything else is
    /// one server's URL as the redis crate reads it.
    pub(crate) fn parse(url: &str) -> Result<Address, StoreError> {
        let Some(rest) = url.strip_prefix("redis-cluster://") else {
            return Ok(Address::Server(url.to_string()));
        };
        let (credentials, hosts) = match rest.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let seeds: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| format!("redis://{credentials}{host}"))
            .collect();
        if seeds.is_empty() || hosts.contains('/') {
            return Err(StoreError::Unavailable(
                "redis-cluster:// needs host:port[,host:port...] (no database number: a cluster has only database 0)"
                    .into(),
            ));
        }
        Ok(Address::Cluster(seeds))
    }
}

/// A cluster client for `seeds` whose commands fail within a few seconds while a
/// master is unreachable (its replica not yet promoted), instead of retrying for long.
pub(crate) fn cluster_builder(seeds: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500)
}

/// The store's connection to one server or to a cluster. Cheap to clone: clones share
/// one multiplexed connection (per node, on a cluster).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server.
    Server(Reconnecting),
    /// A Redis Cluster.
    Cluster(Cluster),
}

impl Connection {
    /// Connects to `address`. Fails if it cannot be reached now; on a cluster opened with
    /// `patience` (see [`Cluster`]), only once that has passed.
    pub(crate) async fn open(
        address: &Address,
        patience: Duration,
    ) -> Result<Connection, StoreError> {
        match address {
            Address::Server(url) => {
                let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(unavailable)?;
                Ok(Connection::Server(Reconnecting(manager)))
            }
            Address::Cluster(seeds) => {
                let client = cluster_builder(seeds).build().map_err(unavailable)?;
                let mut waiting = Waiting::new(patience);
                let connection = loop {
                    match client.get_async_connection().await {
                        Ok(connection) => break connection,
                        Err(error) => waiting.after(error).await.map_err(unavailable)?,
                    }
                };
                Ok(Connection::Cluster(Cluster {
                    connection,
                    patience,
                }))
            }
        }
    }

    /// Runs every command and answers each on its own (one failing command fails only
    /// its own answer). On one server they go as one pipeline (a broken connection fails
    /// them all); a cluster refuses pipelines that span hash slots, so there they go out
    /// together, each to the node of its key, and a shard that is down (failing over)
    /// fails only the commands for its own keys.
    pub(crate) async fn each<T: FromRedisValue>(
        &self,
        commands: Vec<Cmd>,
    ) -> RedisResult<Vec<RedisResult<T>>> {
        match self {
            Connection::Server(server) => {
                let mut pipeline = redis::pipe();
                pipeline.ignore_errors();
                for command in commands {
                    pipeline.add_command(command);
                }
                pipeline.query_async(&mut server.clone()).await
            }
            Connection::Cluster(cluster) => {
                // Each through the cluster's patience, if it has any.
                let answers = commands.into_iter().map(|command| {
                    let mut cluster = cluster.clone();
                    async move { command.query_async::<T>(&mut cluster).await }
                });
                Ok(futures_util::future::join_all(answers).await)
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(server) => server.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(server) => server.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(server) => server.get_db(),
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// A connection to a Redis Cluster (the redis crate's client, which follows `MOVED` and
/// `ASK`, reconnects to nodes and refreshes its slot map), with a patience: how long a
/// command that meets a failover in progress keeps being tried, in all.
///
/// While a master is down and before its replica is promoted (`cluster-node-timeout`
/// plus an election: seconds), a command for its slots fails: connection refused, a
/// `MOVED` to the dead node, `CLUSTERDOWN`, `TRYAGAIN`. The client's own retries are
/// over within a fraction of a second. The server's stores have no patience: a request
/// answers 503 at once, and the next one finds the new topology. A one-shot tool (the
/// command line) has some: its command is sent again, after a pause that grows to a
/// second, until it succeeds or the patience has run out, which then fails it with an
/// error that says so. A command sent twice is safe: every write is a script that
/// checks what it finds (see [`Reconnecting`]).
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) connection: ClusterConnection,
    patience: Duration,
}

impl Cluster {
    /// Sends `send` (on a clone of the connection) until it answers, or fails with
    /// something other than a failover in progress, or the patience has run out.
    async fn patiently<T, F>(&self, send: impl Fn(ClusterConnection) -> F) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let mut waiting = Waiting::new(self.patience);
        loop {
            match send(self.connection.clone()).await {
                Err(error) => waiting.after(error).await?,
                answer => return answer,
            }
        }
    }
}

impl ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.patiently(move |mut connection| async move {
            connection.req_packed_command(cmd).await
        }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.patiently(move |mut connection| async move {
            connection
                .req_packed_commands(pipeline, offset, count)
                .await
        }))
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }
}

/// Whether `error` is what a command meets while a cluster fails over: a node that cannot
/// be reached or does not answer, no connection for a slot, or a node that says the
/// slot is elsewhere, down or moving.
fn failing_over(error: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, MasterDown, Moved, ReadOnly, TryAgain};
    error.is_io_error()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ClusterDown | TryAgain | MasterDown | Moved | Ask | ReadOnly)
        )
}

/// The pauses between the tries of one cluster command, within a patience.
struct Waiting {
    patience: Duration,
    started: Instant,
    pause: Duration,
    tries: u32,
}

impl Waiting {
    fn new(patience: Duration) -> Self {
        Waiting {
            patience,
            started: Instant::now(),
            pause: Duration::from_millis(100),
            tries: 0,
        }
    }

    /// After a try that failed with `error`: waits before the next try, or answers the
    /// error to fail with (`error` itself when it is no failover, or there is no
    /// patience; one that says how long it waited when the patience has run out).
    async fn after(&mut self, error: redis::RedisError) -> RedisResult<()> {
        if self.patience.is_zero() || !failing_over(&error) {
            return Err(error);
        }
        self.tries += 1;
        let waited = self.started.elapsed();
        if waited + self.pause > self.patience {
            return Err(redis::RedisError::from((
                ErrorKind::Io,
                "the Redis Cluster did not recover in time",
                format!(
                    "{} tries over {:.1} s: a master that fails is replaced by its replica \
                     within the cluster's node timeout plus an election, and none was (is a \
                     replica of every master up, and can this machine reach it?); the last \
                     error: {error}",
                    self.tries,
                    waited.as_secs_f64()
                ),
            )));
        }
        if self.tries == 1 {
            tracing::warn!(
                %error,
                patience = ?self.patience,
                "the Redis Cluster is failing over (or unreachable): waiting for it"
            );
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// A [`ConnectionManager`] whose commands are sent once more when the connection they
/// went to turns out to be dead.
///
/// The manager notices a dead connection only when a command fails on it (Redis closed
/// it on restart while this process was idle, say); it then reconnects in the background
/// but hands that first command its error, which a request would answer with 503. Here
/// that command is sent again, once, and waits for the fresh connection. A command sent
/// twice is safe: every write is a script that checks what it finds (a second `CREATE`
/// finds the id taken, a second `SAVE` the version moved on, and the session layer
/// handles both as it handles any race).
#[derive(Clone)]
pub(crate) struct Reconnecting(ConnectionManager);

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.send_packed_command(cmd).await {
                Err(error) if error.is_connection_dropped() => {
                    tracing::info!(%error, "Redis connection was dead; retrying on a fresh one");
                    self.0.send_packed_command(cmd).await
                }
                answer => answer,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.send_packed_commands(pipeline, offset, count).await {
                Err(error) if error.is_connection_dropped() => {
                    tracing::info!(%error, "Redis connection was dead; retrying on a fresh one");
                    self.0.send_packed_commands(pipeline, offset, count).await
                }
                answer => answer,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A Redis error that means Redis is unavailable.
pub(crate) fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// Whether Redis refused the command for want of room or right (out of memory, no
/// permission, a failed save, no replica to write to), so that it, or the one write of
/// a script, surely did nothing; not a lost connection, a timeout or a failover
/// (READONLY, LOADING), after which it may have run or been lost.
pub(crate) fn refused_before_writing(error: &redis::RedisError) -> bool {
    matches!(
        error.code(),
        Some("OOM" | "NOPERM" | "MISCONF" | "NOREPLICAS")
    )
}

/// A Redis error, by cause: data of the wrong shape is corruption, anything else means
/// Redis is unavailable.
pub(crate) fn map_redis(error: redis::RedisError) -> StoreError {
    use redis::ErrorKind;
    let wrong_shape = matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) || error.code() == Some("WRONGTYPE");
    if wrong_shape {
        StoreError::Corrupt(Box::new(error))
    } else {
        unavailable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn cluster_urls_name_seed_nodes() {
        assert_eq!(
            Address::parse("redis-cluster://127.0.0.1:7000,127.0.0.1:7001").ok(),
            Some(Address::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ]))
        );
        assert_eq!(
            Address::parse("redis-cluster://u:p@a:1,b:2/").ok(),
            Some(Address::Cluster(vec![
                "redis://u:p@a:1".into(),
                "redis://u:p@b:2".into()
            ]))
        );
        assert!(Address::parse("redis-cluster://").is_err());
        assert!(Address::parse("redis-cluster://a:1/2").is_err());
        assert_eq!(
            Address::parse("redis://x:6379/1").ok(),
            Some(Address::Server("redis://x:6379/1".into()))
        );
    }
}
