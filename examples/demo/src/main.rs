//! The demo: in LocalStack, create an activity, a queue and the example state
//! machines (examples/state-machines, as shipped), and a second queue for a
//! Lambda durable function (examples/durable-function, on AWS's local
//! durable-execution runner); run the real `sfn-worker` daemon with
//! `config.toml`; start a batch of executions through both Step Functions
//! sources and one durable execution; show progress; print a summary; stop
//! the daemon with SIGTERM. Exits non-zero if anything did not go as designed.
//!
//! The executions are started and watched with sfn-worker's own workflows
//! client (`sfn_worker_core::workflows`), by the names in the config's
//! `[workflows]`; only the setup (activity, queues, state machines) calls
//! the SDK directly.
//!
//! Usage: sfn-worker-demo PATH-TO-sfn-worker [EXECUTIONS-PER-SOURCE]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sfn::Client;
use figment::Figment;
use figment::providers::{Format, Toml};
use sfn_worker_core::workflows::{Execution, ExecutionArn, ExecutionStatus, Workflows};

const HERE: &str = env!("CARGO_MANIFEST_DIR");
/// Orders in the Map execution; every eighth (from the fourth) is rejected.
const MAP_ORDERS: usize = 40;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .context("usage: sfn-worker-demo PATH-TO-sfn-worker [EXECUTIONS-PER-SOURCE]")?;
    let per_source: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(30);
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(&endpoint)
        .load()
        .await;
    let sfn = Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let suffix = std::process::id();

    println!("==> creating an activity, a queue and the example state machines in {endpoint}");
    let activity = sfn
        .create_activity()
        .name(format!("sfn-worker-demo-orders-{suffix}"))
        .send()
        .await
        .context("CreateActivity")?
        .activity_arn;
    let queue = sqs
        .create_queue()
        .queue_name(format!("sfn-worker-demo-orders-{suffix}"))
        .send()
        .await
        .context("CreateQueue")?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let durable_queue = sqs
        .create_queue()
        .queue_name(format!("sfn-worker-demo-durable-{suffix}"))
        .send()
        .await
        .context("CreateQueue")?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let mut runner = DurableRunner::launch(&endpoint)?;
    println!("==> local durable-execution runner at {}", runner.url);
    let examples = format!("{HERE}/../state-machines");
    let mut machines = BTreeMap::new();
    for (source, file) in [
        ("activity", "activity.asl.json"),
        ("sqs", "sqs-callback.asl.json"),
        ("map", "map-callbacks.asl.json"),
    ] {
        let definition = std::fs::read_to_string(format!("{examples}/{file}"))?
            .replace("${ActivityArn}", &activity)
            .replace("${QueueUrl}", &queue);
        let arn = sfn
            .create_state_machine()
            .name(format!("sfn-worker-demo-{source}-{suffix}"))
            .role_arn("arn:aws:iam::000000000000:role/sfn-worker-demo")
            .definition(definition)
            .send()
            .await
            .with_context(|| format!("CreateStateMachine {file}"))?
            .state_machine_arn;
        machines.insert(source, arn);
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("sfn-worker-demo-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.toml");
    let script = std::fs::canonicalize(format!("{examples}/process-order.sh"))?;
    let text = std::fs::read_to_string(format!("{HERE}/config.toml"))?
        .replace("@ENDPOINT@", &endpoint)
        .replace("@PORT@", &port.to_string())
        .replace("@ACTIVITY_ARN@", &activity)
        .replace("@QUEUE_URL@", &queue)
        .replace("@DURABLE_QUEUE_URL@", &durable_queue)
        .replace("@LAMBDA_ENDPOINT@", &runner.url)
        .replace("@SCRIPT@", &script.display().to_string())
        .replace("@ACTIVITY_MACHINE@", &machines["activity"])
        .replace("@SQS_MACHINE@", &machines["sqs"])
        .replace("@MAP_MACHINE@", &machines["map"]);
    std::fs::write(&config, &text)?;
    // The same file the worker runs with, read as it reads it.
    let parsed: sfn_worker_core::Config = Figment::from(Toml::string(&text))
        .extract()
        .context("the demo's config.toml")?;
    let sdk = parsed.aws.sdk_config().await;
    let workflows = Workflows::new(&sdk, &parsed.workflows)
        .map_err(|errors| anyhow::anyhow!("[workflows]: {errors:?}"))?;
    let log = dir.join("sfn-worker.log");

    println!(
        "==> starting {binary} run --config {} (log: {})",
        config.display(),
        log.display()
    );
    let mut daemon = Command::new(&binary)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stderr(std::fs::File::create(&log)?)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let result = run(
        &workflows,
        (&runner, &durable_queue),
        &mut daemon,
        port,
        per_source,
    )
    .await;
    if daemon.try_wait()?.is_none() {
        let _ = daemon.kill();
    }
    runner.stop();
    if result.is_err() {
        eprintln!("--- last lines of the worker's log ---");
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        for line in log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("{line}");
        }
    }
    result
}

