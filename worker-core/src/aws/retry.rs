//! How long to wait before trying an AWS call again, one policy per kind of
//! call, all exponential with jitter (so a fleet that failed together does
//! not retry together) and without a count limit: what ends a retry loop is
//! the task's or the worker's life, not a number of attempts. Which errors
//! are worth a retry is [`super::ApiError::is_retryable`]'s answer.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

fn exponential(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Delays between failed polls (`GetActivityTask`, `ReceiveMessage`): from
/// 200 ms to 30 s. Reset after every successful poll.
pub(crate) fn poll() -> impl Iterator<Item = Duration> {
    exponential(Duration::from_millis(200), Duration::from_secs(30))
}

/// A report is retried for as long as the task can be kept alive, so what
/// matters is how many attempts fit before shutdown gives up (a report that
/// fails ten times in a row is likely to see its worker stop first): one
/// report waits at most 2 s (4 s with jitter) between attempts. Keeping a
/// process under the account's `SendTask*` quota is the job of
/// `send_task_rate_per_sec`, not of one report's backoff.
pub(crate) fn report() -> impl Iterator<Item = Duration> {
    exponential(Duration::from_millis(100), Duration::from_secs(2))
}

/// Delays between attempts to delete a settled message: from 100 ms to 1 s,
/// so that a delete lands well within the visibility the lease can still
/// keep (the lease renews while it retries).
pub(crate) fn delete() -> impl Iterator<Item = Duration> {
    exponential(Duration::from_millis(100), Duration::from_secs(1))
}
