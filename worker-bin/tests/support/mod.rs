//! Helpers for tests against LocalStack and the real `sfn-worker` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sfn::Client;

pub const ROLE: &str = "arn:aws:iam::000000000000:role/sfn-worker-tests";

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// A Step Functions client for LocalStack. Panics with the fix if it is not up.
pub async fn sfn() -> Client {
    let ep = endpoint();
    let hostport = ep
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if TcpStream::connect(&hostport).is_err() {
        panic!(
            "LocalStack does not answer at {ep}. Start it with scripts/localstack.sh start \
             (scripts/test.sh does that for you), or set AWS_ENDPOINT_URL."
        );
    }
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(&ep)
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    Client::new(&conf)
}

/// An SQS client for LocalStack.
pub async fn sqs() -> aws_sdk_sqs::Client {
    let _ = sfn().await; // fails with the fix if LocalStack is not up
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region("us-east-1")
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&conf)
}

pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Messages in the queue, visible or not.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attrs
            .get(a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// A state machine whose one Task sends `$$.Task.Token` and the input to
/// `queue_url` and waits for the callback.
pub fn callback_machine(queue_url: &str, task_extra: serde_json::Value) -> serde_json::Value {
    let mut task = serde_json::json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {
            "QueueUrl": queue_url,
            "MessageBody": { "taskToken.$": "$$.Task.Token", "input.$": "$" }
        },
        "TimeoutSeconds": 120,
        "End": true
    });
    if let (Some(t), Some(extra)) = (task.as_object_mut(), task_extra.as_object()) {
        t.extend(extra.clone());
    }
    serde_json::json!({ "StartAt": "Callback", "States": { "Callback": task } })
}

/// A `[[queue]]` binding running the exec fixture (input at /input).
pub fn queue_exec_binding(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[queue]]\nname = \"{name}\"\nurl = \"{url}\"\nhandler = \"exec\"\ninput_pointer = \"/input\"\n{extra}\n[queue.params]\ncommand = [\"python3\", \"{}\"]\n",
        fixture("task.py").display()
    )
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

pub async fn create_activity(sfn: &Client, name: &str) -> String {
    sfn.create_activity()
        .name(name)
        .send()
        .await
        .unwrap()
        .activity_arn
}

pub async fn create_state_machine(
    sfn: &Client,
    name: &str,
    definition: serde_json::Value,
) -> String {
    sfn.create_state_machine()
        .name(name)
        .role_arn(ROLE)
        .definition(definition.to_string())
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

/// A one-task state machine for `activity_arn`, with extra fields for the Task state.
pub fn task_machine(activity_arn: &str, task_extra: serde_json::Value) -> serde_json::Value {
    let mut task = serde_json::json!({
        "Type": "Task", "Resource": activity_arn, "TimeoutSeconds": 120, "End": true
    });
    if let (Some(t), Some(extra)) = (task.as_object_mut(), task_extra.as_object()) {
        t.extend(extra.clone());
    }
    serde_json::json!({ "StartAt": "Work", "States": { "Work": task } })
}

pub async fn start(sfn: &Client, machine: &str, input: serde_json::Value) -> String {
    sfn.start_execution()
        .state_machine_arn(machine)
        .input(input.to_string())
        .send()
        .await
        .unwrap()
        .execution_arn
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub status: String,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

pub async fn wait_ended(sfn: &Client, execution: &str, within: Duration) -> Ended {
    let deadline = Instant::now() + within;
    loop {
        let d = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        let status = d.status.as_str().to_owned();
        if status != "RUNNING" {
            return Ended {
                status,
                output: d.output.map(|o| serde_json::from_str(&o).unwrap()),
                error: d.error,
                cause: d.cause,
            };
        }
        assert!(
            Instant::now() < deadline,
            "{execution} still RUNNING after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real `sfn-worker` binary, running a config.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Start `sfn-worker run` with `bindings` (TOML `[[activity]]` entries) and
    /// `worker` (extra `[worker]` lines); waits for `/readyz`.
    pub fn start(dir: &Path, worker: &str, bindings: &str) -> Daemon {
        Self::start_named(dir, "sfn-worker", worker, bindings)
    }

    /// The children of this daemon's process: (pid, state letter).
    pub fn children_of(pid: u32) -> Vec<(u32, char)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
            if fields.next().and_then(|pp| pp.parse::<u32>().ok()) == Some(pid) {
                out.push((p, state));
            }
        }
        out
    }

    /// As [`Daemon::start`], with its own config and log file names.
    pub fn start_named(dir: &Path, name: &str, worker: &str, bindings: &str) -> Daemon {
        Self::start_with(dir, name, worker, bindings, &[], &[])
    }

    /// As [`Daemon::start_named`], run through `wrapper` (a command that
    /// runs the rest of its argv, like `unshare ...`) with extra `env`.
    pub fn start_with(
        dir: &Path,
        name: &str,
        worker: &str,
        bindings: &str,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_full(dir, name, "", worker, bindings, wrapper, env)
    }

    /// As [`Daemon::start_with`], with extra `[aws]` lines.
    pub fn start_full(
        dir: &Path,
        name: &str,
        aws: &str,
        worker: &str,
        bindings: &str,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        let body = format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n{aws}\n\n[worker]\nmetrics_addr = \"127.0.0.1:{port}\"\n{worker}\n\n{bindings}\n",
            endpoint()
        );
        std::fs::write(&config, body).unwrap();
        let log = dir.join(format!("{name}.log"));
        let exe = env!("CARGO_BIN_EXE_sfn-worker");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "info,sfn_worker_core=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            port,
            log,
            config,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = http_get(self.port, "/readyz") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sfn-worker exited during start-up ({status}):\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sfn-worker not ready after 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit (polling, so the test's runtime stays free).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sfn-worker still running after {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of a counter's samples whose labels contain every `want` pair.
pub fn counter(metrics: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn exec_binding(name: &str, arn: &str, extra: &str) -> String {
    format!(
        "[[activity]]\nname = \"{name}\"\narn = \"{arn}\"\nhandler = \"exec\"\n{extra}\n[activity.params]\ncommand = [\"python3\", \"{}\"]\n",
        fixture("task.py").display()
    )
}
