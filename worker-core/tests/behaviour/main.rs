//! Worker behaviour against the in-process fake (feature `test-util`), on
//! tokio's paused clock. Only public items: these tests are also how a user
//! would test their own handlers inside a real worker.
#![allow(clippy::unwrap_used)]

mod durable;
mod leases;
mod ledger;
mod lifecycle;
mod queue;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use sfn_worker_core::aws::fake::{FakeSfn, Report};
use sfn_worker_core::{Config, Plan, Registry, ShutdownHandle, Worker, WorkerError};

pub const ARN: &str = "arn:aws:states:us-east-1:000000000000:activity:work";

/// A worker over `fake` with one binding of kind `kind`, plus overrides of
/// the binding (`activity`) and worker (`worker`) settings.
pub fn worker(
    fake: &FakeSfn,
    registry: Registry,
    activity: serde_json::Value,
    worker: serde_json::Value,
) -> Worker {
    let mut binding = serde_json::json!({ "arn": ARN, "handler": "h" });
    merge(&mut binding, activity);
    let mut w = serde_json::json!({ "shutdown_grace_secs": 30, "cancel_grace_secs": 5 });
    merge(&mut w, worker);
    let config: Config =
        serde_json::from_value(serde_json::json!({ "worker": w, "activity": [binding] })).unwrap();
    let plan = Plan::build(config, &registry)
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    Worker::new(plan, Arc::new(fake.clone()))
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// Start `worker` in the background; returns its shutdown handle and join handle.
pub fn start(
    worker: Worker,
) -> (
    ShutdownHandle,
    tokio::task::JoinHandle<Result<(), WorkerError>>,
) {
    let handle = worker.shutdown_handle();
    (handle, tokio::spawn(worker.run()))
}

pub fn failure(r: &Report) -> (&str, &str) {
    match r {
        Report::Failure { error, cause, .. } => (error, cause),
        Report::Success { output, .. } => panic!("expected a failure, got success {output}"),
    }
}

pub async fn settle() {
    // Let spawned tasks run to their next await on the paused clock.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// `fut`, or a panic naming `what` if it takes longer than `secs` of (paused)
/// time: a test whose control case would wait forever fails instead.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {secs} s"),
    }
}
