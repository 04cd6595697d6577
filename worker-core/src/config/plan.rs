//! The resolved plan: a configuration checked against the handler registry.
//!
//! What every binding has, whatever its source, is one [`BindingPlan`]; each
//! source resolves its own fields (`source::activity::config`,
//! `source::sqs::config`) with the shared [`Checks`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{ActivityPlan, Config, ConfigError, MAX_SECS, QueuePlan};
use crate::handler::{Handler, ParamsError, Registry};
use crate::limits::{MAX_WORKER_NAME_CHARS, MIN_POLL_TIMEOUT_SECS};
use crate::source::{activity, sqs};

/// A configuration checked against the registry: every binding has its handler
/// built. This is what a [`crate::Worker`] runs and what `sfn-worker check` prints.
#[derive(Clone)]
#[non_exhaustive]
pub struct Plan {
    // Private: a plan is only made by `Plan::build`, so whatever holds one
    // holds a validated configuration.
    pub(crate) config: Config,
    pub(crate) activities: Vec<ActivityPlan>,
    pub(crate) queues: Vec<QueuePlan>,
}

/// What a configuration without bindings is told where bindings are needed.
pub const NOTHING_TO_SERVE: &str =
    "expected at least one [[activity]] or [[queue]] binding; nothing to serve";

/// What every binding has, whatever its source.
#[derive(Clone)]
#[non_exhaustive]
pub struct BindingPlan {
    /// The binding's name (logs, metrics); unique across all bindings.
    pub name: Arc<str>,
    /// The handler kind's name.
    pub kind: Arc<str>,
    /// The handler built from the binding's params.
    pub handler: Arc<dyn Handler>,
    /// Tasks of this binding running at once.
    pub concurrency: usize,
    /// Timer heartbeat interval; `None` sends none.
    pub heartbeat: Option<Duration>,
    /// Handler time limit.
    pub timeout: Option<Duration>,
    /// Where a `traceparent` is in the input, if configured.
    pub traceparent_pointer: Option<Arc<str>>,
    /// Whether tasks are claimed in the task ledger, and what to do when it
    /// cannot be reached; `None`: the ledger is off for this binding.
    pub ledger: Option<crate::config::LedgerUnreachable>,
}

impl std::fmt::Debug for BindingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingPlan")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("concurrency", &self.concurrency)
            .field("heartbeat", &self.heartbeat)
            .field("timeout", &self.timeout)
            .field("traceparent_pointer", &self.traceparent_pointer)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl Plan {
    /// The configuration it came from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One entry per `[[activity]]`, in file order.
    pub fn activities(&self) -> &[ActivityPlan] {
        &self.activities
    }

    /// One entry per `[[queue]]`, in file order.
    pub fn queues(&self) -> &[QueuePlan] {
        &self.queues
    }

    /// Check `config` beyond what parsing checks, and build every handler.
    /// Returns every problem found, not just the first. A configuration
    /// with no binding is valid only if it names workflows (`[workflows]`,
    /// for the workflow commands); a worker needs [`Plan::has_bindings`].
    pub fn build(config: Config, registry: &Registry) -> Result<Plan, Vec<ConfigError>> {
        let mut checks = Checks {
            registry,
            errors: Vec::new(),
            names: HashSet::new(),
            ledger: config.ledger.is_some(),
        };
        if let Some(ledger) = &config.ledger {
            checks.errors.extend(ledger.validate());
        }
        let w = &config.worker;
        for (field, secs) in [
            ("shutdown_grace_secs", w.shutdown_grace_secs),
            ("cancel_grace_secs", w.cancel_grace_secs),
            ("poll_timeout_secs", w.poll_timeout_secs),
        ] {
            checks.secs(&format!("worker.{field}"), secs);
        }
        if w.poll_timeout_secs < MIN_POLL_TIMEOUT_SECS {
            checks.error(
                "worker.poll_timeout_secs",
                format!(
                    "expected at least {MIN_POLL_TIMEOUT_SECS} (Step Functions holds a poll up to 60 s), got {}",
                    w.poll_timeout_secs
                ),
            );
        }
        if let Some(name) = &w.worker_name
            && (name.is_empty() || name.chars().count() > MAX_WORKER_NAME_CHARS)
        {
            checks.error(
                "worker.worker_name",
                format!("expected 1 to {MAX_WORKER_NAME_CHARS} characters"),
            );
        }
        // A file with only [workflows] is the workflow commands'; `run`
        // refuses it (Plan::has_bindings).
        if config.activities.is_empty() && config.queues.is_empty() && config.workflows.is_empty() {
            checks.error("activity", NOTHING_TO_SERVE);
        }
        for e in config.workflows.validate() {
            checks.error(e.field, e.message);
        }
        let activities = activity::config::plans(&config.activities, &mut checks);
        let queues = sqs::config::plans(&config.queues, &mut checks);
        if checks.errors.is_empty() {
            Ok(Plan {
                config,
                activities,
                queues,
            })
        } else {
            Err(checks.errors)
        }
    }
}

