//! The gate every `SendTask*` call passes: an optional process-wide rate limit
//! (`worker.send_task_rate_per_sec`), and priority for reports over
//! heartbeats when calls are scarce.
//!
//! Why priority: Step Functions throttles `SendTask*` per account. When the
//! budget is short, a delayed heartbeat costs nothing until the state's
//! `HeartbeatSeconds`, while a delayed report keeps a slot busy and an
//! execution waiting. So while any report waits for the limiter or backs off
//! from throttling, heartbeats wait for it to go first.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

/// After a throttled answer, how long heartbeats yield to reports.
const THROTTLE_WINDOW: Duration = Duration::from_secs(1);
/// How often a waiting heartbeat looks again when nothing woke it.
const RECHECK: Duration = Duration::from_millis(50);

pub(crate) struct SendGate {
    limiter: Option<DefaultDirectRateLimiter>,
    reports_waiting: AtomicUsize,
    reports_done: Notify,
    throttled_until: Mutex<Option<Instant>>,
}

/// Held by a report while it waits for its turn (limiter or backoff).
pub(crate) struct ReportWaiting<'a>(&'a SendGate);

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
            throttled_until: Mutex::new(None),
        }
    }

    /// Mark a report as waiting until the guard drops (covers its backoff
    /// sleeps too, so heartbeats keep yielding while it retries).
    pub fn report_waiting(&self) -> ReportWaiting<'_> {
        self.reports_waiting.fetch_add(1, Ordering::AcqRel);
        ReportWaiting(self)
    }

    /// Wait for a report's turn.
    pub async fn report(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Wait for a heartbeat's turn: after every waiting report, within the rate.
    pub async fn heartbeat(&self) {
        loop {
            if self.reports_waiting.load(Ordering::Acquire) > 0 || self.throttled() {
                let done = self.reports_done.notified();
                tokio::select! {
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

    /// Record a throttled answer from the service.
    pub fn throttled_by_service(&self) {
        let mut until = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *until = Some(Instant::now() + THROTTLE_WINDOW);
    }

    fn throttled(&self) -> bool {
        let until = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeats_wait_while_a_report_waits() {
        let gate = std::sync::Arc::new(SendGate::new(None));
        let waiting = gate.report_waiting();
        let g = gate.clone();
        let hb = tokio::spawn(async move { g.heartbeat().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !hb.is_finished(),
            "heartbeat must yield to the waiting report"
        );
        drop(waiting);
        tokio::time::timeout(Duration::from_secs(1), hb)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_yield_for_a_while_after_throttling() {
        let gate = SendGate::new(None);
        gate.throttled_by_service();
        let start = Instant::now();
        gate.heartbeat().await;
        assert!(start.elapsed() >= THROTTLE_WINDOW);
    }
}
