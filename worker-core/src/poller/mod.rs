//! Pollers: take a slot, then ask for work.

mod activity;

pub(crate) use activity::{ActivityPoller, poll_activity};
