//! Test your handlers (feature `test-util`): run one on an input and see
//! its output or [`TaskError`], the heartbeats it asked for, and what it does
//! when the task is cancelled as the worker would cancel it; or run a whole
//! worker with your registry against the in-process fake of Step Functions.
//!
//! ```
//! use std::time::Duration;
//! use sfn_worker_core::testing::TestTask;
//! use sfn_worker_core::{CancelReason, Registry, TaskContext, TaskError};
//!
//! async fn slow_count(n: u32, ctx: TaskContext) -> Result<u32, TaskError> {
//!     for i in 0..n {
//!         if ctx.is_cancelled() {
//!             return Err(TaskError::new("Count.Stopped", format!("at {i}")));
//!         }
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         ctx.heartbeat();
//!     }
//!     Ok(n)
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut registry = Registry::new();
//! registry.handler("count", slow_count);
//!
//! let task = TestTask::new("count-binding");
//! assert_eq!(task.run(&registry, "count", 3).await, Ok(serde_json::json!(3)));
//! assert_eq!(task.heartbeats(), 3);
//!
//! // Cancelled as the worker cancels a task Step Functions closed.
//! let task = TestTask::new("count-binding");
//! task.cancel_after(Duration::from_millis(2500), CancelReason::TaskClosed);
//! let err = task.run(&registry, "count", 10).await.unwrap_err();
//! assert_eq!((err.error(), err.cause()), ("Count.Stopped", "at 3"));
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::aws::fake::{FakeSfn, Report};
use crate::{CancelReason, Config, Handler, Plan, Registry, TaskContext, TaskError, Worker};

/// One task for a handler under test: its context, the heartbeats the
/// handler asked for, and the worker's cancellations on demand.
#[derive(Debug, Clone)]
pub struct TestTask {
    ctx: TaskContext,
}

impl TestTask {
    /// A task of the binding named `binding`, no deadline, not cancelled.
    pub fn new(binding: &str) -> Self {
        Self {
            ctx: TaskContext::local(binding),
        }
    }

    /// A task whose binding has `timeout_secs`: the context's deadline is
    /// `timeout` from now. The deadline is only information for the
    /// handler; [`TestTask::cancel_after`] with [`CancelReason::Timeout`]
    /// cancels as the worker does when it passes.
    pub fn with_timeout(binding: &str, timeout: Duration) -> Self {
        Self {
            ctx: TaskContext::local_with_deadline(
                binding,
                Some(tokio::time::Instant::now() + timeout),
            ),
        }
    }

    /// The context a handler gets for this task.
    pub fn context(&self) -> TaskContext {
        self.ctx.clone()
    }

    /// Cancel the task now, as the worker does; the handler sees
    /// `ctx.is_cancelled()` and `ctx.cancel_reason()`, and
    /// [`TestTask::call`] returns whatever it then returns. What the worker
    /// reports after it returns depends on the reason:
    /// [`CancelReason::TaskClosed`] (Step Functions closed the task):
    /// nothing reaches anyone; [`CancelReason::Timeout`]:
    /// `Worker.HandlerTimeout`, whatever it returned;
    /// [`CancelReason::Shutdown`]: its own result if it returns within
    /// `cancel_grace_secs`, else `Worker.ShuttingDown`. The first reason
    /// sticks.
    pub fn cancel(&self, reason: CancelReason) {
        self.ctx.cancel(reason);
    }

    /// [`TestTask::cancel`] after `after` (on tokio's clock: paused in
    /// `#[tokio::test(start_paused = true)]`, so no test waits for real;
    /// that needs tokio's own `test-util` feature in your dev-dependencies).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the timer).
    pub fn cancel_after(&self, after: Duration, reason: CancelReason) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            ctx.cancel(reason);
        });
    }

    /// How many times the handler called [`TaskContext::heartbeat`].
    pub fn heartbeats(&self) -> u64 {
        self.ctx.heartbeats_asked()
    }

    /// Run `handler` on `input` (serialized to JSON, as the task's input
    /// is), with this task's context: its output as JSON, or its failure.
    /// Input that does not fit the handler's type fails with
    /// `Worker.InvalidInput`, as in the worker.
    pub async fn call(
        &self,
        handler: &dyn Handler,
        input: impl Serialize,
    ) -> Result<serde_json::Value, TaskError> {
        let input = serde_json::to_string(&input).map_err(|e| {
            TaskError::new(
                "Test.InputNotJson",
                format!("the test's input does not serialize: {e}"),
            )
        })?;
        let output = handler.call(input, self.context()).await?;
        serde_json::from_str(&output).map_err(|e| {
            TaskError::new(
                crate::error_names::INVALID_OUTPUT,
                format!("output is not JSON: {e}"),
            )
        })
    }

    /// [`TestTask::call`] with the handler the registry builds for `kind`
    /// (no params), with every layer of the registry around it.
    pub async fn run(
        &self,
        registry: &Registry,
        kind: &str,
        input: impl Serialize,
    ) -> Result<serde_json::Value, TaskError> {
        let handler = registry
            .build(kind, &serde_json::Value::Null)
            .map_err(|e| TaskError::new("Test.NoSuchHandler", e.to_string()))?;
        self.call(&*handler, input).await
    }
}

