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
//! until shortly before they expire), requests are signed with `aws-sigv4`
//! (the SDK's signer) and sent over one keep-alive pool. Everything else
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

use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sfn::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::service_config::ServiceConfigKey;
use serde::{Deserialize, Serialize};

use super::{ActivityTask, SdkSfn, SfnApi};
use crate::aws::sdk_config::{CALL_TIMEOUT, CONNECT_TIMEOUT};
use crate::aws::{ApiError, ApiErrorKind, Operation};

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// `SendTask*` calls in flight at once. Tasks that start together heartbeat
/// together: 10,000 tasks taken in one second send 10,000 heartbeats in the
/// same second ten seconds later. Without a bound each would open its own
/// connection (tens of MiB of buffers, and a burst of new TLS sessions at
/// AWS); with it they queue for a moment on a few warm connections. Polls are
/// not counted: they are few (`pollers`) and each holds its connection for
/// up to a minute.
const MAX_CALLS_IN_FLIGHT: usize = 64;
/// Error bodies are kept up to this size in messages.
const MAX_ERROR_BODY: usize = 512;

/// Why the direct client could not be built; the worker says so and stops.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectClientError(String);

/// [`SfnApi`] that signs and sends the per-task calls itself. See the module
/// documentation for why.
pub struct DirectSfn {
    http: reqwest::Client,
    endpoint: String,
    /// `endpoint`, parsed once: reqwest would otherwise parse (and IDNA-map)
    /// the URL on every call.
    url: reqwest::Url,
    region: String,
    poll_timeout: Duration,
    credentials: Option<SharedCredentialsProvider>,
    identity: RwLock<Option<(Identity, Option<SystemTime>)>>,
    refresh: tokio::sync::Mutex<()>,
    /// The service's clock minus ours, in milliseconds, learned from the
    /// `Date` of an answer that said our request's time was off.
    skew_ms: AtomicI64,
    calls_in_flight: tokio::sync::Semaphore,
    /// For the calls that are not per task.
    sdk: SdkSfn,
}

