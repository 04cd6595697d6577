//! SQS callbacks end to end: LocalStack, real `sqs:sendMessage.waitForTaskToken`
//! state machines, the real binary.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn echo_binding(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[queue]]\nname = \"{name}\"\nurl = \"{url}\"\nhandler = \"echo\"\ninput_pointer = \"/input\"\n{extra}\n[queue.params.add]\nhandled = true\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_callback_executions_succeed_with_the_handlers_output() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("hundred")).await;
    let machine =
        create_state_machine(&sfn, &unique("hundred"), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir("hundred");
    let daemon = Daemon::start(&dir, "", &echo_binding("hundred", &url, "concurrency = 32"));

    let mut executions = Vec::new();
    for n in 0..100 {
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
        assert_eq!(ended.output, Some(json!({ "n": n, "handled": true })));
    }
    let m = daemon.metrics();
    assert_eq!(
        counter(
            &m,
            "sfn_worker_tasks_completed_total",
            &[("source", "sqs"), ("outcome", "succeeded")]
        ),
        100.0,
        "{m}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_depth(&sqs, &url).await > 0 {
        assert!(
            Instant::now() < deadline,
            "messages left in the queue after their tasks succeeded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_three_times_longer_than_the_visibility_timeout_completes_once() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("long")).await;
    let machine =
        create_state_machine(&sfn, &unique("long"), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir("long");
    let daemon = Daemon::start(
        &dir,
        "",
        &queue_exec_binding("long", &url, "visibility_timeout_secs = 10"),
    );
    let execution = start(&sfn, &machine, json!({ "n": 6, "sleep": 30 })).await;
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(90)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    assert_eq!(ended.output, Some(json!({ "square": 36 })));
    let m = daemon.metrics();
    assert_eq!(
        counter(
            &m,
            "sfn_worker_tasks_received_total",
            &[("binding", "long")]
        ),
        1.0,
        "delivered twice:\n{m}"
    );
    assert_eq!(
        counter(
            &m,
            "sfn_worker_duplicate_messages_total",
            &[("binding", "long")]
        ),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_task_in_a_state_without_heartbeat_seconds_succeeds_whatever_heartbeat_secs_is() {
    // LocalStack answers InvalidToken to every heartbeat of such a state
    // (AWS accepts and ignores them); the task must still end with its
    // handler's output.
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("nohb")).await;
    let machine =
        create_state_machine(&sfn, &unique("nohb"), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir("nohb");
    let daemon = Daemon::start(
        &dir,
        "",
        &queue_exec_binding("nohb", &url, "heartbeat_secs = 1"),
    );
    let execution = start(&sfn, &machine, json!({ "n": 5, "sleep": 6 })).await;
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(60)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    assert_eq!(ended.output, Some(json!({ "square": 25 })));
    // The case is real: heartbeats were sent and answered InvalidToken.
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
async fn a_state_with_heartbeat_seconds_succeeds_with_a_handler_running_well_past_it() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    // The control binding sends no heartbeats: its execution must fail,
    // which shows the emulator enforces HeartbeatSeconds for callbacks too.
    let beating = create_queue(&sqs, &unique("beat")).await;
    let silent = create_queue(&sqs, &unique("silent")).await;
    let hb = json!({ "HeartbeatSeconds": 3 });
    let m_beating = create_state_machine(
        &sfn,
        &unique("beat"),
        callback_machine(&beating, hb.clone()),
    )
    .await;
    let m_silent =
        create_state_machine(&sfn, &unique("silent"), callback_machine(&silent, hb)).await;
    let dir = scratch_dir("beat");
    let bindings = format!(
        "{}\n{}",
        queue_exec_binding("beat", &beating, "heartbeat_secs = 1"),
        queue_exec_binding("silent", &silent, "")
    );
    let daemon = Daemon::start(&dir, "", &bindings);
    let started = Instant::now();
    let ok = start(&sfn, &m_beating, json!({ "n": 2, "sleep": 10 })).await;
    let timed_out = start(&sfn, &m_silent, json!({ "n": 2, "sleep": 10 })).await;
    let ok = wait_ended(&sfn, &ok, Duration::from_secs(60)).await;
    assert_eq!(ok.status, "SUCCEEDED", "{ok:?}\n{}", daemon.logs());
    assert_eq!(ok.output, Some(json!({ "square": 4 })));
    assert!(
        counter(
            &daemon.metrics(),
            "sfn_worker_heartbeats_total",
            &[("binding", "beat"), ("result", "ok")]
        ) >= 5.0
    );
    let timed_out = wait_ended(&sfn, &timed_out, Duration::from_secs(60)).await;
    assert_eq!(timed_out.status, "FAILED", "{timed_out:?}");
    let error = timed_out.error.as_deref().unwrap_or_default();
    assert!(
        ["States.HeartbeatTimeout", "States.Timeout"].contains(&error),
        "{timed_out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ended by TimeoutSeconds, not HeartbeatSeconds"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_map_of_two_hundred_callbacks_succeeds() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("map")).await;
    let definition = json!({
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 50,
                "Iterator": callback_machine(&url, json!({})),
                "End": true
            }
        }
    });
    let machine = create_state_machine(&sfn, &unique("map"), definition).await;
    let dir = scratch_dir("map");
    let daemon = Daemon::start(&dir, "", &echo_binding("map", &url, "concurrency = 64"));
    let items: Vec<_> = (0..200).map(|i| json!({ "i": i })).collect();
    let execution = start(&sfn, &machine, json!({ "items": items })).await;
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(240)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    let output = ended.output.unwrap();
    let results = output.as_array().unwrap();
    assert_eq!(results.len(), 200);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &json!({ "i": i, "handled": true }));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_counted_and_left_or_deleted_and_every_valid_task_succeeds() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let leave = create_queue(&sqs, &unique("garbage-leave")).await;
    let delete = create_queue(&sqs, &unique("garbage-delete")).await;
    let m_leave = create_state_machine(
        &sfn,
        &unique("garbage-leave"),
        callback_machine(&leave, json!({})),
    )
    .await;
    let m_delete = create_state_machine(
        &sfn,
        &unique("garbage-delete"),
        callback_machine(&delete, json!({})),
    )
    .await;
    let garbage = [
        "not json at all",
        r#"{"input": {"no": "token"}}"#,
        r#"{"taskToken": 12345, "input": {}}"#,
        r#"{"taskToken": "AAAA"}"#,
    ];
    for url in [&leave, &delete] {
        for g in garbage {
            sqs.send_message()
                .queue_url(url)
                .message_body(g)
                .send()
                .await
                .unwrap();
        }
    }
    let dir = scratch_dir("garbage");
    let bindings = format!(
        "{}\n{}",
        echo_binding("leave", &leave, "visibility_timeout_secs = 300"),
        echo_binding("delete", &delete, "on_malformed = \"delete\"")
    );
    let daemon = Daemon::start(&dir, "", &bindings);
    let mut executions = Vec::new();
    for n in 0..10 {
        executions.push(start(&sfn, &m_leave, json!({ "n": n })).await);
        executions.push(start(&sfn, &m_delete, json!({ "n": n })).await);
    }
    for e in &executions {
        let ended = wait_ended(&sfn, e, Duration::from_secs(60)).await;
        assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = daemon.metrics();
        let counted = |b| counter(&m, "sfn_worker_malformed_messages_total", &[("binding", b)]);
        let (left, deleted) = (
            queue_depth(&sqs, &leave).await,
            queue_depth(&sqs, &delete).await,
        );
        if counted("leave") == 4.0 && counted("delete") == 4.0 && left == 4 && deleted == 0 {
            for reason in [
                "body_not_json",
                "token_missing",
                "token_not_string",
                "input_missing",
            ] {
                assert_eq!(
                    counter(
                        &m,
                        "sfn_worker_malformed_messages_total",
                        &[("binding", "delete"), ("reason", reason)]
                    ),
                    1.0,
                    "{reason}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counted leave={} delete={}, depth leave={left} delete={deleted}\n{m}",
            counted("leave"),
            counted("delete")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_message_delivered_twice_while_running_starts_the_handler_once() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("twice")).await;
    let machine =
        create_state_machine(&sfn, &unique("twice"), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir("twice");
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    // Take the state's message off the queue and put it back twice, as an
    // at-least-once duplicate: same token, two deliveries.
    let execution = start(
        &sfn,
        &machine,
        json!({ "n": 4, "sleep": 3, "pidfile": runs.join("run") }),
    )
    .await;
    let body = loop {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(5)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages.unwrap_or_default().into_iter().next() {
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            break m.body.unwrap();
        }
    };
    sqs.send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let daemon = Daemon::start(&dir, "", &queue_exec_binding("twice", &url, ""));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runs.join("run").exists() {
        assert!(
            Instant::now() < deadline,
            "handler never started:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqs.send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let ended = wait_ended(&sfn, &execution, Duration::from_secs(60)).await;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}\n{}", daemon.logs());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = daemon.metrics();
        if counter(
            &m,
            "sfn_worker_duplicate_messages_total",
            &[("binding", "twice")],
        ) == 1.0
            && queue_depth(&sqs, &url).await == 0
        {
            assert_eq!(
                counter(
                    &m,
                    "sfn_worker_tasks_received_total",
                    &[("binding", "twice")]
                ),
                1.0,
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "duplicate not joined or not deleted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_messages_in_flight_releases_them_and_every_execution_still_succeeds() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let url = create_queue(&sqs, &unique("release")).await;
    let machine =
        create_state_machine(&sfn, &unique("release"), callback_machine(&url, json!({}))).await;
    let dir = scratch_dir("release");
    let binding = queue_exec_binding(
        "release",
        &url,
        "concurrency = 2\nvisibility_timeout_secs = 300",
    );
    let mut first = Daemon::start_named(
        &dir,
        "first",
        "shutdown_grace_secs = 1\ncancel_grace_secs = 1",
        &binding,
    );
    let mut executions = Vec::new();
    for n in 0..6 {
        executions.push(start(&sfn, &machine, json!({ "n": n, "sleep": 6 })).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(
        &first.metrics(),
        "sfn_worker_tasks_in_flight",
        &[("binding", "release")],
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "tasks did not start:\n{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.signal("TERM");
    let status = first.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "exit {status}:\n{}", first.logs());
    let m = first.logs();
    assert!(m.contains("released"), "nothing was released:\n{m}");
    // A second worker takes everything, including what the first released
    // (visibility 300 s: only a release makes them visible in time).
    let second = Daemon::start_named(
        &dir,
        "second",
        "",
        &binding.replace("concurrency = 2", "concurrency = 8"),
    );
    for e in &executions {
        let ended = wait_ended(&sfn, e, Duration::from_secs(60)).await;
        assert_eq!(
            ended.status,
            "SUCCEEDED",
            "{ended:?}\nfirst:\n{}\nsecond:\n{}",
            first.logs(),
            second.logs()
        );
    }
}
