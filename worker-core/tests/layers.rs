//! tower layers around handlers: the worker's own behaviour (the task's
//! span, the timeout, redaction, reporting) stays outside every user layer.
//!
//! A test binary of its own: spans are only seen under a subscriber, and
//! `tracing` caches per call site whether anyone listens. A thread-local
//! subscriber next to tests without one (the behaviour tests) makes that
//! cache a race; here every test installs the same global one first.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use sfn_worker_core::aws::fake::{FakeSfn, Report};
use sfn_worker_core::config::ActivityBinding;
use sfn_worker_core::{
    Config, HandlerService, Plan, Registry, ShutdownHandle, Task, TaskContext, TaskError, Worker,
    WorkerError,
};

const ARN: &str = "arn:aws:states:us-east-1:000000000000:activity:work";

fn subscriber() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    });
}

/// A worker over `fake` serving kind `h` of `registry`, configured in code.
fn start(
    fake: &FakeSfn,
    registry: Registry,
    timeout_secs: Option<u64>,
) -> (
    ShutdownHandle,
    tokio::task::JoinHandle<Result<(), WorkerError>>,
) {
    let mut binding = ActivityBinding::new(ARN.parse().unwrap(), "h");
    binding.timeout_secs = timeout_secs.and_then(std::num::NonZeroU64::new);
    let mut config = Config::default();
    config.worker.cancel_grace_secs = 2;
    config.activities.push(binding);
    let plan = Plan::build(config, &registry)
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let worker = Worker::new(plan, Arc::new(fake.clone()));
    (worker.shutdown_handle(), tokio::spawn(worker.run()))
}

fn failure(r: &Report) -> (&str, &str) {
    match r {
        Report::Failure { error, cause, .. } => (error, cause),
        Report::Success { output, .. } => panic!("expected a failure, got success {output}"),
    }
}

/// A layer that notes the span current when the worker calls it, and then
/// ignores cancellation: it holds the answer 1,000 s after the handler gave it.
#[derive(Clone)]
struct Stubborn(Arc<Mutex<Vec<String>>>);

impl tower::Layer<HandlerService> for Stubborn {
    type Service = tower::util::BoxCloneService<Task<String>, String, TaskError>;
    fn layer(&self, inner: HandlerService) -> Self::Service {
        let seen = self.0.clone();
        tower::util::BoxCloneService::new(tower::service_fn(move |task: Task<String>| {
            let span = tracing::Span::current()
                .metadata()
                .map(|m| m.name().to_owned())
                .unwrap_or_default();
            seen.lock().unwrap().push(span);
            let inner = inner.clone();
            async move {
                let out = inner.oneshot(task).await;
                tokio::time::sleep(Duration::from_secs(1000)).await;
                out
            }
        }))
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_layer_runs_inside_the_task_span_and_cannot_outlast_the_timeout() {
    subscriber();
    let fake = FakeSfn::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx: TaskContext| async {
        Ok::<_, TaskError>("done")
    });
    r.layer(Stubborn(seen.clone()));
    let (shutdown, run) = start(&fake, r, Some(3));
    fake.wait_until(|f| f.polls_in_flight() > 0).await;
    let t0 = Instant::now();
    fake.push_task(ARN, "t", "{}");
    let reports = fake.wait_for_reports(1).await;
    // The timeout (3 s), then the cancel grace (2 s): the layer's hold did
    // not keep the task.
    assert_eq!(failure(&reports[0]).0, "Worker.HandlerTimeout");
    assert_eq!(t0.elapsed().as_secs(), 5);
    assert_eq!(*seen.lock().unwrap(), ["task"]);
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}

/// Control: the same layer called outside a worker sees no task span, so
/// the assertion above could fail.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn control_outside_the_worker_there_is_no_task_span() {
    subscriber();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx: TaskContext| async {
        Ok::<_, TaskError>("done")
    });
    r.layer(Stubborn(seen.clone()));
    let h = r.build("h", &serde_json::Value::Null).unwrap();
    let mut svc = HandlerService::from(h);
    let call = svc
        .ready()
        .await
        .unwrap()
        .call(Task::new("{}".into(), TaskContext::local("t")));
    assert_eq!(call.await.unwrap(), "\"done\"");
    assert_eq!(*seen.lock().unwrap(), [""]);
}

/// A layer's failure that quotes the token is reported without it, as a
/// handler's is.
#[tokio::test(start_paused = true)]
async fn a_layers_failure_is_redacted_and_reported() {
    subscriber();
    let fake = FakeSfn::new();
    let mut r = Registry::new();
    r.handler("h", |_: serde_json::Value, _ctx: TaskContext| async {
        Ok::<_, TaskError>("done")
    });
    r.layer(tower::layer::layer_fn(|_inner: HandlerService| {
        tower::service_fn(|task: Task<String>| async move {
            Err::<String, tower::BoxError>(format!("refused input {}", task.input).into())
        })
    }));
    let (shutdown, run) = start(&fake, r, None);
    let token = "AAAAKgAAAAIAAAAAAAAAAQxyzTOKENxyzTOKENxyzTOKEN0123456789";
    fake.push_task(ARN, token, &format!("{{\"token\":\"{token}\"}}"));
    let reports = fake.wait_for_reports(1).await;
    let (error, cause) = failure(&reports[0]);
    assert_eq!(error, "Worker.ServiceError");
    assert!(cause.starts_with("refused input"), "{cause}");
    assert!(!cause.contains(token), "{cause}");
    shutdown.shutdown();
    run.await.unwrap().unwrap();
}
