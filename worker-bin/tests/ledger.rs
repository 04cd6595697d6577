//! The fleet's task ledger end to end: several real `sfn-worker` processes
//! on one LocalStack queue, DynamoDB in moto's server mode, real
//! `sqs:sendMessage.waitForTaskToken` executions.
//!
//! Needs LocalStack and moto (scripts/test.sh provides both: `MOTO_SERVER`
//! names moto's server).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const TABLE: &str = "sfn-worker-ledger";

/// moto's server on a port of its own, with the ledger table.
struct Moto {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Moto {
    async fn launch() -> Moto {
        Self::launch_on(free_port()).await
    }

    async fn launch_on(port: u16) -> Moto {
        let server = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            panic!(
                "MOTO_SERVER is not set: run the tests with scripts/test.sh, or set it to the \
                 moto_server that scripts/moto.sh install prints"
            )
        });
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            port,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.call("ListTables", json!({})).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto.call(
            "CreateTable",
            json!({
                "TableName": TABLE,
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            }),
        )
        .await
        .unwrap();
        moto.call(
            "UpdateTimeToLive",
            json!({"TableName": TABLE,
                   "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "expires_at"}}),
        )
        .await
        .unwrap();
        moto
    }

    /// One DynamoDB call (moto does not check signatures).
    async fn call(&self, operation: &str, body: Value) -> Result<Value, String> {
        let answer = self
            .http
            .post(format!("http://127.0.0.1:{}/", self.port))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ok = answer.status().is_success();
        let text = answer.text().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        } else {
            Err(text)
        }
    }

