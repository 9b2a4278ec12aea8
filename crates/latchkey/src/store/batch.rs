//! Concurrent session loads share one round trip to a store server. Each store has one
//! load round trip in flight at a time; loads that arrive meanwhile queue, and the next
//! round trip asks for every queued id at once (`WHERE id = ANY($1)` in PostgreSQL,
//! one pipeline in Redis). At low load every load goes out alone, at once.
//!
//! One round trip at a time measured best on the benchmark machine (two cores shared
//! with the store server; paired 10 s runs): PostgreSQL served more with one than with
//! two in two of three pairs (1.4x, 1.6x, 0.9x) and more with two than with four in all
//! three; Redis, which answers one command at a time anyway, served 1.1x as much with
//! one as with four.
//! It caps a store at [`MAX_BATCH`] loads per round trip time, far
//! beyond what one process serves.
//!
//! A load is only ever answered by a round trip that started after the load was asked
//! for, so it sees every write that finished before it: batching changes how many
//! queries the server runs, not what they can see.

use super::unshare;
use crate::session::{SessionId, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::{Handle, Id as RuntimeId};
use tokio::sync::{mpsc, oneshot};

/// Most ids asked for in one round trip.
const MAX_BATCH: usize = 128;

/// How long a round trip may take before its loads fail as unavailable (the PostgreSQL
/// pool waits as long for a connection): one stalled query must not hold every later
/// load of the store for good.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// One session's answer from a round trip: its stored text, if any, or why it could not
/// be read (shared by the loads that asked for the same id).
pub(crate) type Answer = Result<Option<String>, Arc<StoreError>>;

/// Fetches the stored text of many sessions in one round trip.
#[async_trait]
pub(crate) trait FetchMany: Send + Sync + 'static {
    /// An answer for each of `ids` (distinct), in the same order. `Err` when the round
    /// trip as a whole failed; a session that could not be read alone is an `Err`
    /// answer, which fails that session's loads only.
    async fn fetch_many(&self, ids: &[SessionId]) -> Result<Vec<Answer>, StoreError>;
}

/// A load waiting for its batch.
struct Waiting {
    id: SessionId,
    reply: oneshot::Sender<Answer>,
}

/// Batches the loads of one store (see the module docs). Each runtime that loads gets
/// its own batching task (a task only runs while its runtime is driven), which ends
/// when the store is dropped or its runtime shuts down.
pub(crate) struct LoadBatcher<F> {
    fetcher: Arc<F>,
    queues: Mutex<Vec<(RuntimeId, mpsc::UnboundedSender<Waiting>)>>,
}

impl<F> std::fmt::Debug for LoadBatcher<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBatcher").finish_non_exhaustive()
    }
}

impl<F: FetchMany> LoadBatcher<F> {
    pub(crate) fn new(fetcher: F) -> Self {
        LoadBatcher {
            fetcher: Arc::new(fetcher),
            queues: Mutex::new(Vec::new()),
        }
    }

    /// The stored text of session `id`, fetched in the next batch.
    pub(crate) async fn load(&self, id: &SessionId) -> Result<Option<String>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .queue()
            .map(|queue| queue.send(Waiting { id: *id, reply }).is_ok());
        if queued == Some(true) {
            if let Ok(answer) = answer.await {
                return answer.map_err(unshare);
            }
        }
        // No runtime to batch on, or the batching task is gone (its runtime shut down
        // mid-batch): ask alone.
        let mut answers = timed(self.fetcher.fetch_many(&[*id])).await?;
        match answers.pop() {
            Some(answer) if answers.is_empty() => answer.map_err(unshare),
            _ => Err(miscounted(1, answers.len() + 1)),
        }
    }

    /// The queue of this runtime's batching task, started (again) if it is not running;
    /// `None` outside a Tokio runtime.
    fn queue(&self) -> Option<mpsc::UnboundedSender<Waiting>> {
        let runtime = Handle::try_current().ok()?;
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|(_, queue)| !queue.is_closed());
        if let Some((_, queue)) = queues.iter().find(|(id, _)| *id == runtime.id()) {
            return Some(queue.clone());
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run_batches(self.fetcher.clone(), receiver));
        queues.push((runtime.id(), sender.clone()));
        Some(sender)
    }
}

/// Takes queued loads in batches, one round trip at a time. Loads whose callers have
/// stopped waiting are left out.
async fn run_batches<F: FetchMany>(fetcher: Arc<F>, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(waiting) => batch.push(waiting),
                Err(_) => break,
            }
        }
        batch.retain(|waiting| !waiting.reply.is_closed());
        if !batch.is_empty() {
            answer_batch(&*fetcher, batch).await;
        }
    }
}

/// One round trip for the distinct ids of `batch`; every waiting load gets its answer.
async fn answer_batch<F: FetchMany>(fetcher: &F, batch: Vec<Waiting>) {
    let mut ids = Vec::with_capacity(batch.len());
    let mut slots = HashMap::with_capacity(batch.len());
    for waiting in &batch {
        slots.entry(waiting.id).or_insert_with(|| {
            ids.push(waiting.id);
            ids.len() - 1
        });
    }
    let answers = match timed(fetcher.fetch_many(&ids)).await {
        Ok(answers) if answers.len() == ids.len() => answers,
        Ok(answers) => return answer_all(batch, miscounted(ids.len(), answers.len())),
        Err(error) => return answer_all(batch, error),
    };
    for waiting in batch {
        let answer = answers[slots[&waiting.id]].clone();
        // A load that gave up waiting (its request ended) is no one's concern.
        let _ = waiting.reply.send(answer);
    }
}

