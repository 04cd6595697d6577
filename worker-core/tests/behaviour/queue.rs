//! SQS callbacks against the fakes: the same runner, plus the message lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{failure, start};
use sfn_worker_core::aws::Operation;
use sfn_worker_core::aws::fake::FakeSqs;
use sfn_worker_core::aws::fake::{FakeSfn, Report};
use sfn_worker_core::aws::{ApiError, ApiErrorKind};
use sfn_worker_core::{Config, Plan, Registry, TaskContext, TaskError, Worker};

const URL: &str = "http://localhost:4566/000000000000/callbacks";
const FIFO: &str = "http://localhost:4566/000000000000/callbacks.fifo";

fn worker(
    sfn: &FakeSfn,
    sqs: &FakeSqs,
    registry: Registry,
    queue: serde_json::Value,
    worker: serde_json::Value,
) -> Worker {
    let mut binding = serde_json::json!({ "url": URL, "handler": "h", "input_pointer": "/input" });
    if let (Some(a), serde_json::Value::Object(b)) = (binding.as_object_mut(), queue) {
        a.extend(b);
    }
    let mut w = serde_json::json!({ "shutdown_grace_secs": 30, "cancel_grace_secs": 5 });
    if let (Some(a), serde_json::Value::Object(b)) = (w.as_object_mut(), worker) {
        a.extend(b);
    }
    let config: Config =
        serde_json::from_value(serde_json::json!({ "worker": w, "queue": [binding] })).unwrap();
    let plan = Plan::build(config, &registry)
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    Worker::new(plan, Arc::new(sfn.clone())).with_sqs(Arc::new(sqs.clone()))
}

fn body(token: &str, input: serde_json::Value) -> String {
    serde_json::json!({ "taskToken": token, "input": input }).to_string()
}

fn doubler() -> Registry {
    let mut r = Registry::new();
    r.handler("h", |n: u64, _ctx| async move { Ok::<_, TaskError>(n * 2) });
    r
}

