//! What to report for a task, given how its handler's run ended.

use tokio::task::JoinError;

use super::keepalive::KeepAlive;
use super::{Binding, Env};
use crate::completion::Delivery;
pub(crate) use crate::completion::Report;
use crate::error_names;
use crate::handler::{CancelReason, TaskError};
use crate::limits;
use crate::metrics::Outcome;
use crate::runner::lease::LeaseEnd;

/// How the handler's run ended.
pub(crate) enum Ending {
    Finished(Result<Result<String, TaskError>, JoinError>),
    /// Dropped after cancellation because it did not return in time.
    Abandoned,
}

/// The report to send and the outcome it stands for; or, when nothing is to
/// be reported, the outcome and how to end the lease right away.
///
/// Every task is reported unless it is given back at shutdown: even when a
/// heartbeat said the task is closed, the handler's result is sent, and only
/// the service's refusal of that report ends the task with nothing reported.
/// (LocalStack answers `InvalidToken` to tasks that are not closed, so a
/// heartbeat's word alone is not enough to leave an execution waiting.)
pub(crate) fn verdict(
    binding: &Binding,
    env: &Env,
    reason: Option<CancelReason>,
    ending: Ending,
    releases: bool,
    lease_expired: bool,
    token: &str,
) -> Result<(Report, Outcome), (Outcome, LeaseEnd)> {
    let report = match (reason, ending) {
        // The message lapsed and heartbeats fail: another worker may run it
        // now, so a failure from here would cut its run short. A success
        // that made it is still worth reporting (it may land first).
        (Some(CancelReason::LeaseLost), Ending::Finished(Ok(Ok(output)))) => {
            success_or_too_large(output)
        }
        (Some(CancelReason::LeaseLost), _) => {
            tracing::warn!(
                "the handler was cancelled after its message's lease was lost; nothing is reported, the message runs again"
            );
            // A delivery of the message may have joined meanwhile (it was
            // received here again): give that back rather than leave it
            // hidden. With no receipt held this sends nothing.
            return Err((Outcome::LeaseLost, LeaseEnd::Release));
        }
        (Some(CancelReason::Timeout), _) if lease_expired => Report::Failure(TaskError::new(
            error_names::HANDLER_TIMEOUT,
            "the handler ran so long that its SQS message could no longer be kept invisible \
             (12 hours from receipt); it was cancelled",
        )),
        (Some(CancelReason::Timeout), _) => Report::Failure(TaskError::new(
            error_names::HANDLER_TIMEOUT,
            format!(
                "the handler ran longer than the binding's timeout_secs ({}) and was cancelled",
                binding.timeout.map_or(0, |t| t.as_secs())
            ),
        )),
        (Some(CancelReason::TaskClosed), Ending::Abandoned) => Report::Failure(TaskError::new(
            error_names::TASK_CLOSED,
            format!(
                "the service answered a heartbeat that the task is closed, so the handler was \
                 cancelled; it did not return within cancel_grace_secs ({} s)",
                env.cancel_grace.as_secs()
            ),
        )),
        (_, Ending::Abandoned) if releases => {
            tracing::info!(
                "handler did not finish before shutdown; releasing the message for another worker"
            );
            return Err((Outcome::Released, LeaseEnd::Release));
        }
        (_, Ending::Abandoned) => {
            shutting_down("the handler did not finish before the worker shut down")
        }
        (_, Ending::Finished(Ok(Ok(output)))) => success_or_too_large(output),
        (Some(CancelReason::Shutdown), Ending::Finished(other)) => {
            // Cancelled for shutdown and the handler gave up: the shutdown is
            // the real cause (retryable elsewhere); keep what the handler said.
            if releases {
                tracing::info!(
                    "handler stopped for shutdown; releasing the message for another worker"
                );
                return Err((Outcome::Released, LeaseEnd::Release));
            }
            let said = match other {
                Ok(Err(e)) => e.to_string(),
                Err(e) => panic_message(e),
                Ok(Ok(_)) => String::new(),
            };
            shutting_down(&format!(
                "the worker shut down while the handler ran ({said})"
            ))
        }
        (_, Ending::Finished(Ok(Err(e)))) => Report::Failure(e),
        (_, Ending::Finished(Err(e))) => {
            let message = panic_message(e);
            tracing::error!(panic = %crate::redact(&message, token), "handler panicked");
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
    Ok((report, outcome))
}

/// Send the report, keeping the task alive while it is retried; the outcome
/// it ended with and how to end the lease.
///
/// Boxed: a future is as large as its largest await point, and a held task
/// spends its life in the runner's handler loop, so a report's state
/// (1.2 KB) inline would sit in every held task's allocation for nothing
/// (`-Zprint-type-sizes`: `run_and_report`'s future 1,720 bytes with it
/// inline, the handler loop 1,271 of them).
pub(crate) fn deliver<'a, 'k: 'a>(
    keep: &'a mut KeepAlive<'k>,
    token: &'a str,
    report: Report,
    outcome: Outcome,
) -> futures::future::BoxFuture<'a, (Outcome, LeaseEnd)> {
    Box::pin(send_report(keep, token, report, outcome))
}

