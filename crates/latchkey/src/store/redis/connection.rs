//! The connection a Redis store sends its commands on: one Redis server (a
//! [`ConnectionManager`] that reconnects by itself) or a Redis Cluster (the redis
//! crate's cluster client, which follows `MOVED`/`ASK` and topology changes), and what
//! their errors mean to a session store.

use crate::session::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

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
    Cluster(ClusterConnection),
}

impl Connection {
    /// Connects to `address`. Fails if it cannot be reached now.
    pub(crate) async fn open(address: &Address) -> Result<Connection, StoreError> {
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
                let connection = client.get_async_connection().await.map_err(unavailable)?;
                Ok(Connection::Cluster(connection))
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
