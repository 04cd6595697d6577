//! One task's life: run the handler in its own tokio task (so a panic fails
//! only this task), keep it alive (heartbeats, and the source's lease) until
//! it is settled, enforce its timeout and shutdown, then report and settle it.

mod keepalive;
pub(crate) mod lease;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::completion::Reporter;
use crate::config::{BindingPlan, LedgerUnreachable};
use crate::error_names;
use crate::handler::{CancelReason, Handler, TaskContext, TaskError, TaskSource};
use crate::ledger::{Decision, Held, Ledger};
use crate::metrics::{BindingLabels, LedgerClaim, Outcome, Saturation};
use crate::shutdown::ShutdownHandle;
use crate::slots::Slot;
use crate::trace::TraceContext;
use keepalive::{Alarm, KeepAlive};
use lease::{Lease, LeaseEnd};
use verdict::{Ending, deliver, verdict};

/// What a binding's tasks share.
pub(crate) struct Binding {
    pub name: Arc<str>,
    pub kind: Arc<str>,
    pub source: TaskSource,
    pub handler: Arc<dyn Handler>,
    pub heartbeat: Option<Duration>,
    pub timeout: Option<Duration>,
    pub traceparent_pointer: Option<Arc<str>>,
    pub labels: BindingLabels,
    /// Where the binding's results go (Step Functions, or durable callbacks).
    pub reporter: Arc<Reporter>,
    /// Whether tasks are claimed in the task ledger, and what to do when it
    /// cannot be reached.
    pub ledger: Option<LedgerUnreachable>,
}

impl Binding {
    /// A binding; its metric labels come from its name and source.
    pub fn new(plan: &BindingPlan, source: TaskSource, reporter: Arc<Reporter>) -> Self {
        let labels = BindingLabels::new(source.kind(), plan.name.clone(), plan.concurrency);
        if plan.ledger.is_some() {
            labels.ledger_on();
        }
        Self {
            name: plan.name.clone(),
            kind: plan.kind.clone(),
            source,
            handler: plan.handler.clone(),
            heartbeat: plan.heartbeat,
            timeout: plan.timeout,
            traceparent_pointer: plan.traceparent_pointer.clone(),
            labels,
            reporter,
            ledger: plan.ledger,
        }
    }
}

/// What every task shares.
pub(crate) struct Env {
    pub shutdown: ShutdownHandle,
    pub cancel_grace: Duration,
    /// Tasks running over the worker's slots.
    pub saturation: Saturation,
    /// The task ledger, for bindings that use it.
    pub ledger: Option<Arc<Ledger>>,
}

/// A task as the runner sees it, whatever its source.
pub(crate) struct Task {
    pub token: String,
    pub input: String,
    /// The delivery to keep alive and settle; `None` for activities.
    pub lease: Option<Arc<dyn Lease>>,
    /// The trace its carrier had (SQS's `AWSTraceHeader`).
    pub trace: Option<TraceContext>,
    /// Its place in a FIFO group: it runs after the task before it.
    pub turn: Option<Turn>,
}

/// A task's place in a FIFO message group: the messages of a group that
/// one receive returned run one after another, in order. Each is kept alive
/// (heartbeats and visibility) from receipt while it waits, like a running
/// task: its token's `HeartbeatSeconds` and its message's visibility run
/// from then on, whether or not its turn has come.
pub(crate) struct Turn {
    /// Answers when the task before ended: `true` if its message is gone
    /// (settled), so this one may run; `false` (or dropped) if it went back
    /// to the queue, so this one must go back too, or it would run out of order.
    pub wait: Option<oneshot::Receiver<bool>>,
    /// Told when this task ends.
    pub next: Option<oneshot::Sender<bool>>,
}