#[tokio::test(start_paused = true)]
async fn messages_become_tasks_and_are_deleted_in_batches_after_the_report() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    for i in 0..25 {
        sqs.send(URL, &body(&format!("t{i}"), serde_json::json!(i)));
    }
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"concurrency": 32}),
        serde_json::json!({}),
    ));
    let reports = sfn.wait_for_reports(25).await;
    sqs.wait_until(|q| q.deleted().len() == 25).await;
    for r in &reports {
        let Report::Success { token, output } = r else {
            panic!("{r:?}")
        };
        let n: u64 = token[1..].parse().unwrap();
        assert_eq!(output, &(n * 2).to_string());
    }
    // Receives asked for up to 10 at a time, and deletes were batched.
    assert!(
        sqs.delete_calls().len() < 25,
        "{} delete calls",
        sqs.delete_calls().len()
    );
    assert!(sqs.delete_calls().iter().all(|c| c.len() <= 10));
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_long_handler_keeps_its_message_invisible_and_heartbeats_on_one_timer() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx| async {
        tokio::time::sleep(Duration::from_secs(200)).await;
        Ok::<_, TaskError>("done")
    });
    let w = worker(
        &sfn,
        &sqs,
        r,
        serde_json::json!({"visibility_timeout_secs": 30, "heartbeat_secs": 25}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let t0 = Instant::now();
    sqs.send(URL, &body("t", serde_json::json!({})));
    sfn.wait_for_reports(1).await;
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    // Never visible again, so never received twice: one report, one delete.
    assert_eq!(sfn.reports().len(), 1);
    let extensions = sqs.visibility_calls();
    assert!(
        extensions.len() >= 19,
        "renewed every 10 s over 200 s: {}",
        extensions.len()
    );
    assert!(extensions.iter().flatten().all(|e| e.visibility_secs == 30));
    let beats: Vec<u64> = sfn
        .heartbeats("t")
        .iter()
        .map(|at| (*at - t0).as_secs())
        .collect();
    assert_eq!(beats, [25, 50, 75, 100, 125, 150, 175]);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn malformed_messages_are_counted_and_left_or_deleted_and_valid_ones_still_run() {
    for on_malformed in ["leave", "delete"] {
        let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
        let garbage = [
            "not json".to_owned(),
            r#"{"input": 1}"#.to_owned(),
            r#"{"taskToken": 7, "input": 1}"#.to_owned(),
            r#"{"taskToken": "no-input"}"#.to_owned(),
        ];
        for (i, g) in garbage.iter().enumerate() {
            sqs.send(URL, g);
            sqs.send(URL, &body(&format!("ok{i}"), serde_json::json!(i)));
        }
        let w = worker(
            &sfn,
            &sqs,
            doubler(),
            serde_json::json!({"on_malformed": on_malformed, "visibility_timeout_secs": 600}),
            serde_json::json!({}),
        );
        let (shutdown, run) = start(w);
        sfn.wait_for_reports(4).await;
        let expected_deleted = if on_malformed == "delete" { 8 } else { 4 };
        sqs.wait_until(|q| q.deleted().len() == expected_deleted)
            .await;
        assert!(
            sfn.reports()
                .iter()
                .all(|r| matches!(r, Report::Success { .. }))
        );
        if on_malformed == "leave" {
            assert_eq!(
                sqs.in_flight(URL),
                4,
                "garbage left for its visibility timeout (then the DLQ)"
            );
        }
        shutdown.shutdown();
        run.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_delivered_twice_while_running_starts_one_handler() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |_: serde_json::Value, _ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, TaskError>(())
        }
    });
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        r,
        serde_json::json!({}),
        serde_json::json!({}),
    ));
    sqs.send(URL, &body("same", serde_json::json!({})));
    sqs.wait_until(|q| q.in_flight(URL) == 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    sqs.send(URL, &body("same", serde_json::json!({})));
    sfn.wait_for_reports(1).await;
    // Both deliveries are deleted with the one task.
    sqs.wait_until(|q| q.deleted().len() == 2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(sfn.reports().len(), 1);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_running_messages_are_released_or_failed_as_configured() {
    for on_shutdown in ["release", "fail"] {
        let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
        let mut r = Registry::new();
        r.handler("h", |_: serde_json::Value, _ctx| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, TaskError>(())
        });
        let w = worker(
            &sfn,
            &sqs,
            r,
            serde_json::json!({"on_shutdown": on_shutdown, "concurrency": 1}),
            serde_json::json!({"shutdown_grace_secs": 10, "cancel_grace_secs": 2}),
        );
        let (shutdown, run) = start(w);
        sqs.send(URL, &body("t", serde_json::json!({})));
        sqs.wait_until(|q| q.in_flight(URL) == 1).await;
        shutdown.shutdown();
        run.await.unwrap().unwrap();
        if on_shutdown == "release" {
            assert!(sfn.reports().is_empty(), "released, not reported");
            assert_eq!(sqs.visible(URL), 1, "visible again for another worker");
            assert!(sqs.deleted().is_empty());
        } else {
            assert_eq!(failure(&sfn.reports()[0]).0, "Worker.ShuttingDown");
            assert_eq!(sqs.deleted().len(), 1);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_report_that_cannot_be_delivered_leaves_the_message_to_come_back() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let refused = || ApiError::new(ApiErrorKind::Rejected, "AccessDeniedException", "no");
    sfn.fail_next(Operation::SendTaskSuccess, refused());
    sfn.fail_next(Operation::SendTaskFailure, refused());
    let w = worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"visibility_timeout_secs": 30}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    sqs.send(URL, &body("t", serde_json::json!(1)));
    // Not deleted: after its visibility timeout it is received again, and
    // this time the report goes through.
    sfn.wait_for_reports(1).await;
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert!(sqs.receives() >= 2);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn fifo_messages_of_one_group_run_in_order_one_at_a_time() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    let s = seen.clone();
    r.handler("h", move |n: u32, _ctx: TaskContext| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(format!("start {n}"));
            tokio::time::sleep(Duration::from_secs(u64::from(5 - n))).await;
            s.lock().unwrap().push(format!("end {n}"));
            Ok::<_, TaskError>(n)
        }
    });
    let config: Config = serde_json::from_value(serde_json::json!({ "queue": [
        { "url": FIFO, "handler": "h", "input_pointer": "/input", "concurrency": 8 }
    ]}))
    .unwrap();
    let plan = Plan::build(config, &r).unwrap();
    let w = Worker::new(plan, Arc::new(sfn.clone())).with_sqs(Arc::new(sqs.clone()));
    for n in 0..4 {
        sqs.send_with(
            FIFO,
            &body(&format!("t{n}"), serde_json::json!(n)),
            Some("g1"),
            None,
        );
    }
    let (shutdown, run) = start(w);
    sfn.wait_for_reports(4).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "start 0", "end 0", "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"
        ]
    );
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn heartbeats_and_visibility_go_on_while_a_report_is_retried() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // About a minute of throttled reports: past the visibility timeout
    // (30 s) and several heartbeat intervals (10 s).
    for _ in 0..30 {
        sfn.fail_next(
            Operation::SendTaskSuccess,
            ApiError::service("ThrottlingException", 400, "slow down"),
        );
    }
    let w = worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"visibility_timeout_secs": 30, "heartbeat_secs": 10}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(4)));
    let t0 = Instant::now();
    let reports = sfn.wait_for_reports(1).await;
    let took = t0.elapsed();
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert!(took > Duration::from_secs(40), "reporting took {took:?}");
    assert!(matches!(&reports[..], [Report::Success { output, .. }] if output == "8"));
    assert_eq!(
        sqs.times_received(&id),
        1,
        "the message never became visible again"
    );
    let beats = sfn.heartbeats("t").len() as u64;
    assert!(
        beats >= took.as_secs() / 10 - 1,
        "{beats} heartbeats in {took:?} of reporting"
    );
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_delete_that_fails_for_a_while_is_retried_while_the_message_is_kept() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    for _ in 0..15 {
        sqs.fail_next(
            Operation::DeleteMessageBatch,
            ApiError::service("InternalError", 500, "injected"),
        );
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |n: u64, _ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, TaskError>(n) }
    });
    let w = worker(
        &sfn,
        &sqs,
        r,
        serde_json::json!({"visibility_timeout_secs": 30}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert!(
        sqs.delete_calls().len() >= 16,
        "{}",
        sqs.delete_calls().len()
    );
    assert_eq!(sqs.times_received(&id), 1);
    // Past a visibility timeout more: nothing comes back.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(sfn.reports().len(), 1);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_delete_is_retried_often_enough_to_land_before_a_lease_that_cannot_be_renewed_lapses() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // The delete fails 15 times and no renewal gets through: only attempts
    // within the first visibility timeout (30 s) count. Spaced up to 5 s
    // apart, 16 attempts take about a minute; up to 1 s apart, under 30 s.
    for _ in 0..15 {
        sqs.fail_next(
            Operation::DeleteMessageBatch,
            ApiError::service("RequestThrottled", 400, "injected"),
        );
    }
    for _ in 0..1000 {
        sqs.fail_next(
            Operation::ChangeMessageVisibilityBatch,
            ApiError::service("RequestThrottled", 400, "injected"),
        );
    }
    let w = worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"visibility_timeout_secs": 30}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert_eq!(sqs.times_received(&id), 1, "deleted before it came back");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// A delete that keeps failing for longer than several visibility timeouts
/// lands in the end, and the message never comes back meanwhile, because
/// the lease goes on renewing it while the delete is retried. The control
/// (renewals failing too) shows the message would have come back.
async fn delete_retried_for_long(renewals_work: bool) -> usize {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // About 100 s of failing deletes (retried at most ~1 s apart), against
    // a 30 s visibility timeout.
    for _ in 0..100 {
        sqs.fail_next(
            Operation::DeleteMessageBatch,
            ApiError::service("RequestThrottled", 400, "injected"),
        );
    }
    if !renewals_work {
        for _ in 0..1000 {
            sqs.fail_next(
                Operation::ChangeMessageVisibilityBatch,
                ApiError::service("RequestThrottled", 400, "injected"),
            );
        }
    }
    let w = worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"visibility_timeout_secs": 30}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert!(
        sqs.delete_calls().len() > 100,
        "{}",
        sqs.delete_calls().len()
    );
    assert_eq!(sfn.reports().len(), 1, "one report, one handler run");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    sqs.times_received(&id)
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_while_a_delete_is_retried() {
    assert_eq!(delete_retried_for_long(true).await, 1);
}

#[tokio::test(start_paused = true)]
async fn control_without_renewals_the_message_would_come_back_while_its_delete_is_retried() {
    assert!(delete_retried_for_long(false).await >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_retried_within_the_lease() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // Ten renewals in a row fail while a 60 s handler runs with a 30 s
    // visibility timeout. Renewal starts at 10 s; retried every 2 s the
    // lease lapses at 30 s, retried after 0.25, 0.5 and then every 1 s it
    // is renewed by about 19 s.
    for _ in 0..10 {
        sqs.fail_next(
            Operation::ChangeMessageVisibilityBatch,
            ApiError::service("InternalError", 500, "injected"),
        );
    }
    let mut r = Registry::new();
    r.handler("h", |n: u64, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, TaskError>(n)
    });
    let w = worker(
        &sfn,
        &sqs,
        r,
        serde_json::json!({"visibility_timeout_secs": 30, "heartbeat_secs": 10}),
        serde_json::json!({}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert_eq!(sqs.times_received(&id), 1, "the message never lapsed");
    assert_eq!(sfn.reports().len(), 1);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_report_still_failing_when_shutdown_gives_up_releases_its_message() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    for _ in 0..10_000 {
        sfn.fail_next(
            Operation::SendTaskSuccess,
            ApiError::service("ThrottlingException", 400, "slow down"),
        );
    }
    let w = worker(
        &sfn,
        &sqs,
        doubler(),
        serde_json::json!({"visibility_timeout_secs": 600}),
        serde_json::json!({"shutdown_grace_secs": 10, "cancel_grace_secs": 2}),
    );
    let (shutdown, run) = start(w);
    let id = sqs.send(URL, &body("t", serde_json::json!(1)));
    sqs.wait_until(|q| q.in_flight(URL) == 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    // Visible again at once, not after its 10 minutes of visibility.
    assert_eq!(sqs.visible(URL), 1, "released");
    assert_eq!(sqs.times_received(&id), 1);
    assert!(sfn.reports().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_message_settled_here_that_comes_back_is_dropped_but_a_new_message_with_its_token_runs() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // The delete is refused: the message comes back after its visibility
    // timeout, though its task was reported.
    sqs.fail_next(
        Operation::DeleteMessageBatch,
        ApiError::service("AccessDenied", 403, "injected"),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |n: u64, _ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, TaskError>(n) }
    });
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        r,
        serde_json::json!({"visibility_timeout_secs": 30}),
        serde_json::json!({}),
    ));
    let id = sqs.send(URL, &body("same", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert_eq!(sqs.times_received(&id), 2, "the message came back once");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "and was not run again");
    assert_eq!(sfn.reports().len(), 1);
    assert!(
        sfn.refused().is_empty(),
        "no second report: {:?}",
        sfn.refused()
    );
    // A new message with the same token (a state sending it twice, or
    // LocalStack's Retry of a waitForTaskToken state) runs. (The fake
    // answers its report TaskTimedOut, as AWS would a token used twice.)
    sqs.send(URL, &body("same", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn fifo_messages_waiting_behind_their_group_are_kept_invisible() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let mut r = Registry::new();
    r.handler("h", |n: u32, _ctx: TaskContext| async move {
        // Each longer than the visibility timeout: the last one waits 80 s.
        tokio::time::sleep(Duration::from_secs(40)).await;
        Ok::<_, TaskError>(n)
    });
    let config: Config = serde_json::from_value(serde_json::json!({ "queue": [
        { "url": FIFO, "handler": "h", "input_pointer": "/input", "concurrency": 8,
          "visibility_timeout_secs": 30 }
    ]}))
    .unwrap();
    let plan = Plan::build(config, &r).unwrap();
    let w = Worker::new(plan, Arc::new(sfn.clone())).with_sqs(Arc::new(sqs.clone()));
    let ids: Vec<String> = (0..3)
        .map(|n| {
            sqs.send_with(
                FIFO,
                &body(&format!("t{n}"), serde_json::json!(n)),
                Some("g1"),
                None,
            )
        })
        .collect();
    let (shutdown, run) = start(w);
    sfn.wait_for_reports(3).await;
    sqs.wait_until(|q| q.deleted().len() == 3).await;
    for id in &ids {
        assert_eq!(sqs.times_received(id), 1, "{id} reappeared while it waited");
    }
    let order: Vec<String> = sfn.reports().iter().map(|r| r.token().to_owned()).collect();
    assert_eq!(order, ["t0", "t1", "t2"]);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// A `tracing` writer into a shared buffer: what the worker logged.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Capture every event and span field at every level on this thread
    /// while the guard lives.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 21, item 2: with the default `input_pointer` the input is the
/// whole message, token included; a handler that quotes its input in its
/// error (or its panic) must not put the token in the cause sent to Step
/// Functions, nor in any log line.
#[tokio::test(start_paused = true)]
async fn a_token_quoted_by_a_handler_reaches_no_cause_and_no_log() {
    let token = "AAAAKgAAAAIAAAAAAAAAAfSECRET+token/MATERIAL=0123456789abcdef";
    let logs = Logs::default();
    let _guard = logs.capture();
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let mut r = Registry::new();
    r.handler(
        "h",
        |input: serde_json::Value, _ctx: TaskContext| async move {
            if input["input"] == 1 {
                Err::<(), _>(TaskError::new(
                    "Orders.Bad",
                    format!("cannot handle {input}"),
                ))
            } else {
                panic!("cannot handle {input}")
            }
        },
    );
    let config: Config = serde_json::from_value(serde_json::json!({ "queue": [
        { "url": URL, "handler": "h", "concurrency": 4 }
    ]}))
    .unwrap();
    let plan = Plan::build(config, &r).unwrap();
    let w = Worker::new(plan, Arc::new(sfn.clone())).with_sqs(Arc::new(sqs.clone()));
    sqs.send(URL, &body(token, serde_json::json!(1)));
    let (shutdown, run) = start(w);
    let reports = sfn.wait_for_reports(1).await;
    sqs.send(URL, &body(&format!("{token}2"), serde_json::json!(2)));
    let reports2 = sfn.wait_for_reports(2).await;
    shutdown.shutdown();
    run.await.unwrap().unwrap();
    for r in reports.iter().chain(&reports2) {
        let (error, cause) = failure(r);
        assert!(cause.contains("cannot handle"), "{cause}");
        assert!(!cause.contains(token) && !error.contains(token), "{cause}");
    }
    let text = logs.text();
    assert!(
        text.contains("task failed"),
        "the control: the cause is logged\n{text}"
    );
    assert!(!text.contains(token), "the token is in the log:\n{text}");
}
