//! How long to wait before trying an AWS call again, one policy per kind of
//! call: a few immediate retries, then exponential with jitter (so a fleet
//! that failed together does not retry together). The worker's have no
//! count limit: what ends a retry loop is the task's or the worker's life,
//! not a number of attempts. The workflows client, which a person or a
//! script waits on, has one (`workflows.max_retries`). Which errors are
//! worth a retry is [`super::ApiError::is_retryable`]'s answer.
//!
//! The worker's first [`QUICK_RETRIES`] retries go at once, and the next
//! ones start short (20 ms): a 5xx, a reset or a throttle that does not
//! follow the call rate is independent of the next attempt, and waiting
//! only loses time (with tasks of milliseconds, a slot held 30 ms longer by
//! every tenth call costs a third of the throughput; with 40% of calls
//! failing, two failures in a row are common, four are not). Congestion is
//! not this module's job: the process's [`super::pacing::Pacer`] slows
//! each operation to what the service accepts, whatever the loops do. A
//! run of failures (a service down, a wrong endpoint) still backs off
//! exponentially.

use std::iter::{Chain, RepeatN};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Failures in a row retried at once, before any delay: under independent
/// failures of 40% of calls, 2.6% of calls see more; a service that is
/// down (every call failing) is then backed off from.
pub(crate) const QUICK_RETRIES: u32 = 3;

/// Failures of one call retried at once while the service accepts most
/// other calls of its kind meanwhile ([`Retries`]): at 40% independent
/// failures, 16 in a row happen to one call in 2.3 million. Past them, a
/// call that keeps failing alone takes its backoff from its start (the
/// [`QUICK_RETRIES`], then 20 ms doubling).
pub(crate) const PROMPT_RETRIES: u32 = 16;

/// One call's retry delays, told apart by what the service did meanwhile.
/// When it accepted more calls of the same kind (other tasks' reports, or
/// deletes of the same queue) than it failed while this one was out, the
/// failure was this call's alone (a 5xx, a throttle that does not follow
/// the rate) and the next attempt is as likely to land as any: retried at
/// once, without climbing the backoff. Climbing it put a 6.5 s tail on one
/// task in 30,000 under 40% random failures, and the slowest task sets
/// when a backlog is done (BENCHMARKS.md, issue 23). When most calls fail
/// (an outage, a service accepting a trickle), or this call keeps failing
/// alone past [`PROMPT_RETRIES`], the backoff's delays apply. Congestion is
/// the pacer's to slow, whatever the loops do.
pub(crate) struct Retries<I> {
    delays: I,
    prompt: u32,
}

/// Calls of one kind answered, process-wide: what [`Retries`] reads to
/// tell a failure of one call from a failing service.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    accepted: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// [`Answers`] as one call found them when it went out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    accepted: u64,
    failed: u64,
}