/// Run one task to its end; the slot is released when this returns.
pub(crate) async fn run_task(binding: Arc<Binding>, env: Arc<Env>, mut task: Task, slot: Slot) {
    let received = Instant::now();
    let fingerprint = crate::fingerprint(&task.token);
    // A `traceparent` in the input, where configured, wins: the sender put
    // it there on purpose; the attribute may be the queue's own sender's.
    if let Some(pointer) = &binding.traceparent_pointer
        && let Some(trace) = TraceContext::from_input(&task.input, pointer)
    {
        task.trace = Some(trace);
    }
    let span = tracing::info_span!(
        "task",
        source = binding.labels.source,
        binding = %binding.name,
        handler = %binding.kind,
        token = %fingerprint,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = &task.trace {
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        #[cfg(feature = "opentelemetry")]
        crate::trace::set_parent(&span, trace);
    }
    async move {
        binding.labels.task_received();
        tracing::debug!(input_bytes = task.input.len(), "task received");
        let next = task.turn.as_mut().and_then(|t| t.next.take());
        // In flight (and saturation) from when its turn comes: a FIFO
        // message waiting behind its group is held, not running.
        let running = Running {
            binding: &binding,
            env: &env,
            started: std::sync::atomic::AtomicBool::new(false),
        };
        let (outcome, end) = execute(&binding, &env, task, fingerprint, &running).await;
        if let Some(next) = next {
            // The next in the group runs only if this message is gone.
            let _ = next.send(end == LeaseEnd::Settled);
        }
        drop(running);
        let seconds = received.elapsed().as_secs_f64();
        binding.labels.task_completed(outcome, seconds);
        tracing::debug!(outcome = outcome.as_str(), seconds, "task ended");
        drop(slot);
    }
    .instrument(span)
    .await
}

/// A task counted as running (`tasks_in_flight`, saturation) from
/// [`Running::start`] until dropped.
struct Running<'a> {
    binding: &'a Binding,
    env: &'a Env,
    started: std::sync::atomic::AtomicBool,
}

impl Running<'_> {
    fn start(&self) {
        if !self
            .started
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.binding.labels.task_started();
            self.env.saturation.started();
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.started.load(std::sync::atomic::Ordering::Relaxed) {
            self.binding.labels.task_finished();
            self.env.saturation.finished();
        }
    }
}

/// Run the handler, report, and end the lease; returns the outcome and how
/// the lease ended.
async fn execute(
    binding: &Binding,
    env: &Env,
    task: Task,
    fingerprint: String,
    running: &Running<'_>,
) -> (Outcome, LeaseEnd) {
    let Task {
        token,
        input,
        lease,
        trace,
        turn,
    } = task;
    let mut keep = KeepAlive::new(
        &binding.reporter,
        &token,
        &binding.labels,
        binding.heartbeat,
        lease.as_deref(),
    );
    let settled = run_and_report(
        binding,
        env,
        &token,
        input,
        trace,
        turn,
        fingerprint,
        &mut keep,
        running,
    )
    .await;
    // Boxed, like `deliver`: no held task needs its state inline.
    Box::pin(end_lease(keep, lease.as_deref(), settled)).await
}

/// End the lease as `settled` says. A delete is made while the lease is
/// still renewed (it may be retried for a while); a release or a kept
/// message only once renewals have stopped (a renewal landing after a
/// release would hide the message again).
async fn end_lease(
    mut keep: KeepAlive<'_>,
    lease: Option<&dyn Lease>,
    settled: (Outcome, LeaseEnd),
) -> (Outcome, LeaseEnd) {
    let Some(lease) = lease else {
        keep.finish().await;
        return settled;
    };
    if settled.1 == LeaseEnd::Settled {
        keep.settling();
        let ending = lease.end(LeaseEnd::Settled);
        tokio::pin!(ending);
        loop {
            tokio::select! {
                biased;
                () = &mut ending => break,
                _alarm = keep.until_closed() => {}
            }
        }
        keep.finish().await;
    } else {
        keep.finish().await;
        lease.end(settled.1).await;
    }
    settled
}

