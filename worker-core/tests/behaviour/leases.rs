//! Keeping SQS tasks alive on the paths the first tests did not walk
//! (issue 21): FIFO messages waiting their turn, a renewal that hangs, a
//! receipt SQS no longer knows, a token that arrives again right after its
//! report, a token Step Functions would never accept. Each test names the
//! defect it guards against; each fails on the code before its fix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::start;
use sfn_worker_core::aws::fake::{FakeSfn, FakeSqs, Report};
use sfn_worker_core::aws::{ApiError, Operation};
use sfn_worker_core::{CancelReason, Config, Plan, Registry, TaskContext, TaskError, Worker};

const URL: &str = "http://localhost:4566/000000000000/callbacks";
const FIFO: &str = "http://localhost:4566/000000000000/callbacks.fifo";

fn worker(sfn: &FakeSfn, sqs: &FakeSqs, r: &Registry, queue: serde_json::Value) -> Worker {
    let mut binding = serde_json::json!({ "url": URL, "handler": "h", "input_pointer": "/input" });
    if let (Some(a), serde_json::Value::Object(b)) = (binding.as_object_mut(), queue) {
        a.extend(b);
    }
    let config: Config = serde_json::from_value(serde_json::json!({
        "worker": { "shutdown_grace_secs": 30, "cancel_grace_secs": 5 },
        "queue": [binding],
    }))
    .unwrap();
    let plan = Plan::build(config, r)
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    Worker::new(plan, Arc::new(sfn.clone())).with_sqs(Arc::new(sqs.clone()))
}

fn body(token: &str, input: serde_json::Value) -> String {
    serde_json::json!({ "taskToken": token, "input": input }).to_string()
}

/// A handler that sleeps `input` seconds and returns it.
fn sleeper() -> Registry {
    let mut r = Registry::new();
    r.handler("h", |secs: u64, _ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, TaskError>(secs)
    });
    r
}

/// Item 1: a FIFO message waiting behind its group is heartbeated from
/// receipt, not from when its turn comes (its token's `HeartbeatSeconds`
/// runs from when the state was scheduled).
#[tokio::test(start_paused = true)]
async fn fifo_messages_waiting_their_turn_are_heartbeated() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    for n in 0..3 {
        sqs.send_with(
            FIFO,
            &body(&format!("t{n}"), serde_json::json!(10)),
            Some("g"),
            None,
        );
    }
    let t0 = Instant::now();
    let r = sleeper();
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"url": FIFO, "concurrency": 8, "heartbeat_secs": 4}),
    ));
    sfn.wait_for_reports(3).await;
    for n in 0..3 {
        let token = format!("t{n}");
        let reported = Duration::from_secs(10 * (n + 1));
        let mut last = t0;
        for at in sfn.heartbeats(&token) {
            assert!(
                at - last <= Duration::from_millis(4100),
                "{token}: {:?} without a heartbeat (until {:?})",
                at - last,
                at - t0
            );
            last = at;
        }
        assert!(
            t0 + reported - last <= Duration::from_millis(4100),
            "{token}: no heartbeat from {:?} to its report at {reported:?}",
            last - t0
        );
    }
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Item 3: a chain of tasks each shorter than a third of the visibility
/// timeout must still renew the messages waiting behind it.
#[tokio::test(start_paused = true)]
async fn a_chain_of_short_tasks_keeps_the_waiting_messages_invisible() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    // 10 tasks of 4 s: the last waits 36 s, past the 30 s visibility.
    let ids: Vec<String> = (0..10)
        .map(|n| {
            sqs.send_with(
                FIFO,
                &body(&format!("t{n}"), serde_json::json!(4)),
                Some("g"),
                None,
            )
        })
        .collect();
    let r = sleeper();
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"url": FIFO, "concurrency": 16, "visibility_timeout_secs": 30}),
    ));
    sfn.wait_for_reports(10).await;
    sqs.wait_until(|q| q.deleted().len() == 10).await;
    for id in &ids {
        assert_eq!(sqs.times_received(id), 1, "{id} lapsed while it waited");
    }
    let order: Vec<String> = sfn.reports().iter().map(|r| r.token().to_owned()).collect();
    let expected: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    assert_eq!(order, expected);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Item 4: a renewal that hangs (15 s, the call timeout) must not hold back
/// the next one: with a 12 s visibility timeout the message would lapse.
#[tokio::test(start_paused = true)]
async fn a_hung_renewal_does_not_let_the_message_lapse() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    sqs.hang_next(
        Operation::ChangeMessageVisibilityBatch,
        Duration::from_secs(15),
    );
    let id = sqs.send(URL, &body("t", serde_json::json!(30)));
    let r = sleeper();
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"concurrency": 4, "visibility_timeout_secs": 12}),
    ));
    sfn.wait_for_reports(1).await;
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    assert_eq!(sqs.times_received(&id), 1, "the message lapsed");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Item 5: a receipt SQS answers as no longer held is not renewed again
/// (the message came back and was received anew: the new receipt is the
/// one kept), and the task still ends with its message deleted.
#[tokio::test(start_paused = true)]
async fn a_receipt_sqs_no_longer_knows_is_not_renewed_again() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let id = sqs.send(URL, &body("t", serde_json::json!(60)));
    let r = sleeper();
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"concurrency": 4, "visibility_timeout_secs": 30}),
    ));
    sqs.wait_until(|q| q.times_received(&id) == 1).await;
    let first = sqs.in_flight_handles(URL);
    // As if its visibility had lapsed: the worker's own receiver gets it
    // again, and that delivery joins the running task.
    sqs.lapse(URL, &id);
    sqs.wait_until(|q| q.times_received(&id) == 2).await;
    sfn.wait_for_reports(1).await;
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    let stale: Vec<_> = sqs
        .visibility_calls()
        .into_iter()
        .flatten()
        .filter(|e| first.contains(&e.receipt_handle))
        .collect();
    // Renewed every 10 s over 60 s; after the first "invalid" answer, never.
    assert!(
        stale.len() <= 2,
        "the lost receipt was renewed {} times",
        stale.len()
    );
    assert_eq!(sqs.times_received(&id), 2);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Item 5: the lease lost (another worker received the message) and
