//! An in-process fake of Step Functions, for unit tests and benchmarks.
//!
//! Activities are queues of tasks; a poll waits (on tokio's clock, so paused
//! time works) until a task arrives or the poll hold time passes. Every call is
//! recorded, tasks can be closed (answering `TaskTimedOut` and friends), and
//! errors can be scripted per operation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ActivityTask, SfnApi};
use crate::aws::{ApiError, ApiErrorKind, Operation};

/// A completion the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `SendTaskSuccess`
    Success {
        /// token
        token: String,
        /// output
        output: String,
    },
    /// `SendTaskFailure`
    Failure {
        /// token
        token: String,
        /// error
        error: String,
        /// cause
        cause: String,
    },
}

impl Report {
    /// The token this report completes.
    pub fn token(&self) -> &str {
        match self {
            Report::Success { token, .. } | Report::Failure { token, .. } => token,
        }
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<String, VecDeque<ActivityTask>>,
    unknown_activities: HashSet<String>,
    reports: Vec<Report>,
    refused: Vec<(Operation, String, String)>,
    heartbeats: Vec<(String, Instant)>,
    closed: HashMap<String, &'static str>,
    scripted: HashMap<Operation, VecDeque<ApiError>>,
    polls_started: usize,
    polls_in_flight: usize,
    max_polls_in_flight: usize,
}

/// The fake. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeSfn {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    poll_hold: Duration,
}

impl Default for FakeSfn {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSfn {
    /// A fake whose polls hold for 60 s like the real service.
    pub fn new() -> Self {
        Self::with_poll_hold(Duration::from_secs(60))
    }

    /// A fake whose empty polls return after `hold`.
    pub fn with_poll_hold(hold: Duration) -> Self {
        Self {
            state: Arc::default(),
            changed: Arc::default(),
            poll_hold: hold,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// Queue a task on an activity.
    pub fn push_task(&self, activity_arn: &str, token: &str, input: &str) {
        self.state()
            .queues
            .entry(activity_arn.to_owned())
            .or_default()
            .push_back(ActivityTask {
                token: token.to_owned(),
                input: input.to_owned(),
            });
        self.touch();
    }

    /// Make `DescribeActivity` and polls answer `ActivityDoesNotExist`.
    pub fn remove_activity(&self, activity_arn: &str) {
        self.state()
            .unknown_activities
            .insert(activity_arn.to_owned());
    }

    /// Close a task: its heartbeats and reports are answered with `code`
    /// (`TaskTimedOut`, `TaskDoesNotExist` or `InvalidToken`).
    pub fn close_task(&self, token: &str, code: &'static str) {
        self.state().closed.insert(token.to_owned(), code);
    }

    /// Answer the next call of `op` with `err` (queued; one per call).
    pub fn fail_next(&self, op: Operation, err: ApiError) {
        self.state().scripted.entry(op).or_default().push_back(err);
    }

    /// Every report received, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.state().reports.clone()
    }

    /// Every `SendTask*` call answered with an error, in order:
    /// (operation, token, error code).
    pub fn refused(&self) -> Vec<(Operation, String, String)> {
        self.state().refused.clone()
    }

    /// When heartbeats for `token` arrived.
    pub fn heartbeats(&self, token: &str) -> Vec<Instant> {
        let s = self.state();
        s.heartbeats
            .iter()
            .filter(|(t, _)| t == token)
            .map(|(_, at)| *at)
            .collect()
    }

    /// Polls started so far.
    pub fn polls_started(&self) -> usize {
        self.state().polls_started
    }

    /// Polls waiting for an answer right now.
    pub fn polls_in_flight(&self) -> usize {
        self.state().polls_in_flight
    }

    /// The most polls that were ever in flight at once.
    pub fn max_polls_in_flight(&self) -> usize {
        self.state().max_polls_in_flight
    }

    /// Wait until `cond` holds of the fake (checked after every change).
    pub async fn wait_until(&self, mut cond: impl FnMut(&FakeSfn) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            notified.await;
        }
    }

    /// Wait until `n` reports arrived.
    pub async fn wait_for_reports(&self, n: usize) -> Vec<Report> {
        self.wait_until(|f| f.state().reports.len() >= n).await;
        self.reports()
    }

    fn scripted(&self, op: Operation) -> Option<ApiError> {
        self.state()
            .scripted
            .get_mut(&op)
            .and_then(VecDeque::pop_front)
    }

    /// A `SendTask*` call's answer: scripted error, closed task, or `ok`.
    fn answer(
        &self,
        op: Operation,
        token: &str,
        ok: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let result = match self.scripted(op) {
            Some(err) => Err(err),
            None => self.closed(token).and_then(|()| ok()),
        };
        if let Err(e) = &result {
            self.state()
                .refused
                .push((op, token.to_owned(), e.code.clone()));
            self.touch();
        }
        result
    }

    fn closed(&self, token: &str) -> Result<(), ApiError> {
        match self.state().closed.get(token) {
            Some(code) => Err(ApiError::service(*code, 400, "task is closed")),
            None => Ok(()),
        }
    }

    fn complete(&self, report: Report) -> Result<(), ApiError> {
        let token = report.token().to_owned();
        let mut s = self.state();
        s.reports.push(report);
        // A completed task is closed, as in the real service.
        s.closed.insert(token, "TaskTimedOut");
        drop(s);
        self.touch();
        Ok(())
    }
}

struct InFlight<'a>(&'a FakeSfn);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.state().polls_in_flight -= 1;
        self.0.touch();
    }
}

#[async_trait]
impl SfnApi for FakeSfn {
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        _worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError> {
        {
            let mut s = self.state();
            s.polls_started += 1;
            s.polls_in_flight += 1;
            s.max_polls_in_flight = s.max_polls_in_flight.max(s.polls_in_flight);
        }
        let _in_flight = InFlight(self);
        self.touch();
        if let Some(err) = self.scripted(Operation::GetActivityTask) {
            return Err(err);
        }
        if self.state().unknown_activities.contains(activity_arn) {
            return Err(ApiError::new(
                ApiErrorKind::ActivityDoesNotExist,
                "ActivityDoesNotExist",
                activity_arn,
            ));
        }
        let deadline = Instant::now() + self.poll_hold;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self
                .state()
                .queues
                .get_mut(activity_arn)
                .and_then(VecDeque::pop_front);
            if let Some(task) = next {
                return Ok(Some(task));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError> {
        self.answer(Operation::SendTaskSuccess, token, || {
            self.complete(Report::Success {
                token: token.to_owned(),
                output: output.to_owned(),
            })
        })
    }

    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        self.answer(Operation::SendTaskFailure, token, || {
            self.complete(Report::Failure {
                token: token.to_owned(),
                error: error.to_owned(),
                cause: cause.to_owned(),
            })
        })
    }

    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError> {
        self.answer(Operation::SendTaskHeartbeat, token, || {
            self.state()
                .heartbeats
                .push((token.to_owned(), Instant::now()));
            self.touch();
            Ok(())
        })
    }

    async fn describe_activity(&self, activity_arn: &str) -> Result<(), ApiError> {
        if let Some(err) = self.scripted(Operation::DescribeActivity) {
            return Err(err);
        }
        if self.state().unknown_activities.contains(activity_arn) {
            return Err(ApiError::new(
                ApiErrorKind::ActivityDoesNotExist,
                "ActivityDoesNotExist",
                format!("Activity Does Not Exist: '{activity_arn}'"),
            ));
        }
        Ok(())
    }
}