async fn send_report(
    keep: &mut KeepAlive<'_>,
    token: &str,
    report: Report,
    outcome: Outcome,
) -> (Outcome, LeaseEnd) {
    if let Some(lease) = keep.lease() {
        lease.reporting();
    }
    let known_open = keep.known_open();
    let lease = keep.lease();
    let superseded = move || lease.is_some_and(|l| l.superseded());
    let delivery = {
        let reporter = keep.reporter();
        let sending = reporter.deliver(token, report, known_open, &superseded);
        tokio::pin!(sending);
        loop {
            tokio::select! {
                biased;
                delivery = &mut sending => break delivery,
                // An alarm changes nothing here: a heartbeat saying the
                // task is closed, the report will be answered the same way;
                // a lost lease, the report may still land first.
                _alarm = keep.until_closed() => {}
            }
        }
    };
    let reported = |report: &Report| match report {
        Report::Success(_) => outcome,
        Report::Failure(e) => {
            tracing::info!(error = e.error(), cause = e.cause(), "task failed");
            if outcome == Outcome::Succeeded {
                Outcome::Failed
            } else {
                outcome
            }
        }
    };
    match delivery {
        Delivery::Accepted(report) => (reported(&report), LeaseEnd::Settled),
        Delivery::AppliedEarlier(report) => {
            keep.labels().report_ambiguous();
            tracing::info!(
                "an attempt of the report got no answer and its retry found the task closed: \
                 that attempt most likely closed it; counted as reported"
            );
            (reported(&report), LeaseEnd::Settled)
        }
        Delivery::Closed(code) => {
            tracing::info!(%code, "the service had already closed the task; nothing reported");
            (Outcome::Cancelled, LeaseEnd::Settled)
        }
        Delivery::Undelivered { error, may_heal } => {
            // Shutdown stopped the retries: let another worker have the
            // message now rather than after its visibility timeout. A
            // refusal that may heal keeps it (it comes back after its
            // visibility timeout, and is tried again); one that cannot (the
            // service refuses the token itself) settles it, so the handler
            // does not run again and again for nothing.
            let end = if keep.reporter().gave_up() {
                LeaseEnd::Release
            } else if may_heal {
                LeaseEnd::Keep
            } else {
                LeaseEnd::Settled
            };
            tracing::error!(code = %error.code, error = %error.message, kept = (end != LeaseEnd::Settled),
                "could not report the task; a kept SQS message comes back and is retried, an activity task times out in Step Functions (Retry on States.Timeout)");
            (Outcome::ReportFailed, end)
        }
    }
}

fn shutting_down(cause: &str) -> Report {
    Report::Failure(TaskError::new(error_names::SHUTTING_DOWN, cause))
}

fn success_or_too_large(output: String) -> Report {
    if output.len() > limits::MAX_OUTPUT_BYTES {
        Report::Failure(TaskError::new(
            error_names::OUTPUT_TOO_LARGE,
            format!(
                "the handler's output is {} bytes; the service accepts at most {}. \
                 Return a reference (an S3 key, say) instead of the data",
                output.len(),
                limits::MAX_OUTPUT_BYTES
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
