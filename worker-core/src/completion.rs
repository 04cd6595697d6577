//! Reporting a task's result to its [`CompletionTarget`] (Step Functions'
//! `SendTaskSuccess` / `SendTaskFailure`, or a durable execution's callback),
//! retried until accepted or answered terminally, and heartbeats.
//!
//! What each answer to a report means (the README's semantics table):
//! - accepted: done;
//! - `TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`: the service will
//!   take no report for this token; nothing more to do;
//! - throttling, 5xx, network, expired credentials, clock skew: retried with
//!   backoff and jitter until accepted (or shutdown gives up);
//! - the output itself refused (`InvalidOutput`, a validation error): the task
//!   is failed with `Worker.OutputRejected` instead, so it does not hang;
//! - the KMS key refused (`KmsAccessDeniedException`, ...): a failure with
//!   empty `error` and `cause`, which needs no key, goes instead;
//! - access denied, or a refusal the worker does not know: not delivered,
//!   logged as an error. Never turned into a failure: that would report a
//!   success as failed for a reason that has nothing to do with the task.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::{ApiError, ApiErrorKind, CompletionTarget, TargetOperations, retry};
use crate::error_names;
use crate::events::{InternalEvent, ReportFailed};
use crate::handler::TaskError;
use crate::send_gate::SendGate;

/// What to tell Step Functions about a task.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    Success(String),
    Failure(TaskError),
}

/// What became of a report.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Accepted: as sent, or (if the service refused the original) the
    /// fallback failure that replaced it.
    Accepted(Report),
    /// The service answered that the task takes no report any more
    /// (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`).
    Closed(String),
    /// Not delivered: refused for good, or still failing when shutdown gave up.
    Undelivered(ApiError),
}

pub(crate) struct Reporter {
    api: Arc<dyn CompletionTarget>,
    gate: SendGate,
    /// Stop retrying (shutdown's last phase): one attempt, then give up.
    give_up: CancellationToken,
}

/// What to send instead when the service refuses `report` with `err`, if
/// anything.
fn fallback(report: &Report, err: &ApiError) -> Option<Report> {
    match (err.kind, report) {
        (ApiErrorKind::InvalidPayload, Report::Success(_)) => {
            Some(Report::Failure(TaskError::new(
                error_names::OUTPUT_REJECTED,
                format!(
                    "the service refused the handler's output: {}: {}",
                    err.code, err.message
                ),
            )))
        }
        // A failure whose error or cause is refused, or any report the
        // execution's KMS key does not let this worker encrypt: a failure
        // with neither needs no key and no validation.
        (ApiErrorKind::InvalidPayload, Report::Failure(e))
        | (ApiErrorKind::KmsRefused, Report::Failure(e))
            if !(e.error().is_empty() && e.cause().is_empty()) =>
        {
            Some(Report::Failure(TaskError::new("", "")))
        }
        (ApiErrorKind::KmsRefused, Report::Success(_)) => {
            Some(Report::Failure(TaskError::new("", "")))
        }
        _ => None,
    }
}

impl Reporter {
    pub fn new(api: Arc<dyn CompletionTarget>, gate: SendGate, give_up: CancellationToken) -> Self {
        Self { api, gate, give_up }
    }

    /// The target's operations, for metrics and logs.
    pub fn operations(&self) -> TargetOperations {
        self.api.operations()
    }

    /// Whether shutdown told reports to stop retrying.
    pub fn gave_up(&self) -> bool {
        self.give_up.is_cancelled()
    }

