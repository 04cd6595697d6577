//! `[[queue]]`: SQS callback bindings (`sqs:sendMessage.waitForTaskToken`).

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::plan::Checks;
use crate::config::{BindingPlan, check_pointer, defaults};
use crate::limits::MAX_VISIBILITY_SECS;
/// The shortest visibility timeout the worker can keep renewed. It renews
/// every third of the timeout and retries a failed renewal 2 s later; below
/// this, one slow or failed renewal lets the message reappear while its
/// handler runs.
pub const MIN_VISIBILITY_SECS: u64 = 10;

/// One SQS queue served by one handler.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueBinding {
    /// Name in logs and metrics. Default: the queue's name.
    pub name: Option<String>,
    /// The queue URL, `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
    pub url: QueueUrl,
    /// The handler kind.
    pub handler: String,
    /// Messages handled at once. Default 16.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: NonZeroUsize,
    /// Concurrent `ReceiveMessage` long polls. Default: one per 10 slots, at most 4.
    pub receivers: Option<NonZeroUsize>,
    /// `SendTaskHeartbeat` interval; omit when the state has no `HeartbeatSeconds`.
    pub heartbeat_secs: Option<NonZeroU64>,
    /// The visibility timeout the worker keeps renewing while a handler runs
    /// (every third of it). Default 60; at least 10, at most 43200.
    #[serde(default = "defaults::visibility_timeout_secs")]
    pub visibility_timeout_secs: NonZeroU64,
    /// Cancel the handler and fail with `Worker.HandlerTimeout` after this long.
    pub timeout_secs: Option<NonZeroU64>,
    /// What the messages complete: `step-functions` (a task token, reported
    /// with `SendTask*`) or `durable-callback` (a Lambda durable
    /// execution's callback id, `SendDurableExecutionCallback*`). Default
    /// `step-functions`.
    #[serde(default)]
    pub completes: Completes,
    /// JSON pointer to the task token in the body. Default `/taskToken`.
    pub token_pointer: Option<String>,
    /// Take the token from this message attribute instead of the body.
    pub token_attribute: Option<String>,
    /// `durable-callback`: JSON pointer to the callback id in the body.
    /// Default `/callbackId`.
    pub callback_id_pointer: Option<String>,
    /// `durable-callback`: take the callback id from this message attribute
    /// instead of the body.
    pub callback_id_attribute: Option<String>,
    /// JSON pointer to the task input in the body. Default: the whole body.
    pub input_pointer: Option<String>,
    /// What to do with a message that has no usable token or input.
    #[serde(default)]
    pub on_malformed: OnMalformed,
    /// What to do with a message still running when shutdown's grace ends.
    #[serde(default)]
    pub on_shutdown: OnShutdown,
    /// JSON pointer to a W3C `traceparent` string in the task's input
    /// (like `/traceparent`): the task's span joins that trace. Default:
    /// none (SQS bindings also read the `AWSTraceHeader` attribute).
    pub traceparent_pointer: Option<String>,
    /// Claim each task in the fleet's task ledger (`[ledger]`) before its
    /// handler runs, so that a task delivered to several workers runs on
    /// one. Default false.
    #[serde(default)]
    pub ledger: bool,
    /// When the ledger cannot be reached to claim a task: `fail_closed`
    /// (do not run it; the default) or `fail_open` (run it without the
    /// guarantee).
    #[serde(default)]
    pub ledger_unreachable: crate::config::LedgerUnreachable,
    /// The handler kind's parameters (`[queue.params]`).
    #[serde(default)]
    pub params: serde_json::Value,
}

impl QueueBinding {
    /// A binding of the queue at `url` to the handler kind `handler`, every
    /// other field at its default, as a `[[queue]]` with only those two
    /// keys; set the others on the value (code-first configuration).
    pub fn new(url: QueueUrl, handler: impl Into<String>) -> Self {
        Self {
            name: None,
            url,
            handler: handler.into(),
            concurrency: defaults::concurrency(),
            receivers: None,
            heartbeat_secs: None,
            visibility_timeout_secs: defaults::visibility_timeout_secs(),
            timeout_secs: None,
            completes: Completes::default(),
            token_pointer: None,
            token_attribute: None,
            callback_id_pointer: None,
            callback_id_attribute: None,
            input_pointer: None,
            on_malformed: OnMalformed::default(),
            on_shutdown: OnShutdown::default(),
            traceparent_pointer: None,
            ledger: false,
            ledger_unreachable: crate::config::LedgerUnreachable::FailClosed,
            params: serde_json::Value::Null,
        }
    }

    /// The binding's name: `name`, or the queue's name.
    pub fn resolved_name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.url.queue_name())
    }
}

