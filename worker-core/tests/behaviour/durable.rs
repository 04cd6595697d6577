//! Durable-execution callbacks over SQS against the fakes: the same
//! receiver, runner and lease as Step Functions callbacks, with the results
//! going to the durable-callback target instead of `SendTask*`.

use std::sync::Arc;
use std::time::Duration;

use super::{failure, start};
use sfn_worker_core::aws::fake::{FakeLambda, FakeSfn, FakeSqs, Report};
use sfn_worker_core::{Config, Plan, Registry, TaskContext, TaskError, Worker, WorkerError};

const URL: &str = "http://localhost:4566/000000000000/durable-callbacks";

fn plan(registry: &Registry, queue: serde_json::Value) -> Plan {
    let mut binding = serde_json::json!({
        "url": URL, "handler": "h", "completes": "durable-callback", "input_pointer": "/input",
    });
    if let (Some(a), serde_json::Value::Object(b)) = (binding.as_object_mut(), queue) {
        a.extend(b);
    }
    let config: Config = serde_json::from_value(serde_json::json!({
        "worker": { "shutdown_grace_secs": 30, "cancel_grace_secs": 5 },
        "queue": [binding],
    }))
    .unwrap();
    Plan::build(config, registry)
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

fn worker(
    sfn: &FakeSfn,
    sqs: &FakeSqs,
    lambda: &FakeLambda,
    registry: Registry,
    queue: serde_json::Value,
) -> Worker {
    Worker::new(plan(&registry, queue), Arc::new(sfn.clone()))
        .with_sqs(Arc::new(sqs.clone()))
        .with_durable_callbacks(Arc::new(lambda.clone()))
}

fn body(callback_id: &str, input: serde_json::Value) -> String {
    serde_json::json!({ "callbackId": callback_id, "input": input }).to_string()
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.handler("h", |n: i64, ctx: TaskContext| async move {
        if n < 0 {
            return Err(TaskError::new(
                "Orders.Rejected",
                format!("{n} is negative"),
            ));
        }
        if n >= 1000 {
            // Long: outlives several heartbeat intervals, unless cancelled.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(35)) => {}
                _ = ctx.cancelled() => return Err(TaskError::new("Orders.Stopped", "cancelled")),
            }
        }
        Ok(n * 2)
    });
    r
}

#[tokio::test(start_paused = true)]
async fn results_go_to_the_callback_and_the_messages_are_deleted() {
    let (sfn, sqs, lambda) = (FakeSfn::new(), FakeSqs::new(), FakeLambda::new());
    sqs.send(URL, &body("Y2IxCg==", serde_json::json!(21)));
    sqs.send(URL, &body("Y2IyCg==", serde_json::json!(-1)));
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &lambda,
        registry(),
        serde_json::json!({}),
    ));
    let mut reports = lambda.wait_for_reports(2).await;
    reports.sort_by(|a, b| a.token().cmp(b.token()));
    assert_eq!(
        reports[0],
        Report::Success {
            token: "Y2IxCg==".into(),
            output: "42".into()
        }
    );
    assert_eq!(failure(&reports[1]), ("Orders.Rejected", "-1 is negative"));
    sqs.wait_until(|q| q.deleted().len() == 2).await;
    // The control: nothing went to Step Functions.
    assert!(sfn.reports().is_empty());
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_long_handler_heartbeats_the_callback() {
    let (sfn, sqs, lambda) = (FakeSfn::new(), FakeSqs::new(), FakeLambda::new());
    sqs.send(URL, &body("bG9uZw==", serde_json::json!(1000)));
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &lambda,
        registry(),
        serde_json::json!({ "heartbeat_secs": 10 }),
    ));
    let reports = lambda.wait_for_reports(1).await;
    assert!(matches!(&reports[0], Report::Success { output, .. } if output == "2000"));
    assert_eq!(lambda.heartbeats("bG9uZw==").len(), 3, "at 10, 20 and 30 s");
    assert!(sfn.heartbeats("bG9uZw==").is_empty());
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_expired_callback_cancels_the_handler_and_deletes_the_message() {
    let (sfn, sqs, lambda) = (FakeSfn::new(), FakeSqs::new(), FakeLambda::new());
    lambda.close("ZXhwaXJlZA==");
    sqs.send(URL, &body("ZXhwaXJlZA==", serde_json::json!(1000)));
    let started = tokio::time::Instant::now();
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &lambda,
        registry(),
        serde_json::json!({ "heartbeat_secs": 10 }),
    ));
    sqs.wait_until(|q| q.deleted().len() == 1).await;
    // Cancelled at the first heartbeat (10 s), not after the 35 s handler.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(lambda.reports().is_empty(), "the callback takes no report");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Issue 21, item 6: Lambda's "no such callback" for a callback it never