impl Plan {
    /// Whether there is anything for a worker to serve.
    pub fn has_bindings(&self) -> bool {
        !(self.activities.is_empty() && self.queues.is_empty())
    }
}

/// What building a plan has found so far, shared by every source's checks.
pub(crate) struct Checks<'r> {
    registry: &'r Registry,
    errors: Vec<ConfigError>,
    names: HashSet<String>,
    /// Whether `[ledger]` is there.
    ledger: bool,
}

impl Checks<'_> {
    /// Record a problem with `field`.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(field, message));
    }

    /// How many problems have been found: a source compares before and after.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// A duration setting must fit the clock arithmetic: at most [`MAX_SECS`].
    pub fn secs(&mut self, field: &str, secs: u64) {
        if secs > MAX_SECS {
            self.error(
                field,
                format!("expected at most {MAX_SECS} (a year), got {secs}"),
            );
        }
    }

    /// A binding name must be non-empty and unique across all bindings.
    pub fn name(&mut self, field: String, name: &str) {
        if name.is_empty() {
            self.error(field, "expected a non-empty name");
        } else if !self.names.insert(name.to_owned()) {
            self.error(
                field,
                format!("binding name {name:?} is used twice; names must be unique"),
            );
        }
    }

    /// A binding may use the ledger only if `[ledger]` names its table.
    pub fn ledger(&mut self, field: &str, on: bool) {
        if on && !self.ledger {
            self.error(
                field,
                "expected a [ledger] section with the DynamoDB table, since this binding claims its tasks there",
            );
        }
    }

    /// Build a binding's handler, recording what is wrong under `at(...)`.
    pub fn handler(
        &mut self,
        kind: &str,
        params: &serde_json::Value,
        at: &dyn Fn(&str) -> String,
    ) -> Option<Arc<dyn Handler>> {
        // A path inside `params`; `.` is the table itself.
        let param = |path: &str| match path {
            "." | "" => at("params"),
            path => at(&format!("params.{path}")),
        };
        match self.registry.build(kind, params) {
            Ok(handler) => return Some(handler),
            Err(e @ ParamsError::UnknownKind { .. }) => self.error(at("handler"), e.to_string()),
            Err(ParamsError::Invalid { path, message }) => self.error(param(&path), message),
            Err(ParamsError::Rejected(e)) => self.error(param(&e.param), e.message),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;
    use crate::config::TokenSource;

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.handler("echo", |v: serde_json::Value, _ctx| async move {
            Ok::<_, TaskError>(v)
        });
        r
    }

    fn config(toml_activities: serde_json::Value) -> Config {
        serde_json::from_value(serde_json::json!({ "activity": toml_activities })).unwrap()
    }

    #[test]
    fn resolves_defaults() {
        let c = config(serde_json::json!([
            {"arn": "arn:aws:states:us-east-1:000000000000:activity:resize", "handler": "echo"}
        ]));
        let plan = Plan::build(c, &registry()).unwrap();
        let a = &plan.activities[0];
        assert_eq!(&*a.binding.name, "resize");
        assert_eq!((a.pollers, a.binding.concurrency), (2, 16));
        assert_eq!(a.binding.heartbeat, Some(Duration::from_secs(20)));
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let c = config(serde_json::json!([
            {"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "nope"},
            {"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo",
             "pollers": 8, "concurrency": 4, "params": {"x": 1}}
        ]));
        let errs = Plan::build(c, &registry()).err().unwrap();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "activity[0].handler",
                "activity[1].name",
                "activity[1].arn",
                "activity[1].pollers",
                "activity[1].params.x"
            ]
        );
    }

    #[test]
    fn queue_bindings_resolve_and_are_checked() {
        let url = "http://localhost:4566/000000000000/callbacks";
        let c: Config = serde_json::from_value(serde_json::json!({ "queue": [
            {"url": url, "handler": "echo", "concurrency": 32},
            {"url": url, "name": "b", "handler": "echo", "token_pointer": "taskToken", "input_pointer": "/a~2"},
            {"url": url, "name": "c", "handler": "echo", "token_pointer": "/t", "token_attribute": "T",
             "visibility_timeout_secs": 50000, "receivers": 20},
        ]})).unwrap();
        let errs = Plan::build(c, &registry()).err().unwrap();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "queue[1].token_pointer",
                "queue[1].input_pointer",
                "queue[2].visibility_timeout_secs",
                "queue[2].token_attribute",
                "queue[2].receivers"
            ]
        );
        let c: Config = serde_json::from_value(serde_json::json!({ "queue": [
            {"url": url, "handler": "echo", "concurrency": 32, "token_attribute": "TaskToken"}
        ]}))
        .unwrap();
        let plan = Plan::build(c, &registry()).unwrap();
        let q = &plan.queues[0];
        assert_eq!(
            (&*q.binding.name, q.receivers, q.visibility.as_secs()),
            ("callbacks", 4, 60)
        );
        assert_eq!(q.token, TokenSource::Attribute("TaskToken".into()));
        assert_eq!(q.binding.heartbeat, None);
    }

    #[test]
    fn durations_that_would_overflow_the_clock_are_errors() {
        let url = "http://localhost:4566/000000000000/q";
        let huge = u64::MAX;
        let c: Config = serde_json::from_value(serde_json::json!({
            "worker": { "shutdown_grace_secs": huge, "cancel_grace_secs": huge, "poll_timeout_secs": huge },
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo",
                          "heartbeat_secs": huge, "timeout_secs": huge}],
            "queue": [{"url": url, "handler": "echo", "heartbeat_secs": huge, "timeout_secs": huge,
                       "visibility_timeout_secs": 3}],
        }))
        .unwrap();
        let errs = Plan::build(c, &registry()).err().unwrap();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "worker.shutdown_grace_secs",
                "worker.cancel_grace_secs",
                "worker.poll_timeout_secs",
                "activity[0].heartbeat_secs",
                "activity[0].timeout_secs",
                "queue[0].visibility_timeout_secs",
                "queue[0].heartbeat_secs",
                "queue[0].timeout_secs",
            ]
        );
        assert!(errs[0].message.contains("at most 31536000"), "{}", errs[0]);
        assert!(errs[5].message.contains("at least 10"), "{}", errs[5]);
        // At the bound, all is well.
        let c: Config = serde_json::from_value(serde_json::json!({
            "worker": { "shutdown_grace_secs": MAX_SECS },
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo",
                          "timeout_secs": MAX_SECS}],
        }))
        .unwrap();
        assert!(Plan::build(c, &registry()).is_ok());
    }

    #[test]
    fn a_configuration_needs_bindings_or_workflows() {
        let empty: Config = serde_json::from_value(serde_json::json!({})).unwrap();
        let errs = Plan::build(empty, &registry()).err().unwrap();
        assert_eq!(errs, [ConfigError::new("activity", NOTHING_TO_SERVE)]);
        // Only [workflows]: valid, for the workflow commands; nothing to serve.
        let workflows: Config = serde_json::from_value(serde_json::json!({ "workflows": {
            "state_machines": { "orders": "arn:aws:states:us-east-1:000000000000:stateMachine:orders" }
        }}))
        .unwrap();
        let plan = Plan::build(workflows, &registry()).unwrap();
        assert!(!plan.has_bindings());
        // Its problems are found with the rest.
        let bad: Config = serde_json::from_value(serde_json::json!({
            "worker": { "cancel_grace_secs": u64::MAX },
            "workflows": { "execution_name_prefix": "a b" },
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo"}],
        }))
        .unwrap();
        let fields: Vec<_> = Plan::build(bad, &registry())
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "worker.cancel_grace_secs",
                "workflows.execution_name_prefix"
            ]
        );
    }

    #[test]
    fn zero_limits_are_refused_by_the_parser() {
        let r: Result<Config, _> = serde_json::from_value(serde_json::json!({
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo", "concurrency": 0}]
        }));
        assert!(r.unwrap_err().to_string().contains("nonzero"));
    }
}
