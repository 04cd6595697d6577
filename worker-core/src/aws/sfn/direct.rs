//! [`SfnApi`] for the hot path without the SDK's per-request machinery.
//!
//! The benchmark (BENCHMARKS.md) measured the AWS SDK for Rust at about
//! 170 µs of CPU per call against a local backend, while the bare requests
//! cost about 14 µs: per-request runtime-component merging, interceptors,
//! endpoint resolution and allocation churn, for calls that are a fixed JSON
//! body to a fixed URL. A worker holding 10,000 tasks sends 1,000 heartbeats
//! a second, so that difference is most of its CPU.
//!
//! This client sends the four calls a worker makes per task
//! (`GetActivityTask`, `SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`) itself: the endpoint is resolved once by the SDK's
//! own resolver, credentials come from the SDK's provider chain (cached
//! until shortly before they expire), requests are signed by
//! [`crate::aws::sigv4`] (checked against `aws-sigv4`, the SDK's signer) and
//! sent over one keep-alive pool. Everything else
//! (`DescribeActivity` at start-up, all of SQS) stays on the SDK. The SDK
//! client is still available (`[aws] sfn_client = "sdk"`).
//!
//! It follows the SDK's configuration where the SDK's own client would:
//! a service-specific endpoint (`AWS_ENDPOINT_URL_SFN`, or `endpoint_url`
//! in the profile's `services` section) wins over the global one unless the
//! endpoint was set in code (`[aws] endpoint_url`); an answer saying the
//! credentials expired or are not recognized drops the cached ones; and an
//! answer saying the request's time is off corrects the signing clock by the
//! answer's `Date`, as the SDK's clock-skew interceptor does.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sfn::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use serde::{Deserialize, Serialize};

use super::{ActivityTask, SdkSfn, SfnApi};
use crate::aws::sdk_config::CALL_TIMEOUT;
pub use crate::aws::signed::DirectClientError;
use crate::aws::signed::{Endpoint, InFlight, SignedHttp, configured_endpoint};
use crate::aws::{ApiError, ApiErrorKind, Operation};

/// [`SfnApi`] that signs and sends the per-task calls itself. See the module
/// documentation for why.
pub struct DirectSfn {
    signed: SignedHttp,
    endpoint: String,
    /// `endpoint`, parsed once: parsing (and IDNA-mapping) it per call
    /// showed in profiles.
    url: Endpoint,
    poll_timeout: Duration,
    /// For the calls that are not per task.
    sdk: SdkSfn,
}

impl std::fmt::Debug for DirectSfn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSfn")
            .field("endpoint", &self.endpoint)
            .field("region", &self.signed.region())
            .finish_non_exhaustive()
    }
}

impl DirectSfn {
    /// A client for the region, endpoint and credentials in `sdk`, which
    /// must have a region. `poll_timeout` must be at least 65 s.
    pub async fn new(sdk: &SdkConfig, poll_timeout: Duration) -> Result<Self, DirectClientError> {
        let signed = SignedHttp::new(sdk, "states")?;
        let region = signed.region().to_owned();
        let params = Params::builder()
            .region(region.clone())
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
            .set_endpoint(configured_endpoint(sdk, "SFN"))
            .build()
            .map_err(|e| DirectClientError(format!("Step Functions endpoint parameters: {e}")))?;
        let endpoint = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| DirectClientError(format!("Step Functions endpoint for {region}: {e}")))?
            .url()
            .to_owned();
        let url = Endpoint::parse(&endpoint)
            .map_err(|e| DirectClientError(format!("Step Functions endpoint {endpoint}: {e}")))?;
        Ok(Self {
            signed,
            endpoint,
            url,
            poll_timeout,
            sdk: SdkSfn::new(sdk, poll_timeout),
        })
    }

    /// The resolved Step Functions endpoint.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sign and send one call; the response body of a 2xx, or the classified error.
    async fn call(
        &self,
        operation: Operation,
        body: Vec<u8>,
        call: Call,
    ) -> Result<bytes::Bytes, ApiError> {
        let (timeout, in_flight) = match call {
            Call::Poll => (self.poll_timeout, InFlight::Unbounded),
            Call::Report => (CALL_TIMEOUT, InFlight::Bounded),
        };
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", operation.target()),
        ];
        self.signed
            .post(&self.url, &headers, body, timeout, in_flight)
            .await
    }
}

/// What kind of call, for its timeout and whether it takes a place in
/// flight ([`InFlight`]).
#[derive(Clone, Copy)]
enum Call {
    Poll,
    Report,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing structs of strings cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[async_trait]
impl SfnApi for DirectSfn {
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError> {
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "activityArn")]
            activity_arn: &'a str,
            #[serde(rename = "workerName")]
            worker_name: &'a str,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(rename = "taskToken")]
            token: Option<String>,
            input: Option<String>,
        }
        let body = json(&Request {
            activity_arn,
            worker_name,
        });
        let bytes = self
            .call(Operation::GetActivityTask, body, Call::Poll)
            .await?;
        let response: Response = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ApiErrorKind::Transient,
                "ResponseError",
                format!("GetActivityTask response: {e}"),
            )
        })?;
        Ok(ActivityTask::from_poll(response.token, response.input))
    }

    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError> {
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "taskToken")]
            token: &'a str,
            output: &'a str,
        }
        self.call(
            Operation::SendTaskSuccess,
            json(&Request { token, output }),
            Call::Report,
        )
        .await
        .map(drop)
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "taskToken")]
            token: &'a str,
            error: &'a str,
            cause: &'a str,
        }
        self.call(
            Operation::SendTaskFailure,
            json(&Request {
                token,
                error,
                cause,
            }),
            Call::Report,
        )
        .await
        .map(drop)
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError> {
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "taskToken")]
            token: &'a str,
        }
        self.call(
            Operation::SendTaskHeartbeat,
            json(&Request { token }),
            Call::Report,
        )
        .await
        .map(drop)
    }

    async fn describe_activity(&self, activity_arn: &str) -> Result<(), ApiError> {
        self.sdk.describe_activity(activity_arn).await
    }
}

#[cfg(test)]
mod tests;
