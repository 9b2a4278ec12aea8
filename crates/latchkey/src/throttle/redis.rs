//! Throttle counters in Redis: one Lua script per attempt (a single key, so one Cluster
//! slot), expiring with their window.

use super::ThrottleStoreError;
use super::{Counter, ThrottleStore};
use crate::store::RedisStore;
use crate::time::Timestamp;
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// Counts one attempt unless the counter holds more than `seen`: {count, first_at,
/// last_at}, or nil when it had moved.
/// KEYS: counter. ARGV: now (ms), window start (ms), expiry (ms), seen.
static RECORD_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local first = tonumber(redis.call('HGET', KEYS[1], 'f'))
        local count = 0
        if first and first > tonumber(ARGV[2]) then
            count = tonumber(redis.call('HGET', KEYS[1], 'c')) or 0
        end
        if count > tonumber(ARGV[4]) then
            return nil
        end
        if count == 0 then
            redis.call('HSET', KEYS[1], 'c', 1, 'f', ARGV[1], 'l', ARGV[1])
        else
            redis.call('HINCRBY', KEYS[1], 'c', 1)
            redis.call('HSET', KEYS[1], 'l', ARGV[1])
        end
        redis.call('PEXPIREAT', KEYS[1], ARGV[3])
        return redis.call('HMGET', KEYS[1], 'c', 'f', 'l')",
    )
});

/// Takes back one attempt of the window that started at ARGV[1], never below zero;
/// nothing once the counter has started over. KEYS: counter. ARGV: first_at (ms). One
/// write at most, so that a refused script surely wrote nothing (see
/// `throttle::refused_before_writing`).
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local fields = redis.call('HMGET', KEYS[1], 'c', 'f')
        local count, first = tonumber(fields[1]), tonumber(fields[2])
        if count and count > 0 and first == tonumber(ARGV[1]) then
            redis.call('HINCRBY', KEYS[1], 'c', -1)
        end
        return 0",
    )
});

/// Throttle counters beside the sessions of a [`RedisStore`] (same connection and
/// prefix), under `P:t:{key}`.
#[derive(Clone, Debug)]
pub struct RedisThrottleStore {
    redis: RedisStore,
}

impl RedisThrottleStore {
    /// Counters in the Redis that `sessions` uses.
    pub fn new(sessions: RedisStore) -> Self {
        RedisThrottleStore { redis: sessions }
    }
}

fn counter(fields: (Option<i64>, Option<i64>, Option<i64>)) -> Result<Counter, ThrottleStoreError> {
    match fields {
        (Some(count), Some(first_at), Some(last_at)) => Ok(Counter {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            first_at: Timestamp(first_at),
            last_at: Timestamp(last_at),
        }),
        _ => Err(ThrottleStoreError::Corrupt(
            "throttle counter with missing fields".into(),
        )),
    }
}

#[async_trait]
impl ThrottleStore for RedisThrottleStore {
    async fn record_if(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
        seen: u32,
    ) -> Result<Option<Counter>, ThrottleStoreError> {
        let fields: Option<(Option<i64>, Option<i64>, Option<i64>)> = RECORD_IF
            .key(self.redis.throttle_key(key))
            .arg(now.as_millis())
            .arg(now.minus(window).as_millis())
            .arg(now.plus(window).as_millis())
            .arg(seen)
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(crate::store::redis_error)?;
        fields.map(counter).transpose()
    }

    async fn release(&self, key: &str, first_at: Timestamp) -> Result<(), ThrottleStoreError> {
        let _: i64 = RELEASE
            .key(self.redis.throttle_key(key))
            .arg(first_at.as_millis())
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(crate::store::redis_error)?;
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<Counter>, ThrottleStoreError> {
        let fields: (Option<i64>, Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.redis.throttle_key(key))
            .arg("c")
            .arg("f")
            .arg("l")
            .query_async(&mut self.redis.connection())
            .await
            .map_err(crate::store::redis_error)?;
        if fields.0.is_none() {
            return Ok(None);
        }
        let counter = counter(fields)?;
        Ok((counter.first_at.plus(window) > now).then_some(counter))
    }

    async fn clear(&self, key: &str) -> Result<(), ThrottleStoreError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.redis.throttle_key(key))
            .query_async(&mut self.redis.connection())
            .await
            .map_err(crate::store::redis_error)?;
        Ok(())
    }

    /// Counters expire in Redis with their window.
    async fn delete_stale(
        &self,
        _before: Timestamp,
        _limit: u32,
    ) -> Result<u64, ThrottleStoreError> {
        Ok(0)
    }
}
