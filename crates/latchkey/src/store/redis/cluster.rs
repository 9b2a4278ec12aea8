//! What a Redis Cluster needs beyond one server: hash slots, one change channel per
//! slot (sharded pub/sub, Redis ≥ 7.0), and the subscription that hears them all.
//!
//! A write script may only publish on a shard channel of its own key's slot (the
//! subscribers of another slot's channel are on another node), so each session key's
//! changes go to `P:changed:{tag}`, where `tag` is a short hash tag of that key's slot.
//! A subscription takes all 16,384 channels, each on the master that owns its slot:
//! nothing is broadcast to every node, as `PUBLISH` on a cluster would.
//!
//! Heartbeats prove every shard's subscription alive: one goes to the first slot of
//! every slot range the cluster reports, numbered with how many went out, and the
//! subscription answers [`Change::Heartbeat`] only once all of them came back. A
//! dropped node connection or a slot that moved away ends the subscription (changes
//! may have been missed), and the cache stops trusting its entries until it has
//! subscribed again.

#[cfg(feature = "cache")]
use super::connection::{cluster_builder, map_redis, unavailable};
#[cfg(feature = "cache")]
use crate::session::StoreError;
#[cfg(feature = "cache")]
use crate::store::{cache::HEARTBEAT, Change};
#[cfg(feature = "cache")]
use async_trait::async_trait;
use std::sync::LazyLock;
use std::time::Duration;

/// How long an ended session waits for a replica of its master to have the deletion.
pub(crate) const REPLICA_WAIT: Duration = Duration::from_millis(500);

/// Waits until a replica of the master holding `key` has every write made so far on
/// `connection` to that master (`WAIT 1`), at most [`REPLICA_WAIT`]: whether one did.
/// Replication is asynchronous, so without this a logout acknowledged just before its
/// master dies could be undone by the failover that promotes a replica without it.
/// `WAIT` blocks the connection it is sent on, so the store sends its deletions and
/// their `WAIT`s on a connection of their own.
pub(crate) async fn replicated(
    connection: &mut redis::cluster_async::ClusterConnection,
    key: &str,
) -> redis::RedisResult<bool> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )));
    let wait = redis::cmd("WAIT")
        .arg(1)
        .arg(REPLICA_WAIT.as_millis() as u64)
        .to_owned();
    let acknowledged = connection.route_command(wait, route).await?;
    Ok(matches!(acknowledged, redis::Value::Int(replicas) if replicas >= 1))
}

/// Whether the master holding `key` has a replica connected, asked with `ROLE` (its
/// third part lists them; one still in its initial sync is waited for, as before). A
/// master without one (one just promoted by a failover, whose old master is gone) would
/// hold a `WAIT` for the whole [`REPLICA_WAIT`], and every command queued behind it on
/// the same connection too: so a deletion there skips its wait (see
/// `RedisStore::delete`). A node that answers as anything but a master counts as having
/// a replica, so that the wait stays.
pub(crate) async fn has_replica(
    connection: &mut redis::cluster_async::ClusterConnection,
    key: &str,
) -> redis::RedisResult<bool> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )));
    let role = connection.route_command(redis::cmd("ROLE"), route).await?;
    let redis::Value::Array(parts) = role else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "ROLE answered no array",
        )));
    };
    let is_master = match parts.first() {
        Some(redis::Value::BulkString(name)) => name.as_slice() == b"master",
        Some(redis::Value::SimpleString(name)) => name == "master",
        _ => false,
    };
    Ok(match (is_master, parts.get(2)) {
        (true, Some(redis::Value::Array(replicas))) => !replicas.is_empty(),
        (true, _) => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "ROLE of a master listed no replicas",
            )))
        }
        (false, _) => true,
    })
}