/// Wait for the task's turn, run its handler, and report; the outcome and
/// how to end the lease.
///
/// A report (`deliver`) is boxed (see there): this future is sized by its
/// handler loop, where a held task spends its life.
#[allow(clippy::too_many_arguments)]
async fn run_and_report(
    binding: &Binding,
    env: &Env,
    token: &str,
    input: String,
    trace: Option<TraceContext>,
    turn: Option<Turn>,
    fingerprint: String,
    keep: &mut KeepAlive<'_>,
    running: &Running<'_>,
) -> (Outcome, LeaseEnd) {
    let releases = keep.lease().is_some_and(|l| l.release_on_shutdown());
    // FIFO: wait for the task before this one, kept alive meanwhile.
    if let Some(wait) = turn.and_then(|t| t.wait) {
        match wait_for_turn(env, keep, wait).await {
            TurnCame::Go => {}
            TurnCame::Closed(code) => {
                // Told the task is closed while it waited: nothing to run.
                // The report finds out for sure (LocalStack's word is not proof).
                tracing::info!(%code, "the service closed the task before its turn came; the handler is not run");
                let err = TaskError::new(
                    error_names::TASK_CLOSED,
                    "the service answered a heartbeat that the task is closed while it waited for its turn \
                     in its FIFO message group; the handler was not run",
                );
                return deliver(keep, token, verdict::Report::Failure(err), Outcome::Failed).await;
            }
            TurnCame::Back => {
                tracing::info!(
                    "the task before it in its FIFO group went back to the queue (or shutdown began): releasing this one too, to keep the order"
                );
                return (Outcome::Released, LeaseEnd::Release);
            }
            TurnCame::Lost => return (Outcome::LeaseLost, LeaseEnd::Release),
        }
    }
    running.start();
    if env.shutdown.cancelling().is_cancelled() {
        // Delivered after the grace period (a poll in flight at shutdown):
        // give it back, or fail it so a Retry runs it elsewhere.
        if releases {
            tracing::info!("task arrived after the shutdown grace period; releasing it");
            return (Outcome::Released, LeaseEnd::Release);
        }
        tracing::info!("task arrived after the shutdown grace period; failing it");
        let err = TaskError::new(
            error_names::SHUTTING_DOWN,
            "the worker was shutting down when this task arrived",
        );
        return deliver(
            keep,
            token,
            verdict::Report::Failure(err),
            Outcome::ShuttingDown,
        )
        .await;
    }

    // The fleet's ledger: run only what this worker claimed.
    let held = match claim(binding, env, token, keep).await {
        Claimed::Run(held) => held,
        Claimed::Skip(ended) => return ended,
    };
    if let Some(held) = &held {
        keep.hold_claim(held.clone());
    }

    let lease_deadline = keep.lease().and_then(|l| l.hard_deadline());
    let timeout_at = binding.timeout.map(|t| Instant::now() + t);
    let deadline = earliest(timeout_at, lease_deadline);
    let ctx = TaskContext::new(
        fingerprint,
        binding.source.clone(),
        binding.name.clone(),
        deadline,
        trace,
    );
    let handler = binding.handler.clone();
    let handler_ctx = ctx.clone();
    let mut join =
        tokio::spawn(async move { handler.call(input, handler_ctx).await }.in_current_span());

    let mut abandon_at: Option<Instant> = None;
    // Why the worker cancelled the task. Kept here, not read back from the
    // context: a handler may cancel its own context, and that must never
    // make the worker skip reporting.
    let mut reason: Option<CancelReason> = None;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    // The first reason wins; the handler gets `cancel_grace` from then.
    let cancel =
        |why: CancelReason, reason: &mut Option<CancelReason>, abandon_at: &mut Option<Instant>| {
            if reason.is_none() {
                *reason = Some(why);
                ctx.cancel(why);
                *abandon_at = Some(Instant::now() + env.cancel_grace);
            }
        };

    let ending = loop {
        tokio::select! {
            biased;
            result = &mut join => break Ending::Finished(result),
            _ = env.shutdown.abandoning().cancelled() => break Ending::Abandoned,
            _ = sleep_until(abandon_at.unwrap_or(far)), if abandon_at.is_some() => break Ending::Abandoned,
            _ = env.shutdown.cancelling().cancelled(), if reason.is_none() => {
                tracing::info!("shutdown grace period over; cancelling the handler");
                cancel(CancelReason::Shutdown, &mut reason, &mut abandon_at);
            }
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && reason.is_none() => {
                tracing::warn!(timeout_secs = binding.timeout.map(|t| t.as_secs()), "handler timed out; cancelling it");
                cancel(CancelReason::Timeout, &mut reason, &mut abandon_at);
            }
            // Heartbeats and renewals go on whatever the reason: a handler
            // winding down after a cancellation is still running.
            alarm = keep.until_closed() => match alarm {
                Alarm::Closed(_) => cancel(CancelReason::TaskClosed, &mut reason, &mut abandon_at),
                Alarm::LeaseLost => {
                    if reason.is_none() {
                        tracing::warn!("the message's lease is lost and heartbeats fail: cancelling the handler");
                    }
                    cancel(CancelReason::LeaseLost, &mut reason, &mut abandon_at);
                }
            },
            _ = ctx.heartbeat_requested() => keep.request_heartbeat(),
        }
    };
    if let Ending::Abandoned = ending {
        join.abort();
    }

    // The message lapsed (it may run on another worker now) and the worker
    // itself cut the run short: a `Worker.*` failure from here would only
    // cut the other run short too. A success, or the handler's own
    // failure, is still this run's result.
    let reason = match reason {
        // Or its ledger claim was taken over: the other worker runs it now.
        Some(CancelReason::Shutdown | CancelReason::Timeout)
            if keep.lease_lost() || keep.claim_lost() =>
        {
            Some(CancelReason::LeaseLost)
        }
        other => other,
    };
    let lease_expired = reason == Some(CancelReason::Timeout)
        && timeout_at.is_none_or(|t| lease_deadline.is_some_and(|l| l < t));
    match verdict(binding, env, reason, ending, releases, lease_expired, token) {
        // A handler's error may quote its input, which may hold the token.
        Ok((report, outcome)) => {
            let report = report.redacted(token);
            if let Some(held) = &held {
                Box::pin(settle_claim(binding, env, keep, held, &report, token)).await;
            }
            deliver(keep, token, report, outcome).await
        }
        Err(settled) => {
            if let Some(held) = &held {
                Box::pin(release_claim(binding, keep, held)).await;
            }
            settled
        }
    }
}

