//! SQS callbacks: what the worker keeps per queue binding.
//!
//! A `sqs:sendMessage.waitForTaskToken` state puts the task token and a
//! payload into a message. The queue poller (`poller::queue`) receives it;
//! from there it is a task like any other, run by the same runner, with a
//! [`lease::MessageLease`] that keeps the message invisible while the handler
//! runs and deletes it once the task is settled.

pub(crate) mod batcher;
pub(crate) mod in_flight;
pub(crate) mod lease;
pub(crate) mod message;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{OnMalformed, OnShutdown, TokenSource};

/// Per queue binding, shared by its receivers and tasks.
pub(crate) struct QueueShared {
    pub url: Arc<str>,
    pub batcher: batcher::Batcher,
    pub visibility: Duration,
    pub token: TokenSource,
    pub input_pointer: Option<String>,
    pub on_malformed: OnMalformed,
    pub on_shutdown: OnShutdown,
    pub in_flight: in_flight::InFlight,
    /// Shutdown's last phase: deletes stop retrying.
    pub give_up: CancellationToken,
}
