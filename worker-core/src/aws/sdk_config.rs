//! How every AWS SDK client of the worker is configured.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::AwsConfig;

/// Connecting should be quick; a slow connect is a network problem to retry.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One `SendTask*`, `DescribeActivity` or SQS batch call.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Load the AWS configuration: the standard chain (environment, profile, web
/// identity / IRSA, ECS task role, IMDS; `AWS_ENDPOINT_URL`), with the
/// `[aws]` section's overrides on top.
pub(crate) async fn load_sdk_config(aws: &AwsConfig) -> SdkConfig {
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

impl AwsConfig {
    /// The AWS SDK configuration this section describes: the standard chain
    /// (environment, profile, web identity / IRSA, ECS task role, IMDS;
    /// `AWS_ENDPOINT_URL`) with the section's overrides on top, as the worker
    /// loads it; for the workflows client or your own SDK clients.
    pub async fn sdk_config(&self) -> SdkConfig {
        load_sdk_config(self).await
    }
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
