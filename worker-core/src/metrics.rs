//! Every metric the worker emits: names, labels, descriptions, in one place.
//!
//! Names carry the `sfn_worker_` prefix; counters end in `_total`, durations
//! in `_seconds`. Labels have few values: `source` (`activity`, `sqs`), `binding`
//! (the configured binding names), `outcome`, `result`, `operation`, `code`
//! (AWS error codes). The worker records through the `metrics` facade; the
//! binary installs the Prometheus exporter and calls [`describe`].

use metrics::{
    Label, SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

/// Tasks handed to this worker. Labels: source, binding.
pub const TASKS_RECEIVED: &str = "sfn_worker_tasks_received_total";
/// Tasks ended. Labels: source, binding, outcome (see [`Outcome`]).
pub const TASKS_COMPLETED: &str = "sfn_worker_tasks_completed_total";
/// From receipt to the end of reporting. Labels: source, binding, outcome.
pub const TASK_DURATION: &str = "sfn_worker_task_duration_seconds";
/// Tasks running now. Labels: source, binding.
pub const TASKS_IN_FLIGHT: &str = "sfn_worker_tasks_in_flight";
/// Free slots of a binding. Labels: source, binding.
pub const SLOTS_AVAILABLE: &str = "sfn_worker_slots_available";
/// Free slots under `worker.max_concurrency`.
pub const GLOBAL_SLOTS_AVAILABLE: &str = "sfn_worker_global_slots_available";
/// Polls answered. Labels: source, binding, result (see [`PollResult`]).
pub const POLLS: &str = "sfn_worker_polls_total";
/// Heartbeats sent. Labels: source, binding, result (see [`HeartbeatResult`]).
pub const HEARTBEATS: &str = "sfn_worker_heartbeats_total";
/// Failed AWS calls. Labels: operation, code.
pub const API_ERRORS: &str = "sfn_worker_api_errors_total";
/// SQS messages no task could be made of. Labels: source, binding, reason
/// (`body_not_json`, `token_missing`, `token_not_string`, `input_missing`).
pub const MALFORMED_MESSAGES: &str = "sfn_worker_malformed_messages_total";
/// SQS deliveries of a token already running here (no second handler). Labels: source, binding.
pub const DUPLICATE_MESSAGES: &str = "sfn_worker_duplicate_messages_total";
/// 1 while the worker is ready (pollers running, not draining).
pub const READY: &str = "sfn_worker_ready";

/// Bucket bounds for [`TASK_DURATION`], in seconds: tasks range from
/// milliseconds (in-process handlers) to hours (human approval steps).
pub const TASK_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// How a task ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `SendTaskSuccess` accepted.
    Succeeded,
    /// `SendTaskFailure` accepted, with the handler's or the worker's error.
    Failed,
    /// Step Functions closed the task (timed out, stopped, already done); nothing reported.
    Cancelled,
    /// Failed with `Worker.ShuttingDown`.
    ShuttingDown,
    /// The report could not be delivered (retries exhausted at shutdown, or refused).
    ReportFailed,
    /// An SQS message given back at shutdown (visibility 0) for another worker.
    Released,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::ReportFailed => "report_failed",
            Outcome::Released => "released",
        }
    }
}

/// Register descriptions and units with the installed recorder, so the
/// exposition has `# HELP` for every metric.
pub fn describe() {
    describe_counter!(TASKS_RECEIVED, "Tasks handed to this worker.");
    describe_counter!(TASKS_COMPLETED, "Tasks ended, by outcome.");
    describe_histogram!(
        TASK_DURATION,
        Unit::Seconds,
        "Time from receipt to the end of reporting."
    );
    describe_gauge!(TASKS_IN_FLIGHT, "Tasks running now.");
    describe_gauge!(SLOTS_AVAILABLE, "Free slots of a binding.");
    describe_gauge!(
        GLOBAL_SLOTS_AVAILABLE,
        "Free slots under worker.max_concurrency."
    );
    describe_counter!(POLLS, "Polls answered, by result.");
    describe_counter!(HEARTBEATS, "Heartbeats sent, by result.");
    describe_counter!(API_ERRORS, "Failed AWS calls, by operation and error code.");
    describe_gauge!(READY, "1 while the worker is ready to take tasks.");
    describe_counter!(
        MALFORMED_MESSAGES,
        "SQS messages no task could be made of, by reason."
    );
    describe_counter!(
        DUPLICATE_MESSAGES,
        "SQS deliveries of a token already running here."
    );
}

