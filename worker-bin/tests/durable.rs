//! Lambda durable-execution callbacks end to end: AWS's local
//! durable-execution runner runs a real Python durable function
//! (`examples/durable-function/function.py`) whose `wait_for_callback` submitter puts the
//! callback id on a LocalStack SQS queue; the real `sfn-worker` binary
//! receives it, runs the exec fixture, and completes the callback on the
//! runner's Lambda API.
//!
//! Needs LocalStack and the runner's Python (scripts/test.sh provides both:
//! `DURABLE_RUNNER_PYTHON` names the runner's interpreter).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// The local durable-execution runner, on a port of its own.
struct Runner {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Runner {
    fn launch() -> Runner {
        let python = std::env::var("DURABLE_RUNNER_PYTHON").unwrap_or_else(|_| {
            panic!(
                "DURABLE_RUNNER_PYTHON is not set: run the tests with scripts/test.sh, or set it \
                 to the python that scripts/durable-runner.sh install prints"
            )
        });
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/durable-function");
        let port = free_port();
        let mut child = Command::new(python)
            .arg("runner.py")
            .arg(port.to_string())
            .current_dir(dir)
            .env("SQS_ENDPOINT_URL", endpoint())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "the runner did not start");
        Runner {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// `[aws]` lines pointing the worker's durable callbacks here.
    fn aws_config(&self) -> String {
        format!("lambda_endpoint_url = \"{}\"", self.url)
    }

    /// Start the durable function; its execution ARN.
    async fn start(&self, queue_url: &str, input: Value, timeout: u64, heartbeat: u64) -> String {
        let event = json!({
            "queue_url": queue_url, "input": input, "timeout": timeout, "heartbeat": heartbeat,
        });
        let body = json!({
            "AccountId": "000000000000", "FunctionName": "orders", "FunctionQualifier": "$LATEST",
            "ExecutionName": unique("exec"), "ExecutionTimeoutSeconds": 600,
            "ExecutionRetentionPeriodDays": 1, "Input": event.to_string(),
        });
        let answer: Value = self
            .http
            .post(format!("{}/start-durable-execution", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        answer["ExecutionArn"].as_str().unwrap().to_owned()
    }

    async fn get(&self, arn: &str, suffix: &str) -> Value {
        let arn: String = arn
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.http
            .get(format!(
                "{}/2025-12-01/durable-executions/{arn}{suffix}",
                self.url
            ))
            .send()
            .await
            .map(|r| r.text())
            .unwrap()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap()
    }

    /// The execution once it is no longer RUNNING.
    async fn ended(&self, arn: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let e = self.get(arn, "").await;
            if e["Status"] != "RUNNING" {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "{arn} still RUNNING after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the function returned: `{"result": <the worker's report>}`.
    fn result(execution: &Value) -> Value {
        assert_eq!(execution["Status"], "SUCCEEDED", "{execution}");
        serde_json::from_str(execution["Result"].as_str().unwrap()).unwrap()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A durable-callback binding running the exec fixture.
fn binding(name: &str, url: &str, extra: &str) -> String {
    queue_exec_binding(
        name,
        url,
        &format!("completes = \"durable-callback\"\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_executions_complete_with_the_handlers_output() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let name = unique("dur");
    let url = create_queue(&sqs, &name).await;
    let dir = scratch_dir("durable-fifty");
    let worker = Daemon::start_full(
        &dir,
        "sfn-worker",
        &runner.aws_config(),
        "",
        &binding(&name, &url, "concurrency = 16"),
        &[],
        &[],
    );
    let mut arns = Vec::new();
    for n in 0..50 {
        arns.push((n, runner.start(&url, json!({ "n": n }), 120, 0).await));
    }
    for (n, arn) in arns {
        let e = runner.ended(&arn, Duration::from_secs(120)).await;
        assert_eq!(
            Runner::result(&e),
            json!({ "result": { "square": n * n } }),
            "{}",
            worker.logs()
        );
    }
    let m = worker.metrics();
    assert_eq!(
        counter(
            &m,
            "sfn_worker_tasks_completed_total",
            &[("source", "durable_callback"), ("outcome", "succeeded")]
        ),
        50.0,
        "{m}"
    );
    assert_eq!(queue_depth(&sqs, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_error_arrives_as_the_callback_failure_with_its_name() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let name = unique("dur-fail");
    let url = create_queue(&sqs, &name).await;
    let dir = scratch_dir("durable-fail");
    let worker = Daemon::start_full(
        &dir,
        "sfn-worker",
        &runner.aws_config(),
        "",
        &binding(&name, &url, ""),
        &[],
        &[],
    );
    let arn = runner
        .start(&url, json!({ "fail": "Orders.Rejected" }), 120, 0)
        .await;
    let e = runner.ended(&arn, Duration::from_secs(60)).await;
    assert_eq!(e["Status"], "FAILED", "{e}\n{}", worker.logs());
    // The function sees the SDK's CallbackExternalError; the name the
    // worker sent is the callback's failure in the execution's history.
    let history = runner.get(&arn, "/history").await;
    let failed = history["Events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ev| ev["EventType"] == "CallbackFailed")
        .unwrap_or_else(|| panic!("no CallbackFailed event: {history}"));
    let error = &failed["CallbackFailedDetails"]["Error"]["Payload"];
    assert_eq!(error["ErrorType"], "Orders.Rejected", "{failed}");
    assert_eq!(error["ErrorMessage"], "the task asked to fail", "{failed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_callback_alive_past_its_heartbeat_timeout() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let (kept, control) = (unique("dur-hb"), unique("dur-nohb"));
    let (kept_url, control_url) = (
        create_queue(&sqs, &kept).await,
        create_queue(&sqs, &control).await,
    );
    let dir = scratch_dir("durable-heartbeat");
    let bindings = format!(
        "{}\n{}",
        binding(&kept, &kept_url, "heartbeat_secs = 1"),
        binding(&control, &control_url, "")
    );
    let worker = Daemon::start_full(
        &dir,
        "sfn-worker",
        &runner.aws_config(),
        "",
        &bindings,
        &[],
        &[],
    );
    // A 3 s heartbeat timeout, and 7 s of work.
    let task = json!({ "n": 3, "sleep": 7 });
    let kept_arn = runner.start(&kept_url, task.clone(), 120, 3).await;
    let control_arn = runner.start(&control_url, task, 120, 3).await;
    let e = runner.ended(&kept_arn, Duration::from_secs(60)).await;
    assert_eq!(
        Runner::result(&e),
        json!({ "result": { "square": 9 } }),
        "{}",
        worker.logs()
    );
    // The control, without heartbeats, times out: so it was the heartbeats.
    let e = runner.ended(&control_arn, Duration::from_secs(60)).await;
    assert_eq!(e["Status"], "FAILED", "{e}");
    assert!(
        e["Error"]["ErrorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("heartbeat"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_releases_the_messages_and_a_second_worker_completes_them() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let name = unique("dur-term");
    let url = create_queue(&sqs, &name).await;
    let dir = scratch_dir("durable-sigterm");
    // Visibility 300 s: only the release can make them visible in time.
    let b = binding(&name, &url, "visibility_timeout_secs = 300");
    let mut first = Daemon::start_full(
        &dir,
        "first",
        &runner.aws_config(),
        "shutdown_grace_secs = 1\ncancel_grace_secs = 2",
        &b,
        &[],
        &[],
    );
    let mut arns = Vec::new();
    for n in 0..4 {
        arns.push((
            n,
            runner
                .start(&url, json!({ "n": n, "sleep": 4 }), 300, 0)
                .await,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(
        &first.metrics(),
        "sfn_worker_tasks_received_total",
        &[("source", "durable_callback")],
    ) < 4.0
    {
        assert!(Instant::now() < deadline, "{}", first.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.signal("TERM");
    assert!(
        first.wait_exit(Duration::from_secs(90)).await.success(),
        "{}",
        first.logs()
    );
    assert!(first.logs().contains("released"), "{}", first.logs());
    let second = Daemon::start_full(&dir, "second", &runner.aws_config(), "", &b, &[], &[]);
    for (n, arn) in arns {
        let e = runner.ended(&arn, Duration::from_secs(60)).await;
        assert_eq!(
            Runner::result(&e),
            json!({ "result": { "square": n * n } }),
            "{}\n{}",
            first.logs(),
            second.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_callback_is_counted_cancelled_and_its_message_deleted() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let name = unique("dur-exp");
    let url = create_queue(&sqs, &name).await;
    let dir = scratch_dir("durable-expired");
    let worker = Daemon::start_full(
        &dir,
        "sfn-worker",
        &runner.aws_config(),
        "",
        &binding(&name, &url, "heartbeat_secs = 1"),
        &[],
        &[],
    );
    // The callback expires after 3 s; the work would take 30.
    let started = Instant::now();
    let arn = runner
        .start(&url, json!({ "n": 1, "sleep": 30 }), 3, 0)
        .await;
    let e = runner.ended(&arn, Duration::from_secs(60)).await;
    assert_eq!(e["Status"], "FAILED", "{e}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = worker.metrics();
        let cancelled = counter(
            &m,
            "sfn_worker_tasks_completed_total",
            &[("source", "durable_callback"), ("outcome", "cancelled")],
        );
        if cancelled == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{}", worker.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Cancelled at the first heartbeat after the expiry, not after the work.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(queue_depth(&sqs, &url).await, 0, "the message was deleted");
}

/// Issue 21, item 6: a worker pointed at a Lambda that does not know the
/// callbacks (here a second local runner, as a wrong region or account
/// would be) gets `ResourceNotFoundException` for every one. The message is
/// the only copy of the callback id: it is kept, and the worker reads not
/// ready. The control: a worker pointed at the right runner then completes
/// the same callback from the kept message.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_pointed_at_the_wrong_lambda_keeps_the_message_and_reads_not_ready() {
    let sqs = sqs().await;
    let runner = Runner::launch();
    let wrong = Runner::launch();
    let name = unique("dur-wrong");
    let url = create_queue(&sqs, &name).await;
    let dir = scratch_dir("durable-wrong");
    let b = binding(
        &name,
        &url,
        "heartbeat_secs = 1\nvisibility_timeout_secs = 10",
    );
    let mut misdirected = Daemon::start_full(
        &dir,
        "misdirected",
        &wrong.aws_config(),
        "shutdown_grace_secs = 1\ncancel_grace_secs = 1",
        &b,
        &[],
        &[],
    );
    let arn = runner.start(&url, json!({ "n": 7 }), 300, 0).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = misdirected.metrics();
        let refused = counter(
            &m,
            "sfn_worker_api_errors_total",
            &[("code", "ResourceNotFoundException")],
        );
        let ready = http_get(misdirected.port, "/readyz").map(|(status, _)| status);
        if refused > 0.0 && ready == Some(503) {
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{}", misdirected.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(queue_depth(&sqs, &url).await, 1, "the only copy is kept");
    misdirected.signal("TERM");
    assert!(
        misdirected
            .wait_exit(Duration::from_secs(90))
            .await
            .success(),
        "{}",
        misdirected.logs()
    );
    let right = Daemon::start_full(&dir, "right", &runner.aws_config(), "", &b, &[], &[]);
    let e = runner.ended(&arn, Duration::from_secs(60)).await;
    assert_eq!(
        Runner::result(&e),
        json!({ "result": { "square": 49 } }),
        "{}\n{}",
        misdirected.logs(),
        right.logs()
    );
}
