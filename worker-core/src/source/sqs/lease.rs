//! The lease on an SQS message while its task runs, and until it is deleted.
//!
//! A task may hold several receipts (a copy of its message, or the same
//! message received again, joins it: `in_flight.rs`); each is renewed on its
//! own until SQS says it is not ours any more (`ReceiptHandleIsInvalid`,
//! `MessageNotInflight`: the message lapsed, and may be running elsewhere).
//! Such a receipt is never renewed again; the others go on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::QueueShared;
use super::config::OnShutdown;
use super::in_flight::Deliveries;
use crate::aws::{ApiError, ApiErrorKind, retry};
use crate::limits::MAX_VISIBILITY_SECS;
use crate::runner::lease::{Lease, LeaseEnd, Renewed};

/// Time kept back from SQS's 12-hour ceiling to report and delete.
const CEILING_MARGIN: Duration = Duration::from_secs(120);

/// Whether SQS answered that a receipt handle is no longer ours: deleted
/// already (an earlier attempt whose answer was lost), or its visibility
/// lapsed (the message is visible again, or was received anew: only the
/// newest receipt handle of a message works). Retrying cannot help.
pub(crate) fn receipt_lost(err: &ApiError) -> bool {
    matches!(
        err.code.as_str(),
        "ReceiptHandleIsInvalid"
            | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
            | "MessageNotInflight"
            | "AWS.SimpleQueueService.MessageNotInflight"
    )
}

pub(crate) struct MessageLease {
    pub queue: Arc<QueueShared>,
    pub token: String,
    pub deliveries: Arc<Deliveries>,
    pub received_at: Instant,
}

