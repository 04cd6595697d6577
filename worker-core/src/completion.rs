//! Reporting a task's result to its [`CompletionTarget`] (Step Functions'
//! `SendTaskSuccess` / `SendTaskFailure`, or a durable execution's callback),
//! retried until accepted or answered terminally, and heartbeats.
//!
//! What each answer to a report means (the README's semantics table):
//! - accepted: done;
//! - `TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`: the service will
//!   take no report for this token; nothing more to do. If an earlier
//!   attempt of the same report got no answer (a timeout, a reset, a 5xx),
//!   that attempt most likely closed the task: counted as sent;
//! - throttling, 5xx, network, expired credentials, clock skew: retried with
//!   backoff and jitter until accepted (or shutdown gives up);
//! - the output itself refused (`InvalidOutput`, a validation error): the task
//!   is failed with `Worker.OutputRejected` instead, so it does not hang;
//!   a failure refused for its contents or its KMS key: the same failure
//!   without `error` and `cause` goes instead;
//! - a success refused by the execution's KMS key: not delivered, and the
//!   task is kept (an SQS message comes back when the key is fixed); never
//!   turned into a failure without a name;
//! - Lambda's "no such callback" for a callback it never knew: not
//!   delivered, the message is kept and the worker reads not ready (likely
//!   the wrong region, account or endpoint);
//! - access denied, or a refusal the worker does not know: not delivered,
//!   logged as an error, the task kept for a later try. Never turned into
//!   a failure: that would report a success as failed for a reason that
//!   has nothing to do with the task;
//! - even the empty failure refused as invalid: the token itself is refused
//!   (no retry can heal that): not delivered, and the task is not kept, so
//!   its handler does not run again and again.
//!
//! Every error's message has the token taken out before anyone sees it:
//! AWS's validation messages quote the values they refuse.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::{ApiError, ApiErrorKind, CompletionTarget, TargetOperations, retry};
use crate::error_names;
use crate::events::{InternalEvent, ReportFailed};
use crate::handler::TaskError;
use crate::send_gate::SendGate;
use crate::worker::Health;

/// What to tell Step Functions about a task.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    Success(String),
    Failure(TaskError),
}

impl Report {
    /// The report with `token` taken out of a failure's error and cause.
    pub fn redacted(self, token: &str) -> Self {
        match self {
            Report::Failure(e) => Report::Failure(e.redacted(token)),
            success => success,
        }
    }
}

/// What became of a report.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Accepted: as sent, or (if the service refused the original) the
    /// fallback failure that replaced it.
    Accepted(Report),
    /// An attempt got no answer and a later one found the task closed: the
    /// first one most likely closed it. Counted as this report.
    AppliedEarlier(Report),
    /// The service answered that the task takes no report any more
    /// (`TaskTimedOut`, `TaskDoesNotExist`, `InvalidToken`).
    Closed(String),
    /// Not delivered: refused, or still failing when shutdown gave up.
    Undelivered {
        /// The last answer.
        error: ApiError,
        /// Whether the same report may be accepted later (a permission, a
        /// KMS key or an endpoint fixed, the service back), so the task is
        /// worth keeping; `false` when the service refuses the token itself.
        may_heal: bool,
    },
}

pub(crate) struct Reporter {
    api: Arc<dyn CompletionTarget>,
    gate: SendGate,
    /// Stop retrying (shutdown's last phase): one attempt, then give up.
    give_up: CancellationToken,
    /// Told when the target seems misdirected (durable callbacks).
    health: Option<Health>,
    /// When the target first accepted a call from this worker: it is where
    /// the worker's tasks are, so "no such task" there, to a call sent
    /// after that, means gone. (An answer to a call sent before says
    /// nothing: the worker may have been pointed elsewhere then.)
    reached_at: std::sync::OnceLock<Instant>,
    /// Reports answered (every task's): whether a failed report failed
    /// alone ([`retry::Retries`]). Heartbeats are not counted: AWS throttles
    /// them with a bucket of their own.
    answers: retry::Answers,
}

/// When an attempt's request left the worker (a heartbeat may first wait at
/// the send gate behind reports): set once, by the call.
pub(crate) type Sent = Arc<std::sync::OnceLock<Instant>>;

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
        // A success the KMS key refuses is not turned into a failure with
        // no name: the caller keeps the task for when the key is fixed.
        _ => None,
    }
}

impl Reporter {
    pub fn new(api: Arc<dyn CompletionTarget>, gate: SendGate, give_up: CancellationToken) -> Self {
        Self {
            api,
            gate,
            give_up,
            health: None,
            reached_at: std::sync::OnceLock::new(),
            answers: retry::Answers::default(),
        }
    }

    /// Tell `health` when the target does not know the tasks it is sent.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// The target's operations, for metrics and logs.
    pub fn operations(&self) -> TargetOperations {
        self.api.operations()
    }

