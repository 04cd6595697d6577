//! The embedded example as a process against LocalStack: its own route and
//! the worker's endpoints on one port, executions of both sources priced
//! with the state built at start, the application's layer counting them,
//! and SIGTERM with a task in flight: the server answers "draining" while
//! the worker finishes the task, then both stop (exit 0).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

async fn wait_ended(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        if d.status.as_str() != "RUNNING" {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{execution} still RUNNING after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_serves_its_routes_and_the_worker_and_drains_both_on_sigterm() {
    let conf = aws().await;
    let (sfn, sqs) = (
        aws_sdk_sfn::Client::new(&conf),
        aws_sdk_sqs::Client::new(&conf),
    );
    let activity = sfn
        .create_activity()
        .name(unique("price-order"))
        .send()
        .await
        .expect("LocalStack answers (scripts/localstack.sh start)")
        .activity_arn;
    let queue = sqs
        .create_queue()
        .queue_name(unique("price-order"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let role = "arn:aws:iam::000000000000:role/sfn-worker-tests";
    let machine = |resource: Value| {
        json!({ "StartAt": "Price", "States": { "Price": resource } }).to_string()
    };
    let by_activity = machine(json!({
        "Type": "Task", "Resource": activity, "TimeoutSeconds": 60, "End": true
    }));
    let by_queue = machine(json!({
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": { "QueueUrl": queue, "MessageBody": { "taskToken.$": "$$.Task.Token", "input.$": "$" } },
        "TimeoutSeconds": 60, "End": true
    }));
    let mut machines = Vec::new();
    for (name, definition) in [("by-activity", by_activity), ("by-queue", by_queue)] {
        let arn = sfn
            .create_state_machine()
            .name(unique(name))
            .role_arn(role)
            .definition(definition)
            .send()
            .await
            .unwrap()
            .state_machine_arn;
        machines.push(arn);
    }

    let dir = std::env::temp_dir().join(unique("embedded"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\n\
             [[activity]]\nname = \"by-activity\"\narn = \"{activity}\"\nhandler = \"price-order\"\n\n\
             [[queue]]\nname = \"by-queue\"\nurl = \"{queue}\"\nhandler = \"price-order\"\ninput_pointer = \"/input\"\n",
            endpoint()
        ),
    )
    .unwrap();
    let log = dir.join("embedded.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedded-worker"))
        .env("SFN_WORKER_CONFIG", &config)
        .env(
            "PRICES",
            concat!(env!("CARGO_MANIFEST_DIR"), "/prices.json"),
        )
        // Port 0: the application picks one and logs it (no race for a port
        // the test chose and freed).
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // The worker's readiness on the application's port: the router merged.
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let serving = logs().lines().find_map(|l| {
            l.split_once("/readyz on 127.0.0.1:")
                .map(|(_, p)| p.trim().to_owned())
        });
        if let Some(port) = serving.and_then(|p| p.parse::<u16>().ok()) {
            break port;
        }
        assert!(child.try_wait().unwrap().is_none(), "exited:\n{}", logs());
        assert!(
            Instant::now() < deadline,
            "no address logged after 30 s:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while http_get(port, "/readyz").map(|(s, _)| s) != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "exited:\n{}", logs());
        assert!(
            Instant::now() < deadline,
            "not ready after 30 s:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let order = json!({ "id": "o-1", "lines": [{ "sku": "apple", "quantity": 3 }, { "sku": "fig", "quantity": 1 }] });
    let unknown = json!({ "id": "o-2", "lines": [{ "sku": "kiwi", "quantity": 1 }] });
    for machine in &machines {
        let ok = sfn
            .start_execution()
            .state_machine_arn(machine)
            .input(order.to_string())
            .send()
            .await
            .unwrap()
            .execution_arn;
        let bad = sfn
            .start_execution()
            .state_machine_arn(machine)
            .input(unknown.to_string())
            .send()
            .await
            .unwrap()
            .execution_arn;
        let ok = wait_ended(&sfn, &ok).await;
        assert_eq!(ok.status.as_str(), "SUCCEEDED", "{ok:?}\n{}", logs());
        let output: Value = serde_json::from_str(ok.output.as_deref().unwrap()).unwrap();
        // 3 x 50 + 120, from prices.json, read with .await before the worker started.
        assert_eq!(output, json!({ "id": "o-1", "total_cents": 270 }));
        let bad = wait_ended(&sfn, &bad).await;
        assert_eq!(bad.status.as_str(), "FAILED", "{bad:?}");
        assert_eq!(bad.error.as_deref(), Some("Orders.UnknownSku"));
    }

    // The application's own layer counted each task by binding and outcome,
    // and its route shows what its state holds.
    let (status, stats) = http_get(port, "/stats").unwrap();
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    for binding in ["by-activity", "by-queue"] {
        assert_eq!(
            stats[binding],
            json!({ "succeeded": 1, "failed": 1 }),
            "{stats}"
        );
    }
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sfn_worker_tasks_completed_total"),
        "{metrics}"
    );

    // SIGTERM with a task in flight (6 s of "confirming"): the worker
    // drains, the application's server answers /readyz "draining" meanwhile,
    // the task ends SUCCEEDED, then both stop and the process exits 0.
    let slow =
        json!({ "id": "o-3", "lines": [{ "sku": "pear", "quantity": 2 }], "confirm_secs": 6 });
    let slow = sfn
        .start_execution()
        .state_machine_arn(&machines[0])
        .input(slow.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(port, "/metrics").unwrap();
        let in_flight = metrics
            .lines()
            .filter(|l| l.starts_with("sfn_worker_tasks_in_flight"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if in_flight >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow task never started:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(port, "/readyz") {
            Some((503, body)) if body.contains("draining") => break,
            other => assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "no 'draining' from /readyz while the task runs (last answer {other:?}):\n{}",
                logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow = wait_ended(&sfn, &slow).await;
    assert_eq!(slow.status.as_str(), "SUCCEEDED", "{slow:?}\n{}", logs());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 90 s after SIGTERM:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}:\n{}", logs());
    assert!(logs().contains("worker stopped"), "{}", logs());
}
