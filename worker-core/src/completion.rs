//! Reporting a task's result: `SendTaskSuccess` / `SendTaskFailure`, retried
//! until accepted or answered terminally, and `SendTaskHeartbeat`.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use crate::aws::{ApiError, ApiErrorKind, SfnApi};
use crate::error_names;
use crate::handler::TaskError;
use crate::metrics;
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
    /// The task was already over (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`).
    TaskGone(String),
    /// Not delivered: refused for good, or still failing when shutdown gave up.
    Undelivered(ApiError),
}

pub(crate) struct Reporter {
    api: Arc<dyn SfnApi>,
    gate: SendGate,
    /// Stop retrying (shutdown's last phase): one attempt, then give up.
    give_up: CancellationToken,
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Reporter {
    pub fn new(api: Arc<dyn SfnApi>, gate: SendGate, give_up: CancellationToken) -> Self {
        Self { api, gate, give_up }
    }

    /// Deliver a report, retrying throttling and transient errors with
    /// backoff and jitter. If the service refuses a success for good (for
    /// example its output), the task is failed with `Worker.OutputRejected`
    /// instead so the execution does not hang; if it refuses a failure, the
    /// failure is sent once more with empty `error` and `cause` (what still
    /// works when the worker may not use the execution's KMS key).
    pub async fn deliver(&self, token: &str, report: Report) -> Delivery {
        match self.send(token, &report).await {
            Err(e) if e.kind == ApiErrorKind::Rejected => {}
            Err(e) if e.kind == ApiErrorKind::TaskGone => return Delivery::TaskGone(e.code),
            Err(e) => return Delivery::Undelivered(e),
            Ok(()) => return Delivery::Accepted(report),
        }
        let fallback = match &report {
            Report::Success(_) => Report::Failure(TaskError::new(
                error_names::OUTPUT_REJECTED,
                "Step Functions refused the handler's output",
            )),
            Report::Failure(_) => Report::Failure(TaskError::new("", "")),
        };
        tracing::warn!(fallback = ?fallback, "report refused; sending a fallback failure");
        match self.send(token, &fallback).await {
            Ok(()) => Delivery::Accepted(fallback),
            Err(e) if e.kind == ApiErrorKind::TaskGone => Delivery::TaskGone(e.code),
            Err(e) => Delivery::Undelivered(e),
        }
    }

    async fn send(&self, token: &str, report: &Report) -> Result<(), ApiError> {
        let mut delays = backoff();
        let operation = match report {
            Report::Success(_) => "SendTaskSuccess",
            Report::Failure(_) => "SendTaskFailure",
        };
        loop {
            self.gate.report().await;
            let result = match report {
                Report::Success(output) => self.api.send_task_success(token, output).await,
                Report::Failure(e) => {
                    self.api
                        .send_task_failure(token, e.error(), e.cause())
                        .await
                }
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            metrics::api_error(operation, &err.code);
            if !err.is_retryable() || self.give_up.is_cancelled() {
                return Err(err);
            }
            if err.kind == ApiErrorKind::Throttled {
                self.gate.throttled_by_service();
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(10));
            tracing::warn!(operation, code = %err.code, error = %err.message, retry_in_ms = delay.as_millis() as u64, "report failed; retrying");
            let _waiting = self.gate.report_waiting();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.give_up.cancelled() => return Err(err),
            }
        }
    }

    /// One heartbeat attempt, after any waiting reports. The caller decides
    /// what a failure means; the next timer tick is the retry.
    pub async fn heartbeat(&self, token: &str) -> Result<(), ApiError> {
        self.gate.heartbeat().await;
        let result = self.api.send_task_heartbeat(token).await;
        if let Err(err) = &result {
            metrics::api_error("SendTaskHeartbeat", &err.code);
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
    use crate::aws::fake::{FakeSfn, Op, Report as Seen};

    fn reporter(fake: &FakeSfn) -> Reporter {
        Reporter::new(
            Arc::new(fake.clone()),
            SendGate::new(None),
            CancellationToken::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retries_throttling_and_5xx_until_accepted() {
        let fake = FakeSfn::new();
        fake.fail_next(
            Op::Success,
            ApiError::new(ApiErrorKind::Throttled, "ThrottlingException", ""),
        );
        fake.fail_next(
            Op::Success,
            ApiError::new(ApiErrorKind::Transient, "InternalFailure", ""),
        );
        fake.fail_next(
            Op::Success,
            ApiError::new(ApiErrorKind::Transient, "DispatchFailure", ""),
        );
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()))
            .await;
        assert!(matches!(d, Delivery::Accepted(Report::Success(_))), "{d:?}");
        assert_eq!(fake.reports().len(), 1);
    }

    #[tokio::test]
    async fn a_closed_task_is_not_retried() {
        for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
            let fake = FakeSfn::new();
            fake.close_task("t", code);
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()))
                .await;
            assert!(matches!(&d, Delivery::TaskGone(c) if c == code), "{d:?}");
        }
    }

    #[tokio::test]
    async fn refused_output_becomes_a_failure() {
        let fake = FakeSfn::new();
        fake.fail_next(
            Op::Success,
            ApiError::new(ApiErrorKind::Rejected, "InvalidOutput", "bad"),
        );
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()))
            .await;
        assert!(matches!(d, Delivery::Accepted(Report::Failure(_))));
        assert!(
            matches!(&fake.reports()[0], Seen::Failure { error, .. } if error == "Worker.OutputRejected")
        );
    }

    #[tokio::test]
    async fn refused_failure_is_resent_without_details() {
        let fake = FakeSfn::new();
        fake.fail_next(
            Op::Failure,
            ApiError::new(ApiErrorKind::Rejected, "KMSAccessDeniedException", ""),
        );
        let d = reporter(&fake)
            .deliver("t", Report::Failure(TaskError::new("A", "b")))
            .await;
        assert!(matches!(d, Delivery::Accepted(_)));
        assert!(
            matches!(&fake.reports()[0], Seen::Failure { error, cause, .. } if error.is_empty() && cause.is_empty())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_shutdown_says_so() {
        let fake = FakeSfn::new();
        for _ in 0..100 {
            fake.fail_next(
                Op::Success,
                ApiError::new(ApiErrorKind::Transient, "Timeout", ""),
            );
        }
        let give_up = CancellationToken::new();
        let r = Reporter::new(Arc::new(fake.clone()), SendGate::new(None), give_up.clone());
        let stop = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            give_up.cancel();
        };
        let (d, ()) = tokio::join!(r.deliver("t", Report::Success("1".into())), stop);
        assert!(matches!(d, Delivery::Undelivered(_)));
    }
}