    /// Whether the target had accepted a call from this worker by `sent`
    /// (so it was the right region, account and endpoint when a call sent
    /// then went out).
    pub fn reached_by(&self, sent: Instant) -> bool {
        self.reached_at.get().is_some_and(|at| *at <= sent)
    }

    /// Whether shutdown told reports to stop retrying.
    pub fn gave_up(&self) -> bool {
        self.give_up.is_cancelled()
    }

    /// The target accepted a call: whatever it refused before was not the
    /// worker's address.
    fn reached(&self) {
        let _ = self.reached_at.set(Instant::now());
        if let Some(h) = &self.health
            && h.is_misdirected()
        {
            h.set_misdirected(false);
        }
    }

    /// Deliver a report, retrying throttling, transient and credential errors
    /// with backoff and jitter; see the module documentation for what each
    /// refusal leads to. `known_open`: the service accepted a heartbeat of
    /// this task before (it knows the token).
    /// `superseded` says the service has moved on to a newer attempt with
    /// the same token (see [`crate::runner::lease::Lease::superseded`]): no
    /// more retries then.
    pub async fn deliver(
        &self,
        token: &str,
        report: Report,
        known_open: bool,
        superseded: &(dyn Fn() -> bool + Send + Sync),
    ) -> Delivery {
        let mut report = report;
        loop {
            let (err, maybe_applied, sent) = match self.send(token, &report, superseded).await {
                Ok(()) => {
                    self.reached();
                    return Delivery::Accepted(report);
                }
                Err(e) => e,
            };
            let closed = match err.kind {
                ApiErrorKind::TaskClosed | ApiErrorKind::InvalidToken => true,
                // The attempt is over (a newer one shares the token): retrying,
                // keeping the message for later or sending a fallback would
                // all land on the newer attempt.
                _ if superseded() => true,
                // Closed if Lambda knew this callback (a heartbeat of it was
                // accepted), or is where this worker's callbacks are (it
                // accepted a call for another one). Not `maybe_applied`: a
                // callback an earlier attempt completed answers
                // CallbackTimeoutException; "not found" after a 5xx says
                // nothing new about where the worker is pointed.
                ApiErrorKind::CallbackNotFound => known_open || self.reached_by(sent),
                _ => false,
            };
            if closed {
                return if maybe_applied {
                    Delivery::AppliedEarlier(report)
                } else {
                    Delivery::Closed(err.code)
                };
            }
            let may_heal = match (err.kind, &report) {
                (ApiErrorKind::AccessDenied, _) => {
                    tracing::error!(code = %err.code, error = %err.message, needs = self.api.permissions(),
                        "ACCESS DENIED reporting the task: the worker's IAM policy must allow what `needs` says; the task is left undelivered");
                    Some(true)
                }
                (ApiErrorKind::CallbackNotFound, _) => {
                    tracing::error!(code = %err.code, error = %err.message,
                        "Lambda does not know this callback and never did: is the worker pointed at the right region, account \
                         and endpoint? The message (the only copy of the callback id) is kept, and the worker reads not ready");
                    if let Some(h) = &self.health {
                        h.set_misdirected(true);
                    }
                    Some(true)
                }
                (ApiErrorKind::KmsRefused, Report::Success(_)) => {
                    tracing::error!(code = %err.code, error = %err.message,
                        "the execution's KMS key refuses this worker, so the success cannot be sent; the task is left \
                         undelivered (an SQS message comes back, and succeeds once the key or the worker's kms permissions are fixed; \
                         an activity task times out)");
                    Some(true)
                }
                _ => None,
            };
            if let Some(may_heal) = may_heal {
                return Delivery::Undelivered {
                    error: err,
                    may_heal,
                };
            }
            match fallback(&report, &err) {
                Some(next) => {
                    tracing::warn!(code = %err.code, error = %err.message, fallback = ?next,
                        "report refused; sending a fallback failure");
                    report = next;
                }
                None => {
                    // Even a failure without error and cause refused as
                    // invalid: the token is what the service refuses.
                    let may_heal = err.kind != ApiErrorKind::InvalidPayload;
                    if !may_heal {
                        tracing::error!(code = %err.code, error = %err.message,
                            "the service refuses this task's token itself; nothing can be reported for it, and it is not kept");
                    } else if !err.is_retryable() {
                        tracing::error!(code = %err.code, error = %err.message,
                            "report refused for a reason the worker does not know; the task is left undelivered");
                    }
                    return Delivery::Undelivered {
                        error: err,
                        may_heal,
                    };
                }
            }
        }
    }

