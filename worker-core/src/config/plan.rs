use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::queue::{MAX_VISIBILITY_SECS, MIN_VISIBILITY_SECS, check_pointer};
use super::{
    ActivityArn, Config, ConfigError, MAX_SECS, OnMalformed, OnShutdown, QueueBinding, QueueUrl,
};
use crate::handler::{Handler, ParamsError, Registry};

/// A configuration checked against the registry: every binding has its handler
/// built. This is what a [`crate::Worker`] runs and what `sfn-worker check` prints.
#[derive(Clone)]
pub struct Plan {
    /// The configuration it came from.
    pub config: Config,
    /// One entry per `[[activity]]`, in file order.
    pub activities: Vec<ActivityPlan>,
    /// One entry per `[[queue]]`, in file order.
    pub queues: Vec<QueuePlan>,
}

/// Where an SQS message carries its task token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A JSON pointer into the body.
    Pointer(String),
    /// A message attribute (string).
    Attribute(String),
}

/// One queue binding, resolved.
#[derive(Clone)]
pub struct QueuePlan {
    /// The binding's name (logs, metrics).
    pub name: Arc<str>,
    /// The queue.
    pub url: QueueUrl,
    /// The handler kind's name.
    pub kind: Arc<str>,
    /// The handler built from the binding's params.
    pub handler: Arc<dyn Handler>,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Concurrent receives.
    pub receivers: usize,
    /// `SendTaskHeartbeat` interval, if any.
    pub heartbeat: Option<Duration>,
    /// Handler time limit.
    pub timeout: Option<Duration>,
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
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("kind", &self.kind)
            .field("concurrency", &self.concurrency)
            .field("receivers", &self.receivers)
            .field("visibility", &self.visibility)
            .field("token", &self.token)
            .finish()
    }
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
        for (field, secs) in [
            ("shutdown_grace_secs", w.shutdown_grace_secs),
            ("cancel_grace_secs", w.cancel_grace_secs),
            ("poll_timeout_secs", w.poll_timeout_secs),
        ] {
            check_secs(&format!("worker.{field}"), secs, &mut errors);
        }
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
        if config.activities.is_empty() && config.queues.is_empty() {
            errors.push(ConfigError::new(
                "activity",
                "expected at least one [[activity]] or [[queue]] binding; nothing to serve",
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
            check_secs(&at("heartbeat_secs"), b.heartbeat_secs, &mut errors);
            if let Some(t) = b.timeout_secs {
                check_secs(&at("timeout_secs"), t.get(), &mut errors);
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
            if let Some(handler) = build_handler(registry, &b.handler, &b.params, &at, &mut errors)
            {
                activities.push(ActivityPlan {
                    name: name.into(),
                    arn: b.arn.clone(),
                    kind: b.handler.as_str().into(),
                    handler,
                    pollers: b.pollers.get(),
                    concurrency: b.concurrency.get(),
                    heartbeat: (b.heartbeat_secs > 0)
                        .then(|| Duration::from_secs(b.heartbeat_secs)),
                    timeout: b.timeout_secs.map(|t| Duration::from_secs(t.get())),
                });
            }
        }
        let mut queues = Vec::new();
        for (i, q) in config.queues.iter().enumerate() {
            let at = |f: &str| format!("queue[{i}].{f}");
            if let Some(plan) = queue_plan(q, registry, &at, &mut errors) {
                if !names.insert(plan.name.to_string()) {
                    errors.push(ConfigError::new(
                        at("name"),
                        format!(
                            "binding name {:?} is used twice; names must be unique",
                            plan.name
                        ),
                    ));
                }
                queues.push(plan);
            }
        }
        if errors.is_empty() {
            Ok(Plan {
                config,
                activities,
                queues,
            })
        } else {
            Err(errors)
        }
    }
}

/// A duration setting must fit the clock arithmetic: at most [`MAX_SECS`].
fn check_secs(field: &str, secs: u64, errors: &mut Vec<ConfigError>) {
    if secs > MAX_SECS {
        errors.push(ConfigError::new(
            field,
            format!("expected at most {MAX_SECS} (a year), got {secs}"),
        ));
    }
}

/// Build a binding's handler, recording what is wrong under `at(...)`.
fn build_handler(
    registry: &Registry,
    kind: &str,
    params: &serde_json::Value,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn Handler>> {
    match registry.build(kind, params) {
        Ok(handler) => return Some(handler),
        Err(e @ ParamsError::UnknownKind { .. }) => {
            errors.push(ConfigError::new(at("handler"), e.to_string()))
        }
        Err(ParamsError::Invalid { path, message }) => {
            let field = if path == "." {
                at("params")
            } else {
                at(&format!("params.{path}"))
            };
            errors.push(ConfigError::new(field, message))
        }
        Err(e) => errors.push(ConfigError::new(at("params"), e.to_string())),
    }
    None
}

fn queue_plan(
    q: &QueueBinding,
    registry: &Registry,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<ConfigError>,
) -> Option<QueuePlan> {
    let before = errors.len();
    let visibility = q.visibility_timeout_secs.get();
    if visibility > MAX_VISIBILITY_SECS {
        errors.push(ConfigError::new(
            at("visibility_timeout_secs"),
            format!("expected at most {MAX_VISIBILITY_SECS} (SQS's 12 hours), got {visibility}"),
        ));
    }
    if visibility < MIN_VISIBILITY_SECS {
        errors.push(ConfigError::new(
            at("visibility_timeout_secs"),
            format!(
                "expected at least {MIN_VISIBILITY_SECS}, got {visibility}: the worker renews it every \
                 third of the timeout, and a shorter one lapses after a single slow renewal"
            ),
        ));
    }
    for (field, secs) in [
        ("heartbeat_secs", q.heartbeat_secs),
        ("timeout_secs", q.timeout_secs),
    ] {
        if let Some(secs) = secs {
            check_secs(&at(field), secs.get(), errors);
        }
    }
    let token = match (&q.token_pointer, &q.token_attribute) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                at("token_attribute"),
                "set token_pointer or token_attribute, not both",
            ));
            TokenSource::Pointer(String::new())
        }
        (_, Some(attr)) if attr.is_empty() => {
            errors.push(ConfigError::new(
                at("token_attribute"),
                "expected an attribute name",
            ));
            TokenSource::Pointer(String::new())
        }
        (_, Some(attr)) => TokenSource::Attribute(attr.clone()),
        (pointer, None) => {
            let pointer = pointer.clone().unwrap_or_else(|| "/taskToken".to_owned());
            if let Err(e) = check_pointer(&pointer) {
                errors.push(ConfigError::new(at("token_pointer"), e));
            }
            TokenSource::Pointer(pointer)
        }
    };
    if let Some(p) = &q.input_pointer
        && let Err(e) = check_pointer(p)
    {
        errors.push(ConfigError::new(at("input_pointer"), e));
    }
    let concurrency = q.concurrency.get();
    let receivers = q
        .receivers
        .map_or_else(|| concurrency.div_ceil(10).clamp(1, 4), |r| r.get());
    if receivers > concurrency {
        errors.push(ConfigError::new(
            at("receivers"),
            format!("expected at most concurrency ({concurrency}), got {receivers}: every receive holds a slot"),
        ));
    }
    let handler = build_handler(registry, &q.handler, &q.params, at, errors)?;
    if errors.len() > before {
        return None;
    }
    Some(QueuePlan {
        name: q.resolved_name().into(),
        url: q.url.clone(),
        kind: q.handler.as_str().into(),
        handler,
        concurrency,
        receivers,
        heartbeat: q.heartbeat_secs.map(|h| Duration::from_secs(h.get())),
        timeout: q.timeout_secs.map(|t| Duration::from_secs(t.get())),
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
            (&*q.name, q.receivers, q.visibility.as_secs()),
            ("callbacks", 4, 60)
        );
        assert_eq!(q.token, TokenSource::Attribute("TaskToken".into()));
        assert_eq!(q.heartbeat, None);
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
    fn zero_limits_are_refused_by_the_parser() {
        let r: Result<Config, _> = serde_json::from_value(serde_json::json!({
            "activity": [{"arn": "arn:aws:states:us-east-1:000000000000:activity:a", "handler": "echo", "concurrency": 0}]
        }));
        assert!(r.unwrap_err().to_string().contains("nonzero"));
    }
}