impl MessageLease {
    pub fn new(queue: Arc<QueueShared>, token: String, deliveries: Arc<Deliveries>) -> Self {
        Self {
            queue,
            token,
            deliveries,
            received_at: Instant::now(),
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

    /// Extend the visibility of every held receipt back to the full timeout
    /// (never past the 12-hour ceiling). Each receipt's answer is acted on
    /// as it comes: the caller may give up on this attempt (one of its
    /// calls hung) and what the others said must not be lost with it.
    async fn extend(&self) -> Renewed {
        let handles = self.deliveries.held();
        if handles.is_empty() {
            return Renewed::Lost;
        }
        let asked = Instant::now();
        let left = self.ceiling().saturating_duration_since(asked);
        let secs = self.queue.visibility.min(left).as_secs().max(1);
        let visibility_secs = i32::try_from(secs).unwrap_or(i32::MAX);
        let mut calls: FuturesUnordered<_> = handles
            .into_iter()
            .map(|h| async move {
                let result = self
                    .queue
                    .batcher
                    .change_visibility(h.clone(), visibility_secs)
                    .await;
                (h, result)
            })
            .collect();
        let mut failed = false;
        while let Some((handle, result)) = calls.next().await {
            match result {
                Ok(()) => self
                    .deliveries
                    .kept(&handle, asked + Duration::from_secs(secs)),
                Err(err) if receipt_lost(&err) => {
                    // Said once per task, by the runner, when no receipt is
                    // left; one of several going is routine (a copy deleted).
                    self.deliveries.lose(&handle);
                    tracing::debug!(code = %err.code, "a receipt of the message is no longer held");
                }
                Err(err) => {
                    failed = true;
                    tracing::warn!(code = %err.code, error = %err.message, visibility_secs = secs,
                        "extending the message's visibility failed; retrying soon");
                }
            }
        }
        if !self.deliveries.any_held() {
            Renewed::Lost
        } else if failed {
            Renewed::Failed
        } else {
            Renewed::Kept
        }
    }

    /// Delete (or release) every held receipt, retrying each until it is
    /// done, SQS says it is not ours, or it can no longer be kept
    /// invisible. For a delete the task's timer goes on renewing meanwhile
    /// (see [`Lease::end`]), so a delete that fails for a while does not
    /// let the message come back. Retries are close together (at most about
    /// 1 s apart): every attempt before the lease lapses is a chance not to
    /// run the task twice (or, for a release, not to leave the message
    /// hidden from the other workers for a whole visibility timeout).
    async fn until_done(&self, action: Action) {
        let handles = self.deliveries.held();
        settle(&self.queue, &self.deliveries, handles, action).await;
    }
}

/// What to do with a message's receipts when its task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Delete,
    /// Visibility 0: another worker may take it now.
    Release,
    /// Visibility this many seconds: out of sight until then.
    Hide(i32),
}

/// Retried at least this many times, even once shutdown has given up
/// retrying (a release is what lets another worker have the message now).
const MIN_ATTEMPTS: u32 = 3;
/// A delete or release unanswered this long is tried again (beside it):
/// one hung call must not hold the message until its lease lapses.
const ATTEMPT_WAIT: Duration = Duration::from_secs(2);

/// Carry out `action` on `handles` (receipts held in `deliveries`),
/// retrying what may succeed later while the receipt is still held.
pub(crate) async fn settle(
    queue: &QueueShared,
    deliveries: &Deliveries,
    handles: Vec<String>,
    action: Action,
) {
    let mut pending = handles;
    let mut delays = retry::Retries::new(retry::delete());
    // Attempts spaced by the backoff (a prompt retry right after a failure
    // does not count): what MIN_ATTEMPTS counts once shutdown gave up.
    let mut attempts = 0u32;
    let mut prompted = false;
    let mut done = 0usize;
    loop {
        if !prompted {
            attempts += 1;
        }
        let (mark, done_before) = (queue.deletes.mark(), done);
        let calls = pending.into_iter().map(|h| async move {
            let call = async {
                match action {
                    Action::Delete => queue.batcher.delete(h.clone()).await,
                    Action::Release => queue.batcher.change_visibility(h.clone(), 0).await,
                    Action::Hide(secs) => queue.batcher.change_visibility(h.clone(), secs).await,
                }
            };
            let result = tokio::time::timeout(ATTEMPT_WAIT, call)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        ApiErrorKind::Transient,
                        "Timeout",
                        "no answer yet; trying again",
                    ))
                });
            (h, result)
        });
        let results = futures::future::join_all(calls).await;
        pending = Vec::new();
        for (handle, result) in results {
            match result {
                // Done: nothing more to renew for it either.
                Ok(()) => {
                    done += 1;
                    deliveries.lose(&handle);
                }
                Err(err) if receipt_lost(&err) => {
                    // Deleted by an attempt whose answer was lost, or
                    // lapsed: either way nothing left to do with it.
                    deliveries.lose(&handle);
                    tracing::debug!(code = %err.code, ?action, "the receipt is gone; nothing left to do with it");
                }
                Err(err) if err.is_retryable() => pending.push(handle),
                Err(err) => {
                    deliveries.lose(&handle);
                    match action {
                        Action::Delete => tracing::warn!(code = %err.code, error = %err.message,
                            "deleting the message was refused; it will come back and be dropped as already settled"),
                        Action::Release | Action::Hide(_) => {
                            tracing::warn!(code = %err.code, error = %err.message,
                            "changing the message's visibility was refused; it comes back after its visibility timeout")
                        }
                    }
                }
            }
        }
        // Deletes of this queue answered, for `Retries` to read: a delete
        // that failed while most of the queue's others went through failed
        // alone. Releases are not counted (and never retried promptly):
        // they happen at shutdown, where spacing matters more than speed.
        let own = (done - done_before) as u64;
        let failed_alone = action == Action::Delete && {
            queue.deletes.accepted(own);
            !pending.is_empty() && queue.deletes.failed(mark, own, pending.len() as u64)
        };
        let now = Instant::now();
        // A receipt that lapsed while its call failed cannot be used (or
        // kept invisible) any more.
        pending.retain(|h| {
            let alive = deliveries.kept_until(h).is_some_and(|until| until > now);
            if !alive {
                deliveries.lose(h);
                if action == Action::Delete {
                    tracing::warn!(
                        "could not delete the message before its visibility lapsed; it will come back and be dropped as already settled"
                    );
                }
            }
            alive
        });
        let gave_up = queue.give_up.is_cancelled() && attempts >= MIN_ATTEMPTS;
        if pending.is_empty() || gave_up {
            if !pending.is_empty() {
                tracing::warn!(
                    ?action,
                    "shutdown gave up on the message; it comes back after its visibility timeout"
                );
            } else if action == Action::Release && done > 0 {
                tracing::info!("message released for another worker");
            }
            return;
        }
        // Once shutdown gave up, the backoff's spacing is what MIN_ATTEMPTS
        // relies on: no prompt retries then.
        let alone = failed_alone && !queue.give_up.is_cancelled();
        prompted = alone;
        let delay = delays.next(alone).unwrap_or(Duration::from_secs(1));
        if queue.give_up.is_cancelled() {
            tokio::time::sleep(delay).await;
        } else {
            tokio::select! {
                biased;
                _ = queue.give_up.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[async_trait]
impl Lease for MessageLease {
    fn renew_every(&self) -> Option<Duration> {
        Some(Self::renew_interval(self.queue.visibility))
    }

    async fn renew(&self) -> Renewed {
        self.extend().await
    }

    fn holds(&self) -> bool {
        self.deliveries.any_held()
    }

    fn hard_deadline(&self) -> Option<Instant> {
        Some(self.ceiling() - CEILING_MARGIN)
    }

    fn release_on_shutdown(&self) -> bool {
        self.queue.on_shutdown == OnShutdown::Release
    }

    fn reporting(&self) {
        self.queue
            .in_flight
            .reporting(&self.token, &self.deliveries);
    }

    fn superseded(&self) -> bool {
        self.deliveries.superseded()
    }

    async fn end(&self, how: LeaseEnd) {
        // Out of the running set first (and, when settled, into the settled
        // set at the same moment): a redelivery arriving from now on is
        // dropped, or starts its own task, rather than joining one whose
        // handles were already read for the delete.
        self.queue
            .in_flight
            .finish(&self.token, &self.deliveries, how == LeaseEnd::Settled);
        match how {
            LeaseEnd::Settled => self.until_done(Action::Delete).await,
            // Nothing left to leave when SQS said no receipt is ours.
            LeaseEnd::Keep if self.deliveries.any_held() => {
                tracing::warn!(
                    "leaving the message in the queue: it becomes visible again after its visibility timeout and is retried"
                );
            }
            LeaseEnd::Keep => {}
            LeaseEnd::Release => self.until_done(Action::Release).await,
            LeaseEnd::Hide(d) => {
                // Never sooner than the queue's own timeout would bring it
                // back (each return spends a receive toward the dead-letter
                // queue); SQS's visibility is whole seconds, at most 12 hours.
                let secs = d
                    .max(self.queue.visibility)
                    .as_secs()
                    .clamp(1, crate::limits::MAX_VISIBILITY_SECS);
                self.until_done(Action::Hide(i32::try_from(secs).unwrap_or(i32::MAX)))
                    .await;
            }
        }
    }
}
