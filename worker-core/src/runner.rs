//! One task's life: run the handler in its own tokio task (so a panic fails
//! only this task), heartbeat it, enforce its timeout and shutdown, decide
//! what to report, and report it.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Fuse, FusedFuture};
use tokio::task::JoinError;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::aws::{ActivityTask, ApiErrorKind};
use crate::completion::{Delivery, Report, Reporter};
use crate::error_names;
use crate::handler::{CancelReason, Handler, TaskContext, TaskError, TaskSource};
use crate::heartbeat::HeartbeatSchedule;
use crate::metrics::{BindingLabels, Outcome};
use crate::shutdown::ShutdownHandle;
use crate::slots::Slot;

/// What a binding's tasks share.
pub(crate) struct Binding {
    pub name: Arc<str>,
    pub kind: Arc<str>,
    pub source: TaskSource,
    pub handler: Arc<dyn Handler>,
    pub heartbeat: Option<Duration>,
    pub timeout: Option<Duration>,
    pub labels: BindingLabels,
}

/// What every task shares.
pub(crate) struct Env {
    pub reporter: Reporter,
    pub shutdown: ShutdownHandle,
    pub cancel_grace: Duration,
}

/// How the handler's run ended.
enum Ending {
    Finished(Result<Result<String, TaskError>, JoinError>),
    /// Dropped after cancellation because it did not return in time.
    Abandoned,
}

/// Run one task to its end; the slot is released when this returns.
pub(crate) async fn run_task(binding: Arc<Binding>, env: Arc<Env>, task: ActivityTask, slot: Slot) {
    let received = Instant::now();
    let fingerprint = crate::fingerprint(&task.token);
    let span = tracing::info_span!(
        "task",
        source = binding.labels.source,
        binding = %binding.name,
        handler = %binding.kind,
        token = %fingerprint,
    );
    async move {
        binding.labels.task_received();
        binding.labels.in_flight(1.0);
        tracing::debug!(input_bytes = task.input.len(), "task received");
        let outcome = execute(&binding, &env, task, fingerprint).await;
        binding.labels.in_flight(-1.0);
        let seconds = received.elapsed().as_secs_f64();
        binding.labels.task_completed(outcome, seconds);
        tracing::debug!(outcome = outcome.as_str(), seconds, "task ended");
        drop(slot);
    }
    .instrument(span)
    .await
}

