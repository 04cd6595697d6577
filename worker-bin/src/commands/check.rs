//! `sfn-worker check`: validate the configuration, print the resolved plan.

use std::process::ExitCode;

use sfn_worker_core::config::{Completes, TokenSource};
use sfn_worker_core::limits::MIN_POLL_TIMEOUT_SECS;
use sfn_worker_core::{Plan, Registry};

use crate::cli::EXIT_CONFIG;
use crate::config_file::{ConfigSource, load_plan};

/// The longest an in-flight `GetActivityTask` can keep a draining worker up:
/// the service's hold plus the network.
const POLL_HOLD_SECS: u64 = MIN_POLL_TIMEOUT_SECS;

/// `writeln!` into a String, which cannot fail.
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

pub(crate) fn check(source: &ConfigSource, registry: &Registry) -> ExitCode {
    let plan = match load_plan(source, registry) {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!("{}: ok", source.name());
    print!("{}", render(&plan));
    if !plan.has_bindings() {
        println!(
            "no [[activity]] or [[queue]] binding: the workflow commands (start, status, wait, stop, executions) can use this file; `run` refuses it"
        );
    }
    ExitCode::SUCCESS
}

/// The resolved plan as `check` shows it: every setting of the config types
/// (a test holds it to their schema), secrets masked.
fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &plan.config().worker;
    let aws = &plan.config().aws;
    line!(out, "[aws]");
    line!(
        out,
        "  region        = {}",
        aws.region.as_deref().unwrap_or("(from the environment)")
    );
    line!(
        out,
        "  endpoint_url  = {}",
        aws.endpoint_url
            .as_deref()
            .unwrap_or("(from the environment)")
    );
    line!(
        out,
        "  profile       = {}",
        aws.profile.as_deref().unwrap_or("(from the environment)")
    );
    line!(out, "  sfn_client    = {}", config_name(&aws.sfn_client));
    line!(out, "  sqs_client    = {}", config_name(&aws.sqs_client));
    line!(
        out,
        "  lambda_endpoint_url = {}",
        aws.lambda_endpoint_url
            .as_deref()
            .unwrap_or("(as endpoint_url, or from the environment)")
    );
    line!(
        out,
        "  lambda_callback_not_found = {}",
        config_name(&aws.lambda_callback_not_found)
    );
    line!(out, "[worker]");
    line!(out, "  max_concurrency     = {}", w.max_concurrency);
    line!(out, "  shutdown_grace_secs = {}", w.shutdown_grace_secs);
    line!(out, "  cancel_grace_secs   = {}", w.cancel_grace_secs);
    line!(out, "  metrics_addr        = {}", w.metrics_addr);
    line!(out, "  poll_timeout_secs   = {}", w.poll_timeout_secs);
    line!(out, "  threads             = {}", w.threads);
    match w.send_task_rate_per_sec {
        Some(r) => line!(out, "  send_task_rate_per_sec = {r}"),
        None => line!(out, "  send_task_rate_per_sec = (no limit)"),
    }
    line!(
        out,
        "  worker_name         = {}",
        w.worker_name.as_deref().unwrap_or("(host name + pid)")
    );
    for (a, binding) in plan.activities().iter().zip(&plan.config().activities) {
        line!(out, "[[activity]] {}", a.binding.name);
        line!(out, "  arn            = {}", a.arn);
        line!(out, "  handler        = {}", a.binding.kind);
        line!(out, "  pollers        = {}", a.pollers);
        line!(out, "  concurrency    = {}", a.binding.concurrency);
        match a.binding.heartbeat {
            Some(h) => line!(out, "  heartbeat_secs = {}", h.as_secs()),
            None => line!(out, "  heartbeat_secs = 0 (no timer heartbeats)"),
        }
        match a.binding.timeout {
            Some(t) => line!(out, "  timeout_secs   = {}", t.as_secs()),
            None => line!(out, "  timeout_secs   = (none)"),
        }
        line!(
            out,
            "  traceparent_pointer = {}",
            a.binding.traceparent_pointer.as_deref().unwrap_or("(none)")
        );
        line!(out, "  ledger         = {}", ledger_name(binding.ledger));
        line!(
            out,
            "  ledger_unreachable = {}",
            config_name(&binding.ledger_unreachable)
        );
        if !binding.params.is_null() {
            line!(out, "  params         = {}", masked(&binding.params));
        }
    }
    for (q, binding) in plan.queues().iter().zip(&plan.config().queues) {
        line!(out, "[[queue]] {}", q.binding.name);
        line!(
            out,
            "  url                     = {}{}",
            q.url,
            if q.url.is_fifo() { " (FIFO)" } else { "" }
        );
        line!(out, "  handler                 = {}", q.binding.kind);
        line!(out, "  concurrency             = {}", q.binding.concurrency);
        line!(out, "  receivers               = {}", q.receivers);
        match q.binding.heartbeat {
            Some(h) => line!(out, "  heartbeat_secs          = {}", h.as_secs()),
            None => line!(out, "  heartbeat_secs          = (no SendTaskHeartbeat)"),
        }
        line!(
            out,
            "  visibility_timeout_secs = {} (renewed every {} s)",
            q.visibility.as_secs(),
            (q.visibility.as_secs() / 3).max(1)
        );
        match q.binding.timeout {
            Some(t) => line!(out, "  timeout_secs            = {}", t.as_secs()),
            None => line!(
                out,
                "  timeout_secs            = (none; SQS's 12-hour visibility ceiling applies)"
            ),
        }
        line!(out, "  completes               = {}", q.completes.as_str());
        let (used, unused) = match q.completes {
            Completes::DurableCallback => (
                ("callback_id_pointer", "callback_id_attribute"),
                ("token_pointer", "token_attribute"),
            ),
            _ => (
                ("token_pointer", "token_attribute"),
                ("callback_id_pointer", "callback_id_attribute"),
            ),
        };
        match &q.token {
            TokenSource::Pointer(p) => {
                line!(out, "  {:<23} = {p}", used.0);
                line!(out, "  {:<23} = (none: the id is in the body)", used.1);
            }
            TokenSource::Attribute(a) => {
                line!(out, "  {:<23} = (none: the id is in an attribute)", used.0);
                line!(out, "  {:<23} = {a}", used.1);
            }
            _ => {}
        }
        for field in [unused.0, unused.1] {
            line!(
                out,
                "  {field:<23} = (does not apply: completes = {})",
                q.completes.as_str()
            );
        }
        line!(
            out,
            "  input_pointer           = {}",
            q.input_pointer.as_deref().unwrap_or("(the whole body)")
        );
        line!(
            out,
            "  traceparent_pointer     = {}",
            q.binding
                .traceparent_pointer
                .as_deref()
                .unwrap_or("(none; AWSTraceHeader is read)")
        );
        line!(
            out,
            "  on_malformed            = {}",
            config_name(&q.on_malformed)
        );
        line!(
            out,
            "  on_shutdown             = {}",
            config_name(&q.on_shutdown)
        );
        line!(
            out,
            "  ledger                  = {}",
            ledger_name(binding.ledger)
        );
        line!(
            out,
            "  ledger_unreachable      = {}",
            config_name(&binding.ledger_unreachable)
        );
        if !binding.params.is_null() {
            line!(
                out,
                "  params                  = {}",
                masked(&binding.params)
            );
        }
    }
    match &plan.config().ledger {
        Some(l) => {
            line!(out, "[ledger]");
            line!(out, "  table        = {}", l.table);
            line!(
                out,
                "  endpoint_url = {}",
                l.endpoint_url
                    .as_deref()
                    .unwrap_or("(as DynamoDB's, from the environment)")
            );
            line!(
                out,
                "  lease_secs   = {} (renewed every {} s)",
                l.lease_secs,
                l.lease_secs.get() / 3
            );
            line!(out, "  keep_secs    = {}", l.keep_secs);
        }
        None => line!(out, "[ledger] (none: no binding claims its tasks)"),
    }
    let wf = &plan.config().workflows;
    line!(out, "[workflows]");
    line!(
        out,
        "  execution_name_prefix = {} (names: {}-<uuid>)",
        wf.execution_name_prefix,
        wf.execution_name_prefix
    );
    line!(out, "  max_retries           = {}", wf.max_retries);
    line!(out, "  request_timeout_secs  = {}", wf.request_timeout_secs);
    if wf.state_machines.is_empty() {
        line!(
            out,
            "  state_machines        = (none: status, wait and stop take ARNs; start and executions need a name here)"
        );
    } else {
        line!(out, "  state_machines        = {}", wf.state_machines.len());
        let width = wf.state_machines.keys().map(String::len).max().unwrap_or(0);
        for (name, arn) in &wf.state_machines {
            line!(out, "    {name:<width$} -> {arn}");
        }
    }
    line!(
        out,
        "shutdown needs a termination grace period of at least {} s \
         (shutdown_grace_secs + cancel_grace_secs + {POLL_HOLD_SECS} s for a poll in flight)",
        w.shutdown_grace_secs + w.cancel_grace_secs + POLL_HOLD_SECS
    );
    out
}

