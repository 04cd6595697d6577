//! `exec`: run a command with the task input on stdin.
//!
//! Protocol:
//! - The command is an argv list, run directly (never through a shell, so
//!   task data is never interpolated into a command line). The task input
//!   JSON is written to its stdin, which is then closed.
//! - Exit 0: stdout must be JSON; it is the task output (otherwise
//!   `Exec.InvalidOutput`).
//! - Non-zero exit: if stdout is `{"error": "...", "cause": "..."}`, that is
//!   the task failure (a state machine can `Catch` the name); otherwise
//!   `Exec.NonZeroExit` with the exit code and the tail of stderr.
//! - Cancellation (task closed, timeout, shutdown): SIGTERM to the command's
//!   process group, SIGKILL `kill_after_secs` later.
//! - stdout is captured up to `max_output_bytes` (beyond it the task fails
//!   with `Worker.OutputTooLarge`), stderr's last 8 KiB are kept for the cause.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use sfn_worker_core::error_names::OUTPUT_TOO_LARGE;
use sfn_worker_core::handler::HandlerFuture;
use sfn_worker_core::{Handler, HandlerFactory, TaskContext, TaskError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The command could not be started.
pub const SPAWN_FAILED: &str = "Exec.SpawnFailed";
/// Exit 0, but stdout is not JSON.
pub const INVALID_OUTPUT: &str = "Exec.InvalidOutput";
/// Non-zero exit without a `{"error", "cause"}` on stdout.
pub const NON_ZERO_EXIT: &str = "Exec.NonZeroExit";
/// The command was stopped because the task was cancelled.
pub const CANCELLED: &str = "Exec.Cancelled";

const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// The `exec` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exec;

/// `[activity.params]` of `exec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments, e.g. `["./resize.sh", "--fast"]`.
    pub command: Vec<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; default: the worker's.
    pub cwd: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL on cancellation. Default 5.
    #[serde(default = "default_kill_after_secs")]
    pub kill_after_secs: u64,
    /// The most stdout kept, in bytes. Default 1 MiB.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
}

fn default_kill_after_secs() -> u64 {
    5
}
fn default_max_output_bytes() -> usize {
    1024 * 1024
}

impl HandlerFactory for Exec {
    type Params = ExecParams;

    fn kind(&self) -> &str {
        "exec"
    }
    fn description(&self) -> &str {
        "Runs params.command (argv, no shell) with the task input on stdin; stdout JSON is the output."
    }
    fn params_help(&self) -> &str {
        "command: [string] (required) - program and arguments, run without a shell\n\
         env: table of strings (default {}) - extra environment variables\n\
         cwd: string (default: the worker's) - working directory\n\
         kill_after_secs: integer (default 5) - SIGTERM to SIGKILL delay on cancellation\n\
         max_output_bytes: integer (default 1048576) - stdout kept"
    }
    fn build(&self, params: ExecParams) -> Result<Arc<dyn Handler>, String> {
        match params.command.first() {
            None => return Err("command: expected a non-empty list like [\"./run.sh\"]".into()),
            Some(p) if p.is_empty() => {
                return Err("command[0]: expected a program, got \"\"".into());
            }
            Some(_) => {}
        }
        if params.max_output_bytes == 0 {
            return Err("max_output_bytes: expected a positive number".into());
        }
        Ok(Arc::new(ExecHandler(Arc::new(params))))
    }
}

struct ExecHandler(Arc<ExecParams>);

impl Handler for ExecHandler {
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture {
        let params = self.0.clone();
        Box::pin(async move { run(&params, input, ctx).await })
    }
}

async fn run(p: &ExecParams, input: String, ctx: TaskContext) -> Result<String, TaskError> {
    let mut cmd = Command::new(&p.command[0]);
    cmd.args(&p.command[1..])
        .envs(&p.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so cancellation reaches what it started too.
        .process_group(0)
        // If the worker drops this future (abandoned at shutdown), kill it.
        .kill_on_drop(true);
    if let Some(cwd) = &p.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| {
        TaskError::new(
            SPAWN_FAILED,
            format!("could not start {:?}: {e}", p.command[0]),
        )
    })?;
    let pid = child.id();
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());

    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input closes the pipe: fine.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
    };
    let finished = async {
        let ((), out, err) = tokio::join!(
            feed,
            read_bounded(stdout, p.max_output_bytes),
            read_tail(stderr, STDERR_TAIL_BYTES)
        );
        (child.wait().await, out, err)
    };
    let mut finished = std::pin::pin!(finished);

    let (status, (stdout, stdout_overflow), stderr) = tokio::select! {
        r = &mut finished => r,
        _ = ctx.cancelled() => {
            signal(pid, Signal::SIGTERM);
            let kill_after = Duration::from_secs(p.kill_after_secs);
            if tokio::time::timeout(kill_after, &mut finished).await.is_err() {
                signal(pid, Signal::SIGKILL);
                let _ = finished.await;
            }
            return Err(TaskError::new(CANCELLED, "the command was stopped because the task was cancelled"));
        }
    };
    let status = status.map_err(|e| {
        TaskError::new(SPAWN_FAILED, format!("waiting for the command failed: {e}"))
    })?;
    if stdout_overflow {
        return Err(TaskError::new(
            OUTPUT_TOO_LARGE,
            format!(
                "the command wrote more than max_output_bytes ({}) to stdout",
                p.max_output_bytes
            ),
        ));
    }
    if status.success() {
        return match serde_json::from_slice::<Box<serde_json::value::RawValue>>(&stdout) {
            Ok(raw) => Ok(raw.get().to_owned()),
            Err(e) => Err(TaskError::new(
                INVALID_OUTPUT,
                format!(
                    "the command exited 0 but stdout is not JSON ({e}); stdout began: {:?}",
                    String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
                ),
            )),
        };
    }
    Err(declared_failure(&stdout).unwrap_or_else(|| {
        TaskError::new(
            NON_ZERO_EXIT,
            format!(
                "{}; stderr: {}",
                describe(status),
                String::from_utf8_lossy(&stderr).trim_end()
            ),
        )
    }))
}

/// The failure a command declared on stdout: `{"error": ..., "cause": ...}`.
fn declared_failure(stdout: &[u8]) -> Option<TaskError> {
    #[derive(Deserialize)]
    struct Declared {
        error: String,
        #[serde(default)]
        cause: Option<String>,
    }
    let d: Declared = serde_json::from_slice(stdout).ok()?;
    Some(TaskError::new(d.error, d.cause.unwrap_or_default()))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited abnormally".to_owned(),
    }
}

fn signal(pid: Option<u32>, sig: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The group may already be gone; nothing to do then.
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// Read all of `r`, keeping the first `max` bytes; the rest is drained so the
/// writer never blocks. Returns (kept, whether anything was dropped).
async fn read_bounded(r: Option<impl AsyncRead + Unpin>, max: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut overflow = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                overflow |= n > room;
            }
        }
    }
    (kept, overflow)
}

/// Read all of `r`, keeping the last `max` bytes.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, max: usize) -> Vec<u8> {
    let Some(mut r) = r else { return Vec::new() };
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > max {
                    tail.drain(..tail.len() - max);
                }
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests;
