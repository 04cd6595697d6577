//! Pollers: take a slot, then ask for work.

mod activity;
mod queue;

pub(crate) use activity::{ActivityPoller, poll_activity};
pub(crate) use queue::{QueuePoller, poll_queue};
