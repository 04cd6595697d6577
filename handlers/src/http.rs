//! `http`: send the task input as JSON to an HTTP endpoint.
//!
//! - The task input is the request body (`Content-Type: application/json`).
//! - 2xx: a JSON body is the task output; an empty body is `{}`; anything
//!   else fails with `Http.InvalidResponse`.
//! - 4xx: `Http.ClientError`; 5xx: `Http.ServerError` (the cause holds the
//!   status and the first KiB of the body); other statuses: `Http.UnexpectedStatus`.
//! - No answer within `timeout_secs`: `Http.Timeout`; no connection:
//!   `Http.ConnectError`; a body over `max_response_bytes`: `Http.ResponseTooLarge`.
//! - Cancellation (task closed, timeout, shutdown) aborts the request.
//! - Header values can come from environment variables
//!   (`headers.Authorization = { env = "API_TOKEN" }`), so secrets stay out of
//!   the configuration file. They are read when the configuration is loaded.
//! - Redirects are followed (at most 10) only where that changes nothing the
//!   caller meant: 307/308 re-send the same method and body; 301/302/303 are
//!   followed for GET and HEAD only, since following them would turn a POST
//!   into a GET without its body (not followed: `Http.UnexpectedStatus`).
//! - And only where `redirects` allows: by default to the configured URL's
//!   origin only; never from https to http, never to a link-local or
//!   unspecified IP address (instance metadata). Not followed:
//!   `Http.RedirectRefused`. Secret headers (from `{ env = ... }`, and
//!   `Authorization`, `Proxy-Authorization`, `Cookie`) are never sent to
//!   another origin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue, LOCATION,
    PROXY_AUTHORIZATION,
};
use serde::Deserialize;
use sfn_worker_core::config::MAX_SECS;
use sfn_worker_core::handler::HandlerFuture;
use sfn_worker_core::{BuildError, Handler, HandlerFactory, TaskContext, TaskError};

pub use redirect::Redirects;

mod redirect;

/// 4xx answer.
pub const CLIENT_ERROR: &str = "Http.ClientError";
/// 5xx answer.
pub const SERVER_ERROR: &str = "Http.ServerError";
/// Neither 2xx, 4xx nor 5xx.
pub const UNEXPECTED_STATUS: &str = "Http.UnexpectedStatus";
/// No complete answer within `timeout_secs`.
pub const TIMEOUT: &str = "Http.Timeout";
/// The connection could not be made.
pub const CONNECT_ERROR: &str = "Http.ConnectError";
/// Any other transport failure.
pub const REQUEST_ERROR: &str = "Http.RequestError";
/// 2xx, but the body is not JSON.
pub const INVALID_RESPONSE: &str = "Http.InvalidResponse";
/// The body was larger than `max_response_bytes`.
pub const RESPONSE_TOO_LARGE: &str = "Http.ResponseTooLarge";
/// The task was cancelled while the request ran.
pub const CANCELLED: &str = "Http.Cancelled";
/// A redirect that `redirects` does not allow, or that is never followed
/// (https to http, a link-local address).
pub const REDIRECT_REFUSED: &str = "Http.RedirectRefused";

/// How much of an error answer's body goes into the cause.
const CAUSE_BODY_BYTES: usize = 1024;
/// The most redirects followed for one task.
const MAX_REDIRECTS: usize = 10;

/// The `http` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

/// `[activity.params]` / `[queue.params]` of `http`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// Where to send the request.
    pub url: String,
    /// The method. Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers: a value, or `{ env = "VARIABLE" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// Time for the whole exchange. Default 30.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The largest response body accepted. Default 1 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Which redirects are followed: `"same-origin"` (the default),
    /// `"none"` or `"any-origin"`.
    #[serde(default)]
    pub redirects: Redirects,
}

/// A header value, given or read from the environment.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum HeaderSource {
    /// The value itself.
    Value(String),
    /// The value of an environment variable.
    Env {
        /// The variable's name.
        env: String,
    },
}

fn default_method() -> String {
    "POST".to_owned()
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}

impl HandlerFactory for Http {
    type Params = HttpParams;

