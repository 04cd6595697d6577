use std::time::Duration;

use super::classify::classify;
use super::{ActivityTask, ApiError, SfnApi};
use crate::config::AwsConfig;
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Connecting should be quick; a slow connect is a network problem to retry.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One `SendTask*`, `DescribeActivity` or SQS batch call.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Load the AWS configuration: the standard chain (environment, profile, web
/// identity / IRSA, ECS task role, IMDS; `AWS_ENDPOINT_URL`), with the
/// `[aws]` section's overrides on top.
pub async fn load_sdk_config(aws: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

/// How every AWS client of the worker is set up: no SDK retries (the worker
/// retries, knowing what each error means; a retried GetActivityTask can lose
/// a task), an explicit timeout per call (the SDK has none by default), and no
/// stalled-stream protection (a long poll legitimately sends nothing for 20 to
/// 60 s).
pub(crate) fn client_policy(
    timeout: Duration,
) -> (RetryConfig, TimeoutConfig, StalledStreamProtectionConfig) {
    (
        RetryConfig::disabled(),
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(timeout)
            .operation_attempt_timeout(timeout)
            .build(),
        StalledStreamProtectionConfig::disabled(),
    )
}

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