/// What one execution was started as: "activity/plain", "sqs/rejected", ...
struct Started {
    kind: String,
    input: serde_json::Value,
    arn: ExecutionArn,
}

async fn run(
    workflows: &Workflows,
    (runner, durable_queue): (&DurableRunner, &str),
    daemon: &mut Child,
    port: u16,
    per_source: usize,
) -> Result<()> {
    wait_ready(daemon, port).await?;
    // Per source: plain orders, some designed to be rejected (and caught by
    // name), one long-running order kept alive by heartbeats; plus one Map.
    let mut plan: Vec<(&str, &str, serde_json::Value)> = Vec::new();
    for source in ["activity", "sqs"] {
        plan.push((
            source,
            "long",
            serde_json::json!({ "id": format!("{source}-long"), "seconds": 8 }),
        ));
        for i in 0..per_source {
            let id = format!("{source}-{i}");
            if i % 8 == 3 {
                plan.push((
                    source,
                    "rejected",
                    serde_json::json!({ "id": id, "reject": true }),
                ));
            } else {
                plan.push((source, "plain", serde_json::json!({ "id": id })));
            }
        }
    }
    plan.push(("map", "map", serde_json::json!({ "orders": map_orders() })));
    println!(
        "==> worker ready; starting {} executions (one a Map over {MAP_ORDERS} orders)",
        plan.len()
    );
    let durable_input = serde_json::json!({ "id": "durable-1" });
    let durable_arn = runner.start(durable_queue, &durable_input).await?;
    let mut executions = Vec::new();
    for (source, kind, input) in plan {
        let arn = workflows.start(source, &input).await?;
        executions.push(Started {
            kind: format!("{source}/{kind}"),
            input,
            arn,
        });
    }

    // Progress until every execution has ended.
    let begun = Instant::now();
    let ended = loop {
        let mut ended: Vec<(&Started, Execution)> = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in &executions {
            let d = workflows.status(&e.arn).await?;
            *counts.entry(d.status.as_str().to_owned()).or_default() += 1;
            if d.status.is_terminal() {
                ended.push((e, d));
            }
        }
        let line: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "    {:>5.1}s  {}",
            begun.elapsed().as_secs_f64(),
            line.join(", ")
        );
        if ended.len() == executions.len() {
            break ended;
        }
        if begun.elapsed() > Duration::from_secs(180) {
            bail!("executions still running after 180 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let durable = runner.ended(&durable_arn, Duration::from_secs(60)).await?;
    let metrics = http_get(port, "/metrics").await.unwrap_or_default();

    println!(
        "==> stopping the worker (SIGTERM); it waits for its open long polls to return (up to 60 s) so no task is lost"
    );
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let stop_deadline = Instant::now() + Duration::from_secs(90);
    let exit = loop {
        if let Some(s) = daemon.try_wait()? {
            break s;
        }
        anyhow::ensure!(
            Instant::now() < stop_deadline,
            "worker did not exit within 90 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut problems = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (e, d) in &ended {
        *by_status.entry(d.status.as_str().to_owned()).or_default() += 1;
        if let Some(stop) = d.stopped {
            latencies.entry(&e.kind).or_default().push(
                stop.duration_since(d.started)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
        let output: serde_json::Value = d
            .output
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default();
        if d.status != ExecutionStatus::Succeeded || !as_designed(&e.kind, &e.input, &output) {
            problems.push(format!(
                "{} {} ended {} with output {output} error {:?}",
                e.kind,
                e.input["id"],
                d.status.as_str(),
                d.error
            ));
        }
    }

    println!();
    println!("Executions by status");
    for (status, n) in &by_status {
        println!("  {status:<12} {n:>5}");
    }
    println!();
    println!("Durable-function callback (local durable-execution runner)");
    println!(
        "  {:<12} {}",
        durable["Status"].as_str().unwrap_or("?"),
        durable["Result"]
    );
    let expected = serde_json::json!({ "result": { "processed": durable_input } });
    let got: serde_json::Value = durable["Result"]
        .as_str()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    if durable["Status"] != "SUCCEEDED" || got != expected {
        problems.push(format!(
            "the durable execution ended {durable}, expected {expected}"
        ));
    }
    println!();
    println!("Task outcomes (from /metrics)");
    println!(
        "  {:<16} {:<14} {:<14} {:>6}",
        "source", "binding", "outcome", "tasks"
    );
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("sfn_worker_tasks_completed_total{"))
    {
        let label = |k: &str| {
            line.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_owned()
        };
        let value = line.rsplit(' ').next().unwrap_or("?");
        println!(
            "  {:<16} {:<14} {:<14} {:>6}",
            label("source"),
            label("binding"),
            label("outcome"),
            value
        );
    }
    println!();
    println!("Execution latency, start to end (seconds)");
    println!(
        "  {:<18} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "kind", "count", "p50", "p90", "p99", "max"
    );
    for (kind, l) in &mut latencies {
        l.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "  {kind:<18} {:>6} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
            l.len(),
            p(0.5),
            p(0.9),
            p(0.99),
            l[l.len() - 1]
        );
    }
    println!();
    if !exit.success() {
        problems.push(format!("the worker exited with {exit} after SIGTERM"));
    }
    if problems.is_empty() {
        println!(
            "demo passed: {} executions as designed, worker exited 0",
            ended.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("unexpected: {p}");
        }
        bail!("{} unexpected results", problems.len())
    }
}

fn map_orders() -> Vec<serde_json::Value> {
    (0..MAP_ORDERS)
        .map(|i| {
            if i % 8 == 3 {
                serde_json::json!({ "id": i, "reject": true })
            } else {
                serde_json::json!({ "id": i })
            }
        })
        .collect()
}

/// Did an execution that SUCCEEDED produce what its input asked for?
fn as_designed(kind: &str, input: &serde_json::Value, output: &serde_json::Value) -> bool {
    match kind.rsplit('/').next() {
        Some("rejected") => output["rejection"]["Error"] == "Orders.Rejected",
        Some("map") => {
            let items = output.as_array().map(Vec::as_slice).unwrap_or_default();
            let rejected = items
                .iter()
                .filter(|r| r["rejection"]["Error"] == "Orders.Rejected")
                .count();
            let expected_rejected = map_orders()
                .iter()
                .filter(|o| o.get("reject").is_some())
                .count();
            items.len() == MAP_ORDERS && rejected == expected_rejected
        }
        _ => output["processed"]["id"] == input["id"],
    }
}

async fn wait_ready(daemon: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = http_get(port, "/readyz").await
            && body.starts_with("ready")
        {
            return Ok(());
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("sfn-worker exited during start-up with {status}");
        }
        anyhow::ensure!(Instant::now() < deadline, "sfn-worker not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// AWS's local durable-execution runner serving examples/durable-function.
struct DurableRunner {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl DurableRunner {
    fn launch(sqs_endpoint: &str) -> Result<Self> {
        use std::io::BufRead;
        let python = std::env::var("DURABLE_RUNNER_PYTHON")
            .context("DURABLE_RUNNER_PYTHON is not set: run the demo with scripts/demo.sh")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(python)
            .arg("runner.py")
            .arg(port.to_string())
            .current_dir(format!("{HERE}/../durable-function"))
            .env("SQS_ENDPOINT_URL", sqs_endpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the local durable-execution runner")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("runner stdout")?)
            .read_line(&mut line)?;
        anyhow::ensure!(
            line.trim() == "READY",
            "the durable-execution runner did not start"
        );
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        })
    }

    async fn start(&self, queue_url: &str, input: &serde_json::Value) -> Result<String> {
        let event = serde_json::json!({ "queue_url": queue_url, "input": input, "timeout": 120, "heartbeat": 10 });
        let body = serde_json::json!({
            "AccountId": "000000000000", "FunctionName": "orders", "FunctionQualifier": "$LATEST",
            "ExecutionName": format!("demo-{}", std::process::id()), "ExecutionTimeoutSeconds": 300,
            "ExecutionRetentionPeriodDays": 1, "Input": event.to_string(),
        });
        let answer: serde_json::Value = self
            .http
            .post(format!("{}/start-durable-execution", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?
            .text()
            .await
            .map(|t| serde_json::from_str(&t))??;
        answer["ExecutionArn"]
            .as_str()
            .map(str::to_owned)
            .context("start-durable-execution returned no ExecutionArn")
    }

    async fn ended(&self, arn: &str, within: Duration) -> Result<serde_json::Value> {
        let encoded: String = arn
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let deadline = Instant::now() + within;
        loop {
            let e: serde_json::Value = self
                .http
                .get(format!(
                    "{}/2025-12-01/durable-executions/{encoded}",
                    self.url
                ))
                .send()
                .await?
                .text()
                .await
                .map(|t| serde_json::from_str(&t))??;
            if e["Status"] != "RUNNING" {
                return Ok(e);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the durable execution is still running"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
