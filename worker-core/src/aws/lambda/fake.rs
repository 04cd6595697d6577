//! An in-process fake of Lambda's durable-execution callbacks, for unit
//! tests: every completion and heartbeat recorded, callbacks closable
//! (answering `CallbackTimeoutException`), errors scriptable per operation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::aws::sfn::fake::Report;
use crate::aws::{ApiError, CompletionTarget, Operation, TargetOperations};

#[derive(Default)]
struct State {
    reports: Vec<Report>,
    heartbeats: Vec<(String, Instant)>,
    closed: HashSet<String>,
    scripted: HashMap<Operation, VecDeque<ApiError>>,
}

/// The fake. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct FakeLambda {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl FakeLambda {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Close a callback (it expired): its calls answer `CallbackTimeoutException`.
    pub fn close(&self, callback_id: &str) {
        self.state().closed.insert(callback_id.to_owned());
    }

    /// Answer the next call of `op` with `err` (queued; one per call).
    pub fn fail_next(&self, op: Operation, err: ApiError) {
        self.state().scripted.entry(op).or_default().push_back(err);
    }

    /// Every completion received, in order (the token is the callback id).
    pub fn reports(&self) -> Vec<Report> {
        self.state().reports.clone()
    }

    /// When heartbeats for `callback_id` arrived.
    pub fn heartbeats(&self, callback_id: &str) -> Vec<Instant> {
        let s = self.state();
        s.heartbeats
            .iter()
            .filter(|(id, _)| id == callback_id)
            .map(|(_, at)| *at)
            .collect()
    }

    /// Wait until `n` completions arrived.
    pub async fn wait_for_reports(&self, n: usize) -> Vec<Report> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state().reports.len() >= n {
                return self.reports();
            }
            notified.await;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, op: Operation, id: &str, ok: impl FnOnce(&mut State)) -> Result<(), ApiError> {
        let mut s = self.state();
        if let Some(err) = s.scripted.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(err);
        }
        if s.closed.contains(id) {
            return Err(ApiError::service(
                "CallbackTimeoutException",
                400,
                "the callback timed out or was already completed",
            ));
        }
        ok(&mut s);
        drop(s);
        self.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl CompletionTarget for FakeLambda {
    fn operations(&self) -> TargetOperations {
        TargetOperations::DURABLE_CALLBACK
    }
    fn permissions(&self) -> &'static str {
        "lambda:SendDurableExecutionCallback*"
    }
    async fn succeed(&self, id: &str, output: &str) -> Result<(), ApiError> {
        self.answer(Operation::SendDurableExecutionCallbackSuccess, id, |s| {
            s.reports.push(Report::Success {
                token: id.to_owned(),
                output: output.to_owned(),
            });
            // A completed callback takes no more calls.
            s.closed.insert(id.to_owned());
        })
    }
    async fn fail(&self, id: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        self.answer(Operation::SendDurableExecutionCallbackFailure, id, |s| {
            s.reports.push(Report::Failure {
                token: id.to_owned(),
                error: error.to_owned(),
                cause: cause.to_owned(),
            });
            s.closed.insert(id.to_owned());
        })
    }
    async fn heartbeat(&self, id: &str) -> Result<(), ApiError> {
        self.answer(Operation::SendDurableExecutionCallbackHeartbeat, id, |s| {
            s.heartbeats.push((id.to_owned(), Instant::now()));
        })
    }
}
