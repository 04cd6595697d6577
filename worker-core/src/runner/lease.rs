//! What a task's delivery needs besides the report.
//!
//! An activity task needs nothing: the token is all. An SQS message must be
//! kept invisible while its handler runs, deleted once the task is settled,
//! and released (made visible) when the worker gives it back. The runner
//! drives a [`Lease`] on the same per-task timer as the heartbeats, so one
//! runner serves both sources.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

/// How a leased delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    /// The task is settled (reported, or closed by Step Functions): drop the
    /// delivery for good (delete the message).
    Settled,
    /// The report could not be delivered: keep the delivery so it comes back
    /// and the task is tried again (the message reappears after its timeout).
    Keep,
    /// Give the delivery back now for another worker (visibility 0).
    Release,
}

#[async_trait]
pub(crate) trait Lease: Send + Sync {
    /// How often to renew while the handler runs; `None`: never.
    fn renew_every(&self) -> Option<Duration>;
    /// Renew (extend the message's visibility); whether it is still held.
    /// Failures are the lease's to log; the caller tries again soon.
    async fn renew(&self) -> bool;
    /// The latest the handler may run before the lease cannot be held (SQS
    /// keeps a message invisible at most 12 hours from receipt).
    fn hard_deadline(&self) -> Option<Instant>;
    /// At shutdown, give the delivery back instead of failing the task.
    fn release_on_shutdown(&self) -> bool;
    /// End the lease. For [`LeaseEnd::Settled`] this keeps the delivery
    /// alive while it retries, so that a delivery which cannot be dropped
    /// right away does not come back while it is being dropped.
    async fn end(&self, how: LeaseEnd);
}