    /// Send one report until accepted, refused, or given up; on failure, the
    /// last error and whether an earlier attempt may have been applied (it
    /// got no answer, or a 5xx: the service may have done it anyway).
    async fn send(
        &self,
        token: &str,
        report: &Report,
        superseded: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), (ApiError, bool, Instant)> {
        let mut delays = retry::Retries::new(retry::report());
        let mut failures = 0u32;
        let mut maybe_applied = false;
        let operation = match report {
            Report::Success(_) => self.api.operations().success,
            Report::Failure(_) => self.api.operations().failure,
        };
        loop {
            self.gate.report().await;
            let sent = Instant::now();
            let mark = self.answers.mark();
            let result = match report {
                Report::Success(output) => self.api.succeed(token, output).await,
                Report::Failure(e) => self.api.fail(token, e.error(), e.cause()).await,
            };
            let err = match result {
                Ok(()) => {
                    self.answers.accepted(1);
                    return Ok(());
                }
                Err(err) => err.redact(token),
            };
            failures = failures.saturating_add(1);
            // This attempt too may have been carried out (unless it never
            // left the worker).
            maybe_applied |= err.kind == ApiErrorKind::Transient && !err.never_sent();
            if !err.is_retryable() || self.give_up.is_cancelled() || superseded() {
                ReportFailed {
                    operation,
                    error: &err,
                    retry_in: None,
                    failures,
                }
                .emit();
                return Err((err, maybe_applied, sent));
            }
            let alone = self.answers.failed(mark, 0, 1);
            let delay = delays.next(alone).unwrap_or(Duration::from_secs(2));
            ReportFailed {
                operation,
                error: &err,
                retry_in: Some(delay),
                failures,
            }
            .emit();
            tokio::select! {
                biased;
                _ = self.give_up.cancelled() => return Err((err, maybe_applied, sent)),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One heartbeat attempt, after waiting reports (for at most
    /// `max_yield`). The caller decides what a failure means; the next timer
    /// tick is the retry.
    pub async fn heartbeat(
        &self,
        token: &str,
        max_yield: Duration,
        sent: Sent,
    ) -> Result<(), ApiError> {
        self.gate.heartbeat(max_yield).await;
        let _ = sent.set(Instant::now());
        let result = self.api.heartbeat(token).await;
        // Counted and logged by the caller, which knows what the answer means.
        match result {
            Ok(()) => {
                self.reached();
                Ok(())
            }
            Err(err) => Err(err.redact(token)),
        }
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
            .deliver("t", Report::Success("1".into()), false, &|| false)
            .await;
        assert!(matches!(d, Delivery::Accepted(Report::Success(_))), "{d:?}");
        assert!(
            matches!(&fake.reports()[..], [Seen::Success { output, .. }] if output == "1"),
            "the success itself arrives, not a failure: {:?}",
            fake.reports()
        );
    }

    /// Issue 23: AWS throttles each `SendTask*` API with its own bucket, so
    /// a throttled report does not hold the process's heartbeats back (it
    /// held every one for a second, half the interval under frequent
    /// throttles, and tokens timed out).
    #[tokio::test(start_paused = true)]
    async fn a_throttled_report_does_not_hold_heartbeats_back() {
        let fake = FakeSfn::new();
        fake.fail_next(Operation::SendTaskSuccess, refuse("ThrottlingException"));
        let r = reporter(&fake);
        let d = r
            .deliver("t", Report::Success("1".into()), false, &|| false)
            .await;
        assert!(matches!(d, Delivery::Accepted(_)), "{d:?}");
        let start = Instant::now();
        r.heartbeat("u", Duration::from_secs(60), Sent::default())
            .await
            .unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the heartbeat went at once"
        );
    }

    #[tokio::test]
    async fn a_closed_task_is_not_retried() {
        for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
            let fake = FakeSfn::new();
            fake.close_task("t", code);
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()), false, &|| false)
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
                .deliver("t", Report::Success("1".into()), false, &|| false)
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
    async fn a_kms_refusal_of_a_failure_sends_an_empty_failure() {
        let fake = FakeSfn::new();
        fake.fail_next(
            Operation::SendTaskFailure,
            refuse("KmsAccessDeniedException"),
        );
        let d = reporter(&fake)
            .deliver(
                "t",
                Report::Failure(TaskError::new("A", "b")),
                false,
                &|| false,
            )
            .await;
        assert!(matches!(d, Delivery::Accepted(_)), "{d:?}");
        assert!(
            matches!(&fake.reports()[..], [Seen::Failure { error, cause, .. }] if error.is_empty() && cause.is_empty()),
            "{:?}",
            fake.reports()
        );
    }

    /// Issue 21, item 9: a success the KMS key refuses is kept for when the
    /// key is fixed, never turned into a failure without a name.
    #[tokio::test]
    async fn a_kms_refusal_of_a_success_keeps_the_task_and_sends_no_failure() {
        for code in ["KmsAccessDeniedException", "KmsInvalidStateException"] {
            let fake = FakeSfn::new();
            fake.fail_next(Operation::SendTaskSuccess, refuse(code));
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()), false, &|| false)
                .await;
            assert!(
                matches!(&d, Delivery::Undelivered { error, may_heal: true } if error.code == code),
                "{d:?}"
            );
            assert!(fake.reports().is_empty(), "{:?}", fake.reports());
        }
    }