/// What a queue's messages complete.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Completes {
    /// A Step Functions task token (`sqs:sendMessage.waitForTaskToken`).
    #[default]
    StepFunctions,
    /// A Lambda durable execution's callback id (`waitForCallback`).
    DurableCallback,
}

impl Completes {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Completes::StepFunctions => "step-functions",
            Completes::DurableCallback => "durable-callback",
        }
    }
}

/// What to do with a malformed message.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnMalformed {
    /// Leave it: it reappears after its visibility timeout, and the queue's
    /// redrive policy moves it to a dead-letter queue after `maxReceiveCount`.
    #[default]
    Leave,
    /// Delete it at once.
    Delete,
}

/// What to do at shutdown with a message whose handler has not finished.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnShutdown {
    /// Make it visible at once (visibility 0): another worker runs it with
    /// the same token.
    #[default]
    Release,
    /// Fail the task with `Worker.ShuttingDown` and delete the message.
    Fail,
}

/// An SQS queue URL, checked for shape: `http(s)://HOST/ACCOUNT/NAME`.
///
/// ```
/// use sfn_worker_core::config::QueueUrl;
/// let u: QueueUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo".parse().unwrap();
/// assert_eq!(u.queue_name(), "jobs.fifo");
/// assert!(u.is_fifo());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct QueueUrl {
    url: String,
    name_at: usize,
}

impl QueueUrl {
    /// The whole URL.
    pub fn as_str(&self) -> &str {
        &self.url
    }
    /// The queue's name.
    pub fn queue_name(&self) -> &str {
        &self.url[self.name_at..]
    }
    /// Whether it is a FIFO queue (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.queue_name().ends_with(".fifo")
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for QueueUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            Err(format!(
                "expected a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/NAME, got {s:?} ({why})"
            ))
        };
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            return bad("it does not start with https:// or http://");
        };
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if parts.len() != 3 || parts[0].is_empty() {
            return bad("the path must be /ACCOUNT/NAME");
        }
        if parts[1].len() != 12 || !parts[1].chars().all(|c| c.is_ascii_digit()) {
            return bad("the account is not 12 digits");
        }
        let name = parts[2];
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        if base.is_empty()
            || name.len() > 80
            || !base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "the name must be 1-80 characters of A-Z a-z 0-9 - _, optionally ending in .fifo",
            );
        }
        let url = s.trim_end_matches('/').to_owned();
        let name_at = url.len() - name.len();
        Ok(Self { url, name_at })
    }
}

impl TryFrom<String> for QueueUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<QueueUrl> for String {
    fn from(u: QueueUrl) -> String {
        u.url
    }
}

/// Where an SQS message carries its task token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// A JSON pointer into the body.
    Pointer(String),
    /// A message attribute (string).
    Attribute(String),
}

/// One queue binding, resolved.
#[derive(Clone)]
#[non_exhaustive]
pub struct QueuePlan {
    /// What every binding has.
    pub binding: BindingPlan,
    /// The queue.
    pub url: QueueUrl,
    /// Concurrent receives.
    pub receivers: usize,
    /// What the messages complete.
    pub completes: Completes,
    /// Visibility timeout kept while a handler runs.
    pub visibility: Duration,
    /// Where the token is.
    pub token: TokenSource,
    /// Where the input is; `None`: the whole body.
    pub input_pointer: Option<String>,
    /// What to do with malformed messages.
    pub on_malformed: OnMalformed,
    /// What to do at shutdown.
    pub on_shutdown: OnShutdown,
}

impl std::fmt::Debug for QueuePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuePlan")
            .field("binding", &self.binding)
            .field("url", &self.url.as_str())
            .field("receivers", &self.receivers)
            .field("visibility", &self.visibility)
            .field("token", &self.token)
            .finish()
    }
}

/// Resolve every `[[queue]]`, recording problems in `checks`.
pub(crate) fn plans(bindings: &[QueueBinding], checks: &mut Checks<'_>) -> Vec<QueuePlan> {
    let mut plans = Vec::new();
    for (i, q) in bindings.iter().enumerate() {
        let at = |f: &str| format!("queue[{i}].{f}");
        plans.extend(plan(q, checks, &at));
    }
    plans
}