fn ledger_name(on: bool) -> &'static str {
    if on {
        "true (each task is claimed in [ledger] before it runs)"
    } else {
        "false"
    }
}

/// A value as it is spelled in the configuration file.
fn config_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What stands in for a secret value.
const MASK: &str = "***";

/// `params` with secret values masked, for printing: every value of a
/// `headers` or `env` table (a `{ env = "NAME" }` reference stays: it names
/// a variable, it is not the secret), every string under a key that sounds
/// secret, and passwords in URLs.
fn masked(params: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn secret_key(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        [
            "secret",
            "token",
            "password",
            "passwd",
            "authorization",
            "credential",
            "cookie",
            "apikey",
            "api_key",
            "api-key",
            "private",
        ]
        .iter()
        .any(|word| k.contains(word))
    }
    fn walk(v: &Value, mask_strings: bool) -> Value {
        match v {
            Value::String(_) if mask_strings => Value::String(MASK.to_owned()),
            Value::String(s) => Value::String(without_password(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| walk(i, mask_strings)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let child = match (k.as_str(), v) {
                            // { env = "NAME" }: a reference, shown as is.
                            ("env", Value::String(_)) if map.len() == 1 && !mask_strings => {
                                v.clone()
                            }
                            ("headers" | "env", Value::Object(_)) => walk_table(v),
                            _ => walk(v, mask_strings || secret_key(k)),
                        };
                        (k.clone(), child)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    /// A table of secrets: each value masked unless it is a reference.
    fn walk_table(v: &Value) -> Value {
        let Value::Object(map) = v else {
            return walk(v, true);
        };
        Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let child = match v {
                        Value::Object(r)
                            if r.len() == 1 && r.get("env").is_some_and(Value::is_string) =>
                        {
                            v.clone()
                        }
                        _ => walk(v, true),
                    };
                    (k.clone(), child)
                })
                .collect(),
        )
    }
    fn without_password(s: &str) -> String {
        // scheme://user:password@host...
        if let Some((scheme, rest)) = s.split_once("://")
            && let Some((userinfo, host)) = rest.split_once('@')
            && !userinfo.contains('/')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:{MASK}@{host}");
        }
        s.to_owned()
    }
    walk(params, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the config types (their JSON schema), as
    /// `(section, field)`: `("worker", "threads")`, `("queue", "url")`.
    fn schema_fields() -> Vec<(String, String)> {
        let schema = serde_json::to_value(schemars::schema_for!(sfn_worker_core::Config)).unwrap();
        let defs = &schema["$defs"];
        let mut fields = Vec::new();
        for (section, prop) in schema["properties"].as_object().unwrap() {
            // A list, a table, or an optional table (`anyOf` with null).
            let optional = prop["anyOf"]
                .as_array()
                .and_then(|any| any.iter().find_map(|p| p["$ref"].as_str()));
            let r = prop["items"]["$ref"]
                .as_str()
                .or(prop["$ref"].as_str())
                .or(optional)
                .unwrap();
            let def = &defs[r.trim_start_matches("#/$defs/")];
            for name in def["properties"].as_object().unwrap().keys() {
                fields.push((section.clone(), name.clone()));
            }
        }
        fields
    }

    #[test]
    fn check_shows_every_setting_of_the_config_types() {
        let text = r#"
            [[activity]]
            arn = "arn:aws:states:us-east-1:000000000000:activity:a"
            handler = "exec"
            params = { command = ["true"] }
            [[queue]]
            url = "http://localhost:4566/000000000000/q"
            handler = "exec"
            token_attribute = "TaskToken"
            params = { command = ["true"] }
            [workflows.state_machines]
            orders = "arn:aws:states:us-east-1:000000000000:stateMachine:orders"
            [ledger]
            table = "sfn-worker-ledger"
        "#;
        let plan = load_plan(
            &ConfigSource::Text(text.to_owned()),
            &sfn_worker_handlers::builtins(),
        )
        .unwrap();
        let out = render(&plan);
        let missing = not_shown(&out);
        assert!(
            missing.is_empty(),
            "check does not show {missing:?}:\n{out}"
        );
        // The control: a setting left out of the output is caught.
        let without: String = out
            .lines()
            .filter(|l| !l.trim_start().starts_with("profile "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            not_shown(&without),
            [("aws".to_owned(), "profile".to_owned())]
        );
    }

    /// The schema's fields that `out` has no `field = value` line for (a
    /// binding's `name` is its section header).
    fn not_shown(out: &str) -> Vec<(String, String)> {
        let section_of = |line: &str| {
            [
                "[aws]",
                "[worker]",
                "[workflows]",
                "[ledger]",
                "[[activity]]",
                "[[queue]]",
            ]
            .into_iter()
            .find(|s| line.starts_with(s))
        };
        let mut shown = std::collections::HashSet::new();
        let mut section = "";
        for line in out.lines() {
            if let Some(s) = section_of(line) {
                section = s.trim_matches(['[', ']']);
                if !["aws", "worker", "workflows", "ledger"].contains(&section) {
                    shown.insert((section.to_owned(), "name".to_owned()));
                }
            } else if let Some((field, _)) = line.trim().split_once(" = ") {
                shown.insert((section.to_owned(), field.trim().to_owned()));
            }
        }
        schema_fields()
            .into_iter()
            .filter(|f| !shown.contains(f))
            .collect()
    }

    #[test]
    fn secrets_are_masked_and_references_are_not() {
        let params = serde_json::json!({
            "url": "https://user:hunter2@api.internal/x",
            "headers": { "Authorization": "Bearer abc", "X-Key": { "env": "API_KEY" }, "X-Team": "orders" },
            "env": { "DB_PASSWORD": "pw", "MODE": "fast" },
            "client_secret": "s",
            "command": ["./run.sh", "--fast"],
            "timeout_secs": 30
        });
        assert_eq!(
            masked(&params),
            serde_json::json!({
                "url": "https://user:***@api.internal/x",
                "headers": { "Authorization": "***", "X-Key": { "env": "API_KEY" }, "X-Team": "***" },
                "env": { "DB_PASSWORD": "***", "MODE": "***" },
                "client_secret": "***",
                "command": ["./run.sh", "--fast"],
                "timeout_secs": 30
            })
        );
    }
}
