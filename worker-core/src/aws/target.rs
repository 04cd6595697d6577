//! Where a task's result goes: the completion target, one seam for every
//! kind of task token.
//!
//! A task is completed with one of three calls: success (with the output),
//! failure (with an error name and a cause), and heartbeat. Step Functions
//! task tokens (activities and `waitForTaskToken` over SQS) go to
//! `SendTask*` ([`StepFunctions`]); Lambda durable-execution callback ids go
//! to `SendDurableExecutionCallback*` ([`super::lambda::DirectLambda`]). The
//! runner, its retries and its fallbacks only see this trait, so a further
//! target is one more implementation.

use std::sync::Arc;

use async_trait::async_trait;

use super::{ApiError, Operation, SfnApi};

/// The operations of a target, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetOperations {
    /// The success call.
    pub success: Operation,
    /// The failure call.
    pub failure: Operation,
    /// The heartbeat call.
    pub heartbeat: Operation,
}

impl TargetOperations {
    /// Step Functions task tokens.
    pub const STEP_FUNCTIONS: Self = Self {
        success: Operation::SendTaskSuccess,
        failure: Operation::SendTaskFailure,
        heartbeat: Operation::SendTaskHeartbeat,
    };
    /// Lambda durable-execution callbacks.
    pub const DURABLE_CALLBACK: Self = Self {
        success: Operation::SendDurableExecutionCallbackSuccess,
        failure: Operation::SendDurableExecutionCallbackFailure,
        heartbeat: Operation::SendDurableExecutionCallbackHeartbeat,
    };
}

/// Where task results go. Errors come classified ([`super::ApiErrorKind`]):
/// "the task is closed" is [`super::ApiErrorKind::TaskClosed`] whatever the
/// service calls it.
#[async_trait]
pub trait CompletionTarget: Send + Sync + 'static {
    /// The three operations, by name.
    fn operations(&self) -> TargetOperations;
    /// What the worker's IAM policy must allow, for the access-denied error.
    fn permissions(&self) -> &'static str;
    /// Report success with `output` (JSON text).
    async fn succeed(&self, token: &str, output: &str) -> Result<(), ApiError>;
    /// Report failure with an error name and a cause.
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), ApiError>;
    /// Keep the task alive.
    async fn heartbeat(&self, token: &str) -> Result<(), ApiError>;
}

/// Step Functions task tokens: `SendTaskSuccess`, `SendTaskFailure`,
/// `SendTaskHeartbeat` through an [`SfnApi`].
pub struct StepFunctions(pub Arc<dyn SfnApi>);

#[async_trait]
impl CompletionTarget for StepFunctions {
    fn operations(&self) -> TargetOperations {
        TargetOperations::STEP_FUNCTIONS
    }
    fn permissions(&self) -> &'static str {
        "states:SendTaskSuccess, states:SendTaskFailure and states:SendTaskHeartbeat on \"*\""
    }
    async fn succeed(&self, token: &str, output: &str) -> Result<(), ApiError> {
        self.0.send_task_success(token, output).await
    }
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        self.0.send_task_failure(token, error, cause).await
    }
    async fn heartbeat(&self, token: &str) -> Result<(), ApiError> {
        self.0.send_task_heartbeat(token).await
    }
}
