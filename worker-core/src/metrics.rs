//! Every metric the worker emits: names, labels, descriptions, in one place.
//!
//! Names carry the `sfn_worker_` prefix; counters end in `_total`, durations
//! in `_seconds`. Labels have few values: `source` (`activity`, `sqs`), `binding`
//! (the configured binding names), `outcome`, `result`, `operation`, `code`
//! (AWS error codes). The worker records through the `metrics` facade; the
//! binary installs the Prometheus exporter and calls [`describe`].

use std::sync::{Mutex, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, Label, SharedString, Unit, counter, describe_counter,
    describe_gauge, describe_histogram, gauge, histogram,
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
/// The pace the worker keeps for an AWS operation after the service
/// throttled it, in calls per second (0: not paced). Labels: operation.
pub const CALL_RATE_LIMIT: &str = "sfn_worker_call_rate_limit";
/// SQS messages no task could be made of. Labels: source, binding, reason
/// (`body_not_json`, `token_missing`, `token_not_string`, `token_invalid`,
/// `input_missing`, `callback_id_invalid`).
pub const MALFORMED_MESSAGES: &str = "sfn_worker_malformed_messages_total";
/// SQS deliveries of a token already running here (no second handler). Labels: source, binding.
pub const DUPLICATE_MESSAGES: &str = "sfn_worker_duplicate_messages_total";
/// SQS said none of a task's receipts is held any more (its visibility
/// lapsed; it may run on another worker too). Labels: source, binding.
pub const LEASES_LOST: &str = "sfn_worker_leases_lost_total";
/// Reports whose retry was answered "task closed" after an earlier attempt
/// got no answer: most likely that attempt was applied, so the task is
/// counted as reported. Labels: source, binding.
pub const REPORTS_AMBIGUOUS: &str = "sfn_worker_reports_ambiguous_total";
/// 1 while the worker is ready (pollers running, not draining); 0 from the
/// start, so a worker stuck in its start-up checks shows as not ready.
pub const READY: &str = "sfn_worker_ready";
/// Tasks running over the worker's slots (the smaller of
/// `worker.max_concurrency` and the sum of the bindings' concurrency), 0 to
/// 1: what to scale on (HPA through a Prometheus adapter, KEDA's Prometheus
/// scaler), since activities have no queue depth. Running tasks, not slots
/// taken: idle pollers hold a slot while they wait.
pub const SATURATION: &str = "sfn_worker_saturation";
/// Tasks running over the binding's concurrency, 0 to 1. Labels: source, binding.
pub const BINDING_SATURATION: &str = "sfn_worker_binding_saturation";

/// Task-ledger claims, by result (see [`LedgerClaim`]): won, taken over,
/// duplicates not run, and runs without the ledger. Labels: source,
/// binding, result.
pub const LEDGER_CLAIMS: &str = "sfn_worker_ledger_claims_total";
/// Task-ledger calls that failed after their retries. Labels: source,
/// binding, step (`claim`, `renew`, `settle`, `release`).
pub const LEDGER_ERRORS: &str = "sfn_worker_ledger_errors_total";
/// Claims of this worker found taken over by another (its lease ended
/// while the handler ran: renewals failed too long). Labels: source, binding.
pub const LEDGER_CLAIMS_LOST: &str = "sfn_worker_ledger_claims_lost_total";
/// One task-ledger call, answered or not. Labels: operation.
pub const LEDGER_CALL_DURATION: &str = "sfn_worker_ledger_call_duration_seconds";

/// Bucket bounds for [`TASK_DURATION`], in seconds: tasks range from
/// milliseconds (in-process handlers) to hours (human approval steps).
pub const TASK_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Bucket bounds for [`LEDGER_CALL_DURATION`], in seconds: DynamoDB answers
/// in milliseconds; a call times out after 5 s.
pub const LEDGER_CALL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How a task ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The message's visibility lapsed (SQS no longer knew the receipt) and
    /// heartbeats failed too: the handler was cancelled and nothing reported;
    /// the message runs again (possibly already on another worker).
    LeaseLost,
    /// The task ledger says the task is another worker's or done: the
    /// handler was not run (a done task's stored outcome was sent again).
    Duplicate,
    /// The task ledger could not be reached and the binding is
    /// `fail_closed`: the handler was not run; the message comes back later
    /// (an activity task is failed with `Worker.LedgerUnavailable`).
    LedgerUnavailable,
}

