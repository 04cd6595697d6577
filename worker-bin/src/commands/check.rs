//! `sfn-worker check`: validate the configuration, print the resolved plan.

use std::process::ExitCode;

use sfn_worker_core::Registry;

use crate::cli::EXIT_CONFIG;
use crate::config_file::{ConfigSource, load_plan};

/// The longest an in-flight `GetActivityTask` can keep a draining worker up.
const POLL_HOLD_SECS: u64 = 65;

pub(crate) fn check(source: &ConfigSource, registry: &Registry) -> ExitCode {
    let plan = match load_plan(source, registry) {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let w = &plan.config.worker;
    let aws = &plan.config.aws;
    println!("{}: ok", source.name());
    println!("[aws]");
    println!(
        "  region        = {}",
        aws.region.as_deref().unwrap_or("(from the environment)")
    );
    println!(
        "  endpoint_url  = {}",
        aws.endpoint_url
            .as_deref()
            .unwrap_or("(from the environment)")
    );
    println!("[worker]");
    println!("  max_concurrency     = {}", w.max_concurrency);
    println!("  shutdown_grace_secs = {}", w.shutdown_grace_secs);
    println!("  cancel_grace_secs   = {}", w.cancel_grace_secs);
    println!("  metrics_addr        = {}", w.metrics_addr);
    println!("  poll_timeout_secs   = {}", w.poll_timeout_secs);
    println!("  threads             = {}", w.threads);
    match w.send_task_rate_per_sec {
        Some(r) => println!("  send_task_rate_per_sec = {r}"),
        None => println!("  send_task_rate_per_sec = (no limit)"),
    }
    println!(
        "  worker_name         = {}",
        w.worker_name.as_deref().unwrap_or("(host name + pid)")
    );
    for (a, binding) in plan.activities.iter().zip(&plan.config.activities) {
        println!("[[activity]] {}", a.binding.name);
        println!("  arn            = {}", a.arn);
        println!("  handler        = {}", a.binding.kind);
        println!("  pollers        = {}", a.pollers);
        println!("  concurrency    = {}", a.binding.concurrency);
        match a.binding.heartbeat {
            Some(h) => println!("  heartbeat_secs = {}", h.as_secs()),
            None => println!("  heartbeat_secs = 0 (no timer heartbeats)"),
        }
        match a.binding.timeout {
            Some(t) => println!("  timeout_secs   = {}", t.as_secs()),
            None => println!("  timeout_secs   = (none)"),
        }
        if !binding.params.is_null() {
            println!("  params         = {}", masked(&binding.params));
        }
    }
    for (q, binding) in plan.queues.iter().zip(&plan.config.queues) {
        println!("[[queue]] {}", q.binding.name);
        println!(
            "  url                     = {}{}",
            q.url,
            if q.url.is_fifo() { " (FIFO)" } else { "" }
        );
        println!("  handler                 = {}", q.binding.kind);
        println!("  concurrency             = {}", q.binding.concurrency);
        println!("  receivers               = {}", q.receivers);
        match q.binding.heartbeat {
            Some(h) => println!("  heartbeat_secs          = {}", h.as_secs()),
            None => println!("  heartbeat_secs          = (no SendTaskHeartbeat)"),
        }
        println!(
            "  visibility_timeout_secs = {} (renewed every {} s)",
            q.visibility.as_secs(),
            (q.visibility.as_secs() / 3).max(1)
        );
        match q.binding.timeout {
            Some(t) => println!("  timeout_secs            = {}", t.as_secs()),
            None => println!(
                "  timeout_secs            = (none; SQS's 12-hour visibility ceiling applies)"
            ),
        }
        match &q.token {
            sfn_worker_core::config::TokenSource::Pointer(p) => {
                println!("  token_pointer           = {p}")
            }
            sfn_worker_core::config::TokenSource::Attribute(a) => {
                println!("  token_attribute         = {a}")
            }
        }
        println!(
            "  input_pointer           = {}",
            q.input_pointer.as_deref().unwrap_or("(the whole body)")
        );
        println!(
            "  on_malformed            = {}",
            config_name(&q.on_malformed)
        );
        println!(
            "  on_shutdown             = {}",
            config_name(&q.on_shutdown)
        );
        if !binding.params.is_null() {
            println!("  params                  = {}", masked(&binding.params));
        }
    }
    println!(
        "shutdown needs a termination grace period of at least {} s \
         (shutdown_grace_secs + cancel_grace_secs + {POLL_HOLD_SECS} s for a poll in flight)",
        w.shutdown_grace_secs + w.cancel_grace_secs + POLL_HOLD_SECS
    );
    ExitCode::SUCCESS
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