/// A real [`Worker`] (pollers, slots, heartbeats, reporting, shutdown) with
/// your registry, serving one activity against the in-process fake of Step
/// Functions: push tasks, read what the worker reported. Use it under
/// `#[tokio::test(start_paused = true)]`.
///
/// ```
/// use sfn_worker_core::testing::TestWorker;
/// use sfn_worker_core::{Registry, TaskContext, TaskError};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut registry = Registry::new();
/// registry.handler("double", |n: u32, _ctx: TaskContext| async move { Ok::<_, TaskError>(n * 2) });
/// let worker = TestWorker::start(registry, "double").unwrap();
/// worker.push("t1", 21);
/// assert_eq!(worker.outcome("t1").await, Ok(serde_json::json!(42)));
/// worker.shutdown().await;
/// # }
/// ```
pub struct TestWorker {
    fake: FakeSfn,
    shutdown: crate::ShutdownHandle,
    run: JoinHandle<Result<(), crate::WorkerError>>,
}

/// The activity a [`TestWorker`] serves.
pub const TEST_ACTIVITY_ARN: &str = "arn:aws:states:us-east-1:000000000000:activity:test";

impl TestWorker {
    /// Start a worker serving [`TEST_ACTIVITY_ARN`] with the handler kind
    /// `kind` of `registry`; an error if the binding would not load.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the worker).
    pub fn start(registry: Registry, kind: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_value(serde_json::json!({
            "activity": [{ "name": "test", "arn": TEST_ACTIVITY_ARN, "handler": kind }]
        }))
        .map_err(|e| e.to_string())?;
        let plan = Plan::build(config, &registry).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let fake = FakeSfn::new();
        let worker = Worker::new(plan, Arc::new(fake.clone()));
        let shutdown = worker.shutdown_handle();
        let run = tokio::spawn(worker.run());
        Ok(Self {
            fake,
            shutdown,
            run,
        })
    }

    /// Hand the worker a task with this token and input.
    pub fn push(&self, token: &str, input: impl Serialize) {
        let input = serde_json::to_string(&input).unwrap_or_else(|_| "null".to_owned());
        self.fake.push_task(TEST_ACTIVITY_ARN, token, &input);
    }

    /// The fake of Step Functions, for what this module does not wrap
    /// (closing a task, failing calls, the heartbeats it received).
    pub fn fake(&self) -> &FakeSfn {
        &self.fake
    }

    /// Wait for the worker's report of `token`: the success's output, or
    /// the failure. `Test.NoReport` if the worker stopped, or an hour of
    /// (tokio) time passed, without one: a misspelled token fails the test
    /// instead of hanging it.
    pub async fn outcome(&self, token: &str) -> Result<serde_json::Value, TaskError> {
        let mut found = None;
        let reported = self.fake.wait_until(|fake| {
            found = fake.reports().into_iter().find(|r| r.token() == token);
            found.is_some() || self.run.is_finished()
        });
        let waited = tokio::time::timeout(Duration::from_secs(3600), reported).await;
        if waited.is_err() {
            return Err(TaskError::new(
                "Test.NoReport",
                format!("no report of {token} within an hour"),
            ));
        }
        match found {
            Some(Report::Success { output, .. }) => {
                Ok(serde_json::from_str(&output).unwrap_or(serde_json::Value::String(output)))
            }
            Some(Report::Failure { error, cause, .. }) => Err(TaskError::new(error, cause)),
            None => Err(TaskError::new(
                "Test.NoReport",
                format!("the worker stopped without reporting {token}"),
            )),
        }
    }

    /// Shut the worker down, as on SIGTERM, and wait until it stops.
    pub async fn shutdown(self) {
        self.shutdown.shutdown();
        let _ = self.run.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outcome_never_reported_fails_instead_of_hanging() {
        let mut registry = Registry::new();
        registry.handler("h", |n: u32, _ctx: TaskContext| async move {
            Ok::<_, TaskError>(n)
        });
        let worker = TestWorker::start(registry, "h").unwrap();
        worker.push("t1", 1);
        assert_eq!(worker.outcome("t1").await, Ok(serde_json::json!(1)));
        let missing = worker.outcome("t2").await.unwrap_err();
        assert_eq!(missing.error(), "Test.NoReport");
        worker.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_asked_are_counted_and_a_cancel_is_seen() {
        let mut registry = Registry::new();
        registry.handler("h", |_: serde_json::Value, ctx: TaskContext| async move {
            ctx.heartbeat();
            ctx.heartbeat();
            ctx.cancelled().await;
            Err::<(), _>(TaskError::new(
                "T.Stopped",
                format!("{:?}", ctx.cancel_reason()),
            ))
        });
        let task = TestTask::with_timeout("b", Duration::from_secs(30));
        assert!(task.context().deadline().is_some());
        task.cancel_after(Duration::from_secs(30), CancelReason::Timeout);
        let err = task
            .run(&registry, "h", serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!((err.error(), err.cause()), ("T.Stopped", "Some(Timeout)"));
        assert_eq!(task.heartbeats(), 2);
    }
}