impl Outcome {
    /// Every outcome, in declaration order (the discriminants index it).
    pub const ALL: [Outcome; 9] = [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::ShuttingDown,
        Outcome::ReportFailed,
        Outcome::Released,
        Outcome::LeaseLost,
        Outcome::Duplicate,
        Outcome::LedgerUnavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::ReportFailed => "report_failed",
            Outcome::Released => "released",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Duplicate => "duplicate",
            Outcome::LedgerUnavailable => "ledger_unavailable",
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
    describe_gauge!(
        CALL_RATE_LIMIT,
        "Calls per second the worker paces an AWS operation to after throttling (0: not paced)."
    );
    describe_gauge!(
        SATURATION,
        "Tasks running over the worker's slots (0 to 1): what to autoscale on."
    );
    describe_gauge!(
        BINDING_SATURATION,
        "Tasks running over the binding's concurrency (0 to 1)."
    );
    describe_counter!(
        MALFORMED_MESSAGES,
        "SQS messages no task could be made of, by reason."
    );
    describe_counter!(
        DUPLICATE_MESSAGES,
        "SQS deliveries of a token already running here."
    );
    describe_counter!(
        LEASES_LOST,
        "Tasks whose SQS message's visibility lapsed while they ran."
    );
    describe_counter!(
        REPORTS_AMBIGUOUS,
        "Reports counted as sent whose answer was lost and whose retry found the task closed."
    );
    describe_counter!(LEDGER_CLAIMS, "Task-ledger claims, by result.");
    describe_counter!(
        LEDGER_ERRORS,
        "Task-ledger calls that failed after their retries, by step."
    );
    describe_counter!(
        LEDGER_CLAIMS_LOST,
        "Claims of this worker found taken over by another while the handler ran."
    );
    describe_histogram!(
        LEDGER_CALL_DURATION,
        Unit::Seconds,
        "One task-ledger call (DynamoDB), answered or not."
    );
}

/// What a task-ledger claim found: the `result` label of [`LEDGER_CLAIMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerClaim {
    /// Claimed: the handler runs here.
    Won,
    /// Claimed from a worker whose lease had ended: the handler runs here.
    TookOver,
    /// Another worker's claim is live: not run here.
    HeldElsewhere,
    /// Already settled: not run; the stored outcome was sent again.
    Completed,
    /// The ledger could not be reached; `fail_open`: run without it.
    RanWithout,
    /// The ledger could not be reached; `fail_closed`: not run.
    HeldBack,
}

impl LedgerClaim {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerClaim::Won => "won",
            LedgerClaim::TookOver => "took_over",
            LedgerClaim::HeldElsewhere => "held_elsewhere",
            LedgerClaim::Completed => "completed",
            LedgerClaim::RanWithout => "ran_without",
            LedgerClaim::HeldBack => "held_back",
        }
    }
}

/// What a poll got: the `result` label of [`POLLS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollResult {
    /// A task (or, for SQS, at least one message).
    Task,
    /// Nothing, after the long poll's wait.
    Empty,
    /// The call failed; it is retried.
    Error,
}

impl PollResult {
    /// Every result, in declaration order (the discriminants index it).
    pub const ALL: [PollResult; 3] = [PollResult::Task, PollResult::Empty, PollResult::Error];

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
#[non_exhaustive]
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
    /// Every result, in declaration order (the discriminants index it).
    pub const ALL: [HeartbeatResult; 5] = [
        HeartbeatResult::Ok,
        HeartbeatResult::TaskGone,
        HeartbeatResult::InvalidToken,
        HeartbeatResult::Throttled,
        HeartbeatResult::Error,
    ];

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

/// The labels every per-binding metric carries, and the binding's metric
/// handles.
///
/// Each handle is registered on first use and kept: looking a metric up by
/// name and labels hashes and compares the whole key in the recorder's
/// registry, several times per task. Registering on first use (not up
/// front) keeps the exposition as it was: a series appears once it has
/// happened.
#[derive(Debug, Clone)]
pub(crate) struct BindingLabels {
    pub source: &'static str,
    pub binding: std::sync::Arc<str>,
    handles: std::sync::Arc<Handles>,
}

/// A share of capacity in use, published as a gauge on every change.
///
/// The count and the gauge change under one lock: with separate atomic
/// updates, two tasks ending at once on two threads could publish their
/// values in the wrong order and leave a stale figure until the next task.
#[derive(Debug)]
pub(crate) struct Saturation {
    running: Mutex<usize>,
    capacity: usize,
    gauge: Gauge,
}

impl Saturation {
    /// The worker-wide figure ([`SATURATION`]).
    pub fn worker(capacity: usize) -> Self {
        Self::new(gauge!(SATURATION), capacity)
    }

    fn new(gauge: Gauge, capacity: usize) -> Self {
        gauge.set(0.0);
        Self {
            running: Mutex::new(0),
            capacity: capacity.max(1),
            gauge,
        }
    }

