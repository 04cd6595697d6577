//! The Step Functions side of the seam: [`SfnApi`], the calls a worker makes
//! for activities and for every task's heartbeats and report.
//!
//! Three implementations: [`SdkSfn`] (the AWS SDK), [`DirectSfn`] (signed
//! requests on one keep-alive pool, the default for the per-task calls) and,
//! with feature `test-util`, the in-process `fake::FakeSfn`.

mod direct;
mod sdk;

#[cfg(any(test, feature = "test-util"))]
pub mod fake;

use async_trait::async_trait;

use super::ApiError;

pub use direct::{DirectClientError, DirectSfn};
pub use sdk::SdkSfn;

/// A task handed out by `GetActivityTask`.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivityTask {
    /// The task token (a credential: never log it, log its fingerprint).
    pub token: String,
    /// The task's input, JSON text.
    pub input: String,
}

impl ActivityTask {
    /// What a `GetActivityTask` answer means: no token (or an empty one)
    /// is a poll that ended without a task.
    pub(crate) fn from_poll(token: Option<String>, input: Option<String>) -> Option<Self> {
        match token {
            Some(token) if !token.is_empty() => Some(Self {
                token,
                // The service always sends JSON input; an emulator may not.
                input: input.unwrap_or_else(|| "{}".to_owned()),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ActivityTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityTask")
            .field("token", &crate::fingerprint(&self.token))
            .field("input_bytes", &self.input.len())
            .finish()
    }
}

/// The Step Functions calls a worker makes.
#[async_trait]
pub trait SfnApi: Send + Sync + 'static {
    /// One long poll. `Ok(None)` when the service had no task (after up to 60 s).
    /// Implementations must not retry this call after it was sent: a retried
    /// poll can lose the task the first one was assigned.
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError>;
    /// `SendTaskSuccess`.
    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError>;
    /// `SendTaskFailure`.
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError>;
    /// `SendTaskHeartbeat`.
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError>;
    /// `DescribeActivity`: does the activity exist? Used once at start-up.
    async fn describe_activity(&self, activity_arn: &str) -> Result<(), ApiError>;
}
