//! The error names the worker itself reports with `SendTaskFailure`.
//!
//! They are a contract: a state machine's `Retry` and `Catch` match on them.
//! Handlers choose their own names for their own failures.

/// The task input does not deserialize into the handler's input type; the
/// handler was not called. Retrying will not help: fix the producer.
pub const INVALID_INPUT: &str = "Worker.InvalidInput";
/// The handler's output could not be serialized to JSON.
pub const INVALID_OUTPUT: &str = "Worker.InvalidOutput";
/// The handler panicked. The worker kept running; the task failed.
pub const HANDLER_PANICKED: &str = "Worker.HandlerPanicked";
/// The handler's output was larger than Step Functions accepts (262,144 bytes).
pub const OUTPUT_TOO_LARGE: &str = "Worker.OutputTooLarge";
/// The handler ran past its binding's `timeout_secs`; it was cancelled.
pub const HANDLER_TIMEOUT: &str = "Worker.HandlerTimeout";
/// The worker was shutting down and the task could not finish here. Safe to
/// `Retry`: another worker will take it.
pub const SHUTTING_DOWN: &str = "Worker.ShuttingDown";
/// Step Functions rejected the handler's output (for example as invalid JSON);
/// the worker reported this failure instead so the execution does not hang.
pub const OUTPUT_REJECTED: &str = "Worker.OutputRejected";

/// A tower service or layer around the handler failed with an error that is
/// not a `TaskError` (a `tower::BoxError` of its own); the cause is its text.
pub const SERVICE_ERROR: &str = "Worker.ServiceError";

/// Step Functions answered a heartbeat that the task is closed (timed out,
/// stopped, or completed), the handler was cancelled and did not return in
/// time. Sent in case that answer was wrong (LocalStack answers
/// `InvalidToken` for tasks that are not closed); on AWS the report is
/// refused and nobody sees it.
pub const TASK_CLOSED: &str = "Worker.TaskClosed";

/// The binding uses the task ledger, the ledger could not be reached, and
/// the binding is `fail_closed`: the handler was not run. Sent for activity
/// tasks only (an SQS message is left to come back). Safe to `Retry`.
pub const LEDGER_UNAVAILABLE: &str = "Worker.LedgerUnavailable";

/// Every name above, for documentation and `sfn-worker handlers`.
pub const ALL: &[&str] = &[
    INVALID_INPUT,
    INVALID_OUTPUT,
    HANDLER_PANICKED,
    OUTPUT_TOO_LARGE,
    HANDLER_TIMEOUT,
    SHUTTING_DOWN,
    OUTPUT_REJECTED,
    TASK_CLOSED,
    SERVICE_ERROR,
    LEDGER_UNAVAILABLE,
];

/// Kept here for code written against earlier versions; the limit lives in
/// [`crate::limits`] with the others.
pub use crate::limits::MAX_OUTPUT_BYTES;