/// Once shutdown has given up on retrying, how long a settle still gets.
const SETTLE_AFTER_GIVING_UP: Duration = Duration::from_secs(5);

/// What the ledger says to do with a task.
enum Claimed {
    /// Run it (holding a claim, unless `fail_open` ran it without one).
    Run(Option<Arc<Held>>),
    /// Not run here: how it ended.
    Skip((Outcome, LeaseEnd)),
}

/// Claim the task in the ledger, if its binding uses one, keeping the task
/// alive meanwhile.
async fn claim(binding: &Binding, env: &Env, token: &str, keep: &mut KeepAlive<'_>) -> Claimed {
    let (Some(unreachable), Some(ledger)) = (binding.ledger, &env.ledger) else {
        return Claimed::Run(None);
    };
    // An alarm while the claim is made (it may retry for a while) is kept:
    // after a "closed" answer no more heartbeats go out to say it again.
    let mut alarm = None;
    let decision = {
        let claiming = ledger.claim(token);
        tokio::pin!(claiming);
        loop {
            tokio::select! {
                biased;
                decision = &mut claiming => break decision,
                raised = keep.until_closed() => {
                    // A closed task is the stronger news.
                    if alarm.is_none() || matches!(raised, Alarm::Closed(_)) {
                        alarm = Some(raised);
                    }
                }
            }
        }
    };
    let labels = &binding.labels;
    let leased = keep.lease().is_some();
    match decision
        .map_err(Decision::Unreachable)
        .unwrap_or_else(|d| d)
    {
        Decision::Run(held) => {
            let took_over = held.as_ref().is_some_and(|h| h.took_over);
            if took_over {
                tracing::warn!(
                    "took over the task's ledger claim from a worker whose lease had ended (it died or lost touch)"
                );
            }
            labels.ledger_claim(if took_over {
                LedgerClaim::TookOver
            } else {
                LedgerClaim::Won
            });
            run_unless_alarmed(binding, env, token, keep, held, alarm).await
        }
        Decision::HeldElsewhere(wait) => {
            labels.ledger_claim(LedgerClaim::HeldElsewhere);
            tracing::info!(
                wait_secs = wait.as_secs(),
                "another worker holds this task's ledger claim; not run here (an SQS message comes back once that claim would end)"
            );
            // An activity task is the holder's to report. A message is
            // kept out of sight until the claim would end, and looked at
            // again then: settled by then (dropped), or its holder died
            // (taken over). Back sooner, it would spend receives (and reach
            // a dead-letter queue's maxReceiveCount) for nothing.
            let end = if leased {
                LeaseEnd::Hide(wait)
            } else {
                LeaseEnd::Settled
            };
            Claimed::Skip((Outcome::Duplicate, end))
        }
        Decision::Completed(report) => {
            labels.ledger_claim(LedgerClaim::Completed);
            tracing::info!(
                "the ledger says this task was settled already; not run, its outcome is sent again"
            );
            // Counted as what it reports when it lands: the holder's own
            // report may have been lost, or be about to be refused as
            // closed because this one landed first (then that task is
            // counted closed, and this is the task's one counted report).
            let (outcome, end) = deliver(keep, token, report, Outcome::Succeeded).await;
            // Closed: the first report landed, as expected.
            let outcome = if outcome == Outcome::Cancelled {
                Outcome::Duplicate
            } else {
                outcome
            };
            Claimed::Skip((outcome, end))
        }
        Decision::Unreachable(e) => {
            labels.ledger_error("claim");
            if unreachable == LedgerUnreachable::FailOpen {
                labels.ledger_claim(LedgerClaim::RanWithout);
                tracing::warn!(code = %e.code, error = %crate::redact(&e.message, token),
                    "the task ledger could not be reached or refused the claim; running the task without one (fail_open)");
                return run_unless_alarmed(binding, env, token, keep, None, alarm).await;
            }
            labels.ledger_claim(LedgerClaim::HeldBack);
            tracing::warn!(code = %e.code, error = %crate::redact(&e.message, token),
                "the task ledger could not be reached or refused the claim; the task is not run (fail_closed)");
            if leased {
                return Claimed::Skip((Outcome::LedgerUnavailable, LeaseEnd::Keep));
            }
            let err = TaskError::new(
                error_names::LEDGER_UNAVAILABLE,
                "the worker could not reach its task ledger to claim this task, and the binding is \
                 fail_closed; the handler was not run",
            );
            Claimed::Skip(
                deliver(
                    keep,
                    token,
                    verdict::Report::Failure(err),
                    Outcome::LedgerUnavailable,
                )
                .await,
            )
        }
    }
}

