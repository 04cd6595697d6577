//! Requests signed with SigV4 ([`crate::aws::sigv4`]) and sent on one
//! keep-alive pool, without the SDK's per-request machinery: what the direct
//! clients (Step Functions' per-task calls, SQS, Lambda's durable-execution
//! callbacks) share.
//!
//! Credentials come from the SDK's provider chain and are cached until
//! shortly before they expire; an answer saying they expired or are not
//! recognized drops them, and an answer saying the request's time is off
//! corrects the signing clock by the answer's `Date`, as the SDK's
//! clock-skew interceptor does. Errors are classified by
//! [`ApiError::kind_for`], from the code in `x-amzn-errortype` or the
//! body's `__type`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use serde::Deserialize;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::aws::credentials::CredentialCache;
use crate::aws::sdk_config::CONNECT_TIMEOUT;
use crate::aws::sigv4::Signer;
use crate::aws::{ApiError, ApiErrorKind};

/// Error bodies are kept up to this size in messages.
const MAX_ERROR_BODY: usize = 512;
/// Calls in flight at once per client, not counting long polls. Tasks that
/// start together heartbeat together: 10,000 tasks taken in one second send
/// 10,000 heartbeats in the same second ten seconds later. Without a bound
/// each would open its own connection (tens of MiB of buffers, and a burst
/// of new TLS sessions at AWS); with it they queue for a moment on a few
/// warm connections, which the pool keeps as many of.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 64;

/// Whether a call takes one of the [`MAX_CALLS_IN_FLIGHT`] places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlight {
    /// Per-task calls: reports, heartbeats, batches.
    Bounded,
    /// Long polls (`GetActivityTask`, `ReceiveMessage`): few (one per
    /// poller), and each holds its connection for up to a minute.
    Unbounded,
}

/// Where a direct client's requests go: the URL (what is signed) and the
/// same as a request URI (what is sent), each parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    url: url::Url,
    uri: http::Uri,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        // The URL as it is sent is the URL that is signed.
        let uri = url
            .as_str()
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?;
        Ok(Self { url, uri })
    }
}

/// Why the direct client could not be built; the worker says so and stops.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectClientError(pub(crate) String);

/// A SigV4 signer for one service and region, and the pool its requests
/// go out on.
pub(crate) struct SignedHttp {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    region: String,
    signer: Signer,
    credentials: CredentialCache,
    /// The service's clock minus ours, in milliseconds, learned from the
    /// `Date` of an answer that said our request's time was off.
    skew_ms: AtomicI64,
    calls_in_flight: tokio::sync::Semaphore,
}

impl SignedHttp {
    /// A signer for `service` with the region and credentials of `sdk`
    /// (which must have a region).
    pub fn new(sdk: &SdkConfig, service: &'static str) -> Result<Self, DirectClientError> {
        let region = sdk
            .region()
            .ok_or_else(|| DirectClientError("no AWS region".into()))?
            .to_string();
        // Like the SDK's own HTTP client: rustls with the system's roots,
        // no proxy from the environment.
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| DirectClientError(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        // The timer lets the pool close idle connections on time, not only
        // when one is next taken (as reqwest did before this client).
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(MAX_CALLS_IN_FLIGHT)
            .build(tls);
        Ok(Self {
            http,
            signer: Signer::new(&region, service),
            region,
            credentials: CredentialCache::new(sdk.credentials_provider()),
            skew_ms: AtomicI64::new(0),
            calls_in_flight: tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT),
        })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
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
        self.credentials.drop_cached();
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

    /// Sign and send one POST to `url`; the body of a 2xx answer, or the
    /// classified error.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
        in_flight: InFlight,
    ) -> Result<Bytes, ApiError> {
        self.post_answer(endpoint, headers, body, timeout, in_flight)
            .await
            .map_err(|(e, _)| e)
    }