    /// `[ledger]` pointing here.
    fn config(&self) -> String {
        format!(
            "\n[ledger]\ntable = \"{TABLE}\"\nendpoint_url = \"http://127.0.0.1:{}\"\nlease_secs = 10\n",
            self.port
        )
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many times each task ran (the fixture's run log: one line per run).
fn runs(runlog: &Path) -> BTreeMap<u64, usize> {
    let mut runs = BTreeMap::new();
    for line in std::fs::read_to_string(runlog).unwrap_or_default().lines() {
        *runs.entry(line.trim().parse().unwrap()).or_insert(0) += 1;
    }
    runs
}

/// Move the messages the executions sent to `staging` onto `work`, each
/// body `copies` times: what a producer retrying its send, or SQS
/// delivering twice, looks like to the workers.
async fn relay_copies(
    sqs: &aws_sdk_sqs::Client,
    staging: &str,
    work: &str,
    expected: usize,
    copies: usize,
) {
    let mut moved = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while moved < expected {
        assert!(Instant::now() < deadline, "moved {moved} of {expected}");
        let got = sqs
            .receive_message()
            .queue_url(staging)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            for _ in 0..copies {
                sqs.send_message()
                    .queue_url(work)
                    .message_body(m.body.clone().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            sqs.delete_message()
                .queue_url(staging)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            moved += 1;
        }
    }
}

/// Every execution ends SUCCEEDED with its handler's output; how many
/// times each task's handler ran.
async fn copies_on_three_workers(name: &str, ledger: bool) -> (BTreeMap<u64, usize>, f64) {
    const TASKS: u64 = 8;
    let moto = Moto::launch().await;
    let (sfn, sqs) = (sfn().await, sqs().await);
    let staging = create_queue(&sqs, &unique(&format!("{name}-staging"))).await;
    let work = create_queue(&sqs, &unique(name)).await;
    let machine =
        create_state_machine(&sfn, &unique(name), callback_machine(&staging, json!({}))).await;
    let dir = scratch_dir(name);
    let runlog = dir.join("runs.log");
    let binding = queue_exec_binding(
        name,
        &work,
        &format!("ledger = {ledger}\nvisibility_timeout_secs = 10\nconcurrency = 4"),
    ) + &moto.config();
    let daemons: Vec<Daemon> = (0..3)
        .map(|i| Daemon::start_named(&dir, &format!("worker-{i}"), "", &binding))
        .collect();
    let mut executions = Vec::new();
    for n in 0..TASKS {
        let input = json!({"n": n, "sleep": 2, "runlog": runlog});
        executions.push((n, start(&sfn, &machine, input).await));
    }
    relay_copies(&sqs, &staging, &work, TASKS as usize, 3).await;
    let logs = || {
        daemons
            .iter()
            .map(Daemon::logs)
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (n, execution) in executions {
        let ended = wait_ended(&sfn, &execution, Duration::from_secs(120)).await;
        assert_eq!(ended.status, "SUCCEEDED", "n={n}: {ended:?}\n{}", logs());
        assert_eq!(ended.output, Some(json!({ "square": n * n })));
    }
    // Every copy is dealt with: run, joined, or (ledger) found settled and
    // deleted once it came back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue_depth(&sqs, &work).await > 0 {
        assert!(
            Instant::now() < deadline,
            "copies left in the queue:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let skipped: f64 = daemons
        .iter()
        .map(|d| {
            let m = d.metrics();
            counter(
                &m,
                "sfn_worker_ledger_claims_total",
                &[("result", "held_elsewhere")],
            ) + counter(
                &m,
                "sfn_worker_ledger_claims_total",
                &[("result", "completed")],
            )
        })
        .sum();
    (runs(&runlog), skipped)
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_of_each_message_on_three_workers_run_each_task_once() {
    let (runs, skipped) = copies_on_three_workers("ledger-copies", true).await;
    assert_eq!(runs.len(), 8, "{runs:?}");
    assert!(runs.values().all(|&r| r == 1), "a task ran twice: {runs:?}");
    assert!(skipped >= 1.0, "no copy reached a second worker: {skipped}");
}

/// The control: the same copies without the ledger run some task twice.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_ledger_copies_on_three_workers_run_again() {
    let (runs, _) = copies_on_three_workers("ledger-control", false).await;
    assert_eq!(runs.len(), 8, "{runs:?}");
    assert!(
        runs.values().any(|&r| r > 1),
        "no task ran twice without the ledger, so the test above proves nothing: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_holding_a_claim_is_taken_over_after_its_lease() {
    let moto = Moto::launch().await;
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("ledger-kill")).await;
    let machine = create_state_machine(
        &sfn,
        &unique("ledger-kill"),
        callback_machine(&url, json!({})),
    )
    .await;
    let dir = scratch_dir("ledger-kill");
    let binding = queue_exec_binding(
        "ledger-kill",
        &url,
        "ledger = true\nvisibility_timeout_secs = 10",
    ) + &moto.config();
    let mut a = Daemon::start_named(&dir, "a", "", &binding);
    let (runlog, pidfile, marker) = (
        dir.join("runs.log"),
        dir.join("task.pid"),
        dir.join("marker"),
    );
    // The first run sleeps; any later one does not.
    let input =
        json!({"n": 4, "runlog": runlog, "pidfile": pidfile, "marker": marker, "sleep_first": 300});
    let execution = start(&sfn, &machine, input).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "a never ran it:\n{}", a.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(10)).await;
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    let killed = Instant::now();

    let b = Daemon::start_named(&dir, "b", "", &binding);
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(90)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", b.logs());
    assert_eq!(ended.output, Some(json!({"square": 16})));
    let m = b.metrics();
    assert_eq!(
        counter(
            &m,
            "sfn_worker_ledger_claims_total",
            &[("result", "took_over")]
        ),
        1.0,
        "{m}\n{}",
        b.logs()
    );
    // Taken over only once the dead worker's lease (10 s from its last
    // renewal, every 3.3 s) could have ended.
    assert!(
        killed.elapsed() >= Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(runs(&runlog).get(&4), Some(&2), "a's run and b's");
}

/// The ledger stops answering mid-run: what each binding's choice does.
async fn ledger_down(name: &str, choice: &str) -> (BTreeMap<u64, usize>, String, Daemon, Moto) {
    let mut moto = Moto::launch().await;
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique(name)).await;
    let machine =
        create_state_machine(&sfn, &unique(name), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir(name);
    let runlog = dir.join("runs.log");
    let binding = queue_exec_binding(
        name,
        &url,
        &format!("ledger = true\nledger_unreachable = \"{choice}\"\nvisibility_timeout_secs = 10"),
    ) + &moto.config();
    let daemon = Daemon::start_named(&dir, name, "", &binding);
    moto.kill();
    let mut executions = Vec::new();
    for n in 0..2 {
        executions.push(start(&sfn, &machine, json!({"n": n, "runlog": runlog})).await);
    }
    // Both tasks were received and the ledger was found down.
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = if choice == "fail_open" {
        "ran_without"
    } else {
        "held_back"
    };
    while counter(
        &daemon.metrics(),
        "sfn_worker_ledger_claims_total",
        &[("result", result)],
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "the ledger being down was not noticed:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_down = runs(&runlog);
    let moto = Moto::launch_on(moto.port).await;
    for execution in executions {
        let ended = wait_ended(&sfn, &execution, Duration::from_secs(90)).await;
        assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    }
    (while_down, runlog.display().to_string(), daemon, moto)
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_closed_runs_nothing_while_the_ledger_is_down_and_everything_once_it_is_back() {
    let (while_down, runlog, daemon, _moto) = ledger_down("ledger-closed", "fail_closed").await;
    assert!(
        while_down.is_empty(),
        "ran while the ledger was down: {while_down:?}"
    );
    let after = runs(Path::new(&runlog));
    assert_eq!(
        after.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "{after:?}"
    );
    let m = daemon.metrics();
    assert!(
        counter(
            &m,
            "sfn_worker_tasks_completed_total",
            &[("outcome", "ledger_unavailable")]
        ) >= 2.0,
        "{m}"
    );
}

/// The control of the case above: `fail_open` runs them while it is down.
#[tokio::test(flavor = "multi_thread")]
async fn fail_open_runs_while_the_ledger_is_down() {
    let (while_down, _, daemon, _moto) = ledger_down("ledger-open", "fail_open").await;
    assert_eq!(
        while_down.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "{while_down:?}\n{}",
        daemon.logs()
    );
}
