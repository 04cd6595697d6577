use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::*;
use sfn_worker_core::aws::Operation;
use sfn_worker_core::aws::fake::{FakeSfn, Report};
use sfn_worker_core::aws::{ApiError, ApiErrorKind};
use sfn_worker_core::{CancelReason, Registry, TaskContext, TaskError};

#[tokio::test(start_paused = true)]
async fn a_slot_is_taken_before_every_poll() {
    let fake = FakeSfn::new();
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let (g, n) = (gate.clone(), running.clone());
    r.handler("h", move |_: serde_json::Value, _ctx| {
        let (g, n) = (g.clone(), n.clone());
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            let _ = g.acquire().await.map(|p| p.forget());
            Ok::<_, TaskError>(())
        }
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"pollers": 2, "concurrency": 2}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);

    fake.wait_until(|f| f.polls_in_flight() == 2).await;
    fake.push_task(ARN, "t1", "{}");
    fake.push_task(ARN, "t2", "{}");
    while running.load(Ordering::SeqCst) < 2 {
        settle().await;
    }
    // Both slots are busy: no poll may be open, however long we wait.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.polls_in_flight(), 0);
    assert_eq!(fake.polls_started(), 2);
    assert_eq!(fake.max_polls_in_flight(), 2);

    // Freeing one slot lets exactly one poll start.
    gate.add_permits(1);
    fake.wait_for_reports(1).await;
    fake.wait_until(|f| f.polls_in_flight() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.polls_in_flight(), 1);

    gate.add_permits(1);
    fake.wait_for_reports(2).await;
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn heartbeats_follow_the_interval() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx| async {
        tokio::time::sleep(Duration::from_secs(35)).await;
        Ok::<_, TaskError>("done")
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"heartbeat_secs": 10}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() > 0).await;
    let t0 = Instant::now();
    fake.push_task(ARN, "t", "{}");
    fake.wait_for_reports(1).await;
    let offsets: Vec<u64> = fake
        .heartbeats("t")
        .iter()
        .map(|at| (*at - t0).as_secs())
        .collect();
    assert_eq!(offsets, [10, 20, 30]);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn explicit_heartbeats_coalesce_with_the_timer() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        for _ in 0..5 {
            ctx.heartbeat();
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        Ok::<_, TaskError>(())
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"heartbeat_secs": 10}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() > 0).await;
    let t0 = Instant::now();
    fake.push_task(ARN, "t", "{}");
    fake.wait_for_reports(1).await;
    let offsets: Vec<u64> = fake
        .heartbeats("t")
        .iter()
        .map(|at| (*at - t0).as_secs())
        .collect();
    // Five requests at 4 s make one heartbeat, which restarts the 10 s timer.
    assert_eq!(offsets, [4, 14]);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Why and when a handler was cancelled.
type Seen = Arc<std::sync::Mutex<Option<(Option<CancelReason>, Instant)>>>;

/// A handler that waits for its cancellation, records why and when, then
/// returns `Err(Job.Cancelled)`.
fn waits_for_cancel(seen: Seen) -> Registry {
    let mut r = Registry::new();
    r.handler("h", move |_: serde_json::Value, ctx: TaskContext| {
        let s = seen.clone();
        async move {
            ctx.cancelled().await;
            *s.lock().unwrap() = Some((ctx.cancel_reason(), Instant::now()));
            Err::<(), _>(TaskError::new("Job.Cancelled", "stopped"))
        }
    });
    r
}