/// knew is what a worker pointed at the wrong region or account gets for
/// every callback. The message (the only copy of the callback id) is kept,
/// and the worker reads not ready until Lambda accepts a call again. The
/// control: for a callback whose heartbeat Lambda accepted before, the
/// same answer means closed (the message is deleted).
#[tokio::test(start_paused = true)]
async fn callback_not_found_deletes_nothing_unless_lambda_knew_the_callback() {
    use sfn_worker_core::aws::{ApiError, ApiErrorKind, Operation};
    let not_found = || {
        ApiError::new(
            ApiErrorKind::CallbackNotFound,
            "ResourceNotFoundException",
            "no such callback",
        )
    };
    for knew_it in [false, true] {
        let (sfn, sqs, lambda) = (FakeSfn::new(), FakeSqs::new(), FakeLambda::new());
        if !knew_it {
            // Every call: the wrong region knows no callback.
            for _ in 0..10 {
                lambda.fail_next(
                    Operation::SendDurableExecutionCallbackHeartbeat,
                    not_found(),
                );
            }
        }
        for _ in 0..3 {
            lambda.fail_next(Operation::SendDurableExecutionCallbackSuccess, not_found());
        }
        let id = sqs.send(URL, &body("bWlzc2luZw==", serde_json::json!(1000)));
        let w = worker(
            &sfn,
            &sqs,
            &lambda,
            registry(),
            serde_json::json!({ "heartbeat_secs": 10 }),
        );
        let health = w.health();
        let (shutdown, run) = start(w);
        // The 35 s handler, then its report.
        tokio::time::sleep(Duration::from_secs(40)).await;
        if knew_it {
            sqs.wait_until(|q| q.deleted().len() == 1).await;
            assert!(health.is_ready());
        } else {
            assert!(!sqs.deleted().contains(&id), "the only copy was deleted");
            assert!(health.is_misdirected() && !health.is_ready());
        }
        assert!(lambda.reports().is_empty());
        shutdown.shutdown();
        run.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_without_a_callback_id_is_malformed_and_left() {
    let (sfn, sqs, lambda) = (FakeSfn::new(), FakeSqs::new(), FakeLambda::new());
    // Not the base64 alphabet, and a task token where a callback id belongs.
    let bad = sqs.send(URL, &body("not a callback id!", serde_json::json!(1)));
    let tokenish = sqs.send(
        URL,
        &serde_json::json!({ "taskToken": "Y2I=", "input": 1 }).to_string(),
    );
    sqs.send(URL, &body("b2s=", serde_json::json!(2)));
    let (shutdown, run) = start(worker(
        &sfn,
        &sqs,
        &lambda,
        registry(),
        serde_json::json!({}),
    ));
    let reports = lambda.wait_for_reports(1).await;
    assert_eq!(reports[0].token(), "b2s=");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lambda.reports().len(), 1);
    assert!(!sqs.deleted().contains(&bad) && !sqs.deleted().contains(&tokenish));
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_durable_binding_without_a_durable_target_stops_start_up() {
    let (sfn, sqs) = (FakeSfn::new(), FakeSqs::new());
    let registry = registry();
    let w = Worker::new(
        plan(&registry, serde_json::json!({})),
        Arc::new(sfn.clone()),
    )
    .with_sqs(Arc::new(sqs.clone()));
    assert!(matches!(w.run().await, Err(WorkerError::NoDurableClient)));
}

#[test]
fn task_token_fields_do_not_apply_to_a_durable_binding() {
    let config: Config = serde_json::from_value(serde_json::json!({ "queue": [
        { "url": URL, "handler": "h", "completes": "durable-callback", "token_pointer": "/t" },
        { "url": URL, "name": "b", "handler": "h", "callback_id_attribute": "Id" },
    ]}))
    .unwrap();
    let errs = Plan::build(config, &registry()).err().unwrap();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["queue[0].token_pointer", "queue[1].callback_id_attribute"]
    );
}
