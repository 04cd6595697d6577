//! Keeping one task alive from receipt until it is settled: heartbeats to
//! Step Functions and, for SQS, renewals of the message's visibility, on one
//! timer per task.
//!
//! It runs while the handler runs *and* while the report is retried: a
//! report that backs off through throttling or 5xx answers can take longer
//! than the visibility timeout or the state's `HeartbeatSeconds`, and a task
//! whose message reappears runs a second time.
//!
//! What a heartbeat's answer means:
//! - accepted: the token is good (and, on LocalStack, its state has
//!   `HeartbeatSeconds`);
//! - `TaskTimedOut`, `TaskDoesNotExist`: the task is closed;
//! - `InvalidToken` after an accepted heartbeat: closed too. The token was
//!   valid a moment ago, and LocalStack answers `InvalidToken` for a closed
//!   task where AWS answers `TaskTimedOut`;
//! - `InvalidToken` with no heartbeat accepted yet: proves nothing. On
//!   LocalStack it is the answer for every state without `HeartbeatSeconds`
//!   (AWS accepts and ignores those); on AWS it means a malformed token,
//!   which the report will find out. The task goes on.
//! - anything else: retried soon; the task goes on.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Fuse, FusedFuture};
use tokio::time::{Instant, sleep_until};

use super::lease::Lease;
use crate::aws::{ApiError, ApiErrorKind};
use crate::completion::Reporter;
use crate::events::{HeartbeatAnswered, InternalEvent};
use crate::heartbeat::HeartbeatSchedule;
use crate::metrics::{BindingLabels, HeartbeatResult};

/// A failed renewal is tried again after this, doubled per failure in a
/// row up to [`RENEW_RETRY_MAX`] (or at the interval, if shorter): the
/// lease has two thirds of the visibility timeout left when renewal starts,
/// and every attempt in that window is a chance to keep it (with 40% of
/// calls failing, 15 attempts lose one renewal in a million).
const RENEW_RETRY: Duration = Duration::from_millis(250);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(1);
/// The longest a heartbeat yields to waiting reports.
const MAX_YIELD: Duration = Duration::from_secs(5);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) struct KeepAlive<'a> {
    reporter: &'a Reporter,
    token: &'a str,
    labels: &'a BindingLabels,
    schedule: HeartbeatSchedule,
    max_yield: Duration,
    heartbeat: Fuse<BoxFuture<'a, Result<(), ApiError>>>,
    /// A heartbeat of this task was accepted.
    accepted: bool,
    /// An ambiguous `InvalidToken` was logged already (once per task).
    told_invalid: bool,
    lease: Option<&'a dyn Lease>,
    renew_every: Option<Duration>,
    next_renew: Option<Instant>,
    /// Renewals failed in a row.
    renew_failures: u32,
    renewal: Fuse<BoxFuture<'a, bool>>,
}

impl<'a> KeepAlive<'a> {
    pub fn new(
        reporter: &'a Reporter,
        token: &'a str,
        labels: &'a BindingLabels,
        interval: Option<Duration>,
        lease: Option<&'a dyn Lease>,
    ) -> Self {
        let now = Instant::now();
        let renew_every = lease.and_then(|l| l.renew_every());
        Self {
            reporter,
            token,
            labels,
            schedule: HeartbeatSchedule::new(interval, now),
            max_yield: interval.map_or(MAX_YIELD, |i| (i / 2).min(MAX_YIELD)),
            heartbeat: Fuse::terminated(),
            accepted: false,
            told_invalid: false,
            lease,
            renew_every,
            next_renew: renew_every.map(|every| now + every),
            renew_failures: 0,
            renewal: Fuse::terminated(),
        }
    }

    /// The handler asked for a heartbeat now.
    pub fn request_heartbeat(&mut self) {
        self.schedule.request(Instant::now());
    }

    /// Keep the task alive until a heartbeat's answer says the task is
    /// closed; returns that answer's code. Cancel-safe: calls in flight live
    /// in `self`, so dropping this future loses nothing. After it returned,
    /// no more heartbeats are sent and calling it again only renews the lease.
    pub async fn until_closed(&mut self) -> String {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            // One timer: the earlier of the next heartbeat and the next
            // renewal, each skipped while its previous call is in flight.
            let heartbeat_due = self
                .schedule
                .due_at()
                .filter(|_| self.heartbeat.is_terminated());
            let renew_due = self.next_renew.filter(|_| self.renewal.is_terminated());
            let due = match (heartbeat_due, renew_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                result = &mut self.heartbeat, if !self.heartbeat.is_terminated() => {
                    if let Some(code) = self.answered(result) {
                        return code;
                    }
                }
                kept = &mut self.renewal, if !self.renewal.is_terminated() => {
                    if kept {
                        self.renew_failures = 0;
                    } else if let Some(every) = self.renew_every {
                        let retry = RENEW_RETRY
                            .saturating_mul(1 << self.renew_failures.min(8))
                            .min(RENEW_RETRY_MAX);
                        self.renew_failures += 1;
                        self.next_renew = Some(Instant::now() + every.min(retry));
                    }
                }
                _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    let now = Instant::now();
                    if heartbeat_due.is_some_and(|at| at <= now) {
                        self.schedule.sent(now);
                        self.heartbeat = self.reporter.heartbeat(self.token, self.max_yield).boxed().fuse();
                    }
                    if let Some(lease) = self.lease
                        && renew_due.is_some_and(|at| at <= now)
                    {
                        self.next_renew = self.renew_every.map(|every| now + every);
                        self.renewal = lease.renew().fuse();
                    }
                }
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// Where this task's reports go.
    pub fn reporter(&self) -> &'a Reporter {
        self.reporter
    }

    /// Stop: no more heartbeats (one in flight is dropped), and a renewal in
    /// flight is finished first, because a visibility change racing the
    /// delete fails with "receipt handle is invalid".
    pub async fn finish(mut self) {
        if !self.renewal.is_terminated() {
            (&mut self.renewal).await;
        }
    }

    /// Act on a heartbeat's answer; `Some(code)` when the task is closed.
    fn answered(&mut self, result: Result<(), ApiError>) -> Option<String> {
        let e = match result {
            Ok(()) => {
                self.accepted = true;
                HeartbeatAnswered {
                    labels: self.labels,
                    operation: self.reporter.operations().heartbeat,
                    result: HeartbeatResult::Ok,
                    error: None,
                    first_of_its_kind: false,
                }
                .emit();
                return None;
            }
            Err(e) => e,
        };
        let closed = match e.kind {
            ApiErrorKind::TaskClosed => true,
            ApiErrorKind::InvalidToken => self.accepted,
            _ => false,
        };
        let (result, first_of_its_kind) = match e.kind {
            _ if closed => (HeartbeatResult::TaskGone, true),
            ApiErrorKind::InvalidToken => (
                HeartbeatResult::InvalidToken,
                !std::mem::replace(&mut self.told_invalid, true),
            ),
            ApiErrorKind::Throttled => (HeartbeatResult::Throttled, true),
            _ => (HeartbeatResult::Error, true),
        };
        HeartbeatAnswered {
            labels: self.labels,
            operation: self.reporter.operations().heartbeat,
            result,
            error: Some(&e),
            first_of_its_kind,
        }
        .emit();
        if closed {
            self.schedule.stop();
            return Some(e.code);
        }
        // Throttling and other transient failures are tried again soon;
        // access denied and the like wait for the interval (soon will not help).
        if e.kind == ApiErrorKind::Throttled || e.is_retryable() {
            self.schedule.failed(Instant::now());
        }
        None
    }
}