#[tokio::test(start_paused = true)]
async fn task_timed_out_and_task_does_not_exist_cancel_at_the_next_heartbeat() {
    for code in ["TaskTimedOut", "TaskDoesNotExist"] {
        let fake = FakeSfn::new();
        let seen = Arc::new(std::sync::Mutex::new(None));
        let w = worker(
            &fake,
            waits_for_cancel(seen.clone()),
            serde_json::json!({"heartbeat_secs": 5}),
            serde_json::json!({}),
        );
        let (shutdown, run) = start(w);
        fake.wait_until(|f| f.polls_in_flight() > 0).await;
        let t0 = Instant::now();
        fake.push_task(ARN, "t", "{}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Closed before any heartbeat was accepted: the answer alone says so.
        fake.close_task("t", code);
        fake.wait_until(|f| f.refused().len() == 2).await;
        let (reason, at) = seen.lock().unwrap().expect("handler was cancelled");
        assert_eq!(reason, Some(CancelReason::TaskClosed), "{code}");
        assert_eq!((at - t0).as_secs(), 5, "{code}: cancelled at the heartbeat");
        // The heartbeat, then the handler's report, both refused: nothing
        // was delivered because the service refused it, not because the
        // worker gave up.
        let refused: Vec<(Operation, String)> = fake
            .refused()
            .into_iter()
            .map(|(op, _, c)| (op, c))
            .collect();
        assert_eq!(
            refused,
            [
                (Operation::SendTaskHeartbeat, code.to_owned()),
                (Operation::SendTaskFailure, code.to_owned())
            ]
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.refused().len(), 2, "{code}: heartbeats stop");
        assert!(fake.reports().is_empty());
        shutdown.shutdown();
        run.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_token_before_any_heartbeat_was_accepted_does_not_stop_the_task() {
    // LocalStack answers InvalidToken to every heartbeat of a state without
    // HeartbeatSeconds, while the task is open and takes its report.
    let fake = FakeSfn::new();
    for _ in 0..100 {
        fake.fail_next(
            Operation::SendTaskHeartbeat,
            ApiError::service("InvalidToken", 400, "Invalid token"),
        );
    }
    let mut r = Registry::new();
    r.handler("h", |n: u32, ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!ctx.is_cancelled(), "the handler was cancelled");
        Ok::<_, TaskError>(n * 2)
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"heartbeat_secs": 5}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "t", "21");
    let reports = fake.wait_for_reports(1).await;
    assert!(
        matches!(&reports[..], [Report::Success { output, .. }] if output == "42"),
        "{reports:?}"
    );
    let heartbeats = fake
        .refused()
        .iter()
        .filter(|(op, _, c)| *op == Operation::SendTaskHeartbeat && c == "InvalidToken")
        .count();
    assert_eq!(heartbeats, 11, "heartbeats went on at their interval");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalid_token_after_an_accepted_heartbeat_means_closed() {
    // LocalStack's answer for a stopped execution's task.
    let fake = FakeSfn::new();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let w = worker(
        &fake,
        waits_for_cancel(seen.clone()),
        serde_json::json!({"heartbeat_secs": 5}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() > 0).await;
    let t0 = Instant::now();
    fake.push_task(ARN, "t", "{}");
    fake.wait_until(|f| f.heartbeats("t").len() == 1).await;
    fake.close_task("t", "InvalidToken");
    fake.wait_until(|f| f.refused().len() == 2).await;
    let (reason, at) = seen.lock().unwrap().expect("cancelled");
    assert_eq!(reason, Some(CancelReason::TaskClosed));
    assert_eq!((at - t0).as_secs(), 10);
    assert!(fake.reports().is_empty());
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_wrongly_saying_closed_still_ends_in_a_report() {
    // The service said closed once, but takes the report: the handler's own
    // answer arrives (it returned), or Worker.TaskClosed (it did not return
    // within the cancel grace). Either way the execution does not hang.
    for returns in [true, false] {
        let fake = FakeSfn::new();
        fake.fail_next(
            Operation::SendTaskHeartbeat,
            ApiError::service("TaskTimedOut", 400, "wrong"),
        );
        let mut r = Registry::new();
        r.handler(
            "h",
            move |_: serde_json::Value, ctx: TaskContext| async move {
                ctx.cancelled().await;
                if !returns {
                    std::future::pending::<()>().await;
                }
                Err::<(), _>(TaskError::new("Job.Cancelled", "stopped"))
            },
        );
        let w = worker(
            &fake,
            r,
            serde_json::json!({"heartbeat_secs": 5}),
            serde_json::json!({"cancel_grace_secs": 3}),
        );
        let (shutdown, run) = start(w);
        fake.push_task(ARN, "t", "{}");
        let reports = within(600, "a report", fake.wait_for_reports(1)).await;
        let expected = if returns {
            "Job.Cancelled"
        } else {
            "Worker.TaskClosed"
        };
        assert_eq!(failure(&reports[0]).0, expected);
        shutdown.shutdown();
        run.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_closed_task_found_at_report_time_ends_quietly() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx| async {
        Ok::<_, TaskError>(1)
    });
    let w = worker(&fake, r, serde_json::json!({}), serde_json::json!({}));
    let (shutdown, run) = start(w);
    fake.close_task("t", "TaskTimedOut");
    fake.push_task(ARN, "t", "{}");
    fake.push_task(ARN, "ok", "{}");
    fake.wait_for_reports(1).await;
    assert_eq!(fake.reports()[0].token(), "ok");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn output_over_the_limit_fails_with_output_too_large() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |n: usize, _ctx| async move {
        Ok::<_, TaskError>("x".repeat(n))
    });
    let w = worker(&fake, r, serde_json::json!({}), serde_json::json!({}));
    let (shutdown, run) = start(w);
    // A JSON string of n characters is n + 2 bytes.
    fake.push_task(ARN, "fits", &(262_144 - 2).to_string());
    fake.wait_for_reports(1).await;
    fake.push_task(ARN, "big", &(262_144 - 1).to_string());
    let reports = fake.wait_for_reports(2).await;
    assert!(matches!(&reports[0], Report::Success { output, .. } if output.len() == 262_144));
    let (error, cause) = failure(&reports[1]);
    assert_eq!(error, "Worker.OutputTooLarge");
    assert!(cause.contains("262145 bytes"), "{cause}");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_its_task_and_the_worker_goes_on() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |boom: bool, _ctx| async move {
        if boom {
            panic!("kaboom");
        }
        Ok::<_, TaskError>("fine")
    });
    let w = worker(&fake, r, serde_json::json!({}), serde_json::json!({}));
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "p", "true");
    fake.wait_for_reports(1).await;
    fake.push_task(ARN, "ok", "false");
    let reports = fake.wait_for_reports(2).await;
    let (error, cause) = failure(&reports[0]);
    assert_eq!(error, "Worker.HandlerPanicked");
    assert!(cause.contains("kaboom"), "{cause}");
    assert!(matches!(&reports[1], Report::Success { token, .. } if token == "ok"));
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn invalid_input_fails_without_calling_the_handler_and_handler_errors_pass_through() {
    let fake = FakeSfn::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |n: u32, _ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Err::<(), _>(TaskError::new("Orders.Rejected", format!("no {n}"))) }
    });
    let w = worker(&fake, r, serde_json::json!({}), serde_json::json!({}));
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "bad", r#"{"not":"a number"}"#);
    fake.wait_for_reports(1).await;
    fake.push_task(ARN, "good", "7");
    let reports = fake.wait_for_reports(2).await;
    assert_eq!(failure(&reports[0]).0, "Worker.InvalidInput");
    assert_eq!(failure(&reports[1]), ("Orders.Rejected", "no 7"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_timeout_is_cancelled_then_failed() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, ctx: TaskContext| async move {
        ctx.cancelled().await;
        Ok::<_, TaskError>("ignored")
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"timeout_secs": 3}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() > 0).await;
    let t0 = Instant::now();
    fake.push_task(ARN, "t", "{}");
    let reports = fake.wait_for_reports(1).await;
    assert_eq!(failure(&reports[0]).0, "Worker.HandlerTimeout");
    assert_eq!(t0.elapsed().as_secs(), 3);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn poll_errors_are_retried_and_the_poller_survives() {
    let fake = FakeSfn::new();
    for code in ["ThrottlingException", "InternalFailure", "DispatchFailure"] {
        let kind = if code.starts_with("Thr") {
            ApiErrorKind::Throttled
        } else {
            ApiErrorKind::Transient
        };
        fake.fail_next(
            Operation::GetActivityTask,
            ApiError::new(kind, code, "injected"),
        );
    }
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx| async {
        Ok::<_, TaskError>(())
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"pollers": 1}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "t", "{}");
    fake.wait_for_reports(1).await;
    // Three failed polls, the one that got the task, maybe the next one.
    assert!(fake.polls_started() >= 4, "{}", fake.polls_started());
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_missing_activity_stops_start_up_with_a_clear_error() {
    let fake = FakeSfn::new();
    fake.remove_activity(ARN);
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx| async {
        Ok::<_, TaskError>(())
    });
    let w = worker(&fake, r, serde_json::json!({}), serde_json::json!({}));
    let err = w.run().await.unwrap_err().to_string();
    assert!(err.contains("does not exist") && err.contains(ARN), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_handler_cancelling_its_own_context_is_still_reported() {
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, ctx: TaskContext| async move {
        // Misuse: cancel its own context (a handler cannot give a reason
        // any more, but it holds the token). The worker must still report.
        ctx.cancellation_token().cancel();
        Err::<(), _>(TaskError::new("Job.GaveUp", "cancelled itself"))
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"timeout_secs": 5}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "t", "{}");
    let reports = fake.wait_for_reports(1).await;
    assert_eq!(failure(&reports[0]), ("Job.GaveUp", "cancelled itself"));
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Start-up checks ride out a bad minute: eight throttled or failed
/// `DescribeActivity` calls in a row (five gave up before) and the worker
/// still starts; failing for longer than a minute, it says why and stops.
#[tokio::test(start_paused = true)]
async fn start_up_checks_retry_transient_errors_for_a_minute() {
    let transient = || ApiError::service("ThrottlingException", 400, "injected");
    let fake = FakeSfn::new();
    for _ in 0..8 {
        fake.fail_next(Operation::DescribeActivity, transient());
    }
    let mut r = Registry::new();
    r.handler("h", |v: serde_json::Value, _ctx| async move {
        Ok::<_, TaskError>(v)
    });
    let (shutdown, run) = start(worker(
        &fake,
        r,
        serde_json::json!({}),
        serde_json::json!({}),
    ));
    fake.push_task(ARN, "t", "{}");
    assert_eq!(fake.wait_for_reports(1).await.len(), 1);
    shutdown.shutdown();
    run.await.unwrap().unwrap();

    // The control: failing for good, it gives up after about a minute.
    let fake = FakeSfn::new();
    for _ in 0..1000 {
        fake.fail_next(Operation::DescribeActivity, transient());
    }
    let mut r = Registry::new();
    r.handler("h", |v: serde_json::Value, _ctx| async move {
        Ok::<_, TaskError>(v)
    });
    let started = Instant::now();
    let err = worker(&fake, r, serde_json::json!({}), serde_json::json!({}))
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not reach AWS"), "{err}");
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(70)).contains(&took),
        "{took:?}"
    );
}
