//! Congestion control: the process's calls to each AWS operation paced to
//! what the service accepts, as the AWS SDKs' *adaptive* retry mode does.
//!
//! AWS throttles per account, Region and API with token buckets. A
//! throttling answer says "slower"; a 5xx, a reset or a timeout does not
//! (those are retried at once, by the caller's short backoff). So one
//! [`Pacer`] per process keeps, per operation, a send rate that is
//! unlimited until the service throttles, then cut multiplicatively to just
//! under the rate it accepted and raised additively while calls go through
//! (AIMD: a fleet of workers sharing one bucket converges on fair shares).
//!
//! Telling congestion from noise: a throttle that does not depend on how
//! fast we call (a fault, a neighbour's burst) would cut the rate for
//! nothing, again and again. So a cut is a probe: if the throttled share of
//! calls does not fall in the next window, the throttling is independent of
//! our rate; the cut is undone and that share becomes the baseline that
//! later windows are compared with. Only throttling above the baseline (by
//! more than chance explains) cuts the rate.
//!
//! What is paced: the calls that settle a task (`SendTaskSuccess`,
//! `SendTaskFailure`, `DeleteMessageBatch`, a durable callback's success and
//! failure), whose number grows with throughput. Not paced: keep-alive calls
//! (`SendTaskHeartbeat`, `ChangeMessageVisibilityBatch`, durable heartbeats),
//! which have a deadline (the state's `HeartbeatSeconds`, the message's
//! visibility) and go out as soon as they are due, ahead of anything paced;
//! and polls, which capacity already bounds and which must not wait past the
//! start of a shutdown. Those are retried with the callers' own backoff.
//! Callers of a paced operation are never dropped while they wait (reports
//! and batch sends run to their end), so no reserved turn is wasted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    ActivityTask, ApiError, ApiErrorKind, BatchEntry, CompletionTarget, EntryResult, Message,
    Operation, ReceiveRequest, SfnApi, SqsApi, TargetOperations,
};

/// How long the throttled share of calls is measured before it is judged.
const WINDOW: Duration = Duration::from_millis(500);
/// Fewer calls than this in a window say too little: it is stretched (up
/// to [`MAX_WINDOW`]) until they arrive, and judged only if they do. So an
/// operation is paced only at 25 calls per second or more: fewer are not
/// what empties a bucket, their retries' own backoff is enough for them,
/// and a share measured on fewer is mostly noise.
const MIN_CALLS: u32 = 50;
const MAX_WINDOW: Duration = Duration::from_secs(2);
/// A cut leaves the rate this far under what the service accepted.
const CUT_MARGIN: f64 = 0.95;
/// Per second while the limit holds calls back, the limit grows by this
/// share of the rate it was cut to (TCP's additive increase, scaled).
const INCREASE: f64 = 0.05;
/// Fewer throttled calls than this in a window are not acted on (the
/// retries' own backoff is enough for them).
const MIN_THROTTLED: u32 = 5;
/// Throttling above the baseline by less than this is not acted on.
const MIN_EXCESS: f64 = 0.02;
/// After a probe, a throttled share still above this part of the share
/// that caused it means the throttling does not follow our rate.
const STILL_THROTTLED: f64 = 0.6;
/// How many windows' shares the baseline looks back on.
const RECENT: usize = 8;
/// A throttled share above this is never taken for independent of the
/// rate: a service refusing most calls whatever the pace is congested.
const MAX_BASELINE: f64 = 0.5;
/// The lowest limit: enough calls for a window to be judged (so the
/// limit can still grow).
const MIN_RATE: f64 = MIN_CALLS as f64 / 2.0;

/// The operations paced (see the module's documentation), each with a lane.
const PACED: [Operation; 5] = [
    Operation::SendTaskSuccess,
    Operation::SendTaskFailure,
    Operation::DeleteMessageBatch,
    Operation::SendDurableExecutionCallbackSuccess,
    Operation::SendDurableExecutionCallbackFailure,
];

/// A cut waiting for the next window to confirm it.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The throttled share that caused it.
    share: f64,
    /// How many calls that share was measured on.
    calls: f64,
    /// The limit before it.
    before: Option<f64>,
    /// The first window after a cut still carries calls paced before it
    /// (and a bucket still empty): it is skipped, not judged.
    settled: bool,
}

/// One operation's pace.
#[derive(Debug)]
struct Lane {
    /// Calls per second; `None` until the service throttles.
    limit: Option<f64>,
    /// When the next call may go (pacing by spacing, so waiting callers
    /// are served in turn without waking together).
    next: Instant,
    /// Cuts made (for the tests).
    cuts: u32,
    /// Bumped by every change of the limit: callers that reserved a turn at the old pace
    /// take a new one at the new pace (with hundreds waiting, the old
    /// turns would go on for seconds at the rate just found too fast).
    generation: u64,
    window_start: Instant,
    sent: u32,
    throttled: u32,
    /// The throttled share that does not depend on our rate, as the last
    /// probe found it (until [`RECENT`] windows tell it better).
    baseline: f64,
    /// The throttled shares of the last windows judged.
    recent: std::collections::VecDeque<f64>,
    probe: Option<Probe>,
    /// The limit of the last confirmed cut: the scale of the increase.
    cut_to: f64,
}