/// What a poll got: the `result` label of [`POLLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollResult {
    /// A task (or, for SQS, at least one message).
    Task,
    /// Nothing, after the long poll's wait.
    Empty,
    /// The call failed; it is retried.
    Error,
}

impl PollResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PollResult::Task => "task",
            PollResult::Empty => "empty",
            PollResult::Error => "error",
        }
    }
}

/// How a heartbeat was answered: the `result` label of [`HEARTBEATS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatResult {
    /// Accepted.
    Ok,
    /// The task is closed (`TaskTimedOut`, `TaskDoesNotExist`, or
    /// `InvalidToken` after an accepted heartbeat).
    TaskGone,
    /// `InvalidToken` before any heartbeat was accepted (LocalStack, for a
    /// state without `HeartbeatSeconds`): the task goes on.
    InvalidToken,
    /// Throttled; tried again soon.
    Throttled,
    /// Any other failure.
    Error,
}

impl HeartbeatResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatResult::Ok => "ok",
            HeartbeatResult::TaskGone => "task_gone",
            HeartbeatResult::InvalidToken => "invalid_token",
            HeartbeatResult::Throttled => "throttled",
            HeartbeatResult::Error => "error",
        }
    }
}

/// The labels every per-binding metric carries.
#[derive(Debug, Clone)]
pub(crate) struct BindingLabels {
    pub source: &'static str,
    pub binding: std::sync::Arc<str>,
}

impl BindingLabels {
    /// The binding's labels, without allocating: these are built for every
    /// metric call on the per-task path.
    fn pairs(&self) -> [Label; 2] {
        [
            Label::from_static_parts("source", self.source),
            Label::new("binding", SharedString::from(self.binding.clone())),
        ]
    }

    pub fn task_received(&self) {
        counter!(TASKS_RECEIVED, self.pairs().iter()).increment(1);
    }

    pub fn task_completed(&self, outcome: Outcome, seconds: f64) {
        let [s, b] = self.pairs();
        let labels = [s, b, Label::from_static_parts("outcome", outcome.as_str())];
        counter!(TASKS_COMPLETED, labels.iter()).increment(1);
        histogram!(TASK_DURATION, labels.iter()).record(seconds);
    }

    pub fn in_flight(&self, delta: f64) {
        gauge!(TASKS_IN_FLIGHT, self.pairs().iter()).increment(delta);
    }

    pub fn slots_available(&self, n: usize) {
        gauge!(SLOTS_AVAILABLE, self.pairs().iter()).set(n as f64);
    }

    pub fn poll(&self, result: PollResult) {
        let [s, b] = self.pairs();
        counter!(
            POLLS,
            [s, b, Label::from_static_parts("result", result.as_str())].iter()
        )
        .increment(1);
    }

    pub fn malformed_message(&self, reason: &'static str) {
        let [s, b] = self.pairs();
        counter!(
            MALFORMED_MESSAGES,
            [s, b, Label::from_static_parts("reason", reason)].iter()
        )
        .increment(1);
    }

    pub fn duplicate_message(&self) {
        counter!(DUPLICATE_MESSAGES, self.pairs().iter()).increment(1);
    }

    pub fn heartbeat(&self, result: HeartbeatResult) {
        let [s, b] = self.pairs();
        counter!(
            HEARTBEATS,
            [s, b, Label::from_static_parts("result", result.as_str())].iter()
        )
        .increment(1);
    }
}

pub(crate) fn global_slots_available(n: usize) {
    gauge!(GLOBAL_SLOTS_AVAILABLE).set(n as f64);
}

pub(crate) fn api_error(operation: crate::aws::Operation, code: &str) {
    counter!(API_ERRORS, "operation" => operation.name(), "code" => code.to_owned()).increment(1);
}

pub(crate) fn ready(is_ready: bool) {
    gauge!(READY).set(if is_ready { 1.0 } else { 0.0 });
}
