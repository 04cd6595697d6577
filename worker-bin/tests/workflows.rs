//! The workflows client (library and CLI) against LocalStack: start, status,
//! output, stop, wait, history and executions, their typed errors and the
//! CLI's exit codes. Pass, Wait, Fail and Parallel state machines: no worker
//! runs here, except one activity answered by hand.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sfn_worker::core::config::WorkflowsConfig;
use sfn_worker::core::workflows::{
    ExecutionArn, ExecutionStatus, Failure, WorkflowError, Workflows,
};
use support::*;

/// Waits one second, then adds `result` to the input.
fn quick() -> Value {
    json!({ "StartAt": "W", "States": {
        "W": { "Type": "Wait", "Seconds": 1, "Next": "P" },
        "P": { "Type": "Pass", "Result": { "done": true }, "ResultPath": "$.result", "End": true }
    }})
}

/// Waits a minute: running for as long as a test looks.
fn slow() -> Value {
    json!({ "StartAt": "W", "States": { "W": { "Type": "Wait", "Seconds": 60, "End": true } } })
}

/// A Pass, then a Fail state.
fn failing() -> Value {
    json!({ "StartAt": "A", "States": {
        "A": { "Type": "Pass", "Next": "Boom" },
        "Boom": { "Type": "Fail", "Error": "Orders.Rejected", "Cause": "bad order" }
    }})
}

/// Workflow name -> a new state machine of that definition.
async fn machines(defs: &[(&str, Value)]) -> BTreeMap<String, String> {
    let sfn = sfn().await;
    let mut out = BTreeMap::new();
    for (name, def) in defs {
        let arn = create_state_machine(&sfn, &unique(&format!("wf-{name}")), def.clone()).await;
        out.insert((*name).to_owned(), arn);
    }
    out
}

type Parts = (String, Option<String>, Option<String>, Option<String>);

/// A failure's fields (`Failure` is `#[non_exhaustive]`: read, not built).
fn parts(f: Failure) -> Parts {
    (f.event, f.state, f.error, f.cause)
}

fn parts_of(event: &str, state: &str, error: &str, cause: &str) -> Parts {
    (
        event.into(),
        Some(state.into()),
        Some(error.into()),
        Some(cause.into()),
    )
}

fn config(machines: &BTreeMap<String, String>, prefix: &str) -> WorkflowsConfig {
    let mut config = WorkflowsConfig::default();
    config.execution_name_prefix = prefix.to_owned();
    config.state_machines = machines
        .iter()
        .map(|(k, v)| (k.clone(), v.parse().unwrap()))
        .collect();
    config
}

async fn client(machines: &BTreeMap<String, String>) -> Workflows {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let _ = sfn().await; // says how to start LocalStack if it is not up
    Workflows::new(&sdk, &config(machines, "wf-test")).unwrap()
}

/// A config file for the CLI with these workflows.
fn config_file(machines: &BTreeMap<String, String>) -> std::path::PathBuf {
    let mut text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n[workflows]\nexecution_name_prefix = \"cli\"\n[workflows.state_machines]\n",
        endpoint()
    );
    for (name, arn) in machines {
        text.push_str(&format!("{name} = \"{arn}\"\n"));
    }
    let path = scratch_dir("wf-cli").join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the CLI: (exit code, stdout, stderr).
fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfn-worker"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn execution_name_is_prefix_and_uuid(arn: &ExecutionArn, prefix: &str) -> bool {
    arn.name()
        .strip_prefix(&format!("{prefix}-"))
        .is_some_and(|u| u.len() == 36 && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

#[tokio::test(flavor = "multi_thread")]
async fn start_names_each_execution_prefix_and_uuid() {
    let m = machines(&[("slow", slow())]).await;
    let wf = client(&m).await;
    let a = wf.start("slow", &json!({ "n": 1 })).await.unwrap();
    let b = wf.start("slow", &json!({ "n": 1 })).await.unwrap();
    assert!(execution_name_is_prefix_and_uuid(&a, "wf-test"), "{a}");
    // The control: without a name, the same input starts a second execution.
    assert_ne!(a, b);
    assert_eq!(
        wf.status(&a).await.unwrap().status,
        ExecutionStatus::Running
    );
    assert_eq!(
        wf.status(&b).await.unwrap().status,
        ExecutionStatus::Running
    );
    for arn in [&a, &b] {
        wf.stop(arn, None, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_the_same_name_with_the_same_input_is_the_same_execution() {
    let m = machines(&[("slow", slow())]).await;
    let wf = client(&m).await;
    let name = unique("same");
    let first = wf
        .start_named("slow", &name, &json!({ "id": 7, "tags": ["a"] }))
        .await
        .unwrap();
    // Running: Step Functions itself answers with the same execution.
    let input: Box<serde_json::value::RawValue> =
        serde_json::from_str(r#"{ "tags": [ "a" ], "id": 7 }"#).unwrap();
    let again = wf.start_named("slow", &name, &input).await.unwrap();
    assert_eq!(first, again);
    // Ended: Step Functions answers ExecutionAlreadyExists, the client
    // finds the same execution with the same input.
    wf.stop(&first, None, None).await.unwrap();
    wf.wait(&first, Duration::from_secs(10)).await.unwrap();
    let after = wf
        .start_named("slow", &name, &json!({ "id": 7, "tags": ["a"] }))
        .await
        .unwrap();
    assert_eq!(first, after);
    let listed = wf.executions("slow", None, 100).await.unwrap();
    assert_eq!(listed.iter().filter(|e| e.name == name).count(), 1);
    // The control: other input under the same name is another request.
    let err = wf
        .start_named("slow", &name, &json!({ "id": 8 }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::ExecutionAlreadyExists { arn } if *arn == first),
        "{err:?}"
    );
    let err = wf
        .start_named("slow", "has space", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, WorkflowError::InvalidRequest { field: "name", .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_workflow_is_an_error_naming_the_known_ones() {
    let m = machines(&[("quick", quick()), ("slow", slow())]).await;
    let wf = client(&m).await;
    for err in [
        wf.start("nope", &json!({})).await.unwrap_err(),
        wf.executions("nope", None, 10).await.unwrap_err(),
    ] {
        match err {
            WorkflowError::UnknownWorkflow { name, known } => {
                assert_eq!(
                    (name.as_str(), known),
                    ("nope", vec!["quick".into(), "slow".into()])
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // The control: a known name starts.
    let arn = wf.start("quick", &json!({})).await.unwrap();
    wf.wait(&arn, Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_state_machine_is_a_typed_error() {
    let mut m = machines(&[("quick", quick())]).await;
    let gone = m["quick"].replace(":stateMachine:", ":stateMachine:gone-");
    m.insert("gone".into(), gone.clone());
    let wf = client(&m).await;
    let err = wf.start("gone", &json!({})).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::StateMachineNotFound { workflow, arn } if workflow == "gone" && *arn == gone),
        "{err:?}"
    );
    // The control: the one that exists starts.
    wf.start("quick", &json!({})).await.unwrap();
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Done {
    id: u32,
    result: Flag,
}
#[derive(Debug, serde::Deserialize, PartialEq)]
struct Flag {
    done: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_none_while_running_then_typed() {
    let m = machines(&[("quick", quick()), ("fail", failing())]).await;
    let wf = client(&m).await;
    let arn = wf.start("quick", &json!({ "id": 3 })).await.unwrap();
    let running = wf.status(&arn).await.unwrap();
    assert_eq!(running.status, ExecutionStatus::Running);
    assert_eq!(running.stopped, None);
    assert_eq!(wf.output::<Done>(&arn).await.unwrap(), None);
    let ended = wf.wait(&arn, Duration::from_secs(20)).await.unwrap();
    assert_eq!(ended.status, ExecutionStatus::Succeeded);
    assert!(ended.stopped.is_some());
    // The control: once it succeeded, the same call has the typed output.
    assert_eq!(
        wf.output::<Done>(&arn).await.unwrap(),
        Some(Done {
            id: 3,
            result: Flag { done: true }
        })
    );
    // Output that does not fit the type says so.
    let err = wf.output::<Vec<u32>>(&arn).await.unwrap_err();
    assert!(matches!(err, WorkflowError::Json { .. }), "{err:?}");
    // A failed execution has no output, and never will.
    let failed = wf.start("fail", &json!({})).await.unwrap();
    wf.wait(&failed, Duration::from_secs(20)).await.unwrap();
    match wf.output::<Value>(&failed).await.unwrap_err() {
        WorkflowError::Ended { status, error, .. } => {
            assert_eq!(status, ExecutionStatus::Failed);
            assert_eq!(error.as_deref(), Some("Orders.Rejected"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_gives_up_at_its_timeout() {
    let m = machines(&[("slow", slow()), ("quick", quick())]).await;
    let wf = client(&m).await;
    let arn = wf.start("slow", &json!({})).await.unwrap();
    let begun = Instant::now();
    let err = wf.wait(&arn, Duration::from_secs(1)).await.unwrap_err();
    let took = begun.elapsed();
    match err {
        WorkflowError::Timeout { status, waited, .. } => {
            assert_eq!(status, ExecutionStatus::Running);
            assert!(waited >= Duration::from_secs(1), "{waited:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The control: an execution that ends within the time is waited for.
    let quick = wf.start("quick", &json!({})).await.unwrap();
    let ended = wf.wait(&quick, Duration::from_secs(20)).await.unwrap();
    assert_eq!(ended.status, ExecutionStatus::Succeeded);
    wf.stop(&arn, None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_aborts_with_its_error_and_cause() {
    let m = machines(&[("slow", slow())]).await;
    let wf = client(&m).await;
    let stopped = wf.start("slow", &json!({})).await.unwrap();
    let left = wf.start("slow", &json!({})).await.unwrap();
    wf.stop(&stopped, Some("Ops.Cancelled"), Some("by the test"))
        .await
        .unwrap();
    let ended = wf.wait(&stopped, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ended.status, ExecutionStatus::Aborted);
    // LocalStack's DescribeExecution leaves out a stop's error and cause;
    // the history has them.
    assert_eq!(
        wf.history(&stopped).await.unwrap().map(parts),
        Some(parts_of(
            "ExecutionAborted",
            "W",
            "Ops.Cancelled",
            "by the test"
        ))
    );
    // The control: the execution not stopped runs on.
    assert_eq!(
        wf.status(&left).await.unwrap().status,
        ExecutionStatus::Running
    );
    let err = wf
        .stop(&left, Some(&"E".repeat(257)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WorkflowError::InvalidRequest { field: "error", .. }),
        "{err:?}"
    );
    wf.stop(&left, None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn history_names_the_failing_state_error_and_cause() {
    let sfn = sfn().await;
    let activity = create_activity(&sfn, &unique("wf-charge")).await;
    let charge = json!({ "StartAt": "Prep", "States": {
        "Prep": { "Type": "Pass", "Next": "Charge" },
        "Charge": { "Type": "Task", "Resource": activity, "TimeoutSeconds": 60, "End": true }
    }});
    let parallel = json!({ "StartAt": "Both", "States": { "Both": {
        "Type": "Parallel", "End": true, "Branches": [
            { "StartAt": "Fine", "States": { "Fine": { "Type": "Pass", "End": true } } },
            { "StartAt": "Bad", "States": { "Bad": { "Type": "Fail", "Error": "Inner.Bad", "Cause": "inner" } } }
        ]
    }}});
    let m = machines(&[
        ("fail", failing()),
        ("charge", charge),
        ("parallel", parallel),
        ("quick", quick()),
    ])
    .await;
    let wf = client(&m).await;
    let summary =
        |state: &str, error: &str, cause: &str| parts_of("ExecutionFailed", state, error, cause);

    let failed = wf.start("fail", &json!({})).await.unwrap();
    wf.wait(&failed, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        wf.history(&failed).await.unwrap().map(parts),
        Some(summary("Boom", "Orders.Rejected", "bad order"))
    );

    // A task whose worker failed it.
    let charged = wf.start("charge", &json!({})).await.unwrap();
    let task = sfn
        .get_activity_task()
        .activity_arn(&activity)
        .send()
        .await
        .unwrap();
    sfn.send_task_failure()
        .task_token(task.task_token.unwrap())
        .error("Payments.Declined")
        .cause("card expired")
        .send()
        .await
        .unwrap();
    let ended = wf.wait(&charged, Duration::from_secs(20)).await.unwrap();
    assert_eq!(ended.status, ExecutionStatus::Failed);
    assert_eq!(
        wf.history(&charged).await.unwrap().map(parts),
        Some(summary("Charge", "Payments.Declined", "card expired"))
    );

    // The innermost state, inside a Parallel's branch. Several times: the
    // branches race, and LocalStack points the Parallel's failure at
    // whichever wrote last (the history's two shapes are unit-tested).
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(wf.start("parallel", &json!({})).await.unwrap());
    }
    for par in &runs {
        wf.wait(par, Duration::from_secs(20)).await.unwrap();
        assert_eq!(
            wf.history(par).await.unwrap().map(parts),
            Some(summary("Bad", "Inner.Bad", "inner"))
        );
    }

    // The control: running and succeeded executions have no failure.
    let ok = wf.start("quick", &json!({})).await.unwrap();
    assert_eq!(wf.history(&ok).await.unwrap(), None, "running");
    wf.wait(&ok, Duration::from_secs(20)).await.unwrap();
    assert_eq!(wf.history(&ok).await.unwrap(), None, "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn executions_lists_a_workflow_filtered_by_status() {
    let m = machines(&[("slow", slow())]).await;
    let wf = client(&m).await;
    let a = wf.start("slow", &json!({})).await.unwrap();
    let b = wf.start("slow", &json!({})).await.unwrap();
    let c = wf.start("slow", &json!({})).await.unwrap();
    wf.stop(&c, None, None).await.unwrap();
    wf.wait(&c, Duration::from_secs(10)).await.unwrap();
    let arns = |list: Vec<sfn_worker::core::workflows::ExecutionSummary>| {
        let mut v: Vec<String> = list.into_iter().map(|e| e.arn.to_string()).collect();
        v.sort();
        v
    };
    let mut running = vec![a.to_string(), b.to_string()];
    running.sort();
    assert_eq!(
        arns(
            wf.executions("slow", Some(&ExecutionStatus::Running), 100)
                .await
                .unwrap()
        ),
        running
    );
    assert_eq!(
        arns(
            wf.executions("slow", Some(&ExecutionStatus::Aborted), 100)
                .await
                .unwrap()
        ),
        [c.to_string()]
    );
    // The control: without a filter, all three.
    assert_eq!(wf.executions("slow", None, 100).await.unwrap().len(), 3);
    assert_eq!(wf.executions("slow", None, 2).await.unwrap().len(), 2);
    for arn in [&a, &b] {
        wf.stop(arn, None, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_malformed_executions_are_typed_errors() {
    let m = machines(&[("quick", quick())]).await;
    let wf = client(&m).await;
    let real = wf.start("quick", &json!({})).await.unwrap();
    let missing: ExecutionArn = real
        .as_str()
        .replace(real.name(), "never-started")
        .parse()
        .unwrap();
    let not_found = |e: WorkflowError| {
        assert!(
            matches!(&e, WorkflowError::ExecutionNotFound { arn } if arn == missing.as_str()),
            "{e:?}"
        );
    };
    not_found(wf.status(&missing).await.unwrap_err());
    not_found(wf.wait(&missing, Duration::from_secs(1)).await.unwrap_err());
    not_found(wf.stop(&missing, None, None).await.unwrap_err());
    not_found(wf.history(&missing).await.unwrap_err());
    not_found(wf.output::<Value>(&missing).await.unwrap_err());
    for bad in [
        "not-an-arn",
        m["quick"].as_str(), // a state machine's ARN, not an execution's
    ] {
        assert!(
            matches!(
                bad.parse::<ExecutionArn>(),
                Err(WorkflowError::InvalidArn { .. })
            ),
            "{bad}"
        );
    }
    // The control: the execution that exists is found.
    assert_eq!(wf.status(&real).await.unwrap().arn, real);
}

// The CLI.

#[tokio::test(flavor = "multi_thread")]
async fn cli_start_wait_shows_the_outcome_and_exits_with_it() {
    let m = machines(&[("quick", quick()), ("fail", failing())]).await;
    let config = config_file(&m);
    let c = config.to_str().unwrap();
    let input = config.with_file_name("order.json");
    std::fs::write(&input, r#"{ "id": 42 }"#).unwrap();

    let (code, stdout, stderr) = cli(
        &[
            "start",
            "quick",
            "--input",
            input.to_str().unwrap(),
            "--wait",
            "-c",
            c,
        ],
        None,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    for shown in [
        "workflow   quick",
        "status     SUCCEEDED",
        r#"output     {"id":42,"result":{"done":true}}"#,
    ] {
        assert!(stdout.contains(shown), "{shown:?} not in:\n{stdout}");
    }
    // The control: a failing workflow exits 3 and says where and why.
    let (code, stdout, _) = cli(&["start", "fail", "--wait", "-c", c], None);
    assert_eq!(code, 3, "{stdout}");
    for shown in [
        "status     FAILED",
        "in state   Boom",
        "error      Orders.Rejected",
        "cause      bad order",
    ] {
        assert!(stdout.contains(shown), "{shown:?} not in:\n{stdout}");
    }
    // JSON from stdin, JSON out.
    let (code, stdout, stderr) = cli(
        &[
            "start", "quick", "--input", "-", "--wait", "--output", "json", "-c", c,
        ],
        Some(r#"{"id": 5}"#),
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "SUCCEEDED");
    assert_eq!(
        doc["output"],
        json!({ "id": 5, "result": { "done": true } })
    );
    assert_eq!(doc["workflow"], "quick");
    assert!(doc["name"].as_str().unwrap().starts_with("cli-"), "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_start_status_wait_stop_executions() {
    let m = machines(&[("slow", slow())]).await;
    let config = config_file(&m);
    let c = config.to_str().unwrap();

    // start prints the ARN alone.
    let (code, stdout, stderr) = cli(&["start", "slow", "--name", "by-hand", "-c", c], None);
    assert_eq!(code, 0, "{stderr}");
    let arn = stdout.trim().to_owned();
    assert!(arn.ends_with(":by-hand"), "{arn}");
    // The same again is the same execution.
    let (_, again, _) = cli(&["start", "slow", "--name", "by-hand", "-c", c], None);
    assert_eq!(again.trim(), arn);

    let (code, stdout, _) = cli(&["status", &arn, "-c", c], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("status     RUNNING"), "{stdout}");
    let (code, stdout, _) = cli(&["status", &arn, "--output", "json", "-c", c], None);
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (doc["status"].as_str(), doc["stopDate"].is_null()),
        (Some("RUNNING"), true)
    );

    // wait gives up after its timeout: exit 6.
    let begun = Instant::now();
    let (code, stdout, stderr) = cli(&["wait", &arn, "--timeout-secs", "1", "-c", c], None);
    assert_eq!(code, 6, "{stdout}{stderr}");
    assert!(stderr.contains("is still RUNNING after 1."), "{stderr}");
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );

    // executions, filtered.
    let (code, stdout, _) = cli(
        &["executions", "slow", "--status", "RUNNING", "-c", c],
        None,
    );
    assert_eq!(code, 0);
    assert!(stdout.starts_with("STATUS"), "{stdout}");
    assert!(stdout.contains(&arn), "{stdout}");

    let (code, stdout, stderr) = cli(
        &[
            "stop",
            &arn,
            "--error",
            "Ops.Cancelled",
            "--cause",
            "by hand",
            "-c",
            c,
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    for shown in [
        "status     ABORTED",
        "in state   W",
        "error      Ops.Cancelled",
        "cause      by hand",
    ] {
        assert!(stdout.contains(shown), "{shown:?} not in:\n{stdout}");
    }
    // wait on a stopped execution: exit 5 at once.
    let (code, _, _) = cli(&["wait", &arn, "-c", c], None);
    assert_eq!(code, 5);
    // The control for the filter: the stopped execution is not RUNNING.
    let (_, stdout, _) = cli(
        &["executions", "slow", "--status", "running", "-c", c],
        None,
    );
    assert!(!stdout.contains(&arn), "{stdout}");
    let (_, stdout, _) = cli(&["executions", "slow", "--output", "json", "-c", c], None);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc[0]["executionArn"], arn.as_str());
    assert_eq!(doc[0]["status"], "ABORTED");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_exit_codes_for_timed_out_executions_and_errors() {
    let timing_out = json!({ "StartAt": "W", "TimeoutSeconds": 1, "States": {
        "W": { "Type": "Wait", "Seconds": 30, "End": true }
    }});
    let m = machines(&[("late", timing_out)]).await;
    let config = config_file(&m);
    let c = config.to_str().unwrap();
    let (code, stdout, stderr) = cli(
        &["start", "late", "--wait", "--timeout-secs", "20", "-c", c],
        None,
    );
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("status     TIMED_OUT"), "{stdout}");

    let missing = m["late"].replace(":stateMachine:", ":execution:") + ":never-started";
    for (args, stdin, expected_code, expected) in [
        (
            vec!["start", "nope"],
            None,
            2,
            "unknown workflow `nope`; [workflows.state_machines] has: late",
        ),
        (
            vec!["status", "not-an-arn"],
            None,
            2,
            "invalid execution ARN \"not-an-arn\"",
        ),
        (
            vec!["wait", m["late"].as_str()],
            None,
            2,
            "invalid execution ARN",
        ),
        (vec!["status", missing.as_str()], None, 1, "does not exist"),
        (vec!["stop", missing.as_str()], None, 1, "does not exist"),
        (
            vec!["start", "late", "--input", "-"],
            Some("{not json"),
            2,
            "--input -: not JSON",
        ),
        (
            vec!["start", "late", "--input", "/nonexistent/in.json"],
            None,
            2,
            "--input /nonexistent/in.json:",
        ),
        (
            vec!["start", "late", "--name", "a b"],
            None,
            2,
            "name: expected 1 to 80 characters",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["-c", c]);
        let (code, _, stderr) = cli(&args, stdin);
        assert_eq!(code, expected_code, "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}