/// Run the task holding `held`, unless an alarm came while it was claimed:
/// the task closed (then not run: its claim is settled with the
/// `Worker.TaskClosed` failure, which is reported in case the heartbeat's
/// word was wrong), or its message lapsed (not run; the claim released).
async fn run_unless_alarmed(
    binding: &Binding,
    env: &Env,
    token: &str,
    keep: &mut KeepAlive<'_>,
    held: Option<Arc<Held>>,
    alarm: Option<Alarm>,
) -> Claimed {
    match alarm {
        None => Claimed::Run(held),
        Some(Alarm::Closed(code)) => {
            tracing::info!(%code, "the service closed the task while it was being claimed; the handler is not run");
            let err = TaskError::new(
                error_names::TASK_CLOSED,
                "the service answered a heartbeat that the task is closed while the worker \
                 claimed it in its task ledger; the handler was not run",
            );
            let report = verdict::Report::Failure(err);
            if let Some(held) = &held {
                Box::pin(settle_claim(binding, env, keep, held, &report, token)).await;
            }
            Claimed::Skip(deliver(keep, token, report, Outcome::Failed).await)
        }
        Some(Alarm::LeaseLost) => {
            if let Some(held) = &held {
                Box::pin(release_claim(binding, keep, held)).await;
            }
            Claimed::Skip((Outcome::LeaseLost, LeaseEnd::Release))
        }
    }
}