    pub fn started(&self) {
        self.change(|n| n + 1);
    }

    pub fn finished(&self) {
        self.change(|n| n.saturating_sub(1));
    }

    fn change(&self, f: impl FnOnce(usize) -> usize) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *running = f(*running);
        self.gauge.set(*running as f64 / self.capacity as f64);
    }
}

#[derive(Debug)]
struct Handles {
    /// Registered up front: 0 is a figure autoscalers need.
    saturation: Saturation,
    received: OnceLock<Counter>,
    in_flight: OnceLock<Gauge>,
    slots_available: OnceLock<Gauge>,
    duplicates: OnceLock<Counter>,
    /// By [`Outcome`], in declaration order.
    completed: [OnceLock<(Counter, Histogram)>; Outcome::ALL.len()],
    /// By [`PollResult`].
    polls: [OnceLock<Counter>; PollResult::ALL.len()],
    /// By [`HeartbeatResult`].
    heartbeats: [OnceLock<Counter>; HeartbeatResult::ALL.len()],
}

impl BindingLabels {
    /// The labels of a binding with `concurrency` slots.
    pub fn new(source: &'static str, binding: std::sync::Arc<str>, concurrency: usize) -> Self {
        let pairs = [
            Label::from_static_parts("source", source),
            Label::new("binding", SharedString::from(binding.clone())),
        ];
        // At 0 from the start, unlike the series that appear with their
        // first event: these are rare, and `increase()` cannot see the step
        // from no series to 1, so an alert would miss a pod's first one.
        counter!(LEASES_LOST, pairs.iter()).increment(0);
        counter!(REPORTS_AMBIGUOUS, pairs.iter()).increment(0);
        let handles = Handles {
            saturation: Saturation::new(gauge!(BINDING_SATURATION, pairs.iter()), concurrency),
            received: OnceLock::new(),
            in_flight: OnceLock::new(),
            slots_available: OnceLock::new(),
            duplicates: OnceLock::new(),
            completed: Default::default(),
            polls: Default::default(),
            heartbeats: Default::default(),
        };
        Self {
            source,
            binding,
            handles: std::sync::Arc::new(handles),
        }
    }

    fn pairs(&self) -> [Label; 2] {
        [
            Label::from_static_parts("source", self.source),
            Label::new("binding", SharedString::from(self.binding.clone())),
        ]
    }

    /// The binding's labels and one more.
    fn pairs_and(&self, name: &'static str, value: &'static str) -> [Label; 3] {
        let [s, b] = self.pairs();
        [s, b, Label::from_static_parts(name, value)]
    }

    pub fn task_received(&self) {
        self.handles
            .received
            .get_or_init(|| counter!(TASKS_RECEIVED, self.pairs().iter()))
            .increment(1);
    }

    pub fn task_completed(&self, outcome: Outcome, seconds: f64) {
        let (completed, duration) = self.handles.completed[outcome as usize].get_or_init(|| {
            let labels = self.pairs_and("outcome", outcome.as_str());
            (
                counter!(TASKS_COMPLETED, labels.iter()),
                histogram!(TASK_DURATION, labels.iter()),
            )
        });
        completed.increment(1);
        duration.record(seconds);
    }

    /// A task began running: [`TASKS_IN_FLIGHT`] and [`BINDING_SATURATION`].
    pub fn task_started(&self) {
        self.in_flight(1.0);
        self.handles.saturation.started();
    }

    /// A task ended.
    pub fn task_finished(&self) {
        self.in_flight(-1.0);
        self.handles.saturation.finished();
    }

    fn in_flight(&self, delta: f64) {
        self.handles
            .in_flight
            .get_or_init(|| gauge!(TASKS_IN_FLIGHT, self.pairs().iter()))
            .increment(delta);
    }

    pub fn slots_available(&self, n: usize) {
        self.handles
            .slots_available
            .get_or_init(|| gauge!(SLOTS_AVAILABLE, self.pairs().iter()))
            .set(n as f64);
    }

    pub fn poll(&self, result: PollResult) {
        self.handles.polls[result as usize]
            .get_or_init(|| counter!(POLLS, self.pairs_and("result", result.as_str()).iter()))
            .increment(1);
    }

    /// Rare, so not cached: `reason` has more values than are worth a slot each.
    pub fn malformed_message(&self, reason: &'static str) {
        counter!(MALFORMED_MESSAGES, self.pairs_and("reason", reason).iter()).increment(1);
    }

    pub fn duplicate_message(&self) {
        self.handles
            .duplicates
            .get_or_init(|| counter!(DUPLICATE_MESSAGES, self.pairs().iter()))
            .increment(1);
    }

