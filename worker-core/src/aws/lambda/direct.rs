//! [`CompletionTarget`] for durable-execution callbacks, signed and sent
//! like the direct Step Functions client (`aws::signed`): three small REST
//! calls per task do not need the AWS SDK for Lambda (a large crate, and
//! its per-request machinery is the CPU cost the direct clients avoid).
//!
//! The endpoint: `[aws] lambda_endpoint_url` if set; otherwise the SDK's
//! order: the service-specific one (`AWS_ENDPOINT_URL_LAMBDA`, or
//! `endpoint_url` under `lambda` in the profile's `services` section); then
//! `[aws] endpoint_url`, `AWS_ENDPOINT_URL` or the profile's; then Lambda's
//! regional endpoint (`lambda-fips.` with FIPS, `.api.aws` with dual-stack,
//! `amazonaws.com.cn` in the China regions). In the other partitions (ISO,
//! European Sovereign Cloud) the worker asks for `lambda_endpoint_url`
//! rather than guess a host name.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde::Serialize;

use crate::aws::sdk_config::CALL_TIMEOUT;
use crate::aws::signed::{DirectClientError, Endpoint, InFlight, SignedHttp, configured_endpoint};
use crate::aws::{ApiError, CompletionTarget, TargetOperations};

/// Completes durable-execution callbacks on the Lambda API.
pub struct DirectLambda {
    signed: SignedHttp,
    /// Without a trailing slash.
    endpoint: String,
    timeout: Duration,
    /// Read `ResourceNotFoundException` as closed (AWS's local runner's
    /// answer for an expired callback) rather than as "not known here".
    not_found_is_closed: bool,
}

impl std::fmt::Debug for DirectLambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectLambda")
            .field("endpoint", &self.endpoint)
            .field("region", &self.signed.region())
            .finish_non_exhaustive()
    }
}

impl DirectLambda {
    /// A client for the region, endpoint and credentials in `sdk`, which
    /// must have a region; `endpoint_url` (`[aws] lambda_endpoint_url`), if
    /// given, wins over every other endpoint setting.
    pub fn new(sdk: &SdkConfig, endpoint_url: Option<&str>) -> Result<Self, DirectClientError> {
        let signed = SignedHttp::new(sdk, "lambda")?;
        let endpoint = match endpoint_url {
            Some(url) => url.to_owned(),
            None => endpoint(sdk, signed.region())?,
        };
        Endpoint::parse(&endpoint)
            .map_err(|e| DirectClientError(format!("Lambda endpoint {endpoint}: {e}")))?;
        Ok(Self {
            signed,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            timeout: CALL_TIMEOUT,
            not_found_is_closed: false,
        })
    }

    /// What `ResourceNotFoundException` means. By default it is
    /// [`crate::aws::ApiErrorKind::CallbackNotFound`]: the runner reads it as
    /// closed only for a callback Lambda knew before, since a worker pointed
    /// at the wrong region or account gets it for every callback. `true`
    /// reads it as closed always: AWS's local durable-execution runner
    /// answers it for an expired callback (`aws.lambda_callback_not_found =
    /// "closed"`).
    pub fn not_found_is_closed(mut self, closed: bool) -> Self {
        self.not_found_is_closed = closed;
        self
    }

    /// The resolved Lambda endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `action` (`succeed`, `fail`, `heartbeat`) on callback `id`.
    fn url(&self, id: &str, action: &str) -> String {
        format!(
            "{}/2025-12-01/durable-execution-callbacks/{}/{action}",
            self.endpoint,
            encode_segment(id)
        )
    }

    async fn call(
        &self,
        id: &str,
        action: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), ApiError> {
        let text = self.url(id, action);
        let url = Endpoint::parse(&text).map_err(|e| {
            ApiError::service(
                "InvalidParameterValueException",
                400,
                format!("callback id does not make a URL: {e}"),
            )
        })?;
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| ("content-type", c))
            .into_iter()
            .collect();
        match self
            .signed
            .post(&url, &headers, body, self.timeout, InFlight::Bounded)
            .await
        {
            Ok(_) => Ok(()),
            // No such callback here: gone (the local runner's answer for an
            // expired callback), or a worker pointed at the wrong region or
            // account. The runner decides which (it knows whether Lambda
            // ever accepted a call for this callback).
            Err(mut e) if e.code == "ResourceNotFoundException" => {
                e.kind = if self.not_found_is_closed {
                    crate::aws::ApiErrorKind::TaskClosed
                } else {
                    crate::aws::ApiErrorKind::CallbackNotFound
                };
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl CompletionTarget for DirectLambda {
    fn operations(&self) -> TargetOperations {
        TargetOperations::DURABLE_CALLBACK
    }

    fn permissions(&self) -> &'static str {
        "lambda:SendDurableExecutionCallbackSuccess, lambda:SendDurableExecutionCallbackFailure and \
         lambda:SendDurableExecutionCallbackHeartbeat on arn:aws:lambda:REGION:ACCOUNT:function:NAME:*"
    }

    async fn succeed(&self, id: &str, output: &str) -> Result<(), ApiError> {
        // The result is a blob: the handler's JSON output, as it is.
        self.call(
            id,
            "succeed",
            Some("application/octet-stream"),
            output.as_bytes().to_vec(),
        )
        .await
    }

    async fn fail(&self, id: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        // The fallback failure has neither (a KMS key refused them): send
        // an error object without them, not empty strings.
        #[derive(Serialize)]
        struct ErrorObject<'a> {
            #[serde(rename = "ErrorType", skip_serializing_if = "str::is_empty")]
            error_type: &'a str,
            #[serde(rename = "ErrorMessage", skip_serializing_if = "str::is_empty")]
            error_message: &'a str,
        }
        let body = serde_json::to_vec(&ErrorObject {
            error_type: error,
            error_message: cause,
        })
        .unwrap_or_default();
        self.call(id, "fail", Some("application/json"), body).await
    }

    async fn heartbeat(&self, id: &str) -> Result<(), ApiError> {
        self.call(id, "heartbeat", None, Vec::new()).await
    }
}

/// The endpoint the SDK's Lambda client would use (see the module docs).
fn endpoint(sdk: &SdkConfig, region: &str) -> Result<String, DirectClientError> {
    if let Some(url) = configured_endpoint(sdk, "Lambda") {
        return Ok(url);
    }
    if ["us-iso", "eu-iso", "eusc-"]
        .iter()
        .any(|p| region.starts_with(p))
    {
        return Err(DirectClientError(format!(
            "no default Lambda endpoint is known for {region}: set [aws] lambda_endpoint_url"
        )));
    }
    let fips = sdk.use_fips().unwrap_or(false);
    let dual_stack = sdk.use_dual_stack().unwrap_or(false);
    let host = if fips { "lambda-fips" } else { "lambda" };
    let suffix = match (region.starts_with("cn-"), dual_stack) {
        (true, true) => "api.amazonwebservices.com.cn",
        (true, false) => "amazonaws.com.cn",
        (false, true) => "api.aws",
        (false, false) => "amazonaws.com",
    };
    Ok(format!("https://{host}.{region}.{suffix}"))
}

/// Percent-encode a path segment: everything but RFC 3986's unreserved
/// characters (a callback id's `+`, `/` and `=` among them).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
