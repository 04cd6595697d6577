//! One task's life: run the handler in its own tokio task (so a panic fails
//! only this task), keep it alive (heartbeats, and the source's lease) until
//! it is settled, enforce its timeout and shutdown, then report and settle it.

mod keepalive;
pub(crate) mod lease;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::completion::Reporter;
use crate::config::BindingPlan;
use crate::error_names;
use crate::handler::{CancelReason, Handler, TaskContext, TaskError, TaskSource};
use crate::metrics::{BindingLabels, Outcome, Saturation};
use crate::shutdown::ShutdownHandle;
use crate::slots::Slot;
use crate::trace::TraceContext;
use keepalive::KeepAlive;
use lease::{Lease, LeaseEnd};
use verdict::{Ending, deliver, verdict};

/// What a binding's tasks share.
pub(crate) struct Binding {
    pub name: Arc<str>,
    pub kind: Arc<str>,
    pub source: TaskSource,
    pub handler: Arc<dyn Handler>,
    pub heartbeat: Option<Duration>,
    pub timeout: Option<Duration>,
    pub traceparent_pointer: Option<Arc<str>>,
    pub labels: BindingLabels,
    /// Where the binding's results go (Step Functions, or durable callbacks).
    pub reporter: Arc<Reporter>,
}

impl Binding {
    /// A binding; its metric labels come from its name and source.
    pub fn new(plan: &BindingPlan, source: TaskSource, reporter: Arc<Reporter>) -> Self {
        let labels = BindingLabels::new(source.kind(), plan.name.clone(), plan.concurrency);
        Self {
            name: plan.name.clone(),
            kind: plan.kind.clone(),
            source,
            handler: plan.handler.clone(),
            heartbeat: plan.heartbeat,
            timeout: plan.timeout,
            traceparent_pointer: plan.traceparent_pointer.clone(),
            labels,
            reporter,
        }
    }
}

/// What every task shares.
pub(crate) struct Env {
    pub shutdown: ShutdownHandle,
    pub cancel_grace: Duration,
    /// Tasks running over the worker's slots.
    pub saturation: Saturation,
}

/// A task as the runner sees it, whatever its source.
pub(crate) struct Task {
    pub token: String,
    pub input: String,
    /// The delivery to keep alive and settle; `None` for activities.
    pub lease: Option<Arc<dyn Lease>>,
    /// The trace its carrier had (SQS's `AWSTraceHeader`).
    pub trace: Option<TraceContext>,
}