    /// Rare: not cached.
    pub fn lease_lost(&self) {
        counter!(LEASES_LOST, self.pairs().iter()).increment(1);
    }

    /// Rare: not cached.
    pub fn report_ambiguous(&self) {
        counter!(REPORTS_AMBIGUOUS, self.pairs().iter()).increment(1);
    }

    pub fn heartbeat(&self, result: HeartbeatResult) {
        self.handles.heartbeats[result as usize]
            .get_or_init(|| counter!(HEARTBEATS, self.pairs_and("result", result.as_str()).iter()))
            .increment(1);
    }
}

impl BindingLabels {
    /// A task-ledger claim's result.
    pub fn ledger_claim(&self, result: LedgerClaim) {
        counter!(
            LEDGER_CLAIMS,
            self.pairs_and("result", result.as_str()).iter()
        )
        .increment(1);
    }

    /// A task-ledger step failed after its retries.
    pub fn ledger_error(&self, step: &'static str) {
        counter!(LEDGER_ERRORS, self.pairs_and("step", step).iter()).increment(1);
    }

    /// This worker's claim was found taken over by another.
    pub fn ledger_claim_lost(&self) {
        counter!(LEDGER_CLAIMS_LOST, self.pairs().iter()).increment(1);
    }

    /// Publish the binding's ledger series at 0 (a binding with the ledger
    /// on), so an alert sees a pod's first error.
    pub fn ledger_on(&self) {
        for step in ["claim", "renew", "settle", "release"] {
            counter!(LEDGER_ERRORS, self.pairs_and("step", step).iter()).increment(0);
        }
        for result in [
            LedgerClaim::RanWithout,
            LedgerClaim::HeldBack,
            LedgerClaim::TookOver,
        ] {
            counter!(
                LEDGER_CLAIMS,
                self.pairs_and("result", result.as_str()).iter()
            )
            .increment(0);
        }
        counter!(LEDGER_CLAIMS_LOST, self.pairs().iter()).increment(0);
    }
}

pub(crate) fn ledger_call(operation: crate::aws::Operation, seconds: f64) {
    histogram!(LEDGER_CALL_DURATION, "operation" => operation.name()).record(seconds);
}

pub(crate) fn global_slots_available(n: usize) {
    gauge!(GLOBAL_SLOTS_AVAILABLE).set(n as f64);
}

pub(crate) fn api_error(operation: crate::aws::Operation, code: &str) {
    counter!(API_ERRORS, "operation" => operation.name(), "code" => code.to_owned()).increment(1);
}

pub(crate) fn call_rate_limit(operation: crate::aws::Operation, limit: Option<f64>) {
    gauge!(CALL_RATE_LIMIT, "operation" => operation.name()).set(limit.unwrap_or(0.0));
}

pub(crate) fn ready(is_ready: bool) {
    gauge!(READY).set(if is_ready { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_enums_are_indexed_by_their_discriminants() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
        for (i, r) in PollResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in HeartbeatResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    /// The cached handles land on the series their labels name, one per
    /// label value, and a series appears only once it has happened.
    #[test]
    fn cached_handles_record_each_label_value_on_its_own_series() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let labels = BindingLabels::new("sqs", "orders".into(), 4);
            let copy = labels.clone();
            labels.task_completed(Outcome::Succeeded, 0.1);
            copy.task_completed(Outcome::Succeeded, 0.1);
            labels.task_completed(Outcome::Failed, 0.1);
            labels.poll(PollResult::Empty);
            labels.heartbeat(HeartbeatResult::Throttled);
            labels.heartbeat(HeartbeatResult::Throttled);
            labels.task_started();
            labels.task_started();
            labels.task_finished();
        });
        let text = handle.render();
        let value = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let ours = r#"source="sqs",binding="orders""#;
        assert_eq!(
            value(&format!(
                r#"{TASKS_COMPLETED}{{{ours},outcome="succeeded"}}"#
            )),
            "2"
        );
        assert_eq!(
            value(&format!(r#"{TASKS_COMPLETED}{{{ours},outcome="failed"}}"#)),
            "1"
        );
        assert_eq!(value(&format!(r#"{POLLS}{{{ours},result="empty"}}"#)), "1");
        assert_eq!(
            value(&format!(r#"{HEARTBEATS}{{{ours},result="throttled"}}"#)),
            "2"
        );
        assert_eq!(value(&format!(r#"{TASKS_IN_FLIGHT}{{{ours}}}"#)), "1");
        assert_eq!(value(&format!(r#"{BINDING_SATURATION}{{{ours}}}"#)), "0.25");
        assert!(!text.contains(r#"outcome="cancelled""#), "{text}");
        assert!(!text.contains(r#"result="task""#), "{text}");
    }
}
