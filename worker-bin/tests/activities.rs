//! Activities end to end: LocalStack, real state machines, the real binary.
//!
//! Needs LocalStack (scripts/test.sh starts it). Every test makes its own
//! activities and state machines, so they run in parallel.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_executions_succeed_with_the_handlers_outputs() {
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("square")).await;
    let machine =
        create_state_machine(&sfn, &unique("square"), task_machine(&arn, json!({}))).await;
    let dir = scratch_dir("fifty");
    let daemon = Daemon::start(
        &dir,
        "",
        &exec_binding("square", &arn, "pollers = 4\nconcurrency = 8"),
    );

    let mut executions = Vec::new();
    for n in 0..50 {
        executions.push((n, start(&sfn, &machine, json!({ "n": n })).await));
    }
    for (n, execution) in executions {
        let ended = wait_ended(&sfn, &execution, Duration::from_secs(120)).await;
        assert_eq!(
            ended.status,
            "SUCCEEDED",
            "n={n}: {ended:?}\n{}",
            daemon.logs()
        );
        assert_eq!(ended.output, Some(json!({ "square": n * n })));
    }
    let m = daemon.metrics();
    assert_eq!(
        counter(
            &m,
            "sfn_worker_tasks_completed_total",
            &[("binding", "square"), ("outcome", "succeeded")]
        ),
        50.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "sfn_worker_tasks_received_total",
            &[("source", "activity")]
        ),
        50.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_error_is_routed_by_catch_on_its_name() {
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("catch")).await;
    let definition = json!({
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task", "Resource": arn, "TimeoutSeconds": 60,
                "Catch": [{ "ErrorEquals": ["Demo.Boom"], "ResultPath": "$.caught", "Next": "Recovered" }],
                "End": true
            },
            "Recovered": { "Type": "Pass", "End": true }
        }
    });
    let machine = create_state_machine(&sfn, &unique("catch"), definition).await;
    let dir = scratch_dir("catch");
    let daemon = Daemon::start(&dir, "", &exec_binding("catch", &arn, ""));

    let caught = start(&sfn, &machine, json!({ "fail": "Demo.Boom" })).await;
    let uncaught = start(&sfn, &machine, json!({ "fail": "Demo.Other" })).await;
    let caught = wait_ended(&sfn, &caught, Duration::from_secs(60)).await;
    assert_eq!(caught.status, "SUCCEEDED", "{caught:?}\n{}", daemon.logs());
    let output = caught.output.unwrap();
    assert_eq!(output["caught"]["Error"], "Demo.Boom", "{output}");
    assert_eq!(output["caught"]["Cause"], "the task asked to fail");
    let uncaught = wait_ended(&sfn, &uncaught, Duration::from_secs(60)).await;
    assert_eq!(uncaught.status, "FAILED");
    assert_eq!(uncaught.error.as_deref(), Some("Demo.Other"));
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_task_alive_past_heartbeat_seconds() {
    let sfn = sfn().await;
    // Two activities behind states with HeartbeatSeconds 3 and a 10 s handler:
    // one binding heartbeats every second, the other never (the control, which
    // shows the emulator does enforce HeartbeatSeconds).
    let beating = create_activity(&sfn, &unique("beating")).await;
    let silent = create_activity(&sfn, &unique("silent")).await;
    let hb = json!({ "HeartbeatSeconds": 3, "TimeoutSeconds": 60 });
    let m_beating =
        create_state_machine(&sfn, &unique("beating"), task_machine(&beating, hb.clone())).await;
    let m_silent = create_state_machine(&sfn, &unique("silent"), task_machine(&silent, hb)).await;
    let dir = scratch_dir("heartbeat");
    let bindings = format!(
        "{}\n{}",
        exec_binding("beating", &beating, "heartbeat_secs = 1"),
        exec_binding("silent", &silent, "heartbeat_secs = 0")
    );
    let daemon = Daemon::start(&dir, "", &bindings);

    let started = Instant::now();
    let ok = start(&sfn, &m_beating, json!({ "n": 3, "sleep": 10 })).await;
    let timed_out = start(&sfn, &m_silent, json!({ "n": 3, "sleep": 10 })).await;
    let ok = wait_ended(&sfn, &ok, Duration::from_secs(60)).await;
    assert_eq!(ok.status, "SUCCEEDED", "{ok:?}\n{}", daemon.logs());
    assert_eq!(ok.output, Some(json!({ "square": 9 })));
    let timed_out = wait_ended(&sfn, &timed_out, Duration::from_secs(60)).await;
    assert_eq!(timed_out.status, "FAILED");
    // AWS says States.HeartbeatTimeout; LocalStack says States.Timeout. Either
    // way it must be the 3 s heartbeat that expired, not the 60 s timeout.
    let error = timed_out.error.as_deref().unwrap_or_default();
    assert!(
        ["States.HeartbeatTimeout", "States.Timeout"].contains(&error),
        "{timed_out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "ended by TimeoutSeconds, not HeartbeatSeconds"
    );
    assert!(
        counter(
            &daemon.metrics(),
            "sfn_worker_heartbeats_total",
            &[("binding", "beating"), ("result", "ok")]
        ) >= 5.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_task_in_a_state_without_heartbeat_seconds_succeeds_whatever_heartbeat_secs_is() {
    // LocalStack answers InvalidToken to every heartbeat of such a state
    // (AWS accepts and ignores them): that alone must not stop the task.
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("nohb")).await;
    let machine = create_state_machine(&sfn, &unique("nohb"), task_machine(&arn, json!({}))).await;
    let dir = scratch_dir("nohb");
    let daemon = Daemon::start(&dir, "", &exec_binding("nohb", &arn, "heartbeat_secs = 1"));
    let execution = start(&sfn, &machine, json!({ "n": 4, "sleep": 6 })).await;
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(60)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    assert_eq!(ended.output, Some(json!({ "square": 16 })));
    let m = daemon.metrics();
    assert!(
        counter(
            &m,
            "sfn_worker_heartbeats_total",
            &[("binding", "nohb"), ("result", "invalid_token")]
        ) >= 3.0,
        "LocalStack no longer answers InvalidToken here; this test proves nothing now:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_execution_cancels_the_handler_within_a_heartbeat_and_kills_the_child() {
    // The state has HeartbeatSeconds, so LocalStack accepts heartbeats while
    // the task is open. Two executions run the same long task; one is
    // stopped. The other is the control: the same task, not stopped, must
    // not be cancelled, or the test would pass without StopExecution.
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("stop")).await;
    let machine = create_state_machine(
        &sfn,
        &unique("stop"),
        task_machine(&arn, json!({ "HeartbeatSeconds": 30 })),
    )
    .await;
    let dir = scratch_dir("stop");
    let heartbeat_secs = 2;
    let daemon = Daemon::start(
        &dir,
        "",
        &exec_binding("stop", &arn, &format!("heartbeat_secs = {heartbeat_secs}")),
    );
    let (stopped_pid, kept_pid) = (dir.join("stopped.pid"), dir.join("kept.pid"));
    let stopped = start(
        &sfn,
        &machine,
        json!({ "sleep": 14, "pidfile": stopped_pid }),
    )
    .await;
    let kept = start(
        &sfn,
        &machine,
        json!({ "n": 3, "sleep": 14, "pidfile": kept_pid }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(stopped_pid.exists() && kept_pid.exists()) {
        assert!(
            Instant::now() < deadline,
            "the handlers never started:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a heartbeat be accepted first, as it is for any running task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(
        &daemon.metrics(),
        "sfn_worker_heartbeats_total",
        &[("binding", "stop"), ("result", "ok")],
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "no heartbeat accepted:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = std::fs::read_to_string(&stopped_pid).unwrap();
    sfn.stop_execution()
        .execution_arn(&stopped)
        .send()
        .await
        .unwrap();
    let at_stop = Instant::now();
    let proc_dir = format!("/proc/{}", pid.trim());
    // The next heartbeat (or the one after, as LocalStack may accept one
    // right after StopExecution) finds the task closed.
    let limit = Duration::from_secs(2 * heartbeat_secs + 2);
    while std::path::Path::new(&proc_dir).exists() {
        assert!(
            at_stop.elapsed() < limit,
            "child {pid} still alive {:?} after StopExecution:\n{}",
            at_stop.elapsed(),
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The control ran on through the same heartbeats and succeeded.
    let kept = wait_ended(&sfn, &kept, Duration::from_secs(60)).await;
    assert_eq!(kept.status, "SUCCEEDED", "{kept:?}\n{}", daemon.logs());
    assert_eq!(kept.output, Some(json!({ "square": 9 })));
    // The stopped task was reported once more (the handler's cancellation
    // error): AWS refuses that report (TaskTimedOut: outcome `cancelled`);
    // LocalStack accepts a SendTaskFailure for a stopped execution's task
    // (outcome `failed`). Either way exactly one task ended that way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = daemon.metrics();
        let ended = |outcome| {
            counter(
                &m,
                "sfn_worker_tasks_completed_total",
                &[("binding", "stop"), ("outcome", outcome)],
            )
        };
        if ended("cancelled") + ended("failed") == 1.0 {
            assert_eq!(ended("succeeded"), 1.0, "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped task did not end:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_tasks_in_flight_reports_every_task_and_exits_zero() {
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("drain")).await;
    let machine = create_state_machine(&sfn, &unique("drain"), task_machine(&arn, json!({}))).await;
    let dir = scratch_dir("drain");
    // Six slots, five long tasks: one poll stays open while they run.
    let mut daemon = Daemon::start(
        &dir,
        "shutdown_grace_secs = 30",
        &exec_binding("drain", &arn, "pollers = 2\nconcurrency = 6"),
    );

    let mut executions = Vec::new();
    for i in 0..5 {
        let pidfile = dir.join(format!("{i}.pid"));
        executions.push((
            start(
                &sfn,
                &machine,
                json!({ "n": i, "sleep": 4, "pidfile": pidfile }),
            )
            .await,
            pidfile,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !executions.iter().all(|(_, p)| p.exists()) {
        assert!(
            Instant::now() < deadline,
            "handlers did not start:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.signal("TERM");
    // Draining: not ready, but alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http_get(daemon.port, "/readyz").map(|r| r.0), Some(503));
    assert_eq!(http_get(daemon.port, "/healthz").map(|r| r.0), Some(200));
    // A task started now is handed to the poll that was open at SIGTERM:
    // that poll is not aborted, so the task runs here and is not lost.
    let late = start(&sfn, &machine, json!({ "n": 7 })).await;

    let status = daemon.wait_exit(Duration::from_secs(90)).await;
    assert!(status.success(), "exit {status}:\n{}", daemon.logs());
    for (execution, _) in &executions {
        let ended = wait_ended(&sfn, execution, Duration::from_secs(10)).await;
        assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    }
    let late = wait_ended(&sfn, &late, Duration::from_secs(10)).await;
    assert_eq!(late.status, "SUCCEEDED", "{late:?}\n{}", daemon.logs());
    assert_eq!(late.output, Some(json!({ "square": 49 })));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_grace_period_fails_tasks_with_worker_shutting_down() {
    let sfn = sfn().await;
    let arn = create_activity(&sfn, &unique("grace")).await;
    let machine = create_state_machine(&sfn, &unique("grace"), task_machine(&arn, json!({}))).await;
    let dir = scratch_dir("grace");
    let mut daemon = Daemon::start(
        &dir,
        "shutdown_grace_secs = 1\ncancel_grace_secs = 2",
        &exec_binding(
            "grace",
            &arn,
            "pollers = 2\nconcurrency = 2\n[activity.params.env]\n",
        ),
    );
    let pidfiles: Vec<_> = (0..2).map(|i| dir.join(format!("{i}.pid"))).collect();
    let mut executions = Vec::new();
    for p in &pidfiles {
        executions.push(start(&sfn, &machine, json!({ "sleep": 300, "pidfile": p })).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfiles.iter().all(|p| p.exists()) {
        assert!(
            Instant::now() < deadline,
            "handlers did not start:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", daemon.logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?}",
        signalled.elapsed()
    );
    for execution in &executions {
        let ended = wait_ended(&sfn, execution, Duration::from_secs(10)).await;
        assert_eq!(ended.status, "FAILED");
        assert_eq!(
            ended.error.as_deref(),
            Some("Worker.ShuttingDown"),
            "{ended:?}"
        );
    }
    for p in &pidfiles {
        let pid = std::fs::read_to_string(p).unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "child {pid} outlived the worker"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_an_activity_that_does_not_exist() {
    let _ = sfn().await; // LocalStack must answer, or this test proves nothing.
    let dir = scratch_dir("missing");
    let path = dir.join("missing.toml");
    let arn = format!(
        "arn:aws:states:us-east-1:000000000000:activity:{}",
        unique("nope")
    );
    std::fs::write(
        &path,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[worker]\nmetrics_addr = \"127.0.0.1:{}\"\n[[activity]]\narn = \"{arn}\"\nhandler = \"echo\"\n",
            endpoint(),
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sfn-worker"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let (code, stderr) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{arn} does not exist in Step Functions")),
        "{stderr}"
    );
}