/// Run one task to its end; the slot is released when this returns.
pub(crate) async fn run_task(binding: Arc<Binding>, env: Arc<Env>, mut task: Task, slot: Slot) {
    let received = Instant::now();
    let fingerprint = crate::fingerprint(&task.token);
    // A `traceparent` in the input, where configured, wins: the sender put
    // it there on purpose; the attribute may be the queue's own sender's.
    if let Some(pointer) = &binding.traceparent_pointer
        && let Some(trace) = TraceContext::from_input(&task.input, pointer)
    {
        task.trace = Some(trace);
    }
    let span = tracing::info_span!(
        "task",
        source = binding.labels.source,
        binding = %binding.name,
        handler = %binding.kind,
        token = %fingerprint,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = &task.trace {
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        #[cfg(feature = "opentelemetry")]
        crate::trace::set_parent(&span, trace);
    }
    async move {
        binding.labels.task_received();
        binding.labels.task_started();
        env.saturation.started();
        tracing::debug!(input_bytes = task.input.len(), "task received");
        let lease = task.lease.clone();
        let (outcome, end) = execute(&binding, &env, task, fingerprint).await;
        if let Some(lease) = lease {
            lease.end(end).await;
        }
        binding.labels.task_finished();
        env.saturation.finished();
        let seconds = received.elapsed().as_secs_f64();
        binding.labels.task_completed(outcome, seconds);
        tracing::debug!(outcome = outcome.as_str(), seconds, "task ended");
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Run the handler and report; returns the outcome and how to end the lease.
async fn execute(
    binding: &Binding,
    env: &Env,
    task: Task,
    fingerprint: String,
) -> (Outcome, LeaseEnd) {
    let Task {
        token,
        input,
        lease,
        trace,
    } = task;
    let releases = lease.as_ref().is_some_and(|l| l.release_on_shutdown());
    let mut keep = KeepAlive::new(
        &binding.reporter,
        &token,
        &binding.labels,
        binding.heartbeat,
        lease.as_deref(),
    );
    if env.shutdown.cancelling().is_cancelled() {
        // Delivered after the grace period (a poll in flight at shutdown):
        // give it back, or fail it so a Retry runs it elsewhere.
        if releases {
            tracing::info!("task arrived after the shutdown grace period; releasing it");
            return (Outcome::Released, LeaseEnd::Release);
        }
        tracing::info!("task arrived after the shutdown grace period; failing it");
        let err = TaskError::new(
            error_names::SHUTTING_DOWN,
            "the worker was shutting down when this task arrived",
        );
        let settled = deliver(
            &mut keep,
            &token,
            verdict::Report::Failure(err),
            Outcome::ShuttingDown,
        )
        .await;
        keep.finish().await;
        return settled;
    }

    let lease_deadline = lease.as_ref().and_then(|l| l.hard_deadline());
    let timeout_at = binding.timeout.map(|t| Instant::now() + t);
    let deadline = earliest(timeout_at, lease_deadline);
    let ctx = TaskContext::new(
        fingerprint,
        binding.source.clone(),
        binding.name.clone(),
        deadline,
        trace,
    );
    let handler = binding.handler.clone();
    let handler_ctx = ctx.clone();
    let mut join =
        tokio::spawn(async move { handler.call(input, handler_ctx).await }.in_current_span());

    let mut abandon_at: Option<Instant> = None;
    // Why the worker cancelled the task. Kept here, not read back from the
    // context: a handler may cancel its own context, and that must never
    // make the worker skip reporting.
    let mut reason: Option<CancelReason> = None;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);

    let ending = loop {
        tokio::select! {
            biased;
            result = &mut join => break Ending::Finished(result),
            _ = env.shutdown.abandoning().cancelled() => break Ending::Abandoned,
            _ = sleep_until(abandon_at.unwrap_or(far)), if abandon_at.is_some() => break Ending::Abandoned,
            _ = env.shutdown.cancelling().cancelled(), if reason.is_none() => {
                tracing::info!("shutdown grace period over; cancelling the handler");
                reason = Some(CancelReason::Shutdown);
                ctx.cancel(CancelReason::Shutdown);
                abandon_at = Some(Instant::now() + env.cancel_grace);
            }
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && reason.is_none() => {
                tracing::warn!(timeout_secs = binding.timeout.map(|t| t.as_secs()), "handler timed out; cancelling it");
                reason = Some(CancelReason::Timeout);
                ctx.cancel(CancelReason::Timeout);
                abandon_at = Some(Instant::now() + env.cancel_grace);
            }
            // Heartbeats and renewals go on whatever the reason: a handler
            // winding down after a cancellation is still running.
            _code = keep.until_closed() => {
                if reason.is_none() {
                    reason = Some(CancelReason::TaskClosed);
                    ctx.cancel(CancelReason::TaskClosed);
                    abandon_at = Some(Instant::now() + env.cancel_grace);
                }
            }
            _ = ctx.heartbeat_requested() => keep.request_heartbeat(),
        }
    };
    if let Ending::Abandoned = ending {
        join.abort();
    }

    let lease_expired = reason == Some(CancelReason::Timeout)
        && timeout_at.is_none_or(|t| lease_deadline.is_some_and(|l| l < t));
    let settled = match verdict(binding, env, reason, ending, releases, lease_expired) {
        Ok((report, outcome)) => deliver(&mut keep, &token, report, outcome).await,
        Err(settled) => settled,
    };
    // The renewal stops before the lease ends.
    keep.finish().await;
    settled
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
