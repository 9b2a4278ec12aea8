//! Throttle counters in this process's memory.

use super::{Counter, ThrottleStore};
use crate::session::StoreError;
use crate::time::Timestamp;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Counters in a map; stale ones go in [`ThrottleStore::delete_stale`] sweeps.
#[derive(Clone, Default)]
pub struct MemoryThrottleStore {
    counters: Arc<Mutex<HashMap<String, Counter>>>,
}

impl MemoryThrottleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn counters(&self) -> MutexGuard<'_, HashMap<String, Counter>> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a window that started at `first_at` is over at `now`.
pub(crate) fn window_over(first_at: Timestamp, window: Duration, now: Timestamp) -> bool {
    first_at.plus(window) <= now
}

#[async_trait]
impl ThrottleStore for MemoryThrottleStore {
    async fn record(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Counter, StoreError> {
        let mut counters = self.counters();
        let counter = counters.entry(key.to_string()).or_insert(Counter {
            count: 0,
            first_at: now,
            last_at: now,
        });
        if window_over(counter.first_at, window, now) {
            *counter = Counter {
                count: 0,
                first_at: now,
                last_at: now,
            };
        }
        counter.count = counter.count.saturating_add(1);
        counter.last_at = now;
        Ok(*counter)
    }

    async fn get(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<Counter>, StoreError> {
        Ok(self
            .counters()
            .get(key)
            .filter(|counter| !window_over(counter.first_at, window, now))
            .copied())
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.counters().remove(key);
        Ok(())
    }

    async fn delete_stale(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut counters = self.counters();
        let stale: Vec<String> = counters
            .iter()
            .filter(|(_, counter)| counter.last_at < before)
            .map(|(key, _)| key.clone())
            .take(limit as usize)
            .collect();
        for key in &stale {
            counters.remove(key);
        }
        Ok(stale.len() as u64)
    }
}