/// heartbeats failing too: the handler is cancelled and nothing is
/// reported (a failure would cut the other worker's run short). The
/// control: with heartbeats accepted, the task goes on and reports.
#[tokio::test(start_paused = true)]
async fn a_lost_lease_with_failing_heartbeats_cancels_the_task() {
    for heartbeats_fail in [true, false] {
        let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
        let reason = Arc::new(Mutex::new(None));
        let mut r = Registry::new();
        let seen = reason.clone();
        r.handler("h", move |secs: u64, ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => Ok::<_, TaskError>(secs),
                    _ = ctx.cancelled() => {
                        *seen.lock().unwrap() = ctx.cancel_reason();
                        Err(TaskError::new("Stopped", "cancelled"))
                    }
                }
            }
        });
        let id = sqs.send(URL, &body("t", serde_json::json!(60)));
        let (shutdown, run) = start(worker(
            &sfn,
            &sqs,
            &r,
            // One slot: the worker cannot receive the message again itself.
            serde_json::json!({"concurrency": 1, "visibility_timeout_secs": 30, "heartbeat_secs": 5}),
        ));
        sqs.wait_until(|q| q.times_received(&id) == 1).await;
        if heartbeats_fail {
            for _ in 0..100 {
                sfn.fail_next(
                    Operation::SendTaskHeartbeat,
                    ApiError::service("InternalFailure", 500, "injected"),
                );
            }
        }
        // Another worker takes the message: this worker's receipt is stale.
        sqs.lapse(URL, &id);
        let other = sqs.receive_now(URL, 30).await;
        assert_eq!(other.len(), 1);
        if heartbeats_fail {
            tokio::time::sleep(Duration::from_secs(70)).await;
            assert_eq!(*reason.lock().unwrap(), Some(CancelReason::LeaseLost));
            assert!(
                sfn.reports().is_empty(),
                "nothing reported: {:?}",
                sfn.reports()
            );
        } else {
            let reports = sfn.wait_for_reports(1).await;
            assert!(
                matches!(&reports[..], [Report::Success { .. }]),
                "{reports:?}"
            );
            assert_eq!(*reason.lock().unwrap(), None);
        }
        shutdown.shutdown();
        run.await.unwrap().unwrap();
    }
}

/// Item 13: a new message with the token that arrives right after the
/// report (LocalStack's `Retry` of a `waitForTaskToken` state resends the
/// failed attempt's token) is new work: it runs, and is not deleted with
/// the reported task's message.
#[tokio::test(start_paused = true)]
async fn a_message_with_the_token_right_after_the_report_runs() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |secs: u64, _ctx: TaskContext| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(secs)).await;
            Err::<u64, _>(TaskError::new("Orders.Rejected", "try again"))
        }
    });
    // The first renewal (at 10 s) hangs: the task reports at 10.5 s, while
    // it is in flight, and the worker then waits for it before the delete.
    sqs.hang_next(
        Operation::ChangeMessageVisibilityBatch,
        Duration::from_secs(10),
    );
    sqs.send(URL, &body("same", serde_json::json!(10_500)));
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"concurrency": 4, "visibility_timeout_secs": 30}),
    ));
    sfn.wait_for_reports(1).await;
    // The Retry's message, with the same token, right after the report.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let retry = sqs.send(URL, &body("same", serde_json::json!(1)));
    sqs.wait_until(|q| q.deleted().len() == 2).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the retry's message {retry} was deleted without running"
    );
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Item 7: a token longer than Step Functions accepts makes a malformed
/// message: every report of it would be refused, and a kept message would
/// run its handler again each visibility timeout, for ever.
#[tokio::test(start_paused = true)]
async fn a_token_step_functions_would_refuse_is_malformed() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let c = calls.clone();
    r.handler("h", move |n: u64, _ctx: TaskContext| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, TaskError>(n) }
    });
    let long = "A".repeat(2049);
    sqs.send(URL, &body(&long, serde_json::json!(1)));
    // The control: the longest token accepted runs.
    sqs.send(URL, &body(&"B".repeat(2048), serde_json::json!(2)));
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &r,
        serde_json::json!({"concurrency": 4, "on_malformed": "delete"}),
    ));
    sqs.wait_until(|q| q.deleted().len() == 2).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(sfn.reports().len(), 1);
    assert_eq!(sfn.reports()[0].token().len(), 2048);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}
