//! The task ledger with activities, against the in-process fakes: a task
//! handed out twice runs once (the copy gets the stored outcome), and an
//! unreachable ledger fails the task (`fail_closed`) or runs it
//! (`fail_open`). The SQS paths run against LocalStack and moto
//! (worker-bin/tests/ledger.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use sfn_worker_core::aws::fake::{FakeLedger, FakeSfn};
use sfn_worker_core::{Registry, TaskError};

/// A worker with one activity binding whose handler counts its runs.
fn ledger_worker(
    fake: &FakeSfn,
    ledger: Option<&Arc<FakeLedger>>,
    unreachable: &str,
) -> (Worker, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::new();
    let n = runs.clone();
    r.handler("h", move |v: serde_json::Value, _ctx| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>(v)
        }
    });
    let mut config = serde_json::json!({
        "worker": { "shutdown_grace_secs": 30, "cancel_grace_secs": 5 },
        "activity": [{ "arn": ARN, "handler": "h", "heartbeat_secs": 0,
                       "ledger": ledger.is_some(), "ledger_unreachable": unreachable }],
    });
    if ledger.is_some() {
        config["ledger"] = serde_json::json!({ "table": "ledger" });
    }
    let plan = Plan::build(serde_json::from_value(config).unwrap(), &r).unwrap();
    let mut w = Worker::new(plan, Arc::new(fake.clone()));
    if let Some(l) = ledger {
        w = w.with_ledger(l.clone());
    }
    (w, runs)
}

/// The same token handed out twice (a copy): with the ledger the handler
/// runs once and the copy's report is the stored outcome; without it
/// (the control) the handler runs twice.
#[tokio::test(start_paused = true)]
async fn a_task_handed_out_twice_runs_once_with_the_ledger() {
    for with_ledger in [true, false] {
        let fake = FakeSfn::new();
        let table = Arc::new(FakeLedger::new());
        let (w, runs) = ledger_worker(&fake, with_ledger.then_some(&table), "fail_closed");
        let (shutdown, run) = start(w);
        fake.wait_until(|f| f.polls_in_flight() > 0).await;
        fake.push_task(ARN, "tok-1", r#"{"n":1}"#);
        fake.wait_for_reports(1).await;
        fake.push_task(ARN, "tok-1", r#"{"n":1}"#);
        // The copy's report: the stored outcome, or the second run's.
        fake.wait_until(|f| f.reports().len() + f.refused().len() >= 2)
            .await;
        shutdown.shutdown();
        run.await.unwrap().unwrap();
        let expected = if with_ledger { 1 } else { 2 };
        assert_eq!(
            runs.load(Ordering::SeqCst),
            expected,
            "ledger {with_ledger}"
        );
        if with_ledger {
            // Claim and settle for the first, one claim for the copy.
            assert_eq!(
                table.calls(),
                1 + 2 + 1,
                "DescribeTable, claim, settle, claim"
            );
        }
    }
}

/// `fail_closed`: with the ledger unreachable an activity task is not run
/// and fails with `Worker.LedgerUnavailable` (for the state's `Retry`);
/// `fail_open` (the control) runs it.
#[tokio::test(start_paused = true)]
async fn an_unreachable_ledger_fails_or_runs_an_activity_task_as_configured() {
    for choice in ["fail_closed", "fail_open"] {
        let fake = FakeSfn::new();
        let table = Arc::new(FakeLedger::new());
        let (w, runs) = ledger_worker(&fake, Some(&table), choice);
        let (shutdown, run) = start(w);
        fake.wait_until(|f| f.polls_in_flight() > 0).await;
        table.set_unreachable(true);
        fake.push_task(ARN, "tok-2", "{}");
        fake.wait_for_reports(1).await;
        shutdown.shutdown();
        run.await.unwrap().unwrap();
        let reports = fake.reports();
        if choice == "fail_closed" {
            assert_eq!(runs.load(Ordering::SeqCst), 0);
            assert_eq!(failure(&reports[0]).0, "Worker.LedgerUnavailable");
        } else {
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            assert!(matches!(reports[0], Report::Success { .. }), "{reports:?}");
        }
    }
}
