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
//! - The task ends when the command exits. Whatever it left running in its
//!   process group (a `cmd &` it did not wait for) is sent SIGTERM then,
//!   and SIGKILL `kill_after_secs` later. Its pipes are read on only until
//!   they go quiet, for half a second at most.
//! - Cancellation (task closed, timeout, shutdown): SIGTERM to the command's
//!   process group, SIGKILL `kill_after_secs` later to whatever is still in
//!   it, even when the command itself has exited; if the worker drops the
//!   handler first (its cancel grace ran out), SIGKILL at once.
//! - Environment: only what `env_inherit` names (by default `PATH`, `HOME`,
//!   locale and the like) plus `env`; never the rest of the worker's own.
//! - stdout is captured up to `max_output_bytes` (beyond it the task fails
//!   with `Worker.OutputTooLarge`), stderr's last 8 KiB are kept for the cause.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;
use sfn_worker_core::config::MAX_SECS;
use sfn_worker_core::error_names::OUTPUT_TOO_LARGE;
use sfn_worker_core::handler::HandlerFuture;
use sfn_worker_core::{BuildError, Handler, HandlerFactory, TaskContext, TaskError};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use group::GroupGuard;
use pipes::{Captured, drain, read_bounded, read_tail};

mod group;
mod pipes;

/// The command could not be started.
pub const SPAWN_FAILED: &str = "Exec.SpawnFailed";
/// Exit 0, but stdout is not JSON.
pub const INVALID_OUTPUT: &str = "Exec.InvalidOutput";
/// Non-zero exit without a `{"error", "cause"}` on stdout.
pub const NON_ZERO_EXIT: &str = "Exec.NonZeroExit";
/// The command was stopped because the task was cancelled.
pub const CANCELLED: &str = "Exec.Cancelled";

const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// What a command inherits from the worker's environment by default.
const DEFAULT_INHERIT: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR",
];

/// The `exec` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exec;

/// `[activity.params]` of `exec`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments, e.g. `["./resize.sh", "--fast"]`.
    pub command: Vec<String>,
    /// Environment variables for the command, on top of the inherited ones.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The worker's environment variables the command inherits: names, or
    /// prefixes ending in `*`. Default: `PATH`, `HOME`, `USER`, `LOGNAME`,
    /// `LANG`, `LANGUAGE`, `LC_*`, `TZ`, `TMPDIR`. Nothing else (not the
    /// worker's configuration, not the http handler's secret variables)
    /// unless named here.
    #[serde(default = "default_env_inherit")]
    pub env_inherit: Vec<String>,
    /// Working directory; default: the worker's.
    pub cwd: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL on cancellation. Default 5.
    #[serde(default = "default_kill_after_secs")]
    pub kill_after_secs: u64,
    /// The most stdout kept, in bytes. Default 1 MiB.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
}

fn default_env_inherit() -> Vec<String> {
    DEFAULT_INHERIT.iter().map(|s| (*s).to_owned()).collect()
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
         env: table of strings (default {}) - environment variables for the command\n\
         env_inherit: [string] (default PATH HOME USER LOGNAME LANG LANGUAGE LC_* TZ TMPDIR) - the worker's variables it inherits (NAME or PREFIX*)\n\
         cwd: string (default: the worker's) - working directory\n\
         kill_after_secs: integer (default 5) - SIGTERM to SIGKILL delay on cancellation\n\
         max_output_bytes: integer (default 1048576) - stdout kept"
    }
    fn build(&self, params: ExecParams) -> Result<Arc<dyn Handler>, BuildError> {
        check(&params)?;
        Ok(Arc::new(ExecHandler(Arc::new(params))))
    }
}

/// Refuse at load what would panic, or fail every task at spawn time
/// (a NUL byte cannot be passed to `execve`), or silently mean something
/// else (`env = { "A=B" = "c" }` would set `A` to `B=c`).
fn check(params: &ExecParams) -> Result<(), BuildError> {
    match params.command.first() {
        None => {
            return Err(BuildError::new(
                "command",
                "expected a non-empty list like [\"./run.sh\"]",
            ));
        }
        Some(p) if p.is_empty() => {
            return Err(BuildError::new(
                "command[0]",
                "expected a program, got \"\"",
            ));
        }
        Some(_) => {}
    }
    if let Some(i) = params.command.iter().position(|arg| arg.contains('\0')) {
        return Err(BuildError::new(
            format!("command[{i}]"),
            "expected text without NUL bytes",
        ));
    }
    if params.max_output_bytes == 0 {
        return Err(BuildError::new(
            "max_output_bytes",
            "expected a positive number",
        ));
    }
    if params.kill_after_secs > MAX_SECS {
        return Err(BuildError::new(
            "kill_after_secs",
            format!(
                "expected at most {MAX_SECS} (a year), got {}",
                params.kill_after_secs
            ),
        ));
    }
    if let Some(bad) = params.env_inherit.iter().find(|n| {
        // By char, not by byte: the entry may end in a multi-byte character.
        let stem = n.strip_suffix('*').unwrap_or(n);
        !valid_name(n) || stem.contains('*')
    }) {
        return Err(BuildError::new(
            "env_inherit",
            format!("expected variable names or prefixes ending in *, got {bad:?}"),
        ));
    }
    if let Some(bad) = params.env.keys().find(|k| !valid_name(k)) {
        return Err(BuildError::new(
            "env",
            format!("expected variable names (not empty, without = or NUL), got {bad:?}"),
        ));
    }
    if let Some((name, _)) = params.env.iter().find(|(_, v)| v.contains('\0')) {
        return Err(BuildError::new(
            format!("env.{name}"),
            "expected a value without NUL bytes",
        ));
    }
    let cwd_has_nul = params
        .cwd
        .as_ref()
        .is_some_and(|c| c.as_os_str().as_encoded_bytes().contains(&0));
    if cwd_has_nul {
        return Err(BuildError::new("cwd", "expected a path without NUL bytes"));
    }
    Ok(())
}

