//! Pollers: take a slot, then ask for work.

mod activity;
mod queue;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

pub(crate) use activity::{ActivityPoller, poll_activity};
pub(crate) use queue::{QueuePoller, poll_queue};

/// Delays between failed polls: exponential from 200 ms to 30 s, with jitter
/// so a fleet that failed together does not retry together. Reset after
/// every successful poll.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}