async fn execute(binding: &Binding, env: &Env, task: ActivityTask, fingerprint: String) -> Outcome {
    let token = task.token;
    if env.shutdown.cancelling().is_cancelled() {
        // A poll that was in flight when shutdown began returned a task after
        // the grace period: fail it now so a Retry can run it elsewhere.
        tracing::info!("task arrived after the shutdown grace period; failing it");
        let err = TaskError::new(
            error_names::SHUTTING_DOWN,
            "the worker was shutting down when this task arrived",
        );
        return deliver(env, &token, Report::Failure(err), Outcome::ShuttingDown).await;
    }

    let deadline = binding.timeout.map(|t| Instant::now() + t);
    let ctx = TaskContext::new(
        fingerprint,
        binding.source.clone(),
        binding.name.clone(),
        deadline,
    );
    let handler = binding.handler.clone();
    let handler_ctx = ctx.clone();
    let mut join =
        tokio::spawn(async move { handler.call(task.input, handler_ctx).await }.in_current_span());

    let mut schedule = HeartbeatSchedule::new(binding.heartbeat, Instant::now());
    let mut heartbeat = std::pin::pin!(terminated_like(|| env.reporter.heartbeat(&token)));
    let mut abandon_at: Option<Instant> = None;
    // Why the worker cancelled the task. Kept here, not read back from the
    // context: a handler may cancel its own context, and that must never
    // make the worker skip reporting.
    let mut reason: Option<CancelReason> = None;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);

    let ending = loop {
        let heartbeat_due = schedule.due_at();
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
            result = &mut heartbeat, if !heartbeat.is_terminated() => match result {
                Ok(()) => binding.labels.heartbeat("ok"),
                Err(e) if e.kind == ApiErrorKind::TaskGone => {
                    binding.labels.heartbeat("task_gone");
                    tracing::info!(code = %e.code, "Step Functions closed the task; cancelling the handler");
                    schedule.stop();
                    reason = Some(CancelReason::TaskClosed);
                    ctx.cancel(CancelReason::TaskClosed);
                    abandon_at = Some(Instant::now() + env.cancel_grace);
                }
                Err(e) => {
                    let throttled = e.kind == ApiErrorKind::Throttled;
                    binding.labels.heartbeat(if throttled { "throttled" } else { "error" });
                    tracing::warn!(code = %e.code, error = %e.message, "heartbeat failed; retrying soon");
                    schedule.failed(Instant::now());
                }
            },
            _ = sleep_until(heartbeat_due.unwrap_or(far)), if heartbeat_due.is_some() && heartbeat.is_terminated() => {
                schedule.sent(Instant::now());
                heartbeat.set(env.reporter.heartbeat(&token).fuse());
            }
            _ = ctx.heartbeat_requested() => schedule.request(Instant::now()),
        }
    };
    if let Ending::Abandoned = ending {
        join.abort();
    }

    let report = match (reason, ending) {
        (Some(CancelReason::TaskClosed), _) => return Outcome::Cancelled,
        (Some(CancelReason::Timeout), _) => Report::Failure(TaskError::new(
            error_names::HANDLER_TIMEOUT,
            format!(
                "the handler ran longer than the binding's timeout_secs ({}) and was cancelled",
                binding.timeout.map_or(0, |t| t.as_secs())
            ),
        )),
        (_, Ending::Abandoned) => {
            shutting_down("the handler did not finish before the worker shut down")
        }
        (Some(_), Ending::Finished(Ok(Ok(output)))) | (None, Ending::Finished(Ok(Ok(output)))) => {
            success_or_too_large(output)
        }
        (Some(_), Ending::Finished(other)) => {
            // Cancelled for shutdown and the handler gave up: report the
            // shutdown (retryable elsewhere), keeping what the handler said.
            let said = match other {
                Ok(Err(e)) => e.to_string(),
                Err(e) => panic_message(e),
                Ok(Ok(_)) => String::new(),
            };
            shutting_down(&format!(
                "the worker shut down while the handler ran ({said})"
            ))
        }
        (None, Ending::Finished(Ok(Err(e)))) => Report::Failure(e),
        (None, Ending::Finished(Err(e))) => {
            let message = panic_message(e);
            tracing::error!(panic = %message, "handler panicked");
            Report::Failure(TaskError::new(
                error_names::HANDLER_PANICKED,
                format!("the handler panicked: {message}"),
            ))
        }
    };
    let outcome = match &report {
        Report::Success(_) => Outcome::Succeeded,
        Report::Failure(e) if e.error() == error_names::SHUTTING_DOWN => Outcome::ShuttingDown,
        Report::Failure(_) => Outcome::Failed,
    };
    deliver(env, &token, report, outcome).await
}

/// An empty slot for a future of the type `f` would return (names the
/// unnameable `async fn` type without calling it).
fn terminated_like<F: std::future::Future>(_f: impl FnOnce() -> F) -> Fuse<F> {
    Fuse::terminated()
}

fn shutting_down(cause: &str) -> Report {
    Report::Failure(TaskError::new(error_names::SHUTTING_DOWN, cause))
}

fn success_or_too_large(output: String) -> Report {
    if output.len() > error_names::MAX_OUTPUT_BYTES {
        Report::Failure(TaskError::new(
            error_names::OUTPUT_TOO_LARGE,
            format!(
                "the handler's output is {} bytes; Step Functions accepts at most {}. \
                 Return a reference (an S3 key, say) instead of the data",
                output.len(),
                error_names::MAX_OUTPUT_BYTES
            ),
        ))
    } else {
        Report::Success(output)
    }
}

fn panic_message(e: JoinError) -> String {
    if !e.is_panic() {
        return "the handler was aborted".to_owned();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

async fn deliver(env: &Env, token: &str, report: Report, outcome: Outcome) -> Outcome {
    match env.reporter.deliver(token, report).await {
        Delivery::Accepted(Report::Success(_)) => outcome,
        Delivery::Accepted(Report::Failure(e)) => {
            tracing::info!(error = e.error(), cause = e.cause(), "task failed");
            if outcome == Outcome::Succeeded {
                Outcome::Failed
            } else {
                outcome
            }
        }
        Delivery::TaskGone(code) => {
            tracing::info!(%code, "Step Functions had already closed the task; nothing reported");
            Outcome::Cancelled
        }
        Delivery::Undelivered(e) => {
            tracing::error!(code = %e.code, error = %e.message,
                "could not report the task; it will time out in Step Functions (its Retry/Catch on States.Timeout applies)");
            Outcome::ReportFailed
        }
    }
}
