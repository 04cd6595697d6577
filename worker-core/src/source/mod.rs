//! Where tasks come from: one folder per source.
//!
//! - [`activity`]: Step Functions activities (`GetActivityTask` long polls).
//! - [`sqs`]: SQS callbacks (`sqs:sendMessage.waitForTaskToken`): receiver,
//!   message parsing, lease (visibility), batcher, in-flight set.
//!
//! Each source resolves its own configuration (`config.rs` in its folder)
//! and turns every binding into a [`Source`]: pollers that take a slot, ask
//! for work, and hand each task to the shared runner. The worker starts
//! them, and at shutdown waits for their polls in flight and their tasks.

pub(crate) mod activity;
pub(crate) mod sqs;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runner::Env;
use crate::slots::GlobalSlots;

/// What the worker hands every source.
pub(crate) struct Runtime {
    /// What every task shares (reporter, shutdown, cancel grace).
    pub env: Arc<Env>,
    /// The process-wide concurrency every binding's slots draw from.
    pub global: GlobalSlots,
    /// Where tasks are spawned; the worker waits for them at shutdown.
    pub tasks: TaskTracker,
    /// `workerName` for activity polls.
    pub worker_name: Arc<str>,
}

/// After a failed poll, wait `delay` before the next; `false` when shutdown
/// began meanwhile (the poller stops).
pub(crate) async fn back_off(delay: Duration, draining: &CancellationToken) -> bool {
    // Biased, here and in every select of the worker: the same order on
    // every run, so a simulation seed replays exactly.
    tokio::select! {
        biased;
        _ = draining.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// One binding's task source.
pub(crate) trait Source: Send + Sync + 'static {
    /// Spawn the binding's pollers onto `pollers`. Each returns once
    /// shutdown begins and its poll in flight has answered; the tasks it
    /// handed over run on [`Runtime::tasks`].
    fn start(self: Arc<Self>, pollers: &TaskTracker);
}
