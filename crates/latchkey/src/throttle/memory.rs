//! Throttle counters in this process's memory.

use super::ThrottleStoreError;
use super::{Counter, ThrottleStore};
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

/// The counter under `key` as of `now`: a new one at 0 when absent or its window is over.
fn in_window<'a>(
    counters: &'a mut HashMap<String, Counter>,
    key: &str,
    window: Duration,
    now: Timestamp,
) -> &'a mut Counter {
    let fresh = Counter {
        count: 0,
        first_at: now,
        last_at: now,
    };
    let counter = counters.entry(key.to_string()).or_insert(fresh);
    if window_over(counter.first_at, window, now) {
        *counter = fresh;
    }
    counter
}

#[async_trait]
impl ThrottleStore for MemoryThrottleStore {
    async fn record_if(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
        seen: u32,
    ) -> Result<Option<Counter>, ThrottleStoreError> {
        let mut counters = self.counters();
        let counter = in_window(&mut counters, key, window, now);
        if counter.count > seen {
            return Ok(None);
        }
        counter.count = counter.count.saturating_add(1);
        counter.last_at = now;
        Ok(Some(*counter))
    }

    async fn release(&self, key: &str, first_at: Timestamp) -> Result<(), ThrottleStoreError> {
        if let Some(counter) = self.counters().get_mut(key) {
            if counter.first_at == first_at {
                counter.count = counter.count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Option<Counter>, ThrottleStoreError> {
        Ok(self
            .counters()
            .get(key)
            .filter(|counter| !window_over(counter.first_at, window, now))
            .copied())
    }

    async fn clear(&self, key: &str) -> Result<(), ThrottleStoreError> {
        self.counters().remove(key);
        Ok(())
    }

    async fn delete_stale(&self, before: Timestamp, limit: u32) -> Result<u64, ThrottleStoreError> {
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