/// Waits until a replica of every master has every write made so far on `connection`
/// to that master (`WAIT 1` to all masters together, at most [`REPLICA_WAIT`]): the
/// masters (`host:port`) whose replicas did not confirm in time.
pub(crate) async fn replicated_on_every_master(
    connection: &mut redis::cluster_async::ClusterConnection,
) -> redis::RedisResult<Vec<String>> {
    use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
    let wait = redis::cmd("WAIT")
        .arg(1)
        .arg(REPLICA_WAIT.as_millis() as u64)
        .to_owned();
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    // Without a response policy, each master's answer under its address.
    let answers = connection.route_command(wait, routing).await?;
    let redis::Value::Map(answers) = answers else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "WAIT on every master answered no map of masters",
        )));
    };
    let mut unconfirmed = Vec::new();
    for (master, answer) in answers {
        if !matches!(answer, redis::Value::Int(replicas) if replicas >= 1) {
            let master: String = redis::FromRedisValue::from_redis_value(master)?;
            unconfirmed.push(master);
        }
    }
    Ok(unconfirmed)
}

/// Hash slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`, as Redis Cluster computes it: of the text between the first
/// `{` and the next `}` when that is not empty, else of the whole key.
pub(crate) fn slot(key: &str) -> u16 {
    let key = key.as_bytes();
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tag.unwrap_or(key)) % SLOTS
}

/// For every slot, the smallest number whose decimal text hashes to it: the hash tag of
/// that slot's change channel.
static TAGS: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut tags = vec![u32::MAX; usize::from(SLOTS)];
    let mut missing = tags.len();
    let mut number: u32 = 0;
    while missing > 0 {
        let slot = usize::from(crc16(number.to_string().as_bytes()) % SLOTS);
        if tags[slot] == u32::MAX {
            tags[slot] = number;
            missing -= 1;
        }
        number += 1;
    }
    tags
});

/// The change channel of `slot` under `prefix`: `P:changed:{tag}`, in that slot.
pub(crate) fn slot_channel(prefix: &str, slot: u16) -> String {
    let tag = TAGS[usize::from(slot % SLOTS)];
    format!("{prefix}:changed:{{{tag}}}")
}

/// The change channel that the scripts writing `key` publish on: the one in its slot.
pub(crate) fn channel_for_key(prefix: &str, key: &str) -> String {
    slot_channel(prefix, slot(key))
}

/// A heartbeat payload: `heartbeat:<instance>:<round>:<of how many>`.
#[cfg(feature = "cache")]
fn heartbeat_payload(instance: u64, round: u64, count: usize) -> String {
    format!("{HEARTBEAT}:{instance}:{round}:{count}")
}

/// Reads a heartbeat payload: (instance, round, count).
#[cfg(feature = "cache")]
fn parse_heartbeat(payload: &str) -> Option<(u64, u64, usize)> {
    let mut parts = payload
        .strip_prefix(HEARTBEAT)?
        .strip_prefix(':')?
        .split(':');
    let instance = parts.next()?.parse().ok()?;
    let round = parts.next()?.parse().ok()?;
    let count = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((instance, round, count))
}

/// The first slot of every slot range the cluster reports (`CLUSTER SLOTS`).
#[cfg(feature = "cache")]
async fn range_starts(
    connection: &mut redis::cluster_async::ClusterConnection,
) -> Result<Vec<u16>, StoreError> {
    let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(connection)
        .await
        .map_err(map_redis)?;
    let starts: Vec<u16> = ranges
        .iter()
        .filter_map(|range| match range.first() {
            Some(redis::Value::Int(start)) => u16::try_from(*start).ok(),
            _ => None,
        })
        .collect();
    if starts.is_empty() {
        return Err(StoreError::Unavailable(
            "the Redis Cluster reports no slots".into(),
        ));
    }
    Ok(starts)
}

/// Sends one heartbeat round: to the channel of the first slot of every slot range.
#[cfg(feature = "cache")]
pub(crate) async fn heartbeat(
    connection: &mut redis::cluster_async::ClusterConnection,
    prefix: &str,
    instance: u64,
    round: u64,
) -> Result<(), StoreError> {
    let starts = range_starts(connection).await?;
    let payload = heartbeat_payload(instance, round, starts.len());
    let sent = starts.iter().map(|&start| {
        let mut connection = connection.clone();
        let command = redis::cmd("SPUBLISH")
            .arg(slot_channel(prefix, start))
            .arg(&payload)
            .to_owned();
        async move { command.query_async::<i64>(&mut connection).await }
    });
    for answer in futures_util::future::join_all(sent).await {
        answer.map_err(map_redis)?;
    }
    Ok(())
}

