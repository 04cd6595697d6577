use std::time::Duration;

use super::{ActivityTask, SfnApi};
use crate::aws::ApiError;
use crate::aws::classify::classify;
use crate::aws::sdk_config::{CALL_TIMEOUT, client_policy};
use async_trait::async_trait;
use aws_config::SdkConfig;

/// [`SfnApi`] over the AWS SDK.
///
/// SDK retries are off for every call: the worker retries itself, knowing
/// which errors are worth it, and `GetActivityTask` must never be re-sent
/// after it reached the service (a re-sent poll can orphan the task the first
/// one was given). The poll gets its own client with a timeout above the 60 s
/// the service may hold it: the SDK has no default operation timeout.
#[derive(Debug, Clone)]
pub struct SdkSfn {
    poll: aws_sdk_sfn::Client,
    calls: aws_sdk_sfn::Client,
}

impl SdkSfn {
    /// Clients from a loaded configuration; `poll_timeout` must be at least 65 s.
    pub fn new(sdk: &SdkConfig, poll_timeout: Duration) -> Self {
        let client = |timeout: Duration| {
            let (retry, timeouts, stalled) = client_policy(timeout);
            let conf = aws_sdk_sfn::config::Builder::from(sdk)
                .retry_config(retry)
                .timeout_config(timeouts)
                .stalled_stream_protection(stalled)
                .build();
            aws_sdk_sfn::Client::from_conf(conf)
        };
        Self {
            poll: client(poll_timeout),
            calls: client(CALL_TIMEOUT),
        }
    }
}

#[async_trait]
impl SfnApi for SdkSfn {
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError> {
        let out = self
            .poll
            .get_activity_task()
            .activity_arn(activity_arn)
            .worker_name(worker_name)
            .send()
            .await
            .map_err(classify)?;
        Ok(ActivityTask::from_poll(out.task_token, out.input))
    }

    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError> {
        self.calls
            .send_task_success()
            .task_token(token)
            .output(output)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        self.calls
            .send_task_failure()
            .task_token(token)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError> {
        self.calls
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn describe_activity(&self, activity_arn: &str) -> Result<(), ApiError> {
        self.calls
            .describe_activity()
            .activity_arn(activity_arn)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }
}
