//! Every configuration default, written once. The serde defaults, the
//! documentation and `sfn-worker check` all read these.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};

/// `worker.max_concurrency`.
pub const MAX_CONCURRENCY: usize = 256;
/// `worker.shutdown_grace_secs`.
pub const SHUTDOWN_GRACE_SECS: u64 = 30;
/// `worker.cancel_grace_secs`.
pub const CANCEL_GRACE_SECS: u64 = 5;
/// `worker.metrics_addr`.
pub const METRICS_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));
/// `worker.poll_timeout_secs`: the 60 s hold, the network, and a margin.
pub const POLL_TIMEOUT_SECS: u64 = 70;
/// `worker.threads`: one, because the worker waits on the network and one
/// thread spends no CPU handing tasks between threads (BENCHMARKS.md).
pub const THREADS: usize = 1;
/// `activity[].pollers`.
pub const POLLERS: usize = 2;
/// `activity[].concurrency` and `queue[].concurrency`.
pub const CONCURRENCY: usize = 16;
/// `activity[].heartbeat_secs`: heartbeats are also how a worker learns a
/// task was stopped, so none at all is a poor default.
pub const HEARTBEAT_SECS: u64 = 20;
/// `queue[].visibility_timeout_secs`.
pub const VISIBILITY_TIMEOUT_SECS: u64 = 60;
/// `queue[].token_pointer`.
pub const TOKEN_POINTER: &str = "/taskToken";
/// `queue[].callback_id_pointer` (`completes = "durable-callback"`).
pub const CALLBACK_ID_POINTER: &str = "/callbackId";
/// `queue[].receivers`: one per this many slots of `concurrency`...
pub const SLOTS_PER_RECEIVER: usize = 10;
/// ... and at most this many.
pub const MAX_DEFAULT_RECEIVERS: usize = 4;

// Serde's `default = "..."` wants functions.
pub(crate) fn max_concurrency() -> NonZeroUsize {
    nonzero(MAX_CONCURRENCY)
}
pub(crate) fn shutdown_grace_secs() -> u64 {
    SHUTDOWN_GRACE_SECS
}
pub(crate) fn cancel_grace_secs() -> u64 {
    CANCEL_GRACE_SECS
}
pub(crate) fn metrics_addr() -> SocketAddr {
    METRICS_ADDR
}
pub(crate) fn poll_timeout_secs() -> u64 {
    POLL_TIMEOUT_SECS
}
pub(crate) fn threads() -> usize {
    THREADS
}
pub(crate) fn pollers() -> NonZeroUsize {
    nonzero(POLLERS)
}
pub(crate) fn concurrency() -> NonZeroUsize {
    nonzero(CONCURRENCY)
}
pub(crate) fn heartbeat_secs() -> u64 {
    HEARTBEAT_SECS
}
pub(crate) fn visibility_timeout_secs() -> NonZeroU64 {
    NonZeroU64::new(VISIBILITY_TIMEOUT_SECS).unwrap_or(NonZeroU64::MIN)
}

/// The receivers a queue binding gets when it names none.
pub fn receivers(concurrency: usize) -> usize {
    concurrency
        .div_ceil(SLOTS_PER_RECEIVER)
        .clamp(1, MAX_DEFAULT_RECEIVERS)
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// `workflows.execution_name_prefix`: executions are named
/// `<prefix>-<uuid>` unless given a name.
pub const EXECUTION_NAME_PREFIX: &str = "sfn-worker";
/// `workflows.max_retries`: retries of one call after a throttling,
/// network, timeout or 5xx error.
pub const WORKFLOW_MAX_RETRIES: u32 = 3;
/// `workflows.request_timeout_secs`: one call's time limit.
pub const WORKFLOW_REQUEST_TIMEOUT_SECS: u64 = 10;

pub(crate) fn execution_name_prefix() -> String {
    EXECUTION_NAME_PREFIX.to_owned()
}
pub(crate) fn workflow_max_retries() -> u32 {
    WORKFLOW_MAX_RETRIES
}
pub(crate) fn workflow_request_timeout_secs() -> NonZeroU64 {
    NonZeroU64::new(WORKFLOW_REQUEST_TIMEOUT_SECS).unwrap_or(NonZeroU64::MIN)
}