impl std::fmt::Debug for DirectSfn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSfn")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl DirectSfn {
    /// A client for the region, endpoint and credentials in `sdk`, which
    /// must have a region. `poll_timeout` must be at least 65 s.
    pub async fn new(sdk: &SdkConfig, poll_timeout: Duration) -> Result<Self, DirectClientError> {
        let region = sdk
            .region()
            .ok_or_else(|| DirectClientError("no AWS region".into()))?
            .to_string();
        let params = Params::builder()
            .region(region.clone())
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
            .set_endpoint(endpoint_url(sdk))
            .build()
            .map_err(|e| DirectClientError(format!("Step Functions endpoint parameters: {e}")))?;
        let endpoint = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| DirectClientError(format!("Step Functions endpoint for {region}: {e}")))?
            .url()
            .to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(MAX_CALLS_IN_FLIGHT)
            .user_agent(concat!("sfn-worker/", env!("CARGO_PKG_VERSION")))
            // Like the SDK's own clients: no proxy from the environment.
            .no_proxy()
            .build()
            .map_err(|e| DirectClientError(format!("HTTP client: {e}")))?;
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| DirectClientError(format!("Step Functions endpoint {endpoint}: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            url,
            region,
            poll_timeout,
            credentials: sdk.credentials_provider(),
            identity: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            skew_ms: AtomicI64::new(0),
            calls_in_flight: tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT),
            sdk: SdkSfn::new(sdk, poll_timeout),
        })
    }

    /// The resolved Step Functions endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Now, by the service's clock as far as we know it.
    fn now(&self) -> SystemTime {
        let skew = self.skew_ms.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if skew >= 0 {
            now + Duration::from_millis(skew.unsigned_abs())
        } else {
            now - Duration::from_millis(skew.unsigned_abs())
        }
    }

    /// The service refused our credentials or our clock: drop the cached
    /// credentials (the next call fetches them anew) and learn the skew from
    /// the answer's `Date`, if it has one.
    fn credentials_refused(&self, date: Option<&str>) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = None;
        let Some(server) = date.and_then(|d| httpdate::parse_http_date(d).ok()) else {
            return;
        };
        let skew_ms = match server.duration_since(SystemTime::now()) {
            Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
        };
        tracing::warn!(
            skew_ms,
            "the service refused the request's credentials or time; credentials dropped, signing clock corrected"
        );
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
    }

    fn cached_identity(&self) -> Option<Identity> {
        let guard = self.identity.read().unwrap_or_else(|e| e.into_inner());
        match &*guard {
            Some((identity, None)) => Some(identity.clone()),
            Some((identity, Some(expiry)))
                if SystemTime::now() + REFRESH_BEFORE_EXPIRY < *expiry =>
            {
                Some(identity.clone())
            }
            _ => None,
        }
    }

    async fn identity(&self) -> Result<Identity, ApiError> {
        if let Some(identity) = self.cached_identity() {
            return Ok(identity);
        }
        // One refresh at a time; the others wait for it and take its result.
        let _refreshing = self.refresh.lock().await;
        if let Some(identity) = self.cached_identity() {
            return Ok(identity);
        }
        let provider = self.credentials.as_ref().ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::Rejected,
                "NoCredentials",
                "no credentials provider is configured",
            )
        })?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            ApiError::new(
                ApiErrorKind::Transient,
                "CredentialsError",
                aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            )
        })?;
        let expiry = credentials.expiry();
        let identity = Identity::from(credentials);
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) =
            Some((identity.clone(), expiry));
        Ok(identity)
    }

    /// Sign and send one call; the response body of a 2xx, or the classified error.
    async fn call(
        &self,
        operation: Operation,
        body: Vec<u8>,
        call: Call,
    ) -> Result<bytes::Bytes, ApiError> {
        let (timeout, _permit) = match call {
            Call::Poll => (self.poll_timeout, None),
            // Never closed, so acquiring cannot fail.
            Call::Report => (CALL_TIMEOUT, self.calls_in_flight.acquire().await.ok()),
        };
        let identity = self.identity().await?;
        let signing_params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("states")
            .time(self.now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ApiError::new(ApiErrorKind::Rejected, "SigningError", e.to_string()))?
            .into();
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", operation.target()),
        ];
        let signable = SignableRequest::new(
            "POST",
            &self.endpoint,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .and_then(|r| sign(r, &signing_params))
        .map_err(|e| ApiError::new(ApiErrorKind::Rejected, "SigningError", e.to_string()))?;
        let (signed_headers, _) = signable.into_parts().0.into_parts();

        let mut request = self.http.post(self.url.clone()).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for header in &signed_headers {
            request = request.header(header.name(), header.value());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return response.bytes().await.map_err(transport_error);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (error_type, date) = (header("x-amzn-errortype"), header("date"));
        let body = response.bytes().await.map_err(transport_error)?;
        let err = service_error(status.as_u16(), error_type.as_deref(), &body);
        if err.kind == ApiErrorKind::Credentials {
            self.credentials_refused(date.as_deref());
        }
        Err(err)
    }
}

/// The endpoint URL the SDK's Step Functions client would use, in the same
/// order as `aws_sdk_sfn::config::Builder::from(&SdkConfig)`: one set on the
/// `SdkConfig` itself wins; then the service-specific one
/// (`AWS_ENDPOINT_URL_SFN`, or `endpoint_url` under `sfn` in the profile's
/// `services` section); then the loader's (`[aws] endpoint_url`,
/// `AWS_ENDPOINT_URL`, the profile's `endpoint_url`).
fn endpoint_url(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let service_specific = ServiceConfigKey::builder()
        .service_id("SFN")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()
        .and_then(|key| sdk.service_config()?.load_config(key));
    service_specific.or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// What kind of call, for its timeout and whether it counts against
/// [`MAX_CALLS_IN_FLIGHT`].
#[derive(Clone, Copy)]
enum Call {
    Poll,
    Report,
}

fn transport_error(e: reqwest::Error) -> ApiError {
    let code = if e.is_timeout() {
        "Timeout"
    } else {
        "DispatchFailure"
    };
    // reqwest's Display stops at the outermost error; the cause says why.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::new(ApiErrorKind::Transient, code, message)
}

/// An AWS JSON 1.0 error: the code from `__type` (or `x-amzn-errortype`),
/// without the namespace before `#` and anything after `:`.
pub(crate) fn service_error(status: u16, header: Option<&str>, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let raw = header
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|p| p.kind.clone()))
        .unwrap_or_else(|| format!("HTTP{status}"));
    let code = raw.rsplit('#').next().unwrap_or(&raw);
    let code = code.split(':').next().unwrap_or(code).to_owned();
    let message = parsed.and_then(|p| p.message).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(MAX_ERROR_BODY);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    });
    ApiError::new(ApiError::kind_for(&code, status), code, message)
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
