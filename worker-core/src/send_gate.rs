//! The gate every `SendTask*` call passes: an optional process-wide rate limit
//! (`worker.send_task_rate_per_sec`), and priority for reports over
//! heartbeats within it.
//!
//! Why priority: the limit is one budget for every `SendTask*` call of the
//! process. When it is short, a delayed heartbeat costs nothing until the
//! state's `HeartbeatSeconds`, while a delayed report keeps a slot busy and
//! an execution waiting. So while a report waits for the rate limiter,
//! heartbeats wait for reports to go first.
//!
//! Why bounded: a heartbeat that waits too long is worse than a late report
//! (the task times out). A heartbeat yields at most `max_yield` (the runner
//! passes half its interval), and a report backing off after a 5xx is not
//! "waiting": it would hold every heartbeat in the process for its sleep.
//!
//! A throttle from the service does not make heartbeats yield: AWS throttles
//! `SendTaskSuccess`, `SendTaskFailure` and `SendTaskHeartbeat` each with a
//! bucket of its own, so a throttled report says nothing about the
//! heartbeats' budget, and slowing the reports to what the service accepts
//! is the pacer's job (`aws/pacing.rs`). Yielding for a second after every
//! throttle, as this gate once did, held every heartbeat back by half its
//! interval whenever throttles came often, and under 30% random throttling
//! one task in 300 timed out at `HeartbeatSeconds` (BENCHMARKS.md, issue 23).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often a waiting heartbeat looks again when nothing woke it.
const RECHECK: Duration = Duration::from_millis(50);

pub(crate) struct SendGate {
    limiter: Option<DefaultDirectRateLimiter>,
    reports_waiting: AtomicUsize,
    reports_done: Notify,
}

/// Held by a report while it waits for the rate limiter.
struct ReportWaiting<'a>(&'a SendGate);

impl Drop for ReportWaiting<'_> {
    fn drop(&mut self) {
        if self.0.reports_waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reports_done.notify_waiters();
        }
    }
}

impl SendGate {
    pub fn new(rate_per_sec: Option<NonZeroU32>) -> Self {
        Self {
            limiter: rate_per_sec.map(|r| RateLimiter::direct(Quota::per_second(r))),
            reports_waiting: AtomicUsize::new(0),
            reports_done: Notify::new(),
        }
    }

    /// Wait for a report's turn under the rate limit. While it waits,
    /// heartbeats yield to it.
    pub async fn report(&self) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        if limiter.check().is_ok() {
            return;
        }
        self.reports_waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = ReportWaiting(self);
        limiter.until_ready().await;
    }

    /// Wait for a heartbeat's turn: after waiting reports (for at most
    /// `max_yield`), within the rate.
    pub async fn heartbeat(&self, max_yield: Duration) {
        let stop_yielding = Instant::now() + max_yield;
        loop {
            let yielding = Instant::now() < stop_yielding;
            if yielding && self.reports_waiting.load(Ordering::Acquire) > 0 {
                let done = self.reports_done.notified();
                tokio::select! {
                    biased;
                    _ = done => {}
                    _ = tokio::time::sleep(RECHECK) => {}
                }
                continue;
            }
            match &self.limiter {
                None => return,
                Some(limiter) => match limiter.check() {
                    Ok(()) => return,
                    Err(_) => tokio::time::sleep(RECHECK).await,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_report_waiting_for_the_rate_limiter_counts_as_waiting() {
        // governor keeps its own clock, so this one runs in real time.
        let gate = Arc::new(SendGate::new(NonZeroU32::new(2)));
        gate.report().await;
        gate.report().await;
        let g = gate.clone();
        let report = tokio::spawn(async move { g.report().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !report.is_finished(),
            "the third report waits for the limiter"
        );
        assert_eq!(gate.reports_waiting.load(Ordering::Acquire), 1);
        report.await.unwrap();
        assert_eq!(gate.reports_waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_wait_while_a_report_waits() {
        let gate = Arc::new(SendGate::new(None));
        gate.reports_waiting.fetch_add(1, Ordering::AcqRel);
        let g = gate.clone();
        let hb = tokio::spawn(async move { g.heartbeat(LONG).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!hb.is_finished(), "the heartbeat yields to the report");
        drop(ReportWaiting(&gate));
        tokio::time::timeout(Duration::from_secs(1), hb)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_yields_at_most_its_bound() {
        let gate = Arc::new(SendGate::new(None));
        // A report stuck waiting forever (as if the limiter never refilled).
        gate.reports_waiting.fetch_add(1, Ordering::AcqRel);
        let start = Instant::now();
        gate.heartbeat(Duration::from_secs(2)).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_limit_a_report_never_marks_itself_waiting() {
        let gate = SendGate::new(None);
        gate.report().await;
        assert_eq!(gate.reports_waiting.load(Ordering::Acquire), 0);
        let start = Instant::now();
        gate.heartbeat(LONG).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
