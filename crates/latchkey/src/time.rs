//! Wall-clock timestamps as stored in session and user records.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). Stores keep it as a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This time moved `duration` into the future (saturating).
    pub fn plus(self, duration: Duration) -> Self {
        Timestamp(self.0.saturating_add(saturating_millis(duration)))
    }

    /// This time moved `duration` into the past (saturating).
    pub fn minus(self, duration: Duration) -> Self {
        Timestamp(self.0.saturating_sub(saturating_millis(duration)))
    }

    /// How long after `earlier` this time is (zero if it is not later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// `duration` in whole milliseconds, `i64::MAX` if it is longer.
fn saturating_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
