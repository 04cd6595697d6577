//! The lease on an SQS message while its task runs, and until it is deleted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::QueueShared;
use super::config::OnShutdown;
use super::in_flight::Deliveries;
use crate::aws::{ApiError, retry};
use crate::limits::MAX_VISIBILITY_SECS;
use crate::runner::lease::{Lease, LeaseEnd};

/// Time kept back from SQS's 12-hour ceiling to report and delete.
const CEILING_MARGIN: Duration = Duration::from_secs(120);
/// The receipt handle is no longer valid: the message was deleted already
/// (an earlier attempt whose answer was lost) or its visibility lapsed.
const HANDLE_INVALID: &str = "ReceiptHandleIsInvalid";

pub(crate) struct MessageLease {
    pub queue: Arc<QueueShared>,
    pub token: String,
    pub deliveries: Arc<Deliveries>,
    pub received_at: Instant,
    /// Until when the message is known to be invisible: receipt plus the
    /// visibility timeout, moved on by every renewal that succeeded.
    pub kept_until: Mutex<Instant>,
}

impl MessageLease {
    pub fn new(queue: Arc<QueueShared>, token: String, deliveries: Arc<Deliveries>) -> Self {
        let now = Instant::now();
        let kept_until = Mutex::new(now + queue.visibility);
        Self {
            queue,
            token,
            deliveries,
            received_at: now,
            kept_until,
        }
    }

    /// How often a message with this visibility timeout is renewed: a third
    /// of it, so two renewals can fail before it lapses.
    pub fn renew_interval(visibility: Duration) -> Duration {
        (visibility / 3).max(Duration::from_secs(1))
    }

    fn ceiling(&self) -> Instant {
        self.received_at + Duration::from_secs(MAX_VISIBILITY_SECS)
    }

    fn kept_until(&self) -> Instant {
        *self.kept_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set the visibility of `handles`; the handles whose change failed.
    async fn set_visibility(&self, handles: Vec<String>, secs: i32) -> Vec<(String, ApiError)> {
        let calls = handles.into_iter().map(|h| async move {
            let result = self.queue.batcher.change_visibility(h.clone(), secs).await;
            result.err().map(|e| (h, e))
        });
        let failed: Vec<_> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        for (_, err) in &failed {
            tracing::warn!(code = %err.code, error = %err.message, visibility_secs = secs, "changing the message's visibility failed");
        }
        failed
    }

    /// Extend the visibility of `handles` back to the full timeout (never
    /// past the 12-hour ceiling); whether all of them are still held.
    async fn extend(&self, handles: Vec<String>) -> bool {
        let asked = Instant::now();
        let left = self.ceiling().saturating_duration_since(asked);
        let secs = self.queue.visibility.min(left).as_secs().max(1);
        let failed = self
            .set_visibility(handles, i32::try_from(secs).unwrap_or(i32::MAX))
            .await;
        if failed.is_empty() {
            let mut kept = self.kept_until.lock().unwrap_or_else(|p| p.into_inner());
            *kept = (*kept).max(asked + Duration::from_secs(secs));
        }
        failed.is_empty()
    }

    /// Delete every delivery, retrying while the message can be kept
    /// invisible (renewing it between attempts), so that a delete failing
    /// for a while does not let the message come back. Retries are close
    /// together (at most about 2 s apart): the lease is the deadline, and
    /// every attempt before it is a chance not to run the task twice.
    async fn delete(&self) {
        let mut pending = self.deliveries.handles();
        let mut delays = retry::delete();
        loop {
            let attempts = pending.into_iter().map(|h| async move {
                let result = self.queue.batcher.delete(h.clone()).await;
                result.err().map(|e| (h, e))
            });
            let failed: Vec<(String, ApiError)> = futures::future::join_all(attempts)
                .await
                .into_iter()
                .flatten()
                .collect();
            pending = Vec::new();
            for (handle, err) in failed {
                if err.code == HANDLE_INVALID {
                    // Deleted by an attempt whose answer was lost, or lapsed:
                    // either way this handle has nothing left to delete.
                    tracing::debug!(
                        "delete answered ReceiptHandleIsInvalid; nothing left to delete"
                    );
                } else if err.is_retryable() {
                    pending.push(handle);
                } else {
                    tracing::warn!(code = %err.code, error = %err.message,
                        "deleting the message was refused; it will come back and be dropped as already settled");
                }
            }
            if pending.is_empty() {
                return;
            }
            let now = Instant::now();
            let kept_until = self.kept_until();
            if now >= kept_until || self.queue.give_up.is_cancelled() {
                tracing::warn!(
                    "could not delete the message before its visibility lapsed; it will come back and be dropped as already settled"
                );
                return;
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(delay.min(kept_until - now)) => {}
                _ = self.queue.give_up.cancelled() => {}
            }
            // Renew when a third of the timeout has passed since it was
            // last known to be kept, as the running task's timer would.
            let renew_at = self
                .kept_until()
                .checked_sub(self.queue.visibility * 2 / 3)
                .unwrap_or(now);
            if Instant::now() >= renew_at {
                self.extend(pending.clone()).await;
            }
        }
    }
}

#[async_trait]
impl Lease for MessageLease {
    fn renew_every(&self) -> Option<Duration> {
        Some(Self::renew_interval(self.queue.visibility))
    }

    async fn renew(&self) -> bool {
        self.extend(self.deliveries.handles()).await
    }

    fn hard_deadline(&self) -> Option<Instant> {
        Some(self.ceiling() - CEILING_MARGIN)
    }

    fn release_on_shutdown(&self) -> bool {
        self.queue.on_shutdown == OnShutdown::Release
    }

    async fn end(&self, how: LeaseEnd) {
        // Out of the running set first (and, when settled, into the settled
        // set at the same moment): a duplicate arriving from now on is
        // dropped, or starts its own task, rather than joining one whose
        // handles were already read for the delete.
        self.queue
            .in_flight
            .finish(&self.token, how == LeaseEnd::Settled);
        match how {
            LeaseEnd::Settled => self.delete().await,
            LeaseEnd::Keep => {
                tracing::warn!(
                    "leaving the message in the queue: it becomes visible again after its visibility timeout and is retried"
                );
            }
            LeaseEnd::Release => {
                if self
                    .set_visibility(self.deliveries.handles(), 0)
                    .await
                    .is_empty()
                {
                    tracing::info!("message released for another worker");
                }
            }
        }
    }
}
