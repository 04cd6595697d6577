//! The worker's internal events: each notable thing that happens at a
//! failure site is one value whose `emit` writes its log line and records
//! its counters together (Vector's internal-events pattern), so a log line
//! never goes without its metric or the other way round, and the wording of
//! both lives here. Metric names and labels themselves are in
//! [`crate::metrics`].

use std::time::Duration;

use crate::aws::{ApiError, ApiErrorKind, Operation};
use crate::metrics::{self, BindingLabels, HeartbeatResult, PollResult};

/// Something that happened, ready to be logged and counted.
pub(crate) trait InternalEvent {
    /// Write the log line and record the counters.
    fn emit(self);
}

/// Failures in a row before a retried poll or report is logged at `warn`
/// rather than `debug`. A throttle or a 5xx that the next attempt gets
/// through is normal operation (each is counted in
/// `sfn_worker_api_errors_total`, which the alerts watch); one that persists
/// is news, and so is a poll error that retrying cannot heal (access
/// denied, a missing queue), which warns at once. It also keeps a worker
/// under throttling from spending its CPU on a log line per refused call.
/// (A failed visibility extension still warns every time: a lease can lapse
/// within two or three failed attempts.)
pub(crate) const WARN_AFTER_FAILURES: u32 = 3;

/// A poll (`GetActivityTask`, `ReceiveMessage`) failed; it is retried.
pub(crate) struct PollFailed<'a> {
    pub labels: &'a BindingLabels,
    pub operation: Operation,
    pub error: &'a ApiError,
    pub retry_in: Duration,
    /// Failed polls in a row, this one included.
    pub failures: u32,
}

impl InternalEvent for PollFailed<'_> {
    fn emit(self) {
        self.labels.poll(PollResult::Error);
        metrics::api_error(self.operation, &self.error.code);
        let binding = &*self.labels.binding;
        let retry_in_ms = self.retry_in.as_millis() as u64;
        if self.error.kind == ApiErrorKind::ActivityDoesNotExist {
            tracing::error!(binding, code = %self.error.code, retry_in_ms,
                "activity does not exist (deleted?); retrying");
        } else if self.failures >= WARN_AFTER_FAILURES || !self.error.is_retryable() {
            tracing::warn!(binding, operation = self.operation.name(), code = %self.error.code,
                error = %self.error.message, retry_in_ms, failures = self.failures, "poll failed; retrying");
        } else {
            tracing::debug!(binding, operation = self.operation.name(), code = %self.error.code,
                error = %self.error.message, retry_in_ms, failures = self.failures, "poll failed; retrying");
        }
    }
}

/// A `SendTaskSuccess`/`SendTaskFailure` failed. `retry_in` is `Some` when it
/// is retried; otherwise the caller decides what the refusal means and says so.
pub(crate) struct ReportFailed<'a> {
    pub operation: Operation,
    pub error: &'a ApiError,
    pub retry_in: Option<Duration>,
    /// Failed attempts of this report in a row, this one included.
    pub failures: u32,
}

impl InternalEvent for ReportFailed<'_> {
    fn emit(self) {
        metrics::api_error(self.operation, &self.error.code);
        let Some(delay) = self.retry_in else { return };
        let retry_in_ms = delay.as_millis() as u64;
        if self.failures >= WARN_AFTER_FAILURES {
            tracing::warn!(operation = self.operation.name(), code = %self.error.code,
                error = %self.error.message, retry_in_ms, failures = self.failures,
                "report failed; retrying");
        } else {
            tracing::debug!(operation = self.operation.name(), code = %self.error.code,
                error = %self.error.message, retry_in_ms, failures = self.failures,
                "report failed; retrying");
        }
    }
}

/// What a `SendTaskHeartbeat` was answered, and what the worker makes of it.
pub(crate) struct HeartbeatAnswered<'a> {
    pub labels: &'a BindingLabels,
    /// The target's heartbeat call.
    pub operation: Operation,
    pub result: HeartbeatResult,
    /// The error, for every result but `Ok`.
    pub error: Option<&'a ApiError>,
    /// `InvalidToken` before any heartbeat was accepted is said once per task.
    pub first_of_its_kind: bool,
}

impl InternalEvent for HeartbeatAnswered<'_> {
    fn emit(self) {
        self.labels.heartbeat(self.result);
        let Some(e) = self.error else { return };
        metrics::api_error(self.operation, &e.code);
        match self.result {
            HeartbeatResult::Ok | HeartbeatResult::Throttled => {}
            HeartbeatResult::TaskGone => {
                tracing::info!(code = %e.code, "the service closed the task; cancelling the handler")
            }
            HeartbeatResult::InvalidToken if self.first_of_its_kind => tracing::info!(
                "heartbeat answered InvalidToken before any was accepted; carrying on \
                 (LocalStack's answer for a state without HeartbeatSeconds; on AWS a \
                 malformed token, which the report will find)"
            ),
            HeartbeatResult::InvalidToken => {}
            HeartbeatResult::Error if e.is_retryable() => {
                tracing::warn!(code = %e.code, error = %e.message, "heartbeat failed; retrying soon")
            }
            HeartbeatResult::Error => {
                tracing::warn!(code = %e.code, error = %e.message, "heartbeat refused")
            }
        }
    }
}

/// SQS said none of a task's receipts is held any more: the message's
/// visibility lapsed, and another worker may be running it.
pub(crate) struct LeaseLost<'a> {
    pub labels: &'a BindingLabels,
}

impl InternalEvent for LeaseLost<'_> {
    fn emit(self) {
        self.labels.lease_lost();
        tracing::warn!(
            "the message's visibility lapsed (SQS no longer knows this receipt); it may run on another \
             worker too. No more renewals; the task goes on while its heartbeats are accepted"
        );
    }
}

/// A batch call to SQS failed as a whole, or for one entry. Counted here;
/// the requester of the entry logs what it means for its message.
pub(crate) struct BatchCallFailed<'a> {
    pub operation: Operation,
    pub error: &'a ApiError,
}

impl InternalEvent for BatchCallFailed<'_> {
    fn emit(self) {
        metrics::api_error(self.operation, &self.error.code);
    }
}

/// An SQS message no task can be made of.
pub(crate) struct MalformedMessage<'a> {
    pub labels: &'a BindingLabels,
    pub message_id: &'a str,
    pub reason: &'static str,
    pub delete: bool,
}

impl InternalEvent for MalformedMessage<'_> {
    fn emit(self) {
        self.labels.malformed_message(self.reason);
        tracing::warn!(
            binding = &*self.labels.binding,
            message_id = self.message_id,
            reason = self.reason,
            action = if self.delete { "delete" } else { "leave" },
            "malformed message: no task can be made of it"
        );
    }
}

/// A delivery of a token this worker already runs (it joins the running
/// task) or already settled (it is deleted): no second handler either way.
pub(crate) struct DuplicateDelivery<'a> {
    pub labels: &'a BindingLabels,
    pub message_id: &'a str,
    pub token: &'a str,
    pub settled: bool,
}

impl InternalEvent for DuplicateDelivery<'_> {
    fn emit(self) {
        self.labels.duplicate_message();
        let token = crate::fingerprint(self.token);
        let binding = &*self.labels.binding;
        if self.settled {
            tracing::info!(binding, message_id = self.message_id, %token,
                "message already settled here; deleting this delivery without running the handler again");
        } else {
            tracing::info!(binding, message_id = self.message_id, %token,
                "token already running here; this delivery joins it instead of starting another handler");
        }
    }
}
