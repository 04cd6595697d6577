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
        println!("[[activity]] {}", a.name);
        println!("  arn            = {}", a.arn);
        println!("  handler        = {}", a.kind);
        println!("  pollers        = {}", a.pollers);
        println!("  concurrency    = {}", a.concurrency);
        match a.heartbeat {
            Some(h) => println!("  heartbeat_secs = {}", h.as_secs()),
            None => println!("  heartbeat_secs = 0 (no timer heartbeats)"),
        }
        match a.timeout {
            Some(t) => println!("  timeout_secs   = {}", t.as_secs()),
            None => println!("  timeout_secs   = (none)"),
        }
        if !binding.params.is_null() {
            println!("  params         = {}", binding.params);
        }
    }
    for (q, binding) in plan.queues.iter().zip(&plan.config.queues) {
        println!("[[queue]] {}", q.name);
        println!(
            "  url                     = {}{}",
            q.url,
            if q.url.is_fifo() { " (FIFO)" } else { "" }
        );
        println!("  handler                 = {}", q.kind);
        println!("  concurrency             = {}", q.concurrency);
        println!("  receivers               = {}", q.receivers);
        match q.heartbeat {
            Some(h) => println!("  heartbeat_secs          = {}", h.as_secs()),
            None => println!("  heartbeat_secs          = (no SendTaskHeartbeat)"),
        }
        println!(
            "  visibility_timeout_secs = {} (renewed every {} s)",
            q.visibility.as_secs(),
            (q.visibility.as_secs() / 3).max(1)
        );
        match q.timeout {
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
            println!("  params                  = {}", binding.params);
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