    /// Issue 21, item 7: when even the empty failure is refused as invalid,
    /// the token itself is refused; the task must not be kept to run again.
    #[tokio::test]
    async fn a_token_the_service_refuses_is_not_kept() {
        let fake = FakeSfn::new();
        fake.fail_next(Operation::SendTaskSuccess, refuse("ValidationException"));
        fake.fail_next(Operation::SendTaskFailure, refuse("ValidationException"));
        fake.fail_next(Operation::SendTaskFailure, refuse("ValidationException"));
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()), false, &|| false)
            .await;
        assert!(
            matches!(
                &d,
                Delivery::Undelivered {
                    may_heal: false,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    /// Issue 21, item 8: the retry of a report whose answer was lost is
    /// answered "closed": the first attempt most likely closed the task.
    #[tokio::test(start_paused = true)]
    async fn a_closed_answer_after_a_lost_one_counts_as_sent() {
        for lost in [
            ApiError::new(ApiErrorKind::Transient, "Timeout", "no answer"),
            ApiError::service("InternalFailure", 500, "oops"),
        ] {
            let fake = FakeSfn::new();
            fake.fail_next(Operation::SendTaskSuccess, lost);
            fake.fail_next(Operation::SendTaskSuccess, refuse("TaskTimedOut"));
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()), false, &|| false)
                .await;
            assert!(
                matches!(&d, Delivery::AppliedEarlier(Report::Success(_))),
                "{d:?}"
            );
        }
        // The controls: throttling is not applied, nor a call that never
        // left the worker, so "closed" is news.
        let fake = FakeSfn::new();
        fake.fail_next(
            Operation::SendTaskSuccess,
            ApiError::new(ApiErrorKind::Transient, "TimeoutBeforeSend", "no place"),
        );
        fake.fail_next(Operation::SendTaskSuccess, refuse("TaskTimedOut"));
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()), false, &|| false)
            .await;
        assert!(
            matches!(&d, Delivery::Closed(c) if c == "TaskTimedOut"),
            "{d:?}"
        );
        let fake = FakeSfn::new();
        fake.fail_next(Operation::SendTaskSuccess, refuse("ThrottlingException"));
        fake.fail_next(Operation::SendTaskSuccess, refuse("TaskTimedOut"));
        let d = reporter(&fake)
            .deliver("t", Report::Success("1".into()), false, &|| false)
            .await;
        assert!(
            matches!(&d, Delivery::Closed(c) if c == "TaskTimedOut"),
            "{d:?}"
        );
    }

    /// Issue 21, item 2: AWS's validation messages quote the values they
    /// refuse; the token must not reach the logs or a fallback's cause.
    #[tokio::test]
    async fn error_messages_lose_the_token() {
        let token = "AAAAKgAAAAIAAAAAAAAAAfSECRETtokenMATERIAL0123456789";
        let fake = FakeSfn::new();
        fake.fail_next(
            Operation::SendTaskSuccess,
            ApiError::service("InvalidOutput", 400, format!("output of {token} refused")),
        );
        let _ = reporter(&fake)
            .deliver(token, Report::Success("1".into()), false, &|| false)
            .await;
        let reports = fake.reports();
        let [Seen::Failure { cause, .. }] = &reports[..] else {
            panic!("{reports:?}")
        };
        assert!(
            cause.contains("refused") && !cause.contains(token),
            "{cause}"
        );
    }

    #[tokio::test]
    async fn access_denied_and_unknown_refusals_leave_the_task_undelivered() {
        for code in ["AccessDeniedException", "SomethingNew"] {
            let fake = FakeSfn::new();
            fake.fail_next(Operation::SendTaskSuccess, refuse(code));
            let d = reporter(&fake)
                .deliver("t", Report::Success("1".into()), false, &|| false)
                .await;
            assert!(
                matches!(&d, Delivery::Undelivered { error, may_heal: true } if error.code == code),
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
        let (d, ()) = tokio::join!(
            r.deliver("t", Report::Success("1".into()), false, &|| false),
            stop
        );
        assert!(matches!(d, Delivery::Undelivered { may_heal: true, .. }));
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
        let report = tokio::spawn(async move {
            r2.deliver("t", Report::Success("1".into()), false, &|| false)
                .await
        });
        // Let the report fail a few times and sleep in its backoff.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!report.is_finished());
        let start = tokio::time::Instant::now();
        r.heartbeat("other", Duration::from_secs(60), Sent::default())
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
