//! How the workflow commands print answers: aligned text by default,
//! `--output json` for scripts (field names as Step Functions' own API
//! spells them).

use std::time::SystemTime;

use serde_json::{Value, json};
use sfn_worker_core::workflows::{Execution, ExecutionArn, ExecutionSummary, Failure, rfc3339};

use super::Output;

/// `start` without `--wait`: the ARN alone, so `ARN=$(sfn-worker start ...)` works.
pub(super) fn started(arn: &ExecutionArn, format: Output) {
    match format {
        Output::Table => println!("{arn}"),
        Output::Json => println!("{}", json!({ "executionArn": arn.as_str() })),
    }
}

/// One execution: key and value per line, or one JSON object.
pub(super) fn execution(
    e: &Execution,
    workflow: Option<&str>,
    failure: Option<&Failure>,
    format: Output,
) {
    let error = failure
        .and_then(|f| f.error.as_deref())
        .or(e.error.as_deref());
    let cause = failure
        .and_then(|f| f.cause.as_deref())
        .or(e.cause.as_deref());
    match format {
        Output::Json => {
            let doc = json!({
                "executionArn": e.arn.as_str(),
                "name": e.name,
                "workflow": workflow,
                "stateMachineArn": e.state_machine_arn,
                "status": e.status.as_str(),
                "startDate": rfc3339(e.started),
                "stopDate": e.stopped.map(rfc3339),
                "output": e.output.as_deref().map(json_or_text),
                "error": error,
                "cause": cause,
                "failure": failure.map(|f| json!({
                    "event": f.event,
                    "state": f.state,
                    "error": f.error,
                    "cause": f.cause,
                })),
            });
            println!("{doc:#}");
        }
        Output::Table => {
            let mut rows: Vec<(&str, String)> = vec![("execution", e.arn.to_string())];
            match workflow {
                Some(w) => rows.push(("workflow", w.to_owned())),
                None => rows.push(("machine", e.state_machine_arn.clone())),
            }
            rows.push(("status", e.status.to_string()));
            rows.push(("started", rfc3339(e.started)));
            if let Some(stopped) = e.stopped {
                rows.push((
                    "stopped",
                    format!("{} ({})", rfc3339(stopped), took(e.started, stopped)),
                ));
            }
            if let Some(state) = failure.and_then(|f| f.state.as_deref()) {
                rows.push(("in state", state.to_owned()));
            }
            if let Some(error) = error {
                rows.push(("error", error.to_owned()));
            }
            if let Some(cause) = cause {
                rows.push(("cause", cause.to_owned()));
            }
            if let Some(output) = &e.output {
                rows.push(("output", output.clone()));
            }
            for (key, value) in rows {
                println!("{key:<10} {value}");
            }
        }
    }
}

/// A listing: one row per execution, or a JSON array.
pub(super) fn executions(list: &[ExecutionSummary], format: Output) {
    match format {
        Output::Json => {
            let doc: Vec<Value> = list
                .iter()
                .map(|e| {
                    json!({
                        "executionArn": e.arn.as_str(),
                        "name": e.name,
                        "status": e.status.as_str(),
                        "startDate": rfc3339(e.started),
                        "stopDate": e.stopped.map(rfc3339),
                    })
                })
                .collect();
            println!("{:#}", Value::Array(doc));
        }
        Output::Table => {
            println!(
                "{:<15} {:<24}  {:<24}  EXECUTION",
                "STATUS", "STARTED", "STOPPED"
            );
            for e in list {
                println!(
                    "{:<15} {:<24}  {:<24}  {}",
                    e.status.as_str(),
                    rfc3339(e.started),
                    e.stopped.map(rfc3339).as_deref().unwrap_or("-"),
                    e.arn
                );
            }
        }
    }
}

/// Output as JSON where it is JSON (it always is, from Step Functions).
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn took(from: SystemTime, to: SystemTime) -> String {
    let secs = to.duration_since(from).unwrap_or_default().as_secs_f64();
    format!("{secs:.1} s")
}
