//! What can go wrong starting and watching executions.

use std::time::Duration;

use super::{ExecutionArn, ExecutionStatus};
use crate::aws::{ApiError, Operation};

/// Why a [`super::Workflows`] call did not give its answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The name is not in `[workflows.state_machines]`.
    #[error("unknown workflow `{name}`; {}", known_names(.known))]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The names the configuration has.
        known: Vec<String>,
    },
    /// Not an execution ARN (checked before any call, or answered
    /// `InvalidArn` by Step Functions).
    #[error("invalid execution ARN {arn:?}: {reason}")]
    InvalidArn {
        /// What was given.
        arn: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Step Functions has no such execution (`ExecutionDoesNotExist`):
    /// a wrong account, region or name, or older than its 90-day retention.
    #[error("execution {arn} does not exist (check the account, region and name)")]
    ExecutionNotFound {
        /// The ARN asked about.
        arn: String,
    },
    /// The workflow's state machine does not exist (`StateMachineDoesNotExist`).
    #[error("workflow `{workflow}`: state machine {arn} does not exist")]
    StateMachineNotFound {
        /// The workflow's name.
        workflow: String,
        /// Its configured ARN.
        arn: String,
    },
    /// An execution of that name exists with different input, so starting
    /// it again is not the same request (`ExecutionAlreadyExists`).
    #[error(
        "execution {arn} already exists with different input; give another name, or none for a new one"
    )]
    ExecutionAlreadyExists {
        /// The existing execution.
        arn: ExecutionArn,
    },
    /// A request Step Functions would refuse: an execution name, the input,
    /// or a stop's error or cause (checked before the call, or refused by
    /// the service as `InvalidName`, `InvalidExecutionInput`, a validation
    /// error).
    #[error("{field}: {message}")]
    InvalidRequest {
        /// What was wrong: `name`, `input`, `error`, `cause`.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// `wait` gave up: the execution was still going when the time ran out.
    #[error("execution {arn} is still {status} after {:.1} s", .waited.as_secs_f64())]
    Timeout {
        /// The execution.
        arn: ExecutionArn,
        /// How long it was waited for.
        waited: Duration,
        /// Its status when `wait` gave up (`RUNNING`, `PENDING_REDRIVE`).
        status: ExecutionStatus,
    },
    /// `output` of an execution that ended without succeeding: it has no
    /// output, and never will.
    #[error("execution {arn} ended {status}{}", error_and_cause(.error, .cause))]
    Ended {
        /// The execution.
        arn: ExecutionArn,
        /// How it ended.
        status: ExecutionStatus,
        /// Its error, if Step Functions told one.
        error: Option<String>,
        /// Its cause, if Step Functions told one.
        cause: Option<String>,
    },
    /// The input did not serialize, or the output did not deserialize into
    /// the type asked for.
    #[error("execution {what}: {source}")]
    Json {
        /// `input`, or `output of ARN`.
        what: String,
        /// The serde error (with the path of what did not fit).
        source: serde_json::Error,
    },
    /// Any other refusal, or a call that still failed after
    /// `max_retries` retries (throttling, network, timeout, 5xx).
    #[error("{operation}: {source}")]
    Api {
        /// The call.
        operation: Operation,
        /// The last error, classified.
        source: ApiError,
    },
}

fn known_names(known: &[String]) -> String {
    if known.is_empty() {
        "the configuration has no [workflows.state_machines]".to_owned()
    } else {
        format!("[workflows.state_machines] has: {}", known.join(", "))
    }
}

fn error_and_cause(error: &Option<String>, cause: &Option<String>) -> String {
    match (error, cause) {
        (Some(e), Some(c)) => format!(": {e}: {c}"),
        (Some(e), None) => format!(": {e}"),
        (None, Some(c)) => format!(": {c}"),
        (None, None) => String::new(),
    }
}

impl WorkflowError {
    /// A failed call on `arn`, read: the codes that name a typed error
    /// become it, the rest stays an [`WorkflowError::Api`].
    pub(crate) fn from_api(operation: Operation, arn: &str, e: ApiError) -> Self {
        match e.code.as_str() {
            "ExecutionDoesNotExist" => Self::ExecutionNotFound {
                arn: arn.to_owned(),
            },
            "InvalidArn" => Self::InvalidArn {
                arn: arn.to_owned(),
                reason: e.message,
            },
            "InvalidName" => Self::InvalidRequest {
                field: "name",
                message: e.message,
            },
            "InvalidExecutionInput" => Self::InvalidRequest {
                field: "input",
                message: e.message,
            },
            _ => Self::Api {
                operation,
                source: e,
            },
        }
    }
}