impl Answers {
    pub fn mark(&self) -> Mark {
        use std::sync::atomic::Ordering::Relaxed;
        Mark {
            accepted: self.accepted.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    pub fn accepted(&self, n: u64) {
        self.accepted
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// `n` calls failed; whether they failed alone: since `mark`, the
    /// service accepted more calls of this kind than it failed (these
    /// `n` and the caller's own accepted ones not counted).
    pub fn failed(&self, since: Mark, own_accepted: u64, n: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.mark();
        self.failed.fetch_add(n, Relaxed);
        let accepted = now.accepted - since.accepted - own_accepted;
        let failed = now.failed - since.failed;
        accepted > failed
    }
}

impl<I: Iterator<Item = Duration>> Retries<I> {
    pub fn new(delays: I) -> Self {
        Self { delays, prompt: 0 }
    }

    /// The delay before the next attempt. `alone`: most calls of the same
    /// kind landed while this one failed (what `Answers::failed` returns).
    pub fn next(&mut self, alone: bool) -> Option<Duration> {
        if alone && self.prompt < PROMPT_RETRIES {
            self.prompt += 1;
            return Some(Duration::ZERO);
        }
        self.delays.next()
    }
}

/// Delays that start with `quick` immediate retries, then `delays`.
type QuickFirst = Chain<RepeatN<Duration>, ExponentialBackoff>;

fn quick_first(quick: u32, delays: ExponentialBackoff) -> QuickFirst {
    std::iter::repeat_n(Duration::ZERO, quick as usize).chain(delays)
}

fn exponential(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Delays between failed polls (`GetActivityTask`, `ReceiveMessage`) after
/// the quick retries: from 20 ms to 30 s. Reset after
/// every successful poll.
fn poll() -> ExponentialBackoff {
    exponential(Duration::from_millis(20), Duration::from_secs(30))
}

/// A poll loop's retry state: the delay before polling again after a
/// failure ([`poll`]'s policy, started over by any answer) and how many
/// polls in a row have failed (which decides how loudly a failure is logged).
pub(crate) struct PollBackoff {
    delays: QuickFirst,
    failures: u32,
}

impl PollBackoff {
    pub fn new() -> Self {
        Self {
            delays: quick_first(QUICK_RETRIES, poll()),
            failures: 0,
        }
    }

    /// A poll was answered (a task, or nothing after the long poll's wait).
    pub fn answered(&mut self) {
        *self = Self::new();
    }

    /// A poll failed: how long to wait, and the failures in a row, this one
    /// included.
    pub fn failed(&mut self) -> (Duration, u32) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.delays.next().unwrap_or(Duration::from_secs(30));
        (delay, self.failures)
    }
}

/// A report is retried for as long as the task can be kept alive, so what
/// matters is how many attempts fit before shutdown gives up (a report that
/// fails ten times in a row is likely to see its worker stop first): one
/// report is retried at once a few times, then waits from 20 ms up to 2 s
/// (4 s with jitter) between attempts.
/// Keeping a process under the account's `SendTask*` quota is the job of
/// the pacer (and `send_task_rate_per_sec`), not of one report's backoff.
pub(crate) fn report() -> impl Iterator<Item = Duration> {
    quick_first(
        QUICK_RETRIES,
        exponential(Duration::from_millis(20), Duration::from_secs(2)),
    )
}

/// Delays between attempts to delete a settled message: none for the
/// first retry, then from 20 ms to 1 s,
/// so that a delete lands well within the visibility the lease can still
/// keep (the lease renews while it retries).
pub(crate) fn delete() -> impl Iterator<Item = Duration> {
    // One quick retry only: `settle` makes at least three attempts even
    // after shutdown gave up, and they must span more than a blip.
    quick_first(
        1,
        exponential(Duration::from_millis(20), Duration::from_secs(1)),
    )
}

/// Delays between tries of one workflows-client call: from 200 ms to 5 s,
/// at most `max_retries` of them.
pub(crate) fn request(max_retries: u32) -> impl Iterator<Item = Duration> {
    exponential(Duration::from_millis(200), Duration::from_secs(5))
        .take(usize::try_from(max_retries).unwrap_or(usize::MAX))
}

/// Delays between looks at a running execution (`wait`): 200 ms doubling
/// to 5 s, without jitter (one client's schedule, nothing to spread out),
/// for as long as the caller waits.
pub(crate) fn wait() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(Duration::from_millis(200)), |d| {
        Some((*d * 2).min(Duration::from_secs(5)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_retries_are_counted_and_bounded() {
        let delays: Vec<_> = request(3).collect();
        assert_eq!(delays.len(), 3);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(10)),
            "{delays:?}"
        );
        assert_eq!(request(0).count(), 0);
    }

    #[test]
    fn a_call_failing_alone_is_retried_at_once_and_an_outage_backs_off() {
        // Failing alone: at once, 16 times, then the backoff from its start
        // (three more at once, then climbing), which the prompt ones did not climb.
        let mut r = Retries::new(report());
        let alone: Vec<_> = (0..PROMPT_RETRIES + 4)
            .map(|_| r.next(true).unwrap())
            .collect();
        assert!(
            alone[..PROMPT_RETRIES as usize + 3]
                .iter()
                .all(|d| d.is_zero()),
            "{alone:?}"
        );
        assert!(
            alone[PROMPT_RETRIES as usize + 3] >= Duration::from_millis(20),
            "{alone:?}"
        );
        // Control: nothing accepted meanwhile (an outage) climbs at once.
        let mut r = Retries::new(report());
        let outage: Vec<_> = (0..6).map(|_| r.next(false).unwrap()).collect();
        assert!(outage[3] >= Duration::from_millis(20), "{outage:?}");
        assert!(outage[5] > outage[3], "{outage:?}");
    }

    #[test]
    fn a_failure_is_alone_only_while_most_other_calls_of_its_kind_land() {
        let answers = Answers::default();
        // 40% random failures: six others accepted, four failed meanwhile.
        let mark = answers.mark();
        answers.accepted(6);
        assert!(
            !answers.failed(answers.mark(), 0, 4),
            "the four were not alone here"
        );
        assert!(
            answers.failed(mark, 0, 1),
            "six accepted, four failed: alone"
        );
        // A trickle: one accepted while ninety failed is an outage.
        let mark = answers.mark();
        answers.accepted(1);
        assert!(!answers.failed(answers.mark(), 0, 90));
        assert!(
            !answers.failed(mark, 0, 1),
            "one accepted, ninety failed: not alone"
        );
        // A batch's own accepted entries do not make its failures alone.
        let mark = answers.mark();
        answers.accepted(9);
        assert!(!answers.failed(mark, 9, 1), "nobody else was accepted");
    }

    #[test]
    fn wait_doubles_from_200_ms_to_5_s() {
        let ms: Vec<u128> = wait().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
