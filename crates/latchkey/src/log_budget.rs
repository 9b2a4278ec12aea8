//! A budget for log lines that anyone can cause without logging in (refused CSRF
//! tokens, cross-site requests, throttled attempts): a flood of such requests must not
//! flood the log. Each kind of line gets a token bucket; lines beyond it are dropped and
//! counted, and the next line that is written says how many were (`dropped`).

use std::sync::Mutex;
use std::time::Instant;

#[doc(hidden)]
pub use tracing;

/// Lines of one kind: up to `burst` at once, refilled at `per_second`.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u64,
    burst: u64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Lines that may be written now, in thousandths.
    milli_lines: u64,
    refilled_at: Option<Instant>,
    dropped: u64,
}

impl LogBudget {
    /// A full budget of `burst` lines, refilled at `per_second` lines per second.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        LogBudget {
            per_second: per_second as u64,
            burst: burst as u64,
            state: Mutex::new(Bucket {
                milli_lines: burst as u64 * 1000,
                refilled_at: None,
                dropped: 0,
            }),
        }
    }

    /// Whether a line may be written now: `Some(lines dropped since the last one)`, or
    /// `None` (the line is dropped and counted).
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(refilled_at) = bucket.refilled_at {
            let elapsed_ms =
                u64::try_from(now.duration_since(refilled_at).as_millis()).unwrap_or(u64::MAX);
            bucket.milli_lines = bucket
                .milli_lines
                .saturating_add(elapsed_ms.saturating_mul(self.per_second))
                .min(self.burst * 1000);
        }
        bucket.refilled_at = Some(now);
        if bucket.milli_lines >= 1000 {
            bucket.milli_lines -= 1000;
            Some(std::mem::take(&mut bucket.dropped))
        } else {
            bucket.dropped += 1;
            None
        }
    }
}

/// Logs an audit line (target `latchkey::audit`, level warn) for a refusal anyone can
/// cause, within a budget per call site of 5 lines per second after a burst of 50; the
/// line carries `dropped`, how many were left out since the last one.
///
/// ```
/// latchkey::audit_refusal!("csrf_refused", ip = "192.0.2.1");
/// ```
#[macro_export]
macro_rules! audit_refusal {
    ($event:literal $(, $($field:tt)+)?) => {{
        static BUDGET: $crate::log_budget::LogBudget = $crate::log_budget::LogBudget::new(5, 50);
        if let Some(dropped) = BUDGET.admit() {
            $crate::log_budget::tracing::warn!(target: "latchkey::audit", event = $event, dropped $(, $($field)+)?, $event);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::LogBudget;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_counted() {
        let budget = LogBudget::new(1, 3);
        let admitted: Vec<Option<u64>> = (0..10).map(|_| budget.admit()).collect();
        assert_eq!(&admitted[..3], &[Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(budget.admit(), Some(7));
        assert_eq!(budget.admit(), None);
    }
}