    /// Deliver a report, retrying throttling, transient and credential errors
    /// with backoff and jitter; see the module documentation for what each
    /// refusal leads to.
    pub async fn deliver(&self, token: &str, report: Report) -> Delivery {
        let mut report = report;
        loop {
            let err = match self.send(token, &report).await {
                Ok(()) => return Delivery::Accepted(report),
                Err(e) => e,
            };
            match err.kind {
                ApiErrorKind::TaskClosed | ApiErrorKind::InvalidToken => {
                    return Delivery::Closed(err.code);
                }
                ApiErrorKind::AccessDenied => {
                    tracing::error!(code = %err.code, error = %err.message, needs = self.api.permissions(),
                        "ACCESS DENIED reporting the task: the worker's IAM policy must allow what `needs` says; the task is left undelivered");
                    return Delivery::Undelivered(err);
                }
                _ => {}
            }
            match fallback(&report, &err) {
                Some(next) => {
                    tracing::warn!(code = %err.code, error = %err.message, fallback = ?next,
                        "report refused; sending a fallback failure");
                    report = next;
                }
                None => {
                    if !err.is_retryable() {
                        tracing::error!(code = %err.code, error = %err.message,
                            "report refused for a reason the worker does not know; the task is left undelivered");
                    }
                    return Delivery::Undelivered(err);
                }
            }
        }
    }

    async fn send(&self, token: &str, report: &Report) -> Result<(), ApiError> {
        let mut delays = retry::report();
        let mut failures = 0u32;
        let operation = match report {
            Report::Success(_) => self.api.operations().success,
            Report::Failure(_) => self.api.operations().failure,
        };
        loop {
            self.gate.report().await;
            let result = match report {
                Report::Success(output) => self.api.succeed(token, output).await,
                Report::Failure(e) => self.api.fail(token, e.error(), e.cause()).await,
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            failures = failures.saturating_add(1);
            if !err.is_retryable() || self.give_up.is_cancelled() {
                ReportFailed {
                    operation,
                    error: &err,
                    retry_in: None,
                    failures,
                }
                .emit();
                return Err(err);
            }
            if err.kind == ApiErrorKind::Throttled {
                self.gate.throttled_by_service();
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(2));
            ReportFailed {
                operation,
                error: &err,
                retry_in: Some(delay),
                failures,
            }
            .emit();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.give_up.cancelled() => return Err(err),
            }
        }
    }

