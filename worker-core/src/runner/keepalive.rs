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
//!
//! A call that goes unanswered is not waited for: a second attempt goes out
//! beside it after a moment (up to three in flight), because the deadline
//! that matters is the lease's or the state's `HeartbeatSeconds`, not the
//! call's own timeout.
//!
//! When SQS says none of the task's receipts is ours any more (the message
//! lapsed; another worker may run it now), renewals stop, the loss is
//! counted and logged once, and the task goes on while its heartbeats are
//! accepted (the task is still open, and this worker's report may well be
//! the one that lands). If the latest heartbeat failed too, the worker has
//! lost touch with the task: [`Alarm::LeaseLost`], and the runner cancels it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, sleep_until};

use super::lease::{Lease, Renewed};
use crate::aws::{ApiError, ApiErrorKind};
use crate::completion::{Reporter, Sent};
use crate::events::{HeartbeatAnswered, InternalEvent, LeaseLost};
use crate::heartbeat::HeartbeatSchedule;
use crate::ledger::{Held, Renewal};
use crate::metrics::{BindingLabels, HeartbeatResult};

/// A failed renewal is tried again after this, doubled per failure in a
/// row up to [`RENEW_RETRY_MAX`] (or at the interval, if shorter): the
/// lease has two thirds of the visibility timeout left when renewal starts,
/// and every attempt in that window is a chance to keep it (with 40% of
/// calls failing, 15 attempts lose one renewal in a million).
const RENEW_RETRY: Duration = Duration::from_millis(250);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(1);
/// A renewal with no answer after this is not waited for: another attempt
/// goes out beside it (on another connection). What bounds a renewal is the
/// lease's deadline, not the call's timeout (15 s, longer than a short
/// visibility timeout's remaining two thirds), so one hung call must not
/// hold back the next.
const RENEW_HEDGE_AFTER: Duration = RENEW_RETRY_MAX;
/// The same for heartbeats: a heartbeat unanswered this long is not waited
/// for (the state's `HeartbeatSeconds` is the deadline; the worker is not
/// told it, so it keeps trying as it does after a failure). A hedge is
/// sent even while reports go first at the gate: it waits there too, so it
/// adds no calls past the rate limit, and a heartbeat whose request was lost
/// while calls were scarce would otherwise leave the task silent until the
/// attempt timed out (the simulation found that gap).
const HEARTBEAT_HEDGE_AFTER: Duration = Duration::from_secs(2);
/// The most attempts of one kind in flight for one task. An attempt is
/// given up (dropped, which cancels its request) once this many hedges
/// have gone out after it, so a run of hung calls never stops the
/// attempts: they go on at the hedge's pace, at most this many at once.
const MAX_ATTEMPTS_IN_FLIGHT: u32 = 3;
/// How long the end of a task waits for renewals still in flight (a
/// renewal landing after a release would hide the message again).
const FINISH_WAIT: Duration = Duration::from_secs(1);
/// Heartbeats failed in a row that, with the lease lost, say this worker
/// has lost touch with the task (a single 5xx is not evidence enough).
const LOST_TOUCH_AFTER: u32 = 3;
/// A failed renewal of the ledger claim is tried again after this.
const CLAIM_RETRY: Duration = Duration::from_secs(1);
/// The longest a heartbeat yields to waiting reports.
const MAX_YIELD: Duration = Duration::from_secs(5);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why keeping a task alive raised the alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// A heartbeat's answer says the task is closed (the answer's code).
    Closed(String),
    /// SQS says none of the task's receipts is ours any more (the message
    /// lapsed and may run elsewhere) and the latest heartbeat failed too:
    /// this worker has lost touch with the task.
    LeaseLost,
}

pub(crate) struct KeepAlive<'a> {
    reporter: &'a Reporter,
    token: &'a str,
    labels: &'a BindingLabels,
    schedule: HeartbeatSchedule,
    max_yield: Duration,
    heartbeats: Attempts<'a, Result<(), ApiError>>,
    /// A heartbeat of this task was accepted.
    accepted: bool,
    /// Heartbeats refused or failed in a row (throttling not counted: a
    /// throttled call reached the service).
    heartbeat_failures: u32,
    /// An ambiguous `InvalidToken` was logged already (once per task).
    told_invalid: bool,
    lease: Option<&'a dyn Lease>,
    renew_every: Option<Duration>,
    next_renew: Option<Instant>,
    /// Renewals failed in a row.
    renew_failures: u32,
    renewals: Attempts<'a, Renewed>,
    /// SQS said no receipt of the task is held any more.
    lease_lost: bool,
    /// The task is being settled (deleted): only renewals go on, and a
    /// receipt going away is the delete's doing, not news.
    settling: bool,
    /// The task's claim in the fleet's ledger, renewed on this same timer.
    claim: Option<ClaimKeep>,
    /// A renewal found the claim taken over by another worker.
    claim_lost: bool,
}

