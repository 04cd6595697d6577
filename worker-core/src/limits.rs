//! The AWS service limits the worker respects, each written once.
//!
//! They come from the API references (Step Functions `GetActivityTask`,
//! `SendTaskSuccess`, `SendTaskFailure`; SQS `ReceiveMessage`,
//! `ChangeMessageVisibility`, the batch calls). The error names the worker
//! reports live beside them, in [`crate::error_names`].

use std::time::Duration;

/// How long Step Functions holds a `GetActivityTask` open before it answers
/// with no task.
pub const POLL_HOLD: Duration = Duration::from_secs(60);
/// The shortest client timeout a `GetActivityTask` may have: the 60 s hold
/// plus the network (the API reference asks for at least 65 s).
pub const MIN_POLL_TIMEOUT_SECS: u64 = 65;
/// The longest `workerName` `GetActivityTask` accepts, in characters.
pub const MAX_WORKER_NAME_CHARS: usize = 80;

/// The longest task token `SendTaskSuccess`, `SendTaskFailure` and
/// `SendTaskHeartbeat` accept, in characters (the API reference's length
/// constraint, 1 to 2,048; older references said 1,024). A longer one is
/// refused with `ValidationException` on every call, so a message carrying
/// one can never be completed: it is malformed.
pub const MAX_TASK_TOKEN_CHARS: usize = 2048;

/// The largest `output` `SendTaskSuccess` accepts, in bytes of UTF-8.
pub const MAX_OUTPUT_BYTES: usize = 262_144;
/// The longest `error` `SendTaskFailure` accepts, in characters.
pub const MAX_ERROR_CHARS: usize = 256;
/// The longest `cause` `SendTaskFailure` accepts, in characters.
pub const MAX_CAUSE_CHARS: usize = 32_768;

/// The most entries one SQS batch call takes, and the most messages one
/// `ReceiveMessage` returns.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// The longest `WaitTimeSeconds` of a `ReceiveMessage`.
pub const MAX_RECEIVE_WAIT_SECS: i32 = 20;
/// SQS keeps a message invisible at most this long after it was received.
pub const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;

/// The longest name of a state machine or an execution, in characters
/// (`StartExecution`'s `name`).
pub const MAX_NAME_CHARS: usize = 80;
/// The largest execution `input` `StartExecution` accepts, in bytes of UTF-8.
pub const MAX_INPUT_BYTES: usize = 262_144;