fn plan(
    q: &QueueBinding,
    checks: &mut Checks<'_>,
    at: &dyn Fn(&str) -> String,
) -> Option<QueuePlan> {
    let before = checks.count();
    checks.name(at("name"), q.resolved_name());
    checks.ledger(&at("ledger"), q.ledger);
    let visibility = q.visibility_timeout_secs.get();
    if visibility > MAX_VISIBILITY_SECS {
        checks.error(
            at("visibility_timeout_secs"),
            format!("expected at most {MAX_VISIBILITY_SECS} (SQS's 12 hours), got {visibility}"),
        );
    }
    if visibility < MIN_VISIBILITY_SECS {
        checks.error(
            at("visibility_timeout_secs"),
            format!(
                "expected at least {MIN_VISIBILITY_SECS}, got {visibility}: the worker renews it every \
                 third of the timeout, and a shorter one lapses after a single slow renewal"
            ),
        );
    }
    for (field, secs) in [
        ("heartbeat_secs", q.heartbeat_secs),
        ("timeout_secs", q.timeout_secs),
    ] {
        if let Some(secs) = secs {
            checks.secs(&at(field), secs.get());
        }
    }
    // Where the message's id is: a task token, or a durable callback id;
    // the other kind's fields do not apply.
    let (pointer, attribute, names, default, other) = match q.completes {
        Completes::StepFunctions => (
            &q.token_pointer,
            &q.token_attribute,
            ("token_pointer", "token_attribute"),
            defaults::TOKEN_POINTER,
            [
                ("callback_id_pointer", &q.callback_id_pointer),
                ("callback_id_attribute", &q.callback_id_attribute),
            ],
        ),
        Completes::DurableCallback => (
            &q.callback_id_pointer,
            &q.callback_id_attribute,
            ("callback_id_pointer", "callback_id_attribute"),
            defaults::CALLBACK_ID_POINTER,
            [
                ("token_pointer", &q.token_pointer),
                ("token_attribute", &q.token_attribute),
            ],
        ),
    };
    for (field, value) in other {
        if value.is_some() {
            checks.error(
                at(field),
                format!(
                    "does not apply with completes = \"{}\"; use {} or {}",
                    q.completes.as_str(),
                    names.0,
                    names.1
                ),
            );
        }
    }
    let token = match (pointer, attribute) {
        (Some(_), Some(_)) => {
            checks.error(
                at(names.1),
                format!("set {} or {}, not both", names.0, names.1),
            );
            TokenSource::Pointer(String::new())
        }
        (_, Some(attr)) if attr.is_empty() => {
            checks.error(at(names.1), "expected an attribute name");
            TokenSource::Pointer(String::new())
        }
        (_, Some(attr)) => TokenSource::Attribute(attr.clone()),
        (pointer, None) => {
            let pointer = pointer.clone().unwrap_or_else(|| default.to_owned());
            if let Err(e) = check_pointer(&pointer) {
                checks.error(at(names.0), e);
            }
            TokenSource::Pointer(pointer)
        }
    };
    if let Some(p) = &q.input_pointer
        && let Err(e) = check_pointer(p)
    {
        checks.error(at("input_pointer"), e);
    }
    if let Some(p) = &q.traceparent_pointer
        && let Err(e) = check_pointer(p)
    {
        checks.error(at("traceparent_pointer"), e);
    }
    let concurrency = q.concurrency.get();
    let receivers = q
        .receivers
        .map_or_else(|| defaults::receivers(concurrency), |r| r.get());
    if receivers > concurrency {
        checks.error(
            at("receivers"),
            format!("expected at most concurrency ({concurrency}), got {receivers}: every receive holds a slot"),
        );
    }
    let handler = checks.handler(&q.handler, &q.params, at)?;
    if checks.count() > before {
        return None;
    }
    Some(QueuePlan {
        binding: BindingPlan {
            name: q.resolved_name().into(),
            kind: q.handler.as_str().into(),
            handler,
            concurrency,
            heartbeat: q.heartbeat_secs.map(|h| Duration::from_secs(h.get())),
            timeout: q.timeout_secs.map(|t| Duration::from_secs(t.get())),
            traceparent_pointer: q.traceparent_pointer.as_deref().map(Into::into),
            ledger: q.ledger.then_some(q.ledger_unreachable),
        },
        url: q.url.clone(),
        receivers,
        completes: q.completes,
        visibility: Duration::from_secs(visibility),
        token,
        input_pointer: q.input_pointer.clone(),
        on_malformed: q.on_malformed,
        on_shutdown: q.on_shutdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls() {
        for ok in [
            "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
            "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/callbacks",
            "http://localhost:4566/000000000000/a_b-c.fifo",
        ] {
            assert!(ok.parse::<QueueUrl>().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("sqs.us-east-1.amazonaws.com/123456789012/jobs", "https://"),
            ("https://sqs.us-east-1.amazonaws.com/jobs", "/ACCOUNT/NAME"),
            ("https://sqs.us-east-1.amazonaws.com/1234/jobs", "12 digits"),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/jo bs",
                "name",
            ),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/.fifo",
                "name",
            ),
        ] {
            let err = bad.parse::<QueueUrl>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