    fn kind(&self) -> &str {
        "http"
    }
    fn description(&self) -> &str {
        "Sends the task input as JSON to params.url; a 2xx JSON answer is the output."
    }
    fn params_help(&self) -> &str {
        "url: string (required) - the endpoint\n\
         method: string (default POST)\n\
         headers: table (default {}) - values, or { env = \"VAR\" } to read one from the environment\n\
         timeout_secs: integer (default 30) - time for the whole exchange\n\
         max_response_bytes: integer (default 1048576) - the largest body accepted\n\
         redirects: \"same-origin\" | \"none\" | \"any-origin\" (default \"same-origin\") - which redirects are followed; never https to http, never to a link-local address"
    }
    fn build(&self, p: HttpParams) -> Result<Arc<dyn Handler>, BuildError> {
        let url = reqwest::Url::parse(&p.url).map_err(|e| {
            BuildError::new(
                "url",
                format!("expected an http(s) URL, got {:?}: {e}", p.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::new(
                "url",
                format!("expected an http or https URL, got {:?}", p.url),
            ));
        }
        let method = reqwest::Method::from_bytes(p.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                BuildError::new(
                    "method",
                    format!("expected an HTTP method like POST, got {:?}", p.method),
                )
            })?;
        let mut headers = HeaderMap::new();
        let mut secret = Vec::new();
        for (name, source) in &p.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BuildError::new(format!("headers.{name}"), "not a valid header name")
            })?;
            let text = match source {
                HeaderSource::Value(v) => v.clone(),
                HeaderSource::Env { env } => std::env::var(env).map_err(|_| {
                    BuildError::new(
                        format!("headers.{name}"),
                        format!("environment variable {env} is not set"),
                    )
                })?,
            };
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                BuildError::new(format!("headers.{name}"), "not a valid header value")
            })?;
            let sensitive = matches!(source, HeaderSource::Env { .. })
                || [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE].contains(&header);
            value.set_sensitive(sensitive);
            if sensitive {
                secret.push(header.clone());
            }
            headers.insert(header, value);
        }
        if p.timeout_secs > MAX_SECS {
            return Err(BuildError::new(
                "timeout_secs",
                format!(
                    "expected at most {MAX_SECS} (a year), got {}",
                    p.timeout_secs
                ),
            ));
        }
        if p.timeout_secs == 0 || p.max_response_bytes == 0 {
            let field = if p.timeout_secs == 0 {
                "timeout_secs"
            } else {
                "max_response_bytes"
            };
            return Err(BuildError::new(field, "expected a positive number"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(p.timeout_secs.min(10)))
            // Redirects are followed here, by `exchange`, which knows which
            // headers are secret and which methods may change.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::new(".", format!("cannot build the HTTP client: {e}")))?;
        Ok(Arc::new(HttpHandler(Arc::new(Prepared {
            client,
            url,
            method,
            headers,
            secret,
            timeout: Duration::from_secs(p.timeout_secs),
            max_response_bytes: p.max_response_bytes,
            redirects: p.redirects,
        }))))
    }
}

struct Prepared {
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    headers: HeaderMap,
    /// Headers never sent to an origin other than `url`'s.
    secret: Vec<HeaderName>,
    timeout: Duration,
    max_response_bytes: usize,
    redirects: Redirects,
}

struct HttpHandler(Arc<Prepared>);

impl Handler for HttpHandler {
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture {
        let p = self.0.clone();
        Box::pin(async move {
            tokio::select! {
                result = exchange(&p, input) => result,
                // Dropping the exchange aborts the request.
                _ = ctx.cancelled() => Err(TaskError::new(CANCELLED, "the request was aborted because the task was cancelled")),
            }
        })
    }
}

async fn exchange(p: &Prepared, input: String) -> Result<String, TaskError> {
    let body = bytes::Bytes::from(input);
    let deadline = tokio::time::Instant::now() + p.timeout;
    let (method, mut url, mut send_body) = (&p.method, p.url.clone(), true);
    let mut redirects = 0;
    let mut response = loop {
        let mut headers = p.headers.clone();
        if url.origin() != p.url.origin() {
            for name in &p.secret {
                headers.remove(name);
            }
        }
        let mut request = p
            .client
            .request(method.clone(), url.clone())
            .headers(headers)
            .timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if send_body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_redirection() {
            break response;
        }
        let Some(next) = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
        else {
            break response;
        };
        if !matches!(next.scheme(), "http" | "https") || redirects == MAX_REDIRECTS {
            break response;
        }
        if let Some(why) = redirect::refusal(p.redirects, &p.url, &url, &next) {
            return Err(TaskError::new(
                REDIRECT_REFUSED,
                format!("HTTP {status}: redirected to {next}; not followed: {why}"),
            ));
        }
        match status.as_u16() {
            307 | 308 => {}
            301..=303 if *method == reqwest::Method::GET || *method == reqwest::Method::HEAD => {
                send_body = false;
            }
            _ => {
                return Err(TaskError::new(
                    UNEXPECTED_STATUS,
                    format!(
                        "HTTP {status}: redirected to {next}; not followed, because following it \
                         would turn {method} into GET without the body (use 307/308 to redirect a {method})"
                    ),
                ));
            }
        }
        redirects += 1;
        url = next;
    };
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > p.max_response_bytes {
            return Err(TaskError::new(
                RESPONSE_TOO_LARGE,
                format!(
                    "HTTP {status}: the body is larger than max_response_bytes ({})",
                    p.max_response_bytes
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok("{}".to_owned());
        }
        return serde_json::from_slice::<Box<serde_json::value::RawValue>>(&body)
            .map(|raw| raw.get().to_owned())
            .map_err(|e| {
                TaskError::new(
                    INVALID_RESPONSE,
                    format!(
                        "HTTP {status}: the body is not JSON ({e}): {}",
                        excerpt(&body)
                    ),
                )
            });
    }
    let name = if status.is_client_error() {
        CLIENT_ERROR
    } else if status.is_server_error() {
        SERVER_ERROR
    } else {
        UNEXPECTED_STATUS
    };
    Err(TaskError::new(
        name,
        format!("HTTP {status}: {}", excerpt(&body)),
    ))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(CAUSE_BODY_BYTES)]);
    if body.len() > CAUSE_BODY_BYTES {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

fn transport(e: reqwest::Error) -> TaskError {
    // reqwest's Display omits the cause chain; walk it for the useful part.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    let name = if e.is_timeout() {
        TIMEOUT
    } else if e.is_connect() {
        CONNECT_ERROR
    } else {
        REQUEST_ERROR
    };
    TaskError::new(name, detail)
}

#[cfg(test)]
mod tests;
