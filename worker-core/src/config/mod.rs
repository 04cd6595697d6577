//! The worker's configuration, as data.
//!
//! These types only describe and validate; reading files and environment
//! variables is the binary's job. Field names carry their units (`_secs`),
//! unknown fields are rejected, and limits that must be positive are
//! `NonZero*` so that a zero is refused by the parser with the field's name.

pub(crate) mod arn;
pub mod defaults;
pub(crate) mod plan;

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};

use serde::{Deserialize, Serialize};

pub use crate::ledger::config::{LedgerConfig, LedgerUnreachable};
pub use crate::limits::MAX_VISIBILITY_SECS;
pub use crate::source::activity::config::{ActivityBinding, ActivityPlan};
pub use crate::source::sqs::config::{
    Completes, MIN_VISIBILITY_SECS, OnMalformed, OnShutdown, QueueBinding, QueuePlan, QueueUrl,
    TokenSource,
};
pub use crate::workflows::WorkflowsConfig;
pub use arn::{ActivityArn, StateMachineArn};
pub use plan::{BindingPlan, NOTHING_TO_SERVE, Plan};

/// The longest duration any `_secs` setting may hold: a year, the longest a
/// Step Functions execution runs. Larger values are configuration errors
/// (they would overflow the clock arithmetic of timers and deadlines).
pub const MAX_SECS: u64 = 365 * 24 * 60 * 60;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// How to reach AWS.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Process-wide settings.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// One entry per activity served (`[[activity]]`).
    #[serde(default, rename = "activity")]
    pub activities: Vec<ActivityBinding>,
    /// One entry per SQS queue served (`[[queue]]`).
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueBinding>,
    /// The state machines the workflow commands start executions of, by
    /// name (`[workflows]`); the worker itself does not use it.
    #[serde(default)]
    pub workflows: WorkflowsConfig,
    /// The fleet's task ledger (`[ledger]`): where bindings with `ledger =
    /// true` claim their tasks, so each runs on one worker. Default: none.
    pub ledger: Option<LedgerConfig>,
}

/// `[aws]`: overrides for the standard AWS configuration chain.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AwsConfig {
    /// Region; default: the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint for every service, for LocalStack; default: `AWS_ENDPOINT_URL`
    /// or the real AWS endpoints.
    pub endpoint_url: Option<String>,
    /// Named profile; default: `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Endpoint for Lambda's durable-execution callbacks only, winning over
    /// `endpoint_url` (for example the local durable-execution runner next
    /// to a LocalStack); default: as the SDK resolves Lambda's
    /// (`AWS_ENDPOINT_URL_LAMBDA`, then `endpoint_url`, then AWS).
    pub lambda_endpoint_url: Option<String>,
    /// What Lambda's `ResourceNotFoundException` for a durable-execution
    /// callback means. Default `keep`: closed only for a callback Lambda
    /// accepted a call for before; otherwise the worker may be pointed at
    /// the wrong region, account or endpoint, so the message (the only copy
    /// of the callback id) is kept and the worker reports itself not ready.
    /// `closed`: always closed, as AWS's local durable-execution runner
    /// answers it for an expired callback.
    #[serde(default)]
    pub lambda_callback_not_found: CallbackNotFound,
    /// How the per-task Step Functions calls are sent. Default `direct`.
    #[serde(default)]
    pub sfn_client: ClientKind,
    /// How SQS's `ReceiveMessage` and batch calls are sent. Default `direct`.
    #[serde(default)]
    pub sqs_client: ClientKind,
}

/// `[aws] sfn_client` and `sqs_client`: which client sends a service's
/// per-task calls.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ClientKind {
    /// Signed with the SDK's signer and sent on one keep-alive pool, without
    /// the SDK's per-request machinery: a fraction of the CPU per call
    /// (BENCHMARKS.md). Endpoint, region and credentials are the SDK's.
    #[default]
    Direct,
    /// The AWS SDK's client for every call.
    Sdk,
}

