//! When to heartbeat a running task.
//!
//! Each running task has one schedule and one timer (a `sleep_until` in its
//! runner, which costs nothing until it fires: no thread or loop per task).
//! The timer fires every `heartbeat_secs`; a handler's explicit
//! [`crate::TaskContext::heartbeat`] is coalesced with it: it is sent at once
//! unless one went out in the last [`MIN_GAP`], and every heartbeat sent
//! restarts the interval.

use std::time::Duration;

use tokio::time::Instant;

/// Explicit heartbeats closer together than this are merged.
pub(crate) const MIN_GAP: Duration = Duration::from_secs(1);
/// After a failed heartbeat (throttled, network), try again this soon (or at
/// the interval, if that is shorter): as soon as [`MIN_GAP`] allows. With
/// 40% of calls failing, a 15 s `HeartbeatSeconds` then sees a dozen
/// attempts, not six (six lost one task in a hundred in bench scenario 5h).
pub(crate) const RETRY_AFTER: Duration = MIN_GAP;

#[derive(Debug)]
pub(crate) struct HeartbeatSchedule {
    interval: Option<Duration>,
    next_timer: Option<Instant>,
    last_sent: Option<Instant>,
    requested: bool,
    stopped: bool,
}

impl HeartbeatSchedule {
    pub fn new(interval: Option<Duration>, now: Instant) -> Self {
        Self {
            interval,
            next_timer: interval.map(|i| now + i),
            last_sent: None,
            requested: false,
            stopped: false,
        }
    }

    /// When the next heartbeat is due, if one is.
    pub fn due_at(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let explicit = self
            .requested
            .then(|| self.last_sent.map(|t| t + MIN_GAP))
            .map(|at| at.unwrap_or_else(Instant::now));
        match (self.next_timer, explicit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The handler asked for a heartbeat at `now`. A heartbeat sent at or
    /// after the request already answers it.
    pub fn request(&mut self, now: Instant) {
        if self.last_sent.is_some_and(|sent| sent >= now) {
            return;
        }
        self.requested = true;
    }

    /// A heartbeat is being sent now.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.requested = false;
        self.next_timer = self.interval.map(|i| now + i);
    }

    /// A heartbeat sent failed with a retryable error (its answer may have
    /// come late): try again soon, but never later than the interval from
    /// the last one sent would have.
    pub fn failed(&mut self, now: Instant) {
        let retry = now + self.interval.map_or(RETRY_AFTER, |i| i.min(RETRY_AFTER));
        self.next_timer = Some(self.next_timer.map_or(retry, |t| t.min(retry)));
    }

    /// No more heartbeats (the task is closed).
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timer_fires_every_interval_from_the_last_heartbeat() {
        let t0 = Instant::now();
        let mut s = HeartbeatSchedule::new(Some(Duration::from_secs(10)), t0);
        assert_eq!(s.due_at(), Some(t0 + Duration::from_secs(10)));
        s.sent(t0 + Duration::from_secs(10));
        assert_eq!(s.due_at(), Some(t0 + Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn explicit_request_goes_now_and_restarts_the_timer() {
        let t0 = Instant::now();
        let mut s = HeartbeatSchedule::new(Some(Duration::from_secs(10)), t0);
        s.request(t0);
        assert_eq!(s.due_at(), Some(t0));
        let t3 = t0 + Duration::from_secs(3);
        s.sent(t3);
        assert_eq!(s.due_at(), Some(t0 + Duration::from_secs(13)));
        // A request the last heartbeat already answered is dropped.
        s.request(t3);
        assert_eq!(s.due_at(), Some(t0 + Duration::from_secs(13)));
        // A later one waits out the minimum gap.
        s.request(t3 + Duration::from_millis(10));
        assert_eq!(s.due_at(), Some(t3 + MIN_GAP));
    }

    #[tokio::test(start_paused = true)]
    async fn no_interval_means_only_explicit_heartbeats() {
        let t0 = Instant::now();
        let mut s = HeartbeatSchedule::new(None, t0);
        assert_eq!(s.due_at(), None);
        s.request(t0);
        assert_eq!(s.due_at(), Some(t0));
        s.sent(t0);
        assert_eq!(s.due_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_retries_soon_and_stop_ends_it() {
        let t0 = Instant::now();
        let mut s = HeartbeatSchedule::new(Some(Duration::from_secs(30)), t0);
        s.sent(t0);
        s.failed(t0);
        assert_eq!(s.due_at(), Some(t0 + RETRY_AFTER));
        // A failure answered late does not push the next one past the interval.
        let mut late = HeartbeatSchedule::new(Some(Duration::from_secs(2)), t0);
        late.sent(t0);
        late.failed(t0 + Duration::from_millis(1900));
        assert_eq!(late.due_at(), Some(t0 + Duration::from_secs(2)));
        s.stop();
        s.request(t0 + Duration::from_secs(1));
        assert_eq!(s.due_at(), None);
    }
}
