//! `[[activity]]`: Step Functions activity bindings, as configured and as
//! resolved.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::plan::Checks;
use crate::config::{ActivityArn, BindingPlan};

/// `[[activity]]`: one activity served by one handler.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActivityBinding {
    /// Name in logs and metrics. Default: the last part of the ARN.
    pub name: Option<String>,
    /// The activity's ARN.
    pub arn: ActivityArn,
    /// The handler kind (`sfn-worker handlers` lists them).
    pub handler: String,
    /// Long polls kept open at once. Default 2; at most `concurrency`.
    #[serde(default = "crate::config::defaults::pollers")]
    pub pollers: NonZeroUsize,
    /// Tasks of this activity running at once. Default 16.
    #[serde(default = "crate::config::defaults::concurrency")]
    pub concurrency: NonZeroUsize,
    /// Heartbeat interval; keep it well under the state's `HeartbeatSeconds`.
    /// 0 sends no timer heartbeats. Default 20.
    #[serde(default = "crate::config::defaults::heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Cancel the handler and fail with `Worker.HandlerTimeout` after this
    /// long. Default: no limit (the state's `TimeoutSeconds` still applies).
    pub timeout_secs: Option<std::num::NonZeroU64>,
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
    /// The handler kind's parameters (`[activity.params]`).
    #[serde(default)]
    pub params: serde_json::Value,
}

impl ActivityBinding {
    /// A binding of `arn` to the handler kind `handler`, every other field
    /// at its default, as a `[[activity]]` with only those two keys; set
    /// the others on the value (code-first configuration).
    ///
    /// ```
    /// use sfn_worker_core::Config;
    /// use sfn_worker_core::config::ActivityBinding;
    ///
    /// let mut config = Config::default();
    /// let arn = "arn:aws:states:us-east-1:123456789012:activity:resize".parse().unwrap();
    /// let mut binding = ActivityBinding::new(arn, "exec");
    /// binding.heartbeat_secs = 10;
    /// binding.params = serde_json::to_value([("command", ["./resize.sh"])].into_iter().collect::<std::collections::BTreeMap<_, _>>()).unwrap();
    /// config.activities.push(binding);
    /// config.worker.max_concurrency = std::num::NonZeroUsize::new(8).unwrap();
    /// ```
    pub fn new(arn: ActivityArn, handler: impl Into<String>) -> Self {
        Self {
            name: None,
            arn,
            handler: handler.into(),
            pollers: crate::config::defaults::pollers(),
            concurrency: crate::config::defaults::concurrency(),
            heartbeat_secs: crate::config::defaults::heartbeat_secs(),
            timeout_secs: None,
            traceparent_pointer: None,
            ledger: false,
            ledger_unreachable: crate::config::LedgerUnreachable::FailClosed,
            params: serde_json::Value::Null,
        }
    }

    /// The binding's name: `name`, or the ARN's last part.
    pub fn resolved_name(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| self.arn.name())
    }
}

/// One activity binding, resolved.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ActivityPlan {
    /// What every binding has.
    pub binding: BindingPlan,
    /// The activity.
    pub arn: ActivityArn,
    /// Long polls kept open.
    pub pollers: usize,
}

/// Resolve every `[[activity]]`, recording problems in `checks`.
pub(crate) fn plans(bindings: &[ActivityBinding], checks: &mut Checks<'_>) -> Vec<ActivityPlan> {
    let mut arns = std::collections::HashSet::new();
    let mut plans = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let at = |f: &str| format!("activity[{i}].{f}");
        let name = b.resolved_name();
        checks.name(at("name"), name);
        if !arns.insert(b.arn.as_str()) {
            checks.error(
                at("arn"),
                format!(
                    "{} is bound twice; use one binding with more pollers",
                    b.arn
                ),
            );
        }
        checks.secs(&at("heartbeat_secs"), b.heartbeat_secs);
        if let Some(t) = b.timeout_secs {
            checks.secs(&at("timeout_secs"), t.get());
        }
        if b.pollers > b.concurrency {
            checks.error(
                at("pollers"),
                format!(
                    "expected at most concurrency ({}), got {}: every open poll holds a slot",
                    b.concurrency, b.pollers
                ),
            );
        }
        if let Some(p) = &b.traceparent_pointer
            && let Err(e) = crate::config::check_pointer(p)
        {
            checks.error(at("traceparent_pointer"), e);
        }
        checks.ledger(&at("ledger"), b.ledger);
        if let Some(handler) = checks.handler(&b.handler, &b.params, &at) {
            plans.push(ActivityPlan {
                binding: BindingPlan {
                    name: name.into(),
                    kind: b.handler.as_str().into(),
                    handler,
                    concurrency: b.concurrency.get(),
                    heartbeat: (b.heartbeat_secs > 0)
                        .then(|| Duration::from_secs(b.heartbeat_secs)),
                    timeout: b.timeout_secs.map(|t| Duration::from_secs(t.get())),
                    traceparent_pointer: b.traceparent_pointer.as_deref().map(Into::into),
                    ledger: b.ledger.then_some(b.ledger_unreachable),
                },
                arn: b.arn.clone(),
                pollers: b.pollers.get(),
            });
        }
    }
    plans
}
