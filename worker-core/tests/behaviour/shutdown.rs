use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use sfn_worker_core::aws::fake::{FakeSfn, Report};
use sfn_worker_core::{HealthState, Registry, TaskContext, TaskError};

fn sleepy(secs: u64) -> Registry {
    let mut r = Registry::new();
    r.handler("h", move |_: serde_json::Value, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, TaskError>("done")
    });
    r
}

#[tokio::test(start_paused = true)]
async fn a_poll_in_flight_at_shutdown_is_not_aborted_and_its_task_runs() {
    let fake = FakeSfn::new();
    let w = worker(
        &fake,
        sleepy(2),
        serde_json::json!({"pollers": 1}),
        serde_json::json!({}),
    );
    let health = w.health();
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() == 1).await;
    assert_eq!(health.state(), HealthState::Ready);

    shutdown.shutdown();
    settle().await;
    assert_eq!(health.state(), HealthState::Draining);
    assert_eq!(fake.polls_in_flight(), 1, "the open poll is left to return");

    // The service hands the open poll a task 20 s later: it still runs.
    tokio::time::sleep(Duration::from_secs(20)).await;
    fake.push_task(ARN, "late", "{}");
    run.await.unwrap().unwrap();
    assert!(matches!(&fake.reports()[..], [Report::Success { token, .. }] if token == "late"));
    assert_eq!(fake.polls_started(), 1, "no new poll after shutdown began");
    assert_eq!(health.state(), HealthState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn the_worker_waits_for_open_polls_to_return_before_exiting() {
    let fake = FakeSfn::new();
    let w = worker(
        &fake,
        sleepy(1),
        serde_json::json!({"pollers": 1}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() == 1).await;
    let t0 = Instant::now();
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    // The fake holds an empty poll for 60 s, like the service.
    assert_eq!(t0.elapsed().as_secs(), 60);
    assert!(fake.reports().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_arriving_after_the_grace_period_is_failed_at_once() {
    let fake = FakeSfn::new();
    let ran = Arc::new(AtomicBool::new(false));
    let mut r = Registry::new();
    let flag = ran.clone();
    r.handler("h", move |_: serde_json::Value, _ctx| {
        flag.store(true, Ordering::SeqCst);
        async { Ok::<_, TaskError>(()) }
    });
    let w = worker(
        &fake,
        r,
        serde_json::json!({"pollers": 1}),
        serde_json::json!({"shutdown_grace_secs": 10}),
    );
    let (shutdown, run) = start(w);
    fake.wait_until(|f| f.polls_in_flight() == 1).await;
    shutdown.shutdown();
    tokio::time::sleep(Duration::from_secs(11)).await;
    fake.push_task(ARN, "late", "{}");
    run.await.unwrap().unwrap();
    assert_eq!(failure(&fake.reports()[0]).0, "Worker.ShuttingDown");
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn running_tasks_finish_within_the_grace_period() {
    let fake = FakeSfn::with_poll_hold(Duration::from_secs(1));
    let w = worker(
        &fake,
        sleepy(20),
        serde_json::json!({"pollers": 2, "concurrency": 2}),
        serde_json::json!({"shutdown_grace_secs": 30}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "a", "{}");
    fake.push_task(ARN, "b", "{}");
    fake.wait_until(|f| f.polls_in_flight() == 0 && f.polls_started() >= 2)
        .await;
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    let reports = fake.reports();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| matches!(r, Report::Success { .. })));
}

#[tokio::test(start_paused = true)]
async fn past_the_grace_period_tasks_are_cancelled_then_failed_with_shutting_down() {
    let fake = FakeSfn::with_poll_hold(Duration::from_secs(1));
    let mut r = Registry::new();
    // "stubborn" ignores cancellation; "polite" stops and reports its own error.
    r.handler("h", |kind: String, ctx: TaskContext| async move {
        if kind == "polite" {
            ctx.cancelled().await;
            return Err(TaskError::new("Job.Cancelled", "stopped"));
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    // Two slots, two tasks: no poll is open when shutdown begins.
    let w = worker(
        &fake,
        r,
        serde_json::json!({"pollers": 2, "concurrency": 2}),
        serde_json::json!({"shutdown_grace_secs": 10, "cancel_grace_secs": 5}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "stubborn", r#""stubborn""#);
    fake.push_task(ARN, "polite", r#""polite""#);
    fake.wait_until(|f| f.polls_started() >= 2 && f.polls_in_flight() == 0)
        .await;
    let t0 = Instant::now();
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    assert_eq!(t0.elapsed().as_secs(), 15, "grace + cancel grace");
    let reports = fake.reports();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let (error, cause) = failure(r);
        assert_eq!(error, "Worker.ShuttingDown", "{}", r.token());
        if r.token() == "polite" {
            assert!(cause.contains("Job.Cancelled"), "{cause}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_fails_running_tasks_at_once() {
    let fake = FakeSfn::new();
    let w = worker(
        &fake,
        sleepy(3600),
        serde_json::json!({"pollers": 1}),
        serde_json::json!({"shutdown_grace_secs": 600}),
    );
    let (shutdown, run) = start(w);
    fake.push_task(ARN, "t", "{}");
    fake.wait_until(|f| f.polls_started() >= 2).await;
    let t0 = Instant::now();
    shutdown.shutdown();
    settle().await;
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "no waiting: {:?}",
        t0.elapsed()
    );
    assert_eq!(failure(&fake.reports()[0]).0, "Worker.ShuttingDown");
}