/// A subscription to every slot's change channel of a cluster.
#[cfg(feature = "cache")]
pub(crate) struct ClusterChanges {
    /// Holds the subscriptions open (and resubscribes after reconnects, which this
    /// reports as a break all the same).
    _connection: redis::cluster_async::ClusterConnection,
    pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    /// Heartbeats from other processes are theirs to count.
    instance: u64,
    /// The newest heartbeat round seen: (round, heard, sent).
    round: (u64, usize, usize),
}

/// How many `SSUBSCRIBE`s a subscription keeps in flight.
#[cfg(feature = "cache")]
const SUBSCRIBING_AT_ONCE: usize = 64;

/// Subscribes to all 16,384 change channels under `prefix`, each on its slot's master.
#[cfg(feature = "cache")]
pub(crate) async fn subscribe(
    seeds: &[String],
    prefix: &str,
    instance: u64,
) -> Result<ClusterChanges, StoreError> {
    let (sender, pushes) = tokio::sync::mpsc::unbounded_channel();
    let client = cluster_builder(seeds)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(sender)
        .build()
        .map_err(unavailable)?;
    let connection = client.get_async_connection().await.map_err(unavailable)?;
    // A few hundred at a time: all 16,384 at once would wait in the client's queue
    // past the response timeout.
    use futures_util::StreamExt;
    let mut subscribed = futures_util::stream::iter(0..SLOTS)
        .map(|slot| {
            let mut connection = connection.clone();
            let channel = slot_channel(prefix, slot);
            async move { connection.ssubscribe(channel).await }
        })
        .buffer_unordered(SUBSCRIBING_AT_ONCE);
    while let Some(answer) = subscribed.next().await {
        answer.map_err(map_redis)?;
    }
    drop(subscribed);
    Ok(ClusterChanges {
        _connection: connection,
        pushes,
        instance,
        round: (0, 0, 0),
    })
}

#[cfg(feature = "cache")]
#[async_trait]
impl crate::store::Changes for ClusterChanges {
    async fn next_change(&mut self) -> Result<Change, StoreError> {
        use redis::PushKind;
        loop {
            let push = self.pushes.recv().await.ok_or_else(|| {
                StoreError::Unavailable("Redis Cluster change subscription lost".into())
            })?;
            match push.kind {
                PushKind::SMessage => {}
                PushKind::Disconnection => {
                    return Err(StoreError::Unavailable(
                        "a Redis Cluster node's connection dropped; changes may have been missed"
                            .into(),
                    ))
                }
                PushKind::SUnsubscribe => {
                    return Err(StoreError::Unavailable(
                        "a slot's change channel moved to another node".into(),
                    ))
                }
                _ => continue,
            }
            let payload: String = match push.data.get(1) {
                Some(value) => redis::from_redis_value_ref(value).map_err(|error| {
                    StoreError::Corrupt(format!("Redis change message: {error}").into())
                })?,
                None => continue,
            };
            if let Some((instance, round, sent)) = parse_heartbeat(&payload) {
                if instance != self.instance || round < self.round.0 {
                    continue;
                }
                if round > self.round.0 {
                    self.round = (round, 0, sent);
                }
                self.round.1 += 1;
                if self.round.1 == self.round.2 {
                    return Ok(Change::Heartbeat);
                }
                continue;
            }
            return super::change_of_key(&payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{channel_for_key, slot, slot_channel, SLOTS};

    #[test]
    fn slots_match_the_redis_cluster_specification() {
        // The specification's check value, and keys whose slots Redis reported.
        assert_eq!(super::crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("p:s:{abc}"), 7638);
        assert_eq!(slot("{abc}x"), slot("abc"));
        // An empty tag hashes the whole key.
        assert_eq!(slot("{}abc"), super::crc16(b"{}abc") % SLOTS);
    }

    #[test]
    fn every_slot_has_a_channel_in_it() {
        for s in [0, 1, 8000, SLOTS - 1] {
            assert_eq!(slot(&slot_channel("latchkey", s)), s);
        }
        let key = "latchkey:s:{0123abcd}";
        assert_eq!(slot(&channel_for_key("latchkey", key)), slot(key));
    }
}
