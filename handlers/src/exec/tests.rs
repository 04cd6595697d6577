use std::time::{Duration, Instant};

use sfn_worker_core::{CancelReason, HandlerFactory, TaskContext};

use super::*;

fn exec(params: serde_json::Value) -> Arc<dyn Handler> {
    Exec.build(serde_json::from_value(params).unwrap()).unwrap()
}

fn sh(script: &str) -> Arc<dyn Handler> {
    exec(serde_json::json!({ "command": ["sh", "-c", script] }))
}

#[tokio::test]
async fn stdin_is_the_input_and_stdout_json_is_the_output() {
    let out = sh("cat")
        .call(r#"{"a":[1,2]}"#.into(), TaskContext::local("t"))
        .await;
    assert_eq!(out.unwrap(), r#"{"a":[1,2]}"#);
}

#[tokio::test]
async fn task_data_is_never_interpreted_by_a_shell() {
    // argv is passed as is: the input reaches the program only on stdin.
    let h = exec(serde_json::json!({ "command": ["printf", "%s", "\"$(touch /tmp/sfn-pwned)\""] }));
    let out = h
        .call(r#""$(rm -rf /)""#.into(), TaskContext::local("t"))
        .await;
    assert_eq!(out.unwrap(), r#""$(touch /tmp/sfn-pwned)""#);
    assert!(!std::path::Path::new("/tmp/sfn-pwned").exists());
}

#[tokio::test]
async fn exit_zero_with_non_json_stdout_is_invalid_output() {
    let err = sh("echo hello")
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert_eq!(err.error(), "Exec.InvalidOutput");
    assert!(err.cause().contains("hello"), "{}", err.cause());
}

#[tokio::test]
async fn non_zero_exit_with_a_declared_error_is_that_error() {
    let err = sh(r#"echo '{"error":"Resize.TooBig","cause":"10000px"}'; exit 3"#)
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert_eq!((err.error(), err.cause()), ("Resize.TooBig", "10000px"));
}

#[tokio::test]
async fn non_zero_exit_otherwise_carries_the_code_and_stderr_tail() {
    let err = sh("echo first >&2; echo 'it broke' >&2; exit 7")
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert_eq!(err.error(), "Exec.NonZeroExit");
    assert!(
        err.cause()
            .starts_with("exit code 7; stderr: first\nit broke"),
        "{}",
        err.cause()
    );
}

#[tokio::test]
async fn stderr_is_bounded_to_its_tail() {
    let err = sh("head -c 100000 /dev/zero | tr '\\0' a >&2; echo END >&2; exit 1")
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert!(err.cause().len() < STDERR_TAIL_BYTES + 100);
    assert!(err.cause().ends_with("END"));
}

#[tokio::test]
async fn stdout_beyond_the_bound_fails_and_does_not_block_the_child() {
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "head -c 5000000 /dev/zero"],
        "max_output_bytes": 1000
    }));
    let err = h
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert_eq!(err.error(), "Worker.OutputTooLarge");
}

#[tokio::test]
async fn a_command_that_ignores_stdin_still_works_with_large_input() {
    let input = format!("\"{}\"", "x".repeat(1_000_000));
    let out = sh("echo 1").call(input, TaskContext::local("t")).await;
    assert_eq!(out.unwrap(), "1");
}

#[tokio::test]
async fn env_and_cwd_are_applied() {
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "printf '{\"v\":\"%s\",\"d\":\"%s\"}' \"$GREETING\" \"$(pwd)\""],
        "env": {"GREETING": "hi"},
        "cwd": "/tmp"
    }));
    let out = h.call("{}".into(), TaskContext::local("t")).await.unwrap();
    assert_eq!(out, r#"{"v":"hi","d":"/tmp"}"#);
}

#[tokio::test]
async fn a_missing_program_is_spawn_failed() {
    let h = exec(serde_json::json!({ "command": ["/nonexistent/program"] }));
    let err = h
        .call("{}".into(), TaskContext::local("t"))
        .await
        .unwrap_err();
    assert_eq!(err.error(), "Exec.SpawnFailed");
}

#[test]
fn empty_command_is_refused_at_build() {
    let err = Exec
        .build(serde_json::from_value(serde_json::json!({ "command": [] })).unwrap())
        .err()
        .unwrap();
    assert_eq!(err.param, "command");
    assert!(err.message.contains("non-empty"), "{err}");
}

#[tokio::test]
async fn cancellation_terminates_the_child() {
    let (ctx, c) = TaskContext::local_cancellable("t");
    let h = sh("sleep 30");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.cancel(CancelReason::TaskClosed);
    });
    let start = Instant::now();
    let err = h.call("{}".into(), ctx).await.unwrap_err();
    assert_eq!(err.error(), "Exec.Cancelled");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_kill_after_secs() {
    let dir = std::env::temp_dir().join(format!("sfn-exec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "trap '' TERM; echo $$ > \"$PIDFILE\"; while :; do sleep 0.1; done"],
        "env": {"PIDFILE": pidfile.to_str().unwrap()},
        "kill_after_secs": 1
    }));
    let (ctx, c) = TaskContext::local_cancellable("t");
    let p = pidfile.clone();
    tokio::spawn(async move {
        while !p.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.cancel(CancelReason::Shutdown);
    });
    let start = Instant::now();
    let err = h.call("{}".into(), ctx).await.unwrap_err();
    assert_eq!(err.error(), "Exec.Cancelled");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} still alive"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Whether `pid` is gone (or a zombie waiting for its parent to reap it).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