    /// [`SignedHttp::post`], keeping the body of an error answer (empty
    /// when there was no answer): DynamoDB puts the item that failed a
    /// condition there.
    pub async fn post_answer(
        &self,
        endpoint: &Endpoint,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
        in_flight: InFlight,
    ) -> Result<Bytes, (ApiError, Bytes)> {
        let no_body = |e: ApiError| (e, Bytes::new());
        // The timeout covers the whole call: waiting for one of the places
        // in flight and for credentials too. A caller with a deadline (a
        // lease about to lapse) is better off with a prompt Timeout and its
        // own next attempt than with a call stuck in a queue. Whether the
        // request went out matters to the caller (a report that never left
        // cannot have been carried out): the two phases time out with
        // different codes.
        let deadline = tokio::time::Instant::now() + timeout;
        let prepare = async {
            // Never closed, so acquiring cannot fail.
            let permit = match in_flight {
                InFlight::Bounded => self.calls_in_flight.acquire().await.ok(),
                InFlight::Unbounded => None,
            };
            let credentials = self.credentials.get().await?;
            Ok::<_, ApiError>((permit, credentials))
        };
        let (_permit, credentials) = tokio::time::timeout_at(deadline, prepare)
            .await
            .map_err(|_| {
                no_body(ApiError::new(
                    ApiErrorKind::Transient,
                    NOT_SENT,
                    format!(
                        "not sent within {} s (waiting for a place in flight or for credentials)",
                        timeout.as_secs_f64()
                    ),
                ))
            })?
            .map_err(no_body)?;
        let signature = self
            .signer
            .sign(&credentials, self.now(), &endpoint.url, headers, &body);
        let mut request = http::Request::post(endpoint.uri.clone())
            // As the SDKs send it: some servers want a length on every POST.
            .header(http::header::CONTENT_LENGTH, body.len())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("authorization", signature.authorization)
            .header("x-amz-date", signature.amz_date);
        if let Some(token) = signature.security_token {
            request = request.header("x-amz-security-token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| {
            no_body(ApiError::new(
                ApiErrorKind::Rejected,
                "RequestError",
                e.to_string(),
            ))
        })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    // No connection: the request never reached the service.
                    let mut err = transport_error(&e);
                    err.code = CONNECT_FAILED.to_owned();
                    err
                } else {
                    transport_error(&e)
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| transport_error(&e))?
                .to_bytes();
            Ok::<_, ApiError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| {
                no_body(ApiError::new(
                    ApiErrorKind::Transient,
                    "Timeout",
                    format!("no answer within {} s", timeout.as_secs_f64()),
                ))
            })?
            .map_err(no_body)?;
        if parts.status.is_success() {
            return Ok(body);
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        // SQS's JSON protocol names the query-compatible code there
        // (`AWS.SimpleQueueService.NonExistentQueue;Sender`), as the SDK reads it.
        let query_error = header("x-amzn-query-error")
            .and_then(|q| q.split(';').next())
            .filter(|code| !code.is_empty());
        let error_type = query_error.or_else(|| header("x-amzn-errortype"));
        let err = service_error(parts.status.as_u16(), error_type, &body);
        if err.kind == ApiErrorKind::Credentials {
            self.credentials_refused(header("date"));
        }
        Err((err, body))
    }
}

const USER_AGENT: &str = concat!("sfn-worker/", env!("CARGO_PKG_VERSION"));

/// The code of a call that timed out before its request went out.
pub(crate) const NOT_SENT: &str = "TimeoutBeforeSend";
/// The code of a call whose connection could not be made.
pub(crate) const CONNECT_FAILED: &str = "ConnectFailure";

/// A request that got no answer: the connection failed or broke, or (code
/// `Timeout`, as for a call's own timeout) could not be made in time.
fn transport_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    // Display stops at the outermost error; the causes say why.
    let mut message = e.to_string();
    let mut timed_out = false;
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        timed_out |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        source = s.source();
    }
    let code = if timed_out {
        "Timeout"
    } else {
        "DispatchFailure"
    };
    ApiError::new(ApiErrorKind::Transient, code, message)
}

/// An AWS JSON 1.0 or REST-JSON error: the code from `__type` (or `x-amzn-errortype`),
/// without the namespace before `#` and anything after `:`.
pub(crate) fn service_error(status: u16, header: Option<&str>, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        /// REST-JSON (Lambda): `User`/`Service` on AWS, where the code is in
        /// the header; the exception's name from the local runner.
        #[serde(rename = "Type")]
        rest_type: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let raw = header
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|p| p.kind.clone()))
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|p| p.rest_type.clone())
                .filter(|t| t != "User" && t != "Service")
        })
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

/// The endpoint URL the SDK's client for `service_id` (`SFN`, `SQS`,
/// `Lambda`) would be configured with, in the same order as
/// `<service>::config::Builder::from(&SdkConfig)`: one set on the
/// `SdkConfig` in code (`[aws] endpoint_url`) wins; then the
/// service-specific one (`AWS_ENDPOINT_URL_<SERVICE>`, or `endpoint_url`
/// under the service in the profile's `services` section); then the
/// loader's (`AWS_ENDPOINT_URL`, the profile's `endpoint_url`). `None`: the
/// service's regional endpoint.
pub(crate) fn configured_endpoint(sdk: &SdkConfig, service_id: &str) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_owned);
    }
    let service_specific = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()
        .and_then(|key| sdk.service_config()?.load_config(key));
    service_specific.or_else(|| sdk.endpoint_url().map(str::to_owned))
}