impl Lane {
    fn new(now: Instant) -> Self {
        Self {
            limit: None,
            next: now,
            generation: 0,
            cuts: 0,
            window_start: now,
            sent: 0,
            throttled: 0,
            baseline: 0.0,
            recent: std::collections::VecDeque::with_capacity(RECENT),
            probe: None,
            cut_to: 0.0,
        }
    }

    /// The time this call may go, reserved, and the pace's generation.
    fn reserve(&mut self, now: Instant) -> (Instant, u64) {
        let Some(rate) = self.limit else {
            return (now, self.generation);
        };
        let at = self.next.max(now);
        self.next = at + Duration::from_secs_f64(1.0 / rate);
        (at, self.generation)
    }

    /// Count an answer; judge the window when it is complete. Returns the
    /// new limit when it changed.
    fn answered(&mut self, throttled: bool, now: Instant) -> Option<Option<f64>> {
        self.sent += 1;
        self.throttled += u32::from(throttled);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW || (self.sent < MIN_CALLS && elapsed < MAX_WINDOW) {
            return None;
        }
        let before = self.limit;
        self.judge(elapsed.as_secs_f64());
        let changed = self.limit != before;
        if changed {
            // The turns reserved so far are taken again at the new pace,
            // from now (sooner if it rose, later if it was cut).
            self.generation += 1;
            self.next = now;
        }
        self.window_start = now;
        self.sent = 0;
        self.throttled = 0;
        changed.then_some(self.limit)
    }

    fn judge(&mut self, secs: f64) {
        if self.sent < MIN_CALLS {
            // A window stretched to its longest without enough calls: too
            // few to be what empties a bucket, too few to judge by. A pace
            // that little demand, none of it throttled, does not need ends
            // (a burst later must not meet a limit learned long ago).
            if self.throttled == 0 && self.probe.is_none() {
                self.limit = None;
            }
            return;
        }
        let n = f64::from(self.sent);
        let share = f64::from(self.throttled) / n;
        let rate = n / secs;
        // Throttling the calmest recent windows saw too is not ours to
        // cause: a bucket we empty refills while we slow down, and the
        // windows after a cut see next to none of it. Until there are
        // enough windows, the probes' finding stands.
        let baseline = if self.recent.len() == RECENT {
            let mut shares: Vec<f64> = self.recent.iter().copied().collect();
            shares.sort_by(f64::total_cmp);
            let calm = &shares[..RECENT / 2];
            (calm.iter().sum::<f64>() / calm.len() as f64).min(MAX_BASELINE)
        } else {
            self.baseline
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(share);
        // What chance alone makes of the baseline share in n calls.
        let b = baseline.max(0.01);
        let noise = 3.0 * (b * (1.0 - b) / n).sqrt();
        let excess = share - baseline;
        let congested = excess > noise.max(MIN_EXCESS) && self.throttled >= MIN_THROTTLED;
        if let Some(probe) = &mut self.probe
            && !probe.settled
        {
            probe.settled = true;
            return;
        }
        if let Some(probe) = self.probe.take() {
            // Did the throttled share fall with the rate, by more than
            // chance makes of two windows' shares?
            let spread = (probe.share * (1.0 - probe.share) / probe.calls
                + share * (1.0 - share) / n)
                .sqrt();
            let fell = probe.share - share > 2.0 * spread && share < probe.share * STILL_THROTTLED;
            if !fell && share <= MAX_BASELINE {
                // Slower, and throttled as much: not congestion (as far as
                // one window tells). Unpaced before: unpaced again. Paced
                // before (congestion was found once): halfway back, since
                // a bucket's share falls less than it rose when random
                // throttling is mixed in.
                self.baseline = share;
                self.limit = match (probe.before, self.limit) {
                    (Some(before), Some(cut)) => Some((before + cut) / 2.0),
                    (before, _) => before,
                };
                if let Some(limit) = self.limit {
                    self.cut_to = limit;
                }
            } else if congested {
                // Still over what the service takes: cut deeper (and if
                // that does not help, come back to this step).
                self.cut(rate, share, excess, self.limit);
            } else if let Some(limit) = self.limit {
                self.cut_to = limit;
            }
            return;
        }
        if congested {
            self.cut(rate, share, excess, self.limit);
            return;
        }
        if let Some(limit) = self.limit
            && rate >= 0.8 * limit
        {
            self.limit = Some(limit + (self.cut_to * INCREASE).max(1.0) * secs);
        }
    }

    /// Pace to just under the rate the service accepted (less the
    /// independent share), and see in the next window whether that helped.
    fn cut(&mut self, rate: f64, share: f64, excess: f64, before: Option<f64>) {
        let accepted = rate * (1.0 - excess);
        self.probe = Some(Probe {
            share,
            calls: f64::from(self.sent),
            before,
            settled: false,
        });
        let limit = (accepted * CUT_MARGIN).max(MIN_RATE);
        self.limit = Some(self.limit.map_or(limit, |l| l.min(limit)));
        self.cuts += 1;
    }
}

/// The process's pace for every operation. Shared by all its tasks.
#[derive(Debug)]
pub(crate) struct Pacer {
    lanes: HashMap<Operation, Mutex<Lane>>,
    /// Wakes the waiting callers when a pace changes (they take new turns).
    changed: tokio::sync::Notify,
}

impl Pacer {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            lanes: PACED
                .iter()
                .map(|op| (*op, Mutex::new(Lane::new(now))))
                .collect(),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lane(&self, op: Operation) -> Option<std::sync::MutexGuard<'_, Lane>> {
        self.lanes
            .get(&op)
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Wait for `op`'s turn.
    async fn turn(&self, op: Operation) {
        loop {
            let now = Instant::now();
            let Some((at, generation)) = self.lane(op).map(|mut lane| lane.reserve(now)) else {
                return;
            };
            if at <= now {
                return;
            }
            let changed = self.changed.notified();
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = changed => {}
            }
            if self
                .lane(op)
                .is_none_or(|lane| lane.generation == generation)
            {
                return;
            }
        }
    }