async fn wait_dead(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dead(pid)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sfn-exec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_task_ends_when_the_command_exits_and_what_it_left_is_terminated() {
    let dir = scratch("leftover");
    let pidfile = dir.join("bg");
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "sleep 300 & echo $! > \"$PIDFILE\"; echo '{\"ok\":true}'"],
        "env": {"PIDFILE": pidfile.to_str().unwrap()},
    }));
    let start = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        h.call("{}".into(), TaskContext::local("t")),
    )
    .await
    .expect("the task waited for the background sleep");
    assert_eq!(out.unwrap(), r#"{"ok":true}"#);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let bg = read_pid(&pidfile);
    assert!(
        wait_dead(bg, Duration::from_secs(2)).await,
        "leftover {bg} still runs"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn cancellation_reaches_everything_in_the_group() {
    let dir = scratch("cancel-group");
    let pidfile = dir.join("bg");
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "sleep 300 & echo $! > \"$PIDFILE\"; wait"],
        "env": {"PIDFILE": pidfile.to_str().unwrap()},
    }));
    let (ctx, c) = TaskContext::local_cancellable("t");
    let p = pidfile.clone();
    tokio::spawn(async move {
        while !p.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.cancel(CancelReason::TaskClosed);
    });
    let err = h.call("{}".into(), ctx).await.unwrap_err();
    assert_eq!(err.error(), "Exec.Cancelled");
    let bg = read_pid(&pidfile);
    assert!(
        wait_dead(bg, Duration::from_secs(2)).await,
        "{bg} still runs"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_handler_dropped_before_the_command_ended_kills_its_whole_group() {
    // As when the worker abandons a handler at the cancel grace: the
    // future is dropped, with kill_after_secs not yet over.
    let dir = scratch("dropped");
    let (sh_pid, bg_pid) = (dir.join("sh"), dir.join("bg"));
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "trap '' TERM; sleep 300 & echo $! > \"$BG\"; echo $$ > \"$SH\"; wait"],
        "env": {"BG": bg_pid.to_str().unwrap(), "SH": sh_pid.to_str().unwrap()},
        "kill_after_secs": 600,
    }));
    let (ctx, cancel) = TaskContext::local_cancellable("t");
    let run = tokio::spawn(h.call("{}".into(), ctx));
    while !(sh_pid.exists() && bg_pid.exists()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel(CancelReason::Shutdown);
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.abort();
    let _ = run.await;
    for pid in [read_pid(&sh_pid), read_pid(&bg_pid)] {
        assert!(
            wait_dead(pid, Duration::from_secs(2)).await,
            "{pid} survived the drop"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_command_gets_only_the_environment_it_is_given() {
    let parent = [
        ("PATH", "/usr/bin"),
        ("HOME", "/home/w"),
        ("LC_ALL", "C.UTF-8"),
        ("SFN_WORKER_CONFIG_TOML", "[aws] secrets"),
        ("API_TOKEN", "s3cr3t"),
        ("AWS_SECRET_ACCESS_KEY", "k"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let names = |inherit: &[String], env: &BTreeMap<String, String>| -> Vec<String> {
        child_env(parent.clone().into_iter(), inherit, env)
            .into_iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect()
    };
    assert_eq!(
        names(&default_env_inherit(), &BTreeMap::new()),
        ["PATH=/usr/bin", "HOME=/home/w", "LC_ALL=C.UTF-8"]
    );
    let env = BTreeMap::from([("MODE".to_owned(), "fast".to_owned())]);
    assert_eq!(
        names(&["API_*".to_owned()], &env),
        ["API_TOKEN=s3cr3t", "MODE=fast"]
    );
}

#[test]
fn env_inherit_patterns_are_checked_at_build() {
    for bad in ["", "A=B", "*X*"] {
        let err = Exec
            .build(
                serde_json::from_value(
                    serde_json::json!({ "command": ["true"], "env_inherit": [bad] }),
                )
                .unwrap(),
            )
            .err()
            .unwrap();
        assert_eq!(err.param, "env_inherit", "{bad}: {err}");
    }
}

#[test]
fn a_kill_delay_that_would_overflow_the_clock_is_refused() {
    let err = Exec
        .build(
            serde_json::from_value(
                serde_json::json!({ "command": ["true"], "kill_after_secs": u64::MAX }),
            )
            .unwrap(),
        )
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("kill_after_secs: expected at most"),
        "{err}"
    );
}

/// Build `params` and return the error's field, or panic with what built.
fn refused(params: serde_json::Value) -> BuildError {
    match Exec.build(serde_json::from_value(params.clone()).unwrap()) {
        Ok(_) => panic!("built from {params}"),
        Err(e) => e,
    }
}

#[test]
fn a_non_ascii_env_inherit_entry_is_checked_without_a_panic() {
    // "é" is two bytes: slicing off its last byte was a panic at load.
    for good in ["é", "É_*", "CAFÉ"] {
        let params = serde_json::json!({ "command": ["true"], "env_inherit": [good] });
        assert!(
            Exec.build(serde_json::from_value(params).unwrap()).is_ok(),
            "{good}"
        );
    }
    for bad in ["é*é", "*é", "A\0B"] {
        let err = refused(serde_json::json!({ "command": ["true"], "env_inherit": [bad] }));
        assert_eq!(err.param, "env_inherit", "{bad:?}: {err}");
    }
}

#[test]
fn env_command_and_cwd_that_could_not_be_spawned_are_refused_at_build() {
    let cases = [
        (
            serde_json::json!({ "command": ["true"], "env": { "": "x" } }),
            "env",
        ),
        (
            serde_json::json!({ "command": ["true"], "env": { "A=B": "x" } }),
            "env",
        ),
        (
            serde_json::json!({ "command": ["true"], "env": { "A\0": "x" } }),
            "env",
        ),
        (
            serde_json::json!({ "command": ["true"], "env": { "A": "x\0y" } }),
            "env.A",
        ),
        (serde_json::json!({ "command": ["tr\0ue"] }), "command[0]"),
        (
            serde_json::json!({ "command": ["echo", "a", "b\0"] }),
            "command[2]",
        ),
        (
            serde_json::json!({ "command": ["true"], "cwd": "/tmp\0" }),
            "cwd",
        ),
    ];
    for (params, field) in cases {
        let err = refused(params.clone());
        assert_eq!(err.param, field, "{params}: {err}");
    }
    // '=' in a value is ordinary.
    let params = serde_json::json!({ "command": ["true"], "env": { "A": "ok=fine" } });
    assert!(Exec.build(serde_json::from_value(params).unwrap()).is_ok());
}

/// Wait for `pid` to die until `deadline`; SIGKILL it if it did not, so a
/// failing test leaves nothing running. Whether it died by itself.
async fn dies_by(pid: i32, deadline: Instant) -> bool {
    let gone = wait_dead(pid, deadline.saturating_duration_since(Instant::now())).await;
    if !gone {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    gone
}

#[tokio::test]
async fn cancellation_kills_what_ignores_sigterm_even_after_the_command_exited() {
    // The grandchild ignores SIGTERM and holds none of the command's pipes:
    // the command dies of the SIGTERM and its pipes close at once, while
    // the grandchild would run on.
    let dir = scratch("cancel-stubborn");
    let pidfile = dir.join("bg");
    let script = r#"sh -c 'trap "" TERM; echo $$ > "$PIDFILE.tmp"; mv "$PIDFILE.tmp" "$PIDFILE"; exec sleep 300' </dev/null >/dev/null 2>&1 & wait"#;
    let kill_after = Duration::from_secs(2);
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", script],
        "env": {"PIDFILE": pidfile.to_str().unwrap()},
        "kill_after_secs": kill_after.as_secs(),
    }));
    let (ctx, c) = TaskContext::local_cancellable("t");
    let run = tokio::spawn(h.call("{}".into(), ctx));
    while !pidfile.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bg = read_pid(&pidfile);
    let cancelled_at = Instant::now();
    c.cancel(CancelReason::TaskClosed);
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.error(), "Exec.Cancelled");
    // The task did not wait for the SIGKILL: the command itself was gone.
    assert!(
        cancelled_at.elapsed() < kill_after,
        "{:?}",
        cancelled_at.elapsed()
    );
    assert!(
        dies_by(bg, cancelled_at + kill_after + Duration::from_secs(5)).await,
        "{bg} ignored SIGTERM and was never killed"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_command_that_exits_while_what_it_left_keeps_writing_still_ends() {
    // `yes` holds stdout and never goes quiet.
    let dir = scratch("chatty");
    let pidfile = dir.join("bg");
    let h = exec(serde_json::json!({
        "command": ["sh", "-c", "yes & echo $! > \"$PIDFILE\"; echo {}"],
        "env": {"PIDFILE": pidfile.to_str().unwrap()},
    }));
    let start = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        h.call("{}".into(), TaskContext::local("t")),
    )
    .await;
    // What `yes` wrote is mixed into stdout: not JSON, or too much of it.
    let err = ended.expect("still reading what `yes` writes").unwrap_err();
    assert!(
        ["Exec.InvalidOutput", "Worker.OutputTooLarge"].contains(&err.error()),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let bg = read_pid(&pidfile);
    assert!(
        dies_by(bg, Instant::now() + Duration::from_secs(5)).await,
        "{bg} still runs"
    );
    std::fs::remove_dir_all(&dir).ok();
}