/// An environment variable's name as `execve` can pass it on.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
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
        // An explicit environment: the worker's own may hold secrets (its
        // configuration, the http handler's header variables).
        .env_clear()
        .envs(child_env(std::env::vars_os(), &p.env_inherit, &p.env))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so cancellation reaches what it started too.
        .process_group(0)
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
    // If this future is dropped (abandoned at the cancel grace), the whole
    // group is killed, not just the command.
    let mut group = GroupGuard::new(child.id());
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());

    // The pipes are read into these while the command runs; they are read
    // even if the readers never see end-of-file (something the command left
    // behind may hold the pipes open).
    let mut out = Captured::default();
    let mut err = Captured::default();
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let status = {
        let io = async {
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    // A command that does not read its input closes the pipe: fine.
                    let _ = stdin.write_all(input.as_bytes()).await;
                }
            };
            tokio::join!(
                feed,
                read_bounded(stdout, p.max_output_bytes, &mut out, &progress),
                read_tail(stderr, STDERR_TAIL_BYTES, &mut err, &progress)
            );
        };
        let mut io = std::pin::pin!(io);
        let mut io_done = false;

        let status = loop {
            tokio::select! {
                () = &mut io, if !io_done => io_done = true,
                status = child.wait() => break status,
                _ = ctx.cancelled() => {
                    group.signal(Signal::SIGTERM);
                    let kill_at = tokio::time::Instant::now() + Duration::from_secs(p.kill_after_secs);
                    let exited = async {
                        let _ = child.wait().await;
                        if !io_done {
                            (&mut io).await;
                        }
                    };
                    if tokio::time::timeout_at(kill_at, exited).await.is_err() {
                        // Only while the command itself lives is the group
                        // surely its own (the rest is `kill_at`'s, which
                        // looks before it signals).
                        if matches!(child.try_wait(), Ok(None)) {
                            group.signal(Signal::SIGKILL);
                        }
                        let _ = child.wait().await;
                    }
                    // The command is gone, but what it started may ignore
                    // SIGTERM without holding its pipes: it gets SIGKILL at
                    // kill_at all the same, while the task returns now.
                    group.kill_at(kill_at);
                    return Err(TaskError::new(CANCELLED, "the command was stopped because the task was cancelled"));
                }
            }
        };
        if !io_done {
            drain(io, &progress, ctx.cancelled()).await;
        }
        status
    };
    // The task ends when the command exits; what it left behind in its
    // process group is terminated (SIGTERM now, SIGKILL after kill_after_secs).
    group.leftovers(Duration::from_secs(p.kill_after_secs));
    let status = status.map_err(|e| {
        TaskError::new(SPAWN_FAILED, format!("waiting for the command failed: {e}"))
    })?;
    if out.overflow {
        return Err(TaskError::new(
            OUTPUT_TOO_LARGE,
            format!(
                "the command wrote more than max_output_bytes ({}) to stdout",
                p.max_output_bytes
            ),
        ));
    }
    let stdout = out.bytes;
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
                String::from_utf8_lossy(&err.bytes).trim_end()
            ),
        )
    }))
}

/// The environment a command gets: the worker's variables named by
/// `inherit` (exact names, or prefixes ending in `*`), then `env`.
fn child_env(
    parent: impl Iterator<Item = (OsString, OsString)>,
    inherit: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<(OsString, OsString)> {
    let wanted = |name: &OsString| {
        let Some(name) = name.to_str() else {
            return false;
        };
        inherit
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    };
    let mut out: Vec<(OsString, OsString)> = parent.filter(|(k, _)| wanted(k)).collect();
    out.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
    out
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

#[cfg(test)]
mod tests;