    fn answered(&self, op: Operation, throttled: bool) {
        let changed = match self.lane(op) {
            Some(mut lane) => lane.answered(throttled, Instant::now()),
            None => None,
        };
        if let Some(limit) = changed {
            self.changed.notify_waiters();
            crate::metrics::call_rate_limit(op, limit);
            match limit {
                Some(rate) => {
                    tracing::debug!(operation = %op, limit = rate, "throttled: pacing calls")
                }
                None => {
                    tracing::debug!(operation = %op, "throttling does not follow the call rate: not pacing")
                }
            }
        }
    }

    /// Make one call to `op` at its pace, and learn from the answer.
    pub async fn call<T, F>(&self, op: Operation, call: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        if !PACED.contains(&op) {
            return call.await;
        }
        self.turn(op).await;
        let result = call.await;
        let throttled = matches!(&result, Err(e) if e.kind == ApiErrorKind::Throttled);
        self.answered(op, throttled);
        result
    }

    /// The current limit of `op` (calls per second), if it is paced.
    #[cfg(test)]
    fn limit(&self, op: Operation) -> Option<f64> {
        self.lane(op).and_then(|l| l.limit)
    }
}

/// A client whose calls go through a [`Pacer`].
pub(crate) struct Paced<C: ?Sized> {
    pub pacer: std::sync::Arc<Pacer>,
    pub inner: std::sync::Arc<C>,
}

#[async_trait]
impl SfnApi for Paced<dyn SfnApi> {
    async fn get_activity_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, ApiError> {
        let call = self.inner.get_activity_task(activity_arn, worker_name);
        self.pacer.call(Operation::GetActivityTask, call).await
    }
    async fn send_task_success(&self, token: &str, output: &str) -> Result<(), ApiError> {
        let call = self.inner.send_task_success(token, output);
        self.pacer.call(Operation::SendTaskSuccess, call).await
    }
    async fn send_task_failure(
        &self,
        token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        let call = self.inner.send_task_failure(token, error, cause);
        self.pacer.call(Operation::SendTaskFailure, call).await
    }
    async fn send_task_heartbeat(&self, token: &str) -> Result<(), ApiError> {
        let call = self.inner.send_task_heartbeat(token);
        self.pacer.call(Operation::SendTaskHeartbeat, call).await
    }
    async fn describe_activity(&self, activity_arn: &str) -> Result<(), ApiError> {
        self.inner.describe_activity(activity_arn).await
    }
}

#[async_trait]
impl SqsApi for Paced<dyn SqsApi> {
    async fn receive(&self, request: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError> {
        let call = self.inner.receive(request);
        self.pacer.call(Operation::ReceiveMessage, call).await
    }
    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let call = self.inner.change_visibility_batch(queue_url, entries);
        self.pacer
            .call(Operation::ChangeMessageVisibilityBatch, call)
            .await
    }
    async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let call = self.inner.delete_batch(queue_url, entries);
        self.pacer.call(Operation::DeleteMessageBatch, call).await
    }
    async fn check_queue(&self, queue_url: &str) -> Result<(), ApiError> {
        self.inner.check_queue(queue_url).await
    }
}

#[async_trait]
impl CompletionTarget for Paced<dyn CompletionTarget> {
    fn operations(&self) -> TargetOperations {
        self.inner.operations()
    }
    fn permissions(&self) -> &'static str {
        self.inner.permissions()
    }
    async fn succeed(&self, token: &str, output: &str) -> Result<(), ApiError> {
        let op = self.inner.operations().success;
        self.pacer.call(op, self.inner.succeed(token, output)).await
    }
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        let op = self.inner.operations().failure;
        self.pacer
            .call(op, self.inner.fail(token, error, cause))
            .await
    }
    async fn heartbeat(&self, token: &str) -> Result<(), ApiError> {
        let op = self.inner.operations().heartbeat;
        self.pacer.call(op, self.inner.heartbeat(token)).await
    }
}

#[cfg(test)]
mod tests;