/// `[aws] lambda_callback_not_found`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CallbackNotFound {
    /// Closed only if Lambda knew the callback before; otherwise keep the
    /// message and say the worker is misdirected.
    #[default]
    Keep,
    /// Closed: the callback expired (AWS's local runner).
    Closed,
}

/// The name this had when only Step Functions had a direct client.
pub type SfnClient = ClientKind;

/// `[worker]`: process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Tasks running at once across all bindings (and polls in flight, which
    /// each hold a slot). Default 256.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: NonZeroUsize,
    /// After SIGTERM, how long running tasks may go on before their contexts
    /// are cancelled. Default 30.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// After a context is cancelled (shutdown, timeout, closed task), how long
    /// the handler has to return before it is abandoned. Default 5.
    #[serde(default = "defaults::cancel_grace_secs")]
    pub cancel_grace_secs: u64,
    /// Where `/metrics`, `/healthz` and `/readyz` are served. Default
    /// `127.0.0.1:9464`; use `0.0.0.0:9464` in a container.
    #[serde(default = "defaults::metrics_addr")]
    pub metrics_addr: SocketAddr,
    /// Process-wide limit on `SendTask*` calls per second. Default: none.
    pub send_task_rate_per_sec: Option<NonZeroU32>,
    /// `workerName` sent with `GetActivityTask`. Default: host name + pid.
    pub worker_name: Option<String>,
    /// Client-side timeout of one `GetActivityTask`, at least 65 (the service
    /// holds a poll up to 60 s). Default 70.
    #[serde(default = "defaults::poll_timeout_secs")]
    pub poll_timeout_secs: u64,
    /// Threads that run the worker's and handlers' async code; 0 means one
    /// per CPU core. Default 1: the worker waits on the network, and on one
    /// thread it spends no CPU handing tasks between threads (half the CPU
    /// per task of two threads on two cores, BENCHMARKS.md). Handlers that
    /// compute for long should use `tokio::task::spawn_blocking`, or raise
    /// this.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_concurrency: defaults::max_concurrency(),
            shutdown_grace_secs: defaults::shutdown_grace_secs(),
            cancel_grace_secs: defaults::cancel_grace_secs(),
            metrics_addr: defaults::metrics_addr(),
            send_task_rate_per_sec: None,
            worker_name: None,
            poll_timeout_secs: defaults::poll_timeout_secs(),
            threads: defaults::threads(),
        }
    }
}

/// A configuration that parsed but does not make sense: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The field, as a path: `activity[1].pollers`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Check a JSON pointer's syntax (RFC 6901): empty, or `/`-separated parts
/// where `~` is only followed by `0` or `1`.
pub(crate) fn check_pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!(
            "expected a JSON pointer starting with / (like /taskToken), got {p:?}"
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{p:?} is not a valid JSON pointer: ~ must be followed by 0 or 1"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/taskToken").is_ok());
        assert!(check_pointer("/a~1b/~0c").is_ok());
        assert!(
            check_pointer("taskToken")
                .unwrap_err()
                .contains("starting with /")
        );
        assert!(
            check_pointer("/a~2")
                .unwrap_err()
                .contains("~ must be followed")
        );
    }

    /// A binding made in code has the defaults a file's binding with the
    /// same two keys has: the two ways cannot drift apart.
    #[test]
    fn bindings_made_in_code_have_the_files_defaults() {
        let arn = "arn:aws:states:us-east-1:123456789012:activity:resize";
        let from_file: ActivityBinding =
            serde_json::from_value(serde_json::json!({ "arn": arn, "handler": "exec" })).unwrap();
        let in_code = ActivityBinding::new(arn.parse().unwrap(), "exec");
        assert_eq!(
            serde_json::to_value(&in_code).unwrap(),
            serde_json::to_value(&from_file).unwrap()
        );
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs";
        let from_file: QueueBinding =
            serde_json::from_value(serde_json::json!({ "url": url, "handler": "exec" })).unwrap();
        let in_code = QueueBinding::new(url.parse().unwrap(), "exec");
        assert_eq!(
            serde_json::to_value(&in_code).unwrap(),
            serde_json::to_value(&from_file).unwrap()
        );
    }
}