/// A ledger claim being kept: one renewal in flight at most (a renewal
/// that hangs is bounded by the ledger client's call timeout, well under
/// the lease's remaining two thirds).
struct ClaimKeep {
    held: Arc<Held>,
    next: Option<Instant>,
    renewing: Option<BoxFuture<'static, Renewal>>,
    /// It is being settled: a renewal refused now is the settle's doing.
    settling: bool,
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
            heartbeats: Attempts::new(),
            accepted: false,
            heartbeat_failures: 0,
            told_invalid: false,
            lease,
            renew_every,
            next_renew: renew_every.map(|every| now + every),
            renew_failures: 0,
            renewals: Attempts::new(),
            lease_lost: false,
            settling: false,
            claim: None,
            claim_lost: false,
        }
    }

    /// Renew `held`, the task's ledger claim, on this timer from now on.
    pub fn hold_claim(&mut self, held: Arc<Held>) {
        let next = Some(Instant::now() + held.renew_every());
        self.claim = Some(ClaimKeep {
            held,
            next,
            renewing: None,
            settling: false,
        });
    }

    /// The ledger claim is being settled: renewals go on until that lands,
    /// and one refused meanwhile is not news.
    pub fn settling_claim(&mut self) {
        if let Some(c) = &mut self.claim {
            c.settling = true;
        }
    }

    /// Stop renewing the ledger claim (it is settled or being released).
    pub fn drop_claim(&mut self) {
        self.claim = None;
    }

    /// Whether a renewal found the ledger claim taken over (counted then).
    pub fn claim_lost(&self) -> bool {
        self.claim_lost
    }

    /// The handler asked for a heartbeat now.
    pub fn request_heartbeat(&mut self) {
        self.schedule.request(Instant::now());
    }

    /// Whether the service accepted a heartbeat of this task: it knew the
    /// token (so a later "no such task" means closed, not misdirected).
    pub fn known_open(&self) -> bool {
        self.accepted
    }

    /// The binding's metric labels.
    pub fn labels(&self) -> &'a BindingLabels {
        self.labels
    }

    /// Where this task's reports go.
    pub fn reporter(&self) -> &'a Reporter {
        self.reporter
    }

    /// The lease being kept, if any.
    pub fn lease(&self) -> Option<&'a dyn Lease> {
        self.lease
    }

    /// From now on only the lease is kept (the task is reported and its
    /// message is being deleted): no more heartbeats.
    pub fn settling(&mut self) {
        self.settling = true;
        self.schedule.stop();
        self.heartbeats = Attempts::new();
    }

    /// Keep the task alive until an [`Alarm`]. Cancel-safe: calls in flight
    /// live in `self`, so dropping this future loses nothing. After a
    /// `Closed` alarm no more heartbeats are sent; after `LeaseLost` no more
    /// renewals; calling it again keeps up what is left.
    pub async fn until_closed(&mut self) -> Alarm {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            // One timer: the earliest of the next heartbeat and the next
            // renewal, each either due by its schedule or, while an attempt
            // has gone unanswered too long, as a second attempt beside it.
            let heartbeat_due = earliest(
                self.schedule.due_at(),
                self.heartbeats.hedge_at(HEARTBEAT_HEDGE_AFTER),
            );
            let renew_due = earliest(self.next_renew, self.renewals.hedge_at(RENEW_HEDGE_AFTER))
                .filter(|_| self.renew_every.is_some());
            let claim_due = self
                .claim
                .as_ref()
                .filter(|c| c.renewing.is_none())
                .and_then(|c| c.next);
            let due = earliest(earliest(heartbeat_due, renew_due), claim_due);
            let claim_renewing = self.claim.as_ref().is_some_and(|c| c.renewing.is_some());
            tokio::select! {
                // Biased: answers before new attempts, and the same order
                // on every run (the simulation replays a seed exactly).
                biased;
                Some((result, sent)) = self.heartbeats.next_news(), if self.heartbeats.any() => {
                    if let Some(alarm) = self.answered(result, sent) {
                        return alarm;
                    }
                }
                Some((renewed, _)) = self.renewals.next_news(), if self.renewals.any() => {
                    if let Some(alarm) = self.renewed(renewed) {
                        return alarm;
                    }
                }
                renewal = async {
                    match self.claim.as_mut().and_then(|c| c.renewing.as_mut()) {
                        Some(renewing) => renewing.await,
                        None => std::future::pending().await,
                    }
                }, if claim_renewing => {
                    if let Some(alarm) = self.claim_renewed(renewal) {
                        return alarm;
                    }
                }
                _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    let now = Instant::now();
                    if let Some(c) = &mut self.claim
                        && claim_due.is_some_and(|at| at <= now)
                    {
                        let held = c.held.clone();
                        c.next = None;
                        c.renewing = Some(Box::pin(async move { held.renew().await }));
                    }
                    if heartbeat_due.is_some_and(|at| at <= now) {
                        self.schedule.sent(now);
                        let sent = Sent::default();
                        let attempt = self.reporter.heartbeat(self.token, self.max_yield, sent.clone());
                        self.heartbeats.launch(now, HEARTBEAT_HEDGE_AFTER, sent, attempt);
                    }
                    if let Some(lease) = self.lease
                        && renew_due.is_some_and(|at| at <= now)
                    {
                        self.next_renew = self.renew_every.map(|every| now + every);
                        // Renewals wait at no gate: sent as they start.
                        let sent = Sent::new(OnceLock::from(now));
                        self.renewals.launch(now, RENEW_HEDGE_AFTER, sent, lease.renew());
                    }
                }
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// Stop: no more heartbeats (any in flight are dropped), and renewals
    /// in flight are given a moment to land first, because a visibility
    /// change racing a release or a delete would undo it or fail.
    pub async fn finish(mut self) {
        self.heartbeats = Attempts::new();
        let renewals = async { while self.renewals.next_news().await.is_some() {} };
        let _ = tokio::time::timeout(FINISH_WAIT, renewals).await;
    }

    /// Act on a ledger renewal's answer. A claim taken over by another
    /// worker (its lease ended while renewals failed) raises
    /// [`Alarm::LeaseLost`]: that worker runs the task now.
    fn claim_renewed(&mut self, renewal: Renewal) -> Option<Alarm> {
        let c = self.claim.as_mut()?;
        c.renewing = None;
        let every = c.held.renew_every();
        c.next = match renewal {
            Renewal::Kept => Some(Instant::now() + every),
            // Soon: two more chances before a third of the lease is gone.
            Renewal::Failed => {
                self.labels.ledger_error("renew");
                Some(Instant::now() + every.min(CLAIM_RETRY))
            }
            Renewal::Lost if c.settling => None,
            Renewal::Lost => {
                self.claim = None;
                self.claim_lost = true;
                self.labels.ledger_claim_lost();
                tracing::warn!(
                    "this task's ledger claim was taken over by another worker (renewals failed for a whole lease): it runs there now; cancelling the handler here"
                );
                return Some(Alarm::LeaseLost);
            }
        };
        None
    }

    /// Act on a renewal's answer.
    fn renewed(&mut self, renewed: Renewed) -> Option<Alarm> {
        match renewed {
            Renewed::Kept => {
                self.renew_failures = 0;
                // A receipt that joined later (the message received again)
                // holds it now.
                self.lease_lost = false;
            }
            Renewed::Failed => {
                if let Some(every) = self.renew_every {
                    let retry = RENEW_RETRY
                        .saturating_mul(1 << self.renew_failures.min(8))
                        .min(RENEW_RETRY_MAX);
                    self.renew_failures += 1;
                    // Soon, but not later than the schedule had it (the
                    // failure may have been answered late).
                    let soon = Instant::now() + every.min(retry);
                    self.next_renew = Some(self.next_renew.map_or(soon, |at| at.min(soon)));
                }
            }
            Renewed::Lost => {
                // No receipt is renewed again, but the schedule goes on: a
                // delivery of the message that joins the task later (it was
                // received again) is renewed from then on. Renewing with no
                // receipt held makes no call.
                if !std::mem::replace(&mut self.lease_lost, true) && !self.settling {
                    LeaseLost {
                        labels: self.labels,
                    }
                    .emit();
                }
            }
        }
        self.lost_touch()
    }

    /// Whether SQS said no receipt of the task is this worker's any more
    /// (and none has joined since).
    pub fn lease_lost(&self) -> bool {
        self.lease_lost && !self.lease.is_some_and(|l| l.holds())
    }

    /// The lease is lost and the latest heartbeats failed: nothing says the
    /// task is still this worker's to finish.
    fn lost_touch(&self) -> Option<Alarm> {
        // Looked at again now: a delivery of the message may have joined
        // the task since the renewal that found no receipt held.
        let lost = self.lease_lost && !self.lease.is_some_and(|l| l.holds());
        (lost && self.heartbeat_failures >= LOST_TOUCH_AFTER && !self.settling)
            .then_some(Alarm::LeaseLost)
    }

    /// Act on a heartbeat's answer.
    fn answered(&mut self, result: Result<(), ApiError>, sent: Instant) -> Option<Alarm> {
        let e = match result {
            Ok(()) => {
                self.accepted = true;
                self.heartbeat_failures = 0;
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
        if e.kind != ApiErrorKind::Throttled {
            self.heartbeat_failures = self.heartbeat_failures.saturating_add(1);
        }
        let closed = match e.kind {
            ApiErrorKind::TaskClosed => true,
            ApiErrorKind::InvalidToken => self.accepted,
            // Lambda could not find the callback: closed if it knew it
            // before, or accepted calls for others (it is the right
            // Lambda); otherwise the worker may be pointed at the wrong
            // region or account, which the report will say loudly.
            ApiErrorKind::CallbackNotFound => self.accepted || self.reporter.reached_by(sent),
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
            self.heartbeats = Attempts::new();
            return Some(Alarm::Closed(e.code));
        }
        // Throttling and other transient failures are tried again soon;
        // access denied and the like wait for the interval (soon will not help).
        if e.kind == ApiErrorKind::Throttled || e.is_retryable() {
            self.schedule.failed(Instant::now());
        }
        self.lost_touch()
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What an attempt's answer can say beyond itself.
trait Answer {
    /// The answer of an attempt that got none (in time, or before a newer
    /// attempt took its place): a transient failure.
    fn no_answer() -> Self;
    /// News however late it comes: the task is closed (closed stays closed).
    fn final_news(&self) -> bool;
}

impl Answer for Result<(), ApiError> {
    fn no_answer() -> Self {
        Err(ApiError::new(
            ApiErrorKind::Transient,
            "NoAnswer",
            "no answer in time",
        ))
    }
    fn final_news(&self) -> bool {
        matches!(self, Err(e) if e.kind == ApiErrorKind::TaskClosed)
    }
}

impl Answer for Renewed {
    fn no_answer() -> Self {
        Renewed::Failed
    }
    fn final_news(&self) -> bool {
        false
    }
}

/// The attempts of one kind (heartbeats, renewals) in flight for a task.
///
/// Numbered so that only news counts: an attempt answering after a newer
/// one did says nothing newer (a late failure must not undo a later
/// success, nor a late success hide a later refusal). At most
/// [`MAX_ATTEMPTS_IN_FLIGHT`] are out: when another is due, the oldest is
/// given up (its request dropped), so hung calls never hold back the next
/// one. Dropping an earlier attempt when one is accepted would be wrong: the
/// newer one may be the only one still to reach the service.
struct Attempts<'a, T> {
    running: FuturesUnordered<BoxFuture<'a, (u64, Instant, T)>>,
    /// The attempts neither answered nor given up, oldest first, each with
    /// when its request left the worker (set by the call once it has).
    out: std::collections::VecDeque<(u64, Sent, tokio_util::sync::CancellationToken)>,
    made: u64,
    /// The newest attempt whose answer was taken.
    news: Option<u64>,
}

impl<'a, T: Answer + Send + 'a> Attempts<'a, T> {
    fn new() -> Self {
        Self {
            running: FuturesUnordered::new(),
            out: std::collections::VecDeque::new(),
            made: 0,
            news: None,
        }
    }

    /// Whether any attempt may still answer.
    fn any(&self) -> bool {
        !self.running.is_empty()
    }

    /// When a second attempt goes out beside an unanswered one: `after` the
    /// newest attempt's request left, if that one is still unanswered (an
    /// older one hanging after a newer was answered calls for nothing, and
    /// time spent waiting at the gate is not the service's silence).
    fn hedge_at(&self, after: Duration) -> Option<Instant> {
        let (n, sent, _) = self.out.back()?;
        (*n + 1 == self.made).then(|| sent.get().map(|at| *at + after))?
    }

    /// Send another attempt; `sent` is set by `call` when its request goes
    /// out. The oldest of [`MAX_ATTEMPTS_IN_FLIGHT`] out is given up first.
    fn launch(
        &mut self,
        now: Instant,
        hedge_after: Duration,
        sent: Sent,
        call: impl Future<Output = T> + Send + 'a,
    ) {
        if self.out.len() >= MAX_ATTEMPTS_IN_FLIGHT as usize
            && let Some((_, _, oldest)) = self.out.pop_front()
        {
            oldest.cancel();
        }
        let n = self.made;
        self.made += 1;
        let cancel = tokio_util::sync::CancellationToken::new();
        self.out.push_back((n, sent.clone(), cancel.clone()));
        // A backstop: an attempt is never waited on for longer than the
        // others out beside it would take to be given up.
        let limit = hedge_after * (MAX_ATTEMPTS_IN_FLIGHT + 1);
        self.running.push(Box::pin(async move {
            let answer = tokio::select! {
                biased;
                answer = tokio::time::timeout(limit, call) => answer.unwrap_or_else(|_| T::no_answer()),
                // Given up for a newer attempt: as good as no answer (so a
                // service that answers nothing still counts as failing).
                _ = cancel.cancelled() => T::no_answer(),
            };
            (n, sent.get().copied().unwrap_or(now), answer)
        }));
    }

    /// The next answer that is news, with when its attempt's request went
    /// out (`None`: none left to come).
    async fn next_news(&mut self) -> Option<(T, Instant)> {
        while let Some((n, sent, answer)) = self.running.next().await {
            self.out.retain(|(m, _, _)| *m != n);
            if self.news.is_some_and(|news| n < news) && !answer.final_news() {
                continue;
            }
            self.news = Some(self.news.map_or(n, |news| news.max(n)));
            return Some((answer, sent));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Beat = Result<(), ApiError>;
    const AFTER: Duration = Duration::from_secs(2);

    /// Review of issue 21: hedges counted from an attempt's launch went out
    /// while it still waited at the send gate (throttled: every attempt
    /// waits there), so a task's heartbeats multiplied. A hedge counts from
    /// when the newest attempt's request left, and only while it is
    /// unanswered.
    #[tokio::test(start_paused = true)]
    async fn a_hedge_counts_from_when_the_newest_request_left() {
        let mut a: Attempts<'static, Beat> = Attempts::new();
        let now = Instant::now();
        let sent = Sent::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<Beat>();
        a.launch(now, AFTER, sent.clone(), async move { rx.await.unwrap() });
        assert_eq!(a.hedge_at(AFTER), None, "still waiting at the gate");
        let left = now + Duration::from_secs(3);
        sent.set(left).unwrap();
        assert_eq!(a.hedge_at(AFTER), Some(left + AFTER));
        // A newer attempt answered: the older one hanging calls for nothing.
        let newer = Sent::new(OnceLock::from(left));
        a.launch(left, AFTER, newer, async { Ok(()) });
        assert!(a.next_news().await.unwrap().0.is_ok());
        assert_eq!(a.hedge_at(AFTER), None);
        drop(tx);
    }

    /// Review of issue 21: an attempt given up for a newer one used to say
    /// nothing, so a service that never answers never counted as failing
    /// (and a lost lease never became `LeaseLost`).
    #[tokio::test(start_paused = true)]
    async fn an_attempt_given_up_counts_as_no_answer() {
        let mut a: Attempts<'static, Beat> = Attempts::new();
        let now = Instant::now();
        for _ in 0..=MAX_ATTEMPTS_IN_FLIGHT {
            a.launch(now, AFTER, Sent::default(), std::future::pending());
        }
        let (answer, _) = a.next_news().await.expect("the oldest, given up");
        assert_eq!(answer.unwrap_err().code, "NoAnswer");
    }

    /// Closed stays closed: a late `TaskTimedOut` is news even after a
    /// newer attempt was accepted; a late failure of another kind is not.
    #[tokio::test(start_paused = true)]
    async fn a_late_closed_answer_is_still_news() {
        let mut a: Attempts<'static, Beat> = Attempts::new();
        let now = Instant::now();
        let (old_tx, old_rx) = tokio::sync::oneshot::channel::<Beat>();
        let (other_tx, other_rx) = tokio::sync::oneshot::channel::<Beat>();
        a.launch(
            now,
            AFTER,
            Sent::default(),
            async move { old_rx.await.unwrap() },
        );
        a.launch(now, AFTER, Sent::default(), async move {
            other_rx.await.unwrap()
        });
        a.launch(now, AFTER, Sent::default(), async { Ok(()) });
        assert!(a.next_news().await.unwrap().0.is_ok());
        other_tx
            .send(Err(ApiError::new(
                ApiErrorKind::Transient,
                "InternalFailure",
                "",
            )))
            .unwrap();
        old_tx
            .send(Err(ApiError::new(
                ApiErrorKind::TaskClosed,
                "TaskTimedOut",
                "",
            )))
            .unwrap();
        let (answer, _) = a.next_news().await.expect("the closed answer");
        assert_eq!(answer.unwrap_err().code, "TaskTimedOut");
    }
}