/// A round trip, failed as unavailable after [`ROUND_TRIP_TIMEOUT`].
async fn timed<T>(
    round_trip: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(ROUND_TRIP_TIMEOUT, round_trip)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                format!("session load took over {ROUND_TRIP_TIMEOUT:?}").into(),
            ))
        })
}

/// The error for a round trip that answered `got` sessions when asked for `asked`.
fn miscounted(asked: usize, got: usize) -> StoreError {
    StoreError::Corrupt(format!("asked the store for {asked} sessions, got {got} answers").into())
}

/// Gives every load of `batch` the batch's error.
fn answer_all(batch: Vec<Waiting>, error: StoreError) {
    let error = Arc::new(error);
    for waiting in batch {
        let _ = waiting.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Answers `text-<first byte>` for ids whose first byte is even, nothing for odd
    /// ones, and a corrupt-record error for 99, after a pause; counts round trips and
    /// ids asked for.
    #[derive(Default)]
    struct Counting {
        round_trips: AtomicUsize,
        ids: AtomicUsize,
        fail: AtomicBool,
        stall: AtomicBool,
    }

    #[async_trait]
    impl FetchMany for Arc<Counting> {
        async fn fetch_many(&self, ids: &[SessionId]) -> Result<Vec<Answer>, StoreError> {
            self.round_trips.fetch_add(1, Ordering::SeqCst);
            self.ids.fetch_add(ids.len(), Ordering::SeqCst);
            let pause = if self.stall.load(Ordering::SeqCst) {
                3600
            } else {
                0
            };
            tokio::time::sleep(Duration::from_millis(20) + Duration::from_secs(pause)).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("store is down".into()));
            }
            Ok(ids
                .iter()
                .map(|id| match id.0[0] {
                    99 => Err(Arc::new(StoreError::Corrupt("garbled".into()))),
                    byte => Ok((byte % 2 == 0).then(|| format!("text-{byte}"))),
                })
                .collect())
        }
    }

    fn id(byte: u8) -> SessionId {
        SessionId([byte; 32])
    }

    #[tokio::test]
    async fn a_lone_load_goes_out_at_once_and_gets_its_own_answer() {
        let counting = Arc::new(Counting::default());
        let batcher = LoadBatcher::new(counting.clone());
        assert_eq!(batcher.load(&id(2)).await.unwrap(), Some("text-2".into()));
        assert_eq!(batcher.load(&id(3)).await.unwrap(), None);
        assert_eq!(counting.round_trips.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn loads_that_arrive_during_a_round_trip_share_the_next() {
        let counting = Arc::new(Counting::default());
        let batcher = Arc::new(LoadBatcher::new(counting.clone()));
        // 200 loads of 100 sessions (each asked for twice) at the same moment, one of
        // them unreadable.
        let loads: Vec<_> = (0..200u32)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    let byte = (n % 100) as u8;
                    (byte, batcher.load(&id(byte)).await)
                })
            })
            .collect();
        for load in loads {
            let (byte, text) = load.await.unwrap();
            if byte == 99 {
                assert!(matches!(text, Err(StoreError::Corrupt(_))), "{text:?}");
                continue;
            }
            let expected = (byte % 2 == 0).then(|| format!("text-{byte}"));
            assert_eq!(text.unwrap(), expected, "session {byte}");
        }
        let round_trips = counting.round_trips.load(Ordering::SeqCst);
        assert!(round_trips <= 3, "{round_trips} round trips for 200 loads");
        assert!(
            counting.ids.load(Ordering::SeqCst) < 200,
            "a session asked for twice in one batch is fetched once"
        );
    }

    #[tokio::test]
    async fn a_failed_round_trip_fails_each_of_its_loads_with_the_cause() {
        let counting = Arc::new(Counting::default());
        counting.fail.store(true, Ordering::SeqCst);
        let batcher = Arc::new(LoadBatcher::new(counting.clone()));
        let loads: Vec<_> = (0..20u8)
            .map(|byte| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.load(&id(byte)).await })
            })
            .collect();
        for load in loads {
            let error = load.await.unwrap().unwrap_err();
            assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
            assert_eq!(
                error.to_string(),
                "session store unavailable: store is down"
            );
        }
        counting.fail.store(false, Ordering::SeqCst);
        assert_eq!(batcher.load(&id(4)).await.unwrap(), Some("text-4".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_round_trip_times_out_and_the_next_goes_out() {
        let counting = Arc::new(Counting::default());
        counting.stall.store(true, Ordering::SeqCst);
        let batcher = Arc::new(LoadBatcher::new(counting.clone()));
        let stalled = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.load(&id(2)).await }
        });
        let error = stalled.await.unwrap().unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
        counting.stall.store(false, Ordering::SeqCst);
        assert_eq!(batcher.load(&id(4)).await.unwrap(), Some("text-4".into()));
    }

    #[test]
    fn each_runtime_gets_its_own_batching_task() {
        let counting = Arc::new(Counting::default());
        let batcher = LoadBatcher::new(counting.clone());
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        };
        // The first runtime stays alive but idle (its task cannot run) while the
        // second loads; then the first is dropped and a third loads.
        let first = runtime();
        assert_eq!(
            first.block_on(batcher.load(&id(6))).unwrap(),
            Some("text-6".into())
        );
        let second = runtime();
        assert_eq!(
            second.block_on(batcher.load(&id(8))).unwrap(),
            Some("text-8".into())
        );
        drop(first);
        assert_eq!(
            runtime().block_on(batcher.load(&id(10))).unwrap(),
            Some("text-10".into())
        );
        assert_eq!(batcher.queues.lock().unwrap().len(), 2);
    }
}
