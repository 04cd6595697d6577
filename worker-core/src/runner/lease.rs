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
    /// Keep the delivery out of sight this long from now, then let it come
    /// back (another worker's ledger claim on the task ends by then).
    Hide(Duration),
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Held for another full period.
    Kept,
    /// Not renewed this time (throttled, 5xx, no answer): try again soon.
    Failed,
    /// The service says the delivery is not ours any more (the message's
    /// visibility lapsed, and it may be running elsewhere): renewing again
    /// cannot help.
    Lost,
}

#[async_trait]
pub(crate) trait Lease: Send + Sync {
    /// How often to renew while the handler runs; `None`: never.
    fn renew_every(&self) -> Option<Duration>;
    /// Renew (extend the message's visibility). Failures are the lease's to
    /// log; the caller tries again soon. Several renewals may be in flight
    /// at once (one that hangs must not keep the next from going out).
    async fn renew(&self) -> Renewed;
    /// Whether any of the delivery's receipts is still held (not answered
    /// as lost): one may have joined since a renewal found none.
    fn holds(&self) -> bool {
        true
    }
    /// The latest the handler may run before the lease cannot be held (SQS
    /// keeps a message invisible at most 12 hours from receipt).
    fn hard_deadline(&self) -> Option<Instant>;
    /// At shutdown, give the delivery back instead of failing the task.
    fn release_on_shutdown(&self) -> bool;
    /// The task's report is about to be sent: the delivery stops taking in
    /// new work that only shares its token.
    fn reporting(&self);
    /// A newer attempt of the same token arrived while the report was on its
    /// way (LocalStack's `Retry` sends the failed attempt's token again):
    /// this task's attempt is over, and retrying its report would land on
    /// the new attempt.
    fn superseded(&self) -> bool {
        false
    }
    /// End the lease. For [`LeaseEnd::Settled`] the caller goes on renewing
    /// while this runs (a delete retried for a while must not let the
    /// message come back meanwhile); for the others it has stopped renewing
    /// first (a renewal landing after a release would hide the message again).
    async fn end(&self, how: LeaseEnd);
}