    /// One heartbeat attempt, after waiting reports (for at most
    /// `max_yield`). The caller decides what a failure means; the next timer
    /// tick is the retry.
    pub async fn heartbeat(&self, token: &str, max_yield: Duration) -> Result<(), ApiError> {
        self.gate.heartbeat(max_yield).await;
        let result = self.api.heartbeat(token).await;
        // Counted and logged by the caller, which knows what the answer means.
        if let Err(err) = &result {
            if err.kind == ApiErrorKind::Throttled {
                self.gate.throttled_by_service();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::fake::{FakeSfn, Report as Seen};
    use crate::aws::{Operation, StepFunctions};

    fn reporter(fake: &FakeSfn) -> Reporter {
        Reporter::new(
            Arc::new(StepFunctions(Arc::new(fake.clone()))),
            SendGate::new(None),
            CancellationToken::new(),
        )
    }

    fn refuse(code: &str) -> ApiError {
        ApiError::service(code, 400, "injected")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_throttling_5xx_credential_and_clock_errors_until_accepted() {
        let fake = FakeSfn::new();
        for code in [
            "ThrottlingException",
            "KmsThrottlingException",
            "ExpiredTokenException",
            "InvalidSignatureException",
            "RequestExpired",
            "UnrecognizedClientException",
        ] {
            fake.fail_next(Operation::SendTaskSuccess, refuse(code));
        }
        fake.fail_next(
            Operation::SendTaskSuccess,
            ApiError::service("InternalFailure", 500, "injected"),
        );
        fake.fail_next(
            Operation::SendTaskSuccess,
            ApiError::new(ApiErrorKind::Transient, "DispatchFailure", ""),
        );
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()))
            .await;
        assert!(matches!(d, Delivery::Accepted(Report::Success(_))), "{d:?}");
        assert!(
            matches!(&fake.reports()[..], [Seen::Success { output, .. }] if output == "1"),
            "the success itself arrives, not a failure: {:?}",
            fake.reports()
        );
    }

    #[tokio::test]
    async fn a_closed_task_is_not_retried() {
        for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
            let fake = FakeSfn::new();
            fake.close_task("t", code);
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()))
                .await;
            assert!(matches!(&d, Delivery::Closed(c) if c == code), "{d:?}");
            assert!(fake.reports().is_empty());
        }
    }

    #[tokio::test]
    async fn a_refused_output_becomes_output_rejected() {
        for code in ["InvalidOutput", "ValidationException"] {
            let fake = FakeSfn::new();
            fake.fail_next(Operation::SendTaskSuccess, refuse(code));
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()))
                .await;
            assert!(matches!(d, Delivery::Accepted(Report::Failure(_))), "{d:?}");
            assert!(
                matches!(&fake.reports()[0], Seen::Failure { error, cause, .. }
                    if error == "Worker.OutputRejected" && cause.contains(code)),
                "{:?}",
                fake.reports()
            );
        }
    }

    #[tokio::test]
    async fn a_kms_refusal_sends_an_empty_failure() {
        for report in [
            Report::Success("1".into()),
            Report::Failure(TaskError::new("A", "b")),
        ] {
            let fake = FakeSfn::new();
            let op = match report {
                Report::Success(_) => Operation::SendTaskSuccess,
                Report::Failure(_) => Operation::SendTaskFailure,
            };
            fake.fail_next(op, refuse("KmsAccessDeniedException"));
            let d = reporter(&fake).deliver("t", report).await;
            assert!(matches!(d, Delivery::Accepted(_)), "{d:?}");
            assert!(
                matches!(&fake.reports()[..], [Seen::Failure { error, cause, .. }] if error.is_empty() && cause.is_empty()),
                "{:?}",
                fake.reports()
            );
        }
    }

    #[tokio::test]
    async fn access_denied_and_unknown_refusals_leave_the_task_undelivered() {
        for code in ["AccessDeniedException", "SomethingNew"] {
            let fake = FakeSfn::new();
            fake.fail_next(Operation::SendTaskSuccess, refuse(code));
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()))
                .await;
            assert!(
                matches!(&d, Delivery::Undelivered(e) if e.code == code),
                "{d:?}"
            );
            assert!(
                fake.reports().is_empty(),
                "{code}: a success must not be turned into a failure: {:?}",
                fake.reports()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_shutdown_says_so() {
        let fake = FakeSfn::new();
        for _ in 0..100 {
            fake.fail_next(
                Operation::SendTaskSuccess,
                ApiError::new(ApiErrorKind::Transient, "Timeout", ""),
            );
        }
        let give_up = CancellationToken::new();
        let r = Reporter::new(
            Arc::new(StepFunctions(Arc::new(fake.clone()))),
            SendGate::new(None),
            give_up.clone(),
        );
        let stop = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            give_up.cancel();
        };
        let (d, ()) = tokio::join!(r.deliver("t", Report::Success("1".into())), stop);
        assert!(matches!(d, Delivery::Undelivered(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_backing_off_after_a_5xx_does_not_hold_heartbeats() {
        let fake = FakeSfn::new();
        for _ in 0..20 {
            fake.fail_next(
                Operation::SendTaskSuccess,
                ApiError::service("InternalFailure", 500, "injected"),
            );
        }
        let r = Arc::new(reporter(&fake));
        let r2 = r.clone();
        let report =
            tokio::spawn(async move { r2.deliver("t", Report::Success("1".into())).await });
        // Let the report fail a few times and sleep in its backoff.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!report.is_finished());
        let start = tokio::time::Instant::now();
        r.heartbeat("other", Duration::from_secs(60))
            .await
            .expect("heartbeat");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the heartbeat went at once"
        );
        assert!(matches!(report.await.unwrap(), Delivery::Accepted(_)));
    }
}
