//! The demo: create the activities and state machine in LocalStack, run the
//! real `sfn-worker` daemon with `config.toml`, start a batch of executions,
//! show progress, print a summary, stop the daemon. Exits non-zero if
//! anything unexpected happened.
//!
//! Usage: sfn-worker-demo PATH-TO-sfn-worker [EXECUTIONS]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::ExecutionStatus;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .context("usage: sfn-worker-demo PATH-TO-sfn-worker [EXECUTIONS]")?;
    let fast_count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(40);
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let sfn = client(&endpoint).await;
    let suffix = format!("{}", std::process::id());

    println!("==> creating activities and the state machine in {endpoint}");
    let mut arns = BTreeMap::new();
    for name in ["fast", "flaky", "slow"] {
        let arn = sfn
            .create_activity()
            .name(format!("sfn-worker-demo-{name}-{suffix}"))
            .send()
            .await
            .context("CreateActivity")?
            .activity_arn;
        arns.insert(name, arn);
    }
    let fill = |text: &str| {
        text.replace("@FAST_ARN@", &arns["fast"])
            .replace("@FLAKY_ARN@", &arns["flaky"])
            .replace("@SLOW_ARN@", &arns["slow"])
    };
    let definition = fill(&std::fs::read_to_string(format!(
        "{HERE}/state-machine.json"
    ))?);
    let machine = sfn
        .create_state_machine()
        .name(format!("sfn-worker-demo-{suffix}"))
        .role_arn("arn:aws:iam::000000000000:role/sfn-worker-demo")
        .definition(definition)
        .send()
        .await
        .context("CreateStateMachine")?
        .state_machine_arn;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("sfn-worker-demo-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.toml");
    let text = fill(&std::fs::read_to_string(format!("{HERE}/config.toml"))?)
        .replace("@ENDPOINT@", &endpoint)
        .replace("@PORT@", &port.to_string());
    std::fs::write(&config, text)?;
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
    let result = run(&sfn, &machine, &mut daemon, port, fast_count).await;
    if daemon.try_wait()?.is_none() {
        let _ = daemon.kill();
    }
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

async fn run(
    sfn: &Client,
    machine: &str,
    daemon: &mut Child,
    port: u16,
    fast_count: usize,
) -> Result<()> {
    wait_ready(daemon, port).await?;
    println!("==> worker ready; starting {} executions", fast_count + 6);
    let mut inputs = vec![serde_json::json!({ "kind": "slow", "id": "slow-0" })];
    inputs
        .extend((0..5).map(|i| serde_json::json!({ "kind": "flaky", "id": format!("flaky-{i}") })));
    inputs.extend(
        (0..fast_count).map(|i| serde_json::json!({ "kind": "fast", "id": format!("fast-{i}") })),
    );
    let mut executions = Vec::new();
    for input in &inputs {
        let arn = sfn
            .start_execution()
            .state_machine_arn(machine)
            .input(input.to_string())
            .send()
            .await
            .context("StartExecution")?
            .execution_arn;
        executions.push((input.clone(), arn));
    }

    // Progress until every execution has ended.
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(120);
    let ended = loop {
        let mut ended = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (input, arn) in &executions {
            let d = sfn.describe_execution().execution_arn(arn).send().await?;
            *counts.entry(d.status.as_str().to_owned()).or_default() += 1;
            if d.status != ExecutionStatus::Running {
                ended.push((input.clone(), d));
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
        if Instant::now() > deadline {
            bail!("executions still running after 120 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
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

    // Summary.
    let mut problems = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    for (input, d) in &ended {
        *by_status.entry(d.status.as_str().to_owned()).or_default() += 1;
        if let Some(stop) = d.stop_date {
            latencies.push((
                stop.as_secs_f64() - d.start_date.as_secs_f64(),
                input["kind"].as_str().unwrap_or("?").to_owned(),
            ));
        }
        let output: serde_json::Value = d
            .output
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default();
        let ok = d.status == ExecutionStatus::Succeeded
            && match input["kind"].as_str() {
                Some("flaky") => output["caught"]["Error"] == "Demo.Boom",
                Some("fast") => output["handled_by"] == "sfn-worker" && output["id"] == input["id"],
                _ => output["id"] == input["id"],
            };
        if !ok {
            problems.push(format!(
                "{} ended {} with output {output} error {:?}",
                input["id"],
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
    println!("Task outcomes (from /metrics)");
    println!("  {:<8} {:<14} {:>6}", "binding", "outcome", "tasks");
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
            "  {:<8} {:<14} {:>6}",
            label("binding"),
            label("outcome"),
            value
        );
    }
    println!();
    println!("Execution latency, start to end (seconds)");
    println!(
        "  {:<8} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "kind", "count", "p50", "p90", "p99", "max"
    );
    for kind in ["fast", "flaky", "slow"] {
        let mut l: Vec<f64> = latencies
            .iter()
            .filter(|(_, k)| k == kind)
            .map(|(s, _)| *s)
            .collect();
        l.sort_by(|a, b| a.total_cmp(b));
        if l.is_empty() {
            continue;
        }
        let p = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "  {kind:<8} {:>6} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
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

async fn client(endpoint: &str) -> Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(endpoint)
        .load()
        .await;
    Client::new(&conf)
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
