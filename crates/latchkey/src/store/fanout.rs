//! Fan-out: one master store that every read goes to, and mirrors that every write also
//! goes to (sanic-cookies' "interfaces").
//!
//! Writes go to the master first; its answer is the answer (a version conflict on the
//! master is a conflict, full stop). Each mirror is then made to match: a write the
//! mirror refuses because it missed or reordered earlier writes is repaired by bringing
//! its copy up to the master's record, unless it already holds a later version, so
//! mirrors converge on the newest version even when requests race. What a mirror that is *down* does to the
//! request is [`MirrorFailure`]; either way it is logged.

use crate::session::{SessionId, SessionRecord, SessionStore, StoreError};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::sync::Arc;

/// What a failed mirror write does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorFailure {
    /// Log a warning and answer with the master's result (default: the master is the
    /// truth, the mirror catches up on the session's next write).
    #[default]
    Log,
    /// Log an error and fail the request as unavailable (503). The master keeps the
    /// write: the failure is never reported as a conflict, which would make the
    /// session retry and apply its change twice, but a client that retries a
    /// non-idempotent request after the 503 applies it twice.
    Fail,
}

/// A master store plus mirrors.
#[derive(Clone)]
pub struct FanOutStore {
    master: Arc<dyn SessionStore>,
    mirrors: Vec<Arc<dyn SessionStore>>,
    on_failure: MirrorFailure,
}

impl std::fmt::Debug for FanOutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutStore")
            .field("mirrors", &self.mirrors.len())
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl FanOutStore {
    /// Reads from `master`, writes to `master` and every mirror.
    pub fn new(
        master: Arc<dyn SessionStore>,
        mirrors: Vec<Arc<dyn SessionStore>>,
        on_failure: MirrorFailure,
    ) -> FanOutStore {
        FanOutStore {
            master,
            mirrors,
            on_failure,
        }
    }

    /// Applies `write` to every mirror in turn, settling failures by the policy.
    async fn mirror<'a, F, Fut>(&'a self, operation: &str, write: F) -> Result<(), StoreError>
    where
        F: Fn(&'a Arc<dyn SessionStore>) -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>> + 'a,
    {
        for (index, mirror) in self.mirrors.iter().enumerate() {
            if let Err(error) = write(mirror).await {
                match self.on_failure {
                    MirrorFailure::Log => {
                        tracing::warn!(mirror = index, operation, %error, "session mirror write failed")
                    }
                    MirrorFailure::Fail => {
                        tracing::error!(mirror = index, operation, %error, "session mirror write failed");
                        // Never a conflict or not-found: those tell the caller to retry,
                        // and the master already holds this write.
                        return Err(StoreError::Unavailable(
                            format!("session mirror {index} failed: {error}").into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Brings `mirror`'s copy of `id` up to `record` unless it already holds that version
/// or a later one (versions only grow, so racing repairs settle on the newest). A
/// session the master no longer holds (a logout raced this write) is removed from the
/// mirror instead, never re-created there.
async fn converge(
    master: &Arc<dyn SessionStore>,
    mirror: &Arc<dyn SessionStore>,
    id: &SessionId,
    record: &SessionRecord,
) -> Result<(), StoreError> {
    // Each failed attempt means another writer moved the mirror on, so this ends as
    // soon as the mirror reaches this version; the cap only guards against a bug.
    const ATTEMPTS: usize = 64;
    for _ in 0..ATTEMPTS {
        if master.load(id).await?.is_none() {
            mirror.delete(id).await?;
            return Ok(());
        }
        let attempt = match mirror.load(id).await? {
            Some(current) if current.version >= record.version => return Ok(()),
            Some(current) => mirror.save(id, record, current.version).await,
            None => mirror.create(id, record).await,
        };
        match attempt {
            Err(StoreError::VersionConflict | StoreError::NotFound | StoreError::AlreadyExists) => {
            }
            Ok(()) => {
                // A logout may have passed the mirror between the check and the write.
                if master.load(id).await?.is_none() {
                    mirror.delete(id).await?;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::Unavailable(
        "session mirror kept changing; gave up bringing it up to date".into(),
    ))
}

#[async_trait]
impl SessionStore for FanOutStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.master.load(id).await
    }

    async fn create(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.master.create(id, record).await?;
        self.mirror("create", |mirror| async move {
            match mirror.create(id, record).await {
                Err(StoreError::AlreadyExists) => converge(&self.master, mirror, id, record).await,
                other => other,
            }
        })
        .await
    }

    async fn save(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.master.save(id, record, expected_version).await?;
        self.mirror("save", |mirror| async move {
            match mirror.save(id, record, expected_version).await {
                Err(StoreError::NotFound | StoreError::VersionConflict) => {
                    converge(&self.master, mirror, id, record).await
                }
                other => other,
            }
        })
        .await
    }

    async fn rotate(
        &self,
        old_id: &SessionId,
        new_id: &SessionId,
        record: &SessionRecord,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.master
            .rotate(old_id, new_id, record, expected_version)
            .await?;
        self.mirror("rotate", |mirror| async move {
            match mirror
                .rotate(old_id, new_id, record, expected_version)
                .await
            {
                Err(StoreError::NotFound | StoreError::VersionConflict) => {
                    mirror.delete(old_id).await?;
                    converge(&self.master, mirror, new_id, record).await
                }
                other => other,
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let deleted = self.master.delete(id).await?;
        self.mirror("delete", |mirror| async move {
            mirror.delete(id).await.map(drop)
        })
        .await?;
        Ok(deleted)
    }

    async fn list_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionId, SessionRecord)>, StoreError> {
        self.master.list_for_user(user_id).await
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let deleted = self.master.delete_for_user(user_id, keep).await?;
        self.mirror("delete_for_user", |mirror| async move {
            mirror.delete_for_user(user_id, keep).await.map(drop)
        })
        .await?;
        Ok(deleted)
    }

    async fn delete_expired(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let deleted = self.master.delete_expired(now, limit).await?;
        self.mirror("delete_expired", |mirror| async move {
            mirror.delete_expired(now, limit).await.map(drop)
        })
        .await?;
        Ok(deleted)
    }
}
