use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::trace::TraceContext;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a task came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskSource {
    /// A Step Functions activity, by ARN.
    Activity {
        /// The activity's ARN.
        arn: Arc<str>,
    },
    /// An SQS queue (`sqs:sendMessage.waitForTaskToken`), by URL.
    Queue {
        /// The queue's URL.
        url: Arc<str>,
    },
    /// An SQS queue whose messages carry a Lambda durable execution's
    /// callback id (`waitForCallback`), by URL.
    DurableCallback {
        /// The queue's URL.
        url: Arc<str>,
    },
    /// Run locally (`sfn-worker invoke`, tests): no Step Functions behind it.
    Local,
}

impl TaskSource {
    /// The source kind as used in metric labels and logs: `activity`, `sqs`,
    /// `durable_callback`, `local`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSource::Activity { .. } => "activity",
            TaskSource::Queue { .. } => "sqs",
            TaskSource::DurableCallback { .. } => "durable_callback",
            TaskSource::Local => "local",
        }
    }
}

/// Why a task's context was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// Step Functions says the task is over (`TaskTimedOut`, `TaskDoesNotExist`
    /// or `InvalidToken`: timed out, stopped, or already completed). Nothing
    /// will be reported for it.
    TaskClosed,
    /// The binding's `timeout_secs` ran out; `Worker.HandlerTimeout` follows.
    Timeout,
    /// The worker is shutting down and the grace period ran out.
    Shutdown,
    /// The task's SQS message lapsed (SQS no longer knows this worker's
    /// receipt; another worker may be running it) and heartbeats failed
    /// too. Nothing is reported for the task unless the handler returns a
    /// success.
    LeaseLost,
    /// Cancelled by whoever runs the task locally (Ctrl-C in `invoke`).
    Local,
}

/// What a handler knows about the task it runs, and how it talks back.
///
/// Cheap to clone; every clone refers to the same task.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    fingerprint: String,
    source: TaskSource,
    binding: Arc<str>,
    deadline: Option<Instant>,
    trace: Option<TraceContext>,
    cancel: CancellationToken,
    reason: OnceLock<CancelReason>,
    heartbeat: Notify,
    /// How many times the handler asked for a heartbeat (the test helpers read it).
    heartbeats_asked: AtomicU64,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("token", &self.inner.fingerprint)
            .field("source", &self.inner.source)
            .field("binding", &self.inner.binding)
            .field("deadline", &self.inner.deadline)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl TaskContext {
    /// A context for a task. Only the worker builds these; `invoke` and
    /// tests use [`TaskContext::local`] or [`TaskContext::local_cancellable`].
    pub(crate) fn new(
        fingerprint: String,
        source: TaskSource,
        binding: Arc<str>,
        deadline: Option<Instant>,
        trace: Option<TraceContext>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                fingerprint,
                source,
                binding,
                deadline,
                trace,
                cancel: CancellationToken::new(),
                reason: OnceLock::new(),
                heartbeat: Notify::new(),
                heartbeats_asked: AtomicU64::new(0),
            }),
        }
    }

    /// A context for running a handler outside Step Functions (no token, no
    /// deadline), never cancelled.
    ///
    /// ```
    /// let ctx = sfn_worker_core::TaskContext::local("test");
    /// assert!(!ctx.is_cancelled());
    /// ```
    pub fn local(binding: &str) -> Self {
        Self::local_with_deadline(binding, None)
    }

    pub(crate) fn local_with_deadline(binding: &str, deadline: Option<Instant>) -> Self {
        Self::new(
            "local".to_owned(),
            TaskSource::Local,
            binding.into(),
            deadline,
            None,
        )
    }

    /// A local context and the handle that cancels it, standing in for the
    /// worker: a handler test cancels with the reason it wants to see
    /// handled, `invoke` with [`CancelReason::Local`] on Ctrl-C.
    ///
    /// ```
    /// use sfn_worker_core::{CancelReason, TaskContext};
    /// let (ctx, cancel) = TaskContext::local_cancellable("test");
    /// cancel.cancel(CancelReason::TaskClosed);
    /// assert_eq!(ctx.cancel_reason(), Some(CancelReason::TaskClosed));
    /// ```
    pub fn local_cancellable(binding: &str) -> (Self, LocalCancel) {
        let ctx = Self::local(binding);
        (ctx.clone(), LocalCancel(ctx))
    }

    /// A short fingerprint of the task token, safe to log. The token itself is
    /// never given to handlers: completing the task is the worker's job.
    pub fn token_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Where the task came from.
    pub fn source(&self) -> &TaskSource {
        &self.inner.source
    }

    /// The name of the binding (the `[[activity]]` entry) that received it.
    pub fn binding(&self) -> &str {
        &self.inner.binding
    }

    /// When the binding's `timeout_secs` runs out, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// The trace the task arrived with (`AWSTraceHeader`, or a
    /// `traceparent` at the binding's `traceparent_pointer`): pass it on
    /// to calls the handler makes, to keep them in the same trace.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.inner.trace.as_ref()
    }

    /// The cancellation token of this task. Cancelled when Step Functions
    /// closes the task, at the timeout, or when shutdown's grace runs out.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Completes when the task is cancelled. Use it in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Whether the task has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Why the task was cancelled, once it is.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.reason.get().copied()
    }

    /// Ask for a heartbeat now, for example after a slow step.
    ///
    /// Coalesced with the timer: many calls while one heartbeat is pending
    /// send one, and a heartbeat sent this way resets the timer. Never blocks.
    pub fn heartbeat(&self) {
        self.inner.heartbeats_asked.fetch_add(1, Ordering::Relaxed);
        self.inner.heartbeat.notify_one();
    }

    /// How many times [`TaskContext::heartbeat`] was called.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub(crate) fn heartbeats_asked(&self) -> u64 {
        self.inner.heartbeats_asked.load(Ordering::Relaxed)
    }

    /// Cancel the task with a reason. The first reason sticks. Only the
    /// worker (and [`LocalCancel`]) may: a handler that wants to stop early
    /// returns.
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let _ = self.inner.reason.set(reason);
        self.inner.cancel.cancel();
    }

    /// Completes when the handler asked for a heartbeat (worker side).
    pub(crate) async fn heartbeat_requested(&self) {
        self.inner.heartbeat.notified().await
    }
}

/// Cancels a context made by [`TaskContext::local_cancellable`].
#[derive(Debug, Clone)]
pub struct LocalCancel(TaskContext);

impl LocalCancel {
    /// Cancel the task with a reason. The first reason sticks.
    pub fn cancel(&self, reason: CancelReason) {
        self.0.cancel(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_cancel_reason_sticks() {
        let ctx = TaskContext::local("b");
        ctx.cancel(CancelReason::TaskClosed);
        ctx.cancel(CancelReason::Shutdown);
        assert!(ctx.is_cancelled());
        assert_eq!(ctx.cancel_reason(), Some(CancelReason::TaskClosed));
        ctx.cancelled().await;
    }

    #[tokio::test]
    async fn heartbeat_requests_coalesce_into_one() {
        let ctx = TaskContext::local("b");
        ctx.heartbeat();
        ctx.heartbeat();
        ctx.heartbeat_requested().await;
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            ctx.heartbeat_requested(),
        );
        assert!(
            second.await.is_err(),
            "three calls must coalesce into one request"
        );
    }
}
