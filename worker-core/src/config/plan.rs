use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{ActivityArn, Config, ConfigError};
use crate::handler::{Handler, Registry};

/// A configuration checked against the registry: every binding has its handler
/// built. This is what a [`crate::Worker`] runs and what `sfn-worker check` prints.
#[derive(Clone)]
pub struct Plan {
    /// The configuration it came from.
    pub config: Config,
    /// One entry per `[[activity]]`, in file order.
    pub activities: Vec<ActivityPlan>,
}

/// One activity binding, resolved.
#[derive(Clone)]
pub struct ActivityPlan {
    /// The binding's name (logs, metrics).
    pub name: Arc<str>,
    /// The activity.
    pub arn: ActivityArn,
    /// The handler kind's name.
    pub kind: Arc<str>,
    /// The handler built from the binding's params.
    pub handler: Arc<dyn Handler>,
    /// Long polls kept open.
    pub pollers: usize,
    /// Tasks running at once.
    pub concurrency: usize,
    /// Timer heartbeat interval; `None` sends none.
    pub heartbeat: Option<Duration>,
    /// Handler time limit.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ActivityPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityPlan")
            .field("name", &self.name)
            .field("arn", &self.arn.as_str())
            .field("kind", &self.kind)
            .field("pollers", &self.pollers)
            .field("concurrency", &self.concurrency)
            .field("heartbeat", &self.heartbeat)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Plan {
    /// Check `config` beyond what parsing checks, and build every handler.
    /// Returns every problem found, not just the first.
    pub fn build(config: Config, registry: &Registry) -> Result<Plan, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let w = &config.worker;
        if w.poll_timeout_secs < 65 {
            errors.push(ConfigError::new(
                "worker.poll_timeout_secs",
                format!(
                    "expected at least 65 (Step Functions holds a poll up to 60 s), got {}",
                    w.poll_timeout_secs
                ),
            ));
        }
        if let Some(name) = &w.worker_name
            && (name.is_empty() || name.chars().count() > 80)
        {
            errors.push(ConfigError::new(
                "worker.worker_name",
                "expected 1 to 80 characters",
            ));
        }
        if config.activities.is_empty() {
            errors.push(ConfigError::new(
                "activity",
                "expected at least one [[activity]] binding; nothing to serve",
            ));
        }

        let mut names = HashSet::new();
        let mut arns = HashSet::new();
        let mut activities = Vec::new();
        for (i, b) in config.activities.iter().enumerate() {
            let at = |f: &str| format!("activity[{i}].{f}");
            let name = b.resolved_name();
            if name.is_empty() {
                errors.push(ConfigError::new(at("name"), "expected a non-empty name"));
            }
            if !names.insert(name.to_owned()) {
                errors.push(ConfigError::new(
                    at("name"),
                    format!("binding name {name:?} is used twice; names must be unique"),
                ));
            }
            if !arns.insert(b.arn.as_str().to_owned()) {
                errors.push(ConfigError::new(
                    at("arn"),
                    format!(
                        "{} is bound twice; use one binding with more pollers",
                        b.arn
                    ),
                ));
            }
            if b.pollers > b.concurrency {
                errors.push(ConfigError::new(
                    at("pollers"),
                    format!(
                        "expected at most concurrency ({}), got {}: every open poll holds a slot",
                        b.concurrency, b.pollers
                    ),
                ));
            }
            match registry.build(&b.handler, &b.params) {
                Ok(handler) => activities.push(ActivityPlan {
                    name: name.into(),
                    arn: b.arn.clone(),
                    kind: b.handler.as_str().into(),
                    handler,
                    pollers: b.pollers.get(),
                    concurrency: b.concurrency.get(),
                    heartbeat: (b.heartbeat_secs > 0)
                        .then(|| Duration::from_secs(b.heartbeat_secs)),
                    timeout: b.timeout_secs.map(|t| Duration::from_secs(t.get())),
                }),
                Err(e @ crate::handler::ParamsError::UnknownKind { .. }) => {
                    errors.push(ConfigError::new(at("handler"), e.to_string()))
                }
                Err(crate::handler::ParamsError::Invalid { path, message }) => {
                    let field = if path == "." {
                        at("params")
                    } else {
                        at(&format!("params.{path}"))
                    };
                    errors.push(ConfigError::new(field, message))
                }
                Err(e) => errors.push(ConfigError::new(at("params"), e.to_string())),
            }
        }
        if errors.is_empty() {
            Ok(Plan { config, activities })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

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
        assert_eq!(&*a.name, "resize");
        assert_eq!((a.pollers, a.concurrency), (2, 16));
        assert_eq!(a.heartbeat, Some(Duration::from_secs(20)));
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
    fn zero_limits_are_refused_by_the_parser() {
        let r: Result<Config, _> = serde_json::from_value(serde_json::json!({
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo", "concurrency": 0}]
        }));
        assert!(r.unwrap_err().to_string().contains("nonzero"));
    }
}