/// Mark the task `COMPLETED` in the ledger before its report goes out, so a
/// copy arriving later sends this outcome again instead of running it. The
/// claim is renewed until that lands. If it fails, the report is sent all
/// the same (a late copy may then run again, counted); once shutdown gives
/// up on retrying, the report goes at once.
async fn settle_claim(
    binding: &Binding,
    env: &Env,
    keep: &mut KeepAlive<'_>,
    held: &Held,
    report: &verdict::Report,
    token: &str,
) {
    keep.settling_claim();
    let settling = held.settle(report, token);
    tokio::pin!(settling);
    // Once shutdown has given up, one call's time (not its retries): the
    // settle is tried at least once.
    let gave_up = env.shutdown.giving_up().clone();
    let last_chance = gave_up
        .is_cancelled()
        .then(|| Instant::now() + SETTLE_AFTER_GIVING_UP);
    let settled = loop {
        tokio::select! {
            biased;
            settled = &mut settling => break Some(settled),
            () = gave_up.cancelled(), if last_chance.is_none() => break None,
            () = sleep_until(last_chance.unwrap_or_else(Instant::now)), if last_chance.is_some() => break None,
            _alarm = keep.until_closed() => {}
        }
    };
    keep.drop_claim();
    match settled {
        Some(Ok(true)) => {}
        Some(Ok(false)) => {
            if !keep.claim_lost() {
                binding.labels.ledger_claim_lost();
            }
            tracing::warn!(
                "this task's ledger claim was taken over by another worker while it ran (renewals failed for a whole lease); reporting all the same"
            );
        }
        Some(Err(e)) => {
            binding.labels.ledger_error("settle");
            tracing::error!(code = %e.code, error = %e.message,
                "could not mark the task completed in the ledger; reporting all the same (a later copy may run again)");
        }
        None => {
            binding.labels.ledger_error("settle");
            tracing::warn!(
                "shutdown gave up on marking the task completed in the ledger; reporting it now"
            );
        }
    }
}

/// Give the claim up: the task goes back (shutdown, lost lease) and its
/// next delivery should run at once, not wait for the lease to end. The
/// task is kept alive meanwhile.
async fn release_claim(binding: &Binding, keep: &mut KeepAlive<'_>, held: &Held) {
    keep.drop_claim();
    let releasing = held.release();
    tokio::pin!(releasing);
    let released = loop {
        tokio::select! {
            biased;
            released = &mut releasing => break released,
            _alarm = keep.until_closed() => {}
        }
    };
    if let Err(e) = released {
        binding.labels.ledger_error("release");
        tracing::warn!(code = %e.code, error = %e.message,
            "could not release the task's ledger claim; its next delivery waits for the lease to end");
    }
}

/// How waiting for a FIFO turn ended.
enum TurnCame {
    /// Run it.
    Go,
    /// A heartbeat said the task is closed (and the turn came).
    Closed(String),
    /// Release it: the task before went back, or shutdown began.
    Back,
    /// Its message lapsed and heartbeats fail: leave it.
    Lost,
}

async fn wait_for_turn(
    env: &Env,
    keep: &mut KeepAlive<'_>,
    mut wait: oneshot::Receiver<bool>,
) -> TurnCame {
    let mut closed: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            go = &mut wait => {
                return match (go, closed) {
                    (Ok(true), Some(code)) => TurnCame::Closed(code),
                    // Its message lapsed while it waited: it may be running
                    // elsewhere already, out of order. The ones after it go
                    // back (this one has no receipt left to give back).
                    (Ok(true), None) if keep.lease_lost() => TurnCame::Lost,
                    (Ok(true), None) => TurnCame::Go,
                    _ => TurnCame::Back,
                };
            }
            // Not started yet: give it back at once, with the later ones.
            _ = env.shutdown.draining().cancelled() => return TurnCame::Back,
            alarm = keep.until_closed() => match alarm {
                // Its place in the order is kept: the ones after it wait
                // for the ones before it, not for it.
                Alarm::Closed(code) => closed = Some(code),
                Alarm::LeaseLost => return TurnCame::Lost,
            },
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
